//! Login throttling shared by every djauth instance through the database.
//!
//! Each login attempt takes a slot for its username and for its client address *before* the
//! password is checked, in one atomic upsert per key: a burst of concurrent tries can never
//! get more than `limit` password checks through, whatever the timing. A success clears both
//! counts. A key is locked once `limit` attempts are counted within `window` seconds, and
//! stays locked until `cooloff` seconds after its last counted attempt; attempts on a locked
//! key are refused from a read, uncounted, so a burst takes no write locks.

use super::{Backend, DbConnection, DbError, Dialect};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

/// What is counted: attempts for one username, or from one client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Username,
    Address,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Username => "u",
            Kind::Address => "i",
        }
    }
}

/// The throttle's settings (`LOGIN_FAILURE_LIMIT`, `LOGIN_FAILURE_WINDOW`, `LOGIN_COOLOFF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts allowed per key; 0 turns throttling off.
    pub limit: i64,
    pub window: i64,
    pub cooloff: i64,
}

#[derive(Debug, Clone)]
pub struct Lockout {
    backend: Backend,
    policy: Policy,
    upsert: String,
    read: String,
    read_state: String,
    clear: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    failures: i64,
}

#[derive(QueryableByName)]
struct StateRow {
    #[diesel(sql_type = BigInt)]
    failures: i64,
    #[diesel(sql_type = BigInt)]
    last_at: i64,
}

/// `lock_key` is a varchar(255): longer usernames are counted by their first 255 characters.
fn key_of(key: &str) -> String {
    key.chars().take(255).collect()
}

impl Lockout {
    pub fn new(backend: Backend, policy: Policy) -> Self {
        let d = Dialect(backend);
        let p = |n| d.param(n);
        Lockout {
            backend,
            policy,
            upsert: Self::portable_upsert(backend),
            read: format!(
                "SELECT failures FROM djauth_login_failures WHERE kind = {} AND lock_key = {}",
                p(1),
                p(2)
            ),
            read_state: format!(
                "SELECT failures, last_at FROM djauth_login_failures WHERE kind = {} AND lock_key = {}",
                p(1),
                p(2)
            ),
            clear: format!(
                "DELETE FROM djauth_login_failures WHERE kind = {} AND lock_key = {}",
                p(1),
                p(2)
            ),
        }
    }

    /// One statement per backend that counts an attempt atomically. The parameters are bound
    /// in this order: kind, key, now, then (for the reset test) window start, limit, cool-off
    /// start, limit again where the dialect needs it.
    fn portable_upsert(backend: Backend) -> String {
        match backend {
            // MySQL applies SET clauses left to right, each seeing the previous ones: compute
            // `failures` first (from the old first_at/last_at), then `first_at`, then `last_at`.
            Backend::Mysql => "INSERT INTO djauth_login_failures (kind, lock_key, failures, first_at, last_at) \
                 VALUES (?, ?, 1, ?, ?) ON DUPLICATE KEY UPDATE \
                 failures = IF((failures < ? AND first_at <= ?) OR (failures >= ? AND last_at <= ?), 1, failures + 1), \
                 first_at = IF(failures = 1, VALUES(first_at), first_at), \
                 last_at = VALUES(last_at)"
                .into(),
            // SQLite and PostgreSQL evaluate every SET expression against the old row.
            _ => {
                // Numbered parameters: the reset test appears twice.
                let p = |n: usize| match backend {
                    Backend::Postgres => format!("${n}"),
                    _ => format!("?{n}"),
                };
                let stale = format!(
                    "((djauth_login_failures.failures < {lim} AND djauth_login_failures.first_at <= {ws}) OR \
                      (djauth_login_failures.failures >= {lim2} AND djauth_login_failures.last_at <= {cs}))",
                    lim = p(5),
                    ws = p(6),
                    lim2 = p(7),
                    cs = p(8)
                );
                format!(
                    "INSERT INTO djauth_login_failures (kind, lock_key, failures, first_at, last_at) \
                     VALUES ({}, {}, 1, {}, {}) ON CONFLICT (kind, lock_key) DO UPDATE SET \
                     failures = CASE WHEN {stale} THEN 1 ELSE djauth_login_failures.failures + 1 END, \
                     first_at = CASE WHEN {stale} THEN excluded.first_at ELSE djauth_login_failures.first_at END, \
                     last_at = excluded.last_at",
                    p(1),
                    p(2),
                    p(3),
                    p(4)
                )
            }
        }
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    pub fn enabled(&self) -> bool {
        self.policy.limit > 0
    }

    /// Counts one attempt for `key` and returns the count, this attempt included. The
    /// attempt may go on to check the password only if the count is within the limit.
    pub fn attempt(
        &self,
        conn: &mut DbConnection,
        kind: Kind,
        key: &str,
        now: i64,
    ) -> Result<i64, DbError> {
        self.write_transaction(conn, |conn| self.count(conn, kind, key, now))
    }

    /// One attempt against every key (a username and a client address): `false` when any
    /// of them has used up its attempts. A key already locked answers from a read, without
    /// writing: a burst against a locked key costs no write locks (SQLite has one).
    /// Otherwise all keys are counted in one transaction.
    pub fn allow(
        &self,
        conn: &mut DbConnection,
        keys: &[(Kind, &str)],
        now: i64,
    ) -> Result<bool, DbError> {
        for (kind, key) in keys {
            let rows: Vec<StateRow> = super::prepared(&self.read_state)
                .bind(kind.code())
                .bind(key_of(key))
                .load(conn)?;
            if rows.first().is_some_and(|r| {
                r.failures >= self.policy.limit && r.last_at > now - self.policy.cooloff
            }) {
                return Ok(false);
            }
        }
        self.write_transaction(conn, |conn| {
            let mut allowed = true;
            for (kind, key) in keys {
                allowed &= self.count(conn, *kind, key, now)? <= self.policy.limit;
            }
            Ok(allowed)
        })
    }

    fn count(
        &self,
        conn: &mut DbConnection,
        kind: Kind,
        key: &str,
        now: i64,
    ) -> Result<i64, DbError> {
        let key = key_of(key);
        let Policy {
            limit,
            window,
            cooloff,
        } = self.policy;
        diesel::sql_query(&self.upsert)
            .bind::<Text, _>(kind.code())
            .bind::<Text, _>(&key)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(now)
            .bind::<BigInt, _>(limit)
            .bind::<BigInt, _>(now - window)
            .bind::<BigInt, _>(limit)
            .bind::<BigInt, _>(now - cooloff)
            .execute(conn)?;
        // Same transaction, row still locked by the upsert: this is our own count.
        let rows: Vec<CountRow> = super::prepared(&self.read)
            .bind(kind.code())
            .bind(&key)
            .load(conn)?;
        Ok(rows.first().map_or(1, |r| r.failures))
    }

    /// A transaction that writes. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`): a deferred one that reads first and then writes can only fail with
    /// "database is locked" when another writer got there in between.
    fn write_transaction<T>(
        &self,
        conn: &mut DbConnection,
        f: impl FnOnce(&mut DbConnection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        super::write_transaction(conn, self.backend, f)
    }

    /// A successful login (or `djauth unlock`) clears the count.
    pub fn clear(&self, conn: &mut DbConnection, kind: Kind, key: &str) -> Result<usize, DbError> {
        Ok(super::prepared(&self.clear)
            .bind(kind.code())
            .bind(key_of(key))
            .execute(conn)?)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}
