-- One trigger run per DELETE statement instead of one per row: ending a user's hundred
-- sessions, or Django's clearsessions, drops their index entries in one join.
DROP TRIGGER djauth_session_index_delete ON django_session;
CREATE FUNCTION djauth_session_index_forget_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM djauth_session_index i USING djauth_gone g WHERE i.session_key = g.session_key;
    RETURN NULL;
END
$$;
CREATE TRIGGER djauth_session_index_delete AFTER DELETE ON django_session
    REFERENCING OLD TABLE AS djauth_gone
    FOR EACH STATEMENT EXECUTE FUNCTION djauth_session_index_forget_all();
