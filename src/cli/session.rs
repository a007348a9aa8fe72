use super::db::connect;
use super::user::user_json;
use super::{now_or, read_json_object, refused, CmdResult};
use crate::auth;
use crate::config::Settings;
use crate::db::{now_utc, sessions::SessionTable, users::UserModel};
use crate::formats::session::{AuthHashCheck, Engine, SessionData};
use clap::{Subcommand, ValueEnum};

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// Print a session blob (django_session.session_data or a signed-cookie value) as JSON.
    Decode {
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        /// Clock override (Unix seconds) for the signed-cookie engine's max_age.
        #[arg(long)]
        now: Option<f64>,
        blob: String,
    },
    /// Read a JSON object on stdin and print it as a session blob.
    Encode {
        #[arg(long, value_enum)]
        engine: Option<EngineArg>,
        #[arg(long)]
        now: Option<f64>,
    },
    /// Print the _auth_user_hash Django stores for a user with this auth_user.password value.
    AuthHash { password_field: String },
    /// Compare a stored _auth_user_hash with a password field: current, fallback or mismatch.
    VerifyAuthHash {
        hash: String,
        password_field: String,
    },
    /// Print the data of an unexpired django_session row as JSON.
    Load { session_key: String },
    /// Which user the django_session row KEY belongs to, as Django's get_user decides:
    /// {"user": {...} | null, "action": "none" | "flush" | "cycle"}. Changes nothing.
    User { session_key: String },
    /// Log USERNAME in as Django's login() does on a fresh session: write the row, update
    /// last_login, print the new session key.
    Login { username: String },
    /// Delete the django_session row KEY (what logout's flush does to storage).
    Flush { session_key: String },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum EngineArg {
    Db,
    #[value(name = "signed_cookies", alias = "signed-cookies")]
    SignedCookies,
}

fn engine(arg: Option<EngineArg>, settings: &Settings) -> Result<Engine, super::Failure> {
    Ok(match arg {
        Some(EngineArg::Db) => Engine::Db,
        Some(EngineArg::SignedCookies) => Engine::SignedCookies,
        None => settings.session_engine()?,
    })
}

pub fn run(cmd: SessionCommand, settings: &Settings) -> CmdResult {
    match cmd {
        SessionCommand::Load { session_key } => {
            let (mut conn, backend) = connect(settings)?;
            let blob = SessionTable::new(backend)
                .load(&mut conn, &session_key, now_utc())
                .map_err(refused)?
                .ok_or_else(|| refused("no unexpired session with that key"))?;
            let data = settings
                .session_codec()?
                .decode_db(&blob)
                .map_err(refused)?;
            println!("{}", serde_json::Value::Object(data));
        }
        SessionCommand::User { session_key } => {
            let (mut conn, backend) = connect(settings)?;
            let blob = SessionTable::new(backend)
                .load(&mut conn, &session_key, now_utc())
                .map_err(refused)?;
            // Django treats a missing, expired or undecodable session as empty: anonymous.
            let data = blob
                .and_then(|b| settings.session_codec().ok()?.decode_db(&b).ok())
                .unwrap_or_default();
            let model = UserModel::load(&mut conn, backend, &settings.user_model_settings())
                .map_err(refused)?;
            let hasher = settings.session_auth_hasher()?;
            let resolution =
                auth::resolve(&data, &settings.authentication_backends, &hasher, |pk| {
                    model.get_by_pk(&mut conn, pk)
                })
                .map_err(refused)?;
            let (user, action) = match &resolution {
                auth::Resolution::Anonymous => (None, "none"),
                auth::Resolution::User(u) => (Some(u), "none"),
                auth::Resolution::Rehash { user, .. } => (Some(user), "cycle"),
                auth::Resolution::Flush => (None, "flush"),
            };
            println!(
                "{}",
                serde_json::json!({"user": user.map(user_json), "action": action})
            );
        }
        SessionCommand::Login { username } => {
            let (mut conn, backend) = connect(settings)?;
            let model = UserModel::load(&mut conn, backend, &settings.user_model_settings())
                .map_err(refused)?;
            let mut user = model
                .get_by_username(&mut conn, &username)
                .map_err(refused)?
                .ok_or_else(|| refused("no such user"))?;
            let hasher = settings.session_auth_hasher()?;
            let backend_path = settings
                .authentication_backends
                .first()
                .map(String::as_str)
                .unwrap_or_default();
            let data = auth::login_data(SessionData::new(), &user, backend_path, &hasher);
            let now = now_utc();
            let blob = settings
                .session_codec()?
                .encode_db_at(&data, crate::formats::signing::now_unix());
            let expire = now + chrono::Duration::seconds(settings.session_cookie_age);
            let key = SessionTable::new(backend)
                .create(&mut conn, &blob, expire)
                .map_err(refused)?;
            model
                .update_last_login(&mut conn, &mut user)
                .map_err(refused)?;
            println!("{key}");
        }
        SessionCommand::Flush { session_key } => {
            let (mut conn, backend) = connect(settings)?;
            SessionTable::new(backend)
                .delete(&mut conn, &session_key)
                .map_err(refused)?;
        }
        SessionCommand::Decode {
            engine: e,
            now,
            blob,
        } => {
            let codec = settings.session_codec()?;
            let data = codec
                .decode_at(engine(e, settings)?, blob.trim(), now_or(now))
                .map_err(refused)?;
            println!("{}", serde_json::Value::Object(data));
        }
        SessionCommand::Encode { engine: e, now } => {
            let codec = settings.session_codec()?;
            let data = read_json_object()?;
            println!(
                "{}",
                codec.encode_at(engine(e, settings)?, &data, now_or(now))
            );
        }
        SessionCommand::AuthHash { password_field } => {
            println!("{}", settings.session_auth_hasher()?.hash(&password_field));
        }
        SessionCommand::VerifyAuthHash {
            hash,
            password_field,
        } => {
            match settings
                .session_auth_hasher()?
                .check(Some(&hash), &password_field)
            {
                AuthHashCheck::Current => println!("current"),
                AuthHashCheck::Fallback => println!("fallback"),
                AuthHashCheck::Mismatch => {
                    println!("mismatch");
                    return Err(refused("the hash does not match this password field under SECRET_KEY or its fallbacks"));
                }
            }
        }
    }
    Ok(())
}
