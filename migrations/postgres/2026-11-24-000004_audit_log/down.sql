DROP TRIGGER djauth_audit_log_no_change ON djauth_audit_log;
DROP FUNCTION djauth_audit_log_append_only();
DROP TABLE djauth_audit_log;
