//! The shared login for other services: `/api/v1/me`, `/api/v1/me/has-perm`, forward-auth at
//! `/auth/verify` (nginx `auth_request`, Traefik `forwardAuth`), and the OpenAPI document,
//! generated from the handlers' annotations.

use super::ctx::{authz_on, blocking, Ctx, Want};
use super::sessions::json_error;
use super::AppState;
use crate::db::perms::Permissions;
use crate::db::users::User;
use crate::formats::http::{url_has_allowed_host_and_scheme, validated_host};
use crate::formats::session as fsession;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::{OpenApi, ToSchema};

/// The current user, as `GET /api/v1/me` returns it.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// The primary key as Django's session stores it (a string).
    pub id: String,
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    /// ISO 8601, UTC; null if the user never logged in.
    pub last_login: Option<String>,
    /// Group names, sorted.
    pub groups: Vec<String>,
    /// `get_all_permissions()` as sorted `app_label.codename` strings.
    pub permissions: Vec<String>,
    /// When this session expires (ISO 8601, UTC).
    pub session_expiry: String,
}

/// `GET /api/v1/me/has-perm`: Django's `user.has_perm` for each `perm`, and `has_perms` for all.
#[derive(Serialize, ToSchema)]
pub struct HasPerm {
    pub perms: BTreeMap<String, bool>,
    pub all: bool,
}

/// Every error under `/api/`.
#[derive(Serialize, ToSchema)]
pub struct ApiError {
    pub error: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "djauth",
        description = "Django's login shared with other services: the current user, permission \
                       checks, sessions, and forward-auth."
    ),
    paths(
        me,
        has_perm,
        verify,
        super::sessions::me_sessions,
        super::sessions::me_end_others,
        super::sessions::admin_sessions,
        super::sessions::admin_revoke_all,
        super::sessions::admin_revoke_one
    ),
    components(schemas(
        Me,
        HasPerm,
        ApiError,
        super::sessions::SessionInfo,
        super::sessions::SessionList,
        super::sessions::Ended
    ))
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`.
pub async fn openapi(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(resp) = super::ctx::request_host(&state, &req) {
        return resp;
    }
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// All values of a repeated query parameter, in order.
fn query_all(req: &HttpRequest, name: &str) -> Vec<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect()
}

fn query_flag(req: &HttpRequest, name: &str) -> bool {
    query_all(req, name)
        .last()
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on"))
}

/// A user's groups and permissions: those [`Ctx::begin_wanting`] loaded with the session, or
/// one more trip to the blocking pool.
async fn load_authz(
    state: &web::Data<AppState>,
    ctx: &mut Ctx,
    user: &User,
    want: Want,
) -> Result<(Option<Permissions>, Vec<String>), HttpResponse> {
    if let Some(a) = ctx.take_authz(user) {
        if a.perms.is_some() || !want.perms {
            return Ok((a.perms, a.groups));
        }
    }
    let st = state.clone();
    let user = user.clone();
    let loaded = web::block(move || -> Result<_, String> {
        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
        let a = authz_on(&st, &mut conn, &user, want)?;
        Ok((a.perms, a.groups))
    })
    .await;
    blocking(loaded)
}

/// The current user with groups, permissions and session expiry.
#[utoipa::path(get, path = "/api/v1/me", tag = "user",
    responses((status = 200, body = Me), (status = 401, body = ApiError)))]
pub async fn me(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let want = Want {
        perms: true,
        groups: true,
    };
    let mut ctx = begin_or_return!(state, req, want);
    let user = match super::sessions::api_user(&state, &mut ctx).await {
        Ok(u) => u,
        Err(resp) => return ctx.finish(&state, resp).await,
    };
    let (perms, groups) = match load_authz(&state, &mut ctx, &user, want).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let now = chrono::Utc::now();
    let expiry = fsession::expiry_of(&ctx.session.data, chrono_tz::UTC);
    let expires = fsession::expiry_date(&expiry, now, state.settings.session_cookie_age);
    let body = Me {
        id: user.pk.clone(),
        username: user.username.clone(),
        email: user.email.clone(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        is_active: user.is_active,
        is_staff: user.is_staff,
        is_superuser: user.is_superuser,
        last_login: user.last_login.map(|t| fsession::isoformat(t.and_utc())),
        groups,
        permissions: perms
            .map(|p| p.all().into_iter().collect())
            .unwrap_or_default(),
        session_expiry: fsession::isoformat(expires),
    };
    let resp = HttpResponse::Ok().json(body);
    ctx.finish(&state, resp).await
}

/// Django's `user.has_perm(perm)` for every `perm` given (`?perm=app.codename&perm=…`).
#[utoipa::path(get, path = "/api/v1/me/has-perm", tag = "user",
    params(("perm" = Vec<String>, Query, description = "app_label.codename; repeat for several")),
    responses((status = 200, body = HasPerm), (status = 400, body = ApiError),
              (status = 401, body = ApiError)))]
pub async fn has_perm(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let want = Want {
        perms: true,
        groups: false,
    };
    let mut ctx = begin_or_return!(state, req, want);
    let user = match super::sessions::api_user(&state, &mut ctx).await {
        Ok(u) => u,
        Err(resp) => return ctx.finish(&state, resp).await,
    };
    let wanted = query_all(&req, "perm");
    if wanted.is_empty() {
        let resp = json_error(
            StatusCode::BAD_REQUEST,
            "give at least one ?perm=app_label.codename",
        );
        return ctx.finish(&state, resp).await;
    }
    let perms = match load_authz(&state, &mut ctx, &user, want).await {
        Ok((Some(p), _)) => p,
        Ok((None, _)) => Permissions::default(),
        Err(resp) => return resp,
    };
    let body = HasPerm {
        all: perms.has_perms(&wanted),
        perms: wanted
            .iter()
            .map(|p| (p.clone(), perms.has_perm(p)))
            .collect(),
    };
    let resp = HttpResponse::Ok().json(body);
    ctx.finish(&state, resp).await
}

/// A header value carrying text that may not be visible ASCII: percent-encoded UTF-8, with
/// `%` and `,` (the list separator) encoded too.
fn header_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' && b != b',' || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where the proxied request was going: `X-Forwarded-Uri` (Traefik) or `X-Original-URI`
/// (nginx, as configured in the README), if it is a safe local target on an allowed host.
fn original_target(state: &AppState, req: &HttpRequest) -> Option<String> {
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let uri = h("x-forwarded-uri").or_else(|| h("x-original-uri"))?;
    let host = h("x-forwarded-host")
        .or_else(|| h("host"))
        .unwrap_or_default();
    let host = validated_host(&host, &state.allowed_hosts)?;
    let https = h("x-forwarded-proto").is_some_and(|p| p.eq_ignore_ascii_case("https"));
    // Django's redirect_to_login keeps only the path when LOGIN_URL is relative.
    url_has_allowed_host_and_scheme(&uri, &[host], https, None).then_some(uri)
}

fn login_redirect(state: &AppState, next: Option<&str>) -> HttpResponse {
    super::views::redirect(&super::views::login_url_with_next(state, next))
}

/// Forward-auth: 200 with identity headers for a valid session; 401 (or, with `redirect=1`,
/// a redirect to LOGIN_URL with the original URL as `next`) otherwise; 403 when a
/// requirement (`perm`, `group`, `staff=1`, `superuser=1`) is not met. Checked against the
/// database on every call: a revoked session is refused on the next one.
#[utoipa::path(get, path = "/auth/verify", tag = "forward-auth",
    params(
        ("perm" = Option<Vec<String>>, Query, description = "required permissions (all)"),
        ("group" = Option<Vec<String>>, Query, description = "required groups (all)"),
        ("staff" = Option<bool>, Query, description = "require is_staff"),
        ("superuser" = Option<bool>, Query, description = "require is_superuser"),
        ("redirect" = Option<bool>, Query, description = "redirect to LOGIN_URL instead of 401"),
    ),
    responses(
        (status = 200, description = "logged in; X-Auth-User-Id, X-Auth-Username, X-Auth-Email, \
            X-Auth-Is-Staff, X-Auth-Is-Superuser, X-Auth-Groups carry the identity"),
        (status = 302, description = "not logged in, redirect=1"),
        (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn verify(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let perms_needed = query_all(&req, "perm");
    let groups_needed = query_all(&req, "group");
    let want = Want {
        perms: !perms_needed.is_empty(),
        groups: true,
    };
    let mut ctx = begin_or_return!(state, req, want);
    let user = match ctx.user(&state).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            let resp = if query_flag(&req, "redirect") {
                login_redirect(&state, original_target(&state, &req).as_deref())
            } else {
                json_error(StatusCode::UNAUTHORIZED, "not logged in")
            };
            return ctx.finish(&state, resp).await;
        }
        Err(resp) => return resp,
    };
    let (perms, groups) = match load_authz(&state, &mut ctx, &user, want).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    // As Django's staff checks (`is_active and is_staff`): an inactive user can only be here
    // through AllowAllUsersModelBackend.
    let refused = (query_flag(&req, "staff") && !(user.is_active && user.is_staff))
        || (query_flag(&req, "superuser") && !(user.is_active && user.is_superuser))
        || perms.is_some_and(|p| !p.has_perms(&perms_needed))
        || groups_needed.iter().any(|g| !groups.contains(g));
    let resp = if refused {
        json_error(StatusCode::FORBIDDEN, "permission denied")
    } else {
        let groups: Vec<String> = groups.iter().map(|g| header_text(g)).collect();
        HttpResponse::Ok()
            .insert_header(("x-auth-user-id", header_text(&user.pk)))
            .insert_header(("x-auth-username", header_text(&user.username)))
            .insert_header(("x-auth-email", header_text(&user.email)))
            .insert_header((
                "x-auth-is-staff",
                if user.is_staff { "true" } else { "false" },
            ))
            .insert_header((
                "x-auth-is-superuser",
                if user.is_superuser { "true" } else { "false" },
            ))
            .insert_header(("x-auth-groups", groups.join(",")))
            .finish()
    };
    ctx.finish(&state, resp).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_is_visible_ascii_and_reversible() {
        assert_eq!(header_text("alice"), "alice");
        assert_eq!(header_text("zoë,x%"), "zo%C3%AB%2Cx%25");
        assert_eq!(header_text("a b"), "a b");
        assert_eq!(header_text("a\r\nb"), "a%0D%0Ab");
    }

    #[test]
    fn the_openapi_document_lists_every_endpoint() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for path in [
            "/api/v1/me",
            "/api/v1/me/has-perm",
            "/auth/verify",
            "/api/v1/me/sessions",
            "/api/v1/admin/users/{pk}/sessions",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert!(doc["components"]["schemas"]["Me"]["properties"]["permissions"].is_object());
    }
}
