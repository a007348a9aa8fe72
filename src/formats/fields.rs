//! Django's field-level rules that both the web forms and the management commands apply:
//! `EmailValidator` (django/core/validators.py, 5.2), `BaseUserManager.normalize_email`,
//! `AbstractBaseUser.normalize_username`. Pure: no I/O.

use super::validators::{py_lower, py_strip};
use unicode_normalization::UnicodeNormalization;

// ---------------------------------------------------------------------------------------
// EmailValidator (django/core/validators.py, 5.2)
// ---------------------------------------------------------------------------------------

/// Non-ASCII characters that `re.IGNORECASE` lets into an ASCII letter class: `İ` and `ı`
/// (to/from `i`), `ſ` (to `S`) and the Kelvin sign (to `k`).
const IGNORECASE_EXTRA: [char; 4] = ['\u{130}', '\u{131}', '\u{17f}', '\u{212a}'];

/// `[-!#$%&'*+/=?^_`{}|~0-9A-Z]` with `re.IGNORECASE`.
fn is_atom_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-!#$%&'*+/=?^_`{}|~".contains(c) || IGNORECASE_EXTRA.contains(&c)
}

/// `[\001-\010\013\014\016-\037!#-\[\]-\177]` with `re.IGNORECASE`.
fn is_quoted_char(c: char) -> bool {
    matches!(c as u32, 0x01..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x21 | 0x23..=0x5b | 0x5d..=0x7f)
        || IGNORECASE_EXTRA.contains(&c)
}

/// `[\001-\011\013\014\016-\177]` (after a backslash) with `re.IGNORECASE`.
fn is_quoted_escape(c: char) -> bool {
    matches!(c as u32, 0x01..=0x09 | 0x0b | 0x0c | 0x0e..=0x7f) || IGNORECASE_EXTRA.contains(&c)
}

/// `user_regex`: a dot-atom or a quoted string.
fn user_part_ok(user: &str) -> bool {
    if let Some(inner) = user.strip_prefix('"') {
        let chars: Vec<char> = inner.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '"' => return i == chars.len() - 1,
                '\\' if i + 1 < chars.len() && is_quoted_escape(chars[i + 1]) => i += 2,
                c if is_quoted_char(c) => i += 1,
                _ => return false,
            }
        }
        // A dot-atom cannot start with a quote either.
        return false;
    }
    user.split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atom_char))
}

/// `ul = "\u00a1-\uffff"` plus `a-z0-9` (case-insensitive).
fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ('\u{a1}'..='\u{ffff}').contains(&c)
}

/// `hostname_re + domain_re + tld_no_fqdn_re`, anchored. None of the classes holds a dot,
/// so the labels are the dot-separated parts.
fn domain_regex_ok(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let len = |s: &str| s.chars().count();
    let mid = |c: char| is_host_char(c) || c == '-';
    let no_dash_ends = |s: &str| !s.starts_with('-') && !s.ends_with('-');
    // hostname_re: [H](?:[H-]{0,61}[H])?
    let host = labels[0];
    if !(1..=63).contains(&len(host)) || !host.chars().all(mid) || !no_dash_ends(host) {
        return false;
    }
    // domain_re: (?:\.(?!-)[H-]{1,63}(?<!-))*
    for label in &labels[1..labels.len() - 1] {
        if !(1..=63).contains(&len(label)) || !label.chars().all(mid) || !no_dash_ends(label) {
            return false;
        }
    }
    // tld_no_fqdn_re: \.(?!-)(?:[a-z ul -]{2,63}|xn--[a-z0-9]{1,59})(?<!-)
    let tld = labels[labels.len() - 1];
    if !no_dash_ends(tld) {
        return false;
    }
    let letters = (2..=63).contains(&len(tld))
        && tld
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '-' || ('\u{a1}'..='\u{ffff}').contains(&c));
    let punycode = tld.len() > 4
        && tld.is_char_boundary(4)
        && tld[..4].eq_ignore_ascii_case("xn--")
        && (1..=59).contains(&len(&tld[4..]))
        && tld[4..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || IGNORECASE_EXTRA.contains(&c));
    letters || punycode
}

/// `validate_ipv46_address`: Python's `ipaddress.IPv4Address`, or Django's
/// `is_valid_ipv6_address` (at most 39 characters, `ipaddress.IPv6Address`).
pub fn is_ipv46(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
        || (s.len() <= 39 && s.parse::<std::net::Ipv6Addr>().is_ok())
}

/// `EmailValidator()(value)` passes.
pub fn is_valid_email(value: &str) -> bool {
    if value.is_empty() || !value.contains('@') || value.chars().count() > 320 {
        return false;
    }
    let (user, domain) = value.rsplit_once('@').expect("contains @");
    if !user_part_ok(user) {
        return false;
    }
    if domain == "localhost" || domain_regex_ok(domain) {
        return true;
    }
    // literal_regex: \[([A-F0-9:.]+)\]\Z
    match domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        Some(ip)
            if !ip.is_empty()
                && ip
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') =>
        {
            is_ipv46(ip)
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// BaseUserManager.normalize_email, AbstractBaseUser.normalize_username, get_default_username
// ---------------------------------------------------------------------------------------

/// `BaseUserManager.normalize_email`: strip, then lowercase the part after the last `@`
/// (unchanged when there is no `@`).
pub fn normalize_email(email: &str) -> String {
    match py_strip(email).rsplit_once('@') {
        Some((name, domain)) => format!("{name}@{}", py_lower(domain)),
        None => email.to_owned(),
    }
}

/// `AbstractBaseUser.normalize_username`: NFKC.
pub fn normalize_username(username: &str) -> String {
    username.nfkc().collect()
}
