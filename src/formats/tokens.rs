//! `django.contrib.auth.tokens.PasswordResetTokenGenerator` and the `uidb64` of reset links
//! (`django.utils.http.urlsafe_base64_encode/decode`, `int_to_base36`/`base36_to_int`).

use super::crypto::{constant_time_compare, Algorithm, SaltedHmac};
use super::signing::B64URL;
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

pub const KEY_SALT: &str = "django.contrib.auth.tokens.PasswordResetTokenGenerator";
/// `PASSWORD_RESET_TIMEOUT`'s default: three days.
pub const DEFAULT_TIMEOUT: i64 = 259_200;

const B36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// `int_to_base36` (non-negative only, as Django).
pub fn int_to_base36(mut i: u64) -> String {
    if i < 36 {
        return (B36[i as usize] as char).to_string();
    }
    let mut out = Vec::new();
    while i != 0 {
        out.push(B36[(i % 36) as usize]);
        i /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("base36 digits are ASCII")
}

/// `base36_to_int`: at most 13 characters, then Python's `int(s, 36)` (surrounding
/// whitespace, a sign, and single underscores between digits are allowed).
pub fn base36_to_int(s: &str) -> Option<i128> {
    if s.chars().count() > 13 {
        return None;
    }
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let mut n: i128 = 0;
    for c in digits.chars().filter(|c| *c != '_') {
        n = n * 36 + c.to_digit(36)? as i128;
    }
    Some(if neg { -n } else { n })
}

/// `urlsafe_base64_encode(force_bytes(pk))`.
pub fn uidb64_encode(pk: &str) -> String {
    B64URL.encode(pk.as_bytes())
}

/// `urlsafe_base64_decode(uidb64).decode()`; `None` where Django's view gets an error
/// (and shows the invalid-link page).
pub fn uidb64_decode(uidb64: &str) -> Option<String> {
    let bytes = B64URL.decode(uidb64).ok()?;
    String::from_utf8(bytes).ok()
}

/// The user fields a reset token covers.
#[derive(Debug, Clone)]
pub struct TokenUser<'a> {
    /// `str(user.pk)`.
    pub pk: &'a str,
    /// `auth_user.password` (so a password change spends the token).
    pub password: &'a str,
    /// `last_login` as Django loads it: the UTC wall time with `USE_TZ = True`, the stored
    /// naive value otherwise (so a new login spends the token).
    pub last_login: Option<NaiveDateTime>,
    /// The `EMAIL_FIELD` value, `""` when empty.
    pub email: &'a str,
}

#[derive(Clone)]
pub struct PasswordResetTokenGenerator {
    keys: Vec<SaltedHmac>,
    timeout: i64,
    time_zone: chrono_tz::Tz,
}

impl PasswordResetTokenGenerator {
    /// `time_zone` is `settings.TIME_ZONE`: Django stamps tokens with local wall-clock time.
    pub fn new<K: AsRef<[u8]>>(
        secret: &[u8],
        fallbacks: &[K],
        timeout: i64,
        time_zone: chrono_tz::Tz,
    ) -> Self {
        let keys = std::iter::once(secret)
            .chain(fallbacks.iter().map(AsRef::as_ref))
            .map(|k| SaltedHmac::new(Algorithm::Sha256, KEY_SALT.as_bytes(), k))
            .collect();
        PasswordResetTokenGenerator {
            keys,
            timeout,
            time_zone,
        }
    }

    /// `_num_seconds(_now())`: seconds since 2001-01-01 on the `TIME_ZONE` wall clock.
    pub fn num_seconds(&self, now: DateTime<Utc>) -> i64 {
        let local = now.with_timezone(&self.time_zone).naive_local();
        let epoch = NaiveDate::from_ymd_opt(2001, 1, 1)
            .expect("valid date")
            .and_hms_opt(0, 0, 0)
            .expect("valid time");
        // int(timedelta.total_seconds()) truncates toward zero.
        let micros = (local - epoch).num_microseconds().unwrap_or(i64::MAX);
        micros / 1_000_000
    }

    fn make_with_timestamp(&self, key: &SaltedHmac, user: &TokenUser, ts: u64) -> String {
        let login = user
            .last_login
            .map(|l| l.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        let value = format!("{}{}{login}{ts}{}", user.pk, user.password, user.email);
        let digest = key.hexdigest(value.as_bytes());
        // Every other hex character: Django shortens the token this way.
        let short: String = digest.chars().step_by(2).collect();
        format!("{}-{short}", int_to_base36(ts))
    }

    pub fn make_token_at(&self, user: &TokenUser, now: DateTime<Utc>) -> String {
        let ts = self.num_seconds(now).max(0) as u64;
        self.make_with_timestamp(&self.keys[0], user, ts)
    }

    pub fn make_token(&self, user: &TokenUser) -> String {
        self.make_token_at(user, Utc::now())
    }

    /// `check_token`: signature under any key, then age `<= PASSWORD_RESET_TIMEOUT`
    /// (future timestamps pass, as in Django).
    pub fn check_token_at(&self, user: &TokenUser, token: &str, now: DateTime<Utc>) -> bool {
        if token.is_empty() {
            return false;
        }
        let mut parts = token.split('-');
        let (Some(ts_b36), Some(_), None) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let Some(ts) = base36_to_int(ts_b36).and_then(|t| u64::try_from(t).ok()) else {
            return false;
        };
        let matched = self.keys.iter().any(|k| {
            constant_time_compare(
                self.make_with_timestamp(k, user, ts).as_bytes(),
                token.as_bytes(),
            )
        });
        matched && (self.num_seconds(now) as i128 - ts as i128) <= self.timeout as i128
    }

    pub fn check_token(&self, user: &TokenUser, token: &str) -> bool {
        self.check_token_at(user, token, Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const KEY: &[u8] = b"spec-secret-key";
    const NONE: &[&[u8]] = &[];
    const PW: &str =
        "pbkdf2_sha256$1000000$abcdefghijklmnopqrstuv$RQsDuUkUYsVKKMGEVf7KhP1xnDLlZ9RiOO63KN0aAbE=";

    fn alice() -> TokenUser<'static> {
        TokenUser {
            pk: "1",
            password: PW,
            last_login: Some(
                NaiveDate::from_ymd_opt(2024, 1, 2)
                    .unwrap()
                    .and_hms_micro_opt(3, 4, 5, 678_901)
                    .unwrap(),
            ),
            email: "alice@example.com",
        }
    }

    /// Django's `_now()` mocked to the naive local 2024-01-02 12:00:00 (tokens.md).
    fn spec_now(tz: chrono_tz::Tz) -> DateTime<Utc> {
        tz.with_ymd_and_hms(2024, 1, 2, 12, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn tokens_match_django() {
        let g = PasswordResetTokenGenerator::new(KEY, NONE, DEFAULT_TIMEOUT, chrono_tz::UTC);
        let now = spec_now(chrono_tz::UTC);
        assert_eq!(g.num_seconds(now), 725_889_600);
        assert_eq!(
            g.make_token_at(&alice(), now),
            "c06c00-ef63ce8d9f1a11f63aa426ad0fb288be"
        );
        let bob = TokenUser {
            pk: "2",
            password: "md5$x$y",
            last_login: None,
            email: "",
        };
        assert_eq!(
            g.make_token_at(&bob, now),
            "c06c00-ff78ab4118cd7be697eb1fc9452bb193"
        );
    }

    #[test]
    fn timestamps_are_local_wall_clock() {
        let chicago: chrono_tz::Tz = "America/Chicago".parse().unwrap();
        let g = PasswordResetTokenGenerator::new(KEY, NONE, DEFAULT_TIMEOUT, chicago);
        // The same naive local time in Chicago gives the same token as in UTC.
        assert_eq!(
            g.make_token_at(&alice(), spec_now(chicago)),
            "c06c00-ef63ce8d9f1a11f63aa426ad0fb288be"
        );
        let utc = PasswordResetTokenGenerator::new(KEY, NONE, DEFAULT_TIMEOUT, chrono_tz::UTC);
        let instant = spec_now(chrono_tz::UTC);
        assert_eq!(utc.num_seconds(instant) - g.num_seconds(instant), 21_600);
    }

    #[test]
    fn check_is_strict_about_timeout_and_spent_by_changes() {
        let g = PasswordResetTokenGenerator::new(KEY, NONE, DEFAULT_TIMEOUT, chrono_tz::UTC);
        let now = spec_now(chrono_tz::UTC);
        let token = g.make_token_at(&alice(), now);
        assert!(g.check_token_at(&alice(), &token, now + chrono::Duration::seconds(259_200)));
        assert!(!g.check_token_at(&alice(), &token, now + chrono::Duration::seconds(259_201)));
        let mut changed = alice();
        changed.password = "md5$x$y";
        assert!(!g.check_token_at(&changed, &token, now));
        let mut relogged = alice();
        relogged.last_login = None;
        assert!(!g.check_token_at(&relogged, &token, now));
        for bad in [
            "",
            "-",
            "c06c00",
            "c06c00-x-y",
            "C06C00-ef63ce8d9f1a11f63aa426ad0fb288be",
            "zzzzzzzzzzzzzz-ab",
            "é-é",
        ] {
            assert!(!g.check_token_at(&alice(), bad, now), "{bad:?}");
        }
    }

    #[test]
    fn fallback_secrets_verify() {
        let now = spec_now(chrono_tz::UTC);
        let old = "c06c00-b352d412950ed667af2d3608cef977a5";
        let without = PasswordResetTokenGenerator::new(KEY, NONE, DEFAULT_TIMEOUT, chrono_tz::UTC);
        assert!(!without.check_token_at(&alice(), old, now));
        let with = PasswordResetTokenGenerator::new(
            KEY,
            &[b"old-secret-key"],
            DEFAULT_TIMEOUT,
            chrono_tz::UTC,
        );
        assert!(with.check_token_at(&alice(), old, now));
        assert_ne!(
            with.make_token_at(&alice(), now),
            old,
            "fallbacks never sign"
        );
    }

    #[test]
    fn base36_and_uidb64() {
        assert_eq!(int_to_base36(725_889_600), "c06c00");
        assert_eq!(int_to_base36(0), "0");
        assert_eq!(base36_to_int("c06c00"), Some(725_889_600));
        assert_eq!(base36_to_int(" C06C00 "), Some(725_889_600));
        assert_eq!(base36_to_int("1_0"), Some(36));
        assert_eq!(base36_to_int("1__0"), None);
        assert_eq!(base36_to_int("zzzzzzzzzzzzzz"), None);
        assert_eq!(base36_to_int(""), None);
        assert_eq!(uidb64_encode("1"), "MQ");
        assert_eq!(uidb64_decode("MQ").as_deref(), Some("1"));
        assert_eq!(
            uidb64_encode("12345678-1234-5678-1234-567812345678"),
            "MTIzNDU2NzgtMTIzNC01Njc4LTEyMzQtNTY3ODEyMzQ1Njc4"
        );
        assert_eq!(uidb64_decode("!!"), None);
        assert_eq!(uidb64_decode("_w"), None, "not UTF-8");
    }
}
