//! `batch`: up to 50 sub-calls in one HTTP request (protocol.md §6.5).
use serde_json::{Map, Value};

use super::error::B24Error;

/// Bitrix24 refuses longer batches (`BATCH_MAX_LENGTH`).
pub const MAX_COMMANDS: usize = 50;

#[derive(Clone, Debug, Default)]
pub struct Batch {
    halt: bool,
    commands: Vec<Command>,
}

/// One sub-call: its key, method and parameters (values may hold `$result[...]`).
#[derive(Clone, Debug)]
pub(crate) struct Command {
    pub key: String,
    pub method: String,
    pub params: Value,
}

impl Command {
    /// `method?params`, the params encoded as a PHP query string (brackets, indexed lists).
    pub(crate) fn encode(&self) -> String {
        let query = match &self.params {
            Value::Object(map) if !map.is_empty() => {
                serde_qs::to_string(&self.params).unwrap_or_default()
            }
            _ => String::new(),
        };
        if query.is_empty() {
            self.method.clone()
        } else {
            format!("{}?{query}", self.method)
        }
    }
}

impl Batch {
    /// `halt`: stop at the first failing sub-call; needed when later calls use
    /// `$result[...]` of earlier ones (methods.md §0.3).
    pub fn new(halt: bool) -> Self {
        Self {
            halt,
            commands: Vec::new(),
        }
    }

    /// Adds `method?params`, the params encoded as a PHP query string (brackets, indexed
    /// lists). Values may be `$result[key][field]` references to earlier sub-calls.
    pub fn push(&mut self, key: &str, method: &str, params: &Value) -> &mut Self {
        self.commands.push(Command {
            key: key.to_string(),
            method: method.to_string(),
            params: params.clone(),
        });
        self
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    pub(crate) fn halts(&self) -> bool {
        self.halt
    }

    pub(crate) fn commands(&self) -> &[Command] {
        &self.commands
    }

    pub(crate) fn to_params(&self) -> Value {
        encode_commands(self.halt, self.commands.iter())
    }
}

/// The `batch` parameters for `commands` in their order.
pub(crate) fn encode_commands<'a>(
    halt: bool,
    commands: impl Iterator<Item = &'a Command>,
) -> Value {
    let cmd: Map<String, Value> = commands
        .map(|c| (c.key.clone(), Value::String(c.encode())))
        .collect();
    serde_json::json!({ "halt": if halt { 1 } else { 0 }, "cmd": cmd })
}

/// Renames a sub-call's references to the keys of its own batch (`$result[user]` →
/// `$result[<prefix>user]`) so that several jobs' batches can share one request.
pub(crate) fn prefix_references(value: &Value, keys: &[String], prefix: &str) -> Value {
    match value {
        Value::String(s) if s.contains('$') => {
            let mut out = s.clone();
            for name in ["result", "next", "total", "time", "error"] {
                for key in keys {
                    out = out.replace(
                        &format!("${name}[{key}]"),
                        &format!("${name}[{prefix}{key}]"),
                    );
                }
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| prefix_references(v, keys, prefix))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), prefix_references(v, keys, prefix)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The answer to a batch: per-key results and per-key errors.
#[derive(Clone, Debug, Default)]
pub struct BatchResult {
    pub results: Map<String, Value>,
    pub errors: Map<String, Value>,
    pub totals: Map<String, Value>,
    pub nexts: Map<String, Value>,
    /// Per sub-call `time` (with `operating`, `operating_reset_at`).
    pub times: Map<String, Value>,
    /// Per key, the method its command called, so an error names it as a direct call
    /// would (e.g. `crm.item.get`, not the batch key).
    pub methods: std::collections::HashMap<String, String>,
}

impl BatchResult {
    pub(crate) fn from_result(mut result: Value) -> Self {
        // Empty members come back as `[]` instead of `{}` (protocol.md §6.5).
        let mut take = |member: &str| match result.get_mut(member).map(Value::take) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Self {
            results: take("result"),
            errors: take("result_error"),
            totals: take("result_total"),
            nexts: take("result_next"),
            times: take("result_time"),
            methods: Default::default(),
        }
    }

    /// Names each key's method (see [`BatchResult::methods`]).
    pub(crate) fn with_methods(mut self, batch: &Batch) -> Self {
        self.methods = batch
            .commands()
            .iter()
            .map(|c| (c.key.clone(), c.method.clone()))
            .collect();
        self
    }

    fn method_of(&self, key: &str) -> String {
        self.methods
            .get(key)
            .cloned()
            .unwrap_or_else(|| format!("batch[{key}]"))
    }

    /// [`BatchResult::get`], moving the result out (a shared batch hands each group its own).
    pub(crate) fn take(&mut self, key: &str) -> Result<Value, B24Error> {
        self.get(key)?;
        Ok(self.results.remove(key).unwrap_or_default())
    }

    /// The result of one sub-call, or its error as a [`B24Error`].
    pub fn get(&self, key: &str) -> Result<&Value, B24Error> {
        if let Some(err) = self.errors.get(key) {
            let code = err
                .get("error")
                .map(|c| match c {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            let description = err
                .get("error_description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            return Err(B24Error::Api {
                method: self.method_of(key),
                status: 400,
                code,
                description,
            });
        }
        self.results.get(key).ok_or_else(|| B24Error::Api {
            method: self.method_of(key),
            status: 400,
            code: "NO_RESULT".into(),
            description: "the batch returned no result for this command".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_are_php_query_strings() {
        let mut batch = Batch::new(true);
        batch.push("u", "user.get", &json!({"filter": {"ID": 5}}));
        batch.push(
            "d",
            "department.get",
            &json!({"ID": "$result[u][0][UF_DEPARTMENT]"}),
        );
        batch.push("i", "app.info", &json!({}));
        let params = batch.to_params();
        let u = params["cmd"]["u"].as_str().unwrap();
        let decoded = percent_decode(u);
        assert_eq!(decoded, "user.get?filter[ID]=5");
        assert_eq!(
            percent_decode(params["cmd"]["d"].as_str().unwrap()),
            "department.get?ID=$result[u][0][UF_DEPARTMENT]"
        );
        assert_eq!(params["cmd"]["i"], "app.info");
        assert_eq!(params["halt"], 1);
    }

    fn percent_decode(s: &str) -> String {
        url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned()
    }

    #[test]
    fn empty_members_and_sub_errors_are_read() {
        let r = BatchResult::from_result(json!({
            "result": {"a": [1]}, "result_error": [], "result_total": []
        }));
        assert_eq!(r.get("a").unwrap(), &json!([1]));
        let r = BatchResult::from_result(json!({
            "result": [], "result_error": {"b": {"error": "ACCESS_DENIED", "error_description": "no"}}
        }));
        let err = r.get("b").unwrap_err();
        assert_eq!(err.code(), Some("ACCESS_DENIED"));
    }
}

#[cfg(test)]
mod encoding_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_with_query_syntax_survive_the_round_trip() {
        let mut batch = Batch::new(false);
        let text = "a&b=c+d 50% Привет #1";
        batch.push(
            "x",
            "m",
            &json!({"fields": {"TITLE": text}, "list": [1, 2]}),
        );
        let cmd = batch.to_params()["cmd"]["x"].as_str().unwrap().to_string();
        let query = cmd.strip_prefix("m?").unwrap();
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert!(
            pairs.contains(&("fields[TITLE]".to_string(), text.to_string())),
            "{pairs:?}"
        );
        assert!(
            pairs.contains(&("list[1]".to_string(), "2".to_string())),
            "{pairs:?}"
        );
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;
    use serde_json::json;

    /// Bitrix24 runs sub-calls in the order they arrive and `$result[...]` only sees earlier
    /// ones, so the JSON `cmd` object must keep insertion order (serde_json preserve_order).
    #[test]
    fn commands_keep_the_order_they_were_added_in() {
        let mut batch = Batch::new(true);
        batch.push("zeta", "a", &json!({}));
        batch.push("alpha", "b", &json!({}));
        let body = serde_json::to_string(&batch.to_params()).unwrap();
        assert!(
            body.find("zeta").unwrap() < body.find("alpha").unwrap(),
            "{body}"
        );
    }
}
