//! `Settings`: the Django settings djauth honours, under Django's names, with Django's
//! defaults. Sources, later winning: the defaults, an optional TOML file (`--config FILE` or
//! `DJAUTH_CONFIG`), then environment variables `DJAUTH_<SETTING_NAME>` (lists
//! comma-separated) and `DATABASE_URL`.
//!
//! Settings are a value built once and passed around; tests build their own.

use crate::formats::hashers::{Hashers, DEFAULT_PASSWORD_HASHERS};
use crate::formats::session::{Engine, SessionAuthHasher, SessionCodec};
use crate::formats::tokens::PasswordResetTokenGenerator;
use crate::formats::DjangoVersion;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything that can go wrong while loading settings names the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// `SESSION_COOKIE_SAMESITE` / `CSRF_COOKIE_SAMESITE`: "Lax", "Strict", "None", or false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SameSite {
    Off(bool),
    Named(SameSiteName),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SameSiteName {
    Lax,
    Strict,
    None,
}

impl SameSite {
    /// The attribute value Django writes, or `None` to omit it.
    pub fn attribute(self) -> Option<&'static str> {
        match self {
            SameSite::Off(_) => None,
            SameSite::Named(SameSiteName::Lax) => Some("Lax"),
            SameSite::Named(SameSiteName::Strict) => Some("Strict"),
            SameSite::Named(SameSiteName::None) => Some("None"),
        }
    }
}

/// One `AUTH_PASSWORD_VALIDATORS` entry: a table `{NAME = "...", OPTIONS = {...}}` as in
/// Django, or just the dotted name (what a comma-separated environment variable gives).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PasswordValidatorSetting {
    Name(String),
    Entry {
        #[serde(rename = "NAME")]
        name: String,
        #[serde(rename = "OPTIONS", default)]
        options: serde_json::Map<String, serde_json::Value>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", default, deny_unknown_fields)]
pub struct Settings {
    /// Which Django's version-specific defaults to follow (work factors).
    pub django_version: String,
    pub secret_key: String,
    pub secret_key_fallbacks: Vec<String>,
    pub password_hashers: Vec<String>,
    pub authentication_backends: Vec<String>,
    pub password_reset_timeout: i64,
    pub time_zone: String,
    pub use_tz: bool,
    pub database_url: Option<String>,
    /// Django's `DEFAULT_AUTO_FIELD`; unset means the default of `DJANGO_VERSION`.
    pub default_auto_field: Option<String>,
    pub auth_user_model: String,
    /// The user model's `db_table` when it is not `<app_label>_<model_name>` (djauth's own).
    pub auth_user_table: Option<String>,
    /// The user model's `USERNAME_FIELD` and `EMAIL_FIELD` (class attributes in Django).
    pub username_field: String,
    pub email_field: String,
    /// Django's global default is `[]`; `startproject` writes the four built-in validators.
    pub auth_password_validators: Vec<PasswordValidatorSetting>,

    pub session_engine: String,
    pub session_serializer: String,
    pub session_cookie_name: String,
    pub session_cookie_age: i64,
    pub session_cookie_domain: Option<String>,
    pub session_cookie_path: String,
    pub session_cookie_secure: bool,
    pub session_cookie_httponly: bool,
    pub session_cookie_samesite: SameSite,
    pub session_save_every_request: bool,
    pub session_expire_at_browser_close: bool,

    pub csrf_cookie_name: String,
    pub csrf_cookie_age: i64,
    pub csrf_cookie_domain: Option<String>,
    pub csrf_cookie_path: String,
    pub csrf_cookie_secure: bool,
    pub csrf_cookie_httponly: bool,
    pub csrf_cookie_samesite: SameSite,
    pub csrf_header_name: String,
    pub csrf_trusted_origins: Vec<String>,
    pub csrf_use_sessions: bool,

    pub allowed_hosts: Vec<String>,
    pub debug: bool,

    /// `SecurityMiddleware`, `XFrameOptionsMiddleware` and the proxy settings of `HttpRequest`.
    /// `SECURE_PROXY_SSL_HEADER` is Django's tuple as a two-item list, e.g.
    /// `["HTTP_X_FORWARDED_PROTO", "https"]`; empty means unset.
    pub secure_proxy_ssl_header: Vec<String>,
    pub use_x_forwarded_host: bool,
    pub use_x_forwarded_port: bool,
    pub secure_ssl_redirect: bool,
    pub secure_ssl_host: Option<String>,
    pub secure_redirect_exempt: Vec<String>,
    pub secure_hsts_seconds: i64,
    pub secure_hsts_include_subdomains: bool,
    pub secure_hsts_preload: bool,
    pub secure_content_type_nosniff: bool,
    /// Empty or "None": no header.
    pub secure_referrer_policy: String,
    pub secure_cross_origin_opener_policy: String,
    pub x_frame_options: String,
    pub login_url: String,
    pub login_redirect_url: String,
    /// `LoginView(redirect_authenticated_user=True)`: a logged-in user opening the login page
    /// is sent on to the success URL.
    pub login_redirect_authenticated_user: bool,
    pub logout_redirect_url: Option<String>,
    /// Directories searched for `registration/*.html` before djauth's own templates.
    pub template_dirs: Vec<String>,

    /// `django.core.mail`: how the password-reset email is sent (see `web::mail`).
    pub email_backend: String,
    pub email_host: String,
    pub email_port: i64,
    pub email_host_user: String,
    pub email_host_password: String,
    pub email_use_tls: bool,
    pub email_use_ssl: bool,
    /// Seconds. Django's default `None` means no timeout at all; djauth then bounds every
    /// SMTP connect, read and write by [`DEFAULT_EMAIL_TIMEOUT_SECS`] instead of hanging a
    /// worker thread on a dead mail server.
    #[serde(deserialize_with = "optional_seconds")]
    pub email_timeout: Option<f64>,
    pub default_from_email: String,

    /// djauth's own: seconds between the server's catch-ups of the session index (0: only
    /// before revocations and on demand).
    pub session_index_catch_up_interval: u64,
    /// djauth's own: a session's "last seen" is written at most once per this many seconds.
    pub session_last_seen_interval: i64,
    /// djauth's own: a bearer token for the admin session API (`Authorization: Bearer …`);
    /// unset, only staff with `auth.change_user` (session cookie + CSRF) may use it.
    pub admin_api_token: Option<String>,
    /// djauth's own login throttle: attempts allowed per username and per client address
    /// within LOGIN_FAILURE_WINDOW seconds (0: off, as in Django); a locked key opens again
    /// LOGIN_COOLOFF seconds after its last attempt.
    pub login_failure_limit: i64,
    pub login_failure_window: i64,
    pub login_cooloff: i64,
    /// djauth's own: audit events also go to the append-only `djauth_audit_log` table.
    pub audit_log_table: bool,
    /// djauth's own: audit events are also POSTed as JSON here (bounded queue, retries).
    pub audit_webhook_url: Option<String>,
    /// djauth's own: client addresses come from X-Forwarded-For / Forwarded only when the
    /// connection comes from one of these CIDRs (e.g. "127.0.0.1/32,10.0.0.0/8").
    pub trusted_proxies: Vec<String>,
    /// djauth's own: how the session index stores addresses: "full", "truncated" (IPv4 /24,
    /// IPv6 /48) or "hashed" (keyed with SECRET_KEY).
    pub session_index_ip: String,
}

impl Default for Settings {
    /// `django.conf.global_settings`, with `TIME_ZONE` left at Django's own default
    /// (`America/Chicago`; `startproject` writes `UTC`, so most sites set it).
    fn default() -> Self {
        Settings {
            django_version: DjangoVersion::default().to_string(),
            secret_key: String::new(),
            secret_key_fallbacks: vec![],
            password_hashers: DEFAULT_PASSWORD_HASHERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            authentication_backends: vec!["django.contrib.auth.backends.ModelBackend".into()],
            password_reset_timeout: 259_200,
            time_zone: "America/Chicago".into(),
            use_tz: true,
            database_url: None,
            default_auto_field: None,
            auth_user_model: "auth.User".into(),
            auth_user_table: None,
            username_field: "username".into(),
            email_field: "email".into(),
            auth_password_validators: vec![],
            session_engine: "django.contrib.sessions.backends.db".into(),
            session_serializer: "django.contrib.sessions.serializers.JSONSerializer".into(),
            session_cookie_name: "sessionid".into(),
            session_cookie_age: 1_209_600,
            session_cookie_domain: None,
            session_cookie_path: "/".into(),
            session_cookie_secure: false,
            session_cookie_httponly: true,
            session_cookie_samesite: SameSite::Named(SameSiteName::Lax),
            session_save_every_request: false,
            session_expire_at_browser_close: false,
            csrf_cookie_name: "csrftoken".into(),
            csrf_cookie_age: 31_449_600,
            csrf_cookie_domain: None,
            csrf_cookie_path: "/".into(),
            csrf_cookie_secure: false,
            csrf_cookie_httponly: false,
            csrf_cookie_samesite: SameSite::Named(SameSiteName::Lax),
            csrf_header_name: "HTTP_X_CSRFTOKEN".into(),
            csrf_trusted_origins: vec![],
            csrf_use_sessions: false,
            allowed_hosts: vec![],
            debug: false,
            secure_proxy_ssl_header: vec![],
            use_x_forwarded_host: false,
            use_x_forwarded_port: false,
            secure_ssl_redirect: false,
            secure_ssl_host: None,
            secure_redirect_exempt: vec![],
            secure_hsts_seconds: 0,
            secure_hsts_include_subdomains: false,
            secure_hsts_preload: false,
            secure_content_type_nosniff: true,
            secure_referrer_policy: "same-origin".into(),
            secure_cross_origin_opener_policy: "same-origin".into(),
            x_frame_options: "DENY".into(),
            login_url: "/accounts/login/".into(),
            login_redirect_url: "/accounts/profile/".into(),
            login_redirect_authenticated_user: false,
            logout_redirect_url: None,
            template_dirs: vec![],
            email_backend: "django.core.mail.backends.smtp.EmailBackend".into(),
            email_host: "localhost".into(),
            email_port: 25,
            email_host_user: String::new(),
            email_host_password: String::new(),
            email_use_tls: false,
            email_use_ssl: false,
            email_timeout: None,
            default_from_email: "webmaster@localhost".into(),
            session_index_catch_up_interval: 10,
            session_last_seen_interval: 60,
            admin_api_token: None,
            login_failure_limit: 0,
            login_failure_window: 900,
            login_cooloff: 900,
            audit_log_table: false,
            audit_webhook_url: None,
            trusted_proxies: vec![],
            session_index_ip: "full".into(),
        }
    }
}

/// The SMTP timeout djauth uses when `EMAIL_TIMEOUT` is `None` (Django's default, which
/// waits forever).
pub const DEFAULT_EMAIL_TIMEOUT_SECS: f64 = 10.0;

/// `EMAIL_TIMEOUT`: a number of seconds (TOML integer or float, or a string from the
/// environment), or none.
fn optional_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(t)) if matches!(t.trim(), "" | "None" | "none") => Ok(None),
        Some(Raw::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a number of seconds"))),
    }
}

/// Settings whose default is `None`, so the default table cannot tell their type.
const OPTIONAL_STRINGS: &[&str] = &[
    "DATABASE_URL",
    "DEFAULT_AUTO_FIELD",
    "AUTH_USER_TABLE",
    "SESSION_COOKIE_DOMAIN",
    "CSRF_COOKIE_DOMAIN",
    "LOGOUT_REDIRECT_URL",
    "EMAIL_TIMEOUT",
    "ADMIN_API_TOKEN",
    "SECURE_SSL_HOST",
    "AUDIT_WEBHOOK_URL",
];
const SAMESITE: &[&str] = &["SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SAMESITE"];

/// Session engines djauth can read and write (dotted names as in Django's settings).
pub const DB_ENGINES: &[&str] = &[
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.cached_db",
];
pub const SIGNED_COOKIES_ENGINE: &str = "django.contrib.sessions.backends.signed_cookies";

impl Settings {
    /// Defaults ← TOML file ← environment. `config` is `--config`; `DJAUTH_CONFIG` otherwise.
    pub fn load(config: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let from_env = env
            .iter()
            .find(|(k, _)| k == "DJAUTH_CONFIG")
            .map(|(_, v)| Path::new(v).to_path_buf());
        let file = config.map(Path::to_path_buf).or(from_env);
        let text = match &file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| err(format!("cannot read config file {}: {e}", path.display())))?,
            ),
            None => None,
        };
        Self::from_sources(
            text.as_deref(),
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// The pure part of [`Settings::load`], for tests.
    pub fn from_sources<'a>(
        toml_text: Option<&str>,
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        let defaults = toml::Table::try_from(Settings::default()).expect("defaults serialise");
        let mut table = match toml_text {
            Some(text) => text
                .parse::<toml::Table>()
                .map_err(|e| err(format!("config file: {e}")))?,
            None => toml::Table::new(),
        };
        for (key, raw) in env {
            let name = match key {
                "DATABASE_URL" => "DATABASE_URL",
                _ => match key.strip_prefix("DJAUTH_") {
                    Some(name) if name != "CONFIG" => name,
                    _ => continue,
                },
            };
            let value = if let Some(default) = defaults.get(name) {
                env_value(name, raw, default)?
            } else if OPTIONAL_STRINGS.contains(&name) {
                toml::Value::String(raw.to_owned())
            } else {
                // Other programs' DJAUTH_* variables (test harnesses, wrappers) are not ours.
                continue;
            };
            table.insert(name.to_owned(), value);
        }
        let settings = Settings::deserialize(table.clone()).map_err(|e| {
            // serde's message does not say which key; find it by trying each alone.
            let culprit = table.iter().find(|(k, v)| {
                let mut one = defaults.clone();
                one.insert((*k).clone(), (*v).clone());
                Settings::deserialize(one).is_err()
            });
            match culprit {
                Some((k, _)) => err(format!("{k}: {}", e.message().trim())),
                None => err(format!("settings: {}", e.message().trim())),
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every setting whose value could be wrong in a way Django would refuse.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.django_version()?;
        self.default_auto_field()?;
        crate::db::Target::parse(self.database_url()).map_err(|e| err(e.to_string()))?;
        if !self.auth_user_model.contains('.') {
            return Err(err(format!(
                "AUTH_USER_MODEL: {:?} must be of the form 'app_label.ModelName'",
                self.auth_user_model
            )));
        }
        self.time_zone()?;
        if !matches!(self.secure_proxy_ssl_header.len(), 0 | 2) {
            return Err(err(
                "SECURE_PROXY_SSL_HEADER must be a list of two items: the header (as in \
                 request.META, e.g. HTTP_X_FORWARDED_PROTO) and the value meaning https",
            ));
        }
        self.secure_redirect_exempt()?;
        self.lockout_policy()?;
        self.trusted_proxies()?;
        if !matches!(
            self.session_index_ip.as_str(),
            "full" | "truncated" | "hashed"
        ) {
            return Err(err(format!(
                "SESSION_INDEX_IP: {:?} must be \"full\", \"truncated\" or \"hashed\"",
                self.session_index_ip
            )));
        }
        self.hashers()?;
        self.session_engine()?;
        self.password_validators()?;
        if self.session_serializer != "django.contrib.sessions.serializers.JSONSerializer"
            && self.session_serializer != "django.core.signing.JSONSerializer"
        {
            return Err(err(format!(
                "SESSION_SERIALIZER: {:?} is not supported; djauth reads and writes Django's JSONSerializer only",
                self.session_serializer
            )));
        }
        if self.session_cookie_age <= 0 {
            return Err(err(
                "SESSION_COOKIE_AGE must be a positive number of seconds",
            ));
        }
        if self.password_reset_timeout < 0 {
            return Err(err("PASSWORD_RESET_TIMEOUT must not be negative"));
        }
        for origin in &self.csrf_trusted_origins {
            if !origin.contains("://") {
                return Err(err(format!(
                    "CSRF_TRUSTED_ORIGINS: {origin:?} must start with a scheme (usually http:// or https://), as Django 4.0+ requires"
                )));
            }
        }
        for (name, value) in [
            ("SESSION_COOKIE_SAMESITE", self.session_cookie_samesite),
            ("CSRF_COOKIE_SAMESITE", self.csrf_cookie_samesite),
        ] {
            if value == SameSite::Off(true) {
                return Err(err(format!(
                    "{name}: must be 'Lax', 'Strict', 'None' or false"
                )));
            }
        }
        if self.authentication_backends.is_empty() {
            return Err(err(
                "AUTHENTICATION_BACKENDS must name at least one backend",
            ));
        }
        self.validate_email()?;
        Ok(())
    }

    /// The `EMAIL_*` and `DEFAULT_FROM_EMAIL` settings, checked as far as can be without
    /// connecting (Django finds most of these only when it first sends).
    pub fn validate_email(&self) -> Result<(), ConfigError> {
        let backend = self.email_backend()?;
        if self.email_use_tls && self.email_use_ssl {
            // Django's own message (smtp.EmailBackend.__init__).
            return Err(err(
                "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set one of those settings to True.",
            ));
        }
        if !(1..=65535).contains(&self.email_port) {
            return Err(err(format!(
                "EMAIL_PORT: {} is not a TCP port (1-65535)",
                self.email_port
            )));
        }
        if let Some(t) = self.email_timeout {
            if !(t.is_finite() && t > 0.0) {
                return Err(err(format!(
                    "EMAIL_TIMEOUT: {t} must be a positive number of seconds (or unset for djauth's {DEFAULT_EMAIL_TIMEOUT_SECS} s)"
                )));
            }
        }
        if backend == crate::web::mail::Backend::Smtp && self.email_host.trim().is_empty() {
            return Err(err(
                "EMAIL_HOST must not be empty with the SMTP email backend",
            ));
        }
        if self.default_from_email.contains(['\r', '\n']) {
            return Err(err(format!(
                "DEFAULT_FROM_EMAIL: {:?} must not contain newlines",
                self.default_from_email
            )));
        }
        self.default_from_email
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| {
                err(format!(
                    "DEFAULT_FROM_EMAIL: {:?} is not a valid email address: {e}",
                    self.default_from_email
                ))
            })?;
        Ok(())
    }

    /// `EMAIL_BACKEND`, as one of the backends djauth implements.
    pub fn email_backend(&self) -> Result<crate::web::mail::Backend, ConfigError> {
        use crate::web::mail::Backend;
        Backend::from_setting(&self.email_backend).ok_or_else(|| {
            err(format!(
                "EMAIL_BACKEND: {:?} is not supported; use one of {}",
                self.email_backend,
                Backend::ALL
                    .iter()
                    .map(|b| b.setting())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// `EMAIL_TIMEOUT`, or djauth's bound when it is `None`.
    pub fn email_timeout(&self) -> std::time::Duration {
        let secs = self.email_timeout.unwrap_or(DEFAULT_EMAIL_TIMEOUT_SECS);
        std::time::Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or(std::time::Duration::from_secs_f64(
                DEFAULT_EMAIL_TIMEOUT_SECS,
            ))
    }

    /// `DATABASE_URL`, or the embedded SQLite default.
    pub fn database_url(&self) -> &str {
        self.database_url
            .as_deref()
            .unwrap_or(crate::db::DEFAULT_DATABASE_URL)
    }

    /// `DEFAULT_AUTO_FIELD`: AutoField up to Django 5.2, BigAutoField from 6.0.
    pub fn default_auto_field(&self) -> Result<crate::db::django::AutoField, ConfigError> {
        use crate::db::django::AutoField;
        match &self.default_auto_field {
            Some(name) => AutoField::from_setting(name).ok_or_else(|| {
                err(format!(
                    "DEFAULT_AUTO_FIELD: {name:?} is not django.db.models.AutoField or django.db.models.BigAutoField"
                ))
            }),
            None if self.django_version()? >= DjangoVersion::V6_0 => Ok(AutoField::BigAutoField),
            None => Ok(AutoField::AutoField),
        }
    }

    pub fn user_model_settings(&self) -> crate::db::users::UserModelSettings<'_> {
        crate::db::users::UserModelSettings {
            auth_user_model: &self.auth_user_model,
            table: self.auth_user_table.as_deref(),
            username_field: &self.username_field,
            email_field: &self.email_field,
        }
    }

    /// `AUTH_PASSWORD_VALIDATORS`, loaded.
    pub fn password_validators(
        &self,
    ) -> Result<Vec<crate::formats::validators::Validator>, ConfigError> {
        use crate::formats::validators::{from_setting, ValidatorEntry};
        let entries: Vec<ValidatorEntry> = self
            .auth_password_validators
            .iter()
            .map(|v| match v {
                PasswordValidatorSetting::Name(name) => ValidatorEntry {
                    name: name.clone(),
                    options: Default::default(),
                },
                PasswordValidatorSetting::Entry { name, options } => ValidatorEntry {
                    name: name.clone(),
                    options: options.clone(),
                },
            })
            .collect();
        from_setting(&entries).map_err(|e| err(format!("AUTH_PASSWORD_VALIDATORS: {e}")))
    }

    /// Django refuses to run without it; so does every djauth command that signs or verifies.
    pub fn require_secret_key(&self) -> Result<&str, ConfigError> {
        if self.secret_key.is_empty() {
            Err(err("SECRET_KEY: The SECRET_KEY setting must not be empty (set DJAUTH_SECRET_KEY or SECRET_KEY in the config file)."))
        } else {
            Ok(&self.secret_key)
        }
    }

    pub fn django_version(&self) -> Result<DjangoVersion, ConfigError> {
        self.django_version
            .parse()
            .map_err(|e| err(format!("DJANGO_VERSION: {e}")))
    }

    pub fn time_zone(&self) -> Result<chrono_tz::Tz, ConfigError> {
        self.time_zone.parse().map_err(|_| {
            err(format!(
                "TIME_ZONE: {:?} is not a valid IANA time zone name",
                self.time_zone
            ))
        })
    }

    pub fn hashers(&self) -> Result<Hashers, ConfigError> {
        Hashers::from_setting(&self.password_hashers, self.django_version()?).map_err(err)
    }

    /// `SECURE_REDIRECT_EXEMPT`, compiled (Python `re.search` on the path without its `/`).
    pub fn secure_redirect_exempt(&self) -> Result<Vec<regex::Regex>, ConfigError> {
        self.secure_redirect_exempt
            .iter()
            .map(|p| {
                regex::Regex::new(p).map_err(|e| {
                    err(format!(
                        "SECURE_REDIRECT_EXEMPT: {p:?} is not a valid pattern: {e}"
                    ))
                })
            })
            .collect()
    }

    /// `TRUSTED_PROXIES`, parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<crate::formats::http::Cidr>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|c| {
                c.parse()
                    .map_err(|_| err(format!("TRUSTED_PROXIES: {c:?} is not an address or CIDR")))
            })
            .collect()
    }

    pub fn lockout_policy(&self) -> Result<crate::db::lockout::Policy, ConfigError> {
        for (name, v) in [
            ("LOGIN_FAILURE_LIMIT", self.login_failure_limit),
            ("LOGIN_FAILURE_WINDOW", self.login_failure_window),
            ("LOGIN_COOLOFF", self.login_cooloff),
        ] {
            if v < 0 {
                return Err(err(format!("{name}: {v} must not be negative")));
            }
        }
        Ok(crate::db::lockout::Policy {
            limit: self.login_failure_limit,
            window: self.login_failure_window,
            cooloff: self.login_cooloff,
        })
    }

    pub fn session_engine(&self) -> Result<Engine, ConfigError> {
        if DB_ENGINES.contains(&self.session_engine.as_str()) {
            Ok(Engine::Db)
        } else if self.session_engine == SIGNED_COOKIES_ENGINE {
            Ok(Engine::SignedCookies)
        } else {
            Err(err(format!(
                "SESSION_ENGINE: {:?} is not supported; use {} or {}",
                self.session_engine,
                DB_ENGINES.join(", "),
                SIGNED_COOKIES_ENGINE
            )))
        }
    }

    fn fallback_keys(&self) -> Vec<&[u8]> {
        self.secret_key_fallbacks
            .iter()
            .map(|k| k.as_bytes())
            .collect()
    }

    pub fn session_codec(&self) -> Result<SessionCodec, ConfigError> {
        let key = self.require_secret_key()?;
        Ok(SessionCodec::new(
            key.as_bytes(),
            &self.fallback_keys(),
            self.session_cookie_age,
        ))
    }

    pub fn session_auth_hasher(&self) -> Result<SessionAuthHasher, ConfigError> {
        Ok(SessionAuthHasher::new(
            self.require_secret_key()?.as_bytes(),
            &self.fallback_keys(),
        ))
    }

    pub fn token_generator(&self) -> Result<PasswordResetTokenGenerator, ConfigError> {
        Ok(PasswordResetTokenGenerator::new(
            self.require_secret_key()?.as_bytes(),
            &self.fallback_keys(),
            self.password_reset_timeout,
            self.time_zone()?,
        ))
    }
}

/// Parses an environment string by the type of the setting's default.
fn env_value(name: &str, raw: &str, default: &toml::Value) -> Result<toml::Value, ConfigError> {
    let var = format!("DJAUTH_{name}");
    Ok(match default {
        _ if SAMESITE.contains(&name) => match raw.trim() {
            "false" | "False" | "" => toml::Value::Boolean(false),
            "Lax" | "Strict" | "None" => toml::Value::String(raw.trim().to_owned()),
            other => {
                return Err(err(format!(
                    "{var}: {other:?} is not one of Lax, Strict, None, false"
                )))
            }
        },
        toml::Value::Boolean(_) => toml::Value::Boolean(parse_bool(raw).ok_or_else(|| {
            err(format!(
                "{var}: {raw:?} is not a boolean (use true/false, 1/0, yes/no)"
            ))
        })?),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| err(format!("{var}: {raw:?} is not an integer")))?,
        ),
        // A JSON list carries OPTIONS: [{"NAME": "...", "OPTIONS": {"min_length": 12}}].
        toml::Value::Array(_) if raw.trim_start().starts_with('[') => {
            let json: serde_json::Value = serde_json::from_str(raw)
                .map_err(|e| err(format!("{var}: not a valid JSON list: {e}")))?;
            toml::Value::try_from(json).map_err(|e| err(format!("{var}: {e}")))?
        }
        // Keys are used exactly as written, spaces included (Django does not strip them).
        toml::Value::Array(_) if name == "SECRET_KEY_FALLBACKS" => toml::Value::Array(
            raw.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        toml::Value::Array(_) => toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_owned()),
    })
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: Option<&str>, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_sources(toml, env.iter().copied())
    }

    #[test]
    fn defaults_are_djangos() {
        let s = load(None, &[]).unwrap();
        assert_eq!(s.session_cookie_name, "sessionid");
        assert_eq!(s.session_cookie_age, 1_209_600);
        assert_eq!(s.csrf_cookie_age, 31_449_600);
        assert_eq!(s.session_cookie_samesite.attribute(), Some("Lax"));
        assert_eq!(s.django_version().unwrap(), DjangoVersion::V5_2);
        assert_eq!(
            s.hashers().unwrap().preferred().algorithm(),
            "pbkdf2_sha256"
        );
        assert!(s.require_secret_key().is_err());
    }

    #[test]
    fn env_wins_over_file_and_lists_split_on_commas() {
        let toml =
            "SECRET_KEY = \"file\"\nSESSION_COOKIE_AGE = 10\nSECRET_KEY_FALLBACKS = [\"a\"]\n";
        let s = load(
            Some(toml),
            &[
                ("DJAUTH_SECRET_KEY", "env"),
                ("DJAUTH_SECRET_KEY_FALLBACKS", "old1, old2"),
                ("DJAUTH_ALLOWED_HOSTS", " a.example , b.example"),
                ("DJAUTH_SESSION_COOKIE_SECURE", "true"),
                ("DJAUTH_SESSION_COOKIE_SAMESITE", "false"),
                ("DATABASE_URL", "sqlite://x.db"),
                ("DJAUTH_DEFAULT_AUTO_FIELD", "django.db.models.BigAutoField"),
                ("DJAUTH_AUTH_USER_TABLE", "custom_users"),
                ("DJAUTH_BIN", "/not/a/setting"),
            ],
        )
        .unwrap();
        assert_eq!(s.secret_key, "env");
        assert_eq!(s.session_cookie_age, 10);
        assert_eq!(
            s.secret_key_fallbacks,
            ["old1", " old2"],
            "keys keep their spaces"
        );
        assert_eq!(s.allowed_hosts, ["a.example", "b.example"]);
        assert!(s.session_cookie_secure);
        assert_eq!(s.session_cookie_samesite.attribute(), None);
        assert_eq!(s.database_url.as_deref(), Some("sqlite://x.db"));
        assert_eq!(
            s.default_auto_field().unwrap(),
            crate::db::django::AutoField::BigAutoField
        );
        assert_eq!(s.auth_user_table.as_deref(), Some("custom_users"));
    }

    #[test]
    fn wrong_values_name_the_setting() {
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                None,
                &[("DJAUTH_SESSION_COOKIE_AGE", "two weeks")],
                "DJAUTH_SESSION_COOKIE_AGE",
            ),
            (None, &[("DJAUTH_USE_TZ", "maybe")], "DJAUTH_USE_TZ"),
            (None, &[("DJAUTH_DJANGO_VERSION", "3.2")], "DJANGO_VERSION"),
            (None, &[("DJAUTH_TIME_ZONE", "Mars/Olympus")], "TIME_ZONE"),
            (
                None,
                &[("DJAUTH_PASSWORD_HASHERS", "x.Y")],
                "PASSWORD_HASHERS",
            ),
            (
                None,
                &[(
                    "DJAUTH_SESSION_ENGINE",
                    "django.contrib.sessions.backends.cache",
                )],
                "SESSION_ENGINE",
            ),
            (
                None,
                &[("DJAUTH_CSRF_TRUSTED_ORIGINS", "example.com")],
                "CSRF_TRUSTED_ORIGINS",
            ),
            (
                None,
                &[("DJAUTH_CSRF_COOKIE_SAMESITE", "lax")],
                "CSRF_COOKIE_SAMESITE",
            ),
            (
                Some("SESSION_COOKIE_AGE = \"x\""),
                &[],
                "SESSION_COOKIE_AGE",
            ),
            (Some("NOT_A_SETTING = 1"), &[], "NOT_A_SETTING"),
        ];
        for (toml, env, needle) in cases {
            let e = load(*toml, env).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn password_validators_from_file_and_env() {
        let toml = "[[AUTH_PASSWORD_VALIDATORS]]\nNAME = \"django.contrib.auth.password_validation.MinimumLengthValidator\"\nOPTIONS = { min_length = 12 }\n";
        let s = load(Some(toml), &[]).unwrap();
        assert_eq!(s.password_validators().unwrap().len(), 1);
        let s = load(
            None,
            &[(
                "DJAUTH_AUTH_PASSWORD_VALIDATORS",
                "django.contrib.auth.password_validation.NumericPasswordValidator, django.contrib.auth.password_validation.CommonPasswordValidator",
            )],
        )
        .unwrap();
        assert_eq!(s.password_validators().unwrap().len(), 2);
        let json = r#"[{"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 3}}]"#;
        assert!(load(None, &[("DJAUTH_AUTH_PASSWORD_VALIDATORS", json)]).is_ok());
        let e = load(None, &[("DJAUTH_AUTH_PASSWORD_VALIDATORS", "x.Nope")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("AUTH_PASSWORD_VALIDATORS"), "{e}");
        assert!(
            load(None, &[])
                .unwrap()
                .password_validators()
                .unwrap()
                .is_empty(),
            "Django's default is []"
        );
    }

    #[test]
    fn version_changes_work_factors() {
        let s = load(None, &[("DJAUTH_DJANGO_VERSION", "6.1")]).unwrap();
        let h = s.hashers().unwrap();
        assert!(h
            .make_password("x", Some("saltsaltsaltsaltsaltsa"), None)
            .unwrap()
            .starts_with("pbkdf2_sha256$1500000$"));
    }
}
