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
    type Connection = DbConnection;
    type Error = DbError;

    fn connect(&self) -> Result<DbConnection, DbError> {
        self.0.establish()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), DbError> {
        conn.batch_execute("SELECT 1").map_err(DbError::Query)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
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
