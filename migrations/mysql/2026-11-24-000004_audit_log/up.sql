-- Audit events (login, failed login, logout, password change and reset, revocation, lockout)
-- when AUDIT_LOG_TABLE is on. Append-only: updates and deletes are refused.
CREATE TABLE djauth_audit_log (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    at datetime(6) NOT NULL,
    event varchar(40) NOT NULL,
    user_id varchar(64) NULL,
    username varchar(255) NULL,
    ip varchar(45) NULL,
    detail longtext NOT NULL
);
CREATE INDEX djauth_audit_log_at ON djauth_audit_log (at);
CREATE TRIGGER djauth_audit_log_no_update BEFORE UPDATE ON djauth_audit_log
    FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'djauth_audit_log is append-only';
CREATE TRIGGER djauth_audit_log_no_delete BEFORE DELETE ON djauth_audit_log
    FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'djauth_audit_log is append-only';
