//! `LoginView` and `LogoutView` with Django's status codes, redirects, cookies, form field
//! names and messages.

use super::ctx::{service_unavailable, Ctx};
use super::AppState;
use crate::audit;
use crate::formats::cookies;
use crate::formats::http::{url_has_allowed_host_and_scheme, MAX_URL_LENGTH};
use crate::formats::DjangoVersion;
use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::{context, Value};

/// `DATA_UPLOAD_MAX_MEMORY_SIZE`: larger bodies get 413.
pub const MAX_BODY: usize = 2_621_440;

const INVALID_LOGIN: &str =
    "Please enter a correct username and password. Note that both fields may be case-sensitive.";
pub(crate) const REQUIRED: &str = "This field is required.";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
}

/// A form's fields as the templates see them (`form.username`, `.errors`, `.label_tag`…).
pub(crate) struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub input_type: &'a str,
    pub attrs: &'a str,
    pub value: Option<&'a str>,
    pub errors: Vec<String>,
    /// The field's `help_text` (HTML, as Django marks it safe); `None` or empty: no help.
    pub help_text: Option<String>,
    /// Django 5.0+ markup: error-list ids, `aria-invalid`, `aria-describedby`, help-text ids.
    pub aria: bool,
}

impl Field<'_> {
    fn has_help(&self) -> bool {
        self.help_text.as_deref().is_some_and(|h| !h.is_empty())
    }

    fn errors_html(&self) -> String {
        if self.errors.is_empty() {
            return String::new();
        }
        let items: String = self
            .errors
            .iter()
            .map(|e| format!("<li>{}</li>", escape(e)))
            .collect();
        if self.aria {
            format!(
                "<ul class=\"errorlist\" id=\"id_{}_error\">{items}</ul>",
                self.name
            )
        } else {
            format!("<ul class=\"errorlist\">{items}</ul>")
        }
    }

    fn widget(&self) -> String {
        let value = self
            .value
            .map(|v| format!(" value=\"{}\"", escape(v)))
            .unwrap_or_default();
        let mut aria = String::new();
        if self.aria {
            if !self.errors.is_empty() {
                aria.push_str(" aria-invalid=\"true\"");
            }
            let described: Vec<String> = [
                self.has_help()
                    .then(|| format!("id_{}_helptext", self.name)),
                (!self.errors.is_empty()).then(|| format!("id_{}_error", self.name)),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !described.is_empty() {
                aria.push_str(&format!(" aria-describedby=\"{}\"", described.join(" ")));
            }
        }
        format!(
            "<input type=\"{}\" name=\"{}\"{value}{}{aria} id=\"id_{}\">",
            self.input_type, self.name, self.attrs, self.name
        )
    }

    /// One field's part of `django/forms/p.html`, whitespace and all.
    fn as_p(&self, last: bool) -> String {
        let help = match &self.help_text {
            Some(h) if !h.is_empty() => {
                let id = if self.aria {
                    format!(" id=\"id_{}_helptext\"", self.name)
                } else {
                    String::new()
                };
                format!("\n      <span class=\"helptext\"{id}>{h}</span>\n    ")
            }
            _ => String::new(),
        };
        let last = if last { "\n      \n    " } else { "" };
        format!(
            "\n  {}\n  <p>\n    {}\n    {}\n    {help}\n    {last}\n  </p>\n",
            self.errors_html(),
            self.label_tag(),
            self.widget()
        )
    }

    fn label_tag(&self) -> String {
        format!("<label for=\"id_{}\">{}:</label>", self.name, self.label)
    }

    fn value(&self) -> Value {
        let map = [
            ("errors", Value::from_safe_string(self.errors_html())),
            ("label_tag", Value::from_safe_string(self.label_tag())),
            ("html", Value::from_safe_string(self.widget())),
            ("name", Value::from(self.name)),
            ("label", Value::from(self.label)),
            ("value", Value::from(self.value.unwrap_or(""))),
        ];
        let obj: std::collections::BTreeMap<&str, Value> = map.into_iter().collect();
        // Rendering the field itself prints its widget, as in Django.
        Value::from_object(FieldObject { map: obj })
    }
}

#[derive(Debug)]
struct FieldObject {
    map: std::collections::BTreeMap<&'static str, Value>,
}

impl minijinja::value::Object for FieldObject {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        self.map.get(key.as_str()?).cloned()
    }
    fn render(self: &std::sync::Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.map.get("html").and_then(|v| v.as_str()).unwrap_or(""))
    }
}

/// The widget HTML of a form field value, for the template formatter.
pub fn field_html(value: &Value) -> Option<String> {
    let f = value.downcast_object_ref::<FieldObject>()?;
    f.map
        .get("html")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

pub(crate) fn form_value(fields: &[Field], non_field_errors: &[String]) -> Value {
    let nfe = if non_field_errors.is_empty() {
        String::new()
    } else {
        let items: String = non_field_errors
            .iter()
            .map(|e| format!("<li>{}</li>", escape(e)))
            .collect();
        format!("<ul class=\"errorlist nonfield\">{items}</ul>")
    };
    // `form.as_p()`: django/forms/p.html rendered, then stripped as Django's renderer does.
    let mut p = format!("{nfe}\n\n");
    for (i, f) in fields.iter().enumerate() {
        p.push_str(&f.as_p(i + 1 == fields.len()));
    }
    p.push_str("\n\n");
    let as_p = p.trim().to_owned();
    let mut map: std::collections::BTreeMap<String, Value> = fields
        .iter()
        .map(|f| (f.name.to_string(), f.value()))
        .collect();
    map.insert(
        "non_field_errors".into(),
        Value::from_safe_string(nfe.clone()),
    );
    map.insert("as_p".into(), Value::from_safe_string(as_p));
    map.insert(
        "errors".into(),
        Value::from(!non_field_errors.is_empty() || fields.iter().any(|f| !f.errors.is_empty())),
    );
    Value::from_iter(map)
}

/// `never_cache`.
fn never_cache(resp: &mut HttpResponse) {
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("max-age=0, no-cache, no-store, must-revalidate, private"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&cookies::http_date(chrono::Utc::now())) {
        h.insert(header::EXPIRES, v);
    }
}

pub(crate) fn csrf_failure(reason: &str) -> HttpResponse {
    tracing::warn!("Forbidden ({reason})");
    HttpResponse::Forbidden().content_type("text/html; charset=utf-8").body(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta http-equiv=\"content-type\" content=\"text/html; charset=utf-8\">\n  <meta name=\"robots\" content=\"NONE,NOARCHIVE\">\n  <title>403 Forbidden</title>\n</head>\n<body>\n  <div id=\"summary\">\n    <h1>Forbidden <span>(403)</span></h1>\n    <p>CSRF verification failed. Request aborted.</p>\n  </div>\n</body>\n</html>\n",
    )
}

fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
        .ok()?
        .into_iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

pub(crate) fn form_param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `LoginView.get_success_url`: a safe `next`, else `LOGIN_REDIRECT_URL`.
fn login_success_url(
    state: &AppState,
    ctx: &Ctx,
    req: &HttpRequest,
    form: &[(String, String)],
) -> String {
    let next = safe_next(state, ctx, req, form);
    if next.is_empty() {
        resolve_url(state, &state.settings.login_redirect_url)
    } else {
        next
    }
}

/// `RedirectURLMixin.get_redirect_url`: POST's `next`, else GET's, if safe; else "".
fn safe_next(state: &AppState, ctx: &Ctx, req: &HttpRequest, form: &[(String, String)]) -> String {
    let next = form_param(form, "next")
        .map(str::to_owned)
        .or_else(|| query_param(req, "next"))
        .unwrap_or_default();
    let max = (state.settings.django_version().unwrap_or_default() >= DjangoVersion::V5_2)
        .then_some(MAX_URL_LENGTH);
    if url_has_allowed_host_and_scheme(&next, &[ctx.host.as_str()], ctx.is_secure, max) {
        next
    } else {
        String::new()
    }
}

pub(crate) fn redirect(to: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, to.to_owned()))
        .finish()
}

pub(crate) fn render(state: &AppState, name: &str, ctx: Value) -> HttpResponse {
    match state.templates.render(name, ctx) {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!("template {name}: {e:#}");
            HttpResponse::InternalServerError()
                .content_type("text/plain")
                .body("Server Error (500)\n")
        }
    }
}

pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    // Django's QueryDict decodes with errors="replace"; malformed pairs are skipped.
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// `LoginView` (GET shows the form, POST authenticates).
pub async fn login(req: HttpRequest, body: web::Bytes, state: web::Data<AppState>) -> HttpResponse {
    let mut ctx = begin_or_return!(state, req);
    let is_post = req.method() == Method::POST;
    if !is_post && req.method() != Method::GET && req.method() != Method::HEAD {
        return ctx
            .finish(
                &state,
                HttpResponse::MethodNotAllowed()
                    .insert_header((
                        header::ALLOW,
                        "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
                    ))
                    .finish(),
            )
            .await;
    }
    let form = if is_post { parse_form(&body) } else { vec![] };
    if state.settings.login_redirect_authenticated_user {
        match ctx.user(&state).await {
            Ok(Some(_)) => {
                let to = login_success_url(&state, &ctx, &req, &form);
                if to == req.uri().path() {
                    // Django raises ValueError here: a settings mistake, not the user's.
                    tracing::error!("redirection loop for authenticated user detected");
                    return HttpResponse::InternalServerError()
                        .content_type("text/plain; charset=utf-8")
                        .body("Redirection loop for authenticated user detected. Check that your LOGIN_REDIRECT_URL doesn't point to a login page.\n");
                }
                return ctx.finish(&state, redirect(&to)).await;
            }
            Ok(None) => {}
            Err(resp) => return resp,
        }
    }
    let mut username_errors = vec![];
    let mut password_errors = vec![];
    let mut non_field = vec![];
    let mut locked = false;
    let username_raw = form_param(&form, "username").map(str::trim);
    if is_post {
        if let Err(reason) = ctx.check_csrf(&state, &req, form_param(&form, "csrfmiddlewaretoken"))
        {
            return csrf_failure(&reason.to_string());
        }
        let username = username_raw.filter(|u| !u.is_empty()).map(|u| {
            use unicode_normalization::UnicodeNormalization;
            // UsernameField NFKC-normalises unless the value is longer than max_length.
            if u.chars().count() > 150 {
                u.to_owned()
            } else {
                u.nfkc().collect::<String>()
            }
        });
        let password = form_param(&form, "password")
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        if username.is_none() {
            username_errors.push(REQUIRED.to_string());
        }
        if password.is_none() {
            password_errors.push(REQUIRED.to_string());
        }
        if let (Some(username), Some(password)) = (username, password) {
            let st = state.clone();
            let address = ctx.client.ip.clone();
            // Hashing runs on the blocking pool so a login flood never stalls other requests.
            let result = web::block(move || -> Result<LoginOutcome, String> {
                let mut conn = st.pool.get().map_err(|e| e.to_string())?;
                authenticate_throttled(&st, &mut conn, &username, &password, address.as_deref())
                    .map_err(|e| e.to_string())
            });
            let outcome = blocking_or_return!(result);
            let (result, event) = match &outcome {
                LoginOutcome::Locked => ("locked", audit::Kind::Lockout),
                LoginOutcome::Refused => ("failed", audit::Kind::LoginFailed),
                LoginOutcome::User(_) => ("ok", audit::Kind::Login),
            };
            state.metrics.login(result);
            let mut e = audit::Event::new(event).ip(ctx.client.ip.as_deref());
            e = match &outcome {
                LoginOutcome::User(u) => e.user(&u.pk, &u.username),
                _ => e.username(username_raw.unwrap_or_default()),
            };
            state.audit.record(e);
            match outcome {
                LoginOutcome::Locked => {
                    non_field.push(LOCKED_OUT.to_string());
                    locked = true;
                }
                LoginOutcome::Refused => non_field.push(INVALID_LOGIN.to_string()),
                LoginOutcome::User(mut user) => {
                    // login(): session rules, CSRF rotation, then user_logged_in → last_login.
                    let _ = ctx.user(&state).await;
                    ctx.login(&state, &user);
                    let st = state.clone();
                    let mut u2 = user.clone();
                    let r = web::block(move || -> Result<crate::db::users::User, String> {
                        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
                        st.users
                            .update_last_login(&mut conn, &mut u2)
                            .map_err(|e| e.to_string())?;
                        Ok(u2)
                    })
                    .await;
                    match r {
                        Ok(Ok(u)) => user = u,
                        _ => return service_unavailable("could not update last_login"),
                    }
                    let _ = user;
                    let mut resp = redirect(&login_success_url(&state, &ctx, &req, &form));
                    never_cache(&mut resp);
                    return ctx.finish(&state, resp).await;
                }
            }
        }
    }
    let next = safe_next(&state, &ctx, &req, &form);
    let token = ctx.csrf_token();
    let fields = [
        Field {
            name: "username",
            label: "Username",
            input_type: "text",
            attrs: " autofocus autocapitalize=\"none\" autocomplete=\"username\" maxlength=\"150\" required",
            value: username_raw,
            errors: username_errors,
            help_text: None,
            aria: aria_markup(&state),
        },
        Field {
            name: "password",
            label: "Password",
            input_type: "password",
            attrs: " autocomplete=\"current-password\" required",
            value: None,
            errors: password_errors,
            help_text: None,
            aria: aria_markup(&state),
        },
    ];
    let page = render(
        &state,
        "registration/login.html",
        context! {
            form => form_value(&fields, &non_field),
            next => next,
            site_name => ctx.host.clone(),
            title => "Log in",
            csrf_token => token.clone(),
            csrf_input => Value::from_safe_string(format!("<input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"{token}\">")),
        },
    );
    let mut page = page;
    never_cache(&mut page);
    if locked && page.status().is_success() {
        *page.status_mut() = actix_web::http::StatusCode::TOO_MANY_REQUESTS;
        if let Ok(v) = header::HeaderValue::from_str(&state.lockout.policy().cooloff.to_string()) {
            page.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    ctx.finish(&state, page).await
}

const LOCKED_OUT: &str = "Too many failed login attempts. Please try again later.";

enum LoginOutcome {
    User(crate::db::users::User),
    Refused,
    /// The username or the client address has used up its attempts: the password was not
    /// even checked.
    Locked,
}

/// `authenticate()` behind the login throttle: each attempt is counted for the username and
/// the address before the password is checked, and a success clears both counts.
fn authenticate_throttled(
    st: &AppState,
    conn: &mut crate::db::DbConnection,
    username: &str,
    password: &str,
    address: Option<&str>,
) -> Result<LoginOutcome, crate::db::DbError> {
    use crate::db::lockout::Kind;
    let lockout = &st.lockout;
    if lockout.enabled() {
        let now = crate::formats::signing::now_unix().floor() as i64;
        let mut keys = vec![(Kind::Username, username)];
        keys.extend(address.map(|ip| (Kind::Address, ip)));
        if !lockout.allow(conn, &keys, now)? {
            return Ok(LoginOutcome::Locked);
        }
    }
    let started = std::time::Instant::now();
    let user = st
        .users
        .authenticate(conn, &st.hashers, username, password)?;
    st.metrics
        .hash_seconds
        .observe(started.elapsed().as_secs_f64());
    let Some(user) = user else {
        return Ok(LoginOutcome::Refused);
    };
    if lockout.enabled() {
        lockout.clear(conn, Kind::Username, username)?;
        if let Some(ip) = address {
            lockout.clear(conn, Kind::Address, ip)?;
        }
    }
    Ok(LoginOutcome::User(user))
}

/// `LogoutView`: POST only since Django 5.0 (405 otherwise); 4.2 still accepts GET.
pub async fn logout(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut ctx = begin_or_return!(state, req);
    let get_allowed = state.settings.django_version().unwrap_or_default() == DjangoVersion::V4_2;
    let method = req.method().clone();
    let allow = if get_allowed {
        "GET, POST, HEAD, OPTIONS"
    } else {
        "POST, OPTIONS"
    };
    let refused = if method == Method::OPTIONS {
        Some(HttpResponse::Ok())
    } else if !(method == Method::POST || (get_allowed && method == Method::GET)) {
        Some(HttpResponse::MethodNotAllowed())
    } else {
        None
    };
    if let Some(mut builder) = refused {
        let resp = builder.insert_header((header::ALLOW, allow)).finish();
        return ctx.finish(&state, resp).await;
    }
    let form = if method == Method::POST {
        parse_form(&body)
    } else {
        vec![]
    };
    if method == Method::POST {
        if let Err(reason) = ctx.check_csrf(&state, &req, form_param(&form, "csrfmiddlewaretoken"))
        {
            return csrf_failure(&reason.to_string());
        }
    }
    match ctx.user(&state).await {
        Ok(Some(u)) => state.audit.record(
            audit::Event::new(audit::Kind::Logout)
                .user(&u.pk, &u.username)
                .ip(ctx.client.ip.as_deref()),
        ),
        Ok(None) => {}
        Err(resp) => return resp,
    }
    ctx.logout();
    let next = safe_next(&state, &ctx, &req, &form);
    let target = if !next.is_empty() {
        Some(next)
    } else {
        state
            .settings
            .logout_redirect_url
            .as_deref()
            .map(|u| resolve_url(&state, u))
    };
    let mut resp = match target {
        Some(to) if to != req.uri().to_string() => redirect(&to),
        _ => render(
            &state,
            "registration/logged_out.html",
            context! { title => "Logged out", site_name => ctx.host.clone() },
        ),
    };
    never_cache(&mut resp);
    ctx.finish(&state, resp).await
}

const OLD_PASSWORD_INCORRECT: &str =
    "Your old password was entered incorrectly. Please enter it again.";
const PASSWORD_MISMATCH: &str = "The two password fields didn\u{2019}t match.";

/// `QueryDict.urlencode(safe="/")` of one value: Python's `quote(v, safe="/")`.
pub(crate) fn quote_safe_slash(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `reverse(name)` for the URL names of `django.contrib.auth.urls` that take no arguments.
pub fn reverse(prefix: &str, name: &str) -> Option<String> {
    let tail = match name {
        "login" => "login/",
        "logout" => "logout/",
        "password_change" => "password_change/",
        "password_change_done" => "password_change/done/",
        "password_reset" => "password_reset/",
        "password_reset_done" => "password_reset/done/",
        "password_reset_complete" => "reset/done/",
        "sessions" => "sessions/",
        _ => return None,
    };
    Some(format!("{prefix}{tail}"))
}

/// `resolve_url(to)` for settings such as `LOGIN_URL` and `LOGIN_REDIRECT_URL`: a URL name of
/// the auth pages becomes its path; anything else is a URL already. (Django would also
/// reverse the project's own URL names, which djauth cannot know: use paths for those.)
pub(crate) fn resolve_url(state: &AppState, to: &str) -> String {
    reverse(&state.prefix, to).unwrap_or_else(|| to.to_owned())
}

/// `redirect_to_login(next)`'s target: `LOGIN_URL?next=<next>` (or `LOGIN_URL` alone).
pub(crate) fn login_url_with_next(state: &AppState, next: Option<&str>) -> String {
    let login_url = resolve_url(state, &state.settings.login_url);
    match next {
        Some(next) => {
            let sep = if login_url.contains('?') { '&' } else { '?' };
            format!("{login_url}{sep}next={}", quote_safe_slash(next))
        }
        None => login_url,
    }
}

/// The request's `get_full_path()`.
pub(crate) fn full_path(req: &HttpRequest) -> String {
    crate::formats::http::get_full_path(req.uri().path(), req.uri().query())
}

/// `redirect_to_login`: `LOGIN_URL?next=<full path>`.
pub(crate) fn redirect_to_login(state: &AppState, req: &HttpRequest) -> HttpResponse {
    redirect(&login_url_with_next(state, Some(&full_path(req))))
}

/// The attributes `UserAttributeSimilarityValidator` reads from the user.
fn user_attributes(state: &AppState, user: &crate::db::users::User) -> Vec<(String, String)> {
    let s = &state.settings;
    let mut attrs = vec![
        (s.username_field.clone(), user.username.clone()),
        (s.email_field.clone(), user.email.clone()),
        ("first_name".to_owned(), user.first_name.clone()),
        ("last_name".to_owned(), user.last_name.clone()),
    ];
    attrs.dedup_by(|a, b| a.0 == b.0);
    attrs
}

pub(crate) fn csrf_input(token: &str) -> Value {
    Value::from_safe_string(format!(
        "<input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"{token}\">"
    ))
}

pub(crate) fn password_field<'a>(
    name: &'a str,
    label: &'a str,
    autocomplete: &'a str,
    errors: Vec<String>,
) -> Field<'a> {
    Field {
        name,
        label,
        input_type: "password",
        attrs: autocomplete,
        value: None,
        errors,
        help_text: None,
        aria: true,
    }
}

/// Whether this Django version writes the 5.0+ accessibility markup in forms.
pub(crate) fn aria_markup(state: &AppState) -> bool {
    state.settings.django_version().unwrap_or_default() >= DjangoVersion::V5_2
}

/// `SetPasswordMixin`'s two fields, with Django's help texts: the validators' list on the
/// first, and (5.0+) "Enter the same password as before, for verification." on the second.
pub(crate) fn new_password_fields(
    state: &AppState,
    e1: Vec<String>,
    e2: Vec<String>,
) -> [Field<'static>; 2] {
    let aria = aria_markup(state);
    let mut f1 = password_field(
        "new_password1",
        "New password",
        " autocomplete=\"new-password\" required",
        e1,
    );
    f1.help_text =
        Some(crate::formats::validators::password_validators_help_text_html(&state.validators));
    f1.aria = aria;
    let mut f2 = password_field(
        "new_password2",
        "New password confirmation",
        " autocomplete=\"new-password\" required",
        e2,
    );
    f2.help_text = aria.then(|| "Enter the same password as before, for verification.".to_owned());
    f2.aria = aria;
    [f1, f2]
}

/// `SetPasswordMixin`: both fields required, equal, then the validators on the second.
/// Returns the new password when the form is valid.
pub(crate) fn check_new_passwords(
    state: &AppState,
    user: &crate::db::users::User,
    form: &[(String, String)],
    new1_errors: &mut Vec<String>,
    new2_errors: &mut Vec<String>,
) -> Option<String> {
    let new1 = form_param(form, "new_password1").filter(|p| !p.is_empty());
    let new2 = form_param(form, "new_password2").filter(|p| !p.is_empty());
    if new1.is_none() {
        new1_errors.push(REQUIRED.to_string());
    }
    if new2.is_none() {
        new2_errors.push(REQUIRED.to_string());
    }
    let (p1, p2) = (new1?, new2?);
    if p1 != p2 {
        new2_errors.push(PASSWORD_MISMATCH.to_string());
        return None;
    }
    let attrs = user_attributes(state, user);
    if let Err(errs) =
        crate::formats::validators::validate_password(p2, Some(&attrs), &state.validators)
    {
        new2_errors.extend(errs.into_iter().map(|e| e.message));
        return None;
    }
    Some(p2.to_owned())
}

/// `PasswordChangeView` (`login_required`): on success the password is set with the
/// preferred hasher, `update_session_auth_hash` keeps this session (new key, new hash), and
/// every other session of the user ends at its next request.
/// After a password change the user's other sessions already fail Django's hash check; they
/// are also deleted through the index, so they are gone rather than merely refused. The
/// password is saved by then: a failure here is logged, not turned into an error page.
pub(crate) fn end_sessions_after_password_change(
    st: &AppState,
    conn: &mut crate::db::DbConnection,
    user_pk: &str,
    keep: Option<&str>,
) {
    if st.engine != crate::formats::session::Engine::Db {
        return;
    }
    match st.index.revoke(conn, &st.codec, user_pk, keep, None) {
        Ok(n) if n > 0 => st.note_revocation(user_pk, n, "password_change", None),
        Ok(_) => {}
        Err(e) => tracing::warn!("ending the sessions of user {user_pk}: {e}"),
    }
}

/// `form.save()` of a set-password form, off the executor: hash with the preferred hasher,
/// store it, and end the user's other sessions (all but `keep`).
pub(crate) fn save_new_password(
    state: &web::Data<AppState>,
    user: &crate::db::users::User,
    new: String,
    keep: Option<String>,
) -> impl std::future::Future<
    Output = Result<Result<crate::db::users::User, String>, actix_web::error::BlockingError>,
> {
    let st = state.clone();
    let mut u = user.clone();
    web::block(move || -> Result<crate::db::users::User, String> {
        let encoded = st
            .hashers
            .make_password(&new, None, None)
            .map_err(|e| e.to_string())?;
        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
        st.users
            .set_password(&mut conn, &mut u, encoded)
            .map_err(|e| e.to_string())?;
        end_sessions_after_password_change(&st, &mut conn, &u.pk, keep.as_deref());
        Ok(u)
    })
}

pub async fn password_change(
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
    let is_post = req.method() == Method::POST;
    if !is_post && req.method() != Method::GET && req.method() != Method::HEAD {
        let resp = HttpResponse::MethodNotAllowed()
            .insert_header((
                header::ALLOW,
                "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
            ))
            .finish();
        return ctx.finish(&state, resp).await;
    }
    let form = if is_post { parse_form(&body) } else { vec![] };
    let (mut old_errors, mut new1_errors, mut new2_errors) = (vec![], vec![], vec![]);
    if is_post {
        if let Err(reason) = ctx.check_csrf(&state, &req, form_param(&form, "csrfmiddlewaretoken"))
        {
            return csrf_failure(&reason.to_string());
        }
        let old = form_param(&form, "old_password")
            .filter(|p| !p.is_empty())
            .map(str::to_owned);
        if old.is_none() {
            old_errors.push(REQUIRED.to_string());
        }
        let new2 = check_new_passwords(&state, &user, &form, &mut new1_errors, &mut new2_errors);
        let st = state.clone();
        let checked_user = user.clone();
        let old_ok = match old.clone() {
            // check_password runs on the blocking pool: hashing must not stall the executor.
            Some(old) => web::block(move || {
                st.hashers
                    .verify_password(Some(&old), &checked_user.password)
                    .valid
            })
            .await
            .unwrap_or(false),
            None => true,
        };
        if !old_ok {
            old_errors.push(OLD_PASSWORD_INCORRECT.to_string());
        }
        if old_errors.is_empty() && new1_errors.is_empty() && new2_errors.is_empty() {
            let current = ctx.session.key().map(str::to_owned);
            let saved = save_new_password(&state, &user, new2.unwrap_or_default(), current);
            let u = blocking_or_return!(saved);
            state.audit.record(
                audit::Event::new(audit::Kind::PasswordChange)
                    .user(&u.pk, &u.username)
                    .ip(ctx.client.ip.as_deref()),
            );
            ctx.update_session_auth_hash(&state, &u);
            let resp = redirect(&format!("{}password_change/done/", state.prefix));
            return ctx.finish(&state, resp).await;
        }
    }
    let token = ctx.csrf_token();
    let [new1, new2] = new_password_fields(&state, new1_errors, new2_errors);
    let mut old = password_field(
        "old_password",
        "Old password",
        " autocomplete=\"current-password\" autofocus required",
        old_errors,
    );
    old.aria = aria_markup(&state);
    let fields = [old, new1, new2];
    let page = render(
        &state,
        "registration/password_change_form.html",
        context! {
            form => form_value(&fields, &[]),
            title => "Password change",
            site_name => ctx.host.clone(),
            user => Value::from_serialize(user.as_json()),
            password_help_text => Value::from_safe_string(
                crate::formats::validators::password_validators_help_text_html(&state.validators)),
            csrf_token => token.clone(),
            csrf_input => csrf_input(&token),
        },
    );
    ctx.finish(&state, page).await
}

/// `PasswordChangeDoneView` (`login_required`).
pub async fn password_change_done(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let mut ctx = begin_or_return!(state, req);
    let user = match ctx.user(&state).await {
        Ok(Some(u)) => u,
        Ok(None) => return ctx.finish(&state, redirect_to_login(&state, &req)).await,
        Err(resp) => return resp,
    };
    let page = render(
        &state,
        "registration/password_change_done.html",
        context! { title => "Password change successful", site_name => ctx.host.clone(),
        user => Value::from_serialize(user.as_json()) },
    );
    ctx.finish(&state, page).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_quoted_like_querydict_urlencode() {
        // shared/spec/views.md §2: /accounts/password_change/?a=1&b=x%20y
        assert_eq!(
            quote_safe_slash("/accounts/password_change/?a=1&b=x%20y"),
            "/accounts/password_change/%3Fa%3D1%26b%3Dx%2520y"
        );
    }
}
