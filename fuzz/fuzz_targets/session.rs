//! Session blobs: `SessionCodec::decode_db` / `decode_cookie_at`, then what djauth reads from a
//! decoded session (`_session_expiry`, the auth hash); also the same readers on the input taken
//! as a bare JSON object, which the signature would otherwise keep the fuzzer away from.
#![no_main]
#[path = "../common.rs"]
mod common;

use common::*;
use djauth::formats::json;
use djauth::formats::session::{self, SessionAuthHasher, SessionCodec, SessionData};
use libfuzzer_sys::fuzz_target;

fn read_session(data: &SessionData) {
    let now = now_utc();
    for tz in [chrono_tz::UTC, chrono_tz::America::Chicago] {
        let expiry = session::expiry_of(data, tz);
        let _ = session::expiry_age(&expiry, now, 1_209_600);
        let _ = session::expiry_date(&expiry, now, 1_209_600);
        let mut copy = data.clone();
        session::set_expiry(&mut copy, expiry.clone());
    }
    let _ = session::expire_at_browser_close(data, false);
    let hasher = SessionAuthHasher::new(KEY, FALLBACKS);
    let stored = data.get(session::AUTH_HASH_KEY).and_then(|v| v.as_str());
    let _ = hasher.check(stored, "md5$salt$hash");
}

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    let s = s.as_ref();
    let codec = SessionCodec::new(KEY, FALLBACKS, 1_209_600).with_max_decompressed(1 << 20);

    for decoded in [codec.decode_db(s), codec.decode_cookie_at(s, NOW)] {
        if let Ok(d) = decoded {
            read_session(&d);
            // What djauth writes back decodes to the same session, in both engines.
            assert_eq!(codec.decode_db(&codec.encode_db_at(&d, NOW)).unwrap(), d);
            assert_eq!(codec.decode_cookie_at(&codec.encode_cookie_at(&d, NOW), NOW).unwrap(), d);
        }
    }
    if let Ok(serde_json::Value::Object(d)) = json::loads(data) {
        read_session(&d);
        assert_eq!(codec.decode_db(&codec.encode_db_at(&d, NOW)).unwrap(), d);
    }

    let _ = session::cookie_timestamp(s);
    let _ = session::is_valid_session_key(s);
    let _ = session::device_name(Some(s));
    assert_eq!(session::public_session_id(s).len(), 20);
    for tz in [chrono_tz::UTC, chrono_tz::Europe::London] {
        let _ = session::parse_isoformat(s, tz);
    }
});
