DROP TRIGGER djauth_audit_log_no_delete;
DROP TRIGGER djauth_audit_log_no_update;
DROP TABLE djauth_audit_log;
