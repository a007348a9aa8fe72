//! `django.core.signing`: Signer / TimestampSigner unsign, `loads`, `decode_object` (with the
//! `.` zlib marker), base62. The input is one signed value (seeds: fuzz/seeds.py).
#![no_main]
#[path = "../common.rs"]
mod common;

use common::*;
use djauth::formats::crypto::Algorithm;
use djauth::formats::signing::{self, Signer, TimestampSigner};
use libfuzzer_sys::fuzz_target;

/// A bound well under libFuzzer's malloc limit; the production default is 4 MiB.
const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    let s = s.as_ref();

    let signer = Signer::new(KEY, FALLBACKS, "django.core.signing.Signer", Algorithm::Sha256);
    if let Ok(v) = signer.unsign(s) {
        assert!(s.starts_with(v), "unsign returns a prefix");
    }
    // Signing anything and unsigning it gives it back, with and without a timestamp.
    assert_eq!(signer.unsign(&signer.sign(s)).unwrap(), s);
    let ts = TimestampSigner::new(KEY, FALLBACKS, "django.core.signing.TimestampSigner", Algorithm::Sha256);
    let _ = ts.unsign_at(s, None, NOW);
    let _ = ts.unsign_at(s, Some(60.0), NOW + 100.0);
    assert_eq!(ts.unsign_at(&ts.sign_at(s, NOW), Some(0.0), NOW).unwrap(), s);

    // Any separator Django accepts round-trips too.
    let sep = ["/", "::", "a$", "é", "\u{0}x"][(pick(data) % 5) as usize];
    let custom = TimestampSigner::from_signer(signer.clone().with_sep(sep).unwrap());
    let _ = custom.unsign_at(s, None, NOW);
    assert_eq!(custom.unsign_at(&custom.sign_at(s, NOW), Some(0.0), NOW).unwrap(), s);

    // signing.loads and a signed cookie (get_signed_cookie(salt="color")).
    let _ = signing::loads_at(s, KEY, FALLBACKS, signing::DEFAULT_SALT, Some(3600.0), NOW);
    let cookie = TimestampSigner::new(
        &signing::cookie_signer_key(KEY),
        &[signing::cookie_signer_key(OLD_KEY)],
        &signing::cookie_signer_legacy_salt("signed", "color"),
        Algorithm::Sha256,
    );
    let _ = cookie.unsign_at(s, Some(3600.0), NOW);

    // The payload after the signature check: whole input, and its first field.
    for payload in [s, s.split(':').next().unwrap_or("")] {
        if let Ok(value) = signing::decode_object(payload, LIMIT) {
            for compress in [false, true] {
                let encoded = signing::encode_object(&value, compress);
                assert!(encoded.is_ascii());
                assert_eq!(signing::decode_object(&encoded, usize::MAX).unwrap(), value, "{encoded}");
            }
            let signed = signing::dumps_at(&value, KEY, "fuzz", true, NOW);
            assert_eq!(signing::loads_at(&signed, KEY, FALLBACKS, "fuzz", Some(0.0), NOW).unwrap(), value);
        }
    }
    let _ = signing::zlib_decompress_bounded(data, 64 * 1024);

    for field in s.split(':') {
        if let Ok(n) = signing::b62_decode(field) {
            assert_eq!(signing::b62_decode(&signing::b62_encode(n)).unwrap(), n);
        }
    }
});
