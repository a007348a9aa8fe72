//! `migrate`, `check` and `clearsessions`.

use super::{CmdResult, Failure};
use crate::config::Settings;
use crate::db::{self, django, users::UserModel, Backend, DbConnection};

pub(crate) fn connect(settings: &Settings) -> Result<(db::PooledConn, Backend), Failure> {
    let (pool, backend) =
        db::pool(settings.database_url(), 1).map_err(|e| Failure::Refused(e.to_string()))?;
    let conn = pool.get().map_err(|e| Failure::Refused(e.to_string()))?;
    Ok((conn, backend))
}

fn db_failure(e: db::DbError) -> Failure {
    Failure::Refused(e.to_string())
}

pub(crate) fn migrate_options(settings: &Settings) -> Result<django::MigrateOptions, Failure> {
    Ok(django::MigrateOptions {
        auto: settings.default_auto_field()?,
        swapped_user_model: settings.auth_user_model != "auth.User",
        sorted_content_types: settings.django_version()? >= crate::formats::DjangoVersion::V6_0,
    })
}

/// `djauth migrate`.
pub fn migrate(settings: &Settings) -> CmdResult {
    let swapped = settings.auth_user_model != "auth.User";
    let (mut conn, backend) = connect(settings)?;
    let report =
        django::migrate(&mut conn, backend, migrate_options(settings)?).map_err(db_failure)?;
    if swapped {
        // A swapped model's table is the project's own (Django's migrate made it): check that
        // the settings describe it.
        UserModel::load(&mut conn, backend, &settings.user_model_settings()).map_err(db_failure)?;
    }
    if report.created_django_tables {
        println!(
            "Created Django's auth, contenttypes and sessions tables ({} migrations recorded, {} content types, {} permissions).",
            django::DJANGO_MIGRATIONS.len(),
            report.content_types,
            report.permissions
        );
    } else {
        println!("Django's tables are present; left them as they are.");
    }
    if report.djauth_migrations.is_empty() {
        println!("djauth's tables are up to date.");
    } else {
        for m in &report.djauth_migrations {
            println!("Applied djauth migration {m}");
        }
    }
    Ok(())
}

/// `djauth serve`: the embedded SQLite default is migrated on first start.
pub fn serve(settings: &Settings, bind: &str) -> CmdResult {
    settings.require_secret_key()?;
    let (mut conn, backend) = connect(settings)?;
    if backend == Backend::Sqlite {
        let report =
            django::migrate(&mut conn, backend, migrate_options(settings)?).map_err(db_failure)?;
        if report.created_django_tables {
            eprintln!(
                "djauth: created Django's tables in {}",
                settings.database_url()
            );
        }
    } else {
        // The session index's tables and triggers are what keeps revocation complete.
        let pending = pending_djauth_migrations(&mut conn).map_err(db_failure)?;
        if pending > 0 {
            return Err(Failure::Refused(format!(
                "{pending} djauth migration(s) not applied to {}; run `djauth migrate` first",
                backend.name()
            )));
        }
    }
    drop(conn);
    actix_web::rt::System::new()
        .block_on(crate::web::serve(settings.clone(), bind))
        .map_err(|e| Failure::Refused(format!("{e:#}")))
}

/// `djauth check`: every problem with its fix; exit 1 on any.
pub fn check(settings: &Settings) -> CmdResult {
    let mut problems: Vec<django::Problem> = vec![];
    if settings.secret_key.is_empty() {
        problems.push(django::Problem {
            what: "SECRET_KEY is empty".into(),
            fix: "set DJAUTH_SECRET_KEY (or SECRET_KEY in the config file) to the Django site's SECRET_KEY".into(),
        });
    }
    match connect(settings) {
        Err(Failure::Refused(e)) | Err(Failure::Config(e)) => problems.push(django::Problem {
            what: e,
            fix: "check DATABASE_URL and that the database server is running".into(),
        }),
        Ok((mut conn, backend)) => {
            problems.extend(django::check_tables(&mut conn, backend).map_err(db_failure)?);
            if let Err(e) = UserModel::load(&mut conn, backend, &settings.user_model_settings()) {
                problems.push(django::Problem {
                    what: e.to_string(),
                    fix: "set AUTH_USER_MODEL, AUTH_USER_TABLE, USERNAME_FIELD and EMAIL_FIELD as in Django's settings".into(),
                });
            }
            let pending = pending_djauth_migrations(&mut conn).map_err(db_failure)?;
            if pending > 0 {
                problems.push(django::Problem {
                    what: format!("{pending} djauth migration(s) not applied"),
                    fix: "run `djauth migrate`".into(),
                });
            }
        }
    }
    if problems.is_empty() {
        println!("System check identified no issues.");
        return Ok(());
    }
    for p in &problems {
        println!("- {}\n  fix: {}", p.what, p.fix);
    }
    Err(Failure::Refused(format!(
        "System check identified {} issue(s).",
        problems.len()
    )))
}

fn pending_djauth_migrations(conn: &mut DbConnection) -> Result<usize, db::DbError> {
    django::pending_djauth_migrations(conn)
}

/// `clearsessions`: what `SessionStore.clear_expired()` does for the configured engine.
pub fn clearsessions(settings: &Settings) -> CmdResult {
    if settings.session_engine()? == crate::formats::session::Engine::SignedCookies {
        return Ok(());
    }
    let (mut conn, backend) = connect(settings)?;
    db::sessions::SessionTable::new(backend)
        .clear_expired(&mut conn, db::now_utc())
        .map_err(db_failure)?;
    Ok(())
}
