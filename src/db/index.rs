//! The user-to-session index: which `django_session` rows belong to which user, so that one
//! user's sessions are found (and ended) without decoding the whole table.
//!
//! Completeness does not depend on seeing sessions being made: triggers installed by
//! `djauth migrate` queue the key of every row anyone (Django included) inserts or updates
//! in `djauth_session_queue`, in the writer's own transaction, and delete a row's index entry
//! when the row is deleted. [`SessionIndex::catch_up`] decodes only the queued rows. Queue
//! sequence numbers only grow, so a write that lands while a catch-up runs gets a higher
//! number and is picked up by the next one, never dropped.

use super::{datetime_to_text, text_to_datetime, Backend, DbConnection, DbError, Dialect};
use crate::formats::session::SessionCodec;
use chrono::NaiveDateTime;
use diesel::connection::Connection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};

/// Queue entries decoded per transaction.
const BATCH: i64 = 2_000;
/// Keys per `IN (…)` list: well under every backend's bind-parameter limit.
const CHUNK: usize = 500;
/// Rows per page of `reindex` (about 2.5 MB of session data).
const REINDEX_PAGE: usize = 10_000;
/// Below this many rows, decoding on one thread is cheaper than starting others.
const PARALLEL_MIN: usize = 256;
/// `user_id` is a varchar(64): longer pks (none of Django's key types) are not indexed.
const MAX_USER_ID: usize = 64;

/// One indexed session, for listing a user's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedSession {
    pub session_key: String,
    pub created: NaiveDateTime,
    pub last_seen: NaiveDateTime,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What one catch-up did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// Queue entries consumed (one per write to `django_session`).
    pub queued: usize,
    /// Sessions found to belong to a user and (re)indexed.
    pub indexed: usize,
}

#[derive(Debug, Clone)]
pub struct SessionIndex {
    backend: Backend,
    record: String,
    touch: String,
    keys_of: String,
    list: String,
    queue_max: String,
    queue_batch: String,
    reindex_page: String,
    upsert_user_prefix: String,
    upsert_user_suffix: String,
    not_before: String,
    set_not_before: String,
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    session_key: String,
}

#[derive(QueryableByName)]
struct MaxRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    max_seq: Option<i64>,
}

#[derive(QueryableByName)]
struct QueueRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    session_key: String,
    #[diesel(sql_type = Nullable<Text>)]
    session_data: Option<String>,
}

#[derive(QueryableByName)]
struct ReindexRow {
    #[diesel(sql_type = Text)]
    session_key: String,
    #[diesel(sql_type = Text)]
    session_data: String,
    #[diesel(sql_type = Nullable<Text>)]
    user_id: Option<String>,
}

#[derive(QueryableByName)]
struct ListRow {
    #[diesel(sql_type = Text)]
    session_key: String,
    #[diesel(sql_type = Text)]
    created: String,
    #[diesel(sql_type = Text)]
    last_seen: String,
    #[diesel(sql_type = Nullable<Text>)]
    ip: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    user_agent: Option<String>,
}

#[derive(QueryableByName)]
struct NotBeforeRow {
    #[diesel(sql_type = BigInt)]
    not_before: i64,
}

/// The user a session blob names, as indexed (`None`: anonymous or undecodable).
fn indexed_user(codec: &SessionCodec, blob: Option<&str>) -> Option<String> {
    let data = codec.decode_db(blob?).ok()?;
    crate::auth::session_user_id(&data).filter(|id| id.len() <= MAX_USER_ID)
}

/// Decodes every blob, on all cores when there are enough of them.
fn decode_users(codec: &SessionCodec, blobs: &[Option<&str>]) -> Vec<Option<String>> {
    let decode = |b: &Option<&str>| indexed_user(codec, *b);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if blobs.len() < PARALLEL_MIN || threads == 1 {
        return blobs.iter().map(decode).collect();
    }
    let per = blobs.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = blobs
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(decode).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

impl SessionIndex {
    pub fn new(backend: Backend) -> Self {
        let d = Dialect(backend);
        let p = |n| d.param(n);
        let t = |n| d.text_as_datetime(n);
        let upsert = match backend {
            Backend::Mysql => {
                "ON DUPLICATE KEY UPDATE user_id = VALUES(user_id), last_seen = VALUES(last_seen), \
                 ip = COALESCE(VALUES(ip), ip), user_agent = COALESCE(VALUES(user_agent), user_agent)"
            }
            _ => {
                "ON CONFLICT (session_key) DO UPDATE SET user_id = excluded.user_id, \
                 last_seen = excluded.last_seen, ip = COALESCE(excluded.ip, djauth_session_index.ip), \
                 user_agent = COALESCE(excluded.user_agent, djauth_session_index.user_agent)"
            }
        };
        let upsert_user_suffix = match backend {
            Backend::Mysql => " ON DUPLICATE KEY UPDATE user_id = VALUES(user_id)",
            _ => " ON CONFLICT (session_key) DO UPDATE SET user_id = excluded.user_id",
        };
        let set_not_before = match backend {
            Backend::Mysql => format!(
                "INSERT INTO djauth_user_not_before (user_id, not_before) VALUES ({}, {}) \
                 ON DUPLICATE KEY UPDATE not_before = GREATEST(not_before, VALUES(not_before))",
                p(1),
                p(2)
            ),
            _ => format!(
                "INSERT INTO djauth_user_not_before (user_id, not_before) VALUES ({}, {}) \
                 ON CONFLICT (user_id) DO UPDATE SET not_before = \
                 CASE WHEN excluded.not_before > djauth_user_not_before.not_before \
                 THEN excluded.not_before ELSE djauth_user_not_before.not_before END",
                p(1),
                p(2)
            ),
        };
        let (s_key, s_data, s_expire) = (
            d.ident("session_key"),
            d.ident("session_data"),
            d.ident("expire_date"),
        );
        let session = d.ident("django_session");
        SessionIndex {
            backend,
            record: format!(
                "INSERT INTO djauth_session_index (session_key, user_id, created, last_seen, ip, user_agent) \
                 VALUES ({}, {}, {}, {}, {}, {}) {upsert}",
                p(1),
                p(2),
                t(3),
                t(4),
                p(5),
                p(6)
            ),
            touch: format!(
                "UPDATE djauth_session_index SET last_seen = {} WHERE session_key = {}",
                t(1),
                p(2)
            ),
            keys_of: format!(
                "SELECT session_key FROM djauth_session_index WHERE user_id = {}",
                p(1)
            ),
            list: format!(
                "SELECT i.session_key AS session_key, {} AS created, {} AS last_seen, i.ip AS ip, \
                 i.user_agent AS user_agent FROM djauth_session_index i \
                 JOIN {session} s ON s.{s_key} = i.session_key \
                 WHERE i.user_id = {} AND s.{s_expire} > {} ORDER BY i.last_seen DESC",
                d.datetime_as_text("i.created"),
                d.datetime_as_text("i.last_seen"),
                p(1),
                t(2)
            ),
            queue_max: "SELECT MAX(seq) AS max_seq FROM djauth_session_queue".into(),
            queue_batch: format!(
                "SELECT q.seq AS seq, q.session_key AS session_key, s.{s_data} AS session_data \
                 FROM djauth_session_queue q LEFT JOIN {session} s ON s.{s_key} = q.session_key \
                 WHERE q.seq > {} AND q.seq <= {} ORDER BY q.seq LIMIT {BATCH}",
                p(1),
                p(2)
            ),
            reindex_page: format!(
                "SELECT s.{s_key} AS session_key, s.{s_data} AS session_data, i.user_id AS user_id \
                 FROM {session} s LEFT JOIN djauth_session_index i ON i.session_key = s.{s_key} \
                 WHERE s.{s_key} > {} ORDER BY s.{s_key} LIMIT {REINDEX_PAGE}",
                p(1)
            ),
            upsert_user_prefix:
                "INSERT INTO djauth_session_index (session_key, user_id, created, last_seen) VALUES "
                    .into(),
            upsert_user_suffix: upsert_user_suffix.into(),
            not_before: format!(
                "SELECT not_before FROM djauth_user_not_before WHERE user_id = {}",
                p(1)
            ),
            set_not_before,
        }
    }

    /// Indexes a session djauth has just seen authenticated (login, or a request carrying an
    /// unindexed session), with what the request tells about the device.
    pub fn record(
        &self,
        conn: &mut DbConnection,
        session_key: &str,
        user_id: &str,
        now: NaiveDateTime,
        ip: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<(), DbError> {
        if user_id.len() > MAX_USER_ID {
            return Ok(());
        }
        let now = datetime_to_text(self.backend, now);
        diesel::sql_query(&self.record)
            .bind::<Text, _>(session_key)
            .bind::<Text, _>(user_id)
            .bind::<Text, _>(&now)
            .bind::<Text, _>(&now)
            .bind::<Nullable<Text>, _>(ip)
            .bind::<Nullable<Text>, _>(user_agent)
            .execute(conn)?;
        Ok(())
    }

    pub fn touch(
        &self,
        conn: &mut DbConnection,
        session_key: &str,
        now: NaiveDateTime,
    ) -> Result<(), DbError> {
        super::prepared(&self.touch)
            .bind(datetime_to_text(self.backend, now))
            .bind(session_key)
            .execute(conn)?;
        Ok(())
    }

    /// A user's unexpired indexed sessions, most recently seen first.
    pub fn sessions_of(
        &self,
        conn: &mut DbConnection,
        user_id: &str,
        now: NaiveDateTime,
    ) -> Result<Vec<IndexedSession>, DbError> {
        let rows: Vec<ListRow> = super::prepared(&self.list)
            .bind(user_id)
            .bind(datetime_to_text(self.backend, now))
            .load(conn)?;
        Ok(rows
            .into_iter()
            .map(|r| IndexedSession {
                created: text_to_datetime(&r.created).unwrap_or_default(),
                last_seen: text_to_datetime(&r.last_seen).unwrap_or_default(),
                session_key: r.session_key,
                ip: r.ip,
                user_agent: r.user_agent,
            })
            .collect())
    }

    /// Decodes the rows written since the last catch-up and brings the index up to date.
    pub fn catch_up(
        &self,
        conn: &mut DbConnection,
        codec: &SessionCodec,
    ) -> Result<CatchUp, DbError> {
        let max: Vec<MaxRow> = super::prepared(&self.queue_max).load(conn)?;
        let Some(end) = max.into_iter().next().and_then(|r| r.max_seq) else {
            return Ok(CatchUp::default());
        };
        let mut done = CatchUp::default();
        let mut after = 0i64;
        loop {
            // One batch at a time across every process: read, decode and write under one lock.
            // Two overlapping catch-ups could otherwise interleave so that one that read a
            // row before Django's login filled it in drops the entry the other just wrote
            // for the filled-in row, after that one consumed both queue entries.
            let batch = self.serialized(conn, |conn| {
                let rows: Vec<QueueRow> = diesel::sql_query(&self.queue_batch)
                    .bind::<BigInt, _>(after)
                    .bind::<BigInt, _>(end)
                    .load(conn)?;
                let Some(last) = rows.last().map(|r| r.seq) else {
                    return Ok(None);
                };
                let indexed = self.apply_batch(conn, codec, &rows)?;
                Ok(Some((rows.len(), indexed, last)))
            })?;
            let Some((queued, indexed, last)) = batch else {
                break;
            };
            done.queued += queued;
            done.indexed += indexed;
            after = last;
        }
        Ok(done)
    }

    /// Runs `f` in a write transaction that no other catch-up runs beside, in any process.
    fn serialized<T>(
        &self,
        conn: &mut DbConnection,
        f: impl FnOnce(&mut DbConnection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        use diesel::connection::SimpleConnection;
        match self.backend {
            // BEGIN IMMEDIATE: SQLite has one writer at a time.
            Backend::Sqlite => super::write_transaction(conn, self.backend, f),
            Backend::Postgres => conn.transaction(|conn| {
                conn.batch_execute("SELECT pg_advisory_xact_lock(7361209467)")?;
                f(conn)
            }),
            Backend::Mysql => {
                conn.batch_execute("DO GET_LOCK('djauth_session_index', 60)")?;
                let result = conn.transaction(f);
                let _ = conn.batch_execute("DO RELEASE_LOCK('djauth_session_index')");
                result
            }
        }
    }

    /// Indexes one batch of queue entries and consumes exactly those; how many sessions
    /// were found to belong to a user.
    fn apply_batch(
        &self,
        conn: &mut DbConnection,
        codec: &SessionCodec,
        rows: &[QueueRow],
    ) -> Result<usize, DbError> {
        let blobs: Vec<Option<&str>> = rows.iter().map(|r| r.session_data.as_deref()).collect();
        let users = decode_users(codec, &blobs);
        // A key written twice in the batch is decoded twice from the same current row;
        // the later entry wins, which is the same answer.
        let mut owned: Vec<(&str, &str)> = vec![];
        let mut anonymous: Vec<&str> = vec![];
        for (row, user) in rows.iter().zip(&users) {
            match user {
                Some(u) => owned.push((&row.session_key, u)),
                None => anonymous.push(&row.session_key),
            }
        }
        owned.sort_unstable();
        owned.dedup_by(|a, b| a.0 == b.0);
        self.set_owners(conn, &owned, &anonymous)?;
        // Exactly the entries read: a lower number can commit after a higher one (numbers
        // are handed out at insert, not at commit), and must survive for the next run.
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        for chunk in seqs.chunks(CHUNK) {
            self.queue_done(conn, chunk)?;
        }
        Ok(owned.len())
    }

    /// Indexes each `(session_key, user_id)` of `owned` and drops the entries of `anonymous`.
    fn set_owners(
        &self,
        conn: &mut DbConnection,
        owned: &[(&str, &str)],
        anonymous: &[&str],
    ) -> Result<(), DbError> {
        let now = datetime_to_text(self.backend, super::now_utc());
        for chunk in owned.chunks(CHUNK) {
            self.upsert_users(conn, chunk, &now)?;
        }
        for chunk in anonymous.chunks(CHUNK) {
            delete_keys(conn, self.backend, "djauth_session_index", chunk)?;
        }
        Ok(())
    }

    fn queue_done(&self, conn: &mut DbConnection, seqs: &[i64]) -> Result<(), DbError> {
        let d = Dialect(self.backend);
        let params: Vec<String> = (1..=seqs.len()).map(|n| d.param(n)).collect();
        let sql = format!(
            "DELETE FROM djauth_session_queue WHERE seq IN ({})",
            params.join(", ")
        );
        let mut q = diesel::sql_query(sql).into_boxed::<<DbConnection as Connection>::Backend>();
        for s in seqs {
            q = q.bind::<BigInt, _>(*s);
        }
        q.execute(conn)?;
        Ok(())
    }

    fn upsert_users(
        &self,
        conn: &mut DbConnection,
        rows: &[(&str, &str)],
        now: &str,
    ) -> Result<(), DbError> {
        let d = Dialect(self.backend);
        let mut sql = self.upsert_user_prefix.clone();
        for i in 0..rows.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let n = i * 3;
            sql.push_str(&format!(
                "({}, {}, {t}, {t})",
                d.param(n + 1),
                d.param(n + 2),
                t = d.text_as_datetime(n + 3)
            ));
        }
        sql.push_str(&self.upsert_user_suffix);
        // The datetime appears twice per row: Postgres reuses its numbered parameter, the
        // others take a second `?`.
        let mut q = diesel::sql_query(sql).into_boxed::<<DbConnection as Connection>::Backend>();
        for (key, user) in rows {
            q = q
                .bind::<Text, _>(*key)
                .bind::<Text, _>(*user)
                .bind::<Text, _>(now);
            if self.backend != Backend::Postgres {
                q = q.bind::<Text, _>(now);
            }
        }
        q.execute(conn)?;
        Ok(())
    }

    /// Ends every session of `user_id` (but `keep`) that the index knows, after catching the
    /// index up so that rows written a moment ago (by Django too) are known. Returns how many
    /// `django_session` rows were deleted. With `not_before`, signed-cookie sessions of the
    /// user signed at or before that second are refused from now on.
    pub fn revoke(
        &self,
        conn: &mut DbConnection,
        codec: &SessionCodec,
        user_id: &str,
        keep: Option<&str>,
        not_before: Option<i64>,
    ) -> Result<usize, DbError> {
        self.catch_up(conn, codec)?;
        // One transaction: all of the user's sessions end together, with one commit (one
        // sync to disk on SQLite instead of one per statement).
        super::write_transaction(conn, self.backend, |conn| {
            if let Some(secs) = not_before {
                diesel::sql_query(&self.set_not_before)
                    .bind::<Text, _>(user_id)
                    .bind::<BigInt, _>(secs)
                    .execute(conn)?;
            }
            let keys: Vec<String> = self
                .keys_of(conn, user_id)?
                .into_iter()
                .filter(|k| Some(k.as_str()) != keep)
                .collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut ended = 0;
            for chunk in keys.chunks(CHUNK) {
                ended += delete_keys(conn, self.backend, "django_session", chunk)?;
                // The delete trigger drops these; stale entries (rows already gone) go too.
                delete_keys(conn, self.backend, "djauth_session_index", chunk)?;
            }
            Ok(ended)
        })
    }

    /// Ends one session of `user_id`, if the index says it is theirs.
    pub fn revoke_one(
        &self,
        conn: &mut DbConnection,
        user_id: &str,
        session_key: &str,
    ) -> Result<bool, DbError> {
        let owned = self
            .keys_of(conn, user_id)?
            .iter()
            .any(|k| k == session_key);
        if !owned {
            return Ok(false);
        }
        let n = delete_keys(conn, self.backend, "django_session", &[session_key])?;
        delete_keys(conn, self.backend, "djauth_session_index", &[session_key])?;
        Ok(n > 0)
    }

    fn keys_of(&self, conn: &mut DbConnection, user_id: &str) -> Result<Vec<String>, DbError> {
        let rows: Vec<KeyRow> = super::prepared(&self.keys_of).bind(user_id).load(conn)?;
        Ok(rows.into_iter().map(|r| r.session_key).collect())
    }

    /// Rebuilds the index from `django_session`: entries whose row is gone are dropped, then
    /// every row is decoded in key order, a page at a time, and only entries that differ from
    /// what the row says are written (device details already known are kept), then whatever
    /// was queued meanwhile is caught up. `queued` is the number of rows read.
    pub fn reindex(
        &self,
        conn: &mut DbConnection,
        codec: &SessionCodec,
    ) -> Result<CatchUp, DbError> {
        let d = Dialect(self.backend);
        let (session, key) = (d.ident("django_session"), d.ident("session_key"));
        // NOT EXISTS, not NOT IN: PostgreSQL plans NOT IN over a million keys as a rescan
        // per row once the list outgrows work_mem; NOT EXISTS is an anti-join.
        let stale = format!(
            "DELETE FROM djauth_session_index WHERE NOT EXISTS \
             (SELECT 1 FROM {session} s WHERE s.{key} = djauth_session_index.session_key)"
        );
        self.serialized(conn, |conn| Ok(diesel::sql_query(&stale).execute(conn)?))?;
        let mut done = CatchUp::default();
        // Session keys are [a-z0-9]+, so every key sorts after "".
        let mut after = String::new();
        loop {
            // Each page is read and written under the catch-up lock, so a write Django makes
            // after the read is queued and caught up later, never overwritten by this one.
            let page = self.serialized(conn, |conn| {
                let rows: Vec<ReindexRow> = super::prepared(&self.reindex_page)
                    .bind(after.as_str())
                    .load(conn)?;
                let Some(last) = rows.last().map(|r| r.session_key.clone()) else {
                    return Ok(None);
                };
                let blobs: Vec<Option<&str>> =
                    rows.iter().map(|r| Some(r.session_data.as_str())).collect();
                let users = decode_users(codec, &blobs);
                let mut changed: Vec<(&str, &str)> = vec![];
                let mut anonymous: Vec<&str> = vec![];
                let mut owned = 0;
                for (row, user) in rows.iter().zip(&users) {
                    match (user, &row.user_id) {
                        (Some(u), Some(i)) if u == i => owned += 1,
                        (Some(u), _) => {
                            owned += 1;
                            changed.push((&row.session_key, u));
                        }
                        (None, Some(_)) => anonymous.push(&row.session_key),
                        (None, None) => {}
                    }
                }
                self.set_owners(conn, &changed, &anonymous)?;
                Ok(Some((rows.len(), owned, last)))
            })?;
            let Some((read, owned, last)) = page else {
                break;
            };
            done.queued += read;
            done.indexed += owned;
            after = last;
        }
        self.catch_up(conn, codec)?;
        Ok(done)
    }

    /// The second at or before which `user_id`'s signed-cookie sessions are refused.
    pub fn not_before(
        &self,
        conn: &mut DbConnection,
        user_id: &str,
    ) -> Result<Option<i64>, DbError> {
        let rows: Vec<NotBeforeRow> = super::prepared(&self.not_before).bind(user_id).load(conn)?;
        Ok(rows.into_iter().next().map(|r| r.not_before))
    }

    /// Queue entries waiting for a catch-up.
    pub fn backlog(&self, conn: &mut DbConnection) -> Result<i64, DbError> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let rows: Vec<Count> =
            diesel::sql_query("SELECT COUNT(*) AS n FROM djauth_session_queue").load(conn)?;
        Ok(rows.into_iter().next().map_or(0, |r| r.n))
    }
}

/// `DELETE FROM table WHERE session_key IN (keys)`; the number of rows deleted.
fn delete_keys(
    conn: &mut DbConnection,
    backend: Backend,
    table: &str,
    keys: &[&str],
) -> Result<usize, DbError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let d = Dialect(backend);
    let params: Vec<String> = (1..=keys.len()).map(|n| d.param(n)).collect();
    let sql = format!(
        "DELETE FROM {} WHERE {} IN ({})",
        d.ident(table),
        d.ident("session_key"),
        params.join(", ")
    );
    let mut q = diesel::sql_query(sql).into_boxed::<<DbConnection as Connection>::Backend>();
    for k in keys {
        q = q.bind::<Text, _>(*k);
    }
    Ok(q.execute(conn)?)
}
