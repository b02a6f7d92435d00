//! Logging in with the operator token, and out.
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::CookieJar;
use minijinja::context;
use serde::Deserialize;

use super::render;
use super::session::DashboardUser;
use crate::operator::{clean_name, Session, SESSION_COOKIE};
use crate::AppState;

pub async fn form(State(state): State<AppState>, jar: CookieJar) -> Response {
    if DashboardUser::from_jar(&state, &jar, IpAddr::from([0, 0, 0, 0]))
        .await
        .is_some()
    {
        return Redirect::to("/dashboard").into_response();
    }
    render::page(StatusCode::OK, "login.html", context! {})
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    name: String,
}

pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    Form(login): Form<LoginForm>,
) -> Response {
    let auth = &state.operator;
    let ip = peer.ip();
    let refused = |status: StatusCode, error: String| {
        render::page(
            status,
            "login.html",
            context! { error, name => &login.name },
        )
    };
    if let Some(wait) = auth.failures.blocked_for(ip) {
        return refused(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many wrong tokens from this address; try again in {} s.",
                wait.as_secs().max(1)
            ),
        );
    }
    if !auth.token_matches(&login.token) {
        tracing::info!(%ip, "dashboard login refused: wrong operator token");
        return match auth.failures.record(ip) {
            Some(wait) => refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many wrong tokens from this address; try again in {} s.",
                    wait.as_secs().max(1)
                ),
            ),
            None => refused(
                StatusCode::UNAUTHORIZED,
                "That is not the operator token.".into(),
            ),
        };
    }
    let name = clean_name(&login.name).unwrap_or_else(|| "operator".into());
    tracing::info!(%ip, operator = %name, "dashboard login");
    let cookie = Cookie::build((SESSION_COOKIE, Session::new(name).seal(auth.session_key())))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(auth.secure_cookies);
    (jar.add(cookie), Redirect::to("/dashboard")).into_response()
}

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    user: DashboardUser,
    jar: CookieJar,
    Form(form): Form<LogoutForm>,
) -> Response {
    if let Some(refused) = user.csrf_refusal(&state, &form.csrf) {
        return refused;
    }
    if let Err(e) = user.end_session(&state).await {
        tracing::warn!(error = %e, operator = %user.name, "logout could not end the session on the server; only the cookie is cleared");
    }
    let gone = Cookie::build((SESSION_COOKIE, "")).path("/");
    (jar.remove(gone), Redirect::to("/dashboard/login")).into_response()
}
