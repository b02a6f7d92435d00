use serde::Serialize;

use crate::db::DbError;

/// What the caller should do about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Try again later (network, 5xx, limits, locks).
    Transient,
    /// Retrying cannot help (bad input, missing rights, not found).
    Permanent,
    /// The token is not accepted: refresh it once, then retry.
    Auth,
}

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

/// Maps an HTTP status and a Bitrix24 error code to a kind (protocol.md §2, §6.3, §7).
pub fn classify(status: u16, code: &str) -> ErrorKind {
    match code {
        "expired_token" | "invalid_token" | "NO_AUTH_FOUND" => return ErrorKind::Auth,
        // Rate limits: 503 now, 429 in older docs (protocol.md §8.1); per-method time limit.
        "QUERY_LIMIT_EXCEEDED" | "OPERATION_TIME_LIMIT" | "OVERLOAD_LIMIT" => {
            return ErrorKind::Transient
        }
        // The workflow instance is locked (protocol.md §5.1).
        "423" => return ErrorKind::Transient,
        "INTERNAL_SERVER_ERROR" | "ERROR_UNEXPECTED_ANSWER" => return ErrorKind::Transient,
        _ => {}
    }
    match status {
        401 => ErrorKind::Auth,
        408 | 423 | 425 | 429 => ErrorKind::Transient,
        s if s >= 500 => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
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

    pub fn kind(&self) -> ErrorKind {
        match self {
            B24Error::Api { status, code, .. } => classify(*status, code),
            B24Error::Transport { .. } => ErrorKind::Transient,
            B24Error::BadResponse { status, .. } => {
                if *status >= 500 || *status == 429 || *status == 0 {
                    ErrorKind::Transient
                } else {
                    ErrorKind::Permanent
                }
            }
            B24Error::Refresh { kind, .. } => *kind,
            B24Error::NotInstalled(_) => ErrorKind::Permanent,
            B24Error::PortalChanged(_) => ErrorKind::Transient,
            B24Error::TooLarge { .. } => ErrorKind::Permanent,
            // A stored token that cannot be decrypted (wrong key) stays undecryptable.
            B24Error::Db(DbError::Crypto(_)) => ErrorKind::Permanent,
            B24Error::Db(_) => ErrorKind::Transient,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_errors_fall_into_their_classes() {
        assert_eq!(classify(401, "expired_token"), ErrorKind::Auth);
        assert_eq!(classify(401, "invalid_token"), ErrorKind::Auth);
        assert_eq!(classify(503, "QUERY_LIMIT_EXCEEDED"), ErrorKind::Transient);
        assert_eq!(classify(429, "QUERY_LIMIT_EXCEEDED"), ErrorKind::Transient);
        assert_eq!(classify(429, "OPERATION_TIME_LIMIT"), ErrorKind::Transient);
        assert_eq!(classify(400, "423"), ErrorKind::Transient);
        assert_eq!(classify(500, "INTERNAL_SERVER_ERROR"), ErrorKind::Transient);
        assert_eq!(classify(403, "ACCESS_DENIED"), ErrorKind::Permanent);
        assert_eq!(classify(400, "404"), ErrorKind::Permanent);
        assert_eq!(
            classify(404, "ERROR_METHOD_NOT_FOUND"),
            ErrorKind::Permanent
        );
        assert_eq!(classify(400, "ERROR_CORE"), ErrorKind::Permanent);
    }

    fn api(status: u16, code: &str) -> B24Error {
        B24Error::Api {
            method: "crm.item.get".into(),
            status,
            code: code.into(),
            description: String::new(),
        }
    }

    fn bad_response(status: u16) -> B24Error {
        B24Error::BadResponse {
            method: "crm.item.get".into(),
            status,
        }
    }

    /// Pins how every kind of client error is classified, so moving the rules changes none.
    #[test]
    fn every_client_error_keeps_its_class() {
        use crate::crypto::CryptoError;
        let refresh = |kind| B24Error::Refresh {
            message: "x".into(),
            kind,
        };
        let table: Vec<(B24Error, ErrorKind)> = vec![
            (api(401, "expired_token"), ErrorKind::Auth),
            (api(401, ""), ErrorKind::Auth),
            (api(400, "NO_AUTH_FOUND"), ErrorKind::Auth),
            (api(400, "QUERY_LIMIT_EXCEEDED"), ErrorKind::Transient),
            (api(400, "OVERLOAD_LIMIT"), ErrorKind::Transient),
            (api(400, "ERROR_UNEXPECTED_ANSWER"), ErrorKind::Transient),
            (api(408, ""), ErrorKind::Transient),
            (api(423, ""), ErrorKind::Transient),
            (api(425, ""), ErrorKind::Transient),
            (api(429, ""), ErrorKind::Transient),
            (api(502, "ERROR_CORE"), ErrorKind::Transient),
            (api(200, "ERROR_CORE"), ErrorKind::Permanent),
            (api(403, "insufficient_scope"), ErrorKind::Permanent),
            (
                B24Error::Transport {
                    method: "m".into(),
                    message: "timed out".into(),
                },
                ErrorKind::Transient,
            ),
            (bad_response(0), ErrorKind::Transient),
            (bad_response(200), ErrorKind::Permanent),
            (bad_response(404), ErrorKind::Permanent),
            (bad_response(429), ErrorKind::Transient),
            (bad_response(500), ErrorKind::Transient),
            (refresh(ErrorKind::Permanent), ErrorKind::Permanent),
            (refresh(ErrorKind::Transient), ErrorKind::Transient),
            (refresh(ErrorKind::Auth), ErrorKind::Auth),
            (B24Error::NotInstalled(1), ErrorKind::Permanent),
            (B24Error::PortalChanged(1), ErrorKind::Transient),
            (
                B24Error::TooLarge {
                    method: "m".into(),
                    limit: 1,
                },
                ErrorKind::Permanent,
            ),
            (
                B24Error::Db(DbError::Crypto(CryptoError::Undecryptable)),
                ErrorKind::Permanent,
            ),
            (B24Error::Db(DbError::Config("x".into())), ErrorKind::Transient),
            (B24Error::Db(DbError::Migrate("x".into())), ErrorKind::Transient),
            (B24Error::Db(DbError::Timeout("x")), ErrorKind::Transient),
        ];
        for (error, kind) in table {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }
}
