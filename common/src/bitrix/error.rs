//! The REST client's errors. Which of them are worth another try is decided in
//! [`crate::error_kind`].
use crate::db::DbError;
use crate::error_kind::{Classify, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum B24Error {
    #[error("{method}: {code} (HTTP {status}): {description}")]
    Api {
        method: String,
        status: u16,
        code: String,
        description: String,
    },
    #[error("{method}: request failed: {message}")]
    Transport { method: String, message: String },
    #[error("{method}: unreadable answer (HTTP {status})")]
    BadResponse { method: String, status: u16 },
    #[error("OAuth refresh failed: {message}")]
    Refresh { message: String, kind: ErrorKind },
    #[error("portal {0} is not installed or has no tokens")]
    NotInstalled(i64),
    /// A reinstall or uninstall changed the portal while we held its old endpoint or tokens.
    #[error("portal {0} was reinstalled or uninstalled meanwhile")]
    PortalChanged(i64),
    #[error("{method}: the answer is larger than {limit} bytes")]
    TooLarge { method: String, limit: usize },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The HTTP status Bitrix24 answers a code with when the call is made on its own; a batch's
/// `result_error` carries only the code (protocol.md §2, §6.3, §7).
pub(crate) fn status_of_code(code: &str) -> u16 {
    match code {
        "expired_token" | "invalid_token" | "NO_AUTH_FOUND" => 401,
        "ACCESS_DENIED" | "insufficient_scope" | "user_access_error" | "INVALID_CREDENTIALS" => 403,
        "ERROR_METHOD_NOT_FOUND" => 404,
        "OPERATION_TIME_LIMIT" => 429,
        "INTERNAL_SERVER_ERROR" => 500,
        "QUERY_LIMIT_EXCEEDED" | "OVERLOAD_LIMIT" => 503,
        _ => 400,
    }
}

impl B24Error {
    /// The same error for another waiter of one shared request.
    pub(crate) fn duplicate(&self) -> B24Error {
        match self {
            B24Error::Api {
                method,
                status,
                code,
                description,
            } => B24Error::Api {
                method: method.clone(),
                status: *status,
                code: code.clone(),
                description: description.clone(),
            },
            B24Error::Transport { method, message } => B24Error::Transport {
                method: method.clone(),
                message: message.clone(),
            },
            B24Error::BadResponse { method, status } => B24Error::BadResponse {
                method: method.clone(),
                status: *status,
            },
            B24Error::Refresh { message, kind } => B24Error::Refresh {
                message: message.clone(),
                kind: *kind,
            },
            B24Error::NotInstalled(id) => B24Error::NotInstalled(*id),
            B24Error::PortalChanged(id) => B24Error::PortalChanged(*id),
            B24Error::TooLarge { method, limit } => B24Error::TooLarge {
                method: method.clone(),
                limit: *limit,
            },
            // Still a database error (nothing was sent); the words are kept.
            B24Error::Db(e) => B24Error::Db(crate::db::DbError::Config(e.to_string())),
        }
    }

    /// Its class (see [`crate::error_kind`]), without importing [`Classify`].
    pub fn kind(&self) -> ErrorKind {
        Classify::kind(self)
    }

    /// The Bitrix24 error code, when the portal gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            B24Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The portal's own words, for `error_text` shown in the workflow.
    pub fn description(&self) -> String {
        match self {
            B24Error::Api {
                code, description, ..
            } if !description.is_empty() => {
                if code.is_empty() {
                    description.clone()
                } else {
                    format!("{description} ({code})")
                }
            }
            other => other.to_string(),
        }
    }

    pub(crate) fn transport(method: &str, err: reqwest::Error) -> Self {
        // without_url: some URLs (OAuth, Disk downloads) carry secrets in the query.
        let message = if err.is_timeout() {
            "timed out".to_string()
        } else {
            err.without_url().to_string()
        };
        B24Error::Transport {
            method: method.to_string(),
            message,
        }
    }
}
