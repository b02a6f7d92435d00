//! The one job filter every list and bulk action uses, as a static SQL condition with
//! fixed parameters (`$1`..`$7`), so the query plan and the escaping never vary.
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A job state, or `retrying`: queued again after a transient error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFilter {
    Queued,
    Retrying,
    Running,
    Succeeded,
    Failed,
    Discarded,
}

impl StateFilter {
    pub const ALL: [StateFilter; 6] = [
        StateFilter::Queued,
        StateFilter::Retrying,
        StateFilter::Running,
        StateFilter::Succeeded,
        StateFilter::Failed,
        StateFilter::Discarded,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Queued => "queued",
            StateFilter::Retrying => "retrying",
            StateFilter::Running => "running",
            StateFilter::Succeeded => "succeeded",
            StateFilter::Failed => "failed",
            StateFilter::Discarded => "discarded",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// Why a job is not a success, from an operator's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// A transient fault; the job is queued for another attempt.
    Transient,
    /// The activity failed and the workflow got the error.
    Activity,
    /// The workflow could not be answered (`bizproc.event.send` kept failing).
    Unanswered,
    /// Registering the activities on a portal failed.
    Registration,
    /// An operator discarded the job.
    Operator,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 5] = [
        ErrorClass::Transient,
        ErrorClass::Activity,
        ErrorClass::Unanswered,
        ErrorClass::Registration,
        ErrorClass::Operator,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Activity => "activity",
            ErrorClass::Unanswered => "unanswered",
            ErrorClass::Registration => "registration",
            ErrorClass::Operator => "operator",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// The SQL of [`ErrorClass`] over a `jobs` row aliased `j`.
pub(super) const ERROR_CLASS_SQL: &str = "CASE
    WHEN j.state = 'discarded' THEN 'operator'
    WHEN j.state = 'queued' AND j.last_error IS NOT NULL THEN 'transient'
    WHEN j.state = 'failed' AND j.kind = 'register' THEN 'registration'
    WHEN j.state = 'failed' AND j.last_error LIKE 'bizproc.event.send:%' THEN 'unanswered'
    WHEN j.state = 'failed' THEN 'activity'
END";

/// Jobs an operator may send round again: queued ones (run now), and failed ones whose
/// workflow never got an answer. A workflow that got its answer has moved on. A failed
/// job without an error text is not actionable (true or false, never NULL).
pub(super) const ACTIONABLE_SQL: &str = "(j.state = 'queued' OR (j.state = 'failed'
    AND (j.kind = 'register' OR COALESCE(j.last_error LIKE 'bizproc.event.send:%', false))))";

/// Conditions over `jobs j JOIN portals p`; parameters `$1`..`$7` come from [`JobFilter::params`].
pub(super) fn where_sql() -> String {
    format!(
        "($1::text IS NULL OR p.id::text = $1 OR p.domain = $1 OR p.member_id = $1)
    AND ($2::text IS NULL OR j.code = $2)
    AND ($3::text IS NULL OR CASE WHEN $3 = 'retrying'
             THEN j.state = 'queued' AND j.last_error IS NOT NULL ELSE j.state = $3 END)
    AND ($4::text IS NULL OR ({ERROR_CLASS_SQL}) = $4)
    AND ($5::timestamptz IS NULL OR j.created_at >= $5)
    AND ($6::timestamptz IS NULL OR j.created_at < $6)
    AND ($7::text IS NULL OR j.last_error ILIKE $7 OR j.code ILIKE $7 OR j.workflow_id ILIKE $7
         OR j.id::text ILIKE $7 OR j.document_id::text ILIKE $7
         OR j.outcome->>'error_text' ILIKE $7)"
    )
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobFilter {
    /// Portal id, domain or member_id.
    pub portal: Option<String>,
    /// Activity code (`register` for registration jobs).
    pub activity: Option<String>,
    pub state: Option<StateFilter>,
    pub error_class: Option<ErrorClass>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Case-insensitive text in the error, code, workflow id, job id or document id.
    pub text: Option<String>,
}

/// The owned values of `$1`..`$7`.
pub(super) struct FilterParams {
    portal: Option<String>,
    activity: Option<String>,
    state: Option<&'static str>,
    error_class: Option<&'static str>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    text: Option<String>,
}

impl FilterParams {
    pub(super) fn refs(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 7] {
        [
            &self.portal,
            &self.activity,
            &self.state,
            &self.error_class,
            &self.since,
            &self.until,
            &self.text,
        ]
    }
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl JobFilter {
    pub(super) fn params(&self) -> FilterParams {
        FilterParams {
            portal: non_empty(&self.portal),
            activity: non_empty(&self.activity),
            state: self.state.map(StateFilter::as_str),
            error_class: self.error_class.map(ErrorClass::as_str),
            since: self.since,
            until: self.until,
            text: non_empty(&self.text).map(|t| format!("%{}%", escape_like(&t))),
        }
    }

    /// True when nothing narrows the set (bulk actions refuse that).
    pub fn is_empty(&self) -> bool {
        let p = self.params();
        p.portal.is_none()
            && p.activity.is_none()
            && p.state.is_none()
            && p.error_class.is_none()
            && p.since.is_none()
            && p.until.is_none()
            && p.text.is_none()
    }
}

/// `ILIKE` treats `%`, `_` and `\` specially; a search for them means the characters.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where a page of the job list ends: the last row's `(created_at, id)`, opaque to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let raw = format!("{}.{}", self.created_at.timestamp_micros(), self.id);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }
    pub fn decode(s: &str) -> Option<Self> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (micros, id) = raw.split_once('.')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_the_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("time"),
            id: Uuid::new_v4(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("not a cursor"), None);
        assert_eq!(Cursor::decode(""), None);
    }

    #[test]
    fn like_wildcards_in_a_search_are_taken_literally() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }
}
