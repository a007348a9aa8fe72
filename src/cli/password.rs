use super::{read_stdin, refused, strip_one_newline, CmdResult, Failure};
use crate::config::Settings;
use crate::formats::hashers::is_password_usable;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum PasswordCommand {
    /// Read a password on stdin and print its encoded hash (as make_password).
    Hash {
        /// Django's algorithm name (pbkdf2_sha256, argon2, md5, ...); must be in
        /// PASSWORD_HASHERS. Default: the first of PASSWORD_HASHERS.
        #[arg(long)]
        hasher: Option<String>,
        /// A fixed salt instead of a fresh random one.
        #[arg(long)]
        salt: Option<String>,
    },
    /// Read a password on stdin and check it against ENCODED: exit 0 if it matches, 1 if
    /// not; prints whether Django would rehash it on login (must_update).
    Check { encoded: String },
}

pub fn run(cmd: PasswordCommand, settings: &Settings) -> CmdResult {
    let hashers = settings.hashers()?;
    let input = read_stdin()?;
    let password = strip_one_newline(&input);
    match cmd {
        PasswordCommand::Hash { hasher, salt } => {
            if let Some(name) = &hasher {
                hashers
                    .get(name)
                    .map_err(|e| Failure::Config(e.to_string()))?;
            }
            let encoded = hashers
                .make_password(password, salt.as_deref(), hasher.as_deref())
                .map_err(refused)?;
            println!("{encoded}");
            Ok(())
        }
        PasswordCommand::Check { encoded } => {
            let encoded = encoded.trim();
            let algorithm = hashers.identify(encoded).ok().map(|h| h.algorithm());
            let v = hashers.verify_password(Some(password), encoded);
            println!(
                "{}",
                serde_json::json!({"valid": v.valid, "must_update": v.must_update, "algorithm": algorithm})
            );
            if v.valid {
                return Ok(());
            }
            Err(refused(if !is_password_usable(encoded) {
                "the password is unusable (it starts with \"!\")".to_owned()
            } else {
                match hashers.identify(encoded) {
                    Err(e) => e.to_string(),
                    Ok(h) => match h.verify(password, encoded) {
                        Err(e) => e.to_string(),
                        Ok(_) => "the password does not match".to_owned(),
                    },
                }
            }))
        }
    }
}
