//! The `djauth` command line: one module per command group, each with its `Args` and `run`.
//!
//! Exit codes: 0 success, 1 a clear "no" about the input (bad signature, wrong password,
//! expired, malformed), 2 usage or configuration errors.

mod csrf;
mod db;
mod manage;
mod password;
mod session;
mod sessions;
mod signing;
mod token;
mod user;

use crate::config::{ConfigError, Settings};
use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "djauth",
    version,
    about = "Django's authentication stack, byte for byte, in Rust"
)]
pub struct Cli {
    /// TOML file of Django settings (SECRET_KEY = "...", ...); default: $DJAUTH_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Decode, encode and inspect Django session data.
    #[command(subcommand)]
    Session(session::SessionCommand),
    /// Hash and check passwords as Django's PASSWORD_HASHERS do.
    #[command(subcommand)]
    Password(password::PasswordCommand),
    /// django.core.signing: Signer, TimestampSigner, dumps/loads.
    #[command(subcommand)]
    Signing(signing::SigningCommand),
    /// Password-reset tokens and uidb64.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// CSRF secrets, masked tokens, and the middleware's checks.
    #[command(subcommand)]
    Csrf(csrf::CsrfCommand),
    /// Serve Django's auth pages (login, logout) on the shared database.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8000")]
        bind: String,
    },
    /// Create Django's tables in an empty database (as Django's migrate would) and djauth's own.
    Migrate,
    /// Check the database and settings; print every problem with its fix.
    Check,
    /// Delete expired sessions (manage.py clearsessions).
    Clearsessions,
    /// Users and their permissions as Django's ModelBackend sees them.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Create a superuser, as Django's `manage.py createsuperuser` (prompts on a terminal).
    Createsuperuser(manage::CreatesuperuserArgs),
    /// Change a user's password, as Django's `manage.py changepassword`.
    Changepassword(manage::ChangepasswordArgs),
    /// End every session of one user, on djauth and Django alike; prints how many ended.
    LogoutUser(sessions::UserRef),
    /// Clear the failed-login count of a username (or --ip ADDRESS).
    Unlock(sessions::UnlockArgs),
    /// The user-to-session index: catch up, rebuild, list.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
}

/// What a command reports when it does not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: the input was refused, for the reason given.
    Refused(String),
    /// Exit 2: the settings or arguments are wrong.
    Config(String),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::Config(e.0)
    }
}

pub type CmdResult = Result<(), Failure>;

pub fn refused(msg: impl std::fmt::Display) -> Failure {
    Failure::Refused(msg.to_string())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs and audit events go to stderr; DJAUTH_LOG (tracing's filter syntax) chooses what.
    // r2d2 logs every failed connection attempt; djauth reports the failure itself, once.
    let default = if matches!(cli.command, Command::Serve { .. }) {
        "info,r2d2=off"
    } else {
        "warn,r2d2=off"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DJAUTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let outcome = Settings::load(cli.config.as_deref())
        .map_err(Failure::from)
        .and_then(|settings| run(cli.command, &settings));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(msg)) => {
            eprintln!("djauth: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Config(msg)) => {
            eprintln!("djauth: {msg}");
            ExitCode::from(2)
        }
    }
}

pub fn run(command: Command, settings: &Settings) -> CmdResult {
    match command {
        Command::Session(c) => session::run(c, settings),
        Command::Password(c) => password::run(c, settings),
        Command::Signing(c) => signing::run(c, settings),
        Command::Token(c) => token::run(c, settings),
        Command::Csrf(c) => csrf::run(c, settings),
        Command::Serve { bind } => db::serve(settings, &bind),
        Command::Migrate => db::migrate(settings),
        Command::Check => db::check(settings),
        Command::Clearsessions => db::clearsessions(settings),
        Command::User(c) => user::run(c, settings),
        Command::Createsuperuser(a) => manage::createsuperuser(a, settings),
        Command::Changepassword(a) => manage::changepassword(a, settings),
        Command::LogoutUser(u) => sessions::logout_user(u, settings),
        Command::Sessions(c) => sessions::run(c, settings),
        Command::Unlock(a) => sessions::unlock(a, settings),
    }
}

/// All of stdin as UTF-8.
pub(crate) fn read_stdin() -> Result<String, Failure> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| refused(format!("cannot read standard input: {e}")))?;
    String::from_utf8(buf).map_err(|_| refused("standard input is not UTF-8"))
}

/// A secret read from stdin loses exactly one trailing newline (`\n` or `\r\n`).
pub(crate) fn strip_one_newline(s: &str) -> &str {
    s.strip_suffix("\r\n")
        .or_else(|| s.strip_suffix('\n'))
        .unwrap_or(s)
}

/// A JSON object read from stdin.
pub(crate) fn read_json_object() -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    match serde_json::from_str(&read_stdin()?) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(refused("standard input must be a JSON object")),
        Err(e) => Err(refused(format!("standard input is not valid JSON: {e}"))),
    }
}

/// `--now` or the clock.
pub(crate) fn now_or(now: Option<f64>) -> f64 {
    now.unwrap_or_else(crate::formats::signing::now_unix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn one_newline_is_stripped() {
        assert_eq!(strip_one_newline("pw\n"), "pw");
        assert_eq!(strip_one_newline("pw\r\n"), "pw");
        assert_eq!(strip_one_newline("pw\n\n"), "pw\n");
        assert_eq!(strip_one_newline("pw "), "pw ");
    }
}
