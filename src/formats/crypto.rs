//! `django.utils.crypto`: `salted_hmac`, `constant_time_compare`, `get_random_string`.

use digest::{Digest, KeyInit, Mac};
use hmac::{Hmac, SimpleHmac};
use rand::Rng;
use std::fmt;
use std::str::FromStr;

/// `RANDOM_STRING_CHARS`: the alphabet of salts, session keys' cousins and unusable passwords.
pub const RANDOM_STRING_CHARS: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// `get_random_string(length, allowed_chars)`: uniform choice from a CSPRNG.
pub fn get_random_string(length: usize, allowed_chars: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    (0..length)
        .map(|_| allowed_chars[rng.gen_range(0..allowed_chars.len())] as char)
        .collect()
}

/// `constant_time_compare`: byte equality whose time depends only on the lengths.
pub fn constant_time_compare(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The `hashlib` names `salted_hmac` accepts (those usable with `hmac.new`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    Blake2b,
    Blake2s,
}

impl Algorithm {
    pub const ALL: [Algorithm; 12] = [
        Algorithm::Md5,
        Algorithm::Sha1,
        Algorithm::Sha224,
        Algorithm::Sha256,
        Algorithm::Sha384,
        Algorithm::Sha512,
        Algorithm::Sha3_224,
        Algorithm::Sha3_256,
        Algorithm::Sha3_384,
        Algorithm::Sha3_512,
        Algorithm::Blake2b,
        Algorithm::Blake2s,
    ];

    /// The `hashlib` attribute name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "md5",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha224 => "sha224",
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
            Algorithm::Sha3_224 => "sha3_224",
            Algorithm::Sha3_256 => "sha3_256",
            Algorithm::Sha3_384 => "sha3_384",
            Algorithm::Sha3_512 => "sha3_512",
            Algorithm::Blake2b => "blake2b",
            Algorithm::Blake2s => "blake2s",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an algorithm accepted by the hashlib module.")]
pub struct InvalidAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = InvalidAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| InvalidAlgorithm(s.to_owned()))
    }
}

/// A keyed HMAC ready to sign many values: `salted_hmac` with the key derivation done once.
///
/// Django derives `key = H(key_salt + secret)` on every call; signing a session cookie on
/// every request makes that derivation worth caching.
#[derive(Clone)]
pub enum SaltedHmac {
    Md5(Hmac<md5::Md5>),
    Sha1(Hmac<sha1::Sha1>),
    Sha224(Hmac<sha2::Sha224>),
    Sha256(Hmac<sha2::Sha256>),
    Sha384(Hmac<sha2::Sha384>),
    Sha512(Hmac<sha2::Sha512>),
    Sha3_224(SimpleHmac<sha3::Sha3_224>),
    Sha3_256(SimpleHmac<sha3::Sha3_256>),
    Sha3_384(SimpleHmac<sha3::Sha3_384>),
    Sha3_512(SimpleHmac<sha3::Sha3_512>),
    Blake2b(SimpleHmac<blake2::Blake2b512>),
    Blake2s(SimpleHmac<blake2::Blake2s256>),
}

fn derive<D: Digest, M: KeyInit>(key_salt: &[u8], secret: &[u8]) -> M {
    let mut h = D::new();
    h.update(key_salt);
    h.update(secret);
    // HMAC accepts keys of any length.
    M::new_from_slice(&h.finalize()).expect("HMAC takes any key length")
}

macro_rules! each_variant {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            SaltedHmac::Md5($m) => $body,
            SaltedHmac::Sha1($m) => $body,
            SaltedHmac::Sha224($m) => $body,
            SaltedHmac::Sha256($m) => $body,
            SaltedHmac::Sha384($m) => $body,
            SaltedHmac::Sha512($m) => $body,
            SaltedHmac::Sha3_224($m) => $body,
            SaltedHmac::Sha3_256($m) => $body,
            SaltedHmac::Sha3_384($m) => $body,
            SaltedHmac::Sha3_512($m) => $body,
            SaltedHmac::Blake2b($m) => $body,
            SaltedHmac::Blake2s($m) => $body,
        }
    };
}

impl SaltedHmac {
    pub fn new(algorithm: Algorithm, key_salt: &[u8], secret: &[u8]) -> Self {
        use Algorithm as A;
        match algorithm {
            A::Md5 => Self::Md5(derive::<md5::Md5, _>(key_salt, secret)),
            A::Sha1 => Self::Sha1(derive::<sha1::Sha1, _>(key_salt, secret)),
            A::Sha224 => Self::Sha224(derive::<sha2::Sha224, _>(key_salt, secret)),
            A::Sha256 => Self::Sha256(derive::<sha2::Sha256, _>(key_salt, secret)),
            A::Sha384 => Self::Sha384(derive::<sha2::Sha384, _>(key_salt, secret)),
            A::Sha512 => Self::Sha512(derive::<sha2::Sha512, _>(key_salt, secret)),
            A::Sha3_224 => Self::Sha3_224(derive::<sha3::Sha3_224, _>(key_salt, secret)),
            A::Sha3_256 => Self::Sha3_256(derive::<sha3::Sha3_256, _>(key_salt, secret)),
            A::Sha3_384 => Self::Sha3_384(derive::<sha3::Sha3_384, _>(key_salt, secret)),
            A::Sha3_512 => Self::Sha3_512(derive::<sha3::Sha3_512, _>(key_salt, secret)),
            A::Blake2b => Self::Blake2b(derive::<blake2::Blake2b512, _>(key_salt, secret)),
            A::Blake2s => Self::Blake2s(derive::<blake2::Blake2s256, _>(key_salt, secret)),
        }
    }

    /// `.digest()` of the HMAC over `value`.
    pub fn digest(&self, value: &[u8]) -> Vec<u8> {
        each_variant!(self, m => {
            let mut m = m.clone();
            m.update(value);
            m.finalize().into_bytes().to_vec()
        })
    }

    /// `.digest()` into `out`, without allocating; returns the digest's length (at most 64).
    pub fn digest_into(&self, value: &[u8], out: &mut [u8; 64]) -> usize {
        each_variant!(self, m => {
            let mut m = m.clone();
            m.update(value);
            let d = m.finalize().into_bytes();
            out[..d.len()].copy_from_slice(&d);
            d.len()
        })
    }

    /// `.hexdigest()`: lowercase hex.
    pub fn hexdigest(&self, value: &[u8]) -> String {
        hex_lower(&self.digest(value))
    }
}

/// `salted_hmac(key_salt, value, secret, algorithm=...)`, returning the raw digest.
pub fn salted_hmac(algorithm: Algorithm, key_salt: &str, value: &[u8], secret: &[u8]) -> Vec<u8> {
    SaltedHmac::new(algorithm, key_salt.as_bytes(), secret).digest(value)
}

pub fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from shared/spec/signing.md §1, produced by Django with SECRET_KEY "spec-secret-key".
    #[test]
    fn salted_hmac_matches_django() {
        let s = b"spec-secret-key";
        assert_eq!(
            hex_lower(&salted_hmac(Algorithm::Sha1, "my.salt", b"hello", s)),
            "47d939a13ab476b6531d846c559a9581f78ee802"
        );
        assert_eq!(
            hex_lower(&salted_hmac(Algorithm::Sha256, "my.salt", b"hello", s)),
            "74f293a05b7ee3c75c6c863b41915355a1c954566fcb5778114cad7328fdf1dd"
        );
    }

    #[test]
    fn algorithm_names_round_trip_and_unknown_is_refused() {
        for a in Algorithm::ALL {
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
        }
        assert!("whirlpool".parse::<Algorithm>().is_err());
    }

    #[test]
    fn compare_is_exact() {
        assert!(constant_time_compare(b"abc", b"abc"));
        assert!(!constant_time_compare(b"abc", b"abd"));
        assert!(!constant_time_compare(b"abc", b"abcd"));
    }

    #[test]
    fn random_string_uses_alphabet() {
        let s = get_random_string(200, b"ab");
        assert_eq!(s.len(), 200);
        assert!(s.bytes().all(|c| c == b'a' || c == b'b'));
    }
}
