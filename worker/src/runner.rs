//! One job, one attempt: claim → run → record the outcome → report → finish. Each step is
//! a guarded update, so an attempt that lost its lease changes nothing.
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use b24flow_common::bitrix::call_log::{self, CallLog};
use b24flow_common::bitrix::slots;
use b24flow_common::bitrix::{B24Error, Bitrix, ErrorKind, PortalClient};
use b24flow_common::crypto::SecretBox;
use b24flow_common::db::jobs::{self, Finish, Job, JobKind, JobState, Outcome};
use b24flow_common::db::{rest_calls, DbError, Pool};
use b24flow_common::{metrics, secrets};
use chrono::Utc;
use futures::FutureExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::activities::Catalogue;
use crate::activity::{Activity, ActivityError, Input, Output, RunContext};
use crate::claimer::Claimer;
use crate::finisher::Finisher;
use crate::heartbeat::Heartbeat;
use crate::registration;
use crate::report::{self, Reported};
use crate::retry::{decide, decide_report, Decision, RetryPolicy};
use crate::schema::{Lang, Text};
use crate::texts;

/// What to do with the delivery that carried the job id.
#[derive(Debug, PartialEq, Eq)]
pub enum Disposition {
    /// The row now reflects the attempt (or the delivery was stale).
    Ack,
    /// The row could not be touched (database down): let RabbitMQ deliver it again.
    Requeue,
}

pub struct Runner {
    pub db: Pool,
    /// Takes concurrently arriving jobs together.
    pub(crate) claimer: Claimer,
    /// Writes the ends of concurrently finishing jobs together.
    pub(crate) finisher: Finisher,
    pub bitrix: Bitrix,
    pub secrets: SecretBox,
    pub policy: RetryPolicy,
    pub lease: Duration,
    /// Built once per process; every job's activity, and registration, read it.
    pub catalogue: Arc<Catalogue>,
    pub handler_url: String,
    pub config: Arc<b24flow_common::Config>,
}

/// One attempt's run of a job of any kind, before the retry decision.
struct Ran {
    result: Result<Output, ActivityError>,
    /// Whose failure values and attempt limit apply: none for an unknown code or a
    /// registration.
    activity: Option<Arc<dyn Activity>>,
    /// What the outcome's texts are written in.
    lang: Lang,
}

enum RunResult {
    Done(Outcome),
    Retry {
        at: chrono::DateTime<Utc>,
        error: String,
    },
}

impl Runner {
    pub async fn handle(&self, job_id: Uuid, cancel: CancellationToken) -> Disposition {
        let job = match self.claim(job_id).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                tracing::debug!(job.id = %job_id, "stale delivery: job not claimable");
                return Disposition::Ack;
            }
            Err(e) => {
                tracing::warn!(job.id = %job_id, error = %e, "cannot claim job; delivery requeued");
                return Disposition::Requeue;
            }
        };
        let span = tracing::info_span!("job", job.id = %job.id, portal.id = job.portal_id, activity.code = %job.code, attempt = job.attempt);
        let lease_lost = CancellationToken::new();
        let heartbeat = Heartbeat::spawn(&self.db, &job, self.lease, lease_lost.clone());
        metrics::JOBS_IN_FLIGHT.inc();
        // A panic anywhere in the attempt becomes the workflow's error, instead of a job
        // never answered while its heartbeat keeps the lease forever.
        let rest_calls = CallLog::new(self.config.rest_calls_per_attempt);
        let attempt = AssertUnwindSafe(
            rest_calls
                .record(async {
                    slots::take_slot().await;
                    self.execute(&job).await
                })
                .instrument(span.clone()),
        )
        .catch_unwind();
        let result = tokio::select! {
            r = attempt => match r {
                Ok(r) => r,
                Err(panic) => {
                    let what = panic_message(panic.as_ref());
                    self.answer_after_panic(&job, &what).instrument(span.clone()).await
                }
            },
            _ = lease_lost.cancelled() => {
                // Dropping the attempt stops it at its next await, before any further side
                // effect; the row already refuses whatever it would still write.
                tracing::warn!(parent: &span, "attempt stopped: it lost the job's lease");
                Ok(())
            }
            _ = cancel.cancelled() => {
                // Shutdown deadline: hand the attempt back instead of leaving it to the reaper.
                match self.db.get().await {
                    Ok(c) => jobs::release(&c, job.id, job.attempt).await.map(|_| ()),
                    Err(e) => Err(e.into()),
                }
            }
        };
        metrics::JOBS_IN_FLIGHT.dec();
        drop(heartbeat);
        if !rest_calls.is_stored() {
            self.save_rest_calls(&job, &rest_calls)
                .instrument(span.clone())
                .await;
        }
        match result {
            Ok(()) => Disposition::Ack,
            Err(e) => {
                // The lease expires and the reaper hands the job to someone else.
                tracing::warn!(parent: &span, error = %e, "job state not recorded; the lease will expire and the job will be retried");
                Disposition::Requeue
            }
        }
    }

    /// One statement per attempt, after it, unless the job's end stored it: operators read
    /// it, nothing depends on it, so a failure to store it costs only the log (as does a
    /// crash during the attempt).
    async fn save_rest_calls(&self, job: &Job, log: &CallLog) {
        let calls = log.snapshot();
        if calls.is_empty() {
            return;
        }
        let saved = match self.db.get().await {
            Ok(client) => rest_calls::save(&client, job.id, job.attempt, &calls).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = saved {
            tracing::warn!(error = %e, "the attempt's REST call log was not stored");
        }
    }

    async fn claim(&self, job_id: Uuid) -> Result<Option<Job>, DbError> {
        self.claimer.claim(job_id).await
    }

    /// The activity this runner runs for `code` (a robot's `robot_<code>` included).
    fn activity(&self, code: &str) -> Option<Arc<dyn Activity>> {
        self.catalogue.find(code).cloned()
    }

    /// Records a permanent error for an attempt that panicked and answers the workflow
    /// with it. The answer is sent under its own guard: if sending it panics too, the job
    /// is failed without an answer rather than retried into the same panic.
    async fn answer_after_panic(&self, job: &Job, what: &str) -> Result<(), DbError> {
        tracing::error!(panic = %what, "the attempt panicked; answering the workflow with an error");
        let message = texts::internal_error();
        if job.kind == JobKind::Register {
            let outcome = failure(None, message, REGISTRATION_LANG);
            return self.finish_registration(job, &outcome).await;
        }
        let lang = match self.bitrix.portal(job.portal_id).await {
            Ok(b24) => Lang::from_code(b24.language()),
            Err(_) => Lang::default(),
        };
        let outcome = failure(self.activity(&job.code).as_ref(), message, lang);
        let client = self.db.get().await?;
        if !jobs::record_outcome(&client, job.id, job.attempt, &outcome).await? {
            tracing::warn!("lost the job before recording its outcome");
            return Ok(());
        }
        drop(client);
        match AssertUnwindSafe(self.report(job, &outcome, Stored::Before))
            .catch_unwind()
            .await
        {
            Ok(reported) => reported,
            Err(_) => {
                let message = "the workflow could not be answered: b24flow hit an internal error";
                tracing::error!("answering the workflow panicked too");
                self.finish(job, JobState::Failed, None, Some(message), message)
                    .await
            }
        }
    }

    /// Every kind of job takes the same path: run, the same retry decision, the outcome.
    /// Only the end differs: an activity's outcome is recorded and sent to its workflow; a
    /// registration has nobody waiting, so its outcome is the job's result.
    async fn execute(&self, job: &Job) -> Result<(), DbError> {
        let (outcome, stored) = match &job.outcome {
            // Ran in an earlier attempt (or an operator discarded it); only the report is missing.
            Some(outcome) => (
                with_failure_values(self.activity(&job.code), outcome.clone()),
                Stored::Before,
            ),
            None => {
                let ran = match job.kind {
                    JobKind::Activity => self.run_activity(job).await?,
                    JobKind::Register => self.run_registration(job).await,
                };
                match self.settle(job, ran) {
                    RunResult::Done(outcome) if job.kind == JobKind::Register => {
                        return self.finish_registration(job, &outcome).await
                    }
                    RunResult::Done(outcome) if self.reads_only(job) => (outcome, Stored::WithEnd),
                    RunResult::Done(outcome) => {
                        // Durable before the answer: a crash after it must not run it again.
                        let client = self.db.get().await?;
                        if !jobs::record_outcome(&client, job.id, job.attempt, &outcome).await? {
                            tracing::warn!("lost the job before recording its outcome");
                            return Ok(());
                        }
                        (outcome, Stored::Before)
                    }
                    RunResult::Retry { at, error } => return self.retry(job, at, &error).await,
                }
            }
        };
        self.report(job, &outcome, stored).await
    }

    /// Whether the job's activity only reads, so running it again after a crash is harmless.
    fn reads_only(&self, job: &Job) -> bool {
        self.activity(&job.code)
            .is_some_and(|activity| activity.reads_only())
    }

    async fn run_registration(&self, job: &Job) -> Ran {
        let result = match self.bitrix.portal(job.portal_id).await {
            Ok(b24) => {
                registration::run_job(&b24, &self.db, &self.catalogue, job, &self.handler_url).await
            }
            Err(e) => Err(e.into()),
        };
        Ran {
            result,
            activity: None,
            lang: REGISTRATION_LANG,
        }
    }

    async fn finish_registration(&self, job: &Job, outcome: &Outcome) -> Result<(), DbError> {
        if outcome.success {
            let summary = Value::Object(outcome.return_values.clone());
            return self
                .finish(job, JobState::Succeeded, Some(&summary), None, "registered")
                .await;
        }
        tracing::error!(error = %outcome.error_text, "registration failed");
        let message = &outcome.error_text;
        self.finish(job, JobState::Failed, None, Some(message), message)
            .await
    }

    async fn run_activity(&self, job: &Job) -> Result<Ran, DbError> {
        let b24 = self.bitrix.portal(job.portal_id).await;
        // Whatever reaches the workflow is written in the portal's language.
        let lang = b24
            .as_ref()
            .map(|b24| Lang::from_code(b24.language()))
            .unwrap_or_default();
        let activity = self.activity(&job.code);
        let ran = |result| Ran {
            result,
            activity: activity.clone(),
            lang,
        };
        let Some(found) = &activity else {
            return Ok(ran(Err(ActivityError::invalid(texts::unknown_activity(
                &job.code,
            )))));
        };
        let b24 = match b24 {
            Ok(b24) => b24,
            Err(e) => return Ok(ran(Err(e.into()))),
        };
        let (properties, run_as) = {
            let sealed = job.sealed_secret.as_ref().map(jobs::SealedSecret::as_bytes);
            let opened = secrets::merge_secrets(&job.properties, sealed, &self.secrets)
                .and_then(|p| Ok((p, secrets::run_as(sealed, &self.secrets)?)));
            match opened {
                Ok(opened) => opened,
                Err(e) => {
                    return Ok(ran(Err(ActivityError::invalid(texts::secret_unreadable(
                        &e,
                    )))))
                }
            }
        };
        if run_as.is_none() && job.runs_as_user {
            // Erased with the job's end (an operator retried it since): running with the
            // installer's token would give the workflow the installer's rights.
            return Ok(ran(Err(ActivityError::invalid(texts::run_as_token_gone()))));
        }
        let b24 = as_run_as_user(b24, job, run_as);
        let ctx = RunContext {
            b24,
            job: job.clone(),
            db: self.db.clone(),
            config: self.config.clone(),
            lang,
        };
        let input = Input::new(&properties);
        Ok(ran(found.run(&ctx, &input).await))
    }

    /// The one retry decision of every job: done (success or an error for good), or again
    /// later.
    fn settle(&self, job: &Job, ran: Ran) -> RunResult {
        let Ran {
            result,
            activity,
            lang,
        } = ran;
        let e = match result {
            Ok(output) => {
                return RunResult::Done(Outcome {
                    success: true,
                    return_values: output.return_values,
                    log_message: output.log_message.get(lang).to_string(),
                    ..Outcome::default()
                })
            }
            Err(e) => e,
        };
        if e.kind == ErrorKind::Permanent {
            return RunResult::Done(failure(activity.as_ref(), e.message, lang));
        }
        let max_attempts = activity
            .as_ref()
            .map_or(job.max_attempts, |a| job.max_attempts.min(a.max_attempts()));
        match decide(
            &self.policy,
            job.attempt,
            max_attempts,
            job.workflow_deadline(),
            Utc::now(),
        ) {
            Decision::RetryAt(at) => RunResult::Retry {
                at,
                error: e.message.get(lang).to_string(),
            },
            Decision::GiveUp(why) => {
                let message = Text {
                    en: format!("{} ({})", e.message.en, why.en),
                    ru: format!("{} ({})", e.message.ru, why.ru),
                };
                RunResult::Done(failure(activity.as_ref(), message, lang))
            }
        }
    }

    async fn report(&self, job: &Job, outcome: &Outcome, stored: Stored) -> Result<(), DbError> {
        let state = if outcome.success {
            JobState::Succeeded
        } else if outcome.discarded {
            JobState::Discarded
        } else {
            JobState::Failed
        };
        let result = told_apart(job, outcome);
        let error = (!outcome.success).then_some(outcome.error_text.as_str());
        let with_end = (stored == Stored::WithEnd).then_some(outcome);
        let Some(event_token) = job.event_token.as_deref() else {
            return self
                .end(
                    job,
                    state,
                    result.as_ref(),
                    error,
                    "no event token to report to",
                    with_end,
                )
                .await;
        };
        let sent = match self.job_client(job).await {
            Ok(b24) => report::send(&b24, event_token, outcome).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(Reported::Delivered) => {
                let message = if outcome.success {
                    "reported success".to_string()
                } else {
                    format!("reported error: {}", outcome.error_text)
                };
                self.end(job, state, result.as_ref(), error, &message, with_end)
                    .await
            }
            Ok(Reported::WorkflowGone) => {
                self.end(
                    job,
                    state,
                    result.as_ref(),
                    error,
                    "the workflow no longer exists; nobody to report to",
                    with_end,
                )
                .await
            }
            Err(e) => {
                if let Some(outcome) = with_end {
                    // The next attempt only reports, as for any other activity.
                    let client = self.db.get().await?;
                    if !jobs::record_outcome(&client, job.id, job.attempt, outcome).await? {
                        tracing::warn!("lost the job before recording its outcome");
                        return Ok(());
                    }
                }
                self.report_failed(job, result.as_ref(), e).await
            }
        }
    }

    async fn report_failed(
        &self,
        job: &Job,
        result: Option<&Value>,
        e: B24Error,
    ) -> Result<(), DbError> {
        let message = format!("bizproc.event.send: {}", e.description());
        if e.kind() != ErrorKind::Permanent {
            if let Decision::RetryAt(at) = decide_report(
                &self.policy,
                job.attempt,
                job.created_at,
                job.workflow_deadline(),
                Utc::now(),
            ) {
                return self.retry(job, at, &message).await;
            }
        }
        tracing::error!(error = %message, "the workflow could not be answered");
        self.finish(job, JobState::Failed, result, Some(&message), &message)
            .await
    }

    /// The portal's client under the job's run-as user when the call carried a token
    /// (what answers the workflow); the installer's otherwise. The token is the one read
    /// with the claim: if the run rotated it since, the client's refresh finds the rotated
    /// one stored and uses it.
    async fn job_client(&self, job: &Job) -> Result<PortalClient, B24Error> {
        let b24 = self.bitrix.portal(job.portal_id).await?;
        let sealed = job.sealed_secret.as_ref().map(jobs::SealedSecret::as_bytes);
        let run_as = secrets::run_as(sealed, &self.secrets).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the job's run-as token cannot be read; the installer's token answers");
            None
        });
        Ok(as_run_as_user(b24, job, run_as))
    }

    async fn retry(
        &self,
        job: &Job,
        at: chrono::DateTime<Utc>,
        error: &str,
    ) -> Result<(), DbError> {
        tracing::info!(%error, retry_at = %at, "transient failure; retrying later");
        metrics::JOB_RETRIES
            .with_label_values(&[self.catalogue.codes().label(&job.code), "transient"])
            .inc();
        let client = self.db.get().await?;
        jobs::schedule_retry(&client, job.id, job.attempt, at, error).await?;
        Ok(())
    }

    async fn finish(
        &self,
        job: &Job,
        state: JobState,
        result: Option<&Value>,
        error: Option<&str>,
        message: &str,
    ) -> Result<(), DbError> {
        self.end(job, state, result, error, message, None).await
    }

    /// Ends the job through the process's writer, in one statement with other jobs ending
    /// now; with it the attempt's REST call log and, when it was not stored before the
    /// answer, the outcome.
    async fn end(
        &self,
        job: &Job,
        state: JobState,
        result: Option<&Value>,
        error: Option<&str>,
        message: &str,
        outcome: Option<&Outcome>,
    ) -> Result<(), DbError> {
        let log = call_log::current();
        let end = Finish {
            id: job.id,
            attempt: job.attempt,
            state,
            result: result.cloned(),
            error: error.map(str::to_string),
            message: message.to_string(),
            outcome: outcome.cloned(),
            rest_calls: log.as_ref().map(CallLog::snapshot),
        };
        slots::give_back();
        let ended = self.finisher.finish(end).await?;
        if let Some(log) = log {
            log.mark_stored();
        }
        if ended {
            let code = self.catalogue.codes().label(&job.code);
            metrics::JOBS_FINISHED
                .with_label_values(&[code, state.as_str()])
                .inc();
            let seconds = (Utc::now() - job.created_at).num_milliseconds() as f64 / 1000.0;
            metrics::JOB_LATENCY
                .with_label_values(&[code])
                .observe(seconds.max(0.0));
            metrics::JOB_ATTEMPTS
                .with_label_values(&[code])
                .observe(f64::from(job.attempt));
            tracing::info!(state = state.as_str(), %message, "job finished");
        } else {
            tracing::warn!("lost the job before finishing it; a newer attempt owns it");
        }
        Ok(())
    }
}

/// The job's result when it must be kept beside its outcome: only when what the workflow is
/// told differs from the outcome the row already holds (an earlier attempt's or an
/// operator's, completed with the activity's failure values). Otherwise the row's outcome,
/// stored before the answer or with the end, is the result (operators read
/// `result` or else `outcome`), and a second copy would only cost a wider row.
fn told_apart(job: &Job, told: &Outcome) -> Option<Value> {
    let stored = job.outcome.as_ref()?;
    let told = serde_json::to_value(told).ok()?;
    (serde_json::to_value(stored).ok().as_ref() != Some(&told)).then_some(told)
}

/// Where an activity's outcome is stored: before the answer (it must never run twice) or
/// with the job's end (it only reads, see [`Activity::reads_only`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stored {
    Before,
    WithEnd,
}

/// The job's REST calls use the token of the user its workflow runs as (the call's
/// `auth[…]`, protocol.md §4); a job without one (older jobs, calls that carried none) uses
/// the installer's.
fn as_run_as_user(b24: PortalClient, job: &Job, run_as: Option<secrets::RunAs>) -> PortalClient {
    match run_as {
        Some(run_as) => {
            tracing::debug!(run_as.user = ?run_as.user_id, "REST calls run as the workflow's user");
            b24.as_user(job.id, run_as)
        }
        None => {
            tracing::debug!("no run-as token with the job; REST calls use the installer's token");
            b24
        }
    }
}

/// Registration texts are read by operators, not by a workflow.
const REGISTRATION_LANG: Lang = Lang::En;

/// What a panic said, for the log (the workflow gets a fixed text: the message may hold
/// input values).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// An operator's discard carries only the error text; the workflow also gets the activity's
/// own failure values (e.g. `result` = `false`), as for any other error, so it branches alike.
fn with_failure_values(activity: Option<Arc<dyn Activity>>, mut outcome: Outcome) -> Outcome {
    if outcome.discarded {
        if let Some(activity) = activity {
            for (key, value) in activity.failure_values() {
                outcome.return_values.entry(key).or_insert(value);
            }
        }
    }
    outcome
}

/// An error outcome with the activity's own failure values (e.g. `result` = `ERROR`), its
/// text in the portal's language.
fn failure(activity: Option<&Arc<dyn Activity>>, error_text: Text, lang: Lang) -> Outcome {
    Outcome {
        success: false,
        return_values: activity.map(|a| a.failure_values()).unwrap_or_default(),
        error_text: error_text.get(lang).to_string(),
        ..Outcome::default()
    }
}
