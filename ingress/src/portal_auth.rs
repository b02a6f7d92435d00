//! Who may speak for a portal. An install (page or `ONAPPINSTALL`) is believed only when the
//! OAuth server, not the caller, says whose refresh token it carries; calls and events are
//! believed only with the `application_token` such an install stored (protocol.md §1.4, §2).
//! Nothing here sends a request to an address a caller chose.
use axum::http::StatusCode;
use b24flow_common::bitrix::{ErrorKind, InstallProof};
use b24flow_common::db::portals::{self, Installation, Portal};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::enqueue;
use crate::error::ApiError;
use crate::AppState;

/// What an install request claims; nothing of it is trusted until the OAuth server agrees.
pub(crate) struct InstallClaim {
    pub member_id: String,
    pub client_endpoint: String,
    pub application_token: Option<String>,
    pub refresh_token: String,
    /// The portal's language (`LANG`, `data[LANGUAGE_ID]`): option titles are registered in it.
    pub language: Option<String>,
    /// "install page" or "ONAPPINSTALL", for the logs.
    pub source: &'static str,
}

pub(crate) enum InstallOutcome {
    Installed,
    /// The same install delivered again (page and event), recognised by its
    /// `application_token`; nothing changed.
    AlreadyInstalled,
}

/// Confirms the install with the OAuth server, stores the portal as the OAuth server
/// describes it and enqueues the registration of every activity.
pub(crate) async fn install(
    state: &AppState,
    claim: InstallClaim,
) -> Result<InstallOutcome, ApiError> {
    let proof = match state.bitrix.confirm_install(&claim.refresh_token).await {
        Ok(proof) => proof,
        Err(e) if e.kind() == ErrorKind::Transient => {
            tracing::warn!(claimed.member_id = %claim.member_id, source = claim.source, error = %e, "install not confirmed: the OAuth server is unreachable");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "oauth_unavailable",
                "Bitrix24's OAuth server could not be asked about this install; install again in a minute",
            ));
        }
        Err(e) => {
            if is_repeated_delivery(state, &claim).await? {
                tracing::info!(portal.member_id = %claim.member_id, source = claim.source, "install delivered again; already confirmed");
                return Ok(InstallOutcome::AlreadyInstalled);
            }
            tracing::warn!(claimed.member_id = %claim.member_id, source = claim.source, error = %e, "install refused: the OAuth server did not confirm its refresh token");
            return Err(not_confirmed());
        }
    };
    if proof.member_id != claim.member_id
        || host_of(&proof.client_endpoint) != host_of(&claim.client_endpoint)
    {
        tracing::warn!(
            claimed.member_id = %claim.member_id,
            claimed.endpoint = %claim.client_endpoint,
            confirmed.member_id = %proof.member_id,
            confirmed.endpoint = %proof.client_endpoint,
            source = claim.source,
            "install refused: it does not match what the OAuth server says"
        );
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "install_mismatch",
            "this install does not match what Bitrix24's OAuth server says about its token",
        ));
    }
    let claim_language = claim.language.clone();
    let installation = installation_from(proof, claim.application_token, claim.language)?;
    let client = state.db.get().await?;
    let portal = portals::upsert_installed(&client, &state.config.secrets, &installation).await?;
    drop(client);
    tracing::info!(
        portal.member_id = %portal.member_id,
        portal.domain = %portal.domain,
        portal.generation = portal.install_generation,
        has_application_token = portal.application_token.is_some(),
        source = claim.source,
        "portal installed"
    );
    enqueue::registration(state, portal.id, json!({ "lang": claim_language })).await?;
    Ok(InstallOutcome::Installed)
}

fn not_confirmed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "install_not_confirmed",
        "Bitrix24's OAuth server did not confirm this install",
    )
}

/// Bitrix24 may deliver one install twice (the page and `ONAPPINSTALL`) with one refresh
/// token, which the first delivery spent. The second is recognised by the
/// `application_token` the first one stored: a secret only the portal and we know.
async fn is_repeated_delivery(state: &AppState, claim: &InstallClaim) -> Result<bool, ApiError> {
    let Some(given) = claim.application_token.as_deref() else {
        return Ok(false);
    };
    let client = state.db.get().await?;
    let Some(portal) = portals::find_by_member_id(&client, &claim.member_id).await? else {
        return Ok(false);
    };
    Ok(portal.is_installed()
        && token_matches(portal.application_token.as_deref(), given)
        && host_of(&portal.client_endpoint) == host_of(&claim.client_endpoint))
}

fn installation_from(
    proof: InstallProof,
    application_token: Option<String>,
    language: Option<String>,
) -> Result<Installation, ApiError> {
    // The OAuth answer's `domain` is the OAuth server itself (protocol.md §2); the portal's
    // domain is the host of its confirmed endpoint.
    let client_endpoint = validate_endpoint(&proof.client_endpoint).map_err(|_| {
        tracing::warn!(confirmed.endpoint = %proof.client_endpoint, "the OAuth server gave an unusable client_endpoint");
        not_confirmed()
    })?;
    let domain = host_of(&client_endpoint).unwrap_or_default();
    Ok(Installation {
        member_id: proof.member_id,
        domain,
        client_endpoint,
        application_token,
        installer_user_id: proof.user_id,
        language: language.filter(|l| l.len() <= 8 && l.chars().all(|c| c.is_ascii_alphabetic())),
        access_token: proof.access_token,
        refresh_token: proof.refresh_token,
        expires_in: proof.expires_in,
    })
}

/// `host[:port]`, lower case: what must agree between a claim and the OAuth server's answer.
fn host_of(endpoint: &str) -> Option<String> {
    let url = url::Url::parse(endpoint).ok()?;
    let host = url.host_str()?.to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// `PROTOCOL` 0 = http, 1 = https; `DOMAIN` is a bare host with an optional port.
pub(crate) fn endpoint_for(domain: &str, protocol: Option<&str>) -> Result<String, ApiError> {
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if !valid {
        return Err(ApiError::bad_request(
            "invalid_domain",
            "DOMAIN must be a host name, optionally with a port",
        ));
    }
    let scheme = if protocol == Some("0") {
        "http"
    } else {
        "https"
    };
    Ok(format!("{scheme}://{domain}/rest/"))
}

pub(crate) fn validate_endpoint(endpoint: &str) -> Result<String, ApiError> {
    let ok = (endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        && endpoint.ends_with("/rest/")
        && endpoint.len() <= 300
        && !endpoint.contains(['?', '#', '@'])
        && host_of(endpoint).is_some();
    if ok {
        Ok(endpoint.to_string())
    } else {
        Err(ApiError::bad_request(
            "invalid_endpoint",
            "client_endpoint must be an http(s) URL ending in /rest/",
        ))
    }
}

pub(crate) fn token_matches(stored: Option<&str>, given: &str) -> bool {
    stored.is_some_and(|s| bool::from(s.as_bytes().ct_eq(given.as_bytes())))
}

/// Compares `auth[application_token]` with the one a confirmed install stored (§1.4).
pub(crate) fn verify_application_token(portal: &Portal, given: &str) -> Result<(), ApiError> {
    match portal.application_token.as_deref() {
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "application_token_missing",
            "b24flow has no application_token for this portal because its install did not carry one; \
             reinstall the app in Bitrix24 (Applications → b24flow → Reinstall) to repair it",
        )),
        Some(_) if token_matches(portal.application_token.as_deref(), given) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_application_token",
            "application_token does not match this portal",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_compare_without_case_scheme_or_path() {
        assert_eq!(
            host_of("https://Acme.Bitrix24.com/rest/"),
            host_of("http://acme.bitrix24.com/rest/")
        );
        assert_ne!(
            host_of("http://127.0.0.1:8001/rest/"),
            host_of("http://127.0.0.1:8002/rest/")
        );
        assert_eq!(host_of("not a url"), None);
    }

    #[test]
    fn endpoints_with_credentials_or_queries_are_refused() {
        assert!(validate_endpoint("https://a.bitrix24.com/rest/").is_ok());
        assert!(validate_endpoint("https://user@evil/rest/").is_err());
        assert!(validate_endpoint("https://a.bitrix24.com/rest/?x=1/rest/").is_err());
        assert!(validate_endpoint("ftp://a.bitrix24.com/rest/").is_err());
    }
}
