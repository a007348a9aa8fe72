-- Every write to django_session, by Django or djauth, queues its key here in the same
-- transaction, so catching the index up decodes only rows written since the last catch-up.
CREATE TABLE djauth_session_queue (
    seq bigserial NOT NULL PRIMARY KEY,
    session_key varchar(40) NOT NULL
);
-- Signed-cookie sessions have no row to delete: a cookie signed at or before not_before
-- (Unix seconds) is refused for that user.
CREATE TABLE djauth_user_not_before (
    user_id varchar(64) NOT NULL PRIMARY KEY,
    not_before bigint NOT NULL
);
CREATE FUNCTION djauth_session_queue_push() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO djauth_session_queue (session_key) VALUES (NEW.session_key);
    RETURN NULL;
END
$$;
CREATE FUNCTION djauth_session_index_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM djauth_session_index WHERE session_key = OLD.session_key;
    RETURN NULL;
END
$$;
CREATE TRIGGER djauth_session_queue_insert AFTER INSERT ON django_session
    FOR EACH ROW EXECUTE FUNCTION djauth_session_queue_push();
CREATE TRIGGER djauth_session_queue_update AFTER UPDATE OF session_data ON django_session
    FOR EACH ROW EXECUTE FUNCTION djauth_session_queue_push();
CREATE TRIGGER djauth_session_index_delete AFTER DELETE ON django_session
    FOR EACH ROW EXECUTE FUNCTION djauth_session_index_forget();
-- Rows that existed before djauth: the first catch-up indexes them.
INSERT INTO djauth_session_queue (session_key) SELECT session_key FROM django_session;
