//! The `Cookie` request header (`formats::cookies::get`, Django's `parse_cookie` rules), and
//! `Set-Cookie` values made from the input read back. The input is one header value.
#![no_main]
#[path = "../common.rs"]
mod common;

use common::*;
use djauth::formats::cookies::{self, CookieSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    let header = s.as_ref();
    let first_name = header.split(';').next().and_then(|c| c.split_once('=')).map(|(k, _)| k.trim());
    for name in ["sessionid", "csrftoken", "", "signed"].into_iter().chain(first_name) {
        if let Some(v) = cookies::get(header, name) {
            assert!(!v.contains(';'), "{name:?} -> {v:?}");
            // The value is a piece of the header.
            let (start, end) = (header.as_ptr() as usize, header.as_ptr() as usize + header.len());
            assert!(v.as_ptr() as usize >= start && v.as_ptr() as usize + v.len() <= end);
        }
    }

    // A cookie djauth sets comes back as sent, when its value is one Django would send
    // unquoted (SimpleCookie quotes the rest) and its name is not an attribute name.
    let (name, value) = header.split_once('=').unwrap_or(("sessionid", header));
    let legal = |c: char| c.is_ascii_graphic() && !"\";,\\".contains(c);
    let attributes = ["domain", "expires", "httponly", "max-age", "path", "samesite", "secure"];
    if !name.is_empty()
        && name.chars().all(|c| legal(c) && c != '=')
        && value.chars().all(legal)
        && !attributes.contains(&name.to_ascii_lowercase().as_str())
    {
        let spec = CookieSpec {
            name,
            value,
            max_age: Some(1_209_600),
            domain: Some("example.com"),
            path: "/",
            secure: true,
            httponly: true,
            samesite: Some("Lax"),
        };
        let set = cookies::set_cookie(&spec, now_utc());
        assert_eq!(cookies::get(&set, name), Some(value), "{set}");
    }
    let _ = cookies::delete_cookie(name, Some(value), "/", Some("Lax"));
});
