-- Which sessions belong to which user, so one user's sessions are found without decoding
-- every row of django_session. user_id is the string Django stores in _auth_user_id.
CREATE TABLE djauth_session_index (
    session_key varchar(40) NOT NULL PRIMARY KEY,
    user_id varchar(64) NOT NULL,
    created datetime NOT NULL,
    last_seen datetime NOT NULL,
    ip varchar(45) NULL,
    user_agent varchar(512) NULL
);
CREATE INDEX djauth_session_index_user_id ON djauth_session_index (user_id);
