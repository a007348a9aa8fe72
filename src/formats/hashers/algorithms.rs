//! The hashers themselves. Each follows its Django class line by line: `encode`, `decode`
//! (as the parsing inside each method), `verify` by re-encoding and comparing the whole
//! string, `must_update`, `harden_runtime`.

use super::{check_salt, malformed, must_update_salt, HashError, PasswordHasher};
use crate::formats::crypto::{
    constant_time_compare, get_random_string, hex_lower, RANDOM_STRING_CHARS,
};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use digest::Digest;

fn ct_eq(a: &str, b: &str) -> bool {
    constant_time_compare(a.as_bytes(), b.as_bytes())
}

/// Python's `int(s)` for the decimal fields Django writes with `%d`.
fn parse_u32(algorithm: &'static str, field: &str, s: &str) -> Result<u32, HashError> {
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return Err(malformed(
            algorithm,
            format!("{field} {s:?} is not an integer"),
        ));
    }
    t.replace('_', "")
        .parse()
        .map_err(|_| malformed(algorithm, format!("{field} {s:?} is out of range")))
}

// ---------------------------------------------------------------- PBKDF2

/// `PBKDF2PasswordHasher` / `PBKDF2SHA1PasswordHasher`.
pub struct Pbkdf2Hasher {
    algorithm: &'static str,
    sha1: bool,
    iterations: u32,
}

impl Pbkdf2Hasher {
    pub fn sha256(iterations: u32) -> Self {
        Pbkdf2Hasher {
            algorithm: "pbkdf2_sha256",
            sha1: false,
            iterations,
        }
    }
    pub fn sha1(iterations: u32) -> Self {
        Pbkdf2Hasher {
            algorithm: "pbkdf2_sha1",
            sha1: true,
            iterations,
        }
    }
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// The raw derived key (32 bytes for SHA-256, 20 for SHA-1).
    pub fn derive(&self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        if self.sha1 {
            let mut out = [0u8; 20];
            pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, &mut out);
            out.to_vec()
        } else {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, iterations, &mut out);
            out.to_vec()
        }
    }

    fn encode_with(
        &self,
        password: &str,
        salt: &str,
        iterations: u32,
    ) -> Result<String, HashError> {
        check_salt(salt)?;
        // `iterations or self.iterations`: a stored 0 means the default.
        let iterations = if iterations == 0 {
            self.iterations
        } else {
            iterations
        };
        let hash = STANDARD.encode(self.derive(password.as_bytes(), salt.as_bytes(), iterations));
        Ok(format!("{}${iterations}${salt}${hash}", self.algorithm))
    }

    fn decode<'a>(&self, encoded: &'a str) -> Result<(u32, &'a str), HashError> {
        let mut parts = encoded.splitn(4, '$');
        let (Some(alg), Some(iterations), Some(salt), Some(_hash)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed(
                self.algorithm,
                "expected algorithm$iterations$salt$hash",
            ));
        };
        if alg != self.algorithm {
            return Err(malformed(self.algorithm, format!("algorithm is {alg:?}")));
        }
        Ok((parse_u32(self.algorithm, "iterations", iterations)?, salt))
    }
}

impl PasswordHasher for Pbkdf2Hasher {
    fn algorithm(&self) -> &'static str {
        self.algorithm
    }
    fn encode(&self, password: &str, salt: &str) -> Result<String, HashError> {
        self.encode_with(password, salt, self.iterations)
    }
    fn verify(&self, password: &str, encoded: &str) -> Result<bool, HashError> {
        let (iterations, salt) = self.decode(encoded)?;
        Ok(ct_eq(
            encoded,
            &self.encode_with(password, salt, iterations)?,
        ))
    }
    fn must_update(&self, encoded: &str) -> Result<bool, HashError> {
        let (iterations, salt) = self.decode(encoded)?;
        Ok(iterations != self.iterations || must_update_salt(salt.chars().count()))
    }
    fn harden_runtime(&self, password: &str, encoded: &str) {
        if let Ok((iterations, salt)) = self.decode(encoded) {
            if let Some(extra) = self.iterations.checked_sub(iterations).filter(|e| *e > 0) {
                let _ = self.encode_with(password, salt, extra);
            }
        }
    }
}

// ---------------------------------------------------------------- Argon2

/// The largest argon2 memory cost (KiB) djauth will verify.
const ARGON2_MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;

/// `Argon2PasswordHasher`: argon2id, t=2, m=102400 KiB, p=8, 32-byte tag (argon2-cffi's
/// defaults), salt = the ASCII salt string's bytes.
pub struct Argon2Hasher {
    pub time_cost: u32,
    pub memory_cost: u32,
    pub parallelism: u32,
    pub hash_len: usize,
}

impl Default for Argon2Hasher {
    fn default() -> Self {
        Argon2Hasher {
            time_cost: 2,
            memory_cost: 102_400,
            parallelism: 8,
            hash_len: 32,
        }
    }
}

struct Argon2Decoded {
    variety: argon2::Algorithm,
    version: argon2::Version,
    m: u32,
    t: u32,
    p: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl Argon2Hasher {
    /// Parses `argon2$<variety>$v=<n>$m=..,t=..,p=..$<salt>$<hash>`; the `v=` field is
    /// optional (argon2 1.0 hashes, version 0x10), as argon2-cffi allows.
    fn decode(encoded: &str) -> Result<Argon2Decoded, HashError> {
        let bad = |r: &str| malformed("argon2", r.to_owned());
        let rest = encoded
            .strip_prefix("argon2$")
            .ok_or_else(|| bad("missing argon2$ prefix"))?;
        let fields: Vec<&str> = rest.split('$').collect();
        let (variety, version, params, salt, hash) = match fields.as_slice() {
            [variety, version, params, salt, hash] => {
                (*variety, Some(*version), *params, *salt, *hash)
            }
            [variety, params, salt, hash] => (*variety, None, *params, *salt, *hash),
            _ => return Err(bad("expected variety$v=..$m=..,t=..,p=..$salt$hash")),
        };
        let variety = match variety {
            "argon2id" => argon2::Algorithm::Argon2id,
            "argon2i" => argon2::Algorithm::Argon2i,
            "argon2d" => argon2::Algorithm::Argon2d,
            _ => return Err(bad("unknown argon2 variety")),
        };
        let version = match version {
            None | Some("v=16") => argon2::Version::V0x10,
            Some("v=19") => argon2::Version::V0x13,
            Some(_) => return Err(bad("unknown argon2 version")),
        };
        let mut m = None;
        let mut t = None;
        let mut p = None;
        for kv in params.split(',') {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad("bad parameter"))?;
            let v: u32 = v.parse().map_err(|_| bad("bad parameter value"))?;
            match k {
                "m" => m = Some(v),
                "t" => t = Some(v),
                "p" => p = Some(v),
                _ => return Err(bad("unknown parameter")),
            }
        }
        let (Some(m), Some(t), Some(p)) = (m, t, p) else {
            return Err(bad("missing m, t or p"));
        };
        // A stored hash must not make one login allocate any amount of memory (the allocation
        // failure aborts the process); 4 GiB is 40x Django's default.
        if m > ARGON2_MAX_MEMORY_KIB {
            return Err(bad("memory cost exceeds 4 GiB"));
        }
        let b64 = |s: &str| {
            STANDARD_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|_| bad("invalid base64"))
        };
        Ok(Argon2Decoded {
            variety,
            version,
            m,
            t,
            p,
            salt: b64(salt)?,
            hash: b64(hash)?,
        })
    }

    /// The raw tag for `password` under the given variety, version and cost parameters.
    fn raw(
        variety: argon2::Algorithm,
        version: argon2::Version,
        (m, t, p): (u32, u32, u32),
        out_len: usize,
        password: &[u8],
        salt: &[u8],
    ) -> Result<Vec<u8>, HashError> {
        let params = argon2::Params::new(m, t, p, Some(out_len))
            .map_err(|e| malformed("argon2", format!("parameters: {e}")))?;
        let mut out = vec![0u8; out_len];
        argon2::Argon2::new(variety, version, params)
            .hash_password_into(password, salt, &mut out)
            .map_err(|e| malformed("argon2", e.to_string()))?;
        Ok(out)
    }
}

impl PasswordHasher for Argon2Hasher {
    fn algorithm(&self) -> &'static str {
        "argon2"
    }
    fn encode(&self, password: &str, salt: &str) -> Result<String, HashError> {
        let hash = Self::raw(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            (self.memory_cost, self.time_cost, self.parallelism),
            self.hash_len,
            password.as_bytes(),
            salt.as_bytes(),
        )?;
        Ok(format!(
            "argon2$argon2id$v=19$m={},t={},p={}${}${}",
            self.memory_cost,
            self.time_cost,
            self.parallelism,
            STANDARD_NO_PAD.encode(salt.as_bytes()),
            STANDARD_NO_PAD.encode(hash)
        ))
    }
    fn verify(&self, password: &str, encoded: &str) -> Result<bool, HashError> {
        // argon2-cffi's verify: recompute with the stored variety, version and parameters.
        let d = Self::decode(encoded)?;
        let out = Self::raw(
            d.variety,
            d.version,
            (d.m, d.t, d.p),
            d.hash.len(),
            password.as_bytes(),
            &d.salt,
        )?;
        Ok(constant_time_compare(&out, &d.hash))
    }
    fn must_update(&self, encoded: &str) -> Result<bool, HashError> {
        let d = Self::decode(encoded)?;
        Ok(d.variety != argon2::Algorithm::Argon2id
            || d.version != argon2::Version::V0x13
            || d.m != self.memory_cost
            || d.t != self.time_cost
            || d.p != self.parallelism
            || d.hash.len() != self.hash_len
            // Django decodes the salt as Latin-1: one character per byte.
            || must_update_salt(d.salt.len()))
    }
}

// ---------------------------------------------------------------- bcrypt

/// `BCryptSHA256PasswordHasher` and `BCryptPasswordHasher`: pyca/bcrypt's `hashpw`, which
/// keeps the salt's `$2a$`/`$2b$`/`$2y$` prefix in its output.
pub struct BcryptHasher {
    algorithm: &'static str,
    prehash: bool,
    pub rounds: u32,
}

impl BcryptHasher {
    pub fn sha256() -> Self {
        BcryptHasher {
            algorithm: "bcrypt_sha256",
            prehash: true,
            rounds: 12,
        }
    }
    pub fn plain() -> Self {
        BcryptHasher {
            algorithm: "bcrypt",
            prehash: false,
            rounds: 12,
        }
    }

    fn password_bytes(&self, password: &str) -> Vec<u8> {
        if self.prehash {
            // hexlify(sha256(pw).digest()): 64 lowercase hex bytes, so no 72-byte truncation.
            hex_lower(&sha2::Sha256::digest(password.as_bytes())).into_bytes()
        } else {
            password.as_bytes().to_vec()
        }
    }

    /// `bcrypt.hashpw(password, salt)` where `salt` is `$2b$12$` + 22 chars (+ anything).
    fn hashpw(&self, password: &[u8], salt: &str) -> Result<String, HashError> {
        let bad = |r: &str| HashError::InvalidSalt(format!("Invalid salt: {r}"));
        let mut parts = salt.splitn(4, '$');
        let (Some(""), Some(version), Some(cost), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected $2b$NN$..."));
        };
        let version = match version {
            "2a" => bcrypt::Version::TwoA,
            "2b" => bcrypt::Version::TwoB,
            "2y" => bcrypt::Version::TwoY,
            "2x" => bcrypt::Version::TwoX,
            _ => return Err(bad("unknown version")),
        };
        let cost: u32 = cost.parse().map_err(|_| bad("cost"))?;
        if !(4..=31).contains(&cost) {
            return Err(bad("cost out of range"));
        }
        let raw_salt = rest.get(..22).ok_or_else(|| bad("salt too short"))?;
        let raw_salt: [u8; 16] = bcrypt::BASE_64
            .decode(raw_salt)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("salt encoding"))?;
        let parts = bcrypt::non_truncating_hash_with_salt(password, cost, raw_salt).map_err(
            |e| match e {
                bcrypt::BcryptError::Truncation(_) => HashError::PasswordTooLong,
                other => HashError::Unsupported(other.to_string()),
            },
        )?;
        Ok(parts.format_for_version(version))
    }

    fn work_factor(&self, encoded: &str) -> Result<u32, HashError> {
        let mut parts = encoded.splitn(5, '$');
        match (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            (Some(alg), Some(_), Some(_), Some(wf), Some(_)) if alg == self.algorithm => {
                parse_u32(self.algorithm, "work factor", wf)
            }
            _ => Err(malformed(
                self.algorithm,
                "expected algorithm$$2b$NN$salthash",
            )),
        }
    }
}

impl PasswordHasher for BcryptHasher {
    fn algorithm(&self) -> &'static str {
        self.algorithm
    }
    fn salt(&self) -> String {
        // bcrypt.gensalt(rounds): 16 random bytes in bcrypt's base64.
        let bytes: [u8; 16] = rand::random();
        format!("$2b${:02}${}", self.rounds, bcrypt::BASE_64.encode(bytes))
    }
    fn encode(&self, password: &str, salt: &str) -> Result<String, HashError> {
        Ok(format!(
            "{}${}",
            self.algorithm,
            self.hashpw(&self.password_bytes(password), salt)?
        ))
    }
    fn verify(&self, password: &str, encoded: &str) -> Result<bool, HashError> {
        let data = encoded
            .strip_prefix(self.algorithm)
            .and_then(|r| r.strip_prefix('$'))
            .ok_or_else(|| malformed(self.algorithm, "wrong prefix"))?;
        Ok(ct_eq(encoded, &self.encode(password, data)?))
    }
    fn must_update(&self, encoded: &str) -> Result<bool, HashError> {
        Ok(self.work_factor(encoded)? != self.rounds)
    }
    fn harden_runtime(&self, password: &str, encoded: &str) {
        let Some((_, data)) = encoded.split_once('$') else {
            return;
        };
        let (Some(salt), Ok(rounds)) = (data.get(..29), self.work_factor(encoded)) else {
            return;
        };
        // The work factor is logarithmic: each missing round doubles the load.
        if let Some(diff) = self.rounds.checked_sub(rounds).filter(|d| *d < 31) {
            for _ in 1..(1u64 << diff) {
                let _ = self.encode(password, salt);
            }
        }
    }
}

// ---------------------------------------------------------------- scrypt

/// `ScryptPasswordHasher`: N=2^14, r=8, p (1 on 4.2, 5 from 5.1), 64-byte key.
pub struct ScryptHasher {
    pub work_factor: u64,
    pub block_size: u32,
    pub parallelism: u32,
}

/// OpenSSL's default `maxmem` for `EVP_PBE_scrypt` when Python passes `maxmem=0`.
const SCRYPT_MAXMEM: u64 = 32 * 1024 * 1024;

impl ScryptHasher {
    pub fn new(parallelism: u32) -> Self {
        ScryptHasher {
            work_factor: 1 << 14,
            block_size: 8,
            parallelism,
        }
    }

    fn encode_with(
        &self,
        password: &str,
        salt: &str,
        n: u64,
        r: u32,
        p: u32,
    ) -> Result<String, HashError> {
        check_salt(salt)?;
        let n = if n == 0 { self.work_factor } else { n };
        let r = if r == 0 { self.block_size } else { r };
        let p = if p == 0 { self.parallelism } else { p };
        if n < 2 || !n.is_power_of_two() {
            return Err(malformed("scrypt", "n must be a power of 2 greater than 1"));
        }
        // hashlib.scrypt refuses what OpenSSL would not fit in maxmem; so do we, and that
        // also bounds what a hostile stored hash can make us allocate.
        let mem = 128u64 * r as u64 * (n + p as u64 + 2);
        if mem > SCRYPT_MAXMEM {
            return Err(malformed("scrypt", "parameters exceed the memory limit"));
        }
        let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p, 64)
            .map_err(|e| malformed("scrypt", e.to_string()))?;
        let mut out = [0u8; 64];
        scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut out)
            .map_err(|e| malformed("scrypt", e.to_string()))?;
        Ok(format!(
            "scrypt${n}${salt}${r}${p}${}",
            STANDARD.encode(out)
        ))
    }

    fn decode(encoded: &str) -> Result<(u64, &str, u32, u32), HashError> {
        let parts: Vec<&str> = encoded.splitn(7, '$').collect();
        let [alg, n, salt, r, p, _hash] = parts.as_slice() else {
            return Err(malformed("scrypt", "expected scrypt$N$salt$r$p$hash"));
        };
        if *alg != "scrypt" {
            return Err(malformed("scrypt", "wrong prefix"));
        }
        Ok((
            parse_u32("scrypt", "work factor", n)? as u64,
            salt,
            parse_u32("scrypt", "block size", r)?,
            parse_u32("scrypt", "parallelism", p)?,
        ))
    }
}

impl PasswordHasher for ScryptHasher {
    fn algorithm(&self) -> &'static str {
        "scrypt"
    }
    fn encode(&self, password: &str, salt: &str) -> Result<String, HashError> {
        self.encode_with(
            password,
            salt,
            self.work_factor,
            self.block_size,
            self.parallelism,
        )
    }
    fn verify(&self, password: &str, encoded: &str) -> Result<bool, HashError> {
        let (n, salt, r, p) = Self::decode(encoded)?;
        Ok(ct_eq(encoded, &self.encode_with(password, salt, n, r, p)?))
    }
    fn must_update(&self, encoded: &str) -> Result<bool, HashError> {
        let (n, _, r, p) = Self::decode(encoded)?;
        Ok(n != self.work_factor || r != self.block_size || p != self.parallelism)
    }
}

// ---------------------------------------------------------------- salted digests

fn salted_hex<D: Digest>(salt: &str, password: &str) -> String {
    let mut d = D::new();
    d.update(salt.as_bytes());
    d.update(password.as_bytes());
    hex_lower(&d.finalize())
}

fn split3<'a>(algorithm: &'static str, encoded: &'a str) -> Result<&'a str, HashError> {
    let mut parts = encoded.splitn(3, '$');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(salt), Some(_)) if a == algorithm => Ok(salt),
        _ => Err(malformed(algorithm, "expected algorithm$salt$hash")),
    }
}

macro_rules! salted_digest_hasher {
    ($name:ident, $alg:literal, $digest:ty, $doc:literal) => {
        #[doc = $doc]
        pub struct $name;

        impl PasswordHasher for $name {
            fn algorithm(&self) -> &'static str {
                $alg
            }
            fn encode(&self, password: &str, salt: &str) -> Result<String, HashError> {
                check_salt(salt)?;
                Ok(format!(
                    "{}${salt}${}",
                    $alg,
                    salted_hex::<$digest>(salt, password)
                ))
            }
            fn verify(&self, password: &str, encoded: &str) -> Result<bool, HashError> {
                let salt = split3($alg, encoded)?;
                Ok(ct_eq(encoded, &self.encode(password, salt)?))
            }
            fn must_update(&self, encoded: &str) -> Result<bool, HashError> {
                Ok(must_update_salt(split3($alg, encoded)?.chars().count()))
            }
        }
    };
}

salted_digest_hasher!(
    Md5Hasher,
    "md5",
    md5::Md5,
    "`MD5PasswordHasher`: `md5$salt$hex(MD5(salt + password))`."
);
salted_digest_hasher!(
    Sha1Hasher,
    "sha1",
    sha1::Sha1,
    "`SHA1PasswordHasher` (removed in Django 5.1): `sha1$salt$hex(SHA1(salt + password))`."
);

/// `UnsaltedSHA1PasswordHasher` (removed in 5.1): `sha1$$hex(SHA1(password))`.
pub struct UnsaltedSha1Hasher;

impl PasswordHasher for UnsaltedSha1Hasher {
    fn algorithm(&self) -> &'static str {
        "unsalted_sha1"
    }
    fn salt(&self) -> String {
        String::new()
    }
    fn encode(&self, password: &str, salt: &str) -> Result<String, HashError> {
        if !salt.is_empty() {
            return Err(HashError::InvalidSalt("salt must be empty.".into()));
        }
        Ok(format!("sha1$${}", salted_hex::<sha1::Sha1>("", password)))
    }
    fn verify(&self, password: &str, encoded: &str) -> Result<bool, HashError> {
        if !encoded.starts_with("sha1$$") {
            return Err(malformed("unsalted_sha1", "expected sha1$$hex"));
        }
        Ok(ct_eq(encoded, &self.encode(password, "")?))
    }
}

/// `UnsaltedMD5PasswordHasher` (removed in 5.1): 32 hex chars, or `md5$$` + 32 hex chars.
pub struct UnsaltedMd5Hasher;

impl PasswordHasher for UnsaltedMd5Hasher {
    fn algorithm(&self) -> &'static str {
        "unsalted_md5"
    }
    fn salt(&self) -> String {
        String::new()
    }
    fn encode(&self, password: &str, salt: &str) -> Result<String, HashError> {
        if !salt.is_empty() {
            return Err(HashError::InvalidSalt("salt must be empty.".into()));
        }
        Ok(salted_hex::<md5::Md5>("", password))
    }
    fn verify(&self, password: &str, encoded: &str) -> Result<bool, HashError> {
        let encoded = match encoded.chars().count() {
            37 => encoded.strip_prefix("md5$$").unwrap_or(encoded),
            _ => encoded,
        };
        Ok(ct_eq(encoded, &self.encode(password, "")?))
    }
}

/// `CryptPasswordHasher` (removed in Django 5.0): `crypt$$<crypt(3) output>`, verified with
/// the traditional DES and the modular formats glibc's `crypt` understands.
pub struct CryptHasher;

impl PasswordHasher for CryptHasher {
    fn algorithm(&self) -> &'static str {
        "crypt"
    }
    fn salt(&self) -> String {
        get_random_string(2, RANDOM_STRING_CHARS)
    }
    fn encode(&self, password: &str, salt: &str) -> Result<String, HashError> {
        if salt.chars().count() != 2 {
            return Err(HashError::InvalidSalt("salt must be of length 2.".into()));
        }
        if salt.bytes().any(|b| b < b' ') {
            // What pwhash answers in release builds; in builds with overflow checks it panics.
            return Err(HashError::Unsupported(format!(
                "crypt: {}",
                pwhash::error::Error::EncodingError
            )));
        }
        let hash = {
            #[allow(deprecated)] // Only legacy hashes are made this way, as Django did.
            pwhash::unix_crypt::hash_with(salt, password)
        }
        .map_err(|e| HashError::Unsupported(format!("crypt: {e}")))?;
        Ok(format!("crypt$${hash}"))
    }
    fn verify(&self, password: &str, encoded: &str) -> Result<bool, HashError> {
        let hash = split3("crypt", encoded).map(|_| encoded.splitn(3, '$').nth(2).unwrap_or(""))?;
        // pwhash 1.0 subtracts 0x20 from each salt character, which overflows (a panic in
        // builds with overflow checks) below ' '; crypt(3) fails on such a setting anyway.
        if hash.bytes().any(|b| b < b' ') {
            return Ok(false);
        }
        // crypt(3) returns NULL (Python: None) for a setting it does not understand.
        Ok(match pwhash::unix::crypt(password, hash) {
            Ok(out) => ct_eq(hash, &out),
            Err(_) => false,
        })
    }
}
