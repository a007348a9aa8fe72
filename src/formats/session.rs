//! `django.contrib.sessions` without storage: session keys, the db-engine and
//! signed-cookie-engine blobs, `_session_expiry`, and the session auth hash
//! (`_auth_user_hash`) that `django.contrib.auth` keeps in the session.

use super::crypto::{constant_time_compare, get_random_string, Algorithm, SaltedHmac};
use super::signing::{SigningError, TimestampSigner, DEFAULT_MAX_DECOMPRESSED};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value};

/// A session's contents, in insertion order as Python dicts keep them.
pub type SessionData = Map<String, Value>;

/// `_get_new_session_key`'s alphabet.
pub const SESSION_KEY_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
pub const SESSION_KEY_LENGTH: usize = 32;
/// `"django.contrib.sessions." + SessionStore.__qualname__`: every built-in store signs
/// its data with this salt.
pub const SESSION_STORE_SALT: &str = "django.contrib.sessions.SessionStore";
/// The signed-cookie engine's cookie salt.
pub const SIGNED_COOKIES_SALT: &str = "django.contrib.sessions.backends.signed_cookies";

/// `django.contrib.auth.SESSION_KEY` and friends.
pub const AUTH_USER_ID_KEY: &str = "_auth_user_id";
pub const AUTH_BACKEND_KEY: &str = "_auth_user_backend";
pub const AUTH_HASH_KEY: &str = "_auth_user_hash";
pub const EXPIRY_KEY: &str = "_session_expiry";
pub const AUTH_HASH_SALT: &str =
    "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash";

/// A fresh key as Django makes them: 32 characters of `[a-z0-9]` from a CSPRNG.
pub fn new_session_key() -> String {
    get_random_string(SESSION_KEY_LENGTH, SESSION_KEY_CHARS)
}

/// `_validate_session_key`: Django accepts any key of at least 8 characters (no charset
/// check). The column is `varchar(40)`, so longer keys cannot name a row.
pub fn is_valid_session_key(key: &str) -> bool {
    let n = key.chars().count();
    (8..=40).contains(&n)
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("session data is not a JSON object")]
    NotAnObject,
}

/// Which `SESSION_ENGINE` produced a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `django.contrib.sessions.backends.db` (and `cached_db`'s database side, and `file`).
    Db,
    /// `django.contrib.sessions.backends.signed_cookies`: the cookie is the session.
    SignedCookies,
}

/// Encodes and decodes session blobs with one `SECRET_KEY` and its fallbacks.
#[derive(Clone)]
pub struct SessionCodec {
    db: TimestampSigner,
    cookie: TimestampSigner,
    cookie_age: i64,
    max_decompressed: usize,
}

impl SessionCodec {
    pub fn new<K: AsRef<[u8]>>(secret: &[u8], fallbacks: &[K], session_cookie_age: i64) -> Self {
        SessionCodec {
            db: TimestampSigner::new(secret, fallbacks, SESSION_STORE_SALT, Algorithm::Sha256),
            cookie: TimestampSigner::new(secret, fallbacks, SIGNED_COOKIES_SALT, Algorithm::Sha256),
            cookie_age: session_cookie_age,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        }
    }

    pub fn with_max_decompressed(mut self, limit: usize) -> Self {
        self.max_decompressed = limit;
        self
    }

    /// `SessionBase.encode`: what goes into `django_session.session_data`.
    pub fn encode_db_at(&self, data: &SessionData, now: f64) -> String {
        self.db
            .sign_object_at(&Value::Object(data.clone()), true, now)
    }

    /// `SessionBase.decode` without its "any error means {}" (callers decide).
    /// The timestamp is not checked: the row's `expire_date` is the expiry.
    pub fn decode_db(&self, blob: &str) -> Result<SessionData, SessionError> {
        into_object(
            self.db
                .unsign_object_at(blob, None, 0.0, self.max_decompressed)?,
        )
    }

    /// The signed-cookie engine's cookie value.
    pub fn encode_cookie_at(&self, data: &SessionData, now: f64) -> String {
        self.cookie
            .sign_object_at(&Value::Object(data.clone()), true, now)
    }

    /// Loads a signed-cookie session with `max_age = SESSION_COOKIE_AGE`, as Django does even
    /// when the session set its own expiry (Django ticket #19201).
    pub fn decode_cookie_at(&self, blob: &str, now: f64) -> Result<SessionData, SessionError> {
        into_object(self.cookie.unsign_object_at(
            blob,
            Some(self.cookie_age as f64),
            now,
            self.max_decompressed,
        )?)
    }

    pub fn encode_at(&self, engine: Engine, data: &SessionData, now: f64) -> String {
        match engine {
            Engine::Db => self.encode_db_at(data, now),
            Engine::SignedCookies => self.encode_cookie_at(data, now),
        }
    }

    pub fn decode_at(
        &self,
        engine: Engine,
        blob: &str,
        now: f64,
    ) -> Result<SessionData, SessionError> {
        match engine {
            Engine::Db => self.decode_db(blob),
            Engine::SignedCookies => self.decode_cookie_at(blob, now),
        }
    }

    pub fn session_cookie_age(&self) -> i64 {
        self.cookie_age
    }
}

fn into_object(v: Value) -> Result<SessionData, SessionError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(SessionError::NotAnObject),
    }
}

// ------------------------------------------------------------------ expiry

/// What `_session_expiry` holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Expiry {
    /// Absent (or falsy): the global `SESSION_COOKIE_AGE` policy.
    Default,
    /// `0`: a browser-session cookie; the row still lives `SESSION_COOKIE_AGE`.
    BrowserClose,
    /// Seconds of inactivity (an int in the JSON).
    Seconds(f64),
    /// An instant, stored as `datetime.isoformat()` (4.1+).
    At(DateTime<FixedOffset>),
}

/// Reads `_session_expiry`. `naive_tz` is how a naive ISO string is read (only possible with
/// `USE_TZ = False`, where Django's `now()` is local time in `TIME_ZONE`).
pub fn expiry_of(data: &SessionData, naive_tz: chrono_tz::Tz) -> Expiry {
    match data.get(EXPIRY_KEY) {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Expiry::Default,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(0.0) => Expiry::BrowserClose,
            Some(x) => Expiry::Seconds(x),
            None => Expiry::Default,
        },
        Some(Value::String(s)) if s.is_empty() => Expiry::Default,
        Some(Value::String(s)) => parse_isoformat(s, naive_tz)
            .map(Expiry::At)
            .unwrap_or(Expiry::Default),
        Some(_) => Expiry::Default,
    }
}

/// `datetime.fromisoformat` for what `isoformat()` writes (with or without offset/fraction).
pub fn parse_isoformat(s: &str, naive_tz: chrono_tz::Tz) -> Option<DateTime<FixedOffset>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt);
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt);
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            let local = naive_tz.from_local_datetime(&naive).earliest()?;
            return Some(local.fixed_offset());
        }
    }
    None
}

/// `datetime.isoformat()` of an aware UTC instant: `2026-11-24T08:04:14.853841+00:00`,
/// without the fraction when it is zero.
pub fn isoformat(dt: DateTime<Utc>) -> String {
    if dt.timestamp_subsec_micros() == 0 {
        dt.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// Seconds until the session expires (`get_expiry_age`), floored like
/// `delta.days * 86400 + delta.seconds`.
pub fn expiry_age(expiry: &Expiry, now: DateTime<Utc>, session_cookie_age: i64) -> i64 {
    match expiry {
        Expiry::Default | Expiry::BrowserClose => session_cookie_age,
        Expiry::Seconds(s) => s.floor() as i64,
        Expiry::At(at) => {
            let micros = (at.with_timezone(&Utc) - now)
                .num_microseconds()
                .unwrap_or(i64::MAX);
            micros.div_euclid(1_000_000)
        }
    }
}

/// `get_expiry_date`: the instant stored in `django_session.expire_date` on save.
pub fn expiry_date(expiry: &Expiry, now: DateTime<Utc>, session_cookie_age: i64) -> DateTime<Utc> {
    match expiry {
        Expiry::At(at) => at.with_timezone(&Utc),
        // A number of seconds past chrono's range (about 262,000 years) saturates instead of
        // panicking; Django raises OverflowError for far less.
        Expiry::Seconds(s) => now
            .checked_add_signed(chrono::Duration::microseconds((s * 1e6) as i64))
            .unwrap_or(if *s > 0.0 {
                DateTime::<Utc>::MAX_UTC
            } else {
                DateTime::<Utc>::MIN_UTC
            }),
        Expiry::Default | Expiry::BrowserClose => {
            now + chrono::Duration::seconds(session_cookie_age)
        }
    }
}

/// `get_expire_at_browser_close`.
pub fn expire_at_browser_close(data: &SessionData, setting: bool) -> bool {
    match data.get(EXPIRY_KEY) {
        None | Some(Value::Null) => setting,
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::Bool(false)) => true,
        Some(_) => false,
    }
}

/// `set_expiry(value)`.
pub fn set_expiry(data: &mut SessionData, expiry: Expiry) {
    let value = match expiry {
        Expiry::Default => {
            data.shift_remove(EXPIRY_KEY);
            return;
        }
        Expiry::BrowserClose => Value::from(0),
        Expiry::Seconds(s) if s.fract() == 0.0 => Value::from(s as i64),
        Expiry::Seconds(s) => Value::from(s),
        Expiry::At(at) => Value::from(isoformat(at.with_timezone(&Utc))),
    };
    data.insert(EXPIRY_KEY.to_owned(), value);
}

// ------------------------------------------------------------------ auth hash

/// How a session's `_auth_user_hash` compares with the user's current password field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthHashCheck {
    /// Made with `SECRET_KEY`.
    Current,
    /// Made with a `SECRET_KEY_FALLBACKS` entry: Django cycles the key and rewrites the hash.
    Fallback,
    /// Missing or wrong: Django flushes the session.
    Mismatch,
}

/// `get_session_auth_hash` (and its fallbacks), with the keys derived once.
#[derive(Clone)]
pub struct SessionAuthHasher {
    keys: Vec<SaltedHmac>,
}

impl SessionAuthHasher {
    pub fn new<K: AsRef<[u8]>>(secret: &[u8], fallbacks: &[K]) -> Self {
        let keys = std::iter::once(secret)
            .chain(fallbacks.iter().map(AsRef::as_ref))
            .map(|k| SaltedHmac::new(Algorithm::Sha256, AUTH_HASH_SALT.as_bytes(), k))
            .collect();
        SessionAuthHasher { keys }
    }

    /// The hash Django writes for a user whose `password` column holds `password_field`.
    pub fn hash(&self, password_field: &str) -> String {
        self.keys[0].hexdigest(password_field.as_bytes())
    }

    pub fn check(&self, stored: Option<&str>, password_field: &str) -> AuthHashCheck {
        let Some(stored) = stored.filter(|s| !s.is_empty()) else {
            return AuthHashCheck::Mismatch;
        };
        for (i, key) in self.keys.iter().enumerate() {
            if constant_time_compare(
                stored.as_bytes(),
                key.hexdigest(password_field.as_bytes()).as_bytes(),
            ) {
                return if i == 0 {
                    AuthHashCheck::Current
                } else {
                    AuthHashCheck::Fallback
                };
            }
        }
        AuthHashCheck::Mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &[u8] = b"spec-secret-key";
    const NONE: &[&[u8]] = &[];
    const T: f64 = 1_700_000_000.0;

    fn obj(v: Value) -> SessionData {
        v.as_object().unwrap().clone()
    }

    fn auth_dict() -> SessionData {
        obj(
            json!({"_auth_user_id": "1", "_auth_user_backend": "django.contrib.auth.backends.ModelBackend", "_auth_user_hash": "0".repeat(64)}),
        )
    }

    // Django output from shared/spec/sessions.md §2 and §5.
    #[test]
    fn db_blobs_match_django() {
        let c = SessionCodec::new(KEY, NONE, 1_209_600);
        assert_eq!(
            c.encode_db_at(&obj(json!({})), T),
            "e30:1r31eq:UdVxwSIU1gt_pi9-glWNSk2EAg3x0PNe3tsFt_tM9gg"
        );
        assert_eq!(
            c.encode_db_at(&obj(json!({"foo": "bar"})), T),
            "eyJmb28iOiJiYXIifQ:1r31eq:PfGuc16kZZCHTubEiW2hynKhyO3C5CNBiGvoOqvyAUw"
        );
        let django = ".eJyrVopPLC3JiC8tTi2Kz0xRslIyVNJBFktKTM5OzQNJpGQl5qXn6yXn55UUZSbpgZToQWWL9XzzU1JznKBqUQzISCzOAOo2oBAo1QIAIvYyTQ:1r31eq:P_QtVno7TGgOIXNEdkKGhKa4EoNCQ-FkJlFniZ8lmRk";
        assert_eq!(c.decode_db(django).unwrap(), auth_dict());
        let ours = c.encode_db_at(&auth_dict(), T);
        assert!(ours.starts_with('.'), "a login session compresses");
        assert_eq!(c.decode_db(&ours).unwrap(), auth_dict());
    }

    #[test]
    fn signed_cookie_blobs_match_django_and_expire() {
        let c = SessionCodec::new(KEY, NONE, 1_209_600);
        let django = "eyJmb28iOiJiYXIifQ:1r31eq:EimO5MAhxL5_ZYxC2I1gpgDfkJeTAZFH3ooXlY35_XY";
        assert_eq!(c.encode_cookie_at(&obj(json!({"foo": "bar"})), T), django);
        assert_eq!(
            c.decode_cookie_at(django, T + 1_209_600.0).unwrap(),
            obj(json!({"foo": "bar"}))
        );
        assert!(matches!(
            c.decode_cookie_at(django, T + 1_209_601.0),
            Err(SessionError::Signing(SigningError::Expired { .. }))
        ));
        // The two engines' salts differ: one's blob is not the other's.
        assert!(c.decode_db(django).is_err());
    }

    #[test]
    fn keys() {
        let k = new_session_key();
        assert_eq!(k.len(), 32);
        assert!(k.bytes().all(|b| SESSION_KEY_CHARS.contains(&b)));
        assert!(is_valid_session_key("abcdefgh"));
        assert!(!is_valid_session_key("abcdefg"));
        assert!(!is_valid_session_key(""));
        assert!(!is_valid_session_key(&"a".repeat(41)));
    }

    #[test]
    fn auth_hash_matches_django() {
        let h = SessionAuthHasher::new(KEY, NONE);
        let pw = "pbkdf2_sha256$1000000$fixedsaltfixedsaltfixe$HIj1wkng6cpxJZKoK3O+ul1agiRGacCHdyDts6bkcqM=";
        let want = "d7438fbaa6348a2b38daf7bb31d9a0af87dbc5d44369eaf34e3f4e213dc42c36";
        assert_eq!(h.hash(pw), want);
        assert_eq!(h.check(Some(want), pw), AuthHashCheck::Current);
        assert_eq!(h.check(None, pw), AuthHashCheck::Mismatch);
        assert_eq!(h.check(Some(""), pw), AuthHashCheck::Mismatch);
        let rotated = SessionAuthHasher::new(b"new-key", &[KEY]);
        assert_eq!(rotated.check(Some(want), pw), AuthHashCheck::Fallback);
        assert_eq!(rotated.check(Some(want), "other"), AuthHashCheck::Mismatch);
    }

    #[test]
    fn expiry_semantics() {
        let tz = chrono_tz::UTC;
        let now = Utc.timestamp_opt(1_700_000_000, 250_000_000).unwrap();
        let mut d = SessionData::new();
        assert_eq!(expiry_of(&d, tz), Expiry::Default);
        assert_eq!(expiry_age(&expiry_of(&d, tz), now, 1_209_600), 1_209_600);
        assert!(!expire_at_browser_close(&d, false));
        assert!(expire_at_browser_close(&d, true));
        set_expiry(&mut d, Expiry::BrowserClose);
        assert_eq!(d[EXPIRY_KEY], json!(0));
        assert!(expire_at_browser_close(&d, false));
        assert_eq!(expiry_age(&expiry_of(&d, tz), now, 1_209_600), 1_209_600);
        set_expiry(&mut d, Expiry::Seconds(300.0));
        assert_eq!(d[EXPIRY_KEY], json!(300));
        assert_eq!(expiry_age(&expiry_of(&d, tz), now, 1), 300);
        let at = Utc.timestamp_opt(1_700_000_100, 0).unwrap();
        set_expiry(&mut d, Expiry::At(at.fixed_offset()));
        assert_eq!(d[EXPIRY_KEY], json!("2023-11-14T22:15:00+00:00"));
        // 99.75 s left floors to 99, like timedelta.days * 86400 + timedelta.seconds.
        assert_eq!(expiry_age(&expiry_of(&d, tz), now, 1), 99);
        assert_eq!(expiry_date(&expiry_of(&d, tz), now, 1), at);
        d.insert(EXPIRY_KEY.into(), json!("2026-11-24T08:04:14.853841+00:00"));
        assert!(matches!(expiry_of(&d, tz), Expiry::At(_)));
        set_expiry(&mut d, Expiry::Default);
        assert!(!d.contains_key(EXPIRY_KEY));
    }

    #[test]
    fn isoformat_like_python() {
        let t = Utc.timestamp_opt(1_700_000_000, 853_841_000).unwrap();
        assert_eq!(isoformat(t), "2023-11-14T22:13:20.853841+00:00");
        assert_eq!(
            isoformat(Utc.timestamp_opt(1_700_000_000, 0).unwrap()),
            "2023-11-14T22:13:20+00:00"
        );
    }
}

/// What a session is called outside the database: the key itself is a bearer credential,
/// so listings and APIs name a session by a digest of it.
pub fn public_session_id(session_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(session_key.as_bytes());
    digest[..10].iter().map(|b| format!("{b:02x}")).collect()
}

/// "Firefox on Linux" from a User-Agent header, for a list of a user's devices.
pub fn device_name(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|s| !s.trim().is_empty()) else {
        return "Unknown device".into();
    };
    match woothee::parser::Parser::new().parse(ua) {
        Some(r) if r.name != "UNKNOWN" && r.os != "UNKNOWN" => format!("{} on {}", r.name, r.os),
        Some(r) if r.name != "UNKNOWN" => r.name.to_string(),
        _ => ua.chars().take(60).collect(),
    }
}

/// The TimestampSigner time of a signed-cookie session (`payload:TIMESTAMP:signature`); only
/// meaningful for a value whose signature was checked.
pub fn cookie_timestamp(value: &str) -> Option<i64> {
    let mut parts = value.rsplitn(3, ':');
    parts.next()?;
    crate::formats::signing::b62_decode(parts.next()?).ok()
}

#[cfg(test)]
mod index_helper_tests {
    use super::*;

    #[test]
    fn public_ids_are_stable_and_not_the_key() {
        let id = public_session_id("abcdefghijklmnopqrstuvwxyz012345");
        assert_eq!(id.len(), 20);
        assert_eq!(id, public_session_id("abcdefghijklmnopqrstuvwxyz012345"));
        assert_ne!(id, public_session_id("abcdefghijklmnopqrstuvwxyz012346"));
    }

    #[test]
    fn devices_and_timestamps() {
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(device_name(Some(ff)), "Firefox on Linux");
        assert_eq!(device_name(None), "Unknown device");
        assert_eq!(device_name(Some("curl/8.0")), "HTTP Library");
        assert_eq!(device_name(Some("weird-agent/1")), "weird-agent/1");
        assert_eq!(
            cookie_timestamp("eyJh:1tA2bc:sig"),
            Some(crate::formats::signing::b62_decode("1tA2bc").unwrap())
        );
        assert_eq!(cookie_timestamp("nocolon"), None);
    }
}
