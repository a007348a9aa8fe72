//! Sending email as `django.core.mail` does, for `PasswordResetView`.
//!
//! [`Mailer`] is built once from the `EMAIL_*` settings and sends one [`Message`] at a time,
//! blocking (call it from `web::block`). The backends are Django's, chosen by
//! `EMAIL_BACKEND`:
//!
//! * `django.core.mail.backends.smtp.EmailBackend` (the default): one SMTP connection per
//!   message to `EMAIL_HOST:EMAIL_PORT`, STARTTLS when `EMAIL_USE_TLS`, implicit TLS when
//!   `EMAIL_USE_SSL` (certificates checked against the system trust store, as Python's
//!   `ssl.create_default_context()` does; `SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured), and
//!   `AUTH` only when both `EMAIL_HOST_USER` and `EMAIL_HOST_PASSWORD` are set. Every
//!   connect, read and write is bounded by `EMAIL_TIMEOUT`, or by 10 s when it is `None`
//!   (Django's `None` waits forever, which would hang a worker on a dead server).
//! * `django.core.mail.backends.console.EmailBackend`: the message, as it would go over
//!   the wire but with `\n` line endings, then a line of 79 dashes, on standard output.
//! * `django.core.mail.backends.locmem.EmailBackend`: kept in memory ([`Mailer::outbox`]),
//!   for tests.
//! * `django.core.mail.backends.dummy.EmailBackend`: nothing.
//!
//! The message is `EmailMultiAlternatives`'s: headers `Content-Type: text/plain;
//! charset="utf-8"`, `MIME-Version`, `Content-Transfer-Encoding` (7bit for ASCII, 8bit
//! otherwise, quoted-printable when a line is over 998 bytes), `Subject`, `From`, `To`,
//! `Date` (UTC, `-0000`, as `formatdate()`), `Message-ID` (`make_msgid()`'s shape), in
//! Django's order; with an HTML body, a `multipart/alternative` of the two. Like Django, a
//! header value with a newline is refused ([`MailError::BadHeader`]), a message with no
//! recipient is not sent at all, and an empty `from` means `DEFAULT_FROM_EMAIL`. One
//! difference: if the SMTP server does not announce 8BITMIME, djauth resends the message
//! quoted-printable rather than let lettre refuse it (Python's smtplib sends 8bit anyway).
//!
//! The reset email itself is rendered by [`render_password_reset`] from
//! `registration/password_reset_subject.txt` and `registration/password_reset_email.html`
//! ([`DEFAULT_TEMPLATES`]), as `PasswordResetForm.send_mail` renders them.

use crate::config::{ConfigError, Settings};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::SmtpTransport;
use lettre::Transport as _;
use std::io::Write;
use std::sync::Mutex;

/// `PasswordResetView.subject_template_name`.
pub const SUBJECT_TEMPLATE: &str = "registration/password_reset_subject.txt";
/// `PasswordResetView.email_template_name` (plain text despite the name).
pub const EMAIL_TEMPLATE: &str = "registration/password_reset_email.html";

/// djauth's defaults for the two reset-email templates, for `templates::DEFAULTS`.
pub const DEFAULT_TEMPLATES: &[(&str, &str)] = &[
    (
        SUBJECT_TEMPLATE,
        include_str!("../../templates/registration/password_reset_subject.txt"),
    ),
    (
        EMAIL_TEMPLATE,
        include_str!("../../templates/registration/password_reset_email.html"),
    ),
];

/// The `EMAIL_BACKEND`s djauth implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Smtp,
    Console,
    Locmem,
    Dummy,
}

impl Backend {
    pub const ALL: &'static [Backend] = &[
        Backend::Smtp,
        Backend::Console,
        Backend::Locmem,
        Backend::Dummy,
    ];

    /// The dotted path Django's `EMAIL_BACKEND` names it by.
    pub fn setting(self) -> &'static str {
        match self {
            Backend::Smtp => "django.core.mail.backends.smtp.EmailBackend",
            Backend::Console => "django.core.mail.backends.console.EmailBackend",
            Backend::Locmem => "django.core.mail.backends.locmem.EmailBackend",
            Backend::Dummy => "django.core.mail.backends.dummy.EmailBackend",
        }
    }

    pub fn from_setting(name: &str) -> Option<Backend> {
        Backend::ALL.iter().copied().find(|b| b.setting() == name)
    }
}

/// One email: `EmailMultiAlternatives(subject, body, from_email, to)`, with `html_body` as
/// its `text/html` alternative.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: String,
    pub html_body: Option<String>,
    /// Empty means `DEFAULT_FROM_EMAIL`.
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Django's `BadHeaderError`.
    #[error("Header values can't contain newlines (got {value:?} for header {header:?})")]
    BadHeader { header: &'static str, value: String },
    #[error("invalid address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("cannot build the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("console email backend: {0}")]
    Io(#[from] std::io::Error),
}

enum Transport {
    Smtp(Box<SmtpTransport>),
    Console(Mutex<Box<dyn Write + Send>>),
    Locmem(Mutex<Vec<Message>>),
    Dummy,
}

/// Django's email backend, configured once from the settings.
pub struct Mailer {
    transport: Transport,
    default_from: String,
    /// `DNS_NAME`: the domain of `Message-ID`s (and the EHLO name).
    dns_name: String,
}

impl Mailer {
    /// The backend `EMAIL_BACKEND` names, configured from the other `EMAIL_*` settings.
    /// Errors name the setting at fault, as [`Settings::validate`] does.
    pub fn from_settings(settings: &Settings) -> Result<Mailer, ConfigError> {
        settings.validate_email()?;
        let backend = settings.email_backend()?;
        let hello = ClientId::default();
        let dns_name = match &hello {
            ClientId::Domain(d) if !d.is_empty() => d.clone(),
            _ => "localhost".to_owned(),
        };
        let transport = match backend {
            Backend::Smtp => Transport::Smtp(Box::new(smtp_transport(settings, hello)?)),
            Backend::Console => Transport::Console(Mutex::new(Box::new(std::io::stdout()))),
            Backend::Locmem => Transport::Locmem(Mutex::new(Vec::new())),
            Backend::Dummy => Transport::Dummy,
        };
        Ok(Mailer {
            transport,
            default_from: settings.default_from_email.clone(),
            dns_name,
        })
    }

    pub fn backend(&self) -> Backend {
        match self.transport {
            Transport::Smtp(_) => Backend::Smtp,
            Transport::Console(_) => Backend::Console,
            Transport::Locmem(_) => Backend::Locmem,
            Transport::Dummy => Backend::Dummy,
        }
    }

    /// `DEFAULT_FROM_EMAIL`.
    pub fn default_from_email(&self) -> &str {
        &self.default_from
    }

    /// The messages the locmem backend has sent (Django's `mail.outbox`); empty for the
    /// other backends.
    pub fn outbox(&self) -> Vec<Message> {
        match &self.transport {
            Transport::Locmem(sent) => sent.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            _ => Vec::new(),
        }
    }

    /// Sends `msg`, blocking until the backend is done (for SMTP: until the server has
    /// accepted it or the timeout has passed). `EmailMessage.send()`: nothing happens when
    /// `to` holds no address.
    pub fn send(&self, msg: &Message) -> Result<(), MailError> {
        if let Transport::Dummy = self.transport {
            return Ok(());
        }
        let Some(mime) = self.to_mime(msg, false)? else {
            return Ok(());
        };
        match &self.transport {
            Transport::Smtp(smtp) => match smtp.send(&mime) {
                Ok(_) => Ok(()),
                Err(e) if e.is_client() && e.to_string().contains("8BITMIME") => {
                    let mime = self.to_mime(msg, true)?.expect("has recipients");
                    smtp.send(&mime)?;
                    Ok(())
                }
                Err(e) => Err(e.into()),
            },
            Transport::Console(out) => {
                let text = String::from_utf8_lossy(&mime.formatted()).replace("\r\n", "\n");
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                write!(out, "{text}\n{}\n", "-".repeat(79))?;
                out.flush()?;
                Ok(())
            }
            Transport::Locmem(sent) => {
                sent.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(msg.clone());
                Ok(())
            }
            Transport::Dummy => Ok(()),
        }
    }

    /// The message as `EmailMultiAlternatives.message()` builds it, or `None` when it has
    /// no recipient. `quoted_printable` forces that encoding on 8bit text.
    fn to_mime(
        &self,
        msg: &Message,
        quoted_printable: bool,
    ) -> Result<Option<lettre::Message>, MailError> {
        let from = if msg.from.is_empty() {
            self.default_from.as_str()
        } else {
            msg.from.as_str()
        };
        forbid_newlines("Subject", &msg.subject)?;
        forbid_newlines("From", from)?;
        let to: Vec<&str> = msg
            .to
            .iter()
            .map(String::as_str)
            .filter(|t| !t.is_empty())
            .collect();
        for t in &to {
            forbid_newlines("To", t)?;
        }
        if to.is_empty() {
            return Ok(None);
        }
        let mut builder = lettre::Message::builder()
            .from(mailbox(from)?)
            .subject(msg.subject.as_str());
        for t in to {
            builder = builder.to(mailbox(t)?);
        }
        let builder = builder.message_id(Some(make_msgid(&self.dns_name)));
        let mut mime = match &msg.html_body {
            None => builder
                .raw_header(pre_encoded("Content-Type", TEXT_PLAIN))
                .raw_header(pre_encoded("MIME-Version", "1.0"))
                .body(text_body(&msg.body, quoted_printable))?,
            Some(html) => {
                let mut alt = MultiPart::alternative().build();
                if !msg.body.is_empty() {
                    alt = alt.singlepart(text_part(TEXT_PLAIN, &msg.body, quoted_printable));
                }
                alt = alt.singlepart(text_part(TEXT_HTML, html, quoted_printable));
                builder.multipart(alt)?
            }
        };
        let headers = mime.headers_mut();
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S -0000")
            .to_string();
        headers.insert_raw(pre_encoded("Date", &date));
        // Django's order (MIMEText's own headers first, then those `message()` sets).
        for name in [
            "Content-Type",
            "MIME-Version",
            "Content-Transfer-Encoding",
            "Subject",
            "From",
            "To",
            "Date",
            "Message-ID",
        ] {
            if let Some(value) = headers.remove_raw(name) {
                headers.insert_raw(value);
            }
        }
        Ok(Some(mime))
    }
}

const TEXT_PLAIN: &str = "text/plain; charset=\"utf-8\"";
const TEXT_HTML: &str = "text/html; charset=\"utf-8\"";

fn smtp_transport(settings: &Settings, hello: ClientId) -> Result<SmtpTransport, ConfigError> {
    let host = settings.email_host.trim();
    let tls = |name: &str| {
        TlsParameters::new(host.to_owned())
            .map_err(|e| ConfigError(format!("{name}: cannot set up TLS for {host:?}: {e}")))
    };
    let tls = if settings.email_use_ssl {
        Tls::Wrapper(tls("EMAIL_USE_SSL")?)
    } else if settings.email_use_tls {
        Tls::Required(tls("EMAIL_USE_TLS")?)
    } else {
        Tls::None
    };
    let port = u16::try_from(settings.email_port)
        .map_err(|_| ConfigError(format!("EMAIL_PORT: {} is not a port", settings.email_port)))?;
    let mut builder = SmtpTransport::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .hello_name(hello)
        .timeout(Some(settings.email_timeout()));
    // smtp.EmailBackend.open(): `if self.username and self.password: login(...)`.
    if !settings.email_host_user.is_empty() && !settings.email_host_password.is_empty() {
        builder = builder.credentials(Credentials::new(
            settings.email_host_user.clone(),
            settings.email_host_password.clone(),
        ));
    }
    Ok(builder.build())
}

fn forbid_newlines(header: &'static str, value: &str) -> Result<(), MailError> {
    if value.contains(['\n', '\r']) {
        return Err(MailError::BadHeader {
            header,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn mailbox(address: &str) -> Result<Mailbox, MailError> {
    address
        .parse()
        .map_err(|e: lettre::address::AddressError| MailError::Address {
            address: address.to_owned(),
            reason: e.to_string(),
        })
}

fn pre_encoded(name: &'static str, ascii: &str) -> HeaderValue {
    HeaderValue::dangerous_new_pre_encoded(
        HeaderName::new_from_ascii_str(name),
        ascii.to_owned(),
        ascii.to_owned(),
    )
}

/// `SafeMIMEText.set_payload` with utf-8: quoted-printable when a line is longer than
/// RFC 5322's 998 bytes, else the payload as is (Python then labels it 7bit or 8bit).
fn text_body(text: &str, force_quoted_printable: bool) -> Body {
    use lettre::message::header::ContentTransferEncoding as Cte;
    let long_lines = text.lines().any(|l| l.len() > 998);
    let encoding = if long_lines {
        Cte::QuotedPrintable
    } else if text.is_ascii() {
        Cte::SevenBit
    } else if force_quoted_printable {
        Cte::QuotedPrintable
    } else {
        Cte::EightBit
    };
    Body::new_with_encoding(text.to_owned(), encoding).unwrap_or_else(|raw| {
        Body::new_with_encoding(raw, Cte::QuotedPrintable).expect("quoted-printable takes anything")
    })
}

fn text_part(content_type: &str, text: &str, force_quoted_printable: bool) -> SinglePart {
    SinglePart::builder()
        .header(ContentType::parse(content_type).expect("a valid content type"))
        .body(text_body(text, force_quoted_printable))
}

/// `email.utils.make_msgid(domain=DNS_NAME)`: `<time*100.pid.random64@domain>`.
fn make_msgid(domain: &str) -> String {
    let centis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() / 10)
        .unwrap_or(0);
    format!(
        "<{centis}.{}.{}@{domain}>",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// `PasswordResetForm.send_mail`: renders the subject (lines joined: a subject must not
/// contain newlines) and the plain-text body, and the HTML alternative when
/// `html_email_template` is given, for one user. `ctx` is Django's per-user context:
/// `email`, `domain`, `site_name`, `uid`, `user` (with `get_username`), `token`, `protocol`.
pub fn render_password_reset(
    templates: &super::templates::Templates,
    ctx: minijinja::Value,
    subject_template: &str,
    email_template: &str,
    html_email_template: Option<&str>,
    from: &str,
    to: &str,
) -> Result<Message, minijinja::Error> {
    let subject = templates.render(subject_template, ctx.clone())?;
    let body = templates.render(email_template, ctx.clone())?;
    let html_body = match html_email_template {
        Some(name) => Some(templates.render(name, ctx)?),
        None => None,
    };
    Ok(Message {
        subject: subject.lines().collect(),
        body,
        html_body,
        from: from.to_owned(),
        to: vec![to.to_owned()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_sources(None, pairs.iter().copied())
    }

    fn message() -> Message {
        Message {
            subject: "Password reset on testserver".into(),
            body: "\nIn case you’ve forgotten, you are: carol\n\nThe testserver team\n\n\n".into(),
            html_body: None,
            from: String::new(),
            to: vec!["Carol@example.com".into()],
        }
    }

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn console() -> (Mailer, Captured) {
        let mut mailer = Mailer::from_settings(
            &settings(&[(
                "DJAUTH_EMAIL_BACKEND",
                "django.core.mail.backends.console.EmailBackend",
            )])
            .unwrap(),
        )
        .unwrap();
        let out = Captured::default();
        mailer.transport = Transport::Console(Mutex::new(Box::new(out.clone())));
        (mailer, out)
    }

    fn header_lines(text: &str) -> Vec<&str> {
        text.split("\n\n").next().unwrap().lines().collect()
    }

    #[test]
    fn console_backend_writes_djangos_message() {
        let (mailer, out) = console();
        assert_eq!(mailer.backend(), Backend::Console);
        mailer.send(&message()).unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let headers = header_lines(&text);
        let names: Vec<&str> = headers
            .iter()
            .map(|h| h.split(':').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Content-Type",
                "MIME-Version",
                "Content-Transfer-Encoding",
                "Subject",
                "From",
                "To",
                "Date",
                "Message-ID"
            ],
            "{text}"
        );
        assert_eq!(headers[0], "Content-Type: text/plain; charset=\"utf-8\"");
        assert_eq!(headers[1], "MIME-Version: 1.0");
        assert_eq!(headers[2], "Content-Transfer-Encoding: 8bit");
        assert_eq!(headers[3], "Subject: Password reset on testserver");
        assert_eq!(headers[4], "From: webmaster@localhost");
        assert_eq!(headers[5], "To: Carol@example.com");
        // formatdate(): "Mon, 23 Nov 2026 12:46:55 -0000"
        let date = headers[6].strip_prefix("Date: ").unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc2822(date).is_ok() && date.ends_with(" -0000"),
            "{date}"
        );
        let id = headers[7].strip_prefix("Message-ID: <").unwrap();
        let (left, domain) = id.strip_suffix('>').unwrap().split_once('@').unwrap();
        assert_eq!(domain, mailer.dns_name);
        let parts: Vec<&str> = left.split('.').collect();
        assert_eq!(parts.len(), 3, "{left}");
        assert!(parts.iter().all(|p| p.parse::<u64>().is_ok()), "{left}");
        let body = text.split_once("\n\n").unwrap().1;
        assert_eq!(
            body,
            format!("{}\n{}\n", message().body, "-".repeat(79)),
            "body as is, then the console separator"
        );
        assert!(!text.contains('\r'));
    }

    #[test]
    fn ascii_is_7bit_long_lines_quoted_printable_and_html_an_alternative() {
        let (mailer, out) = console();
        let mut msg = message();
        msg.body = "plain ascii\n".into();
        mailer.send(&msg).unwrap();
        msg.body = format!("{}\n", "é".repeat(600));
        mailer.send(&msg).unwrap();
        msg.body = "text".into();
        msg.html_body = Some("<p>hé</p>".into());
        msg.subject = "Ünïcode sübject".into();
        msg.from = "Dj <x@y.example>".into();
        msg.to = vec!["a@b.example".into(), "".into(), "d@e.example".into()];
        mailer.send(&msg).unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let sep = format!("\n{}\n", "-".repeat(79));
        let sent: Vec<&str> = text.split(&sep).filter(|s| !s.is_empty()).collect();
        assert_eq!(sent.len(), 3);
        assert!(header_lines(sent[0]).contains(&"Content-Transfer-Encoding: 7bit"));
        assert!(header_lines(sent[1]).contains(&"Content-Transfer-Encoding: quoted-printable"));
        let h = header_lines(sent[2]);
        assert!(h.contains(&"From: Dj <x@y.example>"), "{h:?}");
        assert!(h.contains(&"To: a@b.example, d@e.example"), "{h:?}");
        assert!(
            h.contains(&"Subject: =?utf-8?b?w5xuw69jb2RlIHPDvGJqZWN0?="),
            "{h:?}"
        );
        assert!(
            sent[2].contains("Content-Type: multipart/alternative;"),
            "{}",
            sent[2]
        );
        assert!(sent[2].contains("Content-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: 7bit\n\ntext\n"), "{}", sent[2]);
        assert!(sent[2].contains("Content-Type: text/html; charset=\"utf-8\"\nContent-Transfer-Encoding: 8bit\n\n<p>hé</p>\n"), "{}", sent[2]);
    }

    #[test]
    fn newlines_in_headers_are_refused_and_no_recipient_sends_nothing() {
        let (mailer, out) = console();
        for (i, header) in ["Subject", "From", "To"].into_iter().enumerate() {
            let mut msg = message();
            match i {
                0 => msg.subject = "Password reset\non x".into(),
                1 => msg.from = "a@b.example\r\nBcc: c@d.example".into(),
                _ => msg.to = vec!["a@b.example\nBcc: c@d.example".into()],
            }
            match mailer.send(&msg) {
                Err(e @ MailError::BadHeader { .. }) => {
                    assert!(e.to_string().contains(header), "{e}")
                }
                other => panic!("{header}: {other:?}"),
            }
        }
        let mut msg = message();
        msg.to = vec![String::new()];
        mailer.send(&msg).unwrap();
        msg.to = vec!["not an address".into()];
        assert!(matches!(mailer.send(&msg), Err(MailError::Address { .. })));
        assert!(out.0.lock().unwrap().is_empty());
    }

    #[test]
    fn locmem_and_dummy() {
        let s = settings(&[(
            "DJAUTH_EMAIL_BACKEND",
            "django.core.mail.backends.locmem.EmailBackend",
        )])
        .unwrap();
        let mailer = Mailer::from_settings(&s).unwrap();
        mailer.send(&message()).unwrap();
        assert_eq!(mailer.outbox(), [message()]);
        let s = settings(&[(
            "DJAUTH_EMAIL_BACKEND",
            "django.core.mail.backends.dummy.EmailBackend",
        )])
        .unwrap();
        let mailer = Mailer::from_settings(&s).unwrap();
        assert_eq!(mailer.backend(), Backend::Dummy);
        mailer.send(&message()).unwrap();
        assert!(mailer.outbox().is_empty());
    }

    /// What the sink saw: the commands (without CRLF) and the DATA, un-dot-stuffed.
    #[derive(Debug, Default)]
    struct Transcript {
        commands: Vec<String>,
        data: String,
    }

    /// An SMTP server on a free loopback port that serves `connections` connections one
    /// after the other, announcing `extensions` after EHLO, and returns their transcripts.
    fn smtp_sink(
        extensions: &'static [&'static str],
        connections: usize,
    ) -> (u16, std::thread::JoinHandle<Vec<Transcript>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            (0..connections)
                .map(|_| serve_smtp(listener.accept().unwrap().0, extensions))
                .collect()
        });
        (port, handle)
    }

    fn serve_smtp(stream: TcpStream, extensions: &[&str]) -> Transcript {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        let mut t = Transcript::default();
        let mut reply = |s: &str| out.write_all(s.as_bytes()).unwrap();
        reply("220 sink.test ESMTP\r\n");
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let cmd = line.trim_end_matches(['\r', '\n']).to_owned();
            t.commands.push(cmd.clone());
            let verb = cmd.split(' ').next().unwrap().to_ascii_uppercase();
            match verb.as_str() {
                "EHLO" => {
                    // "250-sink.test", "250-EXT"…, "250 LAST".
                    let mut lines = vec!["sink.test"];
                    lines.extend_from_slice(extensions);
                    let n = lines.len();
                    for (i, l) in lines.iter().enumerate() {
                        let sep = if i + 1 == n { ' ' } else { '-' };
                        reply(&format!("250{sep}{l}\r\n"));
                    }
                }
                "AUTH" => reply("235 2.7.0 Authentication successful\r\n"),
                "MAIL" | "RCPT" | "RSET" | "NOOP" => reply("250 OK\r\n"),
                "DATA" => {
                    reply("354 End data with <CR><LF>.<CR><LF>\r\n");
                    loop {
                        line.clear();
                        reader.read_line(&mut line).unwrap();
                        if line == ".\r\n" {
                            break;
                        }
                        let l = line.strip_prefix('.').unwrap_or(&line);
                        t.data.push_str(l);
                    }
                    reply("250 OK queued\r\n");
                }
                "QUIT" => {
                    reply("221 Bye\r\n");
                    break;
                }
                _ => reply("502 Command not implemented\r\n"),
            }
        }
        t
    }

    fn smtp_mailer(port: u16, extra: &[(&str, &str)]) -> Mailer {
        let port = port.to_string();
        let mut pairs = vec![
            ("DJAUTH_EMAIL_HOST", "127.0.0.1"),
            ("DJAUTH_EMAIL_PORT", port.as_str()),
            ("DJAUTH_EMAIL_TIMEOUT", "5"),
        ];
        pairs.extend_from_slice(extra);
        Mailer::from_settings(&settings(&pairs).unwrap()).unwrap()
    }

    #[test]
    fn smtp_round_trip() {
        let (port, sink) = smtp_sink(&["8BITMIME", "AUTH PLAIN LOGIN"], 1);
        let mailer = smtp_mailer(
            port,
            &[
                ("DJAUTH_EMAIL_HOST_USER", "mailer"),
                ("DJAUTH_EMAIL_HOST_PASSWORD", "s3cret"),
                ("DJAUTH_DEFAULT_FROM_EMAIL", "noreply@example.com"),
            ],
        );
        assert_eq!(mailer.backend(), Backend::Smtp);
        mailer.send(&message()).unwrap();
        let t = sink.join().unwrap().remove(0);
        let verbs: Vec<&str> = t
            .commands
            .iter()
            .map(|c| c.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            verbs,
            ["EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"],
            "{t:?}"
        );
        assert!(t.commands[0].len() > "EHLO ".len());
        use base64::Engine as _;
        let plain = t.commands[1].strip_prefix("AUTH PLAIN ").unwrap();
        let plain = base64::engine::general_purpose::STANDARD
            .decode(plain)
            .unwrap();
        assert_eq!(plain, b"\0mailer\0s3cret");
        assert!(
            t.commands[2].starts_with("MAIL FROM:<noreply@example.com>"),
            "{t:?}"
        );
        assert_eq!(t.commands[3], "RCPT TO:<Carol@example.com>");
        let (head, body) = t.data.split_once("\r\n\r\n").unwrap();
        let head: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(
            &head[..6],
            [
                "Content-Type: text/plain; charset=\"utf-8\"",
                "MIME-Version: 1.0",
                "Content-Transfer-Encoding: 8bit",
                "Subject: Password reset on testserver",
                "From: noreply@example.com",
                "To: Carol@example.com",
            ]
        );
        assert!(head[6].starts_with("Date: ") && head[7].starts_with("Message-ID: <"));
        assert_eq!(head.len(), 8, "{head:?}");
        assert_eq!(
            body.trim_end_matches("\r\n"),
            message()
                .body
                .replace('\n', "\r\n")
                .trim_end_matches("\r\n")
        );
    }

    #[test]
    fn smtp_without_8bitmime_gets_quoted_printable_and_no_auth_without_password() {
        let (port, sink) = smtp_sink(&[], 2);
        let mailer = smtp_mailer(port, &[("DJAUTH_EMAIL_HOST_USER", "mailer")]);
        mailer.send(&message()).unwrap();
        // lettre gives up on 8bit before MAIL; djauth reconnects and sends quoted-printable.
        let t = sink.join().unwrap();
        assert!(t[0].data.is_empty(), "{t:?}");
        assert!(
            t.iter()
                .all(|t| !t.commands.iter().any(|c| c.starts_with("AUTH"))),
            "{t:?}"
        );
        assert!(
            t[1].data
                .contains("\r\nContent-Transfer-Encoding: quoted-printable\r\n"),
            "{t:?}"
        );
        assert!(t[1].data.contains("you=E2=80=99ve forgotten"), "{t:?}");
    }

    #[test]
    fn smtp_failures_are_errors_within_the_timeout() {
        // Refused: nothing listens on the port any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mailer = smtp_mailer(port, &[]);
        let start = Instant::now();
        let e = mailer.send(&message()).unwrap_err();
        assert!(matches!(e, MailError::Smtp(_)), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));

        // Silent: accepts, never greets; EMAIL_TIMEOUT = 1 bounds the wait.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_secs(3));
            drop(s);
        });
        let mailer = smtp_mailer(port, &[("DJAUTH_EMAIL_TIMEOUT", "1")]);
        let start = Instant::now();
        let e = mailer.send(&message()).unwrap_err();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{took:?} {e}"
        );
        held.join().unwrap();

        // EMAIL_USE_TLS against a server without STARTTLS fails (smtplib raises too).
        let (port, sink) = smtp_sink(&["8BITMIME"], 1);
        let mailer = smtp_mailer(port, &[("DJAUTH_EMAIL_USE_TLS", "true")]);
        assert!(mailer.send(&message()).is_err());
        drop(mailer);
        let _ = sink.join();
    }

    #[test]
    fn bad_settings_name_the_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(
                    "DJAUTH_EMAIL_BACKEND",
                    "django.core.mail.backends.filebased.EmailBackend",
                )],
                "EMAIL_BACKEND",
            ),
            (
                &[("DJAUTH_EMAIL_USE_TLS", "1"), ("DJAUTH_EMAIL_USE_SSL", "1")],
                "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive",
            ),
            (&[("DJAUTH_EMAIL_PORT", "70000")], "EMAIL_PORT"),
            (&[("DJAUTH_EMAIL_PORT", "smtp")], "EMAIL_PORT"),
            (&[("DJAUTH_EMAIL_TIMEOUT", "soon")], "EMAIL_TIMEOUT"),
            (&[("DJAUTH_EMAIL_TIMEOUT", "-1")], "EMAIL_TIMEOUT"),
            (&[("DJAUTH_EMAIL_USE_SSL", "maybe")], "EMAIL_USE_SSL"),
            (&[("DJAUTH_EMAIL_HOST", "")], "EMAIL_HOST"),
            (
                &[("DJAUTH_DEFAULT_FROM_EMAIL", "webmaster")],
                "DEFAULT_FROM_EMAIL",
            ),
        ];
        for (env, needle) in cases {
            let e = settings(env).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let toml = "EMAIL_TIMEOUT = 2.5\nEMAIL_PORT = 587\nEMAIL_USE_TLS = true\n";
        let s = Settings::from_sources(Some(toml), []).unwrap();
        assert_eq!(s.email_timeout(), Duration::from_millis(2500));
        assert_eq!(s.email_port, 587);
        let s = settings(&[]).unwrap();
        assert_eq!(s.email_timeout, None);
        assert_eq!(s.email_timeout(), Duration::from_secs(10));
        assert_eq!(s.default_from_email, "webmaster@localhost");
        assert_eq!(s.email_backend().unwrap(), Backend::Smtp);
        assert_eq!(
            Mailer::from_settings(&s).unwrap().default_from_email(),
            "webmaster@localhost"
        );
        let mut s = settings(&[]).unwrap();
        s.email_use_ssl = true;
        s.email_use_tls = true;
        assert!(Mailer::from_settings(&s).is_err());
    }

    fn reset_context(username: &str) -> minijinja::Value {
        minijinja::context! {
            email => "Carol@example.com",
            domain => "testserver",
            site_name => "testserver",
            uid => "MQ",
            token => "dihl2f-d35298dda5d5f82aea5a86275193b6d1",
            protocol => "http",
            user => minijinja::context! { get_username => username, username => username },
        }
    }

    /// The real templates through the real loader (as a `TEMPLATE_DIRS` entry).
    fn templates() -> super::super::templates::Templates {
        super::super::templates::Templates::new(&[concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/templates"
        )
        .to_owned()])
        .unwrap()
    }

    #[test]
    fn reset_email_renders_djangos_text() {
        let msg = render_password_reset(
            &templates(),
            reset_context("carol"),
            SUBJECT_TEMPLATE,
            EMAIL_TEMPLATE,
            None,
            "",
            "Carol@example.com",
        )
        .unwrap();
        assert_eq!(msg.subject, "Password reset on testserver");
        // Django 5.2.19's render_to_string, byte for byte.
        assert_eq!(
            msg.body,
            "\nYou're receiving this email because you requested a password reset for your user account at testserver.\n\nPlease go to the following page and choose a new password:\n\nhttp://testserver/accounts/reset/MQ/dihl2f-d35298dda5d5f82aea5a86275193b6d1/\n\nIn case you’ve forgotten, you are: carol\n\nThanks for using our site!\n\nThe testserver team\n\n\n"
        );
        assert_eq!(msg.to, ["Carol@example.com"]);
        assert_eq!(DEFAULT_TEMPLATES.len(), 2);
    }

    #[test]
    fn reset_email_is_not_html_escaped() {
        let ctx = minijinja::context! {
            domain => "a.example",
            site_name => "Tom & Jerry's <site>",
            uid => "MQ",
            token => "t-1",
            protocol => "https",
            user => minijinja::context! { get_username => "o'brien&co<x>" },
        };
        let msg = render_password_reset(
            &templates(),
            ctx,
            SUBJECT_TEMPLATE,
            EMAIL_TEMPLATE,
            None,
            "",
            "x@a.example",
        )
        .unwrap();
        assert_eq!(msg.subject, "Password reset on Tom & Jerry's <site>");
        assert!(
            msg.body.contains("you are: o'brien&co<x>\n"),
            "{}",
            msg.body
        );
        assert!(
            msg.body.contains("The Tom & Jerry's <site> team"),
            "{}",
            msg.body
        );
        assert!(
            msg.body
                .contains("https://a.example/accounts/reset/MQ/t-1/\n"),
            "{}",
            msg.body
        );
    }
}
