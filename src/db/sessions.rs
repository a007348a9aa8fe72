//! `django_session` as Django's `db` session engine uses it: load only unexpired rows,
//! create with a fresh key (retrying on a collision), save by UPDATE and fail if the row has
//! gone (Django's `UpdateError` → `SessionInterrupted`), delete, clear expired.

use super::{datetime_to_text, Backend, DbConnection, DbError, Dialect};
use crate::formats::session::new_session_key;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Nullable, Text};

#[derive(Debug, Clone)]
pub struct SessionTable {
    backend: Backend,
    load: String,
    load_indexed: String,
    insert: String,
    update: String,
    delete: String,
    clear_expired: String,
}

#[derive(QueryableByName)]
struct DataRow {
    #[diesel(sql_type = Text)]
    session_data: String,
}

#[derive(QueryableByName)]
struct IndexedDataRow {
    #[diesel(sql_type = Text)]
    session_data: String,
    #[diesel(sql_type = Nullable<Text>)]
    last_seen: Option<String>,
    #[diesel(sql_type = Text)]
    device_known: String,
}

/// An unexpired row, and when the session index last saw it (`None`: not indexed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedRow {
    pub session_data: String,
    pub last_seen: Option<NaiveDateTime>,
    /// The index entry has an IP or user agent (a catch-up entry has neither).
    pub device_known: bool,
}

/// Why a save did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The row was deleted meanwhile (another request logged out): Django raises
    /// `SessionInterrupted` and answers 400.
    #[error("the session was deleted before the request finished")]
    Interrupted,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl SessionTable {
    pub fn new(backend: Backend) -> Self {
        let d = Dialect(backend);
        let t = d.ident("django_session");
        let (key, data, expire) = (
            d.ident("session_key"),
            d.ident("session_data"),
            d.ident("expire_date"),
        );
        SessionTable {
            backend,
            load: format!(
                "SELECT {data} AS session_data FROM {t} WHERE {key} = {} AND {expire} > {}",
                d.param(1),
                d.text_as_datetime(2)
            ),
            // The index entry comes along in the same round trip: an authenticated request
            // on an unindexed session indexes it, and "last seen" is refreshed when stale.
            load_indexed: format!(
                "SELECT s.{data} AS session_data, {} AS last_seen, \
                 CASE WHEN i.ip IS NULL AND i.user_agent IS NULL THEN 'n' ELSE 'y' END AS device_known \
                 FROM {t} s \
                 LEFT JOIN djauth_session_index i ON i.session_key = s.{key} \
                 WHERE s.{key} = {} AND s.{expire} > {}",
                d.datetime_as_text("i.last_seen"),
                d.param(1),
                d.text_as_datetime(2)
            ),
            insert: format!(
                "INSERT INTO {t} ({key}, {data}, {expire}) VALUES ({}, {}, {})",
                d.param(1),
                d.param(2),
                d.text_as_datetime(3)
            ),
            update: format!(
                "UPDATE {t} SET {data} = {}, {expire} = {} WHERE {key} = {}",
                d.param(1),
                d.text_as_datetime(2),
                d.param(3)
            ),
            delete: format!("DELETE FROM {t} WHERE {key} = {}", d.param(1)),
            clear_expired: format!("DELETE FROM {t} WHERE {expire} < {}", d.text_as_datetime(1)),
        }
    }

    /// `SessionStore(key).load()`: the signed data of an unexpired row.
    pub fn load(
        &self,
        conn: &mut DbConnection,
        key: &str,
        now: NaiveDateTime,
    ) -> Result<Option<String>, DbError> {
        let rows: Vec<DataRow> = super::prepared(&self.load)
            .bind(key)
            .bind(datetime_to_text(self.backend, now))
            .load(conn)?;
        Ok(rows.into_iter().next().map(|r| r.session_data))
    }

    /// [`Self::load`] plus the session index's entry (needs djauth's migrations).
    pub fn load_indexed(
        &self,
        conn: &mut DbConnection,
        key: &str,
        now: NaiveDateTime,
    ) -> Result<Option<LoadedRow>, DbError> {
        let rows: Vec<IndexedDataRow> = super::prepared(&self.load_indexed)
            .bind(key)
            .bind(datetime_to_text(self.backend, now))
            .load(conn)?;
        Ok(rows.into_iter().next().map(|r| LoadedRow {
            last_seen: r.last_seen.as_deref().and_then(super::text_to_datetime),
            device_known: r.device_known == "y",
            session_data: r.session_data,
        }))
    }

    /// `create()`: a new random key, inserted at once, retried on a key collision.
    pub fn create(
        &self,
        conn: &mut DbConnection,
        data: &str,
        expire: NaiveDateTime,
    ) -> Result<String, DbError> {
        loop {
            let key = new_session_key();
            match self.insert(conn, &key, data, expire) {
                Ok(()) => return Ok(key),
                Err(DbError::Query(DieselError::DatabaseError(
                    DatabaseErrorKind::UniqueViolation,
                    _,
                ))) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn insert(
        &self,
        conn: &mut DbConnection,
        key: &str,
        data: &str,
        expire: NaiveDateTime,
    ) -> Result<(), DbError> {
        super::prepared(&self.insert)
            .bind(key)
            .bind(data)
            .bind(datetime_to_text(self.backend, expire))
            .execute(conn)?;
        Ok(())
    }

    /// `save()` of an existing key (`force_update`).
    pub fn save(
        &self,
        conn: &mut DbConnection,
        key: &str,
        data: &str,
        expire: NaiveDateTime,
    ) -> Result<(), SaveError> {
        let n = super::prepared(&self.update)
            .bind(data)
            .bind(datetime_to_text(self.backend, expire))
            .bind(key)
            .execute(conn)
            .map_err(DbError::from)?;
        if n == 0 {
            return Err(SaveError::Interrupted);
        }
        Ok(())
    }

    /// The data of up to `limit` unexpired rows, latest expiry first (a sample of recent
    /// sessions: `expire_date` is indexed).
    pub fn recent_blobs(
        &self,
        conn: &mut DbConnection,
        limit: i64,
        now: NaiveDateTime,
    ) -> Result<Vec<String>, DbError> {
        let d = Dialect(self.backend);
        let sql = format!(
            "SELECT {data} AS session_data FROM {t} WHERE {e} > {now} ORDER BY {e} DESC LIMIT {limit}",
            data = d.ident("session_data"),
            t = d.ident("django_session"),
            e = d.ident("expire_date"),
            now = d.text_as_datetime(1),
        );
        let rows: Vec<DataRow> = diesel::sql_query(sql)
            .bind::<Text, _>(datetime_to_text(self.backend, now))
            .load(conn)?;
        Ok(rows.into_iter().map(|r| r.session_data).collect())
    }

    pub fn delete(&self, conn: &mut DbConnection, key: &str) -> Result<(), DbError> {
        super::prepared(&self.delete).bind(key).execute(conn)?;
        Ok(())
    }

    /// `clear_expired()`: what `clearsessions` runs for the db engines.
    pub fn clear_expired(
        &self,
        conn: &mut DbConnection,
        now: NaiveDateTime,
    ) -> Result<usize, DbError> {
        Ok(super::prepared(&self.clear_expired)
            .bind(datetime_to_text(self.backend, now))
            .execute(conn)?)
    }
}
