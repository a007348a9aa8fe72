//! `django.middleware.csrf` (Django 5.2): secrets, masking, token checks and the
//! Origin/Referer checks of `CsrfViewMiddleware.process_view`, without I/O.
//!
//! Also reproduces the pieces of other modules those checks depend on, because the
//! exact accept/reject decision (and the reason text) hinges on them:
//! `django.utils.http.is_same_domain`, `django.http.request.split_domain_port` /
//! `validate_host` (what `request.get_host()` does), `HttpHeaders.parse_header_name`,
//! and CPython 3.11's `urllib.parse.urlsplit` / `urlunsplit` (including the
//! `ValueError`s Django turns into "Referer is malformed." or a failed Origin check).
//!
//! Lengths are counted in characters, never bytes: Django's `len(token)` counts code
//! points, so a 32-character token containing `é` "has invalid characters" rather than
//! "has incorrect length".

use crate::formats::crypto::{constant_time_compare, get_random_string};
use std::fmt;

pub const CSRF_SECRET_LENGTH: usize = 32;
pub const CSRF_TOKEN_LENGTH: usize = 2 * CSRF_SECRET_LENGTH;
/// `string.ascii_letters + string.digits`: the order matters, it defines the cipher.
pub const CSRF_ALLOWED_CHARS: &[u8] =
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Session key holding the secret when `CSRF_USE_SESSIONS = True`.
pub const CSRF_SESSION_KEY: &str = "_csrftoken";
/// The POST field rendered by `{% csrf_token %}`.
pub const CSRF_POST_FIELD: &str = "csrfmiddlewaretoken";
/// Default `CSRF_HEADER_NAME` (a `request.META` key).
pub const DEFAULT_CSRF_HEADER_NAME: &str = "HTTP_X_CSRFTOKEN";
/// `parse_header_name(DEFAULT_CSRF_HEADER_NAME)`, as it appears in reject reasons.
pub const DEFAULT_CSRF_HEADER_DISPLAY_NAME: &str = "X-Csrftoken";

pub const REASON_NO_REFERER: &str = "Referer checking failed - no Referer.";
pub const REASON_NO_CSRF_COOKIE: &str = "CSRF cookie not set.";
pub const REASON_CSRF_TOKEN_MISSING: &str = "CSRF token missing.";
pub const REASON_MALFORMED_REFERER: &str = "Referer checking failed - Referer is malformed.";
pub const REASON_INSECURE_REFERER: &str =
    "Referer checking failed - Referer is insecure while host is secure.";
/// Fragment used by `_bad_token_message` when the token is well-formed but wrong.
pub const REASON_INCORRECT: &str = "incorrect";

/// `REASON_BAD_ORIGIN % origin`.
pub fn reason_bad_origin(origin: &str) -> String {
    format!("Origin checking failed - {origin} does not match any trusted origins.")
}

/// `REASON_BAD_REFERER % url`.
pub fn reason_bad_referer(url: &str) -> String {
    format!("Referer checking failed - {url} does not match any trusted origins.")
}

/// Why a request was refused; the text is exactly Django's `reason` (logged as
/// `Forbidden (<reason>): <path>` and passed to the failure view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectReason(pub String);

impl RejectReason {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RejectReason {}

impl From<&str> for RejectReason {
    fn from(s: &str) -> Self {
        RejectReason(s.to_owned())
    }
}

// ---------------------------------------------------------------------------
// Secrets and masking
// ---------------------------------------------------------------------------

/// Position of `c` in [`CSRF_ALLOWED_CHARS`] (`CSRF_ALLOWED_CHARS.index(c)`).
fn char_index(c: char) -> Option<usize> {
    match c {
        'a'..='z' => Some(c as usize - 'a' as usize),
        'A'..='Z' => Some(26 + c as usize - 'A' as usize),
        '0'..='9' => Some(52 + c as usize - '0' as usize),
        _ => None,
    }
}

fn alphabet_char(i: usize) -> char {
    CSRF_ALLOWED_CHARS[i % CSRF_ALLOWED_CHARS.len()] as char
}

/// `"".join(chars[f(x, y)] for x, y in zip(map(index, first), map(index, second)))`.
///
/// Reproduces Python's laziness exactly: `zip` pulls from `first` before `second`, so
/// when `first` is the longer one its element just past the end of `second` is still
/// looked up (and a bad character there raises). `None` = Django raises `ValueError`.
fn zip_indices(
    first: &[char],
    second: &[char],
    f: impl Fn(usize, usize) -> usize,
) -> Option<String> {
    let mut out = String::with_capacity(first.len().min(second.len()));
    for (i, &a) in first.iter().enumerate() {
        let x = char_index(a)?;
        let Some(&b) = second.get(i) else { break };
        let y = char_index(b)?;
        out.push(alphabet_char(f(x, y)));
    }
    Some(out)
}

/// `_get_new_csrf_string()`: 32 characters from a CSPRNG.
pub fn generate_secret() -> String {
    get_random_string(CSRF_SECRET_LENGTH, CSRF_ALLOWED_CHARS)
}

/// `_mask_cipher_secret(secret)`: a fresh 64-character token for `secret`.
///
/// Returns `""` if `secret` holds characters outside the alphabet (Django raises);
/// such a token then fails every check instead of crashing.
pub fn mask_cipher_secret(secret: &str) -> String {
    mask_with(secret, &generate_secret())
}

/// `_mask_cipher_secret` with a caller-chosen mask: `mask + cipher`, where
/// `cipher[i] = CHARS[(idx(secret[i]) + idx(mask[i])) % 62]`.
///
/// `None` where Django would raise `ValueError` (a character outside the alphabet in
/// the part `zip` reads). Lengths follow `zip`: the cipher is as long as the shorter
/// input, so a short secret (possible with a corrupt `CSRF_USE_SESSIONS` value) yields
/// a short token exactly as Django does.
pub fn try_mask_with(secret: &str, mask: &str) -> Option<String> {
    let s: Vec<char> = secret.chars().collect();
    let m: Vec<char> = mask.chars().collect();
    let cipher = zip_indices(&s, &m, |x, y| x + y)?;
    Some(format!("{mask}{cipher}"))
}

/// [`try_mask_with`], returning `""` where Django would raise.
pub fn mask_with(secret: &str, mask: &str) -> String {
    try_mask_with(secret, mask).unwrap_or_default()
}

/// `_unmask_cipher_token(token)`: `None` where Django would raise `ValueError`.
///
/// Like Django it does not check the length; the mask is the first 32 characters and
/// the result as long as `zip` of the rest with the mask.
pub fn try_unmask_cipher_token(token: &str) -> Option<String> {
    let t: Vec<char> = token.chars().collect();
    let split = t.len().min(CSRF_SECRET_LENGTH);
    let (mask, cipher) = t.split_at(split);
    // `chars[x - y]` with a negative index wraps, i.e. it is `(x - y) mod 62`.
    zip_indices(cipher, mask, |x, y| x + CSRF_ALLOWED_CHARS.len() - y)
}

/// [`try_unmask_cipher_token`], returning `""` where Django would raise; `""` never
/// equals a real secret, so a caller that forgot to validate still rejects.
pub fn unmask_cipher_token(token: &str) -> String {
    try_unmask_cipher_token(token).unwrap_or_default()
}

/// `InvalidTokenFormat(reason)`; `Display` is Django's reason fragment (no subject,
/// no final period — callers prepend "CSRF cookie " / "CSRF token from ... " and
/// append ".").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum InvalidTokenFormat {
    #[error("has incorrect length")]
    IncorrectLength,
    #[error("has invalid characters")]
    InvalidCharacters,
}

impl InvalidTokenFormat {
    /// `REASON_INCORRECT_LENGTH` / `REASON_INVALID_CHARACTERS`.
    pub fn reason(self) -> &'static str {
        match self {
            InvalidTokenFormat::IncorrectLength => "has incorrect length",
            InvalidTokenFormat::InvalidCharacters => "has invalid characters",
        }
    }
}

/// `_check_token_format`: length (in characters) 32 or 64 first, then `[a-zA-Z0-9]` only.
pub fn check_token_format(token: &str) -> Result<(), InvalidTokenFormat> {
    let n = token.chars().count();
    if n != CSRF_TOKEN_LENGTH && n != CSRF_SECRET_LENGTH {
        return Err(InvalidTokenFormat::IncorrectLength);
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(InvalidTokenFormat::InvalidCharacters);
    }
    Ok(())
}

/// `_does_token_match`: unmask a 64-character token, then compare in constant time.
///
/// Django asserts the (unmasked) token is 32 characters; inputs that would trip the
/// assertion or the unmasking (unvalidated tokens) are refused here instead.
pub fn does_token_match(request_token: &str, secret: &str) -> bool {
    let n = request_token.chars().count();
    let unmasked;
    let candidate = if n == CSRF_TOKEN_LENGTH {
        match try_unmask_cipher_token(request_token) {
            Some(s) => {
                unmasked = s;
                unmasked.as_str()
            }
            None => return false,
        }
    } else {
        request_token
    };
    if candidate.chars().count() != CSRF_SECRET_LENGTH {
        return false;
    }
    constant_time_compare(candidate.as_bytes(), secret.as_bytes())
}

/// `_get_secret` for a `csrftoken` cookie value (`CSRF_USE_SESSIONS = False`).
///
/// The cookie is format-checked (`"CSRF cookie has incorrect length."` /
/// `"CSRF cookie has invalid characters."`) and a 64-character (pre-4.1, masked)
/// cookie is unmasked. An absent cookie is the caller's `None`. In `process_request`
/// an `Err` means "generate a new secret and send it" ([`generate_secret`]); in
/// `process_view` it is the reject reason.
pub fn secret_from_cookie(value: &str) -> Result<String, RejectReason> {
    check_token_format(value).map_err(|e| RejectReason(format!("CSRF cookie {e}.")))?;
    if value.chars().count() == CSRF_TOKEN_LENGTH {
        // Valid characters were just checked, so unmasking cannot fail.
        return Ok(unmask_cipher_token(value));
    }
    Ok(value.to_owned())
}

/// `_get_secret` for `request.session["_csrftoken"]` (`CSRF_USE_SESSIONS = True`).
///
/// Django does *not* format-check session values: a 64-character value is unmasked,
/// anything else is used verbatim (and then simply never matches). `None` means Django
/// would raise `ValueError` (HTTP 500) unmasking a 64-character value with characters
/// outside the alphabet.
pub fn secret_from_session(value: &str) -> Option<String> {
    if value.chars().count() == CSRF_TOKEN_LENGTH {
        try_unmask_cipher_token(value)
    } else {
        Some(value.to_owned())
    }
}

// ---------------------------------------------------------------------------
// Token check (`_check_token`)
// ---------------------------------------------------------------------------

/// Where the candidate token came from, for `_bad_token_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Post,
    /// `header_name` as `HttpHeaders.parse_header_name(settings.CSRF_HEADER_NAME)`
    /// prints it, e.g. `"X-Csrftoken"`.
    Header {
        header_name: String,
    },
}

/// `_bad_token_message(reason, token_source)`:
/// `"CSRF token from POST has invalid characters."`,
/// `"CSRF token from the 'X-Csrftoken' HTTP header incorrect."`, ...
pub fn bad_token_message(reason: &str, source: &TokenSource) -> String {
    match source {
        TokenSource::Post => format!("CSRF token from POST {reason}."),
        TokenSource::Header { header_name } => {
            // `f"the {header_name!r} HTTP header"`: Python repr, normally single quotes.
            format!(
                "CSRF token from the {} HTTP header {reason}.",
                py_repr(header_name)
            )
        }
    }
}

/// `HttpHeaders.parse_header_name`: `"HTTP_X_CSRFTOKEN"` → `"X-Csrftoken"`.
///
/// `None` for META keys that are not headers (Django would then print
/// `the None HTTP header`, but such a key is never present in a real request, so the
/// header fallback always ends in "CSRF token missing.").
pub fn parse_header_name(meta_key: &str) -> Option<String> {
    let name = if let Some(rest) = meta_key.strip_prefix("HTTP_") {
        rest
    } else if meta_key == "CONTENT_TYPE" || meta_key == "CONTENT_LENGTH" {
        meta_key
    } else {
        return None;
    };
    Some(py_title(&name.replace('_', "-")))
}

/// An HTTP header value as Django sees it in `request.META`: WSGI decodes header bytes as
/// Latin-1, so a multi-byte UTF-8 character counts as several characters (a 32-character
/// token with an `é` has "incorrect length", not "invalid characters").
pub fn wsgi_header_str(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// `_check_token` after the secret has been read.
///
/// * `secret`: from [`secret_from_cookie`] / [`secret_from_session`]; `None` = no
///   cookie. (A malformed cookie is rejected by `secret_from_cookie` *before* this
///   step, which is Django's order too.)
/// * `is_post`: `request.method == "POST"`; only then is the form field consulted.
/// * `post_token`: `request.POST.get("csrfmiddlewaretoken")`; pass `None` for an
///   unreadable body as Django does.
/// * `header_token`: `request.META[settings.CSRF_HEADER_NAME]`, if present.
/// * `header_display_name`: `parse_header_name(CSRF_HEADER_NAME)`, e.g. `"X-Csrftoken"`.
///
/// An empty form field falls back to the header; a present-but-empty header does not
/// fall back to anything and "has incorrect length".
pub fn check_request_token(
    secret: Option<&str>,
    is_post: bool,
    post_token: Option<&str>,
    header_token: Option<&str>,
    header_display_name: &str,
) -> Result<(), RejectReason> {
    let Some(secret) = secret else {
        // For POST requests, we insist on a CSRF cookie, and in this way we can avoid
        // all CSRF attacks, including login CSRF.
        return Err(REASON_NO_CSRF_COOKIE.into());
    };
    let form_token = if is_post {
        post_token.unwrap_or("")
    } else {
        ""
    };
    let (token, source) = if form_token.is_empty() {
        match header_token {
            Some(h) => (
                h,
                TokenSource::Header {
                    header_name: header_display_name.to_owned(),
                },
            ),
            None => return Err(REASON_CSRF_TOKEN_MISSING.into()),
        }
    } else {
        (form_token, TokenSource::Post)
    };
    if let Err(e) = check_token_format(token) {
        return Err(RejectReason(bad_token_message(e.reason(), &source)));
    }
    if !does_token_match(token, secret) {
        return Err(RejectReason(bad_token_message(REASON_INCORRECT, &source)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Origin / Referer
// ---------------------------------------------------------------------------

/// What `process_view` reads from the request and settings for the Origin/Referer
/// checks.
#[derive(Debug, Clone, Copy)]
pub struct OriginContext<'a> {
    /// `request.is_secure()`: picks the scheme of the expected Origin and whether the
    /// Referer is checked at all.
    pub is_secure: bool,
    /// The raw host `request.get_host()` returns (`X-Forwarded-Host` / `Host` /
    /// `SERVER_NAME:SERVER_PORT`), port included, not lowercased.
    pub host: &'a str,
    /// `request.get_port()`: used only to suffix a configured cookie domain.
    pub server_port: u16,
    /// `HTTP_ORIGIN`, if the header is present (even if empty).
    pub origin: Option<&'a str>,
    /// `HTTP_REFERER`, if present.
    pub referer: Option<&'a str>,
    /// `settings.CSRF_TRUSTED_ORIGINS`.
    pub trusted_origins: &'a [String],
    /// `CSRF_COOKIE_DOMAIN` (or `SESSION_COOKIE_DOMAIN` with `CSRF_USE_SESSIONS`).
    /// `Some("")` is not `None` in Django either: it matches nothing.
    pub cookie_domain: Option<&'a str>,
    /// The effective `ALLOWED_HOSTS` `get_host()` validates `host` against (with
    /// `DEBUG` and an empty setting Django uses `.localhost`, `127.0.0.1`, `[::1]`).
    /// An empty slice means "`host` is already validated" and skips the check.
    pub allowed_hosts: &'a [String],
}

impl OriginContext<'_> {
    /// `request.get_host()`: `None` where Django raises `DisallowedHost`.
    pub fn get_host(&self) -> Option<&str> {
        if self.allowed_hosts.is_empty() {
            return Some(self.host);
        }
        let (domain, _port) = split_domain_port(self.host);
        if !domain.is_empty() && validate_host(&domain, self.allowed_hosts) {
            Some(self.host)
        } else {
            None
        }
    }
}

/// `process_view`'s Origin check, then (only without an `Origin` header and only for
/// HTTPS) its Referer check. Call after the `csrf_exempt` / safe-method /
/// `_dont_enforce_csrf_checks` early accepts and before the token check.
pub fn check_origin_and_referer(ctx: &OriginContext) -> Result<(), RejectReason> {
    if let Some(origin) = ctx.origin {
        if !origin_verified(ctx) {
            return Err(RejectReason(reason_bad_origin(origin)));
        }
    } else if ctx.is_secure {
        check_referer(ctx)?;
    }
    Ok(())
}

/// `_origin_verified`: the Origin equals `{http|https}://{get_host()}`, or is exactly a
/// trusted origin, or matches a wildcard trusted origin of the same scheme.
///
/// Note Django 5.2 never validates the Origin's own host against `ALLOWED_HOSTS`;
/// `ALLOWED_HOSTS` only matters through `get_host()` (a disallowed Host skips the
/// same-origin comparison). No Origin header counts as verified here.
pub fn origin_verified(ctx: &OriginContext) -> bool {
    let Some(request_origin) = ctx.origin else {
        return true;
    };
    if let Some(good_host) = ctx.get_host() {
        let scheme = if ctx.is_secure { "https" } else { "http" };
        if request_origin == format!("{scheme}://{good_host}") {
            return true;
        }
    }
    if ctx
        .trusted_origins
        .iter()
        .any(|o| !o.contains('*') && o == request_origin)
    {
        return true;
    }
    let Ok(parsed) = urlsplit(request_origin) else {
        return false;
    };
    // `allowed_origin_subdomains[parsed.scheme]`. A wildcard entry urlsplit rejects
    // makes Django raise (HTTP 500) on every Origin check; here it just never matches.
    ctx.trusted_origins
        .iter()
        .filter(|o| o.contains('*'))
        .filter_map(|o| urlsplit(o).ok())
        .filter(|t| t.scheme == parsed.scheme)
        .any(|t| is_same_domain(&parsed.netloc, t.netloc.trim_start_matches('*')))
}

/// `_check_referer` (Django runs it only for HTTPS requests without `Origin`).
pub fn check_referer(ctx: &OriginContext) -> Result<(), RejectReason> {
    let Some(referer) = ctx.referer else {
        return Err(REASON_NO_REFERER.into());
    };
    let Ok(referer) = urlsplit(referer) else {
        return Err(REASON_MALFORMED_REFERER.into());
    };
    if referer.scheme.is_empty() || referer.netloc.is_empty() {
        return Err(REASON_MALFORMED_REFERER.into());
    }
    if referer.scheme != "https" {
        return Err(REASON_INSECURE_REFERER.into());
    }
    // `csrf_trusted_origins_hosts`: every trusted origin's netloc with leading `*`s
    // stripped; the trusted origin's scheme is deliberately ignored here.
    if ctx
        .trusted_origins
        .iter()
        .filter_map(|o| urlsplit(o).ok())
        .any(|t| is_same_domain(&referer.netloc, t.netloc.trim_start_matches('*')))
    {
        return Ok(());
    }
    let bad = || RejectReason(reason_bad_referer(&referer.geturl()));
    let good_referer = match ctx.cookie_domain {
        // No cookie domain: the current host:port exactly, if ALLOWED_HOSTS permits it.
        None => ctx.get_host().ok_or_else(bad)?.to_owned(),
        Some(domain) => {
            if ctx.server_port == 443 || ctx.server_port == 80 {
                domain.to_owned()
            } else {
                format!("{domain}:{}", ctx.server_port)
            }
        }
    };
    if !is_same_domain(&referer.netloc, &good_referer) {
        return Err(bad());
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// django.utils.http / django.http.request helpers
// ---------------------------------------------------------------------------

/// `django.utils.http.is_same_domain`: `pattern` is lowercased, `host` is not; a
/// leading `.` matches the domain itself and all subdomains, otherwise exact match.
pub fn is_same_domain(host: &str, pattern: &str) -> bool {
    if pattern.is_empty() {
        return false;
    }
    let pattern = pattern.to_lowercase();
    match pattern.strip_prefix('.') {
        Some(bare) if host.ends_with(pattern.as_str()) || host == bare => true,
        _ => pattern == host,
    }
}

/// `django.http.request.validate_host`: `*`, or [`is_same_domain`] with any pattern.
/// `host` is expected lowercased and without port (see [`split_domain_port`]).
pub fn validate_host(host: &str, allowed_hosts: &[String]) -> bool {
    allowed_hosts
        .iter()
        .any(|p| p == "*" || is_same_domain(host, p))
}

/// `django.http.request.split_domain_port`: `(domain, port)`, domain lowercased and
/// without a trailing dot; `("", "")` if `host` does not fullmatch
/// `([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::([0-9]+))?` after lowercasing.
pub fn split_domain_port(host: &str) -> (String, String) {
    let lower = host.to_lowercase();
    let fail = || (String::new(), String::new());
    let is_name = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let (domain, rest) = if let Some(inner) = lower.strip_prefix('[') {
        // The bracket classes exclude ']', so the literal ends at the first ']'.
        let Some(end) = inner.find(']') else {
            return fail();
        };
        let body = &inner[..end];
        let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        let Some(colon) = body.find(':') else {
            return fail();
        };
        let (head, tail) = (&body[..colon], &body[colon + 1..]);
        if !head.chars().all(hex)
            || tail.is_empty()
            || !tail.chars().all(|c| hex(c) || c == '.' || c == ':')
        {
            return fail();
        }
        lower.split_at(end + 2)
    } else {
        let end = lower.find(|c: char| !is_name(c)).unwrap_or(lower.len());
        if end == 0 {
            return fail();
        }
        lower.split_at(end)
    };
    let port = if rest.is_empty() {
        ""
    } else {
        match rest.strip_prefix(':') {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return fail(),
        }
    };
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    (domain.to_owned(), port.to_owned())
}

/// Python `str.title()` (ASCII-exact; other scripts approximate titlecase by
/// uppercase, which only differs for a handful of digraphs).
fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut previous_is_cased = false;
    for c in s.chars() {
        if previous_is_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        previous_is_cased = c.is_lowercase() || c.is_uppercase();
    }
    out
}

/// Python `repr(str)` (ASCII-exact; printability of non-ASCII approximated).
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control()
                || matches!(c, '\u{a0}' | '\u{ad}' | '\u{2000}'..='\u{200f}'
                    | '\u{2028}'..='\u{202f}' | '\u{205f}'..='\u{206f}'
                    | '\u{3000}' | '\u{feff}' | '\u{e000}'..='\u{f8ff}') =>
            {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

// ---------------------------------------------------------------------------
// urllib.parse (CPython 3.11.7)
// ---------------------------------------------------------------------------

/// `urllib.parse.SplitResult`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SplitResult {
    pub scheme: String,
    pub netloc: String,
    pub path: String,
    pub query: String,
    pub fragment: String,
}

/// The `ValueError`s `urlsplit` raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlSplitError {
    #[error("Invalid IPv6 URL")]
    InvalidIpv6Url,
    #[error("IPvFuture address is invalid")]
    InvalidIpvFuture,
    #[error("An IPv4 address cannot be in brackets")]
    BracketedIpv4,
    #[error("does not appear to be an IPv4 or IPv6 address")]
    NotAnIpAddress,
    #[error("netloc contains invalid characters under NFKC normalization")]
    NfkcNetloc,
}

/// `uses_netloc` of `urllib.parse`, consulted by `urlunsplit`.
const USES_NETLOC: &[&str] = &[
    "", "ftp", "http", "gopher", "nntp", "telnet", "imap", "wais", "file", "mms", "https", "shttp",
    "snews", "prospero", "rtsp", "rtsps", "rtspu", "rsync", "svn", "svn+ssh", "sftp", "nfs", "git",
    "git+ssh", "ws", "wss",
];

/// Characters whose NFKC form contains one of `/?#@:` (Unicode 14, as in CPython
/// 3.11's `unicodedata`). `_checknetloc` rejects a netloc containing any of them; the
/// per-character table is equivalent because NFKC composition never produces ASCII.
const NFKC_NETLOC_POISON: &[char] = &[
    '\u{2047}', '\u{2048}', '\u{2049}', '\u{2100}', '\u{2101}', '\u{2105}', '\u{2106}', '\u{2a74}',
    '\u{fe13}', '\u{fe16}', '\u{fe55}', '\u{fe56}', '\u{fe5f}', '\u{fe6b}', '\u{ff03}', '\u{ff0f}',
    '\u{ff1a}', '\u{ff1f}', '\u{ff20}',
];

/// `urllib.parse.urlsplit(url)` with default arguments, as in CPython 3.11.7
/// (leading C0/space stripped, tab/CR/LF removed, bracketed-host and NFKC checks).
pub fn urlsplit(url: &str) -> Result<SplitResult, UrlSplitError> {
    let url: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();
    let mut rest = url.as_str();
    let mut scheme = String::new();
    let mut netloc = String::new();
    if let Some(i) = rest.find(':') {
        let first = rest.as_bytes()[0];
        let candidate = &rest[..i];
        if i > 0
            && first.is_ascii_alphabetic()
            && candidate
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            scheme = candidate.to_ascii_lowercase();
            rest = &rest[i + 1..];
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        let delim = after.find(['/', '?', '#']).unwrap_or(after.len());
        netloc = after[..delim].to_owned();
        rest = &after[delim..];
        let (open, close) = (netloc.contains('['), netloc.contains(']'));
        if open != close {
            return Err(UrlSplitError::InvalidIpv6Url);
        }
        if open {
            // `netloc.partition('[')[2].partition(']')[0]`
            let after_open = &netloc[netloc.find('[').map_or(0, |p| p + 1)..];
            let bracketed = after_open.split(']').next().unwrap_or("");
            check_bracketed_host(bracketed)?;
        }
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((u, f)) => (u, f),
        None => (rest, ""),
    };
    let (path, query) = match rest.split_once('?') {
        Some((u, q)) => (u, q),
        None => (rest, ""),
    };
    if !netloc.is_ascii() && netloc.chars().any(|c| NFKC_NETLOC_POISON.contains(&c)) {
        return Err(UrlSplitError::NfkcNetloc);
    }
    Ok(SplitResult {
        scheme,
        netloc,
        path: path.to_owned(),
        query: query.to_owned(),
        fragment: fragment.to_owned(),
    })
}

impl SplitResult {
    /// `geturl()` = `urlunsplit(self)` (CPython 3.11.7): drops empty `?` / `#`.
    pub fn geturl(&self) -> String {
        let mut url = self.path.clone();
        if !self.netloc.is_empty()
            || (!self.scheme.is_empty()
                && USES_NETLOC.contains(&self.scheme.as_str())
                && !url.starts_with("//"))
        {
            if !url.is_empty() && !url.starts_with('/') {
                url.insert(0, '/');
            }
            url = format!("//{}{url}", self.netloc);
        }
        if !self.scheme.is_empty() {
            url = format!("{}:{url}", self.scheme);
        }
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(&self.query);
        }
        if !self.fragment.is_empty() {
            url.push('#');
            url.push_str(&self.fragment);
        }
        url
    }
}

/// `urllib.parse._check_bracketed_host`.
fn check_bracketed_host(hostname: &str) -> Result<(), UrlSplitError> {
    if let Some(rest) = hostname.strip_prefix('v') {
        // re.match(r"\Av[a-fA-F0-9]+\..+\Z", hostname); '\n' was already removed.
        let hex_end = rest
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len());
        let ok = hex_end > 0
            && rest[hex_end..]
                .strip_prefix('.')
                .is_some_and(|tail| !tail.is_empty() && !tail.contains('\n'));
        return if ok {
            Ok(())
        } else {
            Err(UrlSplitError::InvalidIpvFuture)
        };
    }
    // ipaddress.ip_address tries IPv4 first.
    if parse_ipv4(hostname).is_some() {
        return Err(UrlSplitError::BracketedIpv4);
    }
    if parse_ipv6(hostname).is_some() {
        Ok(())
    } else {
        Err(UrlSplitError::NotAnIpAddress)
    }
}

/// `ipaddress.IPv4Address(str)`: four decimal octets, no leading zeros.
fn parse_ipv4(s: &str) -> Option<u32> {
    if s.is_empty() || s.contains('/') {
        return None;
    }
    let octets: Vec<&str> = s.split('.').collect();
    if octets.len() != 4 {
        return None;
    }
    let mut ip = 0u32;
    for o in octets {
        if o.is_empty() || !o.bytes().all(|b| b.is_ascii_digit()) || o.len() > 3 {
            return None;
        }
        if o != "0" && o.starts_with('0') {
            return None;
        }
        let v: u32 = o.parse().ok()?;
        if v > 255 {
            return None;
        }
        ip = (ip << 8) | v;
    }
    Some(ip)
}

/// `ipaddress.IPv6Address(str)` (scope id allowed), mirroring `_ip_int_from_string`.
fn parse_ipv6(s: &str) -> Option<u128> {
    if s.contains('/') {
        return None;
    }
    let addr = match s.split_once('%') {
        Some((_, scope)) if scope.is_empty() || scope.contains('%') => return None,
        Some((addr, _)) => addr,
        None => s,
    };
    if addr.is_empty() {
        return None;
    }
    let mut parts: Vec<String> = addr.split(':').map(str::to_owned).collect();
    if parts.len() < 3 {
        return None;
    }
    if parts.last().is_some_and(|p| p.contains('.')) {
        let v4 = parse_ipv4(&parts.pop()?)?;
        parts.push(format!("{:x}", (v4 >> 16) & 0xffff));
        parts.push(format!("{:x}", v4 & 0xffff));
    }
    const HEXTETS: usize = 8;
    if parts.len() > HEXTETS + 1 {
        return None;
    }
    let mut skip_index = None;
    for (i, p) in parts.iter().enumerate().take(parts.len() - 1).skip(1) {
        if p.is_empty() {
            if skip_index.is_some() {
                return None;
            }
            skip_index = Some(i);
        }
    }
    let (parts_hi, parts_lo, parts_skipped) = if let Some(skip) = skip_index {
        let mut hi = skip;
        let mut lo = parts.len() - skip - 1;
        if parts[0].is_empty() {
            hi -= 1;
            if hi > 0 {
                return None;
            }
        }
        if parts[parts.len() - 1].is_empty() {
            lo -= 1;
            if lo > 0 {
                return None;
            }
        }
        if hi + lo >= HEXTETS {
            return None;
        }
        (hi, lo, HEXTETS - (hi + lo))
    } else {
        if parts.len() != HEXTETS || parts[0].is_empty() || parts[HEXTETS - 1].is_empty() {
            return None;
        }
        (HEXTETS, 0, 0)
    };
    let hextet = |p: &str| -> Option<u128> {
        if p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(p, 16).ok()
    };
    let mut ip: u128 = 0;
    for p in &parts[..parts_hi] {
        ip = (ip << 16) | hextet(p)?;
    }
    // parts_skipped may be 8 ("::"), and a shift by 128 would overflow.
    ip = ip.checked_shl(16 * parts_skipped as u32).unwrap_or(0);
    for p in &parts[parts.len() - parts_lo..] {
        ip = (ip << 16) | hextet(p)?;
    }
    Some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "abcdefghijklmnopqrstuvwxyzABCDEF";
    const MASK: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
    const TOKEN: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUV02468acegiKMOQSUWY02468acegikmoq";
    const HDR: &str = DEFAULT_CSRF_HEADER_DISPLAY_NAME;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn ctx<'a>(trusted: &'a [String], allowed: &'a [String]) -> OriginContext<'a> {
        OriginContext {
            is_secure: true,
            host: "www.example.com",
            server_port: 443,
            origin: None,
            referer: None,
            trusted_origins: trusted,
            cookie_domain: None,
            allowed_hosts: allowed,
        }
    }

    fn reason(r: Result<(), RejectReason>) -> String {
        r.unwrap_err().0
    }

    #[test]
    fn alphabet_order() {
        assert_eq!(CSRF_ALLOWED_CHARS.len(), 62);
        assert_eq!(
            CSRF_ALLOWED_CHARS,
            crate::formats::crypto::RANDOM_STRING_CHARS
        );
        for (i, &c) in CSRF_ALLOWED_CHARS.iter().enumerate() {
            assert_eq!(char_index(c as char), Some(i));
        }
    }

    #[test]
    fn spec_masking_vector() {
        assert_eq!(mask_with(SECRET, MASK), TOKEN);
        assert_eq!(unmask_cipher_token(TOKEN), SECRET);
        assert!(does_token_match(TOKEN, SECRET));
        assert!(does_token_match(SECRET, SECRET));
    }

    #[test]
    fn random_round_trips() {
        for _ in 0..200 {
            let secret = generate_secret();
            assert_eq!(secret.len(), CSRF_SECRET_LENGTH);
            assert!(check_token_format(&secret).is_ok());
            let token = mask_cipher_secret(&secret);
            assert_eq!(token.len(), CSRF_TOKEN_LENGTH);
            assert!(check_token_format(&token).is_ok());
            assert_eq!(unmask_cipher_token(&token), secret);
            assert!(does_token_match(&token, &secret));
            assert_eq!(secret_from_cookie(&token).unwrap(), secret);
            assert_eq!(secret_from_cookie(&secret).unwrap(), secret);
            let other = generate_secret();
            if other != secret {
                assert!(!does_token_match(&token, &other));
                assert!(!does_token_match(&other, &secret));
            }
        }
    }

    #[test]
    fn masking_follows_python_zip() {
        // A short secret (corrupt session value) gives a short cipher, as in Django.
        assert_eq!(mask_with("abc", MASK), format!("{MASK}024"));
        // Bad characters in the zipped part: Django raises ValueError.
        assert_eq!(try_mask_with("ab-", MASK), None);
        // Beyond the zipped part they are never looked at ...
        assert_eq!(try_mask_with("a", "0-"), Some("0-0".into()));
        // ... except the one element zip pulls from the first iterator.
        assert_eq!(try_mask_with("aa-", "00"), None);
        assert_eq!(try_unmask_cipher_token("short"), Some(String::new()));
        assert_eq!(
            try_unmask_cipher_token(&format!("{MASK}02")),
            Some("ab".into())
        );
        assert_eq!(try_unmask_cipher_token(&format!("{MASK}0é")), None);
        assert_eq!(unmask_cipher_token(&format!("{MASK}0é")), "");
    }

    #[test]
    fn token_format() {
        use InvalidTokenFormat::*;
        assert_eq!(check_token_format(""), Err(IncorrectLength));
        assert_eq!(check_token_format(&"a".repeat(31)), Err(IncorrectLength));
        assert_eq!(check_token_format(&"a".repeat(33)), Err(IncorrectLength));
        assert_eq!(check_token_format(&"a".repeat(65)), Err(IncorrectLength));
        assert_eq!(check_token_format(&"a".repeat(32)), Ok(()));
        assert_eq!(check_token_format(&"a".repeat(64)), Ok(()));
        assert_eq!(check_token_format(&"-".repeat(32)), Err(InvalidCharacters));
        // Length is in characters: 31 ASCII + 'é' is 32 characters (33 bytes).
        let accented = format!("{}é", "a".repeat(31));
        assert_eq!(check_token_format(&accented), Err(InvalidCharacters));
        let emoji = format!("{}🦀", "a".repeat(63));
        assert_eq!(check_token_format(&emoji), Err(InvalidCharacters));
        // Unicode digits/letters are not in [a-zA-Z0-9].
        assert_eq!(check_token_format(&"٣".repeat(32)), Err(InvalidCharacters));
        assert_eq!(IncorrectLength.to_string(), "has incorrect length");
        assert_eq!(InvalidCharacters.to_string(), "has invalid characters");
    }

    #[test]
    fn does_token_match_never_panics_or_accepts_garbage() {
        let emoji64 = "🦀".repeat(64);
        assert!(!does_token_match(&emoji64, SECRET));
        assert!(!does_token_match("", ""));
        assert!(!does_token_match("abc", "abc"));
        // Like Django, a 32-character candidate is compared as is: it is the format
        // check's job (done first in `check_request_token`) to refuse it.
        assert!(does_token_match(&"é".repeat(32), &"é".repeat(32)));
    }

    #[test]
    fn cookie_secret() {
        assert_eq!(secret_from_cookie(SECRET).unwrap(), SECRET);
        assert_eq!(secret_from_cookie(TOKEN).unwrap(), SECRET);
        assert_eq!(
            secret_from_cookie("short").unwrap_err().to_string(),
            "CSRF cookie has incorrect length."
        );
        assert_eq!(
            secret_from_cookie(&"!".repeat(32)).unwrap_err().0,
            "CSRF cookie has invalid characters."
        );
        assert_eq!(
            secret_from_cookie(&"é".repeat(64)).unwrap_err().0,
            "CSRF cookie has invalid characters."
        );
    }

    #[test]
    fn session_secret() {
        assert_eq!(secret_from_session(SECRET).as_deref(), Some(SECRET));
        assert_eq!(secret_from_session(TOKEN).as_deref(), Some(SECRET));
        // Not format-checked: used verbatim, then never matches.
        assert_eq!(secret_from_session("x!").as_deref(), Some("x!"));
        assert_eq!(secret_from_session(&"!".repeat(64)), None);
        assert_eq!(
            reason(check_request_token(
                Some("x!"),
                true,
                Some(TOKEN),
                None,
                HDR
            )),
            "CSRF token from POST incorrect."
        );
    }

    #[test]
    fn request_token_reasons() {
        let ok = |r: Result<(), RejectReason>| assert_eq!(r, Ok(()));
        ok(check_request_token(
            Some(SECRET),
            true,
            Some(TOKEN),
            None,
            HDR,
        ));
        ok(check_request_token(
            Some(SECRET),
            true,
            Some(SECRET),
            None,
            HDR,
        ));
        ok(check_request_token(
            Some(SECRET),
            false,
            None,
            Some(TOKEN),
            HDR,
        ));
        ok(check_request_token(
            Some(SECRET),
            true,
            None,
            Some(SECRET),
            HDR,
        ));
        // Empty form field falls back to the header.
        ok(check_request_token(
            Some(SECRET),
            true,
            Some(""),
            Some(TOKEN),
            HDR,
        ));
        // The form field wins over the header when non-empty.
        assert_eq!(
            reason(check_request_token(
                Some(SECRET),
                true,
                Some("bad"),
                Some(TOKEN),
                HDR
            )),
            "CSRF token from POST has incorrect length."
        );
        // Non-POST methods never read the form.
        ok(check_request_token(
            Some(SECRET),
            false,
            Some("bad"),
            Some(TOKEN),
            HDR,
        ));
        assert_eq!(
            reason(check_request_token(
                Some(SECRET),
                false,
                Some(TOKEN),
                None,
                HDR
            )),
            "CSRF token missing."
        );

        assert_eq!(
            reason(check_request_token(
                None,
                true,
                Some(TOKEN),
                Some(TOKEN),
                HDR
            )),
            "CSRF cookie not set."
        );
        assert_eq!(
            reason(check_request_token(Some(SECRET), true, None, None, HDR)),
            "CSRF token missing."
        );
        assert_eq!(
            reason(check_request_token(Some(SECRET), true, Some(""), None, HDR)),
            "CSRF token missing."
        );
        let wrong = "z".repeat(32);
        assert_eq!(
            reason(check_request_token(
                Some(SECRET),
                true,
                Some(&wrong),
                None,
                HDR
            )),
            "CSRF token from POST incorrect."
        );
        assert_eq!(
            reason(check_request_token(
                Some(SECRET),
                true,
                Some(&"?".repeat(64)),
                None,
                HDR
            )),
            "CSRF token from POST has invalid characters."
        );
        assert_eq!(
            reason(check_request_token(
                Some(SECRET),
                false,
                None,
                Some(&wrong),
                HDR
            )),
            "CSRF token from the 'X-Csrftoken' HTTP header incorrect."
        );
        assert_eq!(
            reason(check_request_token(
                Some(SECRET),
                false,
                None,
                Some("abc"),
                HDR
            )),
            "CSRF token from the 'X-Csrftoken' HTTP header has incorrect length."
        );
        // A present but empty header is not "missing".
        assert_eq!(
            reason(check_request_token(
                Some(SECRET),
                true,
                Some(""),
                Some(""),
                HDR
            )),
            "CSRF token from the 'X-Csrftoken' HTTP header has incorrect length."
        );
        assert_eq!(
            reason(check_request_token(
                Some(SECRET),
                false,
                None,
                Some(&"é".repeat(32)),
                HDR
            )),
            "CSRF token from the 'X-Csrftoken' HTTP header has invalid characters."
        );
    }

    #[test]
    fn header_names() {
        assert_eq!(
            parse_header_name("HTTP_X_CSRFTOKEN").as_deref(),
            Some("X-Csrftoken")
        );
        assert_eq!(
            parse_header_name("HTTP_X_XSRF_TOKEN").as_deref(),
            Some("X-Xsrf-Token")
        );
        assert_eq!(parse_header_name("HTTP_X1ABC").as_deref(), Some("X1Abc"));
        assert_eq!(
            parse_header_name("CONTENT_TYPE").as_deref(),
            Some("Content-Type")
        );
        assert_eq!(parse_header_name("X_CSRFTOKEN"), None);
        assert_eq!(
            bad_token_message(
                "incorrect",
                &TokenSource::Header {
                    header_name: "It's".into()
                }
            ),
            "CSRF token from the \"It's\" HTTP header incorrect."
        );
        assert_eq!(py_repr("a'b\"c\\\n"), "'a\\'b\"c\\\\\\n'");
    }

    #[test]
    fn same_domain() {
        for (host, pattern) in [
            ("example.com", ".example.com"),
            ("foo.example.com", ".example.com"),
            ("foo.example.com:8000", ".example.com:8000"),
            ("foo.example.com:8000", ".example.com:8000"),
            ("example.com:8000", ".example.com:8000"),
            ("example.com", "example.com"),
            ("example.com", "EXAMPLE.COM"),
            ("foo.example.com", ".EXAMPLE.com"),
        ] {
            assert!(is_same_domain(host, pattern), "{host} {pattern}");
        }
        for (host, pattern) in [
            ("example.com", "example.org"),
            ("example.com", ".example.org"),
            ("foo.example.com", "example.com"),
            ("example.com:8000", ".example.com"),
            ("example.com:8000", "example.com"),
            ("Example.com", "example.com"), // host is not lowercased
            ("example.com", ""),
            ("", ""),
            ("badexample.com", ".example.com"),
        ] {
            assert!(!is_same_domain(host, pattern), "{host} {pattern}");
        }
    }

    #[test]
    fn host_splitting() {
        let sdp = |h: &str| {
            let (d, p) = split_domain_port(h);
            (d, p)
        };
        let pair = |d: &str, p: &str| (d.to_string(), p.to_string());
        assert_eq!(sdp("Example.COM:8000"), pair("example.com", "8000"));
        assert_eq!(sdp("example.com."), pair("example.com", ""));
        assert_eq!(sdp("[::1]:80"), pair("[::1]", "80"));
        assert_eq!(sdp("[::1]"), pair("[::1]", ""));
        assert_eq!(sdp("[1.2.3.4]"), pair("", ""));
        assert_eq!(sdp("[:]"), pair("", ""));
        assert_eq!(sdp("[::1"), pair("", ""));
        assert_eq!(sdp("a:"), pair("", ""));
        assert_eq!(sdp(":80"), pair("", ""));
        assert_eq!(sdp("a b"), pair("", ""));
        assert_eq!(sdp("é.com"), pair("", ""));
        assert_eq!(sdp("\u{212a}.com"), pair("k.com", "")); // Kelvin sign lowercases to k
        assert_eq!(sdp("."), pair("", ""));
        let allowed = s(&[".example.com", "[::1]"]);
        assert!(validate_host("a.example.com", &allowed));
        assert!(validate_host("[::1]", &allowed));
        assert!(!validate_host("example.org", &allowed));
        assert!(validate_host("anything", &s(&["*"])));
    }

    #[test]
    fn origin_same_host() {
        let none: Vec<String> = vec![];
        let mut c = ctx(&none, &none);
        c.origin = Some("https://www.example.com");
        assert_eq!(check_origin_and_referer(&c), Ok(()));
        // Scheme comes from is_secure().
        c.is_secure = false;
        assert_eq!(
            reason(check_origin_and_referer(&c)),
            "Origin checking failed - https://www.example.com does not match any trusted origins."
        );
        c.origin = Some("http://www.example.com");
        assert_eq!(check_origin_and_referer(&c), Ok(()));
        // Port is part of the host.
        c.host = "www.example.com:8000";
        assert!(check_origin_and_referer(&c).is_err());
        c.origin = Some("http://www.example.com:8000");
        assert_eq!(check_origin_and_referer(&c), Ok(()));
        // Exact string comparison: case, trailing slash.
        c.origin = Some("http://WWW.example.com:8000");
        assert!(check_origin_and_referer(&c).is_err());
        c.origin = Some("http://www.example.com:8000/");
        assert!(check_origin_and_referer(&c).is_err());
        // An empty Origin header is still an Origin header.
        c.origin = Some("");
        assert_eq!(
            reason(check_origin_and_referer(&c)),
            "Origin checking failed -  does not match any trusted origins."
        );
        c.origin = Some("null");
        assert!(check_origin_and_referer(&c).is_err());
    }

    #[test]
    fn origin_disallowed_host_skips_same_origin() {
        let none: Vec<String> = vec![];
        let allowed = s(&["other.com"]);
        let mut c = ctx(&none, &allowed);
        c.origin = Some("https://www.example.com");
        assert!(check_origin_and_referer(&c).is_err());
        let allowed = s(&[".example.com"]);
        c.allowed_hosts = &allowed;
        assert_eq!(check_origin_and_referer(&c), Ok(()));
        let trusted = s(&["https://www.example.com"]);
        c.allowed_hosts = &none;
        c.trusted_origins = &trusted;
        c.host = "evil.com";
        let allowed = s(&["good.com"]);
        c.allowed_hosts = &allowed;
        assert_eq!(check_origin_and_referer(&c), Ok(()));
    }

    #[test]
    fn origin_trusted_exact_and_wildcard() {
        let trusted = s(&[
            "https://dashboard.example.com",
            "https://*.example.org",
            "http://*.EXAMPLE.net",
            "https://**.double.com",
            "https://*nodot.com",
        ]);
        let none: Vec<String> = vec![];
        let mut c = ctx(&trusted, &none);
        let check = |c: &mut OriginContext, o: &'static str| {
            c.origin = Some(o);
            check_origin_and_referer(c).is_ok()
        };
        assert!(check(&mut c, "https://dashboard.example.com"));
        assert!(!check(&mut c, "http://dashboard.example.com"));
        assert!(!check(&mut c, "https://dashboard.example.com:443"));
        assert!(!check(&mut c, "https://other.example.com"));
        assert!(check(&mut c, "https://foo.example.org"));
        assert!(check(&mut c, "https://a.b.example.org"));
        assert!(check(&mut c, "https://example.org"));
        assert!(check(&mut c, "HTTPS://foo.example.org")); // urlsplit lowercases the scheme
                                                           // The netloc is not lowercased, but only its suffix is compared.
        assert!(check(&mut c, "https://FOO.example.org"));
        assert!(!check(&mut c, "https://foo.EXAMPLE.org"));
        assert!(!check(&mut c, "http://foo.example.org"));
        assert!(!check(&mut c, "https://foo.example.org:8443"));
        assert!(!check(&mut c, "https://fooexample.org"));
        assert!(check(&mut c, "http://foo.example.net")); // pattern lowercased
        assert!(!check(&mut c, "https://foo.example.net"));
        assert!(check(&mut c, "https://x.double.com")); // lstrip("*") strips every star
        assert!(check(&mut c, "https://nodot.com"));
        assert!(!check(&mut c, "https://x.nodot.com"));
        // Malformed Origin: urlsplit raises ValueError → not verified.
        assert!(!check(&mut c, "https://[::1.example.org"));
        assert!(!check(&mut c, "https://[foo].example.org"));
        assert_eq!(
            reason({
                c.origin = Some("https://[x");
                check_origin_and_referer(&c)
            }),
            "Origin checking failed - https://[x does not match any trusted origins."
        );
    }

    #[test]
    fn origin_present_skips_referer() {
        let none: Vec<String> = vec![];
        let mut c = ctx(&none, &none);
        c.origin = Some("https://www.example.com");
        c.referer = Some("http://evil.com/");
        assert_eq!(check_origin_and_referer(&c), Ok(()));
    }

    #[test]
    fn referer_only_for_secure() {
        let none: Vec<String> = vec![];
        let mut c = ctx(&none, &none);
        c.is_secure = false;
        assert_eq!(check_origin_and_referer(&c), Ok(()));
        c.referer = Some("http://evil.com/");
        assert_eq!(check_origin_and_referer(&c), Ok(()));
    }

    #[test]
    fn referer_reasons() {
        let none: Vec<String> = vec![];
        let mut c = ctx(&none, &none);
        let mut with = |r: Option<&'static str>| {
            c.referer = r;
            check_origin_and_referer(&c).err().map(|e| e.0)
        };
        assert_eq!(with(None).unwrap(), "Referer checking failed - no Referer.");
        for malformed in [
            "",
            "/relative/path",
            "https://",
            "https:///path",
            "//www.example.com/",
            "https://[",
            "https://[::1",
            "https://]/",
            "https://[not-ip]/",
            "https://[1.2.3.4]/",
            "https://ex\u{ff0f}ample.com/",
            "not a url",
            "https:www.example.com",
        ] {
            assert_eq!(
                with(Some(malformed)).as_deref(),
                Some("Referer checking failed - Referer is malformed."),
                "{malformed:?}"
            );
        }
        assert_eq!(
            with(Some("http://www.example.com/")).unwrap(),
            "Referer checking failed - Referer is insecure while host is secure."
        );
        assert_eq!(
            with(Some("ftp://www.example.com/")).unwrap(),
            "Referer checking failed - Referer is insecure while host is secure."
        );
        assert_eq!(with(Some("https://www.example.com/")), None);
        assert_eq!(with(Some("https://www.example.com")), None);
        assert_eq!(with(Some(" \tHTTPS://www.example.com/x?y#z")), None);
        assert_eq!(
            with(Some("https://evil.com/")).unwrap(),
            "Referer checking failed - https://evil.com/ does not match any trusted origins."
        );
        // The message shows geturl(): scheme lowercased, empty ?/# dropped, tabs removed.
        assert_eq!(
            with(Some("  HTTPS://ev\til.com/p?#")).unwrap(),
            "Referer checking failed - https://evil.com/p does not match any trusted origins."
        );
        assert_eq!(
            with(Some("https://www.example.com:443/")).unwrap(),
            "Referer checking failed - https://www.example.com:443/ does not match any trusted origins."
        );
        assert_eq!(
            with(Some("https://sub.www.example.com/")).unwrap(),
            "Referer checking failed - https://sub.www.example.com/ does not match any trusted origins."
        );
    }

    #[test]
    fn referer_disallowed_host() {
        let none: Vec<String> = vec![];
        let allowed = s(&["other.com"]);
        let mut c = ctx(&none, &allowed);
        c.referer = Some("https://www.example.com/");
        assert_eq!(
            reason(check_origin_and_referer(&c)),
            "Referer checking failed - https://www.example.com/ does not match any trusted origins."
        );
        let allowed = s(&["www.example.com"]);
        c.allowed_hosts = &allowed;
        assert_eq!(check_origin_and_referer(&c), Ok(()));
    }

    #[test]
    fn referer_trusted_origins() {
        let trusted = s(&[
            "http://insecure.com",
            "https://*.example.org",
            "https://exact.net",
        ]);
        let none: Vec<String> = vec![];
        let mut c = ctx(&trusted, &none);
        for ok in [
            "https://insecure.com/", // the trusted origin's scheme is not compared
            "https://example.org/",
            "https://a.example.org/",
            "https://exact.net/x",
        ] {
            c.referer = Some(ok);
            assert_eq!(check_origin_and_referer(&c), Ok(()), "{ok}");
        }
        for bad in [
            "https://a.exact.net/",
            "https://a.insecure.com/",
            "https://exact.net:8443/",
        ] {
            c.referer = Some(bad);
            assert!(check_origin_and_referer(&c).is_err(), "{bad}");
        }
    }

    #[test]
    fn referer_cookie_domain() {
        let none: Vec<String> = vec![];
        let mut c = ctx(&none, &none);
        c.cookie_domain = Some(".example.com");
        for ok in [
            "https://example.com/",
            "https://foo.example.com/",
            "https://www.example.com/",
        ] {
            c.referer = Some(ok);
            assert_eq!(check_origin_and_referer(&c), Ok(()), "{ok}");
        }
        c.referer = Some("https://example.org/");
        assert!(check_origin_and_referer(&c).is_err());
        // With a cookie domain the request host is no longer consulted.
        c.cookie_domain = Some("other.com");
        c.referer = Some("https://www.example.com/");
        assert!(check_origin_and_referer(&c).is_err());
        c.referer = Some("https://other.com/");
        assert_eq!(check_origin_and_referer(&c), Ok(()));
        // Non-standard port is appended to the cookie domain.
        c.cookie_domain = Some(".example.com");
        c.server_port = 8443;
        c.host = "www.example.com:8443";
        c.referer = Some("https://foo.example.com/");
        assert!(check_origin_and_referer(&c).is_err());
        c.referer = Some("https://foo.example.com:8443/");
        assert_eq!(check_origin_and_referer(&c), Ok(()));
        c.referer = Some("https://example.com:8443/");
        assert_eq!(check_origin_and_referer(&c), Ok(()));
        c.server_port = 80;
        c.referer = Some("https://foo.example.com/");
        assert_eq!(check_origin_and_referer(&c), Ok(()));
        // Some("") is a configured (useless) domain, not None.
        c.cookie_domain = Some("");
        c.host = "www.example.com";
        c.referer = Some("https://www.example.com/");
        assert!(check_origin_and_referer(&c).is_err());
    }

    #[test]
    fn referer_host_with_port() {
        let none: Vec<String> = vec![];
        let mut c = ctx(&none, &none);
        c.host = "www.example.com:8443";
        c.server_port = 8443;
        c.referer = Some("https://www.example.com:8443/x");
        assert_eq!(check_origin_and_referer(&c), Ok(()));
        c.referer = Some("https://www.example.com/x");
        assert!(check_origin_and_referer(&c).is_err());
    }

    #[test]
    fn urlsplit_matches_cpython() {
        // Expected values produced by CPython 3.11.7's urllib.parse.urlsplit.
        let ok = |u: &str, parts: [&str; 5], url: &str| {
            let r = urlsplit(u).unwrap_or_else(|e| panic!("{u:?}: {e}"));
            assert_eq!(
                [&*r.scheme, &*r.netloc, &*r.path, &*r.query, &*r.fragment],
                parts,
                "{u:?}"
            );
            assert_eq!(r.geturl(), url, "{u:?}");
        };
        ok(
            "https://a.com",
            ["https", "a.com", "", "", ""],
            "https://a.com",
        );
        ok(
            "HTTPS://A.com:8/p?q#f",
            ["https", "A.com:8", "/p", "q", "f"],
            "https://A.com:8/p?q#f",
        );
        ok(
            "https://a.com?#",
            ["https", "a.com", "", "", ""],
            "https://a.com",
        );
        ok(
            "https://a.com#x?y",
            ["https", "a.com", "", "", "x?y"],
            "https://a.com#x?y",
        );
        ok("null", ["", "", "null", "", ""], "null");
        ok("1http://a", ["", "", "1http://a", "", ""], "1http://a");
        ok("ht tp://a", ["", "", "ht tp://a", "", ""], "ht tp://a");
        ok("mailto:x@y", ["mailto", "", "x@y", "", ""], "mailto:x@y");
        ok("http:x", ["http", "", "x", "", ""], "http:///x");
        ok("http:", ["http", "", "", "", ""], "http://");
        ok(
            "\x00 https://a\r\n.com",
            ["https", "a.com", "", "", ""],
            "https://a.com",
        );
        ok(
            "https://u:p@[::1%eth0]:8/",
            ["https", "u:p@[::1%eth0]:8", "/", "", ""],
            "https://u:p@[::1%eth0]:8/",
        );
        ok(
            "https://[v1.x]",
            ["https", "[v1.x]", "", "", ""],
            "https://[v1.x]",
        );
        ok(
            "https://[::ffff:1.2.3.4]",
            ["https", "[::ffff:1.2.3.4]", "", "", ""],
            "https://[::ffff:1.2.3.4]",
        );
        ok(
            "https://é.com/",
            ["https", "é.com", "/", "", ""],
            "https://é.com/",
        );
        let err = |u: &str| assert!(urlsplit(u).is_err(), "{u:?}");
        for u in [
            "https://[::1",
            "https://::1]",
            "https://[1.2.3.4]",
            "https://[v.x]",
            "https://[vg.x]",
            "https://[v1.]",
            "https://[]",
            "https://[::1%]",
            "https://a]b[c/",
            "https://[1::2::3]",
            "https://[1:2:3:4:5:6:7:8:9]",
            "https://[12345::]",
            "https://[::01.2.3.4]",
            "https://a\u{2100}b.com",
            "https://a\u{ff20}b.com",
        ] {
            err(u);
        }
    }

    #[test]
    fn ipv6_parser() {
        for good in [
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1::8",
            "::ffff:1.2.3.4",
            "fe80::1%x",
            "1:2:3:4:5:6:1.2.3.4",
        ] {
            assert!(parse_ipv6(good).is_some(), "{good}");
        }
        for bad in [
            ":",
            ":::",
            "1:2",
            "1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:8:9",
            ":1:2:3:4:5:6:7",
            "1:2:3:4:5:6:7:",
            "1::2::3",
            "g::",
            "::1.2.3",
            "::256.1.1.1",
            "1:2:3:4:5:6:7::8",
            "1:2:3:4:5:6:7:1.2.3.4",
            "%x",
            "::1%",
            "::1%a%b",
        ] {
            assert!(parse_ipv6(bad).is_none(), "{bad}");
        }
        assert_eq!(parse_ipv6("::1"), Some(1));
        assert_eq!(parse_ipv6("1::"), Some(1 << 112));
        assert_eq!(parse_ipv6("::ffff:1.2.3.4"), Some(0xffff_0102_0304));
    }

    #[test]
    fn never_panics() {
        // Cheap deterministic fuzz over awkward characters and lengths.
        let alphabet: Vec<char> = "aZ09-_.:/?#@[]%*\u{e9}\u{1f980}\u{212a}\u{ff0f} \t\nv"
            .chars()
            .collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let trusted = s(&["https://*.a.com", "https://[", "https://[::1]"]);
        let allowed = s(&["*"]);
        for _ in 0..20_000 {
            let len = (next() % 70) as usize;
            let mut text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            if next() % 3 == 0 {
                text.insert_str(
                    0,
                    ["https://", "http://[", "https://[v"][(next() % 3) as usize],
                );
            }
            let t = text.as_str();
            let _ = check_token_format(t);
            let _ = does_token_match(t, t);
            let _ = unmask_cipher_token(t);
            let _ = mask_with(t, t);
            let _ = secret_from_cookie(t);
            let _ = secret_from_session(t);
            let _ = check_request_token(Some(t), true, Some(t), Some(t), t);
            let _ = split_domain_port(t);
            let _ = parse_header_name(t);
            let _ = urlsplit(t).map(|r| r.geturl());
            let c = OriginContext {
                is_secure: true,
                host: t,
                server_port: 8000,
                origin: if next() % 2 == 0 { Some(t) } else { None },
                referer: Some(t),
                trusted_origins: &trusted,
                cookie_domain: if next() % 2 == 0 { Some(t) } else { None },
                allowed_hosts: &allowed,
            };
            let _ = check_origin_and_referer(&c);
        }
    }
}
