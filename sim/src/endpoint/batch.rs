//! `batch` (protocol.md §6.5), as the core's `CRestProvider::methodsBatch` and
//! `CRestUtil::ParseBatchQuery`/`processBatchElement` do it:
//!
//! - `cmd` and `halt` are read case-insensitively; `halt` is PHP `(bool)` (so the string
//!   `"false"` halts); at most 50 commands run, later ones get `ERROR_BATCH_LENGTH_EXCEEDED`.
//! - each command is `parse_url`'d into method and query; the query goes through `parse_str`,
//!   and then every string value has its `$result[key][a][b]` references replaced: a value
//!   that is exactly one reference becomes the referenced value itself (a list or map too);
//!   the walk stops at the deepest segment found; inside a longer string only a string or
//!   number is spliced in (the match runs to the next whitespace). Keys go through the same
//!   function with an empty name list, which never resolves, so references in keys stay as
//!   written.
//! - names after `$` are `result`, `next`, `total`, `time`, `error` (case-insensitive match,
//!   case-sensitive lookup).
//! - the reply is always HTTP 200 with `result`, `result_error`, `result_total`,
//!   `result_next`, `result_time`; empty members are `[]`.

use serde_json::{json, Map, Value};

use crate::methods::{self, Ctx, RestError};
use crate::php;

const MAX_LENGTH: usize = 50;
const NAMES: &[&str] = &["result", "next", "total", "time", "error"];

/// `$arResult` of `methodsBatch`, what references resolve against.
#[derive(Default)]
struct Results {
    result: Map<String, Value>,
    next: Map<String, Value>,
    total: Map<String, Value>,
    time: Map<String, Value>,
    error: Map<String, Value>,
}

impl Results {
    fn get(&self, name: &str) -> Option<Value> {
        let m = match name {
            "result" => &self.result,
            "next" => &self.next,
            "total" => &self.total,
            "time" => &self.time,
            "error" => &self.error,
            _ => return None,
        };
        Some(Value::Object(m.clone()))
    }
}

/// Runs a batch; `order` is the order of the `cmd` keys as sent (JSON maps here are sorted).
pub(crate) fn run(
    ctx: &mut Ctx<'_>,
    params: &Value,
    order: Option<&[String]>,
    now: impl Fn() -> Value,
) -> Value {
    let query = php::upper_keys(params);
    let halt = query.get("HALT").is_some_and(php::to_bool);
    let commands: Vec<(String, Value)> = match query.get("CMD") {
        Some(Value::Object(m)) => {
            let mut out: Vec<(String, Value)> = Vec::new();
            for key in order.unwrap_or(&[]) {
                if let Some(v) = m.get(key) {
                    if !out.iter().any(|(k, _)| k == key) {
                        out.push((key.clone(), v.clone()));
                    }
                }
            }
            for (k, v) in m {
                if !out.iter().any(|(seen, _)| seen == k) {
                    out.push((k.clone(), v.clone()));
                }
            }
            out
        }
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect(),
        _ => Vec::new(),
    };

    let mut results = Results::default();
    let (mut ok, mut errors, mut totals, mut nexts, mut times) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (n, (key, call)) in commands.into_iter().enumerate() {
        let mut called = String::new();
        let outcome = if n < MAX_LENGTH {
            let Some(call) = call.as_str() else { continue };
            let (method, query) = parse_url(call);
            called = method.to_lowercase();
            let params = parse_batch_query(query, &results);
            if matches!(
                method.to_lowercase().as_str(),
                "batch" | "download" | "upload"
            ) {
                Err(RestError::bad_request(
                    "ERROR_BATCH_METHOD_NOT_ALLOWED",
                    "Method is not allowed for batch usage",
                ))
            } else {
                methods::dispatch(ctx, method, params)
            }
        } else {
            Err(RestError::bad_request(
                "ERROR_BATCH_LENGTH_EXCEEDED",
                "Max batch length exceeded",
            ))
        };
        match outcome {
            Ok(reply) => {
                results.result.insert(key.clone(), reply.result.clone());
                ok.push((key.clone(), reply.result));
                if let Some(t) = reply.total {
                    results.total.insert(key.clone(), json!(t));
                    totals.push((key.clone(), json!(t)));
                }
                if let Some(nx) = reply.next {
                    results.next.insert(key.clone(), json!(nx));
                    nexts.push((key.clone(), json!(nx)));
                }
                let mut t = now();
                ctx.state.operating.annotate(&called, &mut t);
                results.time.insert(key.clone(), t.clone());
                times.push((key, t));
            }
            Err(e) => {
                results.error.insert(key.clone(), e.body());
                errors.push((key, e.body()));
                if halt {
                    break;
                }
            }
        }
    }
    json!({
        "result": php::php_array(ok),
        "result_error": php::php_array(errors),
        "result_total": php::php_array(totals),
        "result_next": php::php_array(nexts),
        "result_time": php::php_array(times),
    })
}

/// `parse_url($call)`: path = method, query = after `?` (without a `#fragment`).
fn parse_url(call: &str) -> (&str, &str) {
    let (path, query) = match call.split_once('?') {
        Some((p, q)) => (p, q),
        None => (call, ""),
    };
    let path = path.split('#').next().unwrap_or("");
    let query = query.split('#').next().unwrap_or("");
    (path, query)
}

/// `ParseBatchQuery`: `parse_str`, then references resolved through the whole structure.
fn parse_batch_query(query: &str, results: &Results) -> Value {
    if query.is_empty() {
        return json!([]);
    }
    process_structure(Value::Object(php::parse_str(query)), results)
}

fn process_structure(v: Value, results: &Results) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match process_element(&k, &[""], &|_| None) {
                        Value::String(s) => s,
                        other => php::to_string(&other).unwrap_or_default(),
                    };
                    (key, process_structure(v, results))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| process_structure(v, results))
                .collect(),
        ),
        Value::String(s) => process_element(&s, NAMES, &|name| results.get(name)),
        other => other,
    }
}

struct Match {
    full: String,
    name: String,
    path: String,
}

/// PCRE `\s` without the `u` flag.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C)
}

/// `preg_match_all('/\$(names)([^\s]*)/i', $s)`.
fn find_matches(s: &str, names: &[&str]) -> Vec<Match> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let after = &s[i + 1..];
        let name = names.iter().find(|n| {
            after.len() >= n.len() && after.as_bytes()[..n.len()].eq_ignore_ascii_case(n.as_bytes())
        });
        let Some(name) = name else {
            i += 1;
            continue;
        };
        let name_end = i + 1 + name.len();
        let path_len = bytes[name_end..]
            .iter()
            .take_while(|b| !is_space(**b))
            .count();
        let end = name_end + path_len;
        out.push(Match {
            full: s[i..end].to_string(),
            name: s[i + 1..name_end].to_string(),
            path: s[name_end..end].to_string(),
        });
        i = end.max(i + 1);
    }
    out
}

/// `preg_match_all('/\[([^\]]+)\]/', $path)`.
fn bracket_keys(path: &str) -> Vec<String> {
    let bytes = path.as_bytes();
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'[' {
            if let Some(rel) = bytes[i + 1..].iter().position(|b| *b == b']') {
                if rel > 0 {
                    keys.push(path[i + 1..i + 1 + rel].to_string());
                    i = i + 1 + rel + 1;
                    continue;
                }
            } else {
                break;
            }
        }
        i += 1;
    }
    keys
}

/// `isset($r[$key]) ? $r[$key] : stop`.
fn step(r: &Value, key: &str) -> Option<Value> {
    match r {
        Value::Object(m) => m.get(key).filter(|v| !v.is_null()).cloned(),
        Value::Array(items) => {
            let idx: usize = key.parse().ok().filter(|i: &usize| i.to_string() == key)?;
            items.get(idx).filter(|v| !v.is_null()).cloned()
        }
        // A string offset: "abc"[1] is "b".
        Value::String(s) => {
            let i: i64 = key.parse().ok().filter(|i: &i64| i.to_string() == key)?;
            let len = s.len() as i64;
            let idx = if i < 0 { len + i } else { i };
            let byte = *s.as_bytes().get(usize::try_from(idx).ok()?)?;
            Some(json!(if byte.is_ascii() {
                (byte as char).to_string()
            } else {
                "\u{FFFD}".to_string()
            }))
        }
        _ => None,
    }
}

/// `CRestUtil::processBatchElement`.
fn process_element(s: &str, names: &[&str], lookup: &dyn Fn(&str) -> Option<Value>) -> Value {
    let mut query = Value::String(s.to_string());
    for m in find_matches(s, names) {
        let keys = bracket_keys(&m.path);
        if keys.is_empty() {
            continue;
        }
        let mut r = lookup(&m.name);
        for key in &keys {
            match r.as_ref().and_then(|v| step(v, key)) {
                Some(next) => r = Some(next),
                None => break,
            }
        }
        let r = r.unwrap_or(Value::Null);
        if query.as_str() == Some(m.full.as_str()) {
            query = r;
        } else {
            let replacement = match &r {
                Value::String(text) => text.clone(),
                Value::Number(n) => php::number_to_string(n),
                _ => continue,
            };
            if let Value::String(q) = &query {
                query = Value::String(q.replace(&m.full, &replacement));
            }
        }
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> Results {
        let mut r = Results::default();
        r.result.insert(
            "u".into(),
            json!([{"ID": "5", "UF_DEPARTMENT": [3, 7], "NAME": "Anna"}]),
        );
        r.result.insert("n".into(), json!(42));
        r
    }

    fn resolve(s: &str) -> Value {
        let r = results();
        process_element(s, NAMES, &|name| r.get(name))
    }

    #[test]
    fn a_whole_value_reference_keeps_its_type() {
        assert_eq!(resolve("$result[u][0][UF_DEPARTMENT]"), json!([3, 7]));
        assert_eq!(resolve("$result[u][0][UF_DEPARTMENT][1]"), json!(7));
        assert_eq!(resolve("$result[n]"), json!(42));
    }

    #[test]
    fn a_missing_segment_stops_at_the_deepest_value() {
        assert_eq!(
            resolve("$result[u][0][NOPE]"),
            json!({"ID": "5", "UF_DEPARTMENT": [3, 7], "NAME": "Anna"})
        );
        assert_eq!(
            resolve("$result[x][0]"),
            json!({"u": [{"ID": "5", "UF_DEPARTMENT": [3, 7], "NAME": "Anna"}], "n": 42})
        );
    }

    #[test]
    fn an_embedded_reference_splices_scalars_only() {
        assert_eq!(resolve("id $result[u][0][ID] ok"), json!("id 5 ok"));
        assert_eq!(resolve("n=$result[n] "), json!("n=42 "));
        // The match runs to the next whitespace.
        assert_eq!(resolve("x$result[u][0][ID]y"), json!("x5"));
        // Non-scalars are skipped.
        assert_eq!(
            resolve("d $result[u][0][UF_DEPARTMENT]"),
            json!("d $result[u][0][UF_DEPARTMENT]")
        );
        // Names are matched case-insensitively but looked up as written.
        assert_eq!(resolve("$RESULT[u][0][ID]"), Value::Null);
    }

    #[test]
    fn key_references_never_resolve() {
        let r = results();
        let v = process_structure(
            Value::Object(php::parse_str("$result=1&b[$result]=2&c=$result[n]")),
            &r,
        );
        assert_eq!(v, json!({"$result": "1", "b": {"$result": "2"}, "c": 42}));
    }

    #[test]
    fn parse_url_splits_method_and_query() {
        assert_eq!(parse_url("user.get?ID=1#x"), ("user.get", "ID=1"));
        assert_eq!(parse_url("app.info"), ("app.info", ""));
    }
}
