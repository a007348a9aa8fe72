//! `djauth logout-user` and `djauth sessions …`: the user-to-session index from the shell.

use super::db::connect;
use super::{refused, CmdResult, Failure};
use crate::config::Settings;
use crate::db::index::SessionIndex;
use crate::db::users::{User, UserModel};
use crate::db::{now_utc, DbConnection};
use crate::formats::session::{device_name, public_session_id};
use clap::{Args, Subcommand};

/// Which user: exactly one of USERNAME, --id, --email.
#[derive(Args, Debug)]
pub struct UserRef {
    /// The USERNAME_FIELD value.
    pub username: Option<String>,
    /// Select by primary key.
    #[arg(long, conflicts_with_all = ["username", "email"])]
    pub id: Option<String>,
    /// Select by EMAIL_FIELD (case-insensitive; must match one user).
    #[arg(long, conflicts_with = "username")]
    pub email: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// Index the sessions written since the last catch-up (Django's included).
    CatchUp,
    /// Rebuild the whole index from django_session.
    Reindex,
    /// A user's sessions as JSON lines (id, device, IP, created, last seen).
    List(UserRef),
}

pub(crate) fn find_user(
    model: &UserModel,
    conn: &mut DbConnection,
    which: &UserRef,
) -> Result<User, Failure> {
    let found = match (&which.username, &which.id, &which.email) {
        (Some(name), None, None) => model.get_by_username(conn, name).map_err(refused)?,
        (None, Some(pk), None) => model.get_by_pk(conn, pk).map_err(refused)?,
        (None, None, Some(email)) => {
            let mut users = model.get_by_email(conn, email).map_err(refused)?;
            if users.len() > 1 {
                return Err(refused(format!(
                    "{} users have that email address; name one with --id",
                    users.len()
                )));
            }
            users.pop()
        }
        _ => {
            return Err(Failure::Config(
                "name one user: USERNAME, --id PK or --email ADDRESS".into(),
            ))
        }
    };
    found.ok_or_else(|| refused("no such user"))
}

/// `djauth logout-user`: every session of the user ends, on both engines.
pub fn logout_user(which: UserRef, settings: &Settings) -> CmdResult {
    let (mut conn, backend) = connect(settings)?;
    let model =
        UserModel::load(&mut conn, backend, &settings.user_model_settings()).map_err(refused)?;
    let user = find_user(&model, &mut conn, &which)?;
    let codec = settings.session_codec()?;
    let now = crate::formats::signing::now_unix().floor() as i64;
    let ended = SessionIndex::new(backend)
        .revoke(&mut conn, &codec, &user.pk, None, Some(now))
        .map_err(refused)?;
    println!(
        "{ended} session(s) ended for {} (id {}).",
        user.username, user.pk
    );
    let event = crate::audit::Event::new(crate::audit::Kind::SessionRevoked)
        .user(&user.pk, &user.username)
        .detail(serde_json::json!({"ended": ended, "via": "logout-user"}));
    if settings.audit_log_table {
        crate::audit::write_now(&mut conn, backend, &event).map_err(|e| {
            refused(format!(
                "the sessions ended, but the audit row was not written: {e}"
            ))
        })?;
    }
    let audit = crate::audit::Audit::start(settings, None);
    audit.record(event);
    audit.flush(std::time::Duration::from_secs(10));
    Ok(())
}

/// `djauth unlock`: clears the login-failure count of a username or a client address.
#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// The username as typed into the login form.
    pub username: Option<String>,
    /// A client address instead.
    #[arg(long, conflicts_with = "username")]
    pub ip: Option<String>,
}

pub fn unlock(args: UnlockArgs, settings: &Settings) -> CmdResult {
    use crate::db::lockout::{Kind, Lockout};
    let (kind, key) = match (args.username, args.ip) {
        (Some(u), None) => (Kind::Username, u),
        (None, Some(ip)) => (Kind::Address, ip),
        _ => return Err(Failure::Config("name a USERNAME or --ip ADDRESS".into())),
    };
    let (mut conn, backend) = connect(settings)?;
    let n = Lockout::new(backend, settings.lockout_policy()?)
        .clear(&mut conn, kind, &key)
        .map_err(refused)?;
    if n == 0 {
        println!("{key} had no failed login attempts recorded.");
    } else {
        println!("Unlocked {key}.");
    }
    Ok(())
}

pub fn run(cmd: SessionsCommand, settings: &Settings) -> CmdResult {
    let (mut conn, backend) = connect(settings)?;
    let index = SessionIndex::new(backend);
    let codec = settings.session_codec()?;
    match cmd {
        SessionsCommand::CatchUp => {
            let done = index.catch_up(&mut conn, &codec).map_err(refused)?;
            println!(
                "{} queued write(s) caught up; {} session(s) indexed.",
                done.queued, done.indexed
            );
        }
        SessionsCommand::Reindex => {
            let done = index.reindex(&mut conn, &codec).map_err(refused)?;
            println!(
                "{} session(s) indexed from {} row(s).",
                done.indexed, done.queued
            );
        }
        SessionsCommand::List(which) => {
            let model = UserModel::load(&mut conn, backend, &settings.user_model_settings())
                .map_err(refused)?;
            let user = find_user(&model, &mut conn, &which)?;
            index.catch_up(&mut conn, &codec).map_err(refused)?;
            for s in index
                .sessions_of(&mut conn, &user.pk, now_utc())
                .map_err(refused)?
            {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": public_session_id(&s.session_key),
                        "device": device_name(s.user_agent.as_deref()),
                        "ip": s.ip,
                        "user_agent": s.user_agent,
                        "created": s.created.and_utc().to_rfc3339(),
                        "last_seen": s.last_seen.and_utc().to_rfc3339(),
                    })
                );
            }
        }
    }
    Ok(())
}
