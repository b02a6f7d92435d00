//! The PHP semantics a Bitrix24 portal gets for free and clients trip over: `parse_str`,
//! `intval`, `empty()`, `(bool)`, `(string)`, `is_numeric` and `http_build_query`.
//!
//! The portal is PHP, so every form body, query string and batch sub-query goes through
//! `parse_str` (bracket keys become nested arrays) before a method sees it.

use serde_json::{Map, Value};

/// Deep enough for `fields[PHONE][0][VALUE]` and anything our clients send.
const MAX_DEPTH: usize = 16;

/// `parse_str()`: a query string with PHP bracket keys (literal or `%5B`/`%5D`) into nested
/// maps. Decoding is `serde_qs`; afterwards PHP's own quirks are applied: a key without a value
/// is `""`, and `.`/space in a top-level name become `_`.
///
/// Integer-keyed groups (`a[0]=x&a[1]=y`) come out as JSON lists, which is what PHP's
/// `json_encode` makes of the same array; handlers accept lists and maps alike.
pub fn parse_str(query: &str) -> Map<String, Value> {
    if query.is_empty() {
        return Map::new();
    }
    let config = serde_qs::Config::new()
        .max_depth(MAX_DEPTH)
        .use_form_encoding(true);
    let parsed = match config.deserialize_str::<Value>(query) {
        Ok(value) => value,
        Err(error) => {
            // serde_qs refuses some inputs PHP accepts (`a=1&a[]=2`); PHP never fails, so
            // fall back to flat keys rather than rejecting the request.
            tracing::debug!(%error, "parse_str fallback to flat keys");
            let mut flat = Map::new();
            for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
                flat.insert(k.into_owned(), Value::String(v.into_owned()));
            }
            Value::Object(flat)
        }
    };
    let map = match parsed {
        Value::Object(m) => m,
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Map::new(),
    };
    map.into_iter()
        .map(|(k, v)| (php_top_level_name(&k), nulls_to_empty(v)))
        .collect()
}

/// PHP turns `.` and spaces in a variable's base name into `_` (`a.b=1` is `$a_b`).
fn php_top_level_name(key: &str) -> String {
    key.replace(['.', ' '], "_")
}

fn nulls_to_empty(v: Value) -> Value {
    match v {
        Value::Null => Value::String(String::new()),
        Value::Array(items) => Value::Array(items.into_iter().map(nulls_to_empty).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, nulls_to_empty(v))).collect())
        }
        other => other,
    }
}

/// `empty($v)`: null, false, 0, 0.0, "", "0" and empty arrays.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "0",
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// `(bool)$v`.
pub fn to_bool(v: &Value) -> bool {
    !is_empty(v)
}

/// `is_array($v)`: JSON objects and lists are both PHP arrays.
pub fn is_array(v: &Value) -> bool {
    matches!(v, Value::Array(_) | Value::Object(_))
}

/// `intval($v)`.
pub fn intval(v: &Value) -> i64 {
    match v {
        Value::Null => 0,
        Value::Bool(b) => i64::from(*b),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
            .unwrap_or_else(|| n.as_f64().map(|f| f as i64).unwrap_or(0)),
        Value::String(s) => intval_str(s),
        Value::Array(a) => i64::from(!a.is_empty()),
        Value::Object(m) => i64::from(!m.is_empty()),
    }
}

/// `intval("  42abc")` is 42, `intval("abc")` is 0, `intval("user_5")` is 0.
pub fn intval_str(s: &str) -> i64 {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0B', '\x0C']);
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let end = digits.bytes().take_while(u8::is_ascii_digit).count();
    let n = digits[..end]
        .parse::<i64>()
        .unwrap_or(if end > 0 { i64::MAX } else { 0 });
    if neg {
        -n
    } else {
        n
    }
}

/// `(string)$v` for scalars; `None` for arrays (PHP would say "Array").
pub fn to_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some(String::new()),
        Value::Bool(true) => Some("1".into()),
        Value::Bool(false) => Some(String::new()),
        Value::Number(n) => Some(number_to_string(n)),
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// PHP prints `2.0` as `2`.
pub fn number_to_string(n: &serde_json::Number) -> String {
    if n.is_f64() {
        let f = n.as_f64().unwrap_or(0.0);
        if f.fract() == 0.0 && f.abs() < 1e15 {
            return format!("{}", f as i64);
        }
    }
    n.to_string()
}

/// The values of a PHP array (a JSON list or map); a scalar is a one-element list.
pub fn values(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items.clone(),
        Value::Object(m) => m.values().cloned().collect(),
        other => vec![other.clone()],
    }
}

/// The `(key, value)` pairs of a PHP array (a JSON map, or a list with index keys).
pub fn entries(v: &Value) -> Vec<(String, Value)> {
    match v {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect(),
        _ => Vec::new(),
    }
}

/// `array_change_key_case($a, CASE_UPPER)` on a PHP array; list indices stay as they are.
pub fn upper_keys(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.to_uppercase(), v.clone()))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.clone()))
            .collect(),
        _ => Map::new(),
    }
}

/// What `json_encode` makes of a PHP array built in this order: a list when the keys are
/// exactly `0..n`, an object otherwise (empty arrays are `[]`).
pub fn php_array(entries: Vec<(String, Value)>) -> Value {
    let is_list = entries
        .iter()
        .enumerate()
        .all(|(i, (k, _))| *k == i.to_string());
    if is_list {
        Value::Array(entries.into_iter().map(|(_, v)| v).collect())
    } else {
        Value::Object(entries.into_iter().collect())
    }
}

/// `http_build_query()`: nested values as percent-encoded bracket keys
/// (`auth%5Baccess_token%5D=…`), spaces as `+`, `true`/`false` as `1`/`0`, nulls left out.
pub fn build_query(pairs: &[(String, String)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

/// Flattens `value` under `prefix` into `http_build_query` pairs.
pub fn flatten_into(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push((prefix.to_string(), if *b { "1" } else { "0" }.to_string())),
        Value::Number(n) => out.push((prefix.to_string(), number_to_string(n))),
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_into(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                flatten_into(&format!("{prefix}[{k}]"), v, out);
            }
        }
    }
}

/// Case-insensitive SQL `LIKE` with `%` wildcards (MySQL's default collation ignores case).
pub fn like(value: &str, pattern: &str) -> bool {
    let value = value.to_lowercase();
    let pattern = pattern.to_lowercase();
    let parts: Vec<&str> = pattern.split('%').collect();
    if parts.len() == 1 {
        return value == pattern;
    }
    let mut rest = value.as_str();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// `rawurlencode()`: RFC 3986 percent-encoding of everything but unreserved characters.
pub fn rawurlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_str_nests_bracket_keys_literal_or_encoded() {
        let m = parse_str("filter%5BID%5D=5&select[]=NAME&select[]=EMAIL&a.b=1&flag");
        assert_eq!(
            Value::Object(m),
            json!({"filter": {"ID": "5"}, "select": ["NAME", "EMAIL"], "a_b": "1", "flag": ""})
        );
    }

    #[test]
    fn intval_follows_php() {
        assert_eq!(intval(&json!(" 42abc")), 42);
        assert_eq!(intval(&json!("user_5")), 0);
        assert_eq!(intval(&json!(3.9)), 3);
        assert_eq!(intval(&json!([])), 0);
        assert_eq!(intval(&json!([0])), 1);
    }

    #[test]
    fn empty_follows_php() {
        for v in [
            json!(null),
            json!(""),
            json!("0"),
            json!(0),
            json!([]),
            json!({}),
            json!(false),
        ] {
            assert!(is_empty(&v), "{v}");
        }
        assert!(!is_empty(&json!("false")));
    }

    #[test]
    fn like_matches_wildcards_case_insensitively() {
        assert!(like("Ivanov", "iva%"));
        assert!(like("Ivanov", "%NOV"));
        assert!(like("Ivanov", "%an%"));
        assert!(!like("Ivanov", "%x%"));
        assert!(like("Sales", "sales"));
    }
}
