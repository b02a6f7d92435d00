//! The portal's `/rest/<method>` endpoint (protocol.md §6): rate limit, injected faults,
//! parameters from query string, form body (PHP `parse_str`) or JSON body, OAuth token from
//! `auth` / `access_token` / `Authorization: Bearer`, then the method router, and the
//! `{"result":…,"time":{…}}` / `{"error":…,"error_description":…}` envelopes.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{batch, fault_response};
use crate::methods::{self, Caller, Ctx, Reply, RestError};
use crate::php;
use crate::portal::Portal;
use crate::state::auth::TokenError;
use crate::state::faults::Fault;
use crate::state::State as PortalState;

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// The `time` member of every answer (protocol.md §6.2); dates in the portal's zone (MSK).
fn time_json(start: SystemTime) -> Value {
    let finish = SystemTime::now();
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let msk = FixedOffset::east_opt(3 * 3600).unwrap();
    let date = |t: SystemTime| {
        DateTime::<Utc>::from(t)
            .with_timezone(&msk)
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    };
    let (s, f) = (secs(start), secs(finish));
    let duration = (f - s).max(0.0);
    json!({
        "start": s, "finish": f, "duration": duration, "processing": duration,
        "date_start": date(start), "date_finish": date(finish),
        "operating_reset_at": s as i64 + 600, "operating": 0,
    })
}

/// After `move_to_new_address` the old address belongs to nobody.
fn refuse_old_address(portal: &Portal, headers: &HeaderMap) -> Option<Response> {
    let host = headers.get("host")?.to_str().ok()?;
    if !portal
        .inner
        .old_domains
        .lock()
        .unwrap()
        .iter()
        .any(|d| d == host)
    {
        return None;
    }
    portal
        .inner
        .requests_to_old_domains
        .fetch_add(1, Ordering::Relaxed);
    Some(
        (
            StatusCode::NOT_FOUND,
            "this portal moved to another address",
        )
            .into_response(),
    )
}

pub(super) async fn handle(
    State(portal): State<Portal>,
    Path(path): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = SystemTime::now();
    let inner = &portal.inner;
    if let Some(response) = refuse_old_address(&portal, &headers) {
        return response;
    }
    inner.request_count.fetch_add(1, Ordering::Relaxed);

    let (admitted, fault) = {
        let mut st = portal.lock();
        let admitted = !st.rate_limit_enabled
            || st.bucket.try_acquire(
                inner.cfg.rate_burst,
                inner.cfg.rate_drain_per_sec,
                tokio::time::Instant::now(),
            );
        (admitted, st.faults.roll())
    };
    if !admitted {
        inner.rejected_by_rate_limit.fetch_add(1, Ordering::Relaxed);
        let e = RestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "QUERY_LIMIT_EXCEEDED",
            "Too many requests",
        );
        return json_response(e.status, &e.body());
    }
    if let Some(response) = fault_response::error_response(&fault) {
        return response;
    }
    if let Fault::Slow(delay) = fault {
        tokio::time::sleep(delay).await;
    }

    let method = method_name(&path);
    if portal
        .lock()
        .failing_methods
        .contains(&method.to_lowercase())
    {
        let e = RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "Internal server error",
        );
        return json_response(e.status, &e.body());
    }
    let (mut params, cmd_order) = read_params(uri.query(), &headers, &body);
    let token = take_token(&mut params, &headers);
    let params = Value::Object(params);

    let outcome = {
        let mut st = portal.lock();
        match authenticate(&portal, &st, token.as_deref()) {
            Err(e) => Err(e),
            Ok(caller) => {
                st.requests_by_user.push((method.clone(), caller.user_id));
                let mut ctx = Ctx {
                    portal: &portal,
                    state: &mut st,
                    caller: &caller,
                };
                if method == "batch" {
                    *ctx.state.method_calls.entry("batch".into()).or_insert(0) += 1;
                    let now = SystemTime::now;
                    Ok(Reply::from(batch::run(
                        &mut ctx,
                        &params,
                        cmd_order.as_deref(),
                        || time_json(now()),
                    )))
                } else {
                    methods::dispatch(&mut ctx, &method, params)
                }
            }
        }
    };
    portal.notify();
    match outcome {
        Ok(reply) => {
            let mut body = Map::new();
            body.insert("result".into(), reply.result);
            if let Some(total) = reply.total {
                body.insert("total".into(), json!(total));
            }
            if let Some(next) = reply.next {
                body.insert("next".into(), json!(next));
            }
            let mut time = time_json(started);
            portal.lock().operating.annotate(&method, &mut time);
            body.insert("time".into(), time);
            json_response(StatusCode::OK, &Value::Object(body))
        }
        Err(e) => {
            tracing::debug!(method, error = %e.code, "simulated REST error");
            json_response(e.status, &e.body())
        }
    }
}

/// `User.Get.json` -> `user.get`.
fn method_name(path: &str) -> String {
    let m = path.trim_matches('/').to_lowercase();
    m.strip_suffix(".json")
        .or_else(|| m.strip_suffix(".xml"))
        .unwrap_or(&m)
        .to_string()
}

/// The token from `auth`, `access_token` or `Authorization: Bearer` (protocol.md §6.1).
fn take_token(params: &mut Map<String, Value>, headers: &HeaderMap) -> Option<String> {
    let from_params = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_string));
    let auth = from_params(params.remove("auth"));
    let access = from_params(params.remove("access_token"));
    let bearer = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    auth.or(access).or(bearer).filter(|t| !t.is_empty())
}

fn authenticate(
    portal: &Portal,
    st: &PortalState,
    token: Option<&str>,
) -> Result<Caller, RestError> {
    let token = token.ok_or_else(RestError::no_auth)?;
    match st.tokens.check(token) {
        Ok(user_id) => Ok(Caller {
            user_id,
            is_admin: portal.is_admin(user_id),
        }),
        Err(TokenError::Expired) => Err(RestError::expired_token()),
        // Issued by the cloud but not valid here: another portal's, or revoked by uninstall.
        Err(TokenError::Unknown) if portal.inner.registry.contains(token) => {
            Err(RestError::invalid_token())
        }
        Err(TokenError::Unknown) => Err(RestError::no_auth()),
    }
}

/// Query string, then the body on top (`array_replace`, core `CRestUtil::getRequestData`):
/// JSON when the content type says so (undecodable JSON counts as no body), `parse_str`
/// otherwise. Also returns the order of the `cmd` keys as sent, for `batch`.
fn read_params(
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> (Map<String, Value>, Option<Vec<String>>) {
    let mut params = Map::new();
    let mut order = None;
    if let Some(q) = query {
        params = php::parse_str(q);
        order = cmd_order_form(q);
    }
    if body.is_empty() {
        return (params, order);
    }
    let content_type = headers
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_lowercase();
    let (body_params, body_order) = match content_type.as_str() {
        "application/json" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => (
                m,
                serde_json::from_slice::<CmdOrder>(body)
                    .ok()
                    .and_then(|c| c.0),
            ),
            _ => (Map::new(), None),
        },
        // Not decoded here (no file uploads in the simulator).
        t if t.starts_with("multipart/") => (Map::new(), None),
        _ => {
            let text = String::from_utf8_lossy(body);
            (php::parse_str(text.trim()), cmd_order_form(&text))
        }
    };
    if body_params.keys().any(|k| k.eq_ignore_ascii_case("cmd")) {
        order = body_order;
    }
    for (k, v) in body_params {
        params.insert(k, v);
    }
    (params, order)
}

/// The order of `cmd[key]` in a form or query string.
fn cmd_order_form(raw: &str) -> Option<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    for (k, _) in url::form_urlencoded::parse(raw.as_bytes()) {
        let Some(head) = k.get(..4) else { continue };
        if !head.eq_ignore_ascii_case("cmd[") {
            continue;
        }
        let rest = &k[4..];
        if let Some(end) = rest.find(']') {
            let key = rest[..end].to_string();
            if !order.contains(&key) {
                order.push(key);
            }
        }
    }
    (!order.is_empty()).then_some(order)
}

/// The keys of a JSON body's `cmd` object in document order.
struct CmdOrder(Option<Vec<String>>);

impl<'de> Deserialize<'de> for CmdOrder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Top;
        impl<'de> Visitor<'de> for Top {
            type Value = CmdOrder;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CmdOrder, A::Error> {
                let mut order = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key.eq_ignore_ascii_case("cmd") {
                        order = Some(map.next_value::<Keys>()?.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(CmdOrder(order))
            }
        }
        d.deserialize_any(Top)
    }
}

struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("cmd")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
                let mut n = 0usize;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Keys((0..n).map(|i| i.to_string()).collect()))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Keys, E> {
                Ok(Keys(Vec::new()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Keys, E> {
                Ok(Keys(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_are_case_insensitive_and_drop_the_transport() {
        assert_eq!(method_name("User.Get.json"), "user.get");
        assert_eq!(method_name("batch"), "batch");
    }

    #[test]
    fn cmd_order_follows_the_request() {
        let body = br#"{"halt":0,"cmd":{"z":"app.info","a":"user.current","m":"app.info"}}"#;
        let order = serde_json::from_slice::<CmdOrder>(body).unwrap().0.unwrap();
        assert_eq!(order, ["z", "a", "m"]);
        let form = "cmd%5Bz%5D=app.info&cmd%5Ba%5D=user.current&halt=1";
        assert_eq!(cmd_order_form(form).unwrap(), ["z", "a"]);
    }
}
