use super::{now_or, read_json_object, refused, CmdResult};
use crate::config::Settings;
use crate::formats::session::{AuthHashCheck, Engine};
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
