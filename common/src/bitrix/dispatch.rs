//! Per portal and per process: the queue of REST work waiting for the portal's shared
//! limiter, and the cross-job batching of what is ready when a request may leave.
//!
//! Every [`PortalClient::call`]/[`PortalClient::batch`] becomes a [`Pending`] group here. A
//! driver task takes one request from the shared bucket (Postgres, see [`super::limiter`]),
//! then sends everything that is ready in that one request: a lone group as itself, several
//! groups as one `batch` (≤ 50 commands, `halt=0`) whose keys are prefixed per group so
//! each group gets back its own results and errors. While the bucket is empty, work piles
//! up and leaves together; on an idle portal a group leaves at once.
//!
//! A request runs under one token, so only groups of one identity (the installer, or one
//! run-as user, see [`super::identity`]) share it. The limiter stays one bucket per portal:
//! Bitrix24 counts requests per portal and address, whoever's token they carry (§7.1).
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{oneshot, Notify, Semaphore};

use super::batch::{encode_commands, prefix_references, Batch, BatchResult, Command, MAX_COMMANDS};
use super::call_log::SentNote;
use super::client::{PortalClient, RestResponse};
use super::error::B24Error;
use super::identity::{Identity, IdentityKey};
use super::limiter;

/// Requests of one portal in flight at once from this process (they still pass the limiter).
const IN_FLIGHT: usize = 4;
/// A group refused for the limit this often goes back to its job as an error (the job's own
/// retry policy takes over) instead of waiting again here.
const MAX_REQUEUES: u32 = 8;

/// What a job asked for.
pub(crate) enum Work {
    Call { method: String, params: Value },
    Batch(Batch),
}

pub(crate) enum Answer {
    Call(RestResponse),
    Batch(Box<BatchResult>),
}

pub(crate) type Reply = Result<Answer, B24Error>;

pub(crate) struct Pending {
    work: Work,
    /// Can share a request with other groups: no `halt`, and parameters that survive the
    /// query-string encoding of a batch command unchanged.
    mergeable: bool,
    requeues: u32,
    /// Whose token the request carries.
    identity: Identity,
    /// Which other groups may share its request.
    key: IdentityKey,
    reply: oneshot::Sender<Reply>,
    /// Where the job's REST call log learns how this group left (when it keeps one).
    sends: Option<Arc<SentNote>>,
}

impl Pending {
    pub(crate) fn new(
        work: Work,
        merge_allowed: bool,
        identity: Identity,
    ) -> (Self, oneshot::Receiver<Reply>) {
        let mergeable = merge_allowed
            && match &work {
                Work::Call { method, params } => {
                    !method.eq_ignore_ascii_case("batch") && query_safe(params)
                }
                Work::Batch(b) => {
                    !b.halts()
                        && b.len() <= MAX_COMMANDS
                        && b.commands().iter().all(|c| query_safe(&c.params))
                }
            };
        let (tx, rx) = oneshot::channel();
        (
            Self {
                work,
                mergeable,
                requeues: 0,
                key: identity.key(),
                identity,
                reply: tx,
                sends: None,
            },
            rx,
        )
    }

    pub(crate) fn note_sends_in(&mut self, note: Arc<SentNote>) {
        self.sends = Some(note);
    }

    fn sent(&self, shared: bool, commands: usize) {
        if let Some(note) = &self.sends {
            note.sent(shared, commands);
        }
    }

    fn size(&self) -> usize {
        match &self.work {
            Work::Call { .. } => 1,
            Work::Batch(b) => b.len().max(1),
        }
    }

    fn methods(&self) -> Vec<String> {
        match &self.work {
            Work::Call { method, .. } => vec![method.to_lowercase()],
            Work::Batch(b) => b
                .commands()
                .iter()
                .map(|c| c.method.to_lowercase())
                .collect(),
        }
    }
}

/// Parameters a PHP query string carries as-is: strings and numbers in objects and
/// non-empty lists. (`true`, `null` and `[]` would arrive as something else inside a batch
/// command, so calls with them leave on their own.)
fn query_safe(params: &Value) -> bool {
    fn leaf(v: &Value, depth: usize) -> bool {
        match v {
            Value::String(_) | Value::Number(_) => true,
            Value::Object(m) => {
                depth < 8 && !m.is_empty() && m.values().all(|v| leaf(v, depth + 1))
            }
            Value::Array(a) => depth < 8 && !a.is_empty() && a.iter().all(|v| leaf(v, depth + 1)),
            Value::Null | Value::Bool(_) => false,
        }
    }
    match params {
        Value::Object(m) => m.values().all(|v| leaf(v, 1)),
        Value::Null => true,
        _ => false,
    }
}

/// The queue of one portal in this process.
pub(crate) struct Dispatcher {
    queue: Mutex<VecDeque<Pending>>,
    wake: Notify,
    driving: AtomicBool,
    in_flight: Arc<Semaphore>,
    sequence: AtomicU64,
    /// Parked methods (lower case) → unix time they may be called again.
    parked: Mutex<HashMap<String, f64>>,
    /// Per method, the `operating_reset_at` of its last good answer.
    reset_at: Mutex<HashMap<String, f64>>,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            driving: AtomicBool::new(false),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            sequence: AtomicU64::new(0),
            parked: Mutex::new(HashMap::new()),
            reset_at: Mutex::new(HashMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Dispatcher {
    /// Queues a group and makes sure a driver serves the portal.
    pub(crate) fn submit(&self, client: &PortalClient, pending: Pending) {
        lock(&self.queue).push_back(pending);
        self.wake.notify_one();
        if !self.driving.swap(true, Ordering::AcqRel) {
            tokio::spawn(drive(client.clone()));
        }
    }

    fn requeue(&self, mut pending: Pending, error: B24Error) {
        pending.requeues += 1;
        if pending.requeues > MAX_REQUEUES {
            let _ = pending.reply.send(Err(error));
            return;
        }
        lock(&self.queue).push_front(pending);
        self.wake.notify_one();
    }

    fn is_parked(&self, methods: &[String], now: f64) -> Option<f64> {
        let parked = lock(&self.parked);
        methods
            .iter()
            .filter_map(|m| parked.get(m).copied())
            .filter(|until| *until > now)
            .reduce(f64::max)
    }

    /// None: nothing queued. Some(0): something can leave now. Some(s): all of it is parked
    /// for at least `s` seconds.
    fn next_sendable_in(&self, now: f64) -> Option<f64> {
        let queue = lock(&self.queue);
        if queue.is_empty() {
            return None;
        }
        let mut soonest = f64::MAX;
        for p in queue.iter() {
            match self.is_parked(&p.methods(), now) {
                None => return Some(0.0),
                Some(until) => soonest = soonest.min(until - now),
            }
        }
        Some(soonest.max(0.0))
    }

    pub(crate) fn set_parked(&self, parked: &Value) {
        let Some(map) = parked.as_object() else {
            return;
        };
        let mut local = lock(&self.parked);
        for (method, until) in map {
            if let Some(until) = until.as_f64() {
                let entry = local.entry(method.to_lowercase()).or_insert(0.0);
                *entry = entry.max(until);
            }
        }
    }

    /// What leaves in the next request: the first sendable group, and when it can share,
    /// every other mergeable group of the same identity that fits in 50 commands.
    fn take_request(&self, now: f64) -> Vec<Pending> {
        let mut queue = lock(&self.queue);
        let mut taken: Vec<Pending> = Vec::new();
        let mut kept: VecDeque<Pending> = VecDeque::with_capacity(queue.len());
        let mut commands = 0usize;
        let mut lone = false;
        while let Some(p) = queue.pop_front() {
            if lone || self.is_parked(&p.methods(), now).is_some() {
                kept.push_back(p);
                continue;
            }
            if taken.is_empty() {
                lone = !p.mergeable;
                commands = p.size();
                taken.push(p);
                continue;
            }
            if p.mergeable && p.key == taken[0].key && commands + p.size() <= MAX_COMMANDS {
                commands += p.size();
                taken.push(p);
                if commands == MAX_COMMANDS {
                    lone = true;
                }
            } else {
                kept.push_back(p);
            }
        }
        *queue = kept;
        taken
    }

    /// Fails everything queued (the limiter's state cannot be read).
    fn fail_all(&self, error: &B24Error) {
        let drained: Vec<Pending> = lock(&self.queue).drain(..).collect();
        for p in drained {
            let _ = p.reply.send(Err(error.duplicate()));
        }
    }

    /// Learns from a good answer's `time` (protocol.md §7.2): remembers when the method's
    /// budget window moves on and parks a method that came near its budget.
    fn note_time(&self, client: &PortalClient, method: &str, time: Option<&Value>) {
        let Some(time) = time else { return };
        let method = method.to_lowercase();
        let reset = time.get("operating_reset_at").and_then(Value::as_f64);
        if let Some(reset) = reset {
            lock(&self.reset_at).insert(method.clone(), reset);
        }
        let operating = time.get("operating").and_then(Value::as_f64).unwrap_or(0.0);
        if let Some(until) = limiter::slow_down_until(operating, reset, unix_now()) {
            self.park(client, &method, until);
        }
    }

    /// 429 `OPERATION_TIME_LIMIT`: park until the window moves on.
    fn note_refused(&self, client: &PortalClient, method: &str) {
        let method = method.to_lowercase();
        let now = unix_now();
        let known = lock(&self.reset_at).get(&method).copied();
        self.park(client, &method, limiter::park_after_refusal(known, now));
    }

    fn park(&self, client: &PortalClient, method: &str, until: f64) {
        {
            let mut parked = lock(&self.parked);
            let entry = parked.entry(method.to_string()).or_insert(0.0);
            if *entry >= until {
                return;
            }
            *entry = until;
        }
        tracing::warn!(portal.id = client.portal_id(), %method, parked_for_secs = (until - unix_now()).round(), "method parked: the portal's time budget for it is (nearly) spent");
        let client = client.clone();
        let method = method.to_string();
        tokio::spawn(async move {
            if let Err(e) = client
                .limiter()
                .park(client.portal_id(), &method, until)
                .await
            {
                tracing::warn!(error = %e, "could not share a parked method");
            }
        });
    }
}

/// Serves one portal's queue until it is empty.
async fn drive(client: PortalClient) {
    let d = client.dispatcher();
    loop {
        let now = unix_now();
        match d.next_sendable_in(now) {
            None => {
                d.driving.store(false, Ordering::Release);
                // Work queued between the check and the store has nobody else to serve it.
                if lock(&d.queue).is_empty() || d.driving.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            }
            Some(wait) if wait > 0.0 => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(wait.min(60.0))) => {}
                    _ = d.wake.notified() => {}
                }
                continue;
            }
            Some(_) => {}
        }
        let Ok(permit) = d.in_flight.clone().acquire_owned().await else {
            return;
        };
        match client.limiter().acquire(client.portal_id()).await {
            Ok(parked) => d.set_parked(&parked),
            Err(e) => {
                tracing::warn!(portal.id = client.portal_id(), error = %e, "the portal's limiter cannot be read; queued requests fail");
                d.fail_all(&B24Error::Db(e));
                continue;
            }
        }
        let request = d.take_request(unix_now());
        if request.is_empty() {
            continue;
        }
        let client = client.clone();
        tokio::spawn(async move {
            send_request(&client, request).await;
            drop(permit);
        });
    }
}

async fn send_request(client: &PortalClient, mut request: Vec<Pending>) {
    if request.len() == 1 {
        if let Some(p) = request.pop() {
            send_alone(client, p).await;
        }
        return;
    }
    send_merged(client, request).await;
}

/// A refusal of the whole request for the portal's rate: nothing ran, try again later.
fn rate_refusal(e: &B24Error) -> bool {
    matches!(e.code(), Some("QUERY_LIMIT_EXCEEDED"))
}

/// The token a shared request went with could not be used (refused after a refresh, or
/// not refreshable): says nothing about the other groups' tokens.
fn token_unusable(e: &B24Error) -> bool {
    e.kind() == crate::error_kind::ErrorKind::Auth || matches!(e, B24Error::Refresh { .. })
}

fn time_refusal(e: &B24Error) -> bool {
    matches!(e.code(), Some("OPERATION_TIME_LIMIT"))
}

async fn throttled(client: &PortalClient) {
    tracing::warn!(
        portal.id = client.portal_id(),
        "QUERY_LIMIT_EXCEEDED: the portal's bucket is full; waiting for it to drain"
    );
    if let Err(e) = client.limiter().throttled(client.portal_id()).await {
        tracing::warn!(error = %e, "could not share the portal's refusal");
    }
}

async fn send_alone(client: &PortalClient, p: Pending) {
    let d = client.dispatcher();
    let (method, params) = match &p.work {
        Work::Call { method, params } => (method.clone(), params.clone()),
        Work::Batch(b) => ("batch".to_string(), b.to_params()),
    };
    p.sent(false, p.size());
    match client.send_authed(&p.identity, &method, params).await {
        Err(e) if rate_refusal(&e) => {
            throttled(client).await;
            d.requeue(p, e);
        }
        Err(e) if time_refusal(&e) && matches!(p.work, Work::Call { .. }) => {
            d.note_refused(client, &method);
            d.requeue(p, e);
        }
        Err(e) => {
            let _ = p.reply.send(Err(e));
        }
        Ok((response, time)) => match p.work {
            Work::Call { .. } => {
                d.note_time(client, &method, time.as_ref());
                let _ = p.reply.send(Ok(Answer::Call(response)));
            }
            Work::Batch(ref b) => {
                let result = BatchResult::from_result(response.result);
                learn_from_batch(client, b.commands(), "", &result);
                let _ = p.reply.send(Ok(Answer::Batch(Box::new(result))));
            }
        },
    }
}

/// Per sub-call: its `time`, and a 429 `OPERATION_TIME_LIMIT` in its error.
fn learn_from_batch(
    client: &PortalClient,
    commands: &[Command],
    prefix: &str,
    result: &BatchResult,
) {
    let d = client.dispatcher();
    for c in commands {
        let key = format!("{prefix}{}", c.key);
        if let Some(err) = result.errors.get(&key) {
            if err.get("error").and_then(Value::as_str) == Some("OPERATION_TIME_LIMIT") {
                d.note_refused(client, &c.method);
            }
        } else {
            d.note_time(client, &c.method, result.times.get(&key));
        }
    }
}

/// Several jobs' groups in one `batch` with `halt=0`; each group's keys carry its prefix.
async fn send_merged(client: &PortalClient, request: Vec<Pending>) {
    let d = client.dispatcher();
    let mut plan: Vec<(Pending, String, Vec<Command>)> = Vec::with_capacity(request.len());
    for p in request {
        let n = d.sequence.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("j{n}_");
        let commands = match &p.work {
            Work::Call { method, params } => vec![Command {
                key: "call".into(),
                method: method.clone(),
                params: params.clone(),
            }],
            Work::Batch(b) => {
                let keys: Vec<String> = b.commands().iter().map(|c| c.key.clone()).collect();
                b.commands()
                    .iter()
                    .map(|c| Command {
                        key: c.key.clone(),
                        method: c.method.clone(),
                        params: prefix_references(&c.params, &keys, &prefix),
                    })
                    .collect()
            }
        };
        plan.push((p, prefix, commands));
    }
    let wire: Vec<Command> = plan
        .iter()
        .flat_map(|(_, prefix, commands)| {
            commands.iter().map(move |c| Command {
                key: format!("{prefix}{}", c.key),
                method: c.method.clone(),
                params: c.params.clone(),
            })
        })
        .collect();
    crate::metrics::REST_BATCHED_COMMANDS.observe(wire.len() as f64);
    // Every group here has the same identity (`take_request`); the first one's token it is.
    let identity = plan[0].0.identity.clone();
    for (p, _, _) in &plan {
        p.sent(true, wire.len());
    }
    let answer = client
        .send_authed(&identity, "batch", encode_commands(false, wire.iter()))
        .await;
    let mut result = match answer {
        Ok((response, _)) => BatchResult::from_result(response.result),
        Err(e) if rate_refusal(&e) => {
            throttled(client).await;
            for (p, _, _) in plan {
                d.requeue(p, e.duplicate());
            }
            return;
        }
        Err(e) if token_unusable(&e) && plan.len() > 1 => {
            // The first group's token is dead, not necessarily the others' (same user,
            // other jobs): each goes again alone, under its own token.
            for (mut p, _, _) in plan {
                p.mergeable = false;
                d.requeue(p, e.duplicate());
            }
            return;
        }
        Err(e) => {
            for (p, _, _) in plan {
                let _ = p.reply.send(Err(e.duplicate()));
            }
            return;
        }
    };
    for (p, prefix, commands) in plan {
        learn_from_batch(client, &commands, &prefix, &result);
        match p.work {
            Work::Call { ref method, .. } => {
                let key = format!("{prefix}call");
                match result.take(&key) {
                    Ok(value) => {
                        let response = RestResponse {
                            result: value,
                            total: result.totals.get(&key).and_then(Value::as_u64),
                            next: result.nexts.get(&key).and_then(Value::as_u64),
                        };
                        let _ = p.reply.send(Ok(Answer::Call(response)));
                    }
                    Err(e) if time_refusal(&e) => {
                        let method = method.clone();
                        d.requeue(p, rename(e, &method));
                    }
                    Err(e) => {
                        let e = rename(e, method);
                        let _ = p.reply.send(Err(e));
                    }
                }
            }
            Work::Batch(_) => {
                let _ = p.reply.send(Ok(Answer::Batch(Box::new(unprefixed(
                    &mut result,
                    &prefix,
                )))));
            }
        }
    }
}

/// A sub-call's error as the direct call would have given it: its own method name, and the
/// HTTP status Bitrix24 uses for that code (protocol.md §6.3), which batches do not carry.
fn rename(e: B24Error, method: &str) -> B24Error {
    match e {
        B24Error::Api {
            code, description, ..
        } => B24Error::Api {
            method: method.to_string(),
            status: super::error::status_of_code(&code),
            code,
            description,
        },
        other => other,
    }
}

/// One group's part of a shared batch's answer, under its own keys, moved out of it (no
/// other group's prefix starts with this one: `j1_` and `j12_` differ at the `_`).
fn unprefixed(result: &mut BatchResult, prefix: &str) -> BatchResult {
    let part = |m: &mut Map<String, Value>| -> Map<String, Value> {
        let own: Vec<String> = m
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        own.into_iter()
            .filter_map(|k| {
                let v = m.remove(&k)?;
                Some((k[prefix.len()..].to_string(), v))
            })
            .collect()
    };
    BatchResult {
        results: part(&mut result.results),
        errors: part(&mut result.errors),
        totals: part(&mut result.totals),
        nexts: part(&mut result.nexts),
        times: part(&mut result.times),
        methods: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_parameters_a_query_string_keeps_may_share_a_batch() {
        assert!(query_safe(&json!({"a": "x", "b": [1, 2], "c": {"d": "e"}})));
        assert!(query_safe(&json!({})));
        assert!(!query_safe(&json!({"a": true})));
        assert!(!query_safe(&json!({"a": []})));
        assert!(!query_safe(&json!({"a": null})));
        assert!(!query_safe(&json!({"a": {"b": {}}})));
    }

    #[test]
    fn a_groups_part_of_a_shared_answer_comes_back_under_its_own_keys() {
        let mut shared = BatchResult::from_result(json!({
            "result": {"j1_user": [1], "j2_user": [2], "j12_user": [12]},
            "result_error": {"j1_departments": {"error": "E", "error_description": "d"}},
        }));
        let mine = unprefixed(&mut shared, "j1_");
        assert_eq!(mine.get("user").unwrap(), &json!([1]));
        assert_eq!(mine.get("departments").unwrap_err().code(), Some("E"));
        assert!(mine.results.get("j2_user").is_none());
        // The other groups' parts stay for them.
        let theirs = unprefixed(&mut shared, "j12_");
        assert_eq!(theirs.get("user").unwrap(), &json!([12]));
        assert_eq!(
            unprefixed(&mut shared, "j2_").get("user").unwrap(),
            &json!([2])
        );
    }
}
