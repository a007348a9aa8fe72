DROP TABLE djauth_session_index;
