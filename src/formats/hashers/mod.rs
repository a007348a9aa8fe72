//! `django.contrib.auth.hashers`: every hasher Django ships, `PASSWORD_HASHERS` semantics,
//! `identify_hasher`, `verify_password`/`check_password` with `must_update` and
//! `harden_runtime`, unusable passwords.
//!
//! The first hasher of `PASSWORD_HASHERS` encodes; every listed hasher verifies; a hasher
//! that is not listed verifies nothing, exactly as in Django.

mod algorithms;

pub use algorithms::{
    Argon2Hasher, BcryptHasher, CryptHasher, Md5Hasher, Pbkdf2Hasher, ScryptHasher, Sha1Hasher,
    UnsaltedMd5Hasher, UnsaltedSha1Hasher,
};

use super::crypto::{get_random_string, RANDOM_STRING_CHARS};
use super::DjangoVersion;

pub const UNUSABLE_PASSWORD_PREFIX: &str = "!";
pub const UNUSABLE_PASSWORD_SUFFIX_LENGTH: usize = 40;
/// `ceil(128 / log2(62))`: the salt length `BasePasswordHasher.salt()` generates.
pub const SALT_LENGTH: usize = 22;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// `get_hasher`'s ValueError, word for word.
    #[error("Unknown password hashing algorithm '{0}'. Did you specify it in the PASSWORD_HASHERS setting?")]
    UnknownAlgorithm(String),
    /// The stored value does not parse for its algorithm (Django raises from `decode`).
    #[error("malformed {algorithm} hash: {reason}")]
    Malformed {
        algorithm: &'static str,
        reason: String,
    },
    #[error("{0}")]
    InvalidSalt(String),
    /// bcrypt ≥ 5 refuses passwords over 72 bytes instead of truncating them.
    #[error("password is longer than 72 bytes, which bcrypt cannot hash")]
    PasswordTooLong,
    #[error("{0}")]
    Unsupported(String),
}

pub(crate) fn malformed(algorithm: &'static str, reason: impl Into<String>) -> HashError {
    HashError::Malformed {
        algorithm,
        reason: reason.into(),
    }
}

/// One of Django's `BasePasswordHasher` subclasses.
pub trait PasswordHasher: Send + Sync {
    /// Django's `algorithm` attribute: the prefix of encoded hashes.
    fn algorithm(&self) -> &'static str;
    /// A fresh salt as this hasher's `salt()` makes it.
    fn salt(&self) -> String {
        get_random_string(SALT_LENGTH, RANDOM_STRING_CHARS)
    }
    fn encode(&self, password: &str, salt: &str) -> Result<String, HashError>;
    /// Constant-time where Django is (re-encode and compare the whole string).
    fn verify(&self, password: &str, encoded: &str) -> Result<bool, HashError>;
    /// Whether Django, with this hasher preferred, would rewrite `encoded` after a login.
    fn must_update(&self, _encoded: &str) -> Result<bool, HashError> {
        Ok(false)
    }
    /// Extra work after a failed check so timing does not reveal an old work factor.
    fn harden_runtime(&self, _password: &str, _encoded: &str) {}
}

/// `must_update_salt(salt, 128)`: fewer than 22 characters of a 62-letter alphabet.
pub(crate) fn must_update_salt(salt_chars: usize) -> bool {
    (salt_chars as f64) * 62f64.log2() < 128.0
}

/// `_check_encode_args`.
pub(crate) fn check_salt(salt: &str) -> Result<(), HashError> {
    if salt.is_empty() || salt.contains('$') {
        return Err(HashError::InvalidSalt(
            "salt must be provided and cannot contain $.".into(),
        ));
    }
    Ok(())
}

/// The dotted class paths `PASSWORD_HASHERS` may name. Hashers Django has since removed stay
/// accepted so that an old database still verifies, and gets upgraded on login.
pub const KNOWN_HASHERS: &[(&str, &str)] = &[
    (
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "pbkdf2_sha256",
    ),
    (
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "pbkdf2_sha1",
    ),
    ("django.contrib.auth.hashers.Argon2PasswordHasher", "argon2"),
    (
        "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
        "bcrypt_sha256",
    ),
    ("django.contrib.auth.hashers.BCryptPasswordHasher", "bcrypt"),
    ("django.contrib.auth.hashers.ScryptPasswordHasher", "scrypt"),
    ("django.contrib.auth.hashers.MD5PasswordHasher", "md5"),
    ("django.contrib.auth.hashers.SHA1PasswordHasher", "sha1"),
    (
        "django.contrib.auth.hashers.UnsaltedSHA1PasswordHasher",
        "unsalted_sha1",
    ),
    (
        "django.contrib.auth.hashers.UnsaltedMD5PasswordHasher",
        "unsalted_md5",
    ),
    ("django.contrib.auth.hashers.CryptPasswordHasher", "crypt"),
];

/// `global_settings.PASSWORD_HASHERS` (identical in 4.2–6.1).
pub const DEFAULT_PASSWORD_HASHERS: [&str; 5] = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
];

/// Builds the hasher a dotted path names, with `version`'s work factors.
pub fn hasher_for_path(path: &str, version: DjangoVersion) -> Option<Box<dyn PasswordHasher>> {
    let algorithm = KNOWN_HASHERS.iter().find(|(p, _)| *p == path)?.1;
    Some(hasher_for_algorithm(algorithm, version).expect("every known path has a hasher"))
}

pub fn hasher_for_algorithm(
    algorithm: &str,
    version: DjangoVersion,
) -> Option<Box<dyn PasswordHasher>> {
    Some(match algorithm {
        "pbkdf2_sha256" => Box::new(Pbkdf2Hasher::sha256(version.pbkdf2_iterations())),
        "pbkdf2_sha1" => Box::new(Pbkdf2Hasher::sha1(version.pbkdf2_iterations())),
        "argon2" => Box::new(Argon2Hasher::default()),
        "bcrypt_sha256" => Box::new(BcryptHasher::sha256()),
        "bcrypt" => Box::new(BcryptHasher::plain()),
        "scrypt" => Box::new(ScryptHasher::new(version.scrypt_parallelism())),
        "md5" => Box::new(Md5Hasher),
        "sha1" => Box::new(Sha1Hasher),
        "unsalted_sha1" => Box::new(UnsaltedSha1Hasher),
        "unsalted_md5" => Box::new(UnsaltedMd5Hasher),
        "crypt" => Box::new(CryptHasher),
        _ => return None,
    })
}

/// The outcome of `verify_password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub valid: bool,
    /// Django would call the setter (rehash with the preferred hasher) if `valid`.
    pub must_update: bool,
}

/// The loaded `PASSWORD_HASHERS`, in order.
pub struct Hashers {
    list: Vec<Box<dyn PasswordHasher>>,
}

impl std::fmt::Debug for Hashers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|h| h.algorithm()))
            .finish()
    }
}

impl Hashers {
    /// `paths` is the `PASSWORD_HASHERS` setting. Errors name the first path djauth cannot load.
    pub fn from_setting<S: AsRef<str>>(
        paths: &[S],
        version: DjangoVersion,
    ) -> Result<Self, String> {
        if paths.is_empty() {
            return Err("PASSWORD_HASHERS must name at least one hasher".into());
        }
        let list = paths
            .iter()
            .map(|p| {
                hasher_for_path(p.as_ref(), version).ok_or_else(|| {
                    format!(
                        "PASSWORD_HASHERS: unknown hasher {:?} (djauth knows Django's own: {})",
                        p.as_ref(),
                        KNOWN_HASHERS
                            .iter()
                            .map(|(p, _)| *p)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Hashers { list })
    }

    pub fn django_default(version: DjangoVersion) -> Self {
        Self::from_setting(&DEFAULT_PASSWORD_HASHERS, version).expect("defaults are known")
    }

    pub fn preferred(&self) -> &dyn PasswordHasher {
        self.list[0].as_ref()
    }

    pub fn algorithms(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.list.iter().map(|h| h.algorithm())
    }

    /// `get_hasher(algorithm)`.
    pub fn get(&self, algorithm: &str) -> Result<&dyn PasswordHasher, HashError> {
        self.list
            .iter()
            .find(|h| h.algorithm() == algorithm)
            .map(|h| h.as_ref())
            .ok_or_else(|| HashError::UnknownAlgorithm(algorithm.to_owned()))
    }

    /// `identify_hasher(encoded)`, with Django's special cases for ancient unsalted hashes.
    pub fn identify(&self, encoded: &str) -> Result<&dyn PasswordHasher, HashError> {
        let n = encoded.chars().count();
        let algorithm =
            if (n == 32 && !encoded.contains('$')) || (n == 37 && encoded.starts_with("md5$$")) {
                "unsalted_md5"
            } else if n == 46 && encoded.starts_with("sha1$$") {
                "unsalted_sha1"
            } else {
                encoded.split('$').next().unwrap_or("")
            };
        self.get(algorithm)
    }

    /// `make_password(password, salt, hasher)`; `None` picks the preferred hasher and a fresh salt.
    pub fn make_password(
        &self,
        password: &str,
        salt: Option<&str>,
        algorithm: Option<&str>,
    ) -> Result<String, HashError> {
        let hasher = match algorithm {
            Some(a) => self.get(a)?,
            None => self.preferred(),
        };
        match salt {
            Some(s) if !s.is_empty() => hasher.encode(password, s),
            _ => hasher.encode(password, &hasher.salt()),
        }
    }

    /// `verify_password(password, encoded)`: `None` for the password is Django's "no password"
    /// (it still costs one hash, so unknown users take as long as known ones).
    pub fn verify_password(&self, password: Option<&str>, encoded: &str) -> Verification {
        let hasher = match password {
            Some(_) if is_password_usable(encoded) => self.identify(encoded).ok(),
            _ => None,
        };
        let (Some(password), Some(hasher)) = (password, hasher) else {
            self.fake_runtime();
            return Verification {
                valid: false,
                must_update: false,
            };
        };
        let preferred = self.preferred();
        let hasher_changed = hasher.algorithm() != preferred.algorithm();
        // Django lets a malformed hash raise here; a login must not fail loudly, so a
        // malformed hash simply does not verify.
        let must_update = hasher_changed || preferred.must_update(encoded).unwrap_or(false);
        let valid = hasher.verify(password, encoded).unwrap_or(false);
        if !valid && !hasher_changed && must_update {
            hasher.harden_runtime(password, encoded);
        }
        Verification { valid, must_update }
    }

    /// What Django runs for an unknown user or an unusable password: one preferred hash.
    pub fn fake_runtime(&self) {
        let _ = self.make_password(
            &get_random_string(UNUSABLE_PASSWORD_SUFFIX_LENGTH, RANDOM_STRING_CHARS),
            None,
            None,
        );
    }
}

/// `make_password(None)`: `"!"` and 40 random characters.
pub fn make_unusable_password() -> String {
    format!(
        "{UNUSABLE_PASSWORD_PREFIX}{}",
        get_random_string(UNUSABLE_PASSWORD_SUFFIX_LENGTH, RANDOM_STRING_CHARS)
    )
}

/// `is_password_usable`: any `!`-prefixed value (even a bare `!` from Django ≤ 1.5) is unusable.
pub fn is_password_usable(encoded: &str) -> bool {
    !encoded.starts_with(UNUSABLE_PASSWORD_PREFIX)
}

#[cfg(test)]
mod tests;
