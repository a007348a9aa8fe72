-- Audit events (login, failed login, logout, password change and reset, revocation, lockout)
-- when AUDIT_LOG_TABLE is on. Append-only: updates and deletes are refused.
CREATE TABLE djauth_audit_log (
    id integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    at datetime NOT NULL,
    event varchar(40) NOT NULL,
    user_id varchar(64) NULL,
    username varchar(255) NULL,
    ip varchar(45) NULL,
    detail text NOT NULL
);
CREATE INDEX djauth_audit_log_at ON djauth_audit_log (at);
CREATE TRIGGER djauth_audit_log_no_update BEFORE UPDATE ON djauth_audit_log
BEGIN
    SELECT RAISE(ABORT, 'djauth_audit_log is append-only');
END;
CREATE TRIGGER djauth_audit_log_no_delete BEFORE DELETE ON djauth_audit_log
BEGIN
    SELECT RAISE(ABORT, 'djauth_audit_log is append-only');
END;
