//! What one job attempt asked of its portal, for operators: per REST command its method,
//! outcome, duration and whether it left alone, in the job's own batch or in a batch shared
//! with other jobs. Kept in memory while the attempt runs (a task-local handle, so every
//! activity and the report are covered without passing it around) and stored once at the
//! end of the attempt by the worker. Only names, codes and numbers: never parameters,
//! answers, tokens or error descriptions (those may echo input).
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::batch::BatchResult;
use super::error::{status_of_code, B24Error};

/// Commands kept per attempt unless configured otherwise; the rest are only counted.
pub const DEFAULT_CALLS_PER_ATTEMPT: usize = 50;
/// A Bitrix24 error code is short; anything longer is cut (it is not ours to trust).
const MAX_CODE_CHARS: usize = 64;
const MAX_METHOD_CHARS: usize = 80;

/// How the command left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// A call as its own HTTP request.
    Alone,
    /// One command of the job's own `batch`.
    OwnBatch,
    /// In one `batch` shared with other jobs' commands (cross-job batching).
    SharedBatch,
    /// Never left this process (the limiter could not be read, the request was dropped).
    NotSent,
}

/// What came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Bitrix24 answered with an error code (`code`).
    Error,
    /// An answer that is neither a result nor a Bitrix24 error (`status` says which HTTP status).
    BadResponse,
    Transport,
    TooLarge,
    /// The batch halted or skipped it: no result and no error of its own.
    NotRun,
    /// Failed before any request (tokens, install, database).
    Local,
}

/// One REST command of an attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestCall {
    /// When the job asked for it.
    pub at: DateTime<Utc>,
    pub method: String,
    pub outcome: Outcome,
    /// The Bitrix24 error code, when it answered with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The HTTP status when known (for a command of a batch, the status its code has alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// From asking to the answer, the wait for the portal's limiter included.
    pub duration_ms: u64,
    pub request: Request,
    /// Other commands in the same HTTP request (the job's own or other jobs').
    pub others: u32,
    /// Times the request was sent: more than 1 after the portal refused it for its rate.
    pub sends: u32,
}

/// An attempt's REST commands, the first `cap` of them, and how many more there were.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RestCalls {
    pub calls: Vec<RestCall>,
    pub omitted: u32,
}

impl RestCalls {
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.omitted == 0
    }
}

/// The recorder of one attempt; cheap to clone.
#[derive(Clone)]
pub struct CallLog {
    calls: Arc<Mutex<RestCalls>>,
    cap: usize,
    /// Stored with the job's end (so the worker does not store it again after the attempt).
    stored: Arc<AtomicBool>,
}

tokio::task_local! {
    static CURRENT: CallLog;
}

impl CallLog {
    pub fn new(cap: usize) -> Self {
        Self {
            calls: Arc::new(Mutex::new(RestCalls::default())),
            cap,
            stored: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs `work` with this log recording every REST command it makes on this task.
    pub async fn record<F: Future>(&self, work: F) -> F::Output {
        CURRENT.scope(self.clone(), work).await
    }

    /// What was recorded so far.
    pub fn snapshot(&self) -> RestCalls {
        self.lock().clone()
    }

    /// Notes that the log as it is now was stored (with the job's end).
    pub fn mark_stored(&self) {
        self.stored.store(true, Ordering::Release);
    }

    /// Whether [`CallLog::mark_stored`] was called.
    pub fn is_stored(&self) -> bool {
        self.stored.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RestCalls> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, call: RestCall) {
        let mut calls = self.lock();
        if calls.calls.len() < self.cap {
            calls.calls.push(call);
        } else {
            calls.omitted = calls.omitted.saturating_add(1);
        }
    }
}

/// The log of the attempt running on this task, if any.
pub fn current() -> Option<CallLog> {
    CURRENT.try_with(Clone::clone).ok()
}

/// What the dispatcher tells about how a group of commands left (it may leave more than
/// once: a rate refusal sends it back to the queue).
#[derive(Default)]
pub(crate) struct SentNote {
    sends: AtomicU32,
    shared: AtomicBool,
    commands: AtomicU32,
}

impl SentNote {
    /// The group left in a request of `commands` commands, `shared` with other groups or not.
    pub(crate) fn sent(&self, shared: bool, commands: usize) {
        self.shared.store(shared, Ordering::Relaxed);
        self.commands.store(
            u32::try_from(commands).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
        self.sends.fetch_add(1, Ordering::Relaxed);
    }
}

/// The commands of one group as asked, recorded when its answer is there.
pub(crate) struct Asked {
    log: CallLog,
    at: DateTime<Utc>,
    started: std::time::Instant,
    /// (batch key, method); the key is empty for a single call.
    commands: Vec<(String, String)>,
    batch: bool,
    pub(crate) note: Arc<SentNote>,
}

impl Asked {
    pub(crate) fn new(log: CallLog, commands: Vec<(String, String)>, batch: bool) -> Self {
        Self {
            log,
            at: Utc::now(),
            started: std::time::Instant::now(),
            commands,
            batch,
            note: Arc::new(SentNote::default()),
        }
    }

    pub(crate) fn is_batch(&self) -> bool {
        self.batch
    }

    /// Records a call's answer.
    pub(crate) fn answered_call<T>(self, answer: &Result<T, B24Error>) {
        let (outcome, code, status) = match answer {
            Ok(_) => (Outcome::Ok, None, None),
            Err(e) => of_error(e),
        };
        self.finish(|_| (outcome, code.clone(), status));
    }

    /// Records each command of a batch from its answer.
    pub(crate) fn answered_batch(self, answer: Result<&BatchResult, &B24Error>) {
        match answer {
            Ok(result) => self.finish(|key| of_batch_command(result, key)),
            Err(e) => {
                let (outcome, code, status) = of_error(e);
                self.finish(|_| (outcome, code.clone(), status));
            }
        }
    }

    fn finish(self, outcome_of: impl Fn(&str) -> (Outcome, Option<String>, Option<u16>)) {
        let duration = self.started.elapsed();
        let sends = self.note.sends.load(Ordering::Relaxed);
        let in_request = self.note.commands.load(Ordering::Relaxed);
        let request = match (sends, self.note.shared.load(Ordering::Relaxed), self.batch) {
            (0, _, _) => Request::NotSent,
            (_, true, _) => Request::SharedBatch,
            (_, false, true) => Request::OwnBatch,
            (_, false, false) => Request::Alone,
        };
        for (key, method) in &self.commands {
            let (outcome, code, status) = outcome_of(key);
            self.log.push(RestCall {
                at: self.at,
                method: cut(method, MAX_METHOD_CHARS),
                outcome,
                code,
                status,
                duration_ms: millis(duration),
                request,
                others: in_request.saturating_sub(1),
                sends,
            });
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn of_error(e: &B24Error) -> (Outcome, Option<String>, Option<u16>) {
    match e {
        B24Error::Api { status, code, .. } => (
            Outcome::Error,
            Some(cut(code, MAX_CODE_CHARS)),
            (*status != 0).then_some(*status),
        ),
        B24Error::BadResponse { status, .. } => (
            Outcome::BadResponse,
            None,
            (*status != 0).then_some(*status),
        ),
        B24Error::Transport { .. } => (Outcome::Transport, None, None),
        B24Error::TooLarge { .. } => (Outcome::TooLarge, None, None),
        B24Error::Refresh { .. }
        | B24Error::NotInstalled(_)
        | B24Error::PortalChanged(_)
        | B24Error::Db(_) => (Outcome::Local, None, None),
    }
}

fn of_batch_command(result: &BatchResult, key: &str) -> (Outcome, Option<String>, Option<u16>) {
    if let Some(error) = result.errors.get(key) {
        let code = match error.get("error") {
            Some(Value::String(s)) => cut(s, MAX_CODE_CHARS),
            _ => String::new(),
        };
        let status = status_of_code(&code);
        return (Outcome::Error, Some(code), Some(status));
    }
    if result.results.contains_key(key) {
        (Outcome::Ok, None, None)
    } else {
        (Outcome::NotRun, None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn asked(log: &CallLog, commands: &[(&str, &str)], batch: bool) -> Asked {
        Asked::new(
            log.clone(),
            commands
                .iter()
                .map(|(k, m)| (k.to_string(), m.to_string()))
                .collect(),
            batch,
        )
    }

    #[test]
    fn a_batch_records_each_command_with_its_own_outcome() {
        let log = CallLog::new(10);
        let a = asked(&log, &[("u", "user.get"), ("d", "department.get")], true);
        a.note.sent(true, 5);
        let result = BatchResult::from_result(json!({
            "result": {"u": [1]},
            "result_error": {"d": {"error": "ACCESS_DENIED", "error_description": "secret x"}},
        }));
        a.answered_batch(Ok(&result));
        let calls = log.snapshot().calls;
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].outcome, Outcome::Ok);
        assert_eq!(calls[0].request, Request::SharedBatch);
        assert_eq!(calls[0].others, 4);
        assert_eq!(calls[1].code.as_deref(), Some("ACCESS_DENIED"));
        assert_eq!(calls[1].status, Some(403));
        // Descriptions may echo input: never kept.
        assert!(!serde_json::to_string(&calls).unwrap().contains("secret"));
    }

    #[test]
    fn commands_past_the_cap_are_counted_not_kept() {
        let log = CallLog::new(2);
        for _ in 0..3 {
            let a = asked(&log, &[("", "app.info")], false);
            a.note.sent(false, 1);
            a.answered_call::<()>(&Ok(()));
        }
        let failed = asked(&log, &[("", "crm.deal.get")], false);
        failed.answered_call::<()>(&Err(B24Error::Transport {
            method: "crm.deal.get".into(),
            message: "reset".into(),
        }));
        let calls = log.snapshot();
        assert_eq!(calls.calls.len(), 2);
        assert_eq!(calls.omitted, 2);
        assert_eq!(calls.calls[0].request, Request::Alone);
        assert_eq!(calls.calls[0].sends, 1);
    }

    #[tokio::test]
    async fn only_work_inside_the_scope_is_recorded() {
        assert!(current().is_none());
        let log = CallLog::new(5);
        log.record(async { assert!(current().is_some()) }).await;
        assert!(current().is_none());
    }
}
