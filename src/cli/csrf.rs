use super::{refused, CmdResult, Failure};
use crate::config::Settings;
use crate::formats::csrf::{
    check_origin_and_referer, check_request_token, generate_secret, mask_cipher_secret,
    parse_header_name, secret_from_cookie, try_unmask_cipher_token, wsgi_header_str, OriginContext,
    CSRF_TOKEN_LENGTH,
};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum CsrfCommand {
    /// Print a new 32-character CSRF secret (the csrftoken cookie value).
    NewSecret,
    /// Print a freshly masked 64-character token for SECRET (what {% csrf_token %} emits).
    Mask { secret: String },
    /// Print the secret inside a 64-character masked token.
    Unmask { token: String },
    /// Would CsrfViewMiddleware accept TOKEN for a POST whose csrftoken cookie is SECRET?
    /// Prints "ok" (exit 0) or Django's reason (exit 1).
    CheckToken {
        /// The csrftoken cookie value (32-character secret or legacy 64-character token).
        #[arg(long)]
        secret: Option<String>,
        /// TOKEN came in the X-CSRFToken header instead of the csrfmiddlewaretoken field.
        #[arg(long)]
        header: bool,
        token: String,
    },
    /// The Origin/Referer checks of an unsafe request: prints "ok" or Django's reason.
    CheckOrigin {
        /// request.get_host(), port included.
        #[arg(long)]
        host: String,
        /// The request came over HTTPS.
        #[arg(long)]
        secure: bool,
        #[arg(long)]
        origin: Option<String>,
        #[arg(long)]
        referer: Option<String>,
        /// Default: CSRF_COOKIE_DOMAIN.
        #[arg(long)]
        cookie_domain: Option<String>,
        /// The server port (default 443 with --secure, else 80).
        #[arg(long)]
        port: Option<u16>,
    },
}

pub fn run(cmd: CsrfCommand, settings: &Settings) -> CmdResult {
    match cmd {
        CsrfCommand::NewSecret => println!("{}", generate_secret()),
        CsrfCommand::Mask { secret } => {
            if secret.chars().count() != 32 || !secret.is_ascii() {
                return Err(refused("a CSRF secret is 32 characters of a-z, A-Z, 0-9"));
            }
            println!("{}", mask_cipher_secret(&secret));
        }
        CsrfCommand::Unmask { token } => {
            if token.chars().count() != CSRF_TOKEN_LENGTH {
                return Err(refused("a masked CSRF token is 64 characters"));
            }
            println!(
                "{}",
                try_unmask_cipher_token(&token)
                    .ok_or_else(|| refused("not a masked CSRF token"))?
            );
        }
        CsrfCommand::CheckToken {
            secret,
            header,
            token,
        } => {
            let secret = match secret {
                Some(cookie) => Some(secret_from_cookie(&cookie).map_err(|r| {
                    println!("{r}");
                    refused(r)
                })?),
                None => None,
            };
            let header_name = parse_header_name(&settings.csrf_header_name).ok_or_else(|| {
                Failure::Config(format!(
                    "CSRF_HEADER_NAME: {:?} is not an HTTP_ header",
                    settings.csrf_header_name
                ))
            })?;
            let header_value = wsgi_header_str(token.as_bytes());
            let (post, hdr) = if header {
                (None, Some(header_value.as_str()))
            } else {
                (Some(token.as_str()), None)
            };
            match check_request_token(secret.as_deref(), true, post, hdr, &header_name) {
                Ok(()) => println!("ok"),
                Err(reason) => {
                    println!("{reason}");
                    return Err(refused(reason));
                }
            }
        }
        CsrfCommand::CheckOrigin {
            host,
            secure,
            origin,
            referer,
            cookie_domain,
            port,
        } => {
            let cookie_domain = cookie_domain.or_else(|| settings.csrf_cookie_domain.clone());
            let ctx = OriginContext {
                is_secure: secure,
                host: &host,
                server_port: port.unwrap_or(if secure { 443 } else { 80 }),
                origin: origin.as_deref(),
                referer: referer.as_deref(),
                trusted_origins: &settings.csrf_trusted_origins,
                cookie_domain: cookie_domain.as_deref(),
                allowed_hosts: &settings.allowed_hosts,
            };
            match check_origin_and_referer(&ctx) {
                Ok(()) => println!("ok"),
                Err(reason) => {
                    println!("{reason}");
                    return Err(refused(reason));
                }
            }
        }
    }
    Ok(())
}
