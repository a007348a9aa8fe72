//! Password-reset links: `check_token` on arbitrary token text, `uidb64` decoding, base36.
//! Input lines: token, uidb64, and optionally a clock (Unix seconds) to check at.
#![no_main]
#[path = "../common.rs"]
mod common;

use chrono::{DateTime, NaiveDate, Utc};
use common::*;
use djauth::formats::tokens::{self, PasswordResetTokenGenerator, TokenUser};
use libfuzzer_sys::fuzz_target;

/// The user fuzz/seeds.py made the seed tokens for.
fn seed_user<'a>(pk: &'a str) -> TokenUser<'a> {
    TokenUser {
        pk,
        password: "md5$fuzzsaltfuzzsaltfuzzsa$40233c7576c3a7d23da7d03ce9cfa229",
        last_login: NaiveDate::from_ymd_opt(2024, 1, 2).and_then(|d| d.and_hms_micro_opt(3, 4, 5, 678_901)),
        email: "alice@example.com",
    }
}

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    let lines: Vec<&str> = s.split('\n').collect();
    let token = lines[0];
    let uid = line(&lines, 1).unwrap_or("MQ");
    let now = line(&lines, 2)
        .and_then(|l| l.trim().parse::<i64>().ok())
        .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
        .unwrap_or_else(now_utc);

    let pk = tokens::uidb64_decode(uid);
    if let Some(pk) = &pk {
        assert_eq!(tokens::uidb64_decode(&tokens::uidb64_encode(pk)).as_deref(), Some(pk.as_str()));
    }
    let pk = pk.unwrap_or_else(|| "1".to_owned());
    let user = seed_user(&pk);

    for tz in [chrono_tz::UTC, chrono_tz::America::Chicago] {
        let g = PasswordResetTokenGenerator::new(KEY, FALLBACKS, tokens::DEFAULT_TIMEOUT, tz);
        let _ = g.check_token_at(&user, token, now);
        let _ = g.num_seconds(now);
        // A token made now checks now, and not for another user or after the timeout.
        let made = g.make_token_at(&user, now);
        if g.num_seconds(now) >= 0 {
            assert!(g.check_token_at(&user, &made, now), "{made}");
            // One hour more than the timeout: the clock is local wall time, and DST moves it.
            let past = chrono::Duration::seconds(tokens::DEFAULT_TIMEOUT + 3601);
            if let Some(later) = now.checked_add_signed(past) {
                assert!(!g.check_token_at(&user, &made, later));
            }
        }
        let other = format!("{pk}x");
        assert!(!g.check_token_at(&seed_user(&other), &made, now));
    }

    let ts = token.split('-').next().unwrap_or("");
    if let Some(n) = tokens::base36_to_int(ts) {
        if let Ok(n) = u64::try_from(n) {
            assert_eq!(tokens::base36_to_int(&tokens::int_to_base36(n)), Some(n as i128));
        }
    }
});
