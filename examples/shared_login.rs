//! A small actix-web service that shares the Django site's login through djauth's
//! extractors: run it with the same settings as `djauth serve` (DATABASE_URL,
//! DJAUTH_SECRET_KEY, …) and a browser logged in on Django is logged in here.
//!
//!     cargo run --example shared_login -- 127.0.0.1:8081

use actix_web::{web, App, HttpResponse, HttpServer};
use djauth::config::Settings;
use djauth::web::extract::{AuthUser, Guard, IsStaff, MaybeUser, Passes, Perm, RequirePerm};
use djauth::web::AppState;

/// `@permission_required("auth.change_user")`.
struct CanChangeUser;

impl Perm for CanChangeUser {
    const NAME: &'static str = "auth.change_user";
}

/// `request.user`, logged in or not.
async fn index(user: MaybeUser) -> HttpResponse {
    match user.0 {
        Some(u) => HttpResponse::Ok().body(format!("Hello, {}.\n", u.username)),
        None => HttpResponse::Ok().body("Hello, anonymous.\n"),
    }
}

/// `@login_required`.
async fn profile(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"id": user.pk, "username": user.username}))
}

async fn user_admin(user: RequirePerm<CanChangeUser>) -> HttpResponse {
    HttpResponse::Ok().body(format!("{} may change users.\n", user.username))
}

/// `@staff_member_required`-like `@user_passes_test`.
async fn staff(user: Passes<IsStaff>) -> HttpResponse {
    HttpResponse::Ok().body(format!("{} is staff.\n", user.username))
}

fn main() -> anyhow::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".into());
    let settings = Settings::load(None)?;
    actix_web::rt::System::new().block_on(async move {
        let state = web::Data::new(AppState::new(settings, 4)?);
        HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(Guard::django())
                .route("/", web::get().to(index))
                .route("/profile", web::get().to(profile))
                .route("/users", web::get().to(user_admin))
                .route("/staff", web::get().to(staff))
                .service(
                    web::scope("/api")
                        .app_data(Guard::api())
                        .route("/profile", web::get().to(profile))
                        .route("/users", web::get().to(user_admin)),
                )
        })
        .bind(&bind)?
        .run()
        .await?;
        Ok(())
    })
}
