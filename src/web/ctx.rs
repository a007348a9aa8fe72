//! One request's Django state: host, session, CSRF secret and user, and what the response
//! must carry back (`SessionMiddleware.process_response`, `CsrfViewMiddleware.process_response`).

use super::AppState;
use crate::auth::{self, Resolution};
use crate::db::{now_utc, perms::Permissions, users::User};
use crate::formats::cookies::{self, CookieSpec};
use crate::formats::csrf::{self, RejectReason};
use crate::formats::session::{self as fsession, Engine, SessionData};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

/// Django's view of a session during one request.
pub struct Session {
    /// The cookie the browser sent, if any.
    cookie: Option<String>,
    /// The db key of the loaded row (`None`: no row yet, or flushed).
    key: Option<String>,
    pub data: SessionData,
    modified: bool,
    /// A new key is due (login, cycle_key): the row is written under a fresh key.
    new_key: bool,
    /// Rows to delete when the response is written (old keys after cycle/flush).
    doomed: Vec<String>,
}

impl Session {
    pub fn insert(&mut self, k: &str, v: serde_json::Value) {
        self.data.insert(k.into(), v);
        self.modified = true;
    }

    pub fn remove(&mut self, k: &str) {
        if self.data.shift_remove(k).is_some() {
            self.modified = true;
        }
    }

    /// `flush()`: empty data, the row deleted, no key (the cookie is then deleted).
    pub fn flush(&mut self) {
        self.doomed.extend(self.key.take());
        self.data.clear();
        self.new_key = false;
        self.modified = true;
    }

    /// `cycle_key()`: same data under a new key; the old row is deleted.
    pub fn cycle_key(&mut self) {
        self.doomed.extend(self.key.take());
        self.new_key = true;
        self.modified = true;
    }

    /// The key of the loaded db row (`None`: no row, or the signed-cookie engine).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    fn is_empty(&self) -> bool {
        self.key.is_none() && !self.new_key && self.data.is_empty()
    }
}

/// The CSRF secret as `CsrfViewMiddleware` tracks it.
pub struct Csrf {
    secret: Option<String>,
    /// The cookie was malformed: unsafe requests are refused with this reason.
    cookie_error: Option<RejectReason>,
    needs_update: bool,
}

/// What the request tells about the device, for the session index.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The index's `user_agent` column is a varchar(512).
const MAX_USER_AGENT_CHARS: usize = 512;

impl Client {
    fn of(state: &AppState, req: &HttpRequest) -> Client {
        let h = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let ip = crate::formats::http::client_ip(
            req.peer_addr().map(|a| a.ip()),
            h("x-forwarded-for"),
            h("forwarded"),
            &state.trusted_proxies,
        );
        Client {
            ip: ip.map(|ip| ip.to_string()),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .map(|v| csrf::wsgi_header_str(v.as_bytes()))
                .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        }
    }
}

/// Keeps the index entry of an authenticated db session current: indexed if it was not
/// (a session Django made), "last seen" refreshed when older than the interval. The index
/// is an aid, not the session: a failed write is logged and the request goes on.
fn note_session_seen(
    st: &AppState,
    conn: &mut crate::db::DbConnection,
    key: &str,
    user_id: &str,
    seen: Option<(chrono::NaiveDateTime, bool)>,
    client: &Client,
) {
    let now = now_utc();
    let knows_device = client.ip.is_some() || client.user_agent.is_some();
    let ip = client
        .ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .map(|ip| crate::formats::http::stored_ip(ip, &st.settings.session_index_ip, &st.ip_key));
    let result = match seen {
        // Not indexed yet, or indexed by a catch-up that could not know the device.
        None | Some((_, false)) if knows_device => st.index.record(
            conn,
            key,
            user_id,
            now,
            ip.as_deref(),
            client.user_agent.as_deref(),
        ),
        None => st.index.record(conn, key, user_id, now, None, None),
        Some((seen, _)) if (now - seen).num_seconds() >= st.settings.session_last_seen_interval => {
            st.index.touch(conn, key, now)
        }
        Some(_) => Ok(()),
    };
    if let Err(e) = result {
        tracing_free_log(&format!("session index: {e}"));
    }
}

pub struct Ctx {
    pub host: String,
    pub client: Client,
    pub is_secure: bool,
    pub session: Session,
    pub csrf: Csrf,
    user: Option<Option<User>>,
    /// `get_user`'s decision, made while the session row was loaded.
    prefetched: Option<Resolution>,
    /// The user's groups and permissions, when asked for in [`Ctx::begin_wanting`].
    authz: Option<Authz>,
}

/// What a handler will need besides the user, loaded in the same blocking-pool trip as the
/// session row and the user (forward-auth answers with one trip instead of two).
#[derive(Debug, Clone, Copy, Default)]
pub struct Want {
    pub perms: bool,
    pub groups: bool,
}

/// A user's permissions (`Want::perms`) and sorted group names (`Want::groups`).
#[derive(Debug, Clone)]
pub struct Authz {
    user_pk: String,
    pub perms: Option<Permissions>,
    pub groups: Vec<String>,
}

/// [`Authz`] for `user` on a connection already checked out.
pub fn authz_on(
    st: &AppState,
    conn: &mut crate::db::DbConnection,
    user: &User,
    want: Want,
) -> Result<Authz, String> {
    let perms = if want.perms {
        Some(
            st.perms
                .load(conn, &st.users, user)
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let groups = if want.groups {
        st.perms
            .groups(conn, &st.users, user)
            .map_err(|e| e.to_string())?
    } else {
        vec![]
    };
    Ok(Authz {
        user_pk: user.pk.clone(),
        perms,
        groups,
    })
}

/// The 400 Django answers for a host not in `ALLOWED_HOSTS`.
pub fn bad_request() -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/html")
        .body("<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Bad Request (400)</title>\n</head>\n<body>\n  <h1>Bad Request (400)</h1><p></p>\n</body>\n</html>\n")
}

/// The value of a `web::block` job, or the 503 Django-side callers would see when the
/// database cannot be used.
// The error is the response itself, returned straight to actix; boxing it buys nothing.
#[allow(clippy::result_large_err)]
pub fn blocking<T>(
    result: Result<Result<T, String>, actix_web::error::BlockingError>,
) -> Result<T, HttpResponse> {
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(service_unavailable(&e)),
        Err(e) => Err(service_unavailable(&e.to_string())),
    }
}

pub fn service_unavailable(reason: &str) -> HttpResponse {
    tracing_free_log(reason);
    HttpResponse::ServiceUnavailable()
        .insert_header((header::RETRY_AFTER, "5"))
        .content_type("text/plain; charset=utf-8")
        .body(
            "Service unavailable: the database cannot be reached or is busy; try again shortly.\n",
        )
}

fn tracing_free_log(reason: &str) {
    tracing::warn!("service unavailable: {reason}");
}

/// The `session_decode_failures` label of a decoding error.
fn decode_cause(e: &fsession::SessionError) -> &'static str {
    use crate::formats::signing::SigningError;
    match e {
        fsession::SessionError::Signing(SigningError::BadSignature(_)) => "bad_signature",
        fsession::SessionError::Signing(SigningError::Expired { .. }) => "expired",
        _ => "malformed",
    }
}

/// `get_user` for a signed-cookie session, which also fails when the user's sessions were
/// revoked at or after the second the cookie was signed (the engine has no row to delete).
async fn resolve_signed(
    state: &web::Data<AppState>,
    data: SessionData,
    signed_at: i64,
) -> Result<Resolution, HttpResponse> {
    let st = state.clone();
    web::block(move || {
        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
        if let Some(user_id) = auth::session_user_id(&data) {
            let not_before = st
                .index
                .not_before(&mut conn, &user_id)
                .map_err(|e| e.to_string())?;
            if not_before.is_some_and(|nb| signed_at <= nb) {
                return Ok(Resolution::Flush);
            }
        }
        resolve_on(&st, &mut conn, &data)
    })
    .await
    .map_err(|e| service_unavailable(&e.to_string()))?
    .map_err(|e| service_unavailable(&e))
}

/// `get_user` for `data` on a connection already checked out.
fn resolve_on(
    st: &AppState,
    conn: &mut crate::db::DbConnection,
    data: &SessionData,
) -> Result<Resolution, String> {
    auth::resolve(
        data,
        &st.settings.authentication_backends,
        &st.auth_hasher,
        |pk| st.users.get_by_pk(conn, pk).map_err(|e| e.to_string()),
    )
}

/// `request.get_host()`: the Host (X-Forwarded-Host only when USE_X_FORWARDED_HOST trusts
/// it), or the 400 Django answers for one not in ALLOWED_HOSTS (JSON under `/api/`).
// The error is the response itself, returned straight to actix.
#[allow(clippy::result_large_err)]
pub fn request_host<'r>(state: &AppState, req: &'r HttpRequest) -> Result<&'r str, HttpResponse> {
    let header_str = |name: &str| req.headers().get(name).and_then(|h| h.to_str().ok());
    let raw_host = state
        .settings
        .use_x_forwarded_host
        .then(|| header_str("x-forwarded-host"))
        .flatten()
        .or_else(|| header_str("host"))
        .unwrap_or("");
    crate::formats::http::validated_host(raw_host, &state.allowed_hosts).ok_or_else(|| {
        if req.path().starts_with("/api/") {
            HttpResponse::BadRequest().json(serde_json::json!({"error": "invalid Host header"}))
        } else {
            bad_request()
        }
    })
}

impl Ctx {
    /// Validates the host and loads the session and CSRF secret. `Err` is the response.
    pub async fn begin(
        state: &web::Data<AppState>,
        req: &HttpRequest,
    ) -> Result<Ctx, HttpResponse> {
        Self::begin_wanting(state, req, Want::default()).await
    }

    /// [`Ctx::begin`], also loading what `want` names for a logged-in user (see
    /// [`Ctx::take_authz`]).
    pub async fn begin_wanting(
        state: &web::Data<AppState>,
        req: &HttpRequest,
        want: Want,
    ) -> Result<Ctx, HttpResponse> {
        let s = &state.settings;
        let host = request_host(state, req)?;
        let is_secure = match s.secure_proxy_ssl_header.as_slice() {
            [meta, value] => {
                let name = meta.strip_prefix("HTTP_").unwrap_or(meta).replace('_', "-");
                // Django 4.1+: the first of comma-separated values counts.
                req.headers().get(name.as_str()).is_some_and(|v| {
                    csrf::wsgi_header_str(v.as_bytes())
                        .split(',')
                        .next()
                        .map(str::trim)
                        == Some(value.as_str())
                })
            }
            _ => false,
        };
        // SecurityMiddleware.process_request.
        if s.secure_ssl_redirect && !is_secure {
            let path = req.uri().path();
            let exempt = state
                .redirect_exempt
                .iter()
                .any(|re| re.is_match(path.trim_start_matches('/')));
            if !exempt {
                let target_host = s.secure_ssl_host.as_deref().unwrap_or(host);
                let mut resp = HttpResponse::MovedPermanently()
                    .insert_header((
                        header::LOCATION,
                        format!("https://{target_host}{}", super::views::full_path(req)),
                    ))
                    .finish();
                security_headers(s, is_secure, resp.headers_mut(), false);
                return Err(resp);
            }
        }
        let cookie_header = req
            .headers()
            .get(header::COOKIE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let cookie = cookies::get(cookie_header, &s.session_cookie_name).map(str::to_owned);
        let mut session = Session {
            cookie: cookie.clone(),
            key: None,
            data: SessionData::new(),
            modified: false,
            new_key: false,
            doomed: vec![],
        };
        let mut prefetched: Option<Resolution> = None;
        let mut authz: Option<Authz> = None;
        let client = Client::of(state, req);
        if let Some(value) = cookie {
            match state.engine {
                Engine::Db if fsession::is_valid_session_key(&value) => {
                    let st = state.clone();
                    let key = value.clone();
                    let client = client.clone();
                    // One trip to the blocking pool for the row and, when the session names
                    // a user, for the user too: the common logged-in request costs one
                    // pool checkout instead of two.
                    let loaded = web::block(move || -> Result<_, String> {
                        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
                        let Some(row) = st
                            .sessions
                            .load_indexed(&mut conn, &key, now_utc())
                            .map_err(|e| e.to_string())?
                        else {
                            return Ok(None);
                        };
                        // Django treats undecodable data as an empty session under the same key.
                        let data = match st.codec.decode_db(&row.session_data) {
                            Ok(d) => d,
                            Err(e) => {
                                st.metrics.decode_failure(decode_cause(&e));
                                Default::default()
                            }
                        };
                        let mut authz = None;
                        let resolution = if auth::session_user_id(&data).is_some() {
                            let r = resolve_on(&st, &mut conn, &data)?;
                            if let Resolution::User(u) = &r {
                                note_session_seen(
                                    &st,
                                    &mut conn,
                                    &key,
                                    &u.pk,
                                    row.last_seen.map(|t| (t, row.device_known)),
                                    &client,
                                );
                            }
                            if let Resolution::User(u) | Resolution::Rehash { user: u, .. } = &r {
                                if want.perms || want.groups {
                                    authz = Some(authz_on(&st, &mut conn, u, want)?);
                                }
                            }
                            Some(r)
                        } else {
                            None
                        };
                        Ok(Some((data, resolution, authz)))
                    })
                    .await
                    .map_err(|e| service_unavailable(&e.to_string()))?
                    .map_err(|e| service_unavailable(&e))?;
                    if let Some((data, resolution, loaded_authz)) = loaded {
                        session.key = Some(value);
                        session.data = data;
                        prefetched = resolution;
                        authz = loaded_authz;
                    }
                }
                Engine::SignedCookies => {
                    let decoded = state
                        .codec
                        .decode_cookie_at(&value, crate::formats::signing::now_unix());
                    if let Err(e) = &decoded {
                        state.metrics.decode_failure(decode_cause(e));
                    }
                    if let Ok(data) = decoded {
                        if auth::session_user_id(&data).is_some() {
                            let signed_at = fsession::cookie_timestamp(&value).unwrap_or(i64::MIN);
                            prefetched =
                                Some(resolve_signed(state, data.clone(), signed_at).await?);
                        }
                        session.data = data;
                        session.key = Some(value);
                    }
                }
                Engine::Db => {}
            }
        }
        let csrf = if s.csrf_use_sessions {
            let secret = session
                .data
                .get(csrf::CSRF_SESSION_KEY)
                .and_then(|v| v.as_str())
                .and_then(csrf::secret_from_session);
            Csrf {
                secret,
                cookie_error: None,
                needs_update: false,
            }
        } else {
            match cookies::get(cookie_header, &s.csrf_cookie_name) {
                None => Csrf {
                    secret: None,
                    cookie_error: None,
                    needs_update: false,
                },
                Some(v) => match csrf::secret_from_cookie(v) {
                    // A 64-character (masked) cookie is re-sent unmasked.
                    Ok(secret) => Csrf {
                        needs_update: secret != v,
                        secret: Some(secret),
                        cookie_error: None,
                    },
                    Err(reason) => Csrf {
                        secret: Some(csrf::generate_secret()),
                        cookie_error: Some(reason),
                        needs_update: true,
                    },
                },
            }
        };
        Ok(Ctx {
            host: host.to_owned(),
            client,
            is_secure,
            session,
            csrf,
            user: None,
            prefetched,
            authz,
        })
    }

    /// `get_token()`: a fresh masked token; the cookie is (re)sent with the response.
    pub fn csrf_token(&mut self) -> String {
        let secret = self
            .csrf
            .secret
            .get_or_insert_with(csrf::generate_secret)
            .clone();
        self.csrf.needs_update = true;
        csrf::mask_cipher_secret(&secret)
    }

    /// `rotate_token()` (on login).
    pub fn rotate_csrf(&mut self) {
        self.csrf.secret = Some(csrf::generate_secret());
        self.csrf.cookie_error = None;
        self.csrf.needs_update = true;
    }

    /// `CsrfViewMiddleware.process_view` for an unsafe method.
    pub fn check_csrf(
        &self,
        state: &AppState,
        req: &HttpRequest,
        post_token: Option<&str>,
    ) -> Result<(), RejectReason> {
        let s = &state.settings;
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .map(|v| csrf::wsgi_header_str(v.as_bytes()));
        let referer = req
            .headers()
            .get(header::REFERER)
            .map(|v| csrf::wsgi_header_str(v.as_bytes()));
        let cookie_domain = if s.csrf_use_sessions {
            s.session_cookie_domain.as_deref()
        } else {
            s.csrf_cookie_domain.as_deref()
        };
        let ctx = csrf::OriginContext {
            is_secure: self.is_secure,
            host: &self.host,
            server_port: s
                .use_x_forwarded_port
                .then(|| req.headers().get("x-forwarded-port"))
                .flatten()
                .and_then(|v| v.to_str().ok()?.trim().parse().ok())
                .or_else(|| req.app_config().local_addr().port().into())
                .unwrap_or(80),
            origin: origin.as_deref(),
            referer: referer.as_deref(),
            trusted_origins: &s.csrf_trusted_origins,
            cookie_domain,
            allowed_hosts: &[],
        };
        csrf::check_origin_and_referer(&ctx)?;
        if let Some(reason) = &self.csrf.cookie_error {
            return Err(reason.clone());
        }
        let header_name =
            csrf::parse_header_name(&s.csrf_header_name).unwrap_or_else(|| "X-Csrftoken".into());
        let header_value = req
            .headers()
            .get(header_name.as_str())
            .map(|v| csrf::wsgi_header_str(v.as_bytes()));
        csrf::check_request_token(
            self.csrf.secret.as_deref(),
            req.method() == actix_web::http::Method::POST,
            post_token,
            header_value.as_deref(),
            &header_name,
        )
    }

    /// `request.user`: resolved once, applying Django's cycle or flush to the session.
    pub async fn user(
        &mut self,
        state: &web::Data<AppState>,
    ) -> Result<Option<User>, HttpResponse> {
        if let Some(u) = &self.user {
            return Ok(u.clone());
        }
        let resolution = match self.prefetched.take() {
            Some(r) => r,
            None => self.resolve_user(state).await?,
        };
        let user = match resolution {
            Resolution::Anonymous => None,
            Resolution::User(u) => Some(u),
            Resolution::Rehash { user, new_hash } => {
                self.session.cycle_key();
                self.session
                    .insert(fsession::AUTH_HASH_KEY, new_hash.into());
                Some(user)
            }
            Resolution::Flush => {
                self.session.flush();
                None
            }
        };
        self.user = Some(user.clone());
        Ok(user)
    }

    async fn resolve_user(&self, state: &web::Data<AppState>) -> Result<Resolution, HttpResponse> {
        // No `_auth_user_id`, nothing to look up: no trip to the blocking pool.
        if auth::session_user_id(&self.session.data).is_none() {
            return Ok(Resolution::Anonymous);
        }
        let st = state.clone();
        let data = self.session.data.clone();
        web::block(move || {
            let mut conn = st.pool.get().map_err(|e| e.to_string())?;
            resolve_on(&st, &mut conn, &data)
        })
        .await
        .map_err(|e| service_unavailable(&e.to_string()))?
        .map_err(|e| service_unavailable(&e))
    }

    /// The groups and permissions [`Ctx::begin_wanting`] loaded, if they are `user`'s.
    pub fn take_authz(&mut self, user: &User) -> Option<Authz> {
        self.authz.take().filter(|a| a.user_pk == user.pk)
    }

    /// `login(request, user)`.
    pub fn login(&mut self, state: &AppState, user: &User) {
        let hash = state.auth_hasher.hash(&user.password);
        let same =
            crate::auth::session_user_id(&self.session.data).as_deref() == Some(user.pk.as_str());
        if crate::auth::session_user_id(&self.session.data).is_some() {
            let stored = self
                .session
                .data
                .get(fsession::AUTH_HASH_KEY)
                .and_then(|v| v.as_str());
            if !same || stored != Some(hash.as_str()) {
                self.session.flush();
            }
        } else {
            self.session.cycle_key();
        }
        let backend = state
            .settings
            .authentication_backends
            .first()
            .cloned()
            .unwrap_or_default();
        let data = std::mem::take(&mut self.session.data);
        self.session.data = crate::auth::login_data(data, user, &backend, &state.auth_hasher);
        self.session.modified = true;
        if self.session.key.is_none() {
            self.session.new_key = true;
        }
        self.rotate_csrf();
        self.user = Some(Some(user.clone()));
    }

    /// `update_session_auth_hash(request, user)`: a new key and the new hash, so this session
    /// survives a password change while every other one fails its hash check.
    pub fn update_session_auth_hash(&mut self, state: &AppState, user: &User) {
        self.session.cycle_key();
        self.session.insert(
            fsession::AUTH_HASH_KEY,
            state.auth_hasher.hash(&user.password).into(),
        );
        self.user = Some(Some(user.clone()));
    }

    /// `logout(request)`.
    pub fn logout(&mut self) {
        self.session.flush();
        self.user = Some(None);
    }

    /// Writes the session back and sets or deletes cookies, as the middleware does.
    pub async fn finish(
        mut self,
        state: &web::Data<AppState>,
        mut resp: HttpResponse,
    ) -> HttpResponse {
        let s = &state.settings;
        let status = resp.status();
        let mut set_cookies: Vec<String> = vec![];
        let mut vary = false;
        let now = chrono::Utc::now();
        let empty = self.session.is_empty();
        // Old rows go first: a cycled or flushed key must never stay valid.
        let doomed = std::mem::take(&mut self.session.doomed);
        let mut save: Option<(Option<String>, String, chrono::NaiveDateTime)> = None;
        if self.session.cookie.is_some() && empty {
            set_cookies.push(cookies::delete_cookie(
                &s.session_cookie_name,
                s.session_cookie_domain.as_deref(),
                &s.session_cookie_path,
                s.session_cookie_samesite.attribute(),
            ));
            vary = true;
        } else if (self.session.modified || s.session_save_every_request)
            && !empty
            && !status.is_server_error()
        {
            if s.csrf_use_sessions {
                if let Some(secret) = &self.csrf.secret {
                    if self.csrf.needs_update {
                        self.session
                            .data
                            .insert(csrf::CSRF_SESSION_KEY.into(), secret.clone().into());
                    }
                }
            }
            let expiry = fsession::expiry_of(&self.session.data, chrono_tz::UTC);
            let age = fsession::expiry_age(&expiry, now, s.session_cookie_age);
            let browser_close = fsession::expire_at_browser_close(
                &self.session.data,
                s.session_expire_at_browser_close,
            );
            let expire_date = fsession::expiry_date(&expiry, now, s.session_cookie_age).naive_utc();
            let value = match state.engine {
                Engine::Db => {
                    save = Some((
                        self.session.key.clone(),
                        state
                            .codec
                            .encode_db_at(&self.session.data, crate::formats::signing::now_unix()),
                        expire_date,
                    ));
                    None
                }
                Engine::SignedCookies => Some(
                    state
                        .codec
                        .encode_cookie_at(&self.session.data, crate::formats::signing::now_unix()),
                ),
            };
            let st = state.clone();
            let owner = crate::auth::session_user_id(&self.session.data);
            let client = self.client.clone();
            let result = web::block(move || -> Result<Option<String>, String> {
                let mut conn = st.pool.get().map_err(|e| e.to_string())?;
                for k in &doomed {
                    st.sessions
                        .delete(&mut conn, k)
                        .map_err(|e| e.to_string())?;
                }
                match save {
                    Some((Some(key), blob, expire)) => {
                        match st.sessions.save(&mut conn, &key, &blob, expire) {
                            Ok(()) => Ok(Some(key)),
                            Err(crate::db::sessions::SaveError::Interrupted) => {
                                Err("interrupted".into())
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Some((None, blob, expire)) => {
                        let key = st
                            .sessions
                            .create(&mut conn, &blob, expire)
                            .map_err(|e| e.to_string())?;
                        if let Some(user_id) = &owner {
                            note_session_seen(&st, &mut conn, &key, user_id, None, &client);
                        }
                        Ok(Some(key))
                    }
                    None => Ok(None),
                }
            })
            .await;
            let key = match result {
                Ok(Ok(k)) => k.or(value),
                Ok(Err(e)) if e == "interrupted" => {
                    return HttpResponse::BadRequest()
                        .content_type("text/html")
                        .body("<h1>Bad Request (400)</h1>");
                }
                Ok(Err(e)) => return service_unavailable(&e),
                Err(e) => return service_unavailable(&e.to_string()),
            };
            if let Some(key) = key {
                set_cookies.push(cookies::set_cookie(
                    &CookieSpec {
                        name: &s.session_cookie_name,
                        value: &key,
                        max_age: (!browser_close).then_some(age),
                        domain: s.session_cookie_domain.as_deref(),
                        path: &s.session_cookie_path,
                        secure: s.session_cookie_secure,
                        httponly: s.session_cookie_httponly,
                        samesite: s.session_cookie_samesite.attribute(),
                    },
                    now,
                ));
                vary = true;
            }
            return self.finish_csrf(state, resp, set_cookies, vary, now);
        }
        if !doomed.is_empty() {
            let st = state.clone();
            let r = web::block(move || -> Result<(), String> {
                let mut conn = st.pool.get().map_err(|e| e.to_string())?;
                for k in &doomed {
                    st.sessions
                        .delete(&mut conn, k)
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
            .await;
            if !matches!(r, Ok(Ok(()))) {
                return service_unavailable("could not delete a session row");
            }
        }
        resp = self.finish_csrf(state, resp, set_cookies, vary, now);
        resp
    }

    fn finish_csrf(
        &self,
        state: &AppState,
        mut resp: HttpResponse,
        mut set_cookies: Vec<String>,
        mut vary: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> HttpResponse {
        let s = &state.settings;
        if self.csrf.needs_update && !s.csrf_use_sessions {
            if let Some(secret) = &self.csrf.secret {
                set_cookies.push(cookies::set_cookie(
                    &CookieSpec {
                        name: &s.csrf_cookie_name,
                        value: secret,
                        max_age: Some(s.csrf_cookie_age),
                        domain: s.csrf_cookie_domain.as_deref(),
                        path: &s.csrf_cookie_path,
                        secure: s.csrf_cookie_secure,
                        httponly: s.csrf_cookie_httponly,
                        samesite: s.csrf_cookie_samesite.attribute(),
                    },
                    now,
                ));
                vary = true;
            }
        }
        let headers = resp.headers_mut();
        for c in set_cookies {
            if let Ok(v) = HeaderValue::from_str(&c) {
                headers.append(header::SET_COOKIE, v);
            }
        }
        if vary {
            headers.append(header::VARY, HeaderValue::from_static("Cookie"));
        }
        security_headers(s, self.is_secure, headers, true);
        resp
    }
}

/// What Django's default MIDDLEWARE adds unless the view set them: SecurityMiddleware's
/// headers and, when the request got as far as XFrameOptionsMiddleware, X-Frame-Options.
fn security_headers(
    s: &crate::config::Settings,
    is_secure: bool,
    headers: &mut actix_web::http::header::HeaderMap,
    x_frame_options: bool,
) {
    {
        let hsts = (is_secure && s.secure_hsts_seconds > 0).then(|| {
            let mut v = format!("max-age={}", s.secure_hsts_seconds);
            if s.secure_hsts_include_subdomains {
                v.push_str("; includeSubDomains");
            }
            if s.secure_hsts_preload {
                v.push_str("; preload");
            }
            v
        });
        let set = |v: &str| (!v.is_empty() && v != "None").then(|| v.to_owned());
        for (name, value) in [
            ("strict-transport-security", hsts),
            (
                "x-content-type-options",
                s.secure_content_type_nosniff.then(|| "nosniff".to_owned()),
            ),
            ("referrer-policy", set(&s.secure_referrer_policy)),
            (
                "cross-origin-opener-policy",
                set(&s.secure_cross_origin_opener_policy),
            ),
            (
                "x-frame-options",
                set(&s.x_frame_options.to_uppercase()).filter(|_| x_frame_options),
            ),
        ] {
            let name = header::HeaderName::from_static(name);
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                if !headers.contains_key(&name) {
                    headers.insert(name, value);
                }
            }
        }
    }
}
