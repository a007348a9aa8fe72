DROP TRIGGER djauth_session_index_delete ON django_session;
DROP FUNCTION djauth_session_index_forget_all();
CREATE TRIGGER djauth_session_index_delete AFTER DELETE ON django_session
    FOR EACH ROW EXECUTE FUNCTION djauth_session_index_forget();
