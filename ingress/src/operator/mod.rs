//! Who may use the operators' console: the `/api` (bearer token), the dashboard (a session
//! cookie obtained with the same token, plus a CSRF token on every action) and `/metrics`.
//! Failed attempts are rate-limited per client address.
mod failures;
mod session;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum_extra::extract::CookieJar;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use failures::Failures;
pub use session::{Session, SESSION_COOKIE};

use crate::error::ApiError;
use crate::AppState;

/// Header a client may use to say which operator acts (recorded in the audit trail).
pub const OPERATOR_HEADER: &str = "x-b24flow-operator";
/// Header carrying the CSRF token of a dashboard session on script-made requests.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The operator token and what derives from it.
pub struct OperatorAuth {
    token_digest: [u8; 32],
    session_key: [u8; 32],
    pub failures: Failures,
    /// Set `Secure` on the session cookie (the public URL is https).
    pub secure_cookies: bool,
}

impl OperatorAuth {
    pub fn new(token: &str, secure_cookies: bool) -> Self {
        let mut key = Sha256::new();
        key.update(b"b24flow dashboard session\0");
        key.update(token.as_bytes());
        Self {
            token_digest: Sha256::digest(token.as_bytes()).into(),
            session_key: key.finalize().into(),
            failures: Failures::default(),
            secure_cookies,
        }
    }

    /// Constant-time: both sides are hashed to the same length first.
    pub fn token_matches(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.trim().as_bytes()).into();
        digest.ct_eq(&self.token_digest).into()
    }

    pub fn session_key(&self) -> &[u8; 32] {
        &self.session_key
    }
}

/// A fresh random operator token (when `B24FLOW_OPERATOR_TOKEN` is not set).
pub fn generate_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An authenticated operator; `actor` is what the audit trail records.
#[derive(Clone, Debug)]
pub struct Operator {
    pub actor: String,
}

pub fn client_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// A display name from the client, reduced to harmless characters.
pub fn clean_name(raw: &str) -> Option<String> {
    let name: String = raw
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ' '))
        .take(64)
        .collect();
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(name)
}

fn refused(status: StatusCode, code: &'static str, message: &str) -> ApiError {
    ApiError::new(status, code, message)
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = &state.operator;
        let ip = client_ip(parts);
        if let Some(wait) = auth.failures.blocked_for(ip) {
            return Err(too_many(wait));
        }
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Some(token) = bearer {
            if auth.token_matches(token) {
                let name = parts
                    .headers
                    .get(OPERATOR_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(clean_name)
                    .unwrap_or_else(|| "operator".into());
                return Ok(Operator {
                    actor: format!("{name} via api from {ip}"),
                });
            }
            return Err(failed(auth, ip));
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let session = jar
            .get(SESSION_COOKIE)
            .and_then(|c| Session::verify(auth.session_key(), c.value()));
        let session = match session {
            Some(s) if !s.is_revoked(&state.db).await => Some(s),
            _ => None,
        };
        if let Some(session) = session {
            let safe = matches!(parts.method, Method::GET | Method::HEAD);
            let csrf_ok = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| session.csrf_matches(auth.session_key(), t));
            if safe || csrf_ok {
                return Ok(Operator {
                    actor: format!("{} via dashboard from {ip}", session.name),
                });
            }
            return Err(refused(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                "this action needs the session's CSRF token",
            ));
        }
        Err(refused(
            StatusCode::UNAUTHORIZED,
            "operator_token_required",
            "send the operator token as `Authorization: Bearer <token>`",
        ))
    }
}

/// Records a failed attempt and answers 401, or 429 once the address is over its budget.
pub fn failed(auth: &OperatorAuth, ip: IpAddr) -> ApiError {
    match auth.failures.record(ip) {
        Some(wait) => too_many(wait),
        None => refused(
            StatusCode::UNAUTHORIZED,
            "operator_token_invalid",
            "the operator token is wrong",
        ),
    }
}

pub fn too_many(wait: std::time::Duration) -> ApiError {
    refused(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failed_attempts",
        &format!(
            "too many wrong operator tokens from this address; try again in {} s",
            wait.as_secs().max(1)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let auth = OperatorAuth::new("s3cret-token", false);
        assert!(auth.token_matches("s3cret-token"));
        assert!(!auth.token_matches("s3cret-tokeN"));
        assert!(!auth.token_matches(""));
        assert!(!auth.token_matches("s3cret-token-and-more"));
    }

    #[test]
    fn names_keep_only_harmless_characters() {
        assert_eq!(clean_name("ann <script>").as_deref(), Some("ann script"));
        assert_eq!(clean_name("  \n"), None);
    }
}
