//! The shared login inside another actix-web app: extractors that read Django's session
//! cookie against the shared database, in-process, and guards equivalent to Django's
//! `login_required`, `permission_required` and `user_passes_test`.
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer};
//! use djauth::web::extract::{AuthUser, Guard, Perm, RequirePerm};
//! use djauth::{config::Settings, web::AppState};
//!
//! struct CanChangeUser;
//! impl Perm for CanChangeUser {
//!     const NAME: &'static str = "auth.change_user";
//! }
//!
//! async fn hello(user: AuthUser) -> String {
//!     format!("hello {}", user.username)
//! }
//!
//! async fn admin(user: RequirePerm<CanChangeUser>) -> String {
//!     format!("{} may change users", user.username)
//! }
//!
//! # async fn run() -> anyhow::Result<()> {
//! let state = web::Data::new(AppState::new(Settings::load(None)?, 4)?);
//! HttpServer::new(move || {
//!     App::new()
//!         .app_data(state.clone())
//!         .app_data(Guard::api()) // 401/403 instead of redirects to LOGIN_URL
//!         .route("/hello", web::get().to(hello))
//!         .route("/admin", web::get().to(admin))
//! })
//! .bind("127.0.0.1:8080")?
//! .run()
//! .await?;
//! # Ok(())
//! # }
//! ```
//!
//! The extractors never write the session: a session Django would flush (wrong hash) or
//! re-key (signed with a fallback key) is treated as anonymous or as the user respectively,
//! and Django or `djauth serve` applies the write on the user's next page view there.

use super::ctx::{blocking, Ctx};
use super::AppState;
use crate::db::perms::Permissions;
use crate::db::users::User;
use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;

/// How the guards refuse, as configured with `app_data` (default: [`Guard::django`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// Send refused browsers to `LOGIN_URL?next=…` (Django); otherwise answer 401/403 JSON.
    pub redirect_to_login: bool,
    /// `permission_required(…, raise_exception=True)`: a failed permission is a 403 even
    /// for anonymous users.
    pub raise_exception: bool,
}

impl Guard {
    /// Django's decorators with their defaults: every refusal (anonymous user, missing
    /// permission, failed test) redirects to `LOGIN_URL`.
    pub fn django() -> web::Data<Guard> {
        web::Data::new(Guard {
            redirect_to_login: true,
            raise_exception: false,
        })
    }

    /// Django's decorators with `raise_exception=True` for permissions: 403 instead of the
    /// login page when a permission is missing.
    pub fn django_raise_exception() -> web::Data<Guard> {
        web::Data::new(Guard {
            redirect_to_login: true,
            raise_exception: true,
        })
    }

    /// For APIs: 401 for anonymous users, 403 for failed permissions and tests.
    pub fn api() -> web::Data<Guard> {
        web::Data::new(Guard {
            redirect_to_login: false,
            raise_exception: true,
        })
    }

    fn of(req: &HttpRequest) -> Guard {
        req.app_data::<web::Data<Guard>>().map_or(
            Guard {
                redirect_to_login: true,
                raise_exception: false,
            },
            |g| **g.clone(),
        )
    }
}

/// Why an extractor refused the request.
#[derive(Debug)]
pub enum AuthError {
    /// Not logged in: a redirect to `location` (LOGIN_URL?next=…) or a 401.
    LoginRequired {
        location: Option<String>,
    },
    /// Logged in, but the permission or test failed.
    Forbidden,
    /// The Host is not in ALLOWED_HOSTS (Django's DisallowedHost: 400).
    BadHost,
    /// The database cannot be used (503), or the app lacks `web::Data<AppState>` (500).
    Unavailable(String),
    Misconfigured(&'static str),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::LoginRequired { .. } => f.write_str("not logged in"),
            AuthError::Forbidden => f.write_str("permission denied"),
            AuthError::BadHost => f.write_str("invalid Host header"),
            AuthError::Unavailable(_) => f.write_str("the database cannot be reached"),
            AuthError::Misconfigured(what) => f.write_str(what),
        }
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthError::LoginRequired { location: Some(_) } => StatusCode::FOUND,
            AuthError::LoginRequired { location: None } => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden => StatusCode::FORBIDDEN,
            AuthError::BadHost => StatusCode::BAD_REQUEST,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            AuthError::LoginRequired {
                location: Some(location),
            } => HttpResponse::Found()
                .insert_header((header::LOCATION, location.clone()))
                .finish(),
            AuthError::Unavailable(reason) => {
                tracing::warn!("{reason}");
                HttpResponse::ServiceUnavailable()
                    .insert_header((header::RETRY_AFTER, "5"))
                    .json(serde_json::json!({"error": self.to_string()}))
            }
            _ => HttpResponse::build(self.status_code())
                .json(serde_json::json!({"error": self.to_string()})),
        }
    }
}

/// A failed `permission_required` / `user_passes_test`, as the guard configuration says.
fn refuse(req: &HttpRequest, state: &AppState, logged_in: bool, is_perm: bool) -> AuthError {
    let guard = Guard::of(req);
    if !guard.redirect_to_login {
        return if logged_in {
            AuthError::Forbidden
        } else {
            AuthError::LoginRequired { location: None }
        };
    }
    if is_perm && guard.raise_exception {
        return AuthError::Forbidden;
    }
    login_required(req, state)
}

/// `redirect_to_login(request.get_full_path())`, or a 401 for APIs.
fn login_required(req: &HttpRequest, state: &AppState) -> AuthError {
    if !Guard::of(req).redirect_to_login {
        return AuthError::LoginRequired { location: None };
    }
    AuthError::LoginRequired {
        location: Some(super::views::login_url_with_next(
            state,
            Some(&super::views::full_path(req)),
        )),
    }
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, AuthError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or(AuthError::Misconfigured(
            "djauth extractors need app_data(web::Data<AppState>)",
        ))
}

/// The request's user, if its session cookie names a valid one.
async fn current_user(req: &HttpRequest) -> Result<Option<User>, AuthError> {
    let state = state_of(req)?;
    let mut ctx = Ctx::begin(&state, req).await.map_err(|r| {
        if r.status() == StatusCode::BAD_REQUEST {
            AuthError::BadHost
        } else {
            AuthError::Unavailable(format!("session lookup failed: {}", r.status()))
        }
    })?;
    ctx.user(&state)
        .await
        .map_err(|r| AuthError::Unavailable(format!("user lookup failed: {}", r.status())))
}

type Boxed<T> = Pin<Box<dyn Future<Output = Result<T, AuthError>>>>;

/// The logged-in user (`login_required`): anonymous requests are refused.
#[derive(Debug, Clone)]
pub struct AuthUser(pub User);

impl Deref for AuthUser {
    type Target = User;
    fn deref(&self) -> &User {
        &self.0
    }
}

impl FromRequest for AuthUser {
    type Error = AuthError;
    type Future = Boxed<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match current_user(&req).await? {
                Some(user) => Ok(AuthUser(user)),
                None => Err(login_required(&req, &*state_of(&req)?)),
            }
        })
    }
}

/// The user if logged in, `None` otherwise (`request.user` without a requirement).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<User>);

impl FromRequest for MaybeUser {
    type Error = AuthError;
    type Future = Boxed<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Ok(MaybeUser(current_user(&req).await?)) })
    }
}

/// A permission named at compile time, for [`RequirePerm`].
pub trait Perm {
    /// `app_label.codename`.
    const NAME: &'static str;
}

/// `permission_required(P::NAME)`: refused requests go to the login page, or get 403 with
/// `raise_exception` (see [`Guard`]).
#[derive(Debug, Clone)]
pub struct RequirePerm<P: Perm> {
    pub user: User,
    pub perms: Permissions,
    _perm: PhantomData<P>,
}

impl<P: Perm> Deref for RequirePerm<P> {
    type Target = User;
    fn deref(&self) -> &User {
        &self.user
    }
}

impl<P: Perm + 'static> FromRequest for RequirePerm<P> {
    type Error = AuthError;
    type Future = Boxed<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req)?;
            let Some(user) = current_user(&req).await? else {
                return Err(refuse(&req, &state, false, true));
            };
            let st = state.clone();
            let u = user.clone();
            let loaded = web::block(move || -> Result<Permissions, String> {
                let mut conn = st.pool.get().map_err(|e| e.to_string())?;
                st.perms
                    .load(&mut conn, &st.users, &u)
                    .map_err(|e| e.to_string())
            })
            .await;
            let perms = blocking(loaded)
                .map_err(|_| AuthError::Unavailable("permissions could not be loaded".into()))?;
            if !perms.has_perm(P::NAME) {
                return Err(refuse(&req, &state, true, true));
            }
            Ok(RequirePerm {
                user,
                perms,
                _perm: PhantomData,
            })
        })
    }
}

/// A test on the user, for [`Passes`] (`user_passes_test`).
pub trait UserTest {
    fn test(user: &User) -> bool;
}

/// `user_passes_test(T::test)`: anonymous users and users failing the test go to the login
/// page (APIs: 401/403), as Django's decorator does.
#[derive(Debug, Clone)]
pub struct Passes<T: UserTest> {
    pub user: User,
    _test: PhantomData<T>,
}

impl<T: UserTest> Deref for Passes<T> {
    type Target = User;
    fn deref(&self) -> &User {
        &self.user
    }
}

impl<T: UserTest + 'static> FromRequest for Passes<T> {
    type Error = AuthError;
    type Future = Boxed<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req)?;
            let Some(user) = current_user(&req).await? else {
                return Err(refuse(&req, &state, false, false));
            };
            if !T::test(&user) {
                return Err(refuse(&req, &state, true, false));
            }
            Ok(Passes {
                user,
                _test: PhantomData,
            })
        })
    }
}

/// `staff_member_required`'s test.
pub struct IsStaff;

impl UserTest for IsStaff {
    fn test(user: &User) -> bool {
        user.is_active && user.is_staff
    }
}
