//! Form bodies as the views read them (`parse_form` in src/web/views.rs is
//! `serde_urlencoded::from_bytes` into pairs), and re-encoding what was read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(data) else {
        return;
    };
    let again = serde_urlencoded::to_string(&pairs).expect("pairs of strings encode");
    let back: Vec<(String, String)> = serde_urlencoded::from_str(&again).expect("what we wrote parses");
    assert_eq!(back, pairs, "{again}");
});
