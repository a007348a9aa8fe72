//! Storage: Django's own tables (and djauth's) on SQLite, PostgreSQL and MySQL/MariaDB
//! through diesel, with the backend chosen at run time by `DATABASE_URL`.
//!
//! Django's tables can be customised (a swapped user model, bigint or UUID keys), so their
//! queries are built once per database from a [`Dialect`] and the configured names, and
//! bound with diesel. Datetimes travel as text in Django's own formats, which keeps SQLite's
//! stored strings byte-identical to what Django writes.

pub mod django;
pub mod index;
pub mod lockout;
pub mod perms;
pub mod sessions;
pub mod users;

#[cfg(test)]
mod sqlite_tests;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use std::time::Duration;

/// One database connection of whichever backend `DATABASE_URL` names.
#[cfg(feature = "mysql")]
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(diesel::PgConnection),
    Mysql(diesel::MysqlConnection),
    Sqlite(diesel::SqliteConnection),
}

/// One database connection of whichever backend `DATABASE_URL` names.
#[cfg(not(feature = "mysql"))]
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL: {0}")]
    Url(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error("{0}")]
    Schema(String),
}

/// The embedded default: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://djauth.sqlite3";

/// Where `DATABASE_URL` points, checked before anything connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub backend: Backend,
    /// What the backend's `establish` takes: a file path for SQLite, the URL otherwise.
    pub address: String,
}

impl Target {
    /// `sqlite://relative.db`, `sqlite:///absolute.db`, `sqlite://:memory:`,
    /// `postgres://…` / `postgresql://…`, `mysql://…`. Anything else is refused rather
    /// than opened as a SQLite file by accident.
    pub fn parse(url: &str) -> Result<Target, DbError> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            DbError::Url(format!(
                "{url:?} has no scheme (expected sqlite://, postgres:// or mysql://)"
            ))
        })?;
        let backend = match scheme {
            "sqlite" => Backend::Sqlite,
            "postgres" | "postgresql" => Backend::Postgres,
            "mysql" | "mariadb" => Backend::Mysql,
            other => {
                return Err(DbError::Url(format!(
                    "unsupported scheme {other:?} (expected sqlite://, postgres:// or mysql://)"
                )))
            }
        };
        if backend == Backend::Mysql && !cfg!(feature = "mysql") {
            return Err(DbError::Url(
                "this djauth was built without MySQL support; rebuild with `cargo build --features mysql` \
                 (needs libmariadb-dev and pkg-config)"
                    .into(),
            ));
        }
        let address = match backend {
            Backend::Sqlite if rest.is_empty() => {
                return Err(DbError::Url("sqlite:// needs a file path".into()))
            }
            Backend::Sqlite => rest.to_owned(),
            Backend::Mysql => format!("mysql://{rest}"),
            Backend::Postgres => url.to_owned(),
        };
        Ok(Target { backend, address })
    }

    fn establish(&self) -> Result<DbConnection, DbError> {
        // libpq's messages span lines ("…refused\n\tIs the server running…"): one line each.
        let err = |e: diesel::ConnectionError| {
            DbError::Connect(
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        };
        let mut conn = match self.backend {
            Backend::Sqlite => DbConnection::Sqlite(
                diesel::SqliteConnection::establish(&self.address).map_err(err)?,
            ),
            Backend::Postgres => DbConnection::Postgresql(
                diesel::PgConnection::establish(&self.address).map_err(err)?,
            ),
            #[cfg(feature = "mysql")]
            Backend::Mysql => {
                DbConnection::Mysql(diesel::MysqlConnection::establish(&self.address).map_err(err)?)
            }
            #[cfg(not(feature = "mysql"))]
            Backend::Mysql => {
                unreachable!("Target::parse refuses mysql:// without the mysql feature")
            }
        };
        // What Django sets on its own connections, so both sides see the same database.
        let setup = match self.backend {
            // Python's sqlite3 waits 5 s on a locked database; Django turns foreign keys on.
            Backend::Sqlite => "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
            // With USE_TZ Django's connections run in UTC.
            Backend::Postgres => "SET TIME ZONE 'UTC';",
            Backend::Mysql => "SET time_zone = '+00:00';",
        };
        conn.batch_execute(setup).map_err(DbError::Query)?;
        Ok(conn)
    }
}

/// r2d2 manager that opens the backend `DATABASE_URL` named (diesel's own manager would try
/// every backend in turn, and SQLite accepts any string as a path).
#[derive(Debug, Clone)]
pub struct Manager(pub Target);

impl ManageConnection for Manager {
    type Connection = PoolConn;
    type Error = DbError;

    fn connect(&self) -> Result<PoolConn, DbError> {
        Ok(PoolConn {
            db: self.0.establish()?,
            checked: std::time::Instant::now(),
        })
    }

    fn is_valid(&self, conn: &mut PoolConn) -> Result<(), DbError> {
        // A `SELECT 1` before every checkout would be one more statement (a round trip on
        // PostgreSQL and MySQL) per request. A connection checked within the last second is
        // handed out as it is: a server restart keeps connections idle for longer than that,
        // so they are all checked (and replaced) when it comes back.
        if conn.checked.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        conn.db.batch_execute("SELECT 1").map_err(DbError::Query)?;
        conn.checked = std::time::Instant::now();
        Ok(())
    }

    fn has_broken(&self, _conn: &mut PoolConn) -> bool {
        false
    }
}

/// A pooled connection and when it was last known to work.
pub struct PoolConn {
    db: DbConnection,
    checked: std::time::Instant,
}

impl std::ops::Deref for PoolConn {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        &self.db
    }
}

impl std::ops::DerefMut for PoolConn {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.db
    }
}

pub type Pool = r2d2::Pool<Manager>;
pub type PooledConn = r2d2::PooledConnection<Manager>;

/// A pool for `url`, failing fast if the database cannot be reached.
pub fn pool(url: &str, max_size: u32) -> Result<(Pool, Backend), DbError> {
    let target = Target::parse(url)?;
    let backend = target.backend;
    // An in-memory SQLite database exists once per connection: keep exactly one.
    let max_size = if target.address == ":memory:" {
        1
    } else {
        max_size
    };
    let pool = r2d2::Pool::builder()
        .max_size(max_size)
        .connection_timeout(Duration::from_secs(5))
        .build(Manager(target))
        .map_err(|e| DbError::Connect(e.to_string()))?;
    Ok((pool, backend))
}

/// Fixed SQL with text binds that diesel keeps prepared per connection. `sql_query` marks
/// its text unsafe to cache, so every call would parse and plan the statement again; on the
/// per-request queries that was the largest share of the time. Only for SQL built once (the
/// cache is keyed by the text and never evicts).
pub struct Prepared<'a> {
    sql: &'a str,
    binds: Vec<std::borrow::Cow<'a, str>>,
}

pub fn prepared(sql: &str) -> Prepared<'_> {
    Prepared {
        sql,
        binds: Vec::with_capacity(3),
    }
}

impl<'a> Prepared<'a> {
    pub fn bind(mut self, value: impl Into<std::borrow::Cow<'a, str>>) -> Self {
        self.binds.push(value.into());
        self
    }
}

impl diesel::query_builder::QueryId for Prepared<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for Prepared<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl<DB> diesel::query_builder::QueryFragment<DB> for Prepared<'_>
where
    DB: diesel::backend::Backend + diesel::sql_types::HasSqlType<diesel::sql_types::Text>,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        // diesel writes each placeholder itself as it binds (`?`, or `$n` counting from 1),
        // so the text goes in between them.
        let mut rest = self.sql;
        let mut binds = self.binds.iter();
        let mut n = 0;
        while let Some((start, end, number)) = next_placeholder(rest) {
            n += 1;
            if number.is_some_and(|k| k != n) {
                return Err(prepared_error(format!("placeholder ${n} expected: {rest}")));
            }
            let value = binds
                .next()
                .ok_or_else(|| prepared_error(format!("no value for placeholder {n}")))?;
            out.push_sql(&rest[..start]);
            out.push_bind_param::<diesel::sql_types::Text, str>(value.as_ref())?;
            rest = &rest[end..];
        }
        out.push_sql(rest);
        if binds.next().is_some() {
            return Err(prepared_error(format!(
                "more values than the {n} placeholders"
            )));
        }
        Ok(())
    }
}

fn prepared_error(msg: String) -> diesel::result::Error {
    diesel::result::Error::QueryBuilderError(msg.into())
}

/// Where the next `?` or `$n` placeholder is: (start, end, n).
fn next_placeholder(sql: &str) -> Option<(usize, usize, Option<usize>)> {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'?' => return Some((i, i + 1, None)),
            b'$' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits > 0 {
                    let end = i + 1 + digits;
                    return Some((i, end, sql[i + 1..end].parse().ok()));
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

impl<Conn> RunQueryDsl<Conn> for Prepared<'_> {}

/// SQL spelling that differs between backends.
#[derive(Debug, Clone, Copy)]
pub struct Dialect(pub Backend);

impl Dialect {
    /// A quoted identifier (`"x"`, or `` `x` `` on MySQL).
    pub fn ident(self, name: &str) -> String {
        match self.0 {
            Backend::Mysql => format!("`{}`", name.replace('`', "``")),
            _ => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    /// The `n`th (1-based) bind parameter.
    pub fn param(self, n: usize) -> String {
        match self.0 {
            Backend::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    /// An expression reading a datetime column as text `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC).
    pub fn datetime_as_text(self, column: &str) -> String {
        match self.0 {
            Backend::Sqlite => column.to_owned(),
            Backend::Postgres => {
                format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
            }
            Backend::Mysql => format!("DATE_FORMAT({column}, '%Y-%m-%d %H:%i:%s.%f')"),
        }
    }

    /// A bind parameter holding a datetime as text, converted for the column.
    pub fn text_as_datetime(self, n: usize) -> String {
        match self.0 {
            Backend::Postgres => format!("CAST(${n} AS timestamptz)"),
            _ => "?".into(),
        }
    }

    /// A key column read as text.
    pub fn as_text(self, column: &str) -> String {
        match self.0 {
            Backend::Mysql => format!("CAST({column} AS CHAR)"),
            _ => format!("CAST({column} AS TEXT)"),
        }
    }
}

/// A UTC instant as Django writes it to SQLite and MySQL (`str(datetime)`: microseconds only
/// when non-zero), with `+00:00` for PostgreSQL's timestamptz.
pub fn datetime_to_text(backend: Backend, dt: chrono::NaiveDateTime) -> String {
    use chrono::Timelike;
    let base = if dt.nanosecond() / 1000 == 0 {
        dt.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        format!(
            "{}.{:06}",
            dt.format("%Y-%m-%d %H:%M:%S"),
            dt.nanosecond() / 1000
        )
    };
    match backend {
        Backend::Postgres => format!("{base}+00:00"),
        _ => base,
    }
}

/// Parses what [`Dialect::datetime_as_text`] returns (and what Django stores in SQLite).
pub fn text_to_datetime(text: &str) -> Option<chrono::NaiveDateTime> {
    let t = text.trim();
    let t = t
        .strip_suffix("+00:00")
        .or_else(|| t.strip_suffix("+00"))
        .unwrap_or(t);
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(t, f).ok())
}

/// A transaction that writes. On SQLite it takes the write lock up front (`BEGIN
/// IMMEDIATE`): a deferred one that reads first and then writes can only fail with
/// "database is locked" when another writer got there in between — and it makes writers
/// that read first take turns.
pub fn write_transaction<T>(
    conn: &mut DbConnection,
    backend: Backend,
    f: impl FnOnce(&mut DbConnection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    if backend != Backend::Sqlite {
        return conn.transaction(f);
    }
    conn.batch_execute("BEGIN IMMEDIATE")?;
    match f(conn) {
        Ok(v) => {
            conn.batch_execute("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// "Now", truncated to the microseconds every backend stores.
pub fn now_utc() -> chrono::NaiveDateTime {
    use chrono::Timelike;
    let now = chrono::Utc::now().naive_utc();
    now.with_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Target::parse("sqlite://djauth.sqlite3").unwrap().address,
            "djauth.sqlite3"
        );
        assert_eq!(
            Target::parse("sqlite:///tmp/x.db").unwrap().address,
            "/tmp/x.db"
        );
        assert_eq!(
            Target::parse("postgres://u@h/db").unwrap().backend,
            Backend::Postgres
        );
        assert_eq!(
            Target::parse("postgresql://u@h/db").unwrap().backend,
            Backend::Postgres
        );
        for bad in ["djauth.sqlite3", "redis://x", "sqlite://", "http://x"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn datetimes_like_django() {
        let dt = chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_micro_opt(3, 4, 5, 678_901)
            .unwrap();
        assert_eq!(
            datetime_to_text(Backend::Sqlite, dt),
            "2024-01-02 03:04:05.678901"
        );
        assert_eq!(
            datetime_to_text(Backend::Postgres, dt),
            "2024-01-02 03:04:05.678901+00:00"
        );
        let whole = dt.with_nanosecond(0).unwrap();
        assert_eq!(
            datetime_to_text(Backend::Mysql, whole),
            "2024-01-02 03:04:05"
        );
        assert_eq!(text_to_datetime("2024-01-02 03:04:05.678901"), Some(dt));
        assert_eq!(text_to_datetime("2024-01-02 03:04:05.678901+00"), Some(dt));
        assert_eq!(text_to_datetime("2024-01-02 03:04:05"), Some(whole));
    }
    use chrono::Timelike;
}
