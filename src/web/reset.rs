//! The password-reset flow: `PasswordResetView` (mail a link, the same answer whether or not
//! the address exists), `PasswordResetDoneView`, `PasswordResetConfirmView` (Django's
//! redirect to `…/set-password/` with the real token kept in the session) and
//! `PasswordResetCompleteView`.

use super::views::{
    csrf_failure, csrf_input, form_param, form_value, parse_form, redirect, render, Field, REQUIRED,
};
use super::AppState;
use crate::db::users::User;
use crate::formats::tokens::{uidb64_decode, uidb64_encode, TokenUser};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::context;

/// `INTERNAL_RESET_SESSION_TOKEN`.
pub const RESET_SESSION_KEY: &str = "_password_reset_token";
/// `PasswordResetConfirmView.reset_url_token`.
pub const RESET_URL_TOKEN: &str = "set-password";
const EMAIL_INVALID: &str = "Enter a valid email address.";

fn token_user(u: &User) -> TokenUser<'_> {
    TokenUser {
        pk: &u.pk,
        password: &u.password,
        last_login: u.last_login,
        email: &u.email,
    }
}

/// `PasswordResetView`.
pub async fn password_reset(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut ctx = begin_or_return!(state, req);
    let is_post = req.method() == Method::POST;
    let form = if is_post { parse_form(&body) } else { vec![] };
    let email = form_param(&form, "email")
        .map(str::trim)
        .unwrap_or("")
        .to_owned();
    let mut errors = vec![];
    if is_post {
        if let Err(reason) = ctx.check_csrf(&state, &req, form_param(&form, "csrfmiddlewaretoken"))
        {
            return csrf_failure(&reason.to_string());
        }
        if email.is_empty() {
            errors.push(REQUIRED.to_string());
        } else if email.chars().count() > 254 {
            errors.push(format!(
                "Ensure this value has at most 254 characters (it has {}).",
                email.chars().count()
            ));
        } else if !crate::formats::fields::is_valid_email(&email) {
            errors.push(EMAIL_INVALID.to_string());
        }
        if errors.is_empty() {
            let st = state.clone();
            let host = ctx.host.clone();
            let protocol = if ctx.is_secure { "https" } else { "http" };
            let ip = ctx.client.ip.clone();
            // Mail is sent off the executor; failures are logged and swallowed, as Django does,
            // so the answer never reveals whether the address exists.
            let sent = web::block(move || -> Result<(), String> {
                let mut conn = st.pool.get().map_err(|e| e.to_string())?;
                let users = st
                    .users
                    .get_by_email_for_reset(&mut conn, &email)
                    .map_err(|e| e.to_string())?;
                st.audit.record(
                    crate::audit::Event::new(crate::audit::Kind::PasswordResetRequest)
                        .ip(ip.as_deref())
                        .detail(serde_json::json!({"email": email, "users": users.len()})),
                );
                for user in users {
                    let token = st.tokens.make_token(&token_user(&user));
                    let c = context! {
                        email => user.email.clone(), domain => host.clone(), site_name => host.clone(),
                        uid => uidb64_encode(&user.pk), user => minijinja::Value::from_serialize(user.as_json()),
                        token => token, protocol => protocol,
                    };
                    let subject = st
                        .templates
                        .render("registration/password_reset_subject.txt", c.clone());
                    let body = st
                        .templates
                        .render("registration/password_reset_email.html", c);
                    let (Ok(subject), Ok(body)) = (subject, body) else {
                        tracing::error!("cannot render the password reset email");
                        continue;
                    };
                    // Email subject *must not* contain newlines.
                    let subject: String = subject.lines().collect();
                    let msg = super::mail::Message {
                        subject,
                        body,
                        html_body: None,
                        from: st.settings.default_from_email.clone(),
                        to: vec![user.email.clone()],
                    };
                    if let Err(e) = st.mailer.send(&msg) {
                        tracing::error!("Failed to send password reset email to {}: {e}", user.pk);
                    }
                }
                Ok(())
            });
            blocking_or_return!(sent);
            return ctx
                .finish(
                    &state,
                    redirect(&format!("{}password_reset/done/", state.prefix)),
                )
                .await;
        }
    }
    let token = ctx.csrf_token();
    let fields = [Field {
        name: "email",
        label: "Email",
        input_type: "email",
        attrs: " autocomplete=\"email\" maxlength=\"254\" required",
        value: (!email.is_empty()).then_some(email.as_str()),
        errors,
        help_text: None,
        aria: super::views::aria_markup(&state),
    }];
    let page = render(
        &state,
        "registration/password_reset_form.html",
        context! { form => form_value(&fields, &[]), title => "Password reset", site_name => ctx.host.clone(),
        csrf_token => token.clone(), csrf_input => csrf_input(&token) },
    );
    ctx.finish(&state, page).await
}

/// `PasswordResetDoneView` and `PasswordResetCompleteView`: a page and nothing else.
pub async fn password_reset_done(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    simple_page(
        req,
        state,
        "registration/password_reset_done.html",
        "Password reset sent",
    )
    .await
}

pub async fn password_reset_complete(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    simple_page(
        req,
        state,
        "registration/password_reset_complete.html",
        "Password reset complete",
    )
    .await
}

async fn simple_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    template: &str,
    title: &str,
) -> HttpResponse {
    let ctx = begin_or_return!(state, req);
    let page = render(
        &state,
        template,
        context! { title => title, site_name => ctx.host.clone(), login_url => state.settings.login_url.clone() },
    );
    ctx.finish(&state, page).await
}

/// `PasswordResetConfirmView`.
pub async fn password_reset_confirm(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> HttpResponse {
    let mut ctx = begin_or_return!(state, req);
    let (uidb64, token) = path.into_inner();
    let st = state.clone();
    let uid = uidb64.clone();
    let user = web::block(move || -> Result<Option<User>, String> {
        let Some(pk) = uidb64_decode(&uid) else {
            return Ok(None);
        };
        let mut conn = st.pool.get().map_err(|e| e.to_string())?;
        st.users
            .get_by_pk(&mut conn, &pk)
            .map_err(|e| e.to_string())
    });
    let user = blocking_or_return!(user);
    let mut valid_user = None;
    if let Some(user) = user {
        if token == RESET_URL_TOKEN {
            let session_token = ctx
                .session
                .data
                .get(RESET_SESSION_KEY)
                .and_then(|v| v.as_str())
                .map(str::to_owned);
            if session_token.is_some_and(|t| state.tokens.check_token(&token_user(&user), &t)) {
                valid_user = Some(user);
            }
        } else if state.tokens.check_token(&token_user(&user), &token) {
            // Keep the token out of the URL (and so out of Referer headers): store it in the
            // session and redirect to the set-password URL.
            ctx.session.insert(RESET_SESSION_KEY, token.clone().into());
            let to = req.path().replacen(&token, RESET_URL_TOKEN, 1);
            return ctx.finish(&state, redirect(&to)).await;
        }
    }
    let Some(user) = valid_user else {
        let page = render(
            &state,
            "registration/password_reset_confirm.html",
            context! { validlink => false, form => (), title => "Password reset unsuccessful", site_name => ctx.host.clone() },
        );
        return ctx.finish(&state, page).await;
    };
    let is_post = req.method() == Method::POST;
    let form = if is_post { parse_form(&body) } else { vec![] };
    let (mut e1, mut e2) = (vec![], vec![]);
    if is_post {
        if let Err(reason) = ctx.check_csrf(&state, &req, form_param(&form, "csrfmiddlewaretoken"))
        {
            return csrf_failure(&reason.to_string());
        }
        if let Some(new) = super::views::check_new_passwords(&state, &user, &form, &mut e1, &mut e2)
        {
            let saved = super::views::save_new_password(&state, &user, new, None);
            blocking_or_return!(saved);
            state.audit.record(
                crate::audit::Event::new(crate::audit::Kind::PasswordResetComplete)
                    .user(&user.pk, &user.username)
                    .ip(ctx.client.ip.as_deref()),
            );
            ctx.session.remove(RESET_SESSION_KEY);
            return ctx
                .finish(&state, redirect(&format!("{}reset/done/", state.prefix)))
                .await;
        }
    }
    let token = ctx.csrf_token();
    let [new1, new2] = super::views::new_password_fields(&state, e1, e2);
    let fields = [new1, new2];
    let page = render(
        &state,
        "registration/password_reset_confirm.html",
        context! { validlink => true, form => form_value(&fields, &[]), title => "Enter new password",
        site_name => ctx.host.clone(), csrf_token => token.clone(), csrf_input => csrf_input(&token),
        password_help_text => minijinja::Value::from_safe_string(
            crate::formats::validators::password_validators_help_text_html(&state.validators)) },
    );
    ctx.finish(&state, page).await
}
