"""djauth's session tables, in raw SQL.

``djauth migrate`` creates them next to django_session (its triggers keep the index in step
with that table), so index writes go to the database the Session model routes writes to.
"""

import datetime

from django.conf import settings
from django.db import connections, router, transaction

DB_ENGINE = "django.contrib.sessions.backends.db"
INDEX = "djauth_session_index"
NOT_BEFORE = "djauth_user_not_before"
CHUNK = 500  # keys per IN (...) list: well under every backend's parameter limit
MAX_USER_ID, MAX_IP, MAX_USER_AGENT = 64, 45, 512  # the index's column sizes


def db_sessions():
    """True when sessions are django_session rows, the only ones the index covers."""
    return settings.SESSION_ENGINE == DB_ENGINE


def _session_connection():
    from django.contrib.sessions.models import Session

    return connections[router.db_for_write(Session)], Session._meta.db_table


def _utc_now(connection):
    """Now in UTC, as the columns hold it: timestamptz on PostgreSQL, naive UTC elsewhere
    (also with USE_TZ = False, where timezone.now() would be local time)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    if connection.vendor != "postgresql":
        now = now.replace(tzinfo=None)
    return connection.ops.adapt_datetimefield_value(now)


def record_login(session_key, user_id, ip, user_agent):
    """Index a session that has just logged in (a known key is re-pointed and touched; a
    missing ip / user agent keeps the one already known, as djauth does)."""
    if len(user_id) > MAX_USER_ID:
        return
    connection, _ = _session_connection()
    if connection.vendor == "mysql":
        conflict = (
            "ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), last_seen = VALUES(last_seen), "
            "ip = COALESCE(VALUES(ip), ip), user_agent = COALESCE(VALUES(user_agent), user_agent)"
        )
    else:
        conflict = (
            "ON CONFLICT (session_key) DO UPDATE SET user_id = excluded.user_id, "
            f"last_seen = excluded.last_seen, ip = COALESCE(excluded.ip, {INDEX}.ip), "
            f"user_agent = COALESCE(excluded.user_agent, {INDEX}.user_agent)"
        )
    now = _utc_now(connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {INDEX} (session_key, user_id, created, last_seen, ip, user_agent) "
            f"VALUES (%s, %s, %s, %s, %s, %s) {conflict}",
            [session_key, user_id, now, now, ip, user_agent],
        )


def forget_session(session_key):
    connection, _ = _session_connection()
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {INDEX} WHERE session_key = %s", [session_key])


def end_user_sessions(user_id):
    """Delete every django_session row the index lists for ``user_id``, then those index
    rows; returns how many sessions were ended.  Keys are deleted in chunks: MySQL refuses a
    DELETE whose subquery reads the index, which the delete trigger writes to."""
    connection, table = _session_connection()
    sessions = connection.ops.quote_name(table)
    key = connection.ops.quote_name("session_key")
    ended = 0
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"SELECT session_key FROM {INDEX} WHERE user_id = %s", [user_id])
        keys = [row[0] for row in cursor.fetchall()]
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(f"DELETE FROM {sessions} WHERE {key} IN ({marks})", chunk)
            ended += cursor.rowcount
            # The delete trigger already dropped most; this takes stale entries too.
            cursor.execute(f"DELETE FROM {INDEX} WHERE session_key IN ({marks})", chunk)
    return ended


def not_before(user_id):
    """The Unix second at or before which ``user_id``'s signed-cookie sessions are refused
    (None: no such second), read where the user model is read."""
    from django.contrib.auth import get_user_model

    connection = connections[router.db_for_read(get_user_model())]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT not_before FROM {NOT_BEFORE} WHERE user_id = %s", [user_id])
        row = cursor.fetchone()
    return None if row is None else int(row[0])
