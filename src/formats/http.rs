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

/// An address or network from `TRUSTED_PROXIES` ("10.0.0.0/8", "::1", "192.0.2.7").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: std::net::IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = ();
    fn from_str(s: &str) -> Result<Cidr, ()> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| ())?)),
            None => (s.trim(), None),
        };
        let net: std::net::IpAddr = addr.parse().map_err(|_| ())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(());
        }
        Ok(Cidr { net, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// One `for=` node of a `Forwarded` header, or an `X-Forwarded-For` entry, as an address
/// (ports and brackets removed; "unknown" and obfuscated identifiers are not addresses).
fn forwarded_node(node: &str) -> Option<std::net::IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.rsplit_once(':')?.0.parse().ok()
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// forwarding chain (`X-Forwarded-For`, else `Forwarded`) is read from the right, skipping
/// trusted proxies; the first untrusted hop is the client. A chain that is all trusted
/// proxies yields its leftmost entry; unparsable entries end the walk (the peer is kept).
pub fn client_ip(
    peer: Option<std::net::IpAddr>,
    x_forwarded_for: Option<&str>,
    forwarded: Option<&str>,
    trusted: &[Cidr],
) -> Option<std::net::IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let chain: Vec<&str> = match (x_forwarded_for, forwarded) {
        (Some(xff), _) => xff.split(',').collect(),
        (None, Some(fwd)) => fwd
            .split(',')
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then_some(v)
                })
            })
            .collect(),
        (None, None) => return Some(peer),
    };
    let mut client = peer;
    for hop in chain.iter().rev() {
        let Some(ip) = forwarded_node(hop) else {
            return Some(client);
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Some(client)
}

/// How `SESSION_INDEX_IP` stores an address: "full", "truncated" (IPv4 /24, IPv6 /48, the
/// rest zeroed) or "hashed" (keyed: `key` is derived from SECRET_KEY by the caller).
pub fn stored_ip(ip: std::net::IpAddr, mode: &str, key: &[u8]) -> String {
    use std::net::IpAddr;
    match mode {
        "truncated" => match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                std::net::Ipv4Addr::new(a, b, c, 0).to_string()
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX << 80;
                std::net::Ipv6Addr::from(u128::from(v6) & mask).to_string()
            }
        },
        "hashed" => {
            use hmac::Mac;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
                .expect("HMAC takes a key of any length");
            mac.update(ip.to_string().as_bytes());
            let digest = mac.finalize().into_bytes();
            // 20 bytes of the MAC, hex: fits the column (45) and tells addresses apart.
            digest[..20].iter().map(|b| format!("{b:02x}")).collect()
        }
        _ => ip.to_string(),
    }
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
        // Python's unquote: `%` and exactly two hex digits (from_str_radix alone would
        // also take "+F").
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("two ASCII hex digits");
            out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Django's `repercent_broken_unicode` (WSGIRequest's PATH_INFO): each invalid UTF-8
/// sequence (the maximal subpart, as Python's decoder reports it) is percent-encoded again,
/// so the path stays text; `escape_uri_path` later quotes those `%` as `%25`.
fn repercent_broken_unicode(mut path: Vec<u8>) -> Vec<u8> {
    let mut start = 0;
    while let Err(e) = std::str::from_utf8(&path[start..]) {
        let bad_start = start + e.valid_up_to();
        let bad_end = e.error_len().map_or(path.len(), |n| bad_start + n);
        let quoted: Vec<u8> = path[bad_start..bad_end]
            .iter()
            .flat_map(|b| format!("%{b:02X}").into_bytes())
            .collect();
        path.splice(bad_start..bad_end, quoted.iter().copied());
        start = bad_start + quoted.len();
    }
    path
}

/// `request.get_full_path()` from the raw request target: the decoded path re-quoted by
/// `escape_uri_path`, then `?` and the query string through `iri_to_uri` (which keeps `%`).
pub fn get_full_path(raw_path: &str, raw_query: Option<&str>) -> String {
    let mut out = String::with_capacity(raw_path.len() + raw_query.map_or(0, str::len) + 8);
    let path = repercent_broken_unicode(percent_decode(raw_path));
    quote_bytes(&path, b"/:@&+$,!*'()", &mut out);
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
    fn client_address_from_trusted_proxies_only() {
        use super::{client_ip, stored_ip, Cidr};
        let t: Vec<Cidr> = ["127.0.0.1", "10.0.0.0/8", "::1"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        let ip = |s: &str| Some(s.parse().unwrap());
        // An untrusted peer's headers are ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("1.2.3.4"), None, &t),
            ip("203.0.113.9")
        );
        // From the right, skipping trusted hops; a spoofed left part is not believed.
        assert_eq!(
            client_ip(
                ip("127.0.0.1"),
                Some("6.6.6.6, 198.51.100.7, 10.1.2.3"),
                None,
                &t
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("10.0.0.2, 10.0.0.3"), None, &t),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("garbage"), None, &t),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_ip(
                ip("::1"),
                None,
                Some(r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.1"#),
                &t
            ),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_ip(ip("127.0.0.1"), None, Some("for=192.0.2.60:8080"), &t),
            ip("192.0.2.60")
        );
        assert_eq!(
            client_ip(ip("::ffff:10.9.9.9"), Some("192.0.2.1"), None, &t),
            ip("192.0.2.1")
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err() && "nope".parse::<Cidr>().is_err());
        let v4 = "192.0.2.77".parse().unwrap();
        assert_eq!(stored_ip(v4, "truncated", b""), "192.0.2.0");
        assert_eq!(
            stored_ip("2001:db8:1:2:3::9".parse().unwrap(), "truncated", b""),
            "2001:db8:1::"
        );
        let h = stored_ip(v4, "hashed", b"k");
        assert_eq!(h.len(), 40);
        assert_ne!(h, stored_ip(v4, "hashed", b"other key"));
        assert_eq!(stored_ip(v4, "full", b""), "192.0.2.77");
    }

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
