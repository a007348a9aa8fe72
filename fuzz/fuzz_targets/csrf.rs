//! CSRF: unmasking, `secret_from_cookie`/`_session`, `check_request_token`, and the
//! Origin/Referer checks with arbitrary header strings (plus the urlsplit/host helpers under
//! them). Input lines: csrftoken cookie, POST token, header token, Host, Origin, Referer,
//! trusted origins (comma-separated), allowed hosts (comma-separated), cookie domain. A
//! missing line is an absent header; two option bits come from a hash of the input.
#![no_main]
#[path = "../common.rs"]
mod common;

use common::*;
use djauth::formats::csrf::{self, OriginContext};
use libfuzzer_sys::fuzz_target;

fn list(s: Option<&str>) -> Vec<String> {
    s.map(|s| s.split(',').map(str::to_owned).collect()).unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let s = text(data);
    let lines: Vec<&str> = s.split('\n').collect();
    let bits = pick(data);
    let (is_post, is_secure) = (bits & 1 == 1, bits & 2 == 2);
    let cookie = lines[0];
    let post = line(&lines, 1);
    let header = line(&lines, 2);

    // Masking and unmasking.
    for l in &lines {
        let _ = csrf::check_token_format(l);
        let _ = csrf::try_unmask_cipher_token(l);
        let _ = csrf::unmask_cipher_token(l);
        let _ = csrf::secret_from_session(l);
        let _ = csrf::does_token_match(l, cookie);
        let _ = csrf::parse_header_name(l);
        let _ = csrf::wsgi_header_str(l.as_bytes());
        let _ = csrf::split_domain_port(l);
        if let Ok(parts) = csrf::urlsplit(l) {
            let _ = parts.geturl();
        }
    }
    let secret = csrf::secret_from_cookie(cookie);
    if let Ok(secret) = &secret {
        assert_eq!(secret.chars().count(), csrf::CSRF_SECRET_LENGTH);
        // A fresh mask, and the input's own lines as masks, all unmask to the secret.
        let masked = csrf::mask_cipher_secret(secret);
        assert_eq!(csrf::unmask_cipher_token(&masked), *secret);
        assert!(csrf::check_request_token(Some(secret), true, Some(&masked), None, "X-Csrftoken").is_ok());
        for mask in lines.iter().filter(|m| csrf::check_token_format(m).is_ok() && m.len() == 32) {
            let token = csrf::mask_with(secret, mask);
            assert_eq!(csrf::unmask_cipher_token(&token), *secret);
            assert!(csrf::does_token_match(&token, secret));
        }
    }
    let secret = secret.ok();
    let display = csrf::parse_header_name(csrf::DEFAULT_CSRF_HEADER_NAME).unwrap();
    let checked = csrf::check_request_token(secret.as_deref(), is_post, post, header, &display);
    if checked.is_ok() {
        let token = if is_post && !post.unwrap_or("").is_empty() { post } else { header };
        assert!(csrf::does_token_match(token.unwrap(), secret.as_deref().unwrap()));
    }

    // Origin / Referer.
    let trusted = list(line(&lines, 6));
    let allowed = list(line(&lines, 7));
    let ctx = OriginContext {
        is_secure,
        host: line(&lines, 3).unwrap_or("example.com"),
        server_port: if is_secure { 443 } else { (bits >> 8) as u16 },
        origin: line(&lines, 4),
        referer: line(&lines, 5),
        trusted_origins: &trusted,
        cookie_domain: line(&lines, 8),
        allowed_hosts: &allowed,
    };
    let _ = ctx.get_host();
    let verified = csrf::origin_verified(&ctx);
    let _ = csrf::check_referer(&ctx);
    let result = csrf::check_origin_and_referer(&ctx);
    if ctx.origin.is_some() {
        assert_eq!(result.is_ok(), verified);
    }
    for host in &lines {
        let _ = csrf::validate_host(host, &allowed);
        let _ = csrf::is_same_domain(host, cookie);
    }
});
