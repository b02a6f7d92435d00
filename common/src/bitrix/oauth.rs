//! OAuth 2.0 refresh against `B24FLOW_OAUTH_URL` (protocol.md §2).
use serde::Deserialize;

use super::body::{read_capped, BodyError, MAX_OAUTH_BODY};
use super::error::B24Error;
use crate::error_kind::{self, ErrorKind};

/// The app's credentials and where its OAuth server is.
#[derive(Clone)]
pub struct OAuthApp {
    pub oauth_url: String,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

impl OAuthApp {
    /// The app's credentials as the configuration gives them.
    pub fn from_config(config: &crate::Config) -> Self {
        Self {
            oauth_url: config.oauth_url.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
        }
    }
}

impl std::fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthApp")
            .field("oauth_url", &self.oauth_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The OAuth server's answer to a refresh (protocol.md §2). Besides the new pair it says
/// which portal and user the token belongs to: the only source we trust for those.
#[derive(Deserialize)]
pub(crate) struct RefreshedTokens {
    pub access_token: String,
    pub refresh_token: String,
    #[serde(default)]
    pub expires_in: Option<serde_json::Value>,
    #[serde(default)]
    pub member_id: Option<String>,
    #[serde(default)]
    pub client_endpoint: Option<String>,
    #[serde(default)]
    pub user_id: Option<serde_json::Value>,
}

/// An install the OAuth server vouched for: the portal and installing user behind the
/// offered refresh token, and the fresh token pair the refresh produced (the offered
/// refresh token is spent).
pub struct InstallProof {
    pub member_id: String,
    pub client_endpoint: String,
    pub user_id: Option<i64>,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

impl std::fmt::Debug for InstallProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallProof")
            .field("member_id", &self.member_id)
            .field("client_endpoint", &self.client_endpoint)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl TryFrom<RefreshedTokens> for InstallProof {
    type Error = B24Error;

    fn try_from(t: RefreshedTokens) -> Result<Self, B24Error> {
        let expires_in = t.expires_in_secs();
        let missing = |what: &str| B24Error::Refresh {
            message: format!("the OAuth server's answer lacks {what}"),
            kind: ErrorKind::Permanent,
        };
        let user_id = t.user_id_number();
        Ok(InstallProof {
            member_id: t
                .member_id
                .filter(|m| !m.is_empty())
                .ok_or_else(|| missing("member_id"))?,
            client_endpoint: t
                .client_endpoint
                .filter(|e| !e.is_empty())
                .ok_or_else(|| missing("client_endpoint"))?,
            user_id,
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            expires_in,
        })
    }
}

impl RefreshedTokens {
    /// The user the OAuth server says the new pair belongs to.
    pub fn user_id_number(&self) -> Option<i64> {
        match &self.user_id {
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn expires_in_secs(&self) -> i64 {
        match &self.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(3600),
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(3600),
            _ => 3600,
        }
    }
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: String,
}

impl OAuthApp {
    /// Exchanges a refresh token for a new pair. The old refresh token is spent afterwards:
    /// the caller must persist the new one before anything else can fail.
    pub(crate) async fn refresh(
        &self,
        http: &reqwest::Client,
        refresh_token: &str,
    ) -> Result<RefreshedTokens, B24Error> {
        let (Some(client_id), Some(client_secret)) = (&self.client_id, &self.client_secret) else {
            return Err(B24Error::Refresh {
                message: "B24FLOW_CLIENT_ID and B24FLOW_CLIENT_SECRET are not set".into(),
                kind: ErrorKind::Permanent,
            });
        };
        // A GET per the docs (protocol.md §2); the query holds secrets, so the URL is never logged.
        let url = format!("{}/oauth/token/", self.oauth_url);
        let response = http
            .get(url)
            .query(&[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .map_err(|e| B24Error::Refresh {
                message: B24Error::transport("oauth", e).to_string(),
                kind: ErrorKind::Transient,
            })?;
        let status = response.status().as_u16();
        let body = read_capped(response, MAX_OAUTH_BODY)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(_) => B24Error::Refresh {
                    message: e.to_string(),
                    kind: ErrorKind::Permanent,
                },
                BodyError::Transport(e) => B24Error::Refresh {
                    message: B24Error::transport("oauth", e).to_string(),
                    kind: ErrorKind::Transient,
                },
            })?;
        if status == 200 {
            if let Ok(tokens) = serde_json::from_slice::<RefreshedTokens>(&body) {
                return Ok(tokens);
            }
        }
        let (code, description) = match serde_json::from_slice::<OAuthErrorBody>(&body) {
            Ok(e) => (e.error, e.error_description),
            Err(_) => (String::new(), format!("HTTP {status}")),
        };
        // invalid_grant: the refresh token is dead, only a reinstall helps; invalid_client:
        // our credentials are wrong. Both need a human, retrying cannot help.
        Err(B24Error::Refresh {
            message: format!("{code}: {description} (HTTP {status})"),
            kind: error_kind::of_http_status(status),
        })
    }
}
