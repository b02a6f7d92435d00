//! Reading the loosely typed values that portals and workflows hand over: IDs that come as
//! numbers or strings, scalars as text, and one spelling of true (Bitrix24's `Y`/`N`).
use serde_json::{json, Map, Value};

/// A JSON ID (`5`, `"5"`, `" 5 "`) as a number; `0` and anything else is no ID.
pub fn id_of(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

/// A JSON value as text: `null` and objects are empty, booleans `Y`/`N`, lists joined
/// with `", "` (empty items left out).
pub fn text_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => yes_no(*b).to_string(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| text_of(Some(item)))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
        Some(Value::Null | Value::Object(_)) | None => String::new(),
    }
}

/// Whether a value means yes: `true`, `1`, or `Y`/`yes`/`true`/`1` in any case.
pub fn is_yes(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64() == Some(1),
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "y" | "1" | "true" | "yes"
        ),
        _ => false,
    }
}

/// Bitrix24's spelling of a boolean.
pub fn yes_no(b: bool) -> &'static str {
    if b {
        "Y"
    } else {
        "N"
    }
}

/// The `result` return value (`OK`/`ERROR`) of activities that report their outcome so.
pub fn result_property() -> crate::schema::Property {
    crate::schema::Property::new(
        "result",
        crate::schema::PropType::String,
        "Result (OK/ERROR)",
        "Результат (OK/ERROR)",
    )
}

/// Return values that mark a failure in activities with a `result` of `OK`/`ERROR`.
pub fn result_error() -> Map<String, Value> {
    let mut values = Map::new();
    values.insert("result".into(), json!("ERROR"));
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_as_numbers_or_strings_and_zero_is_none() {
        assert_eq!(id_of(Some(&json!(5))), Some(5));
        assert_eq!(id_of(Some(&json!(" 7 "))), Some(7));
        assert_eq!(id_of(Some(&json!(0))), None);
        assert_eq!(id_of(Some(&json!("x"))), None);
        assert_eq!(id_of(None), None);
    }

    #[test]
    fn values_read_as_text_with_one_spelling_of_true() {
        assert_eq!(text_of(Some(&json!(true))), "Y");
        assert_eq!(text_of(Some(&json!(12.5))), "12.5");
        assert_eq!(text_of(Some(&json!(["a", "", "b"]))), "a, b");
        assert_eq!(text_of(Some(&json!({"a": 1}))), "");
        assert!(is_yes(&json!("Y")) && is_yes(&json!(1)) && is_yes(&json!("true")));
        assert!(!is_yes(&json!("N")) && !is_yes(&json!(null)));
    }
}
