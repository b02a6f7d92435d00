//! The one place where errors are sorted by what the caller should do about them: try again
//! later, give up, or refresh the token. The REST client's [`B24Error`], Postgres'
//! [`DbError`] and an SMTP exchange's [`SmtpFault`] map into an [`ErrorKind`] here, by the
//! rules below and nowhere else; callers only ask [`Classify::kind`].
use serde::Serialize;

use crate::bitrix::B24Error;
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

impl ErrorKind {
    /// The class once the client has refreshed the token and tried again: an auth error that
    /// survives the refresh is retried like any transient fault, bounded by the job's attempts.
    pub fn after_refresh(self) -> ErrorKind {
        match self {
            ErrorKind::Auth => ErrorKind::Transient,
            kind => kind,
        }
    }
}

/// An error that knows its [`ErrorKind`].
pub trait Classify {
    fn kind(&self) -> ErrorKind;
}

/// A Bitrix24 answer by its HTTP status and error code (protocol.md §2, §6.3, §7).
pub fn of_rest_answer(status: u16, code: &str) -> ErrorKind {
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

/// An HTTP answer whose body says nothing we can read (a REST call or the OAuth server):
/// only server trouble and rate limits are worth another try. Status 0 stands for "no
/// status at all".
pub fn of_http_status(status: u16) -> ErrorKind {
    if status >= 500 || status == 429 || status == 0 {
        ErrorKind::Transient
    } else {
        ErrorKind::Permanent
    }
}

impl Classify for B24Error {
    fn kind(&self) -> ErrorKind {
        match self {
            B24Error::Api { status, code, .. } => of_rest_answer(*status, code),
            B24Error::Transport { .. } => ErrorKind::Transient,
            B24Error::BadResponse { status, .. } => of_http_status(*status),
            B24Error::Refresh { kind, .. } => *kind,
            B24Error::NotInstalled(_) => ErrorKind::Permanent,
            B24Error::PortalChanged(_) => ErrorKind::Transient,
            B24Error::TooLarge { .. } => ErrorKind::Permanent,
            B24Error::Db(e) => e.kind(),
        }
    }
}

impl Classify for DbError {
    fn kind(&self) -> ErrorKind {
        match self {
            // A stored secret that cannot be decrypted (wrong key) stays undecryptable.
            DbError::Crypto(_) => ErrorKind::Permanent,
            DbError::Pool(_)
            | DbError::Pg(_)
            | DbError::Config(_)
            | DbError::Migrate(_)
            | DbError::Timeout(_) => ErrorKind::Transient,
        }
    }
}

/// What went wrong talking to an SMTP server, in the terms the rules need; the SMTP
/// library's errors are read into this next to the conversation (`smtp_send::transport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpFault {
    /// A 4xx reply.
    TemporaryReply,
    /// A 5xx reply.
    PermanentReply,
    /// Stopped on our side: a command that cannot be built, TLS that cannot be set up, a
    /// certificate that does not verify.
    RefusedHere,
    /// A reply that cannot be read; to AUTH it is still a refused login.
    UnreadableReply { to_auth: bool },
    /// The connection failed, was lost or did not answer in time.
    Network,
    /// The connection failed after the message was handed over, so it may have been
    /// delivered: better no retry than a duplicate (RFC 1047).
    MaybeDelivered,
    /// The server lacks what the message needs (STARTTLS, SMTPUTF8).
    Unsupported,
    /// Our own configuration or outbound policy says no, and will say it again.
    Refused,
    /// The server's name does not resolve now; it may later.
    Unresolvable,
}

impl Classify for SmtpFault {
    fn kind(&self) -> ErrorKind {
        match self {
            SmtpFault::TemporaryReply
            | SmtpFault::UnreadableReply { to_auth: false }
            | SmtpFault::Network
            | SmtpFault::Unresolvable => ErrorKind::Transient,
            SmtpFault::PermanentReply
            | SmtpFault::RefusedHere
            | SmtpFault::UnreadableReply { to_auth: true }
            | SmtpFault::MaybeDelivered
            | SmtpFault::Unsupported
            | SmtpFault::Refused => ErrorKind::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CryptoError;

    #[test]
    fn protocol_errors_fall_into_their_classes() {
        assert_eq!(of_rest_answer(401, "expired_token"), ErrorKind::Auth);
        assert_eq!(of_rest_answer(401, "invalid_token"), ErrorKind::Auth);
        assert_eq!(
            of_rest_answer(503, "QUERY_LIMIT_EXCEEDED"),
            ErrorKind::Transient
        );
        assert_eq!(
            of_rest_answer(429, "QUERY_LIMIT_EXCEEDED"),
            ErrorKind::Transient
        );
        assert_eq!(
            of_rest_answer(429, "OPERATION_TIME_LIMIT"),
            ErrorKind::Transient
        );
        assert_eq!(of_rest_answer(400, "423"), ErrorKind::Transient);
        assert_eq!(
            of_rest_answer(500, "INTERNAL_SERVER_ERROR"),
            ErrorKind::Transient
        );
        assert_eq!(of_rest_answer(403, "ACCESS_DENIED"), ErrorKind::Permanent);
        assert_eq!(of_rest_answer(400, "404"), ErrorKind::Permanent);
        assert_eq!(
            of_rest_answer(404, "ERROR_METHOD_NOT_FOUND"),
            ErrorKind::Permanent
        );
        assert_eq!(of_rest_answer(400, "ERROR_CORE"), ErrorKind::Permanent);
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
            (
                B24Error::Db(DbError::Config("x".into())),
                ErrorKind::Transient,
            ),
            (
                B24Error::Db(DbError::Migrate("x".into())),
                ErrorKind::Transient,
            ),
            (B24Error::Db(DbError::Timeout("x")), ErrorKind::Transient),
        ];
        for (error, kind) in table {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }

    #[test]
    fn database_errors_are_retried_unless_a_secret_is_sealed_with_another_key() {
        let table: Vec<(DbError, ErrorKind)> = vec![
            (
                DbError::Crypto(CryptoError::Undecryptable),
                ErrorKind::Permanent,
            ),
            (DbError::Config("x".into()), ErrorKind::Transient),
            (DbError::Migrate("x".into()), ErrorKind::Transient),
            (DbError::Timeout("x"), ErrorKind::Transient),
        ];
        for (error, kind) in table {
            assert_eq!(error.kind(), kind, "{error:?}");
        }
    }

    /// The classes `smtp_send::transport` gave each failure before the rules moved here.
    #[test]
    fn smtp_faults_keep_their_classes() {
        let table = [
            (SmtpFault::TemporaryReply, ErrorKind::Transient),
            (SmtpFault::PermanentReply, ErrorKind::Permanent),
            (SmtpFault::RefusedHere, ErrorKind::Permanent),
            (
                SmtpFault::UnreadableReply { to_auth: true },
                ErrorKind::Permanent,
            ),
            (
                SmtpFault::UnreadableReply { to_auth: false },
                ErrorKind::Transient,
            ),
            (SmtpFault::Network, ErrorKind::Transient),
            (SmtpFault::MaybeDelivered, ErrorKind::Permanent),
            (SmtpFault::Unsupported, ErrorKind::Permanent),
            (SmtpFault::Refused, ErrorKind::Permanent),
            (SmtpFault::Unresolvable, ErrorKind::Transient),
        ];
        for (fault, kind) in table {
            assert_eq!(fault.kind(), kind, "{fault:?}");
        }
    }

    #[test]
    fn only_an_auth_error_changes_class_after_the_refresh() {
        assert_eq!(ErrorKind::Auth.after_refresh(), ErrorKind::Transient);
        assert_eq!(ErrorKind::Transient.after_refresh(), ErrorKind::Transient);
        assert_eq!(ErrorKind::Permanent.after_refresh(), ErrorKind::Permanent);
    }
}
