DROP TRIGGER djauth_session_index_delete ON django_session;
DROP TRIGGER djauth_session_queue_update ON django_session;
DROP TRIGGER djauth_session_queue_insert ON django_session;
DROP FUNCTION djauth_session_index_forget();
DROP FUNCTION djauth_session_queue_push();
DROP TABLE djauth_user_not_before;
DROP TABLE djauth_session_queue;
