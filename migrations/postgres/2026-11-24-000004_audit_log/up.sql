-- Audit events (login, failed login, logout, password change and reset, revocation, lockout)
-- when AUDIT_LOG_TABLE is on. Append-only: updates and deletes are refused.
CREATE TABLE djauth_audit_log (
    id bigserial NOT NULL PRIMARY KEY,
    at timestamp with time zone NOT NULL,
    event varchar(40) NOT NULL,
    user_id varchar(64) NULL,
    username varchar(255) NULL,
    ip varchar(45) NULL,
    detail text NOT NULL
);
CREATE INDEX djauth_audit_log_at ON djauth_audit_log (at);
CREATE FUNCTION djauth_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'djauth_audit_log is append-only';
END
$$;
CREATE TRIGGER djauth_audit_log_no_change BEFORE UPDATE OR DELETE ON djauth_audit_log
    FOR EACH ROW EXECUTE FUNCTION djauth_audit_log_append_only();
