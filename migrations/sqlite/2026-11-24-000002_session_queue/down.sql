DROP TRIGGER djauth_session_index_delete;
DROP TRIGGER djauth_session_queue_update;
DROP TRIGGER djauth_session_queue_insert;
DROP TABLE djauth_user_not_before;
DROP TABLE djauth_session_queue;
