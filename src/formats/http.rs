//! `django.utils.http.url_has_allowed_host_and_scheme` and `HttpRequest.get_host`'s
//! validation: the rules that decide which `next` URLs are safe and which hosts are served.

use super::csrf::{split_domain_port, urlsplit, validate_host};

/// `MAX_URL_LENGTH` (5.0+): longer `next` URLs are never considered safe.
pub const MAX_URL_LENGTH: usize = 2048;

/// Is `url` a safe redirect target? `max_len` is `Some(2048)` from Django 5.0 on.
pub fn url_has_allowed_host_and_scheme(
    url: &str,
    allowed_hosts: &[&str],
    require_https: bool,
    max_len: Option<usize>,
) -> bool {
    let url = url.trim();
    if url.is_empty() {
        return false;
    }
    // Browsers treat a backslash like a slash: both spellings must be safe.
    allowed(url, allowed_hosts, require_https, max_len)
        && allowed(
            &url.replace('\\', "/"),
            allowed_hosts,
            require_https,
            max_len,
        )
}

fn allowed(url: &str, allowed_hosts: &[&str], require_https: bool, max_len: Option<usize>) -> bool {
    if url.starts_with("///") || max_len.is_some_and(|m| url.chars().count() > m) {
        return false;
    }
    let Ok(info) = urlsplit(url) else {
        return false;
    };
    if info.netloc.is_empty() && !info.scheme.is_empty() {
        return false;
    }
    if url.chars().next().is_some_and(is_unicode_category_c) {
        return false;
    }
    let scheme = if info.scheme.is_empty() && !info.netloc.is_empty() {
        "http"
    } else {
        info.scheme.as_str()
    };
    let valid_scheme = if require_https {
        scheme == "https"
    } else {
        scheme == "http" || scheme == "https"
    };
    (info.netloc.is_empty() || allowed_hosts.contains(&info.netloc.as_str()))
        && (scheme.is_empty() || valid_scheme)
}

/// `unicodedata.category(c)[0] == "C"`: control, format, surrogate, private use, unassigned.
fn is_unicode_category_c(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}' | '\u{890}'..='\u{891}'
            | '\u{8e2}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
            | '\u{e000}'..='\u{f8ff}' | '\u{f0000}'..='\u{ffffd}' | '\u{100000}'..='\u{10fffd}'
            | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

/// `ALLOWED_HOSTS` as `get_host` applies it: with `DEBUG` and an empty setting, the local
/// names Django allows.
pub fn effective_allowed_hosts(allowed_hosts: &[String], debug: bool) -> Vec<String> {
    if debug && allowed_hosts.is_empty() {
        return vec![".localhost".into(), "127.0.0.1".into(), "[::1]".into()];
    }
    allowed_hosts.to_vec()
}

/// `get_host()`'s check: the host (port included) if its domain is allowed, else `None`
/// (Django raises `DisallowedHost` → 400).
pub fn validated_host<'a>(host: &'a str, allowed_hosts: &[String]) -> Option<&'a str> {
    let (domain, _port) = split_domain_port(host);
    (!domain.is_empty() && validate_host(&domain, allowed_hosts)).then_some(host)
}

/// Python's `quote(bytes, safe)`: alphanumerics, `_.-~` and `safe` stay, the rest `%XX`.
fn quote_bytes(bytes: &[u8], safe: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || safe.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// `request.get_full_path()` from the raw request target: the decoded path re-quoted by
/// `escape_uri_path`, then `?` and the query string through `iri_to_uri` (which keeps `%`).
pub fn get_full_path(raw_path: &str, raw_query: Option<&str>) -> String {
    let mut out = String::with_capacity(raw_path.len() + raw_query.map_or(0, str::len) + 8);
    quote_bytes(&percent_decode(raw_path), b"/:@&+$,!*'()", &mut out);
    if let Some(q) = raw_query.filter(|q| !q.is_empty()) {
        out.push('?');
        // WSGI hands Django the query as Latin-1 text; quote() re-encodes it as UTF-8.
        let text: String = q.bytes().map(char::from).collect();
        quote_bytes(text.as_bytes(), b"/#%[]=:;$&()+,!?*@'", &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn full_path_like_django() {
        assert_eq!(
            super::get_full_path("/profile", Some("x=|&y=^")),
            "/profile?x=%7C&y=%5E"
        );
        assert_eq!(super::get_full_path("/a%20b/|", None), "/a%20b/%7C");
        assert_eq!(
            super::get_full_path("/p", Some("a=1&b=x%20y+z")),
            "/p?a=1&b=x%20y+z"
        );
        assert_eq!(super::get_full_path("/%E2%82%AC", Some("")), "/%E2%82%AC");
        assert_eq!(super::get_full_path("/%zz", None), "/%25zz");
    }

    use super::*;

    // shared/spec/views.md §2, from Django 5.2.19 with allowed {"example.com"}.
    #[test]
    fn matches_djangos_table() {
        let hosts = ["example.com"];
        let m = Some(MAX_URL_LENGTH);
        for (url, http, https) in [
            ("/next/", true, true),
            ("next/", true, true),
            ("", false, false),
            ("http://example.com/x", true, false),
            ("https://example.com/x", true, true),
            ("//example.com/x", true, false),
            ("HTTP://example.com/", true, false),
        ] {
            assert_eq!(
                url_has_allowed_host_and_scheme(url, &hosts, false, m),
                http,
                "{url:?}"
            );
            assert_eq!(
                url_has_allowed_host_and_scheme(url, &hosts, true, m),
                https,
                "{url:?} https"
            );
        }
        for url in [
            "//evil.com/x",
            "///evil.com",
            "http:///evil.com",
            "https:evil.com",
            "\\\\evil.com",
            "/\\evil.com",
            "\u{8}//evil.com",
            "javascript:alert(1)",
            "ftp://example.com/",
            "http://example.com:8000/",
            "http://user:pw@example.com/",
            " http://evil.com",
        ] {
            assert!(
                !url_has_allowed_host_and_scheme(url, &hosts, false, m),
                "{url:?}"
            );
        }
        let long = format!("/{}", "a".repeat(2100));
        assert!(!url_has_allowed_host_and_scheme(&long, &hosts, false, m));
        assert!(
            url_has_allowed_host_and_scheme(&long, &hosts, false, None),
            "4.2 has no limit"
        );
    }

    #[test]
    fn hosts() {
        let allowed = vec!["example.com".to_string(), ".example.org".to_string()];
        assert_eq!(
            validated_host("example.com:8000", &allowed),
            Some("example.com:8000")
        );
        assert_eq!(
            validated_host("a.example.org", &allowed),
            Some("a.example.org")
        );
        assert_eq!(validated_host("evil.com", &allowed), None);
        assert_eq!(validated_host("bad host", &allowed), None);
        let local = effective_allowed_hosts(&[], true);
        assert!(validated_host("localhost:8000", &local).is_some());
        assert!(validated_host("localhost", &effective_allowed_hosts(&[], false)).is_none());
    }
}
