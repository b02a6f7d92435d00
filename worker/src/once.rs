//! "Did an earlier attempt already do this?": every side effect an activity causes (a CRM
//! record, a comment, an invoice, a delete, an e-mail, a phone call) goes through
//! [`RunContext::once`] or [`RunContext::once_per_attempt`], so a retry never repeats it.
//! The markers live in `job_side_effects` (`common::db::jobs`).
use std::future::Future;

use b24flow_common::db::jobs::{self, SideEffect};
use b24flow_common::db::DbError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::activity::{ActivityError, RunContext};

/// How the side effect came to be, for the activity's log message.
#[derive(Debug, PartialEq, Eq)]
pub enum Once<T> {
    /// An earlier attempt did it and recorded what it made.
    Recorded(T),
    /// An earlier attempt began it and stopped; the lookup found that the portal did it.
    Found(T),
    /// This attempt did it.
    Acted(T),
}

impl<T> Once<T> {
    pub fn into_value(self) -> T {
        match self {
            Once::Recorded(v) | Once::Found(v) | Once::Acted(v) => v,
        }
    }
}

/// What a lookup found of an earlier attempt that began the side effect and stopped.
pub enum Found<T, P = ()> {
    /// It happened: this is what it made.
    Done(T),
    /// Part of it happened (an invoice without its products): act again, finishing it.
    Partly(P),
    /// No sign of it.
    Nothing,
}

impl<T> From<Option<T>> for Found<T> {
    fn from(found: Option<T>) -> Self {
        found.map_or(Found::Nothing, Found::Done)
    }
}

/// What `act` knows of earlier attempts.
#[derive(Debug, PartialEq, Eq)]
pub enum Prior<P = ()> {
    /// None began it.
    Fresh,
    /// One began it and the lookup found no sign; the portal's answer may still tell (a
    /// delete of what is already gone answers "not found").
    Unknown,
    /// The lookup found it half done.
    Partly(P),
}

/// Why a side effect that nobody can look up afterwards did not happen.
pub enum NotDone {
    /// The server or the portal said no: nothing happened, a later attempt may try again.
    /// `note` is kept with this attempt's marker for operators.
    Refused { error: ActivityError, note: Value },
    /// The request may have reached it: no later attempt may try again.
    Unsure(ActivityError),
}

impl From<ActivityError> for NotDone {
    fn from(error: ActivityError) -> Self {
        NotDone::Unsure(error)
    }
}

/// The marker of one side effect of the job, read once at the start of the run.
pub struct SideEffectMarker<'a> {
    ctx: &'a RunContext,
    key: &'a str,
    earlier: Option<SideEffect>,
}

impl RunContext {
    /// For a side effect the portal can be asked about afterwards. Read it before costly
    /// preparation to return [`SideEffectMarker::recorded`] at once; then
    /// [`SideEffectMarker::run`].
    pub async fn once<'a>(&'a self, key: &'a str) -> Result<SideEffectMarker<'a>, ActivityError> {
        Ok(SideEffectMarker {
            ctx: self,
            key,
            earlier: self.side_effect(key).await?,
        })
    }

    /// For a side effect nobody can look up afterwards (an SMTP server's acceptance, a
    /// ringing phone): each attempt marks its own try under `attempt_key.<attempt>`, and
    /// when an earlier try stopped without knowing how it ended, this fails with
    /// `interrupted` rather than risk doing it twice. `key` holds what a try that
    /// succeeded made; then [`SideEffectMarker::run_per_attempt`].
    pub async fn once_per_attempt<'a>(
        &'a self,
        key: &'a str,
        attempt_key: &str,
        interrupted: impl FnOnce() -> ActivityError,
    ) -> Result<SideEffectMarker<'a>, ActivityError> {
        let marker = self.once(key).await?;
        if matches!(marker.earlier, Some(SideEffect::Done(_))) {
            return Ok(marker);
        }
        for earlier in 1..self.job.attempt {
            let earlier_key = format!("{attempt_key}.{earlier}");
            if let Some(SideEffect::Started) = self.side_effect(&earlier_key).await? {
                return Err(interrupted());
            }
        }
        Ok(marker)
    }
}

impl SideEffectMarker<'_> {
    /// What an earlier attempt recorded when it did the side effect.
    pub fn recorded<T: DeserializeOwned>(&self) -> Option<T> {
        match &self.earlier {
            Some(SideEffect::Done(value)) => serde_json::from_value(value.clone()).ok(),
            _ => None,
        }
    }

    /// Done before → what was recorded. Begun by an earlier attempt that stopped → `lookup`
    /// asks the portal, and what it found is recorded. Otherwise: mark it started, `act`,
    /// record what it made. An error of `act` leaves it started: the next attempt looks up.
    pub async fn run<T, P, L, LF, A, AF>(self, lookup: L, act: A) -> Result<Once<T>, ActivityError>
    where
        T: Serialize + DeserializeOwned,
        L: FnOnce() -> LF,
        LF: Future<Output = Result<Found<T, P>, ActivityError>>,
        A: FnOnce(Prior<P>) -> AF,
        AF: Future<Output = Result<T, ActivityError>>,
    {
        if let Some(recorded) = self.recorded() {
            return Ok(Once::Recorded(recorded));
        }
        // A done marker whose value this build cannot read counts as begun: look it up.
        let prior = match self.earlier {
            None => Prior::Fresh,
            Some(_) => match lookup().await? {
                Found::Done(found) => {
                    self.ctx
                        .side_effect_done(self.key, &to_json(&found))
                        .await?;
                    return Ok(Once::Found(found));
                }
                Found::Partly(part) => Prior::Partly(part),
                Found::Nothing => Prior::Unknown,
            },
        };
        self.ctx.side_effect_started(self.key).await?;
        let made = act(prior).await?;
        self.ctx.side_effect_done(self.key, &to_json(&made)).await?;
        Ok(Once::Acted(made))
    }

    /// Like [`run`](Self::run) for a marker of [`RunContext::once_per_attempt`]: this
    /// attempt's try is marked; a refusal closes it (a later attempt may try again), an
    /// unsure ending leaves it open (no later attempt will).
    pub async fn run_per_attempt<T, A, AF>(
        self,
        attempt_key: &str,
        act: A,
    ) -> Result<Once<T>, ActivityError>
    where
        T: Serialize + DeserializeOwned,
        A: FnOnce() -> AF,
        AF: Future<Output = Result<T, NotDone>>,
    {
        if let Some(recorded) = self.recorded() {
            return Ok(Once::Recorded(recorded));
        }
        let ctx = self.ctx;
        let this_try = format!("{attempt_key}.{}", ctx.job.attempt);
        ctx.side_effect_started(&this_try).await?;
        match act().await {
            Ok(made) => {
                let made_json = to_json(&made);
                ctx.side_effect_done(self.key, &made_json).await?;
                ctx.side_effect_done(&this_try, &made_json).await?;
                Ok(Once::Acted(made))
            }
            Err(NotDone::Refused { error, note }) => {
                ctx.side_effect_done(&this_try, &note).await?;
                Err(error)
            }
            Err(NotDone::Unsure(error)) => Err(error),
        }
    }
}

/// The markers themselves: only the helpers above touch them.
impl RunContext {
    /// The idempotency marker of side effect `key` of this job: `None` if it never started,
    /// `Started` if an earlier attempt began it but did not record the result (it may or may
    /// not have happened: look it up before acting again), `Done(value)` if it happened.
    async fn side_effect(&self, key: &str) -> Result<Option<SideEffect>, ActivityError> {
        let client = self.db.get().await.map_err(DbError::from)?;
        Ok(jobs::side_effect(&client, self.job.id, key).await?)
    }

    /// Call right before the request that creates something. Fails when this attempt no
    /// longer owns the job (its lease ran out): then it must not act.
    async fn side_effect_started(&self, key: &str) -> Result<(), ActivityError> {
        let client = self.db.get().await.map_err(DbError::from)?;
        if jobs::side_effect_started(&client, self.job.id, self.job.attempt, key).await? {
            Ok(())
        } else {
            Err(lease_lost())
        }
    }

    /// Call right after it was created, with what identifies it.
    async fn side_effect_done(&self, key: &str, value: &Value) -> Result<(), ActivityError> {
        let client = self.db.get().await.map_err(DbError::from)?;
        if jobs::side_effect_done(&client, self.job.id, self.job.attempt, key, value).await? {
            Ok(())
        } else {
            Err(lease_lost())
        }
    }
}

/// This attempt lost its job to a newer one; whatever it returns is refused by the row.
fn lease_lost() -> ActivityError {
    ActivityError::transient("this attempt lost the job's lease; a newer attempt owns it")
}

fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
