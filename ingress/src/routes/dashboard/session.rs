//! The logged-in operator of a dashboard request, and the CSRF check of its forms.
use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use minijinja::context;

use super::render;
use crate::operator::{client_ip, Session, SESSION_COOKIE};
use crate::AppState;

pub struct DashboardUser {
    pub name: String,
    /// What the audit trail records.
    pub actor: String,
    /// The token every form of this session must send back.
    pub csrf: String,
    session: Session,
}

impl FromRequestParts<AppState> for DashboardUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        Self::from_jar(state, &jar, client_ip(parts))
            .await
            .ok_or_else(|| Redirect::to("/dashboard/login").into_response())
    }
}

impl DashboardUser {
    /// The operator of a valid, unexpired session cookie that was not logged out.
    pub async fn from_jar(state: &AppState, jar: &CookieJar, ip: IpAddr) -> Option<Self> {
        let key = state.operator.session_key();
        let session = Session::verify(key, jar.get(SESSION_COOKIE)?.value())?;
        if session.is_revoked(&state.db).await {
            return None;
        }
        Some(Self {
            name: session.name.clone(),
            actor: format!("{} via dashboard from {ip}", session.name),
            csrf: session.csrf_token(key),
            session,
        })
    }

    /// A form's CSRF token must be this session's; otherwise the refusal page to answer.
    pub fn csrf_refusal(&self, state: &AppState, submitted: &str) -> Option<Response> {
        if self
            .session
            .csrf_matches(state.operator.session_key(), submitted)
        {
            return None;
        }
        Some(render::page(
            StatusCode::FORBIDDEN,
            "error.html",
            context! {
                title => "Action refused",
                message => "This form's security token does not belong to your session. Reload the page and try again.",
                csrf => &self.csrf,
                operator => &self.name,
            },
        ))
    }
}

impl DashboardUser {
    /// Logs this session out on every ingress process.
    pub async fn end_session(&self, state: &AppState) -> Result<(), b24flow_common::db::DbError> {
        self.session.revoke(&state.db).await
    }
}
