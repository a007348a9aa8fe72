//! The web layer: Django's `django.contrib.auth.urls` and the middleware behaviour they
//! depend on (sessions, authentication, CSRF, allowed hosts), on actix-web.
//!
//! Every request goes through [`ctx::Ctx`]: it validates the host, loads the session and
//! the CSRF secret, resolves the user lazily, and at the end writes back what Django's
//! `SessionMiddleware` and `CsrfViewMiddleware` would.

/// `Ctx::begin`, or return the response it refused the request with (400, 503).
macro_rules! begin_or_return {
    ($state:expr, $req:expr) => {
        begin_or_return!($state, $req, $crate::web::ctx::Want::default())
    };
    ($state:expr, $req:expr, $want:expr) => {
        match $crate::web::ctx::Ctx::begin_wanting(&$state, &$req, $want).await {
            Ok(ctx) => ctx,
            Err(resp) => return resp,
        }
    };
}

/// The value of a blocking job, or return its 503.
macro_rules! blocking_or_return {
    ($job:expr) => {
        match $crate::web::ctx::blocking($job.await) {
            Ok(v) => v,
            Err(resp) => return resp,
        }
    };
}

pub mod api;
pub mod ctx;
pub mod extract;
pub mod mail;
pub mod metrics;
pub mod reset;
pub mod sessions;
pub mod templates;
pub mod views;

use crate::config::Settings;
use crate::db::{
    self, perms::PermissionQueries, sessions::SessionTable, users::UserModel, Backend, Pool,
};
use crate::formats::hashers::Hashers;
use crate::formats::session::{Engine, SessionAuthHasher, SessionCodec};
use actix_web::{web, App, HttpServer};
use std::sync::Arc;

/// Everything a request needs, built once at start.
pub struct AppState {
    pub settings: Settings,
    pub pool: Pool,
    pub backend: Backend,
    pub engine: Engine,
    pub codec: SessionCodec,
    pub auth_hasher: SessionAuthHasher,
    pub hashers: Arc<Hashers>,
    pub users: UserModel,
    pub perms: PermissionQueries,
    pub sessions: SessionTable,
    pub index: db::index::SessionIndex,
    pub lockout: db::lockout::Lockout,
    pub trusted_proxies: Vec<crate::formats::http::Cidr>,
    /// Key for SESSION_INDEX_IP = "hashed", derived from SECRET_KEY.
    pub ip_key: Vec<u8>,
    pub audit: crate::audit::Audit,
    pub metrics: metrics::Metrics,
    pub allowed_hosts: Vec<String>,
    pub templates: templates::Templates,
    pub validators: Vec<crate::formats::validators::Validator>,
    /// `SECURE_REDIRECT_EXEMPT`, compiled.
    pub redirect_exempt: Vec<regex::Regex>,
    pub tokens: crate::formats::tokens::PasswordResetTokenGenerator,
    pub mailer: mail::Mailer,
    /// The URL prefix of the auth pages (`/accounts/`).
    pub prefix: String,
}

impl AppState {
    pub fn new(settings: Settings, pool_size: u32) -> anyhow::Result<AppState> {
        let (pool, backend) = db::pool(settings.database_url(), pool_size)?;
        let mut conn = pool.get()?;
        let users = UserModel::load(&mut conn, backend, &settings.user_model_settings())?;
        drop(conn);
        let perms = PermissionQueries::new(&users);
        Ok(AppState {
            engine: settings.session_engine()?,
            codec: settings.session_codec()?,
            auth_hasher: settings.session_auth_hasher()?,
            hashers: Arc::new(settings.hashers()?),
            allowed_hosts: crate::formats::http::effective_allowed_hosts(
                &settings.allowed_hosts,
                settings.debug,
            ),
            templates: templates::Templates::new(&settings.template_dirs)?,
            validators: settings.password_validators()?,
            redirect_exempt: settings.secure_redirect_exempt()?,
            tokens: settings.token_generator()?,
            mailer: mail::Mailer::from_settings(&settings)?,
            prefix: "/accounts/".into(),
            sessions: SessionTable::new(backend),
            index: db::index::SessionIndex::new(backend),
            lockout: db::lockout::Lockout::new(backend, settings.lockout_policy()?),
            trusted_proxies: settings.trusted_proxies()?,
            ip_key: crate::formats::crypto::salted_hmac(
                crate::formats::crypto::Algorithm::Sha256,
                "djauth.session-index-ip",
                b"",
                settings.secret_key.as_bytes(),
            ),
            audit: crate::audit::Audit::start(&settings, Some((pool.clone(), backend))),
            metrics: metrics::Metrics::default(),
            users,
            perms,
            pool,
            backend,
            settings,
        })
    }
}

/// A route for GET and HEAD (Django answers HEAD with the GET view).
fn get_or_head() -> actix_web::Route {
    web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
}

/// An API resource whose other methods get a JSON 405 naming the allowed ones.
fn api_resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || sessions::api_method_not_allowed(allow)))
}

impl AppState {
    /// Counts and audits a revocation that ended `ended` sessions of `user_pk`.
    pub fn note_revocation(
        &self,
        user_pk: &str,
        ended: usize,
        via: &'static str,
        ip: Option<&str>,
    ) {
        self.metrics.sessions_revoked.inc_by(ended as u64);
        let mut event = crate::audit::Event::new(crate::audit::Kind::SessionRevoked)
            .ip(ip)
            .detail(serde_json::json!({"ended": ended, "via": via}));
        event.user_id = Some(user_pk.to_owned());
        self.audit.record(event);
    }
}

/// The routes of `django.contrib.auth.urls` under the state's prefix.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    let p = state.prefix.clone();
    cfg.app_data(state)
        .app_data(web::PayloadConfig::new(views::MAX_BODY))
        .route(&format!("{p}login/"), web::route().to(views::login))
        .route(&format!("{p}logout/"), web::route().to(views::logout))
        .route(
            &format!("{p}sessions/"),
            web::route().to(sessions::sessions_page),
        )
        .service(api_resource("/api/v1/me", "GET, HEAD").route(get_or_head().to(api::me)))
        .service(
            api_resource("/api/v1/me/has-perm", "GET, HEAD").route(get_or_head().to(api::has_perm)),
        )
        .service(
            api_resource("/api/v1/me/sessions", "GET, HEAD")
                .route(get_or_head().to(sessions::me_sessions)),
        )
        .service(
            api_resource("/api/v1/me/sessions/end-others", "POST").post(sessions::me_end_others),
        )
        .service(
            api_resource("/api/v1/admin/users/{pk}/sessions", "GET, HEAD, DELETE")
                .route(get_or_head().to(sessions::admin_sessions))
                .delete(sessions::admin_revoke_all),
        )
        .service(
            api_resource("/api/v1/admin/users/{pk}/sessions/{id}", "DELETE")
                .delete(sessions::admin_revoke_one),
        )
        .service(
            api_resource("/api/v1/openapi.json", "GET, HEAD").route(get_or_head().to(api::openapi)),
        )
        .route("/auth/verify", web::route().to(api::verify))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/healthz", web::get().to(metrics::healthz))
        .route("/readyz", web::get().to(metrics::readyz))
        .route(
            &format!("{p}password_change/"),
            web::route().to(views::password_change),
        )
        .route(
            &format!("{p}password_change/done/"),
            web::get().to(views::password_change_done),
        )
        .route(
            &format!("{p}password_reset/"),
            web::route().to(reset::password_reset),
        )
        .route(
            &format!("{p}password_reset/done/"),
            web::get().to(reset::password_reset_done),
        )
        .route(
            &format!("{p}reset/done/"),
            web::get().to(reset::password_reset_complete),
        )
        .route(
            &format!("{p}reset/{{uidb64}}/{{token}}/"),
            web::route().to(reset::password_reset_confirm),
        )
        .route("/api/{tail:.*}", web::route().to(sessions::api_not_found));
}

/// Catches the session index up every `SESSION_INDEX_CATCH_UP_INTERVAL` seconds, so that
/// revocations (which catch up first anyway) find a short queue. Runs on its own thread:
/// decoding a burst of Django-made sessions must not take an executor thread.
fn spawn_index_catch_up(state: &web::Data<AppState>) {
    let interval = state.settings.session_index_catch_up_interval;
    if interval == 0 {
        return;
    }
    let state = state.clone();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_secs(interval));
        let result = state
            .pool
            .get()
            .map_err(db::DbError::from)
            .and_then(|mut conn| state.index.catch_up(&mut conn, &state.codec));
        if let Err(e) = result {
            tracing::warn!("session index catch-up: {e}");
        }
    });
}

/// `djauth serve`: one worker per core, graceful shutdown on SIGTERM (actix's default).
pub async fn serve(settings: Settings, bind: &str) -> anyhow::Result<()> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let state = web::Data::new(AppState::new(settings, (workers * 4) as u32)?);
    spawn_index_catch_up(&state);
    tracing::info!("serving on http://{bind}/ ({workers} workers)");
    HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(metrics::record))
            .configure(|cfg| configure(cfg, state.clone()))
    })
    .workers(workers)
    .bind(bind)?
    .run()
    .await?;
    Ok(())
}
