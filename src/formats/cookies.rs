//! `Set-Cookie` headers as Django writes them (Python's `SimpleCookie`: attributes sorted by
//! name — Domain, expires, HttpOnly, Max-Age, Path, SameSite, Secure), and request cookies
//! parsed leniently, as Django does (a malformed pair is skipped, not fatal).

use chrono::{DateTime, Utc};

pub struct CookieSpec<'a> {
    pub name: &'a str,
    pub value: &'a str,
    /// `None`: a browser-session cookie.
    pub max_age: Option<i64>,
    pub domain: Option<&'a str>,
    pub path: &'a str,
    pub secure: bool,
    pub httponly: bool,
    pub samesite: Option<&'a str>,
}

/// `http_date()`: `Mon, 07 Dec 2026 08:02:54 GMT`.
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

pub fn set_cookie(c: &CookieSpec, now: DateTime<Utc>) -> String {
    let mut out = format!("{}={}", c.name, c.value);
    if let Some(d) = c.domain {
        out.push_str(&format!("; Domain={d}"));
    }
    if let Some(age) = c.max_age {
        out.push_str(&format!(
            "; expires={}",
            http_date(now + chrono::Duration::seconds(age))
        ));
    }
    if c.httponly {
        out.push_str("; HttpOnly");
    }
    if let Some(age) = c.max_age {
        out.push_str(&format!("; Max-Age={age}"));
    }
    out.push_str(&format!("; Path={}", c.path));
    if let Some(s) = c.samesite {
        out.push_str(&format!("; SameSite={s}"));
    }
    if c.secure {
        out.push_str("; Secure");
    }
    out
}

/// `delete_cookie`: empty value, `Max-Age=0`, the epoch as `expires`; `Secure` only for
/// `__Secure-`/`__Host-` names or `SameSite=None`, as Django does.
pub fn delete_cookie(
    name: &str,
    domain: Option<&str>,
    path: &str,
    samesite: Option<&str>,
) -> String {
    let secure =
        name.starts_with("__Secure-") || name.starts_with("__Host-") || samesite == Some("None");
    let mut out = format!("{name}=\"\"");
    if let Some(d) = domain {
        out.push_str(&format!("; Domain={d}"));
    }
    out.push_str("; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0");
    out.push_str(&format!("; Path={path}"));
    if let Some(s) = samesite {
        out.push_str(&format!("; SameSite={s}"));
    }
    if secure {
        out.push_str("; Secure");
    }
    out
}

/// The value of cookie `name` in a `Cookie` header (`django.http.cookie.parse_cookie`: split
/// on `;`, first `=`, strip spaces; the last occurrence wins).
pub fn get<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let mut found = None;
    for chunk in header.split(';') {
        let (k, v) = match chunk.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => ("", chunk.trim()),
        };
        if k == name {
            found = Some(
                v.strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(v),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_like_django() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 8, 2, 54).unwrap();
        let c = CookieSpec {
            name: "sessionid",
            value: "qrqggtd4cwz2qboal4rekv7fbeyapngc",
            max_age: Some(1_209_600),
            domain: None,
            path: "/",
            secure: false,
            httponly: true,
            samesite: Some("Lax"),
        };
        assert_eq!(
            set_cookie(&c, now),
            "sessionid=qrqggtd4cwz2qboal4rekv7fbeyapngc; expires=Mon, 07 Dec 2026 08:02:54 GMT; HttpOnly; Max-Age=1209600; Path=/; SameSite=Lax"
        );
        assert_eq!(
            delete_cookie("sessionid", None, "/", Some("Lax")),
            "sessionid=\"\"; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=Lax"
        );
    }

    #[test]
    fn parses_leniently() {
        assert_eq!(get("a=1; sessionid=abc; b", "sessionid"), Some("abc"));
        assert_eq!(get("sessionid=1; sessionid=2", "sessionid"), Some("2"));
        assert_eq!(get("garbage;;;=", "sessionid"), None);
        assert_eq!(get("x=\"q\"", "x"), Some("q"));
    }
}
