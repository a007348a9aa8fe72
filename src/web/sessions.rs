//! A user's own sessions (`/accounts/sessions/`, `/api/v1/me/sessions`) and the admin session
//! API (`/api/v1/admin/users/{pk}/sessions`): listing and ending sessions through the index.

use super::ctx::{blocking, Ctx};
use super::views::{csrf_failure, form_param, parse_form, redirect, redirect_to_login, render};
use super::AppState;
use crate::db::users::User;
use crate::formats::session::{device_name, public_session_id, Engine};
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::{context, Value};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// One session of a user, as listings show it. The key itself never leaves the server.
#[derive(Serialize, ToSchema, Clone)]
pub struct SessionInfo {
    /// A digest of the session key: names the session for ending it.
    pub id: String,
    /// Browser and OS from the user agent ("Firefox on Linux").
    pub device: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// When the index first saw the session (ISO 8601).
    pub created: String,
    pub last_seen: String,
    /// The session making this request.
    pub current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}

/// How many sessions a revocation ended.
#[derive(Serialize, ToSchema)]
pub struct Ended {
    pub ended: usize,
}

/// A session as listings show it; `key` never leaves the server.
struct Listed {
    key: String,
    info: SessionInfo,
}

/// The user's unexpired sessions, the current one first. On the signed-cookie engine only
/// the current session can be known.
async fn list_sessions(
    state: &web::Data<AppState>,
    user_pk: &str,
    current: Option<&str>,
) -> Result<Vec<Listed>, HttpResponse> {
    if state.engine != Engine::Db {
        return Ok(vec![]);
    }
    let st = state.clone();
    let pk = user_pk.to_owned();
    let found = web::block(move || -> Result<_, String> {
        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
        st.index
            .catch_up(&mut conn, &st.codec)
            .map_err(|e| e.to_string())?;
        st.index
            .sessions_of(&mut conn, &pk, crate::db::now_utc())
            .map_err(|e| e.to_string())
    })
    .await;
    let mut listed: Vec<Listed> = blocking(found)?
        .into_iter()
        .map(|s| {
            let is_current = Some(s.session_key.as_str()) == current;
            Listed {
                info: SessionInfo {
                    id: public_session_id(&s.session_key),
                    device: device_name(s.user_agent.as_deref()),
                    created: s.created.and_utc().to_rfc3339(),
                    last_seen: s.last_seen.and_utc().to_rfc3339(),
                    current: is_current,
                    ip: s.ip,
                    user_agent: s.user_agent,
                },
                key: s.session_key,
            }
        })
        .collect();
    listed.sort_by_key(|l| !l.info.current);
    Ok(listed)
}

/// Ends all of the user's sessions but the current one, which survives the way Django's
/// `update_session_auth_hash` keeps it: under a new key. Returns how many ended.
async fn end_other_sessions(
    state: &web::Data<AppState>,
    ctx: &mut Ctx,
    user: &User,
) -> Result<usize, HttpResponse> {
    let st = state.clone();
    let pk = user.pk.clone();
    let keep = ctx.session.key().map(str::to_owned);
    let signed_cookies = state.engine == Engine::SignedCookies;
    let now = crate::formats::signing::now_unix();
    let ended = web::block(move || -> Result<usize, String> {
        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
        let keep = if signed_cookies { None } else { keep };
        st.index
            .revoke(
                &mut conn,
                &st.codec,
                &pk,
                keep.as_deref(),
                signed_cookies.then_some(now.floor() as i64),
            )
            .map_err(|e| e.to_string())
    })
    .await;
    let ended = blocking(ended)?;
    state.note_revocation(&user.pk, ended, "end_others", ctx.client.ip.as_deref());
    if signed_cookies {
        // Cookies signed in the revocation's second are refused; the re-signed current one
        // must carry a later timestamp.
        let wait = 1.0 - now.fract() + 0.01;
        actix_web::rt::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
    }
    ctx.update_session_auth_hash(state, user);
    Ok(ended)
}

/// `/accounts/sessions/`: the current user's devices; POST `end=<id>` ends one, `end=others`
/// all but this one.
pub async fn sessions_page(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut ctx = begin_or_return!(state, req);
    let user = match ctx.user(&state).await {
        Ok(Some(u)) => u,
        Ok(None) => return ctx.finish(&state, redirect_to_login(&state, &req)).await,
        Err(resp) => return resp,
    };
    let page_url = format!("{}sessions/", state.prefix);
    match *req.method() {
        Method::GET | Method::HEAD => {}
        Method::POST => {
            let form = parse_form(&body);
            if let Err(reason) =
                ctx.check_csrf(&state, &req, form_param(&form, "csrfmiddlewaretoken"))
            {
                return csrf_failure(&reason.to_string());
            }
            match form_param(&form, "end") {
                Some("others") => {
                    if let Err(resp) = end_other_sessions(&state, &mut ctx, &user).await {
                        return resp;
                    }
                }
                Some(id) => {
                    if let Err(resp) = end_one(&state, &mut ctx, &user, id).await {
                        return resp;
                    }
                }
                None => {}
            }
            return ctx.finish(&state, redirect(&page_url)).await;
        }
        _ => {
            let resp = HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, "GET, HEAD, POST"))
                .finish();
            return ctx.finish(&state, resp).await;
        }
    }
    let current = ctx.session.key().map(str::to_owned);
    let mut listed = match list_sessions(&state, &user.pk, current.as_deref()).await {
        Ok(l) => l
            .into_iter()
            .map(|l| serde_json::to_value(l.info).unwrap_or_default())
            .collect::<Vec<_>>(),
        Err(resp) => return resp,
    };
    if listed.is_empty() {
        // The signed-cookie engine, or a session the index has not caught up with yet.
        listed.push(json!({"id": "", "device": "This device", "current": true,
                           "ip": ctx.client.ip, "last_seen": "now"}));
    }
    let token = ctx.csrf_token();
    let page = render(
        &state,
        "registration/sessions.html",
        context! {
            title => "Your sessions",
            site_name => ctx.host.clone(),
            user => Value::from_serialize(user.as_json()),
            sessions => Value::from_serialize(&listed),
            csrf_token => token.clone(),
            csrf_input => super::views::csrf_input(&token),
        },
    );
    ctx.finish(&state, page).await
}

/// Ends one of the user's sessions by its public id; the current one is a logout.
async fn end_one(
    state: &web::Data<AppState>,
    ctx: &mut Ctx,
    user: &User,
    id: &str,
) -> Result<bool, HttpResponse> {
    let current = ctx.session.key().map(str::to_owned);
    if current.as_deref().map(public_session_id).as_deref() == Some(id) {
        ctx.logout();
        return Ok(true);
    }
    let listed = list_sessions(state, &user.pk, None).await?;
    let Some(target) = listed.into_iter().find(|l| l.info.id == id) else {
        return Ok(false);
    };
    revoke_listed(state, ctx, user, target, "end_one").await
}

/// Ends one listed session of `user`, counted and audited as done `via`.
async fn revoke_listed(
    state: &web::Data<AppState>,
    ctx: &Ctx,
    user: &User,
    target: Listed,
    via: &'static str,
) -> Result<bool, HttpResponse> {
    let st = state.clone();
    let pk = user.pk.clone();
    let ended = web::block(move || -> Result<bool, String> {
        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
        st.index
            .revoke_one(&mut conn, &pk, &target.key)
            .map_err(|e| e.to_string())
    })
    .await;
    let ended = blocking(ended)?;
    state.note_revocation(&user.pk, usize::from(ended), via, ctx.client.ip.as_deref());
    Ok(ended)
}

/// Any other `/api/` path.
pub async fn api_not_found(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Err(resp) = super::ctx::request_host(&state, &req) {
        return resp;
    }
    json_error(StatusCode::NOT_FOUND, "not found")
}

/// A JSON error, as every `/api/` answer is JSON.
pub fn json_error(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": message}))
}

/// The request's user, or the JSON 401.
pub(crate) async fn api_user(
    state: &web::Data<AppState>,
    ctx: &mut Ctx,
) -> Result<User, HttpResponse> {
    match ctx.user(state).await? {
        Some(u) => Ok(u),
        None => Err(json_error(StatusCode::UNAUTHORIZED, "not logged in")),
    }
}

/// The current user's sessions, this one first.
#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "sessions",
    responses((status = 200, body = SessionList), (status = 401, body = super::api::ApiError)))]
pub async fn me_sessions(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut ctx = begin_or_return!(state, req);
    let user = match api_user(&state, &mut ctx).await {
        Ok(u) => u,
        Err(resp) => return ctx.finish(&state, resp).await,
    };
    let current = ctx.session.key().map(str::to_owned);
    let mut sessions: Vec<SessionInfo> =
        match list_sessions(&state, &user.pk, current.as_deref()).await {
            Ok(l) => l.into_iter().map(|l| l.info).collect(),
            Err(resp) => return resp,
        };
    if state.engine == Engine::SignedCookies {
        // The cookie is the session: only this one can be known.
        let now = chrono::Utc::now().to_rfc3339();
        sessions.push(SessionInfo {
            id: current
                .as_deref()
                .map(public_session_id)
                .unwrap_or_default(),
            device: device_name(ctx.client.user_agent.as_deref()),
            ip: ctx.client.ip.clone(),
            user_agent: ctx.client.user_agent.clone(),
            created: now.clone(),
            last_seen: now,
            current: true,
        });
    }
    let resp = HttpResponse::Ok().json(SessionList { sessions });
    ctx.finish(&state, resp).await
}

/// Ends the current user's other sessions; this one continues under a new key (a new
/// session cookie is set), as Django's `update_session_auth_hash` does. Needs the CSRF token
/// in `X-CSRFToken`.
#[utoipa::path(post, path = "/api/v1/me/sessions/end-others", tag = "sessions",
    responses((status = 200, body = Ended), (status = 401, body = super::api::ApiError),
              (status = 403, body = super::api::ApiError)))]
pub async fn me_end_others(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut ctx = begin_or_return!(state, req);
    let user = match api_user(&state, &mut ctx).await {
        Ok(u) => u,
        Err(resp) => return ctx.finish(&state, resp).await,
    };
    if let Err(reason) = ctx.check_csrf(&state, &req, None) {
        return json_error(StatusCode::FORBIDDEN, &format!("CSRF: {reason}"));
    }
    let resp = match end_other_sessions(&state, &mut ctx, &user).await {
        Ok(n) => HttpResponse::Ok().json(Ended { ended: n }),
        Err(resp) => return resp,
    };
    ctx.finish(&state, resp).await
}

/// Who may use the admin API: the configured bearer token, or an active staff user with
/// `auth.change_user` (unsafe methods then need the CSRF token, as any session-authenticated
/// form would).
async fn admin_allowed(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    ctx: &mut Ctx,
) -> Result<(), HttpResponse> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(given) = bearer {
        return match &state.settings.admin_api_token {
            Some(token)
                if !token.is_empty()
                    && crate::formats::crypto::constant_time_compare(
                        given.trim().as_bytes(),
                        token.as_bytes(),
                    ) =>
            {
                Ok(())
            }
            _ => Err(json_error(StatusCode::UNAUTHORIZED, "invalid API token")),
        };
    }
    let user = match ctx.user(state).await? {
        Some(u) => u,
        None => return Err(json_error(StatusCode::UNAUTHORIZED, "not logged in")),
    };
    let st = state.clone();
    let checked = user.clone();
    let perms = web::block(move || -> Result<_, String> {
        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
        st.perms
            .load(&mut conn, &st.users, &checked)
            .map_err(|e| e.to_string())
    })
    .await;
    let perms = blocking(perms)?;
    if !(user.is_staff && perms.has_perm("auth.change_user")) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "staff with auth.change_user only",
        ));
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        if let Err(reason) = ctx.check_csrf(state, req, None) {
            return Err(json_error(
                StatusCode::FORBIDDEN,
                &format!("CSRF: {reason}"),
            ));
        }
    }
    Ok(())
}

/// The admin API's preamble: who is asking, and which user they name. `Err` is the answer.
async fn admin_target(
    state: &web::Data<AppState>,
    req: &HttpRequest,
) -> Result<(Ctx, User), HttpResponse> {
    let mut ctx = Ctx::begin(state, req).await?;
    if let Err(resp) = admin_allowed(state, req, &mut ctx).await {
        return Err(ctx.finish(state, resp).await);
    }
    let pk = req.match_info().get("pk").unwrap_or_default().to_owned();
    let st = state.clone();
    let found = web::block(move || -> Result<Option<User>, String> {
        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
        st.users
            .get_by_pk(&mut conn, &pk)
            .map_err(|e| e.to_string())
    })
    .await;
    match blocking(found)? {
        Some(u) => Ok((ctx, u)),
        None => Err(ctx
            .finish(state, json_error(StatusCode::NOT_FOUND, "no such user"))
            .await),
    }
}

/// A user's sessions (admin: `ADMIN_API_TOKEN` bearer, or staff with `auth.change_user`).
#[utoipa::path(get, path = "/api/v1/admin/users/{pk}/sessions", tag = "admin",
    params(("pk" = String, Path, description = "the user's primary key")),
    responses((status = 200, body = SessionList), (status = 401, body = super::api::ApiError),
              (status = 403, body = super::api::ApiError), (status = 404, body = super::api::ApiError)))]
pub async fn admin_sessions(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (ctx, user) = match admin_target(&state, &req).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let resp = match list_sessions(&state, &user.pk, None).await {
        Ok(l) => HttpResponse::Ok().json(SessionList {
            sessions: l.into_iter().map(|l| l.info).collect(),
        }),
        Err(resp) => return resp,
    };
    ctx.finish(&state, resp).await
}

/// Ends every session of a user, on both engines (as `djauth logout-user`).
#[utoipa::path(delete, path = "/api/v1/admin/users/{pk}/sessions", tag = "admin",
    params(("pk" = String, Path, description = "the user's primary key")),
    responses((status = 200, body = Ended), (status = 401, body = super::api::ApiError),
              (status = 403, body = super::api::ApiError), (status = 404, body = super::api::ApiError)))]
pub async fn admin_revoke_all(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (ctx, user) = match admin_target(&state, &req).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let st = state.clone();
    let pk = user.pk.clone();
    let now = crate::formats::signing::now_unix().floor() as i64;
    let ended = web::block(move || -> Result<usize, String> {
        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
        st.index
            .revoke(&mut conn, &st.codec, &pk, None, Some(now))
            .map_err(|e| e.to_string())
    })
    .await;
    let resp = match blocking(ended) {
        Ok(n) => {
            state.note_revocation(&user.pk, n, "admin_api", ctx.client.ip.as_deref());
            HttpResponse::Ok().json(Ended { ended: n })
        }
        Err(resp) => return resp,
    };
    ctx.finish(&state, resp).await
}

/// Ends one session of a user, named by its listed `id`.
#[utoipa::path(delete, path = "/api/v1/admin/users/{pk}/sessions/{id}", tag = "admin",
    params(("pk" = String, Path, description = "the user's primary key"),
           ("id" = String, Path, description = "the session's id from the listing")),
    responses((status = 200, body = Ended), (status = 401, body = super::api::ApiError),
              (status = 403, body = super::api::ApiError), (status = 404, body = super::api::ApiError)))]
pub async fn admin_revoke_one(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (ctx, user) = match admin_target(&state, &req).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let id = req.match_info().get("id").unwrap_or_default().to_owned();
    let listed = match list_sessions(&state, &user.pk, None).await {
        Ok(l) => l,
        Err(resp) => return resp,
    };
    let resp = match listed.into_iter().find(|l| l.info.id == id) {
        None => json_error(StatusCode::NOT_FOUND, "no such session"),
        Some(target) => match revoke_listed(&state, &ctx, &user, target, "admin_api").await {
            Ok(ended) => HttpResponse::Ok().json(Ended {
                ended: usize::from(ended),
            }),
            Err(resp) => return resp,
        },
    };
    ctx.finish(&state, resp).await
}

/// A method the API path does not take.
pub async fn api_method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut resp = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    resp
}
