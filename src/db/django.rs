//! Django's own tables: `djauth migrate` on an empty database creates them exactly as
//! Django 5.2's `migrate` does (it replays the DDL Django runs, captured from Django by
//! `migrations/django/generate.py`), records the migrations in `django_migrations`, and
//! creates the content types and default permissions Django's post-migrate handlers would.
//! On a database Django already migrated it touches none of Django's tables.

use super::users::introspect;
use super::{datetime_to_text, now_utc, Backend, DbConnection, DbError, Dialect};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

/// Marks the start of each statement in the captured DDL files (see their headers).
const STATEMENT_MARK: &str = "-- djauth:statement";

const SQLITE_DDL: &str = include_str!("../../migrations/django/sqlite.sql");
const POSTGRES_DDL_AUTO: &str = include_str!("../../migrations/django/postgres-autofield.sql");
const POSTGRES_DDL_BIG: &str = include_str!("../../migrations/django/postgres-bigautofield.sql");
const MYSQL_DDL_AUTO: &str = include_str!("../../migrations/django/mysql-autofield.sql");
const MYSQL_DDL_BIG: &str = include_str!("../../migrations/django/mysql-bigautofield.sql");

/// The migrations `migrate` applies for auth, contenttypes and sessions (4.2–6.1), in the
/// order Django applies them.
pub const DJANGO_MIGRATIONS: [(&str, &str); 15] = [
    ("contenttypes", "0001_initial"),
    ("contenttypes", "0002_remove_content_type_name"),
    ("auth", "0001_initial"),
    ("auth", "0002_alter_permission_name_max_length"),
    ("auth", "0003_alter_user_email_max_length"),
    ("auth", "0004_alter_user_username_opts"),
    ("auth", "0005_alter_user_last_login_null"),
    ("auth", "0006_require_contenttypes_0002"),
    ("auth", "0007_alter_validators_add_error_messages"),
    ("auth", "0008_alter_user_username_max_length"),
    ("auth", "0009_alter_user_last_name_max_length"),
    ("auth", "0010_alter_group_name_max_length"),
    ("auth", "0011_update_proxy_permissions"),
    ("auth", "0012_alter_user_first_name_max_length"),
    ("sessions", "0001_initial"),
];

/// The models of those apps, in Django's creation order, with `verbose_name_raw`.
pub const DJANGO_MODELS: [(&str, &str, &str); 5] = [
    ("auth", "permission", "permission"),
    ("auth", "group", "group"),
    ("auth", "user", "user"),
    ("contenttypes", "contenttype", "content type"),
    ("sessions", "session", "session"),
];

/// `Meta.default_permissions`.
pub const DEFAULT_PERMISSIONS: [&str; 4] = ["add", "change", "delete", "view"];

/// Django's tables djauth relies on.
pub const DJANGO_TABLES: [&str; 9] = [
    "django_migrations",
    "django_content_type",
    "auth_permission",
    "auth_group",
    "auth_group_permissions",
    "auth_user",
    "auth_user_groups",
    "auth_user_user_permissions",
    "django_session",
];

/// Which id type Django gives the M2M tables and `django_migrations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoField {
    AutoField,
    BigAutoField,
}

impl AutoField {
    /// `DEFAULT_AUTO_FIELD` by its dotted name.
    pub fn from_setting(name: &str) -> Option<Self> {
        match name {
            "django.db.models.AutoField" => Some(Self::AutoField),
            "django.db.models.BigAutoField" => Some(Self::BigAutoField),
            _ => None,
        }
    }
}

/// The DDL statements Django runs on `backend`, in order.
pub fn ddl(backend: Backend, auto: AutoField) -> Vec<&'static str> {
    let text = match (backend, auto) {
        (Backend::Sqlite, _) => SQLITE_DDL,
        (Backend::Postgres, AutoField::AutoField) => POSTGRES_DDL_AUTO,
        (Backend::Postgres, AutoField::BigAutoField) => POSTGRES_DDL_BIG,
        (Backend::Mysql, AutoField::AutoField) => MYSQL_DDL_AUTO,
        (Backend::Mysql, AutoField::BigAutoField) => MYSQL_DDL_BIG,
    };
    // A statement is every line after a marker line up to the next one; the header before
    // the first marker (which mentions the marker too, indented) is commentary.
    let mut statements: Vec<&'static str> = vec![];
    let mut start: Option<usize> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.starts_with(STATEMENT_MARK) {
            if let Some(s) = start {
                statements.push(&text[s..offset]);
            }
            start = Some(offset + line.len());
        }
        offset += line.len();
    }
    if let Some(s) = start {
        statements.push(&text[s..]);
    }
    statements
        .into_iter()
        .map(|s| s.trim().trim_end_matches(';').trim())
        .filter(|s| !s.is_empty())
        .collect()
}

/// What `migrate` found and did.
#[derive(Debug, Default)]
pub struct MigrateReport {
    pub created_django_tables: bool,
    pub content_types: usize,
    pub permissions: usize,
    pub djauth_migrations: Vec<String>,
}

fn existing_tables(
    conn: &mut DbConnection,
    backend: Backend,
) -> Result<Vec<&'static str>, DbError> {
    let mut found = vec![];
    for t in DJANGO_TABLES {
        if !introspect(conn, backend, t)?.is_empty() {
            found.push(t);
        }
    }
    Ok(found)
}

/// `djauth migrate`.
/// What `migrate` needs to know about the Django site it stands in for.
#[derive(Debug, Clone, Copy)]
pub struct MigrateOptions {
    /// `DEFAULT_AUTO_FIELD`.
    pub auto: AutoField,
    /// `AUTH_USER_MODEL` is not `auth.User`.
    pub swapped_user_model: bool,
    /// Django 6.0+ creates an app's content types in model-name order (5.2: definition order).
    pub sorted_content_types: bool,
}

pub fn migrate(
    conn: &mut DbConnection,
    backend: Backend,
    opts: MigrateOptions,
) -> Result<MigrateReport, DbError> {
    let MigrateOptions {
        auto,
        swapped_user_model,
        ..
    } = opts;
    let mut report = MigrateReport::default();
    // A swapped user model (AUTH_USER_MODEL) replaces auth_user and its two M2M tables.
    let required: Vec<&str> = DJANGO_TABLES
        .into_iter()
        .filter(|t| !(swapped_user_model && t.starts_with("auth_user")))
        .collect();
    let existing = existing_tables(conn, backend)?;
    let present: Vec<&str> = required
        .iter()
        .copied()
        .filter(|t| existing.contains(t))
        .collect();
    if existing.is_empty() {
        if swapped_user_model {
            return Err(DbError::Schema(
                "the database is empty and AUTH_USER_MODEL names a custom model: run Django's \
                 `manage.py migrate` first (djauth creates Django's default user model only)"
                    .into(),
            ));
        }
        create_django_schema(conn, backend, auto, opts.sorted_content_types, &mut report)?;
    } else if present.len() < required.len() {
        let missing: Vec<_> = required.iter().filter(|t| !existing.contains(t)).collect();
        return Err(DbError::Schema(format!(
            "the database has some of Django's tables but not {missing:?}: finish Django's own `manage.py migrate` \
             (djauth creates Django's tables only in an empty database)"
        )));
    }
    report.djauth_migrations = run_djauth_migrations(conn)?;
    Ok(report)
}

fn create_django_schema(
    conn: &mut DbConnection,
    backend: Backend,
    auto: AutoField,
    sorted_content_types: bool,
    report: &mut MigrateReport,
) -> Result<(), DbError> {
    let d = Dialect(backend);
    let statements = ddl(backend, auto);
    // MySQL commits every DDL statement by itself; elsewhere a failure leaves nothing behind.
    conn.transaction::<_, DbError, _>(|conn| {
        for stmt in &statements {
            conn.batch_execute(stmt).map_err(|e| DbError::Schema(format!("{e} in: {stmt}")))?;
        }
        let now = datetime_to_text(backend, now_utc());
        let insert_migration = format!(
            "INSERT INTO {} ({}, {}, {}) VALUES ({}, {}, {})",
            d.ident("django_migrations"),
            d.ident("app"),
            d.ident("name"),
            d.ident("applied"),
            d.param(1),
            d.param(2),
            d.text_as_datetime(3)
        );
        for (app, name) in DJANGO_MIGRATIONS {
            diesel::sql_query(&insert_migration)
                .bind::<Text, _>(app)
                .bind::<Text, _>(name)
                .bind::<Text, _>(&now)
                .execute(conn)?;
        }
        let insert_ct = format!(
            "INSERT INTO {} ({}, {}) VALUES ({}, {})",
            d.ident("django_content_type"),
            d.ident("app_label"),
            d.ident("model"),
            d.param(1),
            d.param(2)
        );
        let mut content_types = DJANGO_MODELS.to_vec();
        if sorted_content_types {
            // Per app, in the order the apps' post_migrate handlers run (stable sort).
            content_types.sort_by_key(|(app, model, _)| {
                (DJANGO_MODELS.iter().position(|(a, _, _)| a == app), *model)
            });
        }
        for (app, model, _) in content_types {
            diesel::sql_query(&insert_ct).bind::<Text, _>(app).bind::<Text, _>(model).execute(conn)?;
            report.content_types += 1;
        }
        // Permissions reference content types by id: look them up rather than assume 1..5.
        let insert_perm = format!(
            "INSERT INTO {perm} ({name}, {ctid}, {codename}) SELECT {p1}, ct.{id}, {p2} FROM {ct} ct \
             WHERE ct.{app_label} = {p3} AND ct.{model} = {p4}",
            perm = d.ident("auth_permission"),
            name = d.ident("name"),
            ctid = d.ident("content_type_id"),
            codename = d.ident("codename"),
            id = d.ident("id"),
            ct = d.ident("django_content_type"),
            app_label = d.ident("app_label"),
            model = d.ident("model"),
            p1 = d.param(1),
            p2 = d.param(2),
            p3 = d.param(3),
            p4 = d.param(4),
        );
        for (app, model, verbose) in DJANGO_MODELS {
            for action in DEFAULT_PERMISSIONS {
                diesel::sql_query(&insert_perm)
                    .bind::<Text, _>(format!("Can {action} {verbose}"))
                    .bind::<Text, _>(format!("{action}_{model}"))
                    .bind::<Text, _>(app)
                    .bind::<Text, _>(model)
                    .execute(conn)?;
                report.permissions += 1;
            }
        }
        Ok(())
    })?;
    report.created_django_tables = true;
    Ok(())
}

mod embedded {
    use diesel_migrations::{embed_migrations, EmbeddedMigrations};
    pub const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
    pub const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
    #[cfg(feature = "mysql")]
    pub const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");
}

/// djauth's own tables, as diesel migrations per backend.
pub fn run_djauth_migrations(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    use diesel_migrations::MigrationHarness;
    let applied = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(embedded::SQLITE),
        DbConnection::Postgresql(c) => c.run_pending_migrations(embedded::POSTGRES),
        #[cfg(feature = "mysql")]
        DbConnection::Mysql(c) => c.run_pending_migrations(embedded::MYSQL),
    }
    .map_err(|e| DbError::Schema(format!("djauth migrations: {e}")))?;
    Ok(applied.into_iter().map(|v| v.to_string()).collect())
}

/// How many of djauth's own migrations have not run.
pub fn pending_djauth_migrations(conn: &mut DbConnection) -> Result<usize, DbError> {
    use diesel_migrations::MigrationHarness;
    let pending = match conn {
        DbConnection::Sqlite(c) => c.pending_migrations(embedded::SQLITE).map(|v| v.len()),
        DbConnection::Postgresql(c) => c.pending_migrations(embedded::POSTGRES).map(|v| v.len()),
        #[cfg(feature = "mysql")]
        DbConnection::Mysql(c) => c.pending_migrations(embedded::MYSQL).map(|v| v.len()),
    };
    pending.map_err(|e| DbError::Schema(format!("djauth migrations: {e}")))
}

/// One problem `djauth check` found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub what: String,
    pub fix: String,
}

/// Django's tables as djauth needs them (the user model is checked by `UserModel::load`).
pub fn check_tables(conn: &mut DbConnection, backend: Backend) -> Result<Vec<Problem>, DbError> {
    let mut problems = vec![];
    let expect: [(&str, &[&str]); 7] = [
        (
            "django_session",
            &["session_key", "session_data", "expire_date"],
        ),
        ("django_content_type", &["id", "app_label", "model"]),
        (
            "auth_permission",
            &["id", "name", "content_type_id", "codename"],
        ),
        ("auth_group", &["id", "name"]),
        (
            "auth_group_permissions",
            &["id", "group_id", "permission_id"],
        ),
        ("django_migrations", &["id", "app", "name", "applied"]),
        ("auth_user", &[]),
    ];
    for (table, columns) in expect {
        let cols = introspect(conn, backend, table)?;
        if cols.is_empty() {
            if table != "auth_user" {
                problems.push(Problem {
                    what: format!("table {table} is missing"),
                    fix:
                        "run `djauth migrate` on an empty database, or Django's `manage.py migrate`"
                            .into(),
                });
            }
            continue;
        }
        for c in columns.iter() {
            if !cols.iter().any(|x| x.name == *c) {
                problems.push(Problem {
                    what: format!("table {table} has no column {c}"),
                    fix: "run Django's `manage.py migrate` to bring Django's tables up to date"
                        .into(),
                });
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_files_parse_into_their_marked_statements() {
        for (backend, auto, text) in [
            (Backend::Sqlite, AutoField::AutoField, SQLITE_DDL),
            (Backend::Postgres, AutoField::AutoField, POSTGRES_DDL_AUTO),
            (Backend::Postgres, AutoField::BigAutoField, POSTGRES_DDL_BIG),
            (Backend::Mysql, AutoField::AutoField, MYSQL_DDL_AUTO),
            (Backend::Mysql, AutoField::BigAutoField, MYSQL_DDL_BIG),
        ] {
            let marked = text
                .lines()
                .filter(|l| l.starts_with(STATEMENT_MARK))
                .count();
            let stmts = ddl(backend, auto);
            assert_eq!(stmts.len(), marked, "{backend:?} {auto:?}");
            assert!(
                stmts
                    .iter()
                    .all(|s| !s.starts_with("--") && !s.ends_with(';')),
                "{backend:?}"
            );
        }
        assert!(ddl(Backend::Postgres, AutoField::BigAutoField)
            .iter()
            .any(|s| s.contains("bigint")));
    }
}
