use super::{now_or, read_json_object, refused, CmdResult, Failure};
use crate::config::Settings;
use crate::formats::session::parse_isoformat;
use crate::formats::tokens::{uidb64_decode, uidb64_encode, TokenUser};
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Read a user as JSON on stdin ({"pk", "password", "last_login", "email"}) and print a
    /// password-reset token for it.
    Make {
        #[arg(long)]
        now: Option<f64>,
    },
    /// Check TOKEN for the user on stdin: exit 0 if Django would accept it, 1 if not.
    Check {
        #[arg(long)]
        now: Option<f64>,
        token: String,
    },
    /// Print the uidb64 of a primary key, as reset links carry it.
    Uidb64 { pk: String },
    /// Print the primary key a uidb64 names.
    DecodeUidb64 { uidb64: String },
}

struct OwnedUser {
    pk: String,
    password: String,
    last_login: Option<NaiveDateTime>,
    email: String,
}

fn read_user(settings: &Settings) -> Result<OwnedUser, Failure> {
    let obj = read_json_object()?;
    let text = |k: &str| -> Result<String, Failure> {
        match obj.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            None | Some(Value::Null) => Ok(String::new()),
            Some(_) => Err(refused(format!("user field {k:?} must be a string"))),
        }
    };
    let tz = settings.time_zone()?;
    let last_login = match obj.get("last_login") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let dt = parse_isoformat(s, tz)
                .ok_or_else(|| refused(format!("last_login {s:?} is not an ISO 8601 datetime")))?;
            // Django loads an aware UTC datetime with USE_TZ, the stored naive one without.
            Some(if settings.use_tz {
                dt.naive_utc()
            } else {
                dt.naive_local()
            })
        }
        Some(_) => return Err(refused("last_login must be an ISO 8601 string or null")),
    };
    let pk = text("pk")?;
    if pk.is_empty() {
        return Err(refused("the user needs a pk"));
    }
    Ok(OwnedUser {
        pk,
        password: text("password")?,
        last_login,
        email: text("email")?,
    })
}

fn instant(now: Option<f64>) -> DateTime<Utc> {
    let t = now_or(now);
    DateTime::from_timestamp(t.floor() as i64, ((t - t.floor()) * 1e9) as u32)
        .unwrap_or_else(Utc::now)
}

pub fn run(cmd: TokenCommand, settings: &Settings) -> CmdResult {
    match cmd {
        TokenCommand::Make { now } => {
            let gen = settings.token_generator()?;
            let u = read_user(settings)?;
            let user = TokenUser {
                pk: &u.pk,
                password: &u.password,
                last_login: u.last_login,
                email: &u.email,
            };
            println!("{}", gen.make_token_at(&user, instant(now)));
        }
        TokenCommand::Check { now, token } => {
            let gen = settings.token_generator()?;
            let u = read_user(settings)?;
            let user = TokenUser {
                pk: &u.pk,
                password: &u.password,
                last_login: u.last_login,
                email: &u.email,
            };
            if !gen.check_token_at(&user, token.trim(), instant(now)) {
                return Err(refused("the token is invalid or expired for this user"));
            }
            println!("valid");
        }
        TokenCommand::Uidb64 { pk } => println!("{}", uidb64_encode(&pk)),
        TokenCommand::DecodeUidb64 { uidb64 } => {
            println!(
                "{}",
                uidb64_decode(&uidb64).ok_or_else(|| refused("not a valid uidb64"))?
            )
        }
    }
    Ok(())
}
