-- Login attempts per username ('u') and per client address ('i'), shared by every djauth
-- instance. Times are Unix seconds. A row is counted up before the password is checked, so
-- a burst of concurrent tries cannot get more than the limit through.
CREATE TABLE djauth_login_failures (
    kind varchar(1) NOT NULL,
    lock_key varchar(255) NOT NULL,
    failures bigint NOT NULL,
    first_at bigint NOT NULL,
    last_at bigint NOT NULL,
    PRIMARY KEY (kind, lock_key)
);
