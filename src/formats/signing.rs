//! `django.core.signing`: `Signer`, `TimestampSigner`, `dumps`/`loads`, base62, and the
//! signed-cookie key and salt rules of `get_signed_cookie`.
//!
//! Keys are bytes because Django's cookie signer uses `b"django.http.cookies" + SECRET_KEY`.
//! Verification tries `SECRET_KEY` first, then each `SECRET_KEY_FALLBACKS` entry in order;
//! signing always uses `SECRET_KEY`.

use super::crypto::{constant_time_compare, Algorithm, SaltedHmac};
use super::inflate;
use super::json;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::Value;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Python's `urlsafe_b64encode(..).strip(b"=")`.
pub const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// `signing.dumps`' default salt.
pub const DEFAULT_SALT: &str = "django.core.signing";
/// Zip-bomb guard: the largest payload a compressed signed value may inflate to. The value
/// is signed, so only a key holder can send one, but a leaked key must not become an OOM.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 4 * 1024 * 1024;

pub const BASE62_ALPHABET: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SigningError {
    /// `BadSignature`, with Django's message.
    #[error("{0}")]
    BadSignature(String),
    /// `SignatureExpired`, with Django's message.
    #[error("Signature age {age} > {max_age} seconds")]
    Expired { age: String, max_age: String },
    /// The signature was valid but the payload was not what Django writes (Django raises
    /// `ValueError`, `binascii.Error`, `zlib.error` or a JSON error here).
    #[error("malformed signed value: {0}")]
    Malformed(String),
}

impl SigningError {
    pub fn is_expired(&self) -> bool {
        matches!(self, SigningError::Expired { .. })
    }
}

pub fn b62_encode(mut n: i64) -> String {
    if n == 0 {
        return "0".into();
    }
    let negative = n < 0;
    let mut digits = Vec::new();
    while n != 0 {
        let r = (n % 62).unsigned_abs() as usize;
        digits.push(BASE62_ALPHABET[r]);
        n /= 62;
    }
    if negative {
        digits.push(b'-');
    }
    digits.reverse();
    String::from_utf8(digits).expect("base62 digits are ASCII")
}

pub fn b62_decode(s: &str) -> Result<i64, SigningError> {
    let bad = || SigningError::Malformed(format!("invalid base62 timestamp {s:?}"));
    let (sign, digits) = match s.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, s),
    };
    if s.is_empty() {
        return Err(bad());
    }
    let mut n: i64 = 0;
    for c in digits.bytes() {
        let d = BASE62_ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or_else(bad)? as i64;
        n = n
            .checked_mul(62)
            .and_then(|n| n.checked_add(d))
            .ok_or_else(bad)?;
    }
    Ok(sign * n)
}

pub fn b64_encode(data: &[u8]) -> String {
    B64URL.encode(data)
}

pub fn b64_decode(s: &str) -> Result<Vec<u8>, SigningError> {
    B64URL
        .decode(s)
        .map_err(|e| SigningError::Malformed(format!("invalid base64: {e}")))
}

/// Seconds since the epoch as Python's `time.time()` gives them.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `Signer(key=..., salt=..., algorithm=..., fallback_keys=..., sep=...)`.
#[derive(Clone)]
pub struct Signer {
    sep: String,
    /// Keyed HMACs for `[key, *fallback_keys]`, derived once.
    keys: Vec<SaltedHmac>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unsafe Signer separator: {0:?} (cannot be empty or consist of only A-z0-9-_=)")]
pub struct UnsafeSeparator(pub String);

impl Signer {
    /// `key` signs and verifies; `fallback_keys` only verify.
    pub fn new<K: AsRef<[u8]>>(
        key: &[u8],
        fallback_keys: &[K],
        salt: &str,
        algorithm: Algorithm,
    ) -> Self {
        // The key derivation appends the literal "signer" to the salt (signing.md §3).
        let key_salt = format!("{salt}signer");
        let keys = std::iter::once(key)
            .chain(fallback_keys.iter().map(AsRef::as_ref))
            .map(|k| SaltedHmac::new(algorithm, key_salt.as_bytes(), k))
            .collect();
        Signer {
            sep: ":".into(),
            keys,
        }
    }

    /// Django rejects separators matching `^[A-z0-9-_=]*$` (note `A-z` spans ``[\]^_` `` too).
    pub fn with_sep(mut self, sep: &str) -> Result<Self, UnsafeSeparator> {
        let unsafe_char =
            |c: char| ('A'..='z').contains(&c) || c.is_ascii_digit() || "-_=".contains(c);
        if sep.chars().all(unsafe_char) {
            return Err(UnsafeSeparator(sep.to_owned()));
        }
        self.sep = sep.to_owned();
        Ok(self)
    }

    pub fn sep(&self) -> &str {
        &self.sep
    }

    fn signature_with(&self, key: &SaltedHmac, value: &str) -> String {
        b64_encode(&key.digest(value.as_bytes()))
    }

    pub fn signature(&self, value: &str) -> String {
        self.signature_with(&self.keys[0], value)
    }

    pub fn sign(&self, value: &str) -> String {
        let sig = self.signature(value);
        let mut out = String::with_capacity(value.len() + self.sep.len() + sig.len());
        out.push_str(value);
        out.push_str(&self.sep);
        out.push_str(&sig);
        out
    }

    pub fn unsign<'a>(&self, signed_value: &'a str) -> Result<&'a str, SigningError> {
        let split = match self.sep.as_bytes() {
            // Every Django caller uses ":"; a char pattern searches with memrchr.
            [b] => signed_value.rsplit_once(*b as char),
            _ => signed_value.rsplit_once(self.sep.as_str()),
        };
        let Some((value, sig)) = split else {
            return Err(SigningError::BadSignature(format!(
                "No \"{}\" found in value",
                self.sep
            )));
        };
        // The expected signature is built on the stack: this runs for every session read.
        let (mut digest, mut expected) = ([0u8; 64], [0u8; 88]);
        for key in &self.keys {
            let n = key.digest_into(value.as_bytes(), &mut digest);
            let len = B64URL
                .encode_slice(&digest[..n], &mut expected)
                .expect("88 bytes hold the base64 of a 64-byte digest");
            if constant_time_compare(sig.as_bytes(), &expected[..len]) {
                return Ok(value);
            }
        }
        Err(SigningError::BadSignature(format!(
            "Signature \"{sig}\" does not match"
        )))
    }

    /// `sign_object`: compact ASCII JSON, zlib when it saves at least two bytes, base64url.
    pub fn sign_object(&self, obj: &Value, compress: bool) -> String {
        self.sign(&encode_object(obj, compress))
    }

    pub fn unsign_object(
        &self,
        signed: &str,
        max_decompressed: usize,
    ) -> Result<Value, SigningError> {
        decode_object(self.unsign(signed)?, max_decompressed)
    }
}

/// The part of `sign_object` before signing.
pub fn encode_object(obj: &Value, compress: bool) -> String {
    let data = json::dumps(obj);
    if compress {
        let compressed = zlib_compress(&data);
        if compressed.len() < data.len().saturating_sub(1) {
            return format!(".{}", b64_encode(&compressed));
        }
    }
    b64_encode(&data)
}

/// The part of `unsign_object` after the signature check.
pub fn decode_object(base64d: &str, max_decompressed: usize) -> Result<Value, SigningError> {
    let (compressed, b64) = match base64d.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, base64d),
    };
    let parse = |data: &[u8]| {
        json::loads(data).map_err(|e| SigningError::Malformed(format!("invalid JSON: {e}")))
    };
    SCRATCH.with(|cell| {
        // Reentry cannot happen (nothing below decodes a signed value), but would only cost
        // fresh buffers, never a panic.
        let mut fresh = None;
        let mut guard = cell.try_borrow_mut().ok();
        let scratch = match guard.as_deref_mut() {
            Some(s) => s,
            None => fresh.insert(Scratch::default()),
        };
        scratch.raw.clear();
        let result = match B64URL.decode_vec(b64, &mut scratch.raw) {
            Err(e) => Err(SigningError::Malformed(format!("invalid base64: {e}"))),
            Ok(()) if compressed => {
                let cap = scratch.out.len().min(max_decompressed);
                let out = &mut scratch.out[..cap];
                match inflate::zlib_small(&scratch.raw, out, &mut scratch.tables) {
                    Some(n) => parse(&out[..n]),
                    // Anything the fast path does not finish, libdeflate decides.
                    None => zlib_decompress_bounded(&scratch.raw, max_decompressed)
                        .and_then(|data| parse(&data)),
                }
            }
            Ok(()) if scratch.raw.len() > max_decompressed => {
                Err(SigningError::Malformed("payload too large".into()))
            }
            Ok(()) => parse(&scratch.raw),
        };
        if scratch.raw.capacity() > SCRATCH_KEEP {
            scratch.raw = Vec::new();
        }
        result
    })
}

/// Output buffer of the small-stream inflate path; larger payloads go to libdeflate.
const SMALL_INFLATE_OUT: usize = 16 * 1024;
/// A base64 buffer grown past this by an unusual value is not kept for the next call.
const SCRATCH_KEEP: usize = 64 * 1024;

/// Per-thread buffers for [`decode_object`], which runs on every session read.
struct Scratch {
    raw: Vec<u8>,
    out: Vec<u8>,
    tables: Box<inflate::Tables>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            raw: Vec::with_capacity(1024),
            out: vec![0; SMALL_INFLATE_OUT],
            tables: Box::default(),
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

thread_local! {
    // libdeflate's (de)compressor states are a few KiB each; session cookies are decoded on
    // every request, so each thread keeps one instead of allocating per call.
    static DEFLATE: RefCell<(libdeflater::Compressor, libdeflater::Decompressor)> = RefCell::new((
        // Level 6 is zlib's default, which CPython's zlib.compress uses. The bytes differ
        // from CPython's; any valid zlib stream is what Django needs.
        libdeflater::Compressor::new(libdeflater::CompressionLvl::new(6).expect("6 is a valid level")),
        libdeflater::Decompressor::new(),
    ));
}

fn zlib_compress(data: &[u8]) -> Vec<u8> {
    DEFLATE.with(|cell| {
        let compressor = &mut cell.borrow_mut().0;
        let mut out = vec![0u8; compressor.zlib_compress_bound(data.len())];
        let n = compressor
            .zlib_compress(data, &mut out)
            .expect("the output buffer is the compressor's own bound");
        out.truncate(n);
        out
    })
}

/// Inflate a complete zlib stream, refusing corrupt or truncated streams and output
/// beyond `limit` bytes.
pub fn zlib_decompress_bounded(data: &[u8], limit: usize) -> Result<Vec<u8>, SigningError> {
    use libdeflater::DecompressionError;
    DEFLATE.with(|cell| {
        let decompressor = &mut cell.borrow_mut().1;
        let mut capacity = (data.len() * 4).clamp(256, limit.max(1));
        loop {
            let mut out = vec![0u8; capacity];
            match decompressor.zlib_decompress(data, &mut out) {
                Ok(n) => {
                    out.truncate(n);
                    return Ok(out);
                }
                Err(DecompressionError::InsufficientSpace) if capacity < limit => {
                    capacity = capacity.saturating_mul(4).min(limit);
                }
                Err(DecompressionError::InsufficientSpace) => {
                    return Err(SigningError::Malformed(format!(
                        "compressed payload inflates beyond {limit} bytes"
                    )))
                }
                Err(DecompressionError::BadData) => {
                    return Err(SigningError::Malformed("invalid zlib data".into()))
                }
            }
        }
    })
}

/// `TimestampSigner`: `value:base62(ts):signature`.
#[derive(Clone)]
pub struct TimestampSigner {
    signer: Signer,
}

impl TimestampSigner {
    pub fn new<K: AsRef<[u8]>>(
        key: &[u8],
        fallback_keys: &[K],
        salt: &str,
        algorithm: Algorithm,
    ) -> Self {
        TimestampSigner {
            signer: Signer::new(key, fallback_keys, salt, algorithm),
        }
    }

    pub fn from_signer(signer: Signer) -> Self {
        TimestampSigner { signer }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Sign with the timestamp `int(now)`.
    pub fn sign_at(&self, value: &str, now: f64) -> String {
        let ts = b62_encode(now.floor() as i64);
        self.signer.sign(&format!("{value}{}{ts}", self.signer.sep))
    }

    pub fn sign(&self, value: &str) -> String {
        self.sign_at(value, now_unix())
    }

    /// Verify the signature (with fallbacks), then the age: strictly older than `max_age`
    /// seconds is expired, exactly `max_age` is not.
    pub fn unsign_at<'a>(
        &self,
        signed: &'a str,
        max_age: Option<f64>,
        now: f64,
    ) -> Result<&'a str, SigningError> {
        let inner = self.signer.unsign(signed)?;
        let split = match self.signer.sep.as_bytes() {
            [b] => inner.rsplit_once(*b as char),
            _ => inner.rsplit_once(self.signer.sep.as_str()),
        };
        let Some((value, ts)) = split else {
            return Err(SigningError::Malformed(
                "no timestamp in signed value".into(),
            ));
        };
        let ts = b62_decode(ts)?;
        if let Some(max_age) = max_age {
            let age = now - ts as f64;
            if age > max_age {
                return Err(SigningError::Expired {
                    age: json::python_float_repr(age),
                    max_age: python_number(max_age),
                });
            }
        }
        Ok(value)
    }

    pub fn unsign<'a>(
        &self,
        signed: &'a str,
        max_age: Option<f64>,
    ) -> Result<&'a str, SigningError> {
        self.unsign_at(signed, max_age, now_unix())
    }

    pub fn sign_object_at(&self, obj: &Value, compress: bool, now: f64) -> String {
        self.sign_at(&encode_object(obj, compress), now)
    }

    pub fn sign_object(&self, obj: &Value, compress: bool) -> String {
        self.sign_object_at(obj, compress, now_unix())
    }

    pub fn unsign_object_at(
        &self,
        signed: &str,
        max_age: Option<f64>,
        now: f64,
        max_decompressed: usize,
    ) -> Result<Value, SigningError> {
        decode_object(self.unsign_at(signed, max_age, now)?, max_decompressed)
    }
}

/// How Python prints a number that may have been an int (`1209600`) or a float (`99.5`).
fn python_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{}", x as i64)
    } else {
        json::python_float_repr(x)
    }
}

/// `signing.dumps(obj, key, salt, compress)` at time `now`.
pub fn dumps_at(obj: &Value, key: &[u8], salt: &str, compress: bool, now: f64) -> String {
    TimestampSigner::new::<&[u8]>(key, &[], salt, Algorithm::Sha256)
        .sign_object_at(obj, compress, now)
}

/// `signing.loads(s, key, salt, max_age, fallback_keys)` at time `now`.
pub fn loads_at<K: AsRef<[u8]>>(
    s: &str,
    key: &[u8],
    fallback_keys: &[K],
    salt: &str,
    max_age: Option<f64>,
    now: f64,
) -> Result<Value, SigningError> {
    TimestampSigner::new(key, fallback_keys, salt, Algorithm::Sha256).unsign_object_at(
        s,
        max_age,
        now,
        DEFAULT_MAX_DECOMPRESSED,
    )
}

/// `get_cookie_signer`'s key: `b"django.http.cookies" + key`.
pub fn cookie_signer_key(key: &[u8]) -> Vec<u8> {
    [b"django.http.cookies".as_slice(), key].concat()
}

/// The salt `get_signed_cookie`/`set_signed_cookie` use since 5.2.15 / 6.0.6 / 6.1.
pub fn cookie_signer_salt(cookie_name: &str, salt: &str) -> String {
    format!(
        "django.http.cookies.v2:{}:{salt}{cookie_name}",
        salt.chars().count()
    )
}

/// The salt before 5.2.15 / 6.0.6 (still accepted there unless the legacy fallback is off).
pub fn cookie_signer_legacy_salt(cookie_name: &str, salt: &str) -> String {
    format!("{cookie_name}{salt}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &[u8] = b"spec-secret-key";
    const T: f64 = 1_700_000_000.0;
    const NONE: &[&[u8]] = &[];

    fn signer(salt: &str, alg: Algorithm) -> Signer {
        Signer::new(KEY, NONE, salt, alg)
    }

    // Every literal below is Django output recorded in shared/spec/signing.md.
    #[test]
    fn signer_vectors() {
        let s = signer("django.core.signing.Signer", Algorithm::Sha256);
        assert_eq!(
            s.sign("hello"),
            "hello:cs3OK99mAT5WNvg9z938_CRJ9iL0rpHzHjWotfLeu5U"
        );
        assert_eq!(
            signer("extra", Algorithm::Sha256).sign("hello"),
            "hello:QXvVDACu0ZfpQCDWYKxCJbLB7DIfwywyqxS5p4OHg5s"
        );
        assert_eq!(
            signer("django.core.signing.Signer", Algorithm::Sha1).sign("hello"),
            "hello:ch6T25IoWCZGW7pLEqKk1oPpH24"
        );
        let slash = s.clone().with_sep("/").unwrap();
        assert_eq!(
            slash.sign("hello"),
            "hello/cs3OK99mAT5WNvg9z938_CRJ9iL0rpHzHjWotfLeu5U"
        );
        // The signature covers everything before the last separator.
        assert!(s
            .unsign("a:b:hello:cs3OK99mAT5WNvg9z938_CRJ9iL0rpHzHjWotfLeu5U")
            .is_err());
        assert_eq!(s.unsign(&s.sign("a:b")).unwrap(), "a:b");
    }

    #[test]
    fn unsafe_separators_are_refused() {
        let s = signer("x", Algorithm::Sha256);
        for sep in ["", "a", "-", "_", "=", "^", "`", "[", "Zz09"] {
            assert!(s.clone().with_sep(sep).is_err(), "{sep:?}");
        }
        assert!(s.with_sep("/").is_ok());
    }

    #[test]
    fn bad_signatures_have_djangos_messages() {
        let s = signer("django.core.signing.Signer", Algorithm::Sha256);
        assert_eq!(
            s.unsign("hello").unwrap_err().to_string(),
            "No \":\" found in value"
        );
        assert_eq!(
            s.unsign("hello:abc").unwrap_err().to_string(),
            "Signature \"abc\" does not match"
        );
    }

    #[test]
    fn timestamp_signer_vector_and_strict_max_age() {
        let ts = TimestampSigner::new(
            KEY,
            NONE,
            "django.core.signing.TimestampSigner",
            Algorithm::Sha256,
        );
        let signed = ts.sign_at("hello", T);
        assert_eq!(
            signed,
            "hello:1r31eq:1H-HXnGpOhyuNGFtVYk_2Rl6IGAo0AgO3FVIeYL0SUY"
        );
        assert_eq!(
            ts.unsign_at(&signed, Some(100.0), T + 100.0).unwrap(),
            "hello"
        );
        let err = ts.unsign_at(&signed, Some(99.0), T + 100.0).unwrap_err();
        assert_eq!(err.to_string(), "Signature age 100.0 > 99 seconds");
        assert!(err.is_expired());
    }

    #[test]
    fn dumps_vectors() {
        let cases = [
            (
                json!("hello"),
                DEFAULT_SALT,
                false,
                "ImhlbGxvIg:1r31eq:pibqgFuApJbVASGp8oHlySAC9xCFHt-5Y-ecRM61jkw",
            ),
            (
                json!({"a": 1, "b": [1, 2]}),
                DEFAULT_SALT,
                false,
                "eyJhIjoxLCJiIjpbMSwyXX0:1r31eq:ZEiKdnxJJThZGOH6wnJsXnsKW4lNKfb8oQNHmIzJp7I",
            ),
            (
                json!({"a": 1, "b": [1, 2]}),
                "my.app",
                false,
                "eyJhIjoxLCJiIjpbMSwyXX0:1r31eq:hqx0z-gFwg1Fpgo8gNqGZ5lg1pvXaOC_smfLsqSjONc",
            ),
            (
                json!({"k": "é"}),
                DEFAULT_SALT,
                false,
                "eyJrIjoiXHUwMGU5In0:1r31eq:Kegqw5jZf1O9NKQUetN1tnWSPksDw0jdaollNAZvLgE",
            ),
        ];
        for (obj, salt, compress, want) in cases {
            assert_eq!(dumps_at(&obj, KEY, salt, compress, T), want);
            assert_eq!(loads_at(want, KEY, NONE, salt, None, T).unwrap(), obj);
        }
        // Compressed bytes may differ from CPython's zlib; Django's token must still load.
        let django = ".eJxTqiAZKAEAdHQXtQ:1r31eq:UsmvB2KSAMJo0HU8sbC1UP5YpEJ3T--WY2HQL4-1afc";
        assert_eq!(
            loads_at(django, KEY, NONE, DEFAULT_SALT, None, T).unwrap(),
            json!("x".repeat(50))
        );
        let ours = dumps_at(&json!("x".repeat(50)), KEY, DEFAULT_SALT, true, T);
        assert!(ours.starts_with('.'));
        assert_eq!(
            loads_at(&ours, KEY, NONE, DEFAULT_SALT, None, T).unwrap(),
            json!("x".repeat(50))
        );
    }

    #[test]
    fn fallback_keys_verify_but_never_sign() {
        let old = "eyJhIjoxfQ:1r31eq:aWf4vkQHZGNv5LyYE2xm-_pGGB36zr8MJB8cpGIj-zM";
        assert_eq!(
            dumps_at(&json!({"a": 1}), b"old-secret-key", DEFAULT_SALT, false, T),
            old
        );
        assert!(loads_at(old, KEY, NONE, DEFAULT_SALT, None, T).is_err());
        assert_eq!(
            loads_at(old, KEY, &[b"old-secret-key"], DEFAULT_SALT, None, T).unwrap(),
            json!({"a": 1})
        );
    }

    #[test]
    fn zip_bomb_is_refused() {
        let big = json!("a".repeat(DEFAULT_MAX_DECOMPRESSED + 10));
        let token = dumps_at(&big, KEY, DEFAULT_SALT, true, T);
        assert!(token.len() < 100_000);
        let err = loads_at(&token, KEY, NONE, DEFAULT_SALT, None, T).unwrap_err();
        assert!(matches!(err, SigningError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn truncated_zlib_is_malformed() {
        let s = TimestampSigner::new(KEY, NONE, DEFAULT_SALT, Algorithm::Sha256);
        let full = zlib_compress(&json::dumps(&json!("x".repeat(500))));
        let token = s.sign_at(&format!(".{}", b64_encode(&full[..full.len() - 4])), T);
        assert!(matches!(
            s.unsign_object_at(&token, None, T, DEFAULT_MAX_DECOMPRESSED),
            Err(SigningError::Malformed(_))
        ));
    }

    #[test]
    fn base62() {
        assert_eq!(b62_encode(1_700_000_000), "1r31eq");
        assert_eq!(b62_encode(0), "0");
        assert_eq!(b62_encode(-61), "-z");
        for n in [0i64, 1, 61, 62, 1_700_000_000, -5, i64::MAX] {
            assert_eq!(b62_decode(&b62_encode(n)).unwrap(), n);
        }
        assert!(b62_decode("").is_err());
        assert_eq!(
            b62_decode("-").unwrap(),
            0,
            "Python decodes a bare sign as 0"
        );
        assert!(b62_decode("a!").is_err());
        assert!(b62_decode("zzzzzzzzzzzzzzzzzzzzzz").is_err());
    }

    #[test]
    fn cookie_salts() {
        let s = TimestampSigner::new(
            &cookie_signer_key(KEY),
            NONE,
            &cookie_signer_salt("color", "s1"),
            Algorithm::Sha256,
        );
        assert_eq!(
            s.sign_at("blue", T),
            "blue:1r31eq:9_Ixw_HK7zX_KL0ExHBWlM3k16o3kP95QJx6t22W6Z8"
        );
        let legacy = TimestampSigner::new(
            &cookie_signer_key(KEY),
            NONE,
            &cookie_signer_legacy_salt("color", "s1"),
            Algorithm::Sha256,
        );
        assert_eq!(
            legacy.sign_at("blue", T),
            "blue:1r31eq:59yP6tbIk8yrtvTyf0cIpWs96G74vgyHuqQ9QglUiyU"
        );
    }
}
