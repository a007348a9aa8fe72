use super::{now_or, read_stdin, refused, CmdResult, Failure};
use crate::config::Settings;
use crate::formats::crypto::Algorithm;
use crate::formats::signing::{Signer, TimestampSigner, DEFAULT_MAX_DECOMPRESSED, DEFAULT_SALT};
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub enum SigningCommand {
    /// signing.dumps: read JSON on stdin, print the signed token.
    Dumps {
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        compress: bool,
        #[arg(long)]
        now: Option<f64>,
    },
    /// signing.loads: verify TOKEN (with SECRET_KEY_FALLBACKS) and print its JSON.
    Loads {
        #[command(flatten)]
        key: KeyArgs,
        #[arg(long)]
        max_age: Option<f64>,
        #[arg(long)]
        now: Option<f64>,
        token: String,
    },
    /// Signer.sign / TimestampSigner.sign.
    Sign {
        #[command(flatten)]
        signer: SignerArgs,
        #[arg(long)]
        now: Option<f64>,
        value: String,
    },
    /// Signer.unsign / TimestampSigner.unsign: print the value or refuse.
    Unsign {
        #[command(flatten)]
        signer: SignerArgs,
        #[arg(long)]
        max_age: Option<f64>,
        #[arg(long)]
        now: Option<f64>,
        value: String,
    },
}

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[arg(long, default_value = DEFAULT_SALT)]
    salt: String,
    /// Sign with this key instead of SECRET_KEY (fallbacks still verify).
    #[arg(long)]
    key: Option<String>,
}

#[derive(Args, Debug)]
pub struct SignerArgs {
    /// Default: "django.core.signing.Signer" (or "...TimestampSigner" with --timestamp).
    #[arg(long)]
    salt: Option<String>,
    #[arg(long, default_value = "sha256")]
    algorithm: String,
    #[arg(long, default_value = ":")]
    sep: String,
    /// Use TimestampSigner.
    #[arg(long)]
    timestamp: bool,
}

fn key<'a>(explicit: &'a Option<String>, settings: &'a Settings) -> Result<&'a str, Failure> {
    match explicit {
        Some(k) => Ok(k),
        None => Ok(settings.require_secret_key()?),
    }
}

fn timestamp_signer(args: &KeyArgs, settings: &Settings) -> Result<TimestampSigner, Failure> {
    Ok(TimestampSigner::new(
        key(&args.key, settings)?.as_bytes(),
        &settings.secret_key_fallbacks,
        &args.salt,
        Algorithm::Sha256,
    ))
}

fn signer(args: &SignerArgs, settings: &Settings) -> Result<Signer, Failure> {
    let algorithm: Algorithm = args
        .algorithm
        .parse()
        .map_err(|e| Failure::Config(format!("{e}")))?;
    let default_salt = if args.timestamp {
        "django.core.signing.TimestampSigner"
    } else {
        "django.core.signing.Signer"
    };
    let salt = args
        .salt
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(default_salt);
    Signer::new(
        settings.require_secret_key()?.as_bytes(),
        &settings.secret_key_fallbacks,
        salt,
        algorithm,
    )
    .with_sep(&args.sep)
    .map_err(|e| Failure::Config(e.to_string()))
}

pub fn run(cmd: SigningCommand, settings: &Settings) -> CmdResult {
    match cmd {
        SigningCommand::Dumps { key, compress, now } => {
            let value: serde_json::Value = serde_json::from_str(&read_stdin()?)
                .map_err(|e| refused(format!("standard input is not valid JSON: {e}")))?;
            println!(
                "{}",
                timestamp_signer(&key, settings)?.sign_object_at(&value, compress, now_or(now))
            );
        }
        SigningCommand::Loads {
            key,
            max_age,
            now,
            token,
        } => {
            let value = timestamp_signer(&key, settings)?
                .unsign_object_at(token.trim(), max_age, now_or(now), DEFAULT_MAX_DECOMPRESSED)
                .map_err(refused)?;
            println!("{value}");
        }
        SigningCommand::Sign {
            signer: args,
            now,
            value,
        } => {
            let s = signer(&args, settings)?;
            let out = if args.timestamp {
                TimestampSigner::from_signer(s).sign_at(&value, now_or(now))
            } else {
                s.sign(&value)
            };
            println!("{out}");
        }
        SigningCommand::Unsign {
            signer: args,
            max_age,
            now,
            value,
        } => {
            let s = signer(&args, settings)?;
            let out = if args.timestamp {
                TimestampSigner::from_signer(s)
                    .unsign_at(&value, max_age, now_or(now))
                    .map(str::to_owned)
            } else {
                s.unsign(&value).map(str::to_owned)
            };
            println!("{}", out.map_err(refused)?);
        }
    }
    Ok(())
}
