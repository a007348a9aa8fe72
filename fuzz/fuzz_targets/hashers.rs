//! Password hashes: `identify`, `must_update`, `verify_password` and each hasher's own parsing
//! on arbitrary encoded strings. Input: the encoded hash, or `password\nencoded`.
//!
//! Work factors come from the encoded string, so a fuzzed hash could ask for 2^31 bcrypt
//! rounds or a billion PBKDF2 iterations. [`cheap`] reads the cost fields the way each hasher
//! will and lets only small ones (or ones the hasher refuses before any work) reach the
//! hashing; every input still goes through identification and parsing. The preferred hasher is
//! MD5, so `verify_password`'s fake run and `harden_runtime` cost nothing.
#![no_main]
#[path = "../common.rs"]
mod common;

use common::*;
use djauth::formats::hashers::{
    self, Argon2Hasher, BcryptHasher, CryptHasher, Hashers, Md5Hasher, PasswordHasher, Pbkdf2Hasher,
    ScryptHasher, Sha1Hasher, UnsaltedMd5Hasher, UnsaltedSha1Hasher,
};
use djauth::formats::DjangoVersion;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const MAX_ITERATIONS: u64 = 2000;
const MAX_BCRYPT_COST: u32 = 5;

/// Every hasher djauth knows, MD5 first; Django 5.2 work factors for the rest.
fn all_hashers() -> &'static Hashers {
    static H: OnceLock<Hashers> = OnceLock::new();
    H.get_or_init(|| {
        let mut paths: Vec<&str> = vec!["django.contrib.auth.hashers.MD5PasswordHasher"];
        paths.extend(hashers::KNOWN_HASHERS.iter().map(|(p, _)| *p).filter(|p| !p.contains(".MD5")));
        Hashers::from_setting(&paths, DjangoVersion::V5_2).unwrap()
    })
}

/// The same hashers with the smallest work factors, to round-trip every input's password.
fn cheap_hashers() -> Vec<Box<dyn PasswordHasher>> {
    let mut bcrypt = BcryptHasher::plain();
    bcrypt.rounds = 4;
    let mut bcrypt_sha256 = BcryptHasher::sha256();
    bcrypt_sha256.rounds = 4;
    vec![
        Box::new(Pbkdf2Hasher::sha256(16)),
        Box::new(Pbkdf2Hasher::sha1(16)),
        Box::new(Argon2Hasher { time_cost: 1, memory_cost: 8, parallelism: 1, hash_len: 16 }),
        Box::new(bcrypt),
        Box::new(bcrypt_sha256),
        Box::new(ScryptHasher { work_factor: 16, block_size: 1, parallelism: 1 }),
        Box::new(Md5Hasher),
        Box::new(Sha1Hasher),
        Box::new(UnsaltedSha1Hasher),
        Box::new(UnsaltedMd5Hasher),
        Box::new(CryptHasher),
    ]
}

/// `parse_u32` in hashers/algorithms.rs: Python's `int()` on a `%d` field.
fn py_int(s: &str) -> Option<u64> {
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return None;
    }
    t.replace('_', "").parse::<u32>().ok().map(u64::from)
}

/// Whether verifying `encoded` with `algorithm`'s hasher (at `default_*` for zero fields) is
/// cheap: small work factors, or parameters the hasher refuses before hashing.
fn cheap(algorithm: &str, encoded: &str, default_iterations: u64, default_scrypt: (u64, u64, u64)) -> bool {
    let fields: Vec<&str> = encoded.split('$').collect();
    match algorithm {
        "pbkdf2_sha256" | "pbkdf2_sha1" => match encoded.splitn(4, '$').nth(1).and_then(py_int) {
            Some(0) => default_iterations <= MAX_ITERATIONS,
            Some(n) => n <= MAX_ITERATIONS,
            None => true,
        },
        "bcrypt" | "bcrypt_sha256" => match fields.get(3).map(|c| c.parse::<u32>()) {
            Some(Ok(c)) => !(4..=31).contains(&c) || c <= MAX_BCRYPT_COST,
            _ => true,
        },
        "scrypt" => {
            let parts: Vec<&str> = encoded.splitn(7, '$').collect();
            if parts.len() != 6 {
                return true;
            }
            let (Some(n), Some(r), Some(p)) = (py_int(parts[1]), py_int(parts[3]), py_int(parts[4])) else {
                return true;
            };
            let n = if n == 0 { default_scrypt.0 } else { n };
            let r = if r == 0 { default_scrypt.1 } else { r };
            let p = if p == 0 { default_scrypt.2 } else { p };
            let mem = 128u128 * r as u128 * (n as u128 + p as u128 + 2);
            // Refused before hashing: not a power of two, or over OpenSSL's 32 MiB.
            n < 2 || !n.is_power_of_two() || mem > 32 << 20 || n * r * p <= 4096
        }
        // Argon2 allocates m KiB and makes t passes over it. Huge m is a known issue (an
        // allocation failure aborts the process; see fuzz/README.md), so it is kept out here.
        "argon2" => {
            let params = match fields.len() {
                6 => fields[3],
                5 => fields[2],
                _ => return true,
            };
            let mut cost = (1u64, 1u64, 1u64);
            for kv in params.split(',') {
                let Some((k, v)) = kv.split_once('=') else { return true };
                let Ok(v) = v.parse::<u32>() else { return true };
                match k {
                    "m" => cost.0 = v as u64,
                    "t" => cost.1 = v as u64,
                    "p" => cost.2 = v as u64,
                    _ => return true,
                }
            }
            cost.0 <= 64 && cost.1 <= 2 && cost.2 <= 8
        }
        "crypt" => {
            let hash = encoded.splitn(3, '$').nth(2).unwrap_or("");
            let small = |s: &str| s.parse::<u32>().map_or(true, |r| r as u64 <= MAX_ITERATIONS);
            if let Some(rest) = hash.strip_prefix('_') {
                // BSDi: four crypt-base64 characters of rounds.
                const B64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
                let mut rounds = 0u64;
                for (i, c) in rest.bytes().take(4).enumerate() {
                    match B64.iter().position(|&a| a == c) {
                        Some(v) => rounds |= (v as u64) << (6 * i),
                        None => return false,
                    }
                }
                return rounds <= MAX_ITERATIONS;
            }
            let f: Vec<&str> = hash.split('$').collect();
            match f.get(1).copied() {
                Some("2a" | "2b" | "2y") => f.get(2).is_none_or(|c| c.parse::<u32>().map_or(true, |c| c <= MAX_BCRYPT_COST)),
                Some("sha1") => f.get(2).is_none_or(|r| small(r)),
                Some("5" | "6") => f.get(2).and_then(|r| r.strip_prefix("rounds=")).is_none_or(small),
                _ => true,
            }
        }
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    let (password, encoded) = match s.split_once('\n') {
        Some((p, e)) => (p, e),
        None => ("hunter2", s.as_ref()),
    };
    let all = all_hashers();
    let v5 = DjangoVersion::V5_2;

    // identify_hasher never panics, and names a hasher that knows its own algorithm.
    if let Ok(h) = all.identify(encoded) {
        assert!(all.get(h.algorithm()).is_ok());
    }
    let _ = Hashers::django_default(v5).identify(encoded);
    let _ = hashers::is_password_usable(encoded);
    for h in cheap_hashers() {
        let _ = h.must_update(encoded);
    }

    let algorithm = all.identify(encoded).map(|h| h.algorithm()).unwrap_or("");
    if cheap(algorithm, encoded, v5.pbkdf2_iterations() as u64, (1 << 14, 8, v5.scrypt_parallelism() as u64)) {
        let v = all.verify_password(Some(password), encoded);
        // Only the preferred hasher's own, up-to-date hashes need no update.
        if v.valid && !v.must_update {
            assert_eq!(algorithm, "md5");
        }
    }
    let v = all.verify_password(None, encoded);
    assert!(!v.valid);

    // One hasher per input, at its smallest work factors: parse the input with it, and
    // round-trip the input's password through it.
    let mut cheap_list = cheap_hashers();
    let h = cheap_list.swap_remove((pick(data) % 11) as usize);
    h.harden_runtime(password, encoded);
    if cheap(h.algorithm(), encoded, 16, (16, 1, 1)) {
        let _ = h.verify(password, encoded);
    }
    let salt = match h.algorithm() {
        "unsalted_md5" | "unsalted_sha1" => String::new(),
        "crypt" => "ab".into(),
        _ => h.salt(),
    };
    match h.encode(password, &salt) {
        Ok(made) => {
            assert_eq!(h.verify(password, &made), Ok(true), "{made}");
            assert_eq!(all.identify(&made).map(|x| x.algorithm()), Ok(h.algorithm()), "{made}");
            assert_eq!(h.must_update(&made), Ok(false), "{made}");
        }
        Err(e) => assert!(
            matches!(e, hashers::HashError::PasswordTooLong) || h.algorithm() == "crypt",
            "{} refused {password:?}: {e}",
            h.algorithm()
        ),
    }
});
