//! `formats::http`: `url_has_allowed_host_and_scheme`, `validated_host`, `get_full_path`.
//! Input lines: next URL, Host, allowed hosts (comma-separated), raw path, raw query.
#![no_main]
#[path = "../common.rs"]
mod common;

use common::*;
use djauth::formats::http;
use libfuzzer_sys::fuzz_target;

/// Python's `unquote_to_bytes`: `%` and exactly two hex digits, anything else kept as is.
fn py_unquote(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Django's `request.get_full_path()` path part for a raw request path, written plainly: the
/// WSGI server unquotes it, `repercent_broken_unicode` turns bytes that are not UTF-8 back
/// into `%XX` text, and `escape_uri_path` quotes the result (that `%` included).
fn django_path(raw_path: &str) -> String {
    fn quote(s: &str, out: &mut String) {
        for &b in s.as_bytes() {
            if b.is_ascii_alphanumeric() || b"_.-~/:@&+$,!*'()".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let bytes = py_unquote(raw_path);
    let mut rest = &bytes[..];
    let mut out = String::new();
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                quote(s, &mut out);
                return out;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                quote(std::str::from_utf8(valid).unwrap(), &mut out);
                let bad = e.error_len().unwrap_or(after.len());
                for b in &after[..bad] {
                    out.push_str(&format!("%25{b:02X}"));
                }
                rest = &after[bad..];
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    let lines: Vec<&str> = s.split('\n').collect();
    let url = lines[0];
    let host = line(&lines, 1).unwrap_or("");
    let allowed: Vec<String> = line(&lines, 2).map(|l| l.split(',').map(str::to_owned).collect()).unwrap_or_default();
    let allowed_refs: Vec<&str> = allowed.iter().map(String::as_str).collect();

    for &hosts in &[&allowed_refs[..], &["example.com"][..]] {
        let https = http::url_has_allowed_host_and_scheme(url, hosts, true, Some(http::MAX_URL_LENGTH));
        let any = http::url_has_allowed_host_and_scheme(url, hosts, false, Some(http::MAX_URL_LENGTH));
        let unlimited = http::url_has_allowed_host_and_scheme(url, hosts, false, None);
        assert!(!https || any, "safe for https but not for http: {url:?}");
        assert!(!any || unlimited, "the length limit made {url:?} safe");
    }

    for debug in [false, true] {
        let effective = http::effective_allowed_hosts(&allowed, debug);
        if let Some(h) = http::validated_host(host, &effective) {
            assert_eq!(h, host);
        }
    }

    for (path, query) in [(line(&lines, 3).unwrap_or("/"), line(&lines, 4)), (url, None), (host, Some(url))] {
        let full = http::get_full_path(path, query);
        assert!(full.is_ascii() && !full.contains(' '), "{full:?}");
        // Known difference (src/formats/proptests.rs, fuzz_regressions): djauth quotes bytes
        // that are not UTF-8 once, Django twice. Drop the UTF-8 condition once that is fixed.
        if query.is_none_or(str::is_empty) && std::str::from_utf8(&py_unquote(path)).is_ok() {
            assert_eq!(full, django_path(path), "get_full_path({path:?})");
        }
    }
});
