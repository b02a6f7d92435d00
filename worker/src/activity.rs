//! What an activity is: its definition (property and return schema, which also produce the
//! `bizproc.activity.add` registration), and its `run`.
use async_trait::async_trait;
use std::collections::HashMap;

use b24flow_common::bitrix::{B24Error, ErrorKind, PortalClient};
use b24flow_common::db::jobs::Job;
use b24flow_common::db::{DbError, Pool};
use b24flow_common::error_kind::Classify;
use serde_json::{Map, Value};

use crate::schema::{ActivityDef, Lang, Text};
use crate::texts;

/// What a finished run hands to the workflow. Texts are rendered in the portal's language
/// by the runner, in one place.
#[derive(Debug, Default)]
pub struct Output {
    pub return_values: Map<String, Value>,
    pub log_message: Text,
}

/// Why a run did not succeed, and whether trying again can help. The message is what the
/// workflow gets as `error_text`, in the portal's language; logs show it in English.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ActivityError {
    pub kind: ErrorKind,
    pub message: Text,
}

impl ActivityError {
    /// What trying again cannot fix (bad or missing input, an answer that makes no sense):
    /// fail at once, no retries.
    pub fn invalid(message: impl Into<Text>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            message: message.into(),
        }
    }
    pub fn transient(message: impl Into<Text>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }
}

impl From<B24Error> for ActivityError {
    fn from(e: B24Error) -> Self {
        // The client already refreshed once.
        let kind = e.kind().after_refresh();
        let message = match (&e, lacks_right(&e)) {
            (B24Error::Api { method, .. }, true) => texts::access_denied(method, &e.description()),
            _ => Text::from(e.description()),
        };
        Self { kind, message }
    }
}

/// A refusal for the caller's rights (protocol.md §2 "403" codes; CRM items answer
/// `ACCESS_DENIED` with HTTP 400, the legacy CRM proxies an empty code and "Access denied.").
fn lacks_right(e: &B24Error) -> bool {
    let B24Error::Api {
        code, description, ..
    } = e
    else {
        return false;
    };
    matches!(
        code.as_str(),
        "ACCESS_DENIED" | "user_access_error" | "INVALID_CREDENTIALS"
    ) || (code.is_empty()
        && description
            .trim_end_matches('.')
            .eq_ignore_ascii_case("access denied"))
}

impl From<DbError> for ActivityError {
    fn from(e: DbError) -> Self {
        let message = match e {
            // Not a database outage: the words say what it is.
            DbError::Crypto(_) => Text::from(e.to_string()),
            _ => texts::database(&e),
        };
        Self {
            kind: e.kind(),
            message,
        }
    }
}

/// What a run may use.
pub struct RunContext {
    pub b24: PortalClient,
    pub job: Job,
    pub db: Pool,
    /// The process configuration (extra CA file, fetch allow-list, ...).
    pub config: std::sync::Arc<b24flow_common::Config>,
    /// The portal's language: what the workflow's texts are written in.
    pub lang: Lang,
}

/// A REST read whose answer fills select options at registration. The registration job
/// sends the queries of all activities in one batch (identical queries once).
#[derive(Clone, Debug)]
pub struct OptionQuery {
    /// The activity's own name for the answer.
    pub key: &'static str,
    pub method: &'static str,
    pub params: Value,
}

/// Answers to an activity's option queries, by its keys.
pub type OptionAnswers = HashMap<&'static str, Result<Value, B24Error>>;

#[async_trait]
pub trait Activity: Send + Sync {
    fn definition(&self) -> ActivityDef;

    /// Portal reads needed for the registration's select options (CRM dictionaries,
    /// telephony lines...). None by default.
    fn option_queries(&self) -> Vec<OptionQuery> {
        Vec::new()
    }

    /// The definition to register, with options filled from `answers`.
    fn definition_with_options(&self, answers: &OptionAnswers) -> ActivityDef {
        let _ = answers;
        self.definition()
    }

    /// Attempts before a transient failure becomes the workflow's error.
    fn max_attempts(&self) -> i32 {
        b24flow_common::db::jobs::DEFAULT_MAX_ATTEMPTS
    }

    /// True when running it again changes nothing anywhere (it only reads). Its outcome is
    /// then stored with the job's end, after the answer, in one statement: a crash between
    /// the answer and that end runs it again and answers again, which Bitrix24 ignores for
    /// an activity already answered (protocol.md §5.1). False by default: the outcome of
    /// anything else is stored before it is reported, so it never runs twice.
    fn reads_only(&self) -> bool {
        false
    }

    /// Return values sent with an error besides `error_text` (e.g. `result` = `ERROR`).
    fn failure_values(&self) -> Map<String, Value> {
        Map::new()
    }

    async fn run(&self, ctx: &RunContext, input: &Input) -> Result<Output, ActivityError>;
}

/// The call's properties as the workflow gave them (ACTIVITIES.md "Rules for every activity").
pub struct Input {
    values: Map<String, Value>,
}

impl Input {
    pub fn new(properties: &Value) -> Self {
        Self {
            values: properties.as_object().cloned().unwrap_or_default(),
        }
    }

    /// All values of a property: a list, or a single scalar; empty strings dropped.
    pub fn list(&self, key: &str) -> Vec<String> {
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(if *b { "Y" } else { "N" }.to_string()),
            _ => None,
        };
        match self.values.get(key) {
            Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
            Some(Value::Object(map)) => map.values().filter_map(scalar).collect(),
            Some(v) => scalar(v).into_iter().collect(),
            None => Vec::new(),
        }
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
    }

    /// The first value of a property, if set.
    pub fn string(&self, key: &str) -> Option<String> {
        self.list(key).into_iter().next()
    }

    pub fn required_string(&self, key: &str) -> Result<String, ActivityError> {
        self.string(key)
            .ok_or_else(|| ActivityError::invalid(texts::required_empty(key)))
    }

    /// A `user` property: `user_5` or `5`; the first one if several.
    pub fn user(&self, key: &str) -> Result<Option<u64>, ActivityError> {
        let Some(raw) = self.string(key) else {
            return Ok(None);
        };
        parse_user_id(&raw)
            .map(Some)
            .ok_or_else(|| ActivityError::invalid(texts::not_user(key, &raw)))
    }

    pub fn required_user(&self, key: &str) -> Result<u64, ActivityError> {
        self.user(key)?
            .ok_or_else(|| ActivityError::invalid(texts::required_empty(key)))
    }

    /// An integer, tolerant of spaces (`1 000`).
    pub fn int(&self, key: &str) -> Result<Option<i64>, ActivityError> {
        let Some(raw) = self.string(key) else {
            return Ok(None);
        };
        let cleaned: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        cleaned
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ActivityError::invalid(texts::not_whole_number(key, &raw)))
    }

    pub fn required_int(&self, key: &str) -> Result<i64, ActivityError> {
        self.int(key)?
            .ok_or_else(|| ActivityError::invalid(texts::required_empty(key)))
    }

    /// A bool property: `Y`/`N` (also `1`/`0`, `true`/`false`).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ActivityError> {
        let Some(raw) = self.string(key) else {
            return Ok(None);
        };
        match raw.to_ascii_lowercase().as_str() {
            "y" | "1" | "true" | "yes" => Ok(Some(true)),
            "n" | "0" | "false" | "no" => Ok(Some(false)),
            _ => Err(ActivityError::invalid(texts::not_yes_no(key, &raw))),
        }
    }
}

/// `user_5` → 5, `5` → 5.
pub fn parse_user_id(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let digits = raw.strip_prefix("user_").unwrap_or(raw);
    digits.parse::<u64>().ok().filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_secret_sealed_with_another_key_is_a_permanent_error() {
        let e = ActivityError::from(DbError::Crypto(
            b24flow_common::crypto::CryptoError::Undecryptable,
        ));
        assert_eq!(e.kind, ErrorKind::Permanent);
        let b = B24Error::Db(DbError::Crypto(
            b24flow_common::crypto::CryptoError::Undecryptable,
        ));
        assert_eq!(ActivityError::from(b).kind, ErrorKind::Permanent);
    }

    /// Pins the class an activity error takes from its cause: an auth error the client could
    /// not refresh away is retried; a database error is retried unless it is a sealed secret.
    #[test]
    fn activity_errors_keep_the_class_of_their_cause() {
        let api = |status, code: &str| B24Error::Api {
            method: "crm.item.get".into(),
            status,
            code: code.into(),
            description: String::new(),
        };
        let rest: Vec<(B24Error, ErrorKind)> = vec![
            (api(401, "expired_token"), ErrorKind::Transient),
            (api(503, "QUERY_LIMIT_EXCEEDED"), ErrorKind::Transient),
            (api(400, "ACCESS_DENIED"), ErrorKind::Permanent),
            (api(400, "ERROR_CORE"), ErrorKind::Permanent),
            (B24Error::NotInstalled(1), ErrorKind::Permanent),
            (B24Error::PortalChanged(1), ErrorKind::Transient),
        ];
        for (error, kind) in rest {
            let described = format!("{error:?}");
            assert_eq!(ActivityError::from(error).kind, kind, "{described}");
        }
        let database: Vec<(DbError, ErrorKind)> = vec![
            (
                DbError::Crypto(b24flow_common::crypto::CryptoError::Undecryptable),
                ErrorKind::Permanent,
            ),
            (DbError::Config("x".into()), ErrorKind::Transient),
            (DbError::Migrate("x".into()), ErrorKind::Transient),
            (DbError::Timeout("x"), ErrorKind::Transient),
        ];
        for (error, kind) in database {
            let described = format!("{error:?}");
            assert_eq!(ActivityError::from(error).kind, kind, "{described}");
        }
    }

    #[test]
    fn user_values_take_both_forms_and_the_first_of_many() {
        let input = Input::new(
            &json!({"a": "user_5", "b": "7", "c": ["user_9", "user_3"], "d": "group_1", "e": ""}),
        );
        assert_eq!(input.user("a").unwrap(), Some(5));
        assert_eq!(input.user("b").unwrap(), Some(7));
        assert_eq!(input.user("c").unwrap(), Some(9));
        assert!(input.user("d").is_err());
        assert_eq!(input.user("e").unwrap(), None);
        assert!(input.required_user("e").is_err());
    }

    #[test]
    fn input_errors_read_in_either_language() {
        let input = Input::new(&json!({"n": "many", "u": "group_1"}));
        let empty = input.required_string("missing").unwrap_err().message;
        assert_eq!(
            empty.get(Lang::Ru),
            "не заполнено обязательное свойство missing"
        );
        assert_eq!(
            empty.get(Lang::En),
            "the required property missing is empty"
        );
        let number = input.int("n").unwrap_err().message;
        assert_eq!(number.get(Lang::Ru), "n: «many» — не целое число");
        let user = input.user("u").unwrap_err().message;
        assert!(user.get(Lang::Ru).contains("не пользователь"), "{user:?}");
        assert!(user.get(Lang::En).contains("is not a user"), "{user:?}");
    }

    #[test]
    fn numbers_tolerate_spaces_and_bools_take_y_n() {
        let input = Input::new(&json!({"n": " 1 000 ", "b": "Y", "x": "maybe"}));
        assert_eq!(input.int("n").unwrap(), Some(1000));
        assert_eq!(input.bool("b").unwrap(), Some(true));
        assert!(input.bool("x").is_err());
    }
}
