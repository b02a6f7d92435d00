//! Decoding the PHP-style forms Bitrix24 posts (`auth[member_id]=…`, `properties[k][0]=…`),
//! protocol.md §4. serde_qs does the bracket parsing; this module only normalises what PHP
//! calls lists (maps whose keys are 0, 1, 2…) into JSON arrays.
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
#[error("malformed form body: {0}")]
pub struct FormError(String);

/// Nesting Bitrix24 needs: `properties[key][0]` is depth 2; leave a little room.
const MAX_DEPTH: usize = 4;

pub fn decode(body: &[u8]) -> Result<Value, FormError> {
    let config = serde_qs::Config::new()
        .max_depth(MAX_DEPTH)
        .use_form_encoding(true);
    let value: Value = config
        .deserialize_bytes(body)
        .map_err(|e| FormError(e.to_string()))?;
    if !value.is_object() {
        return Err(FormError("expected key=value pairs".into()));
    }
    Ok(normalise_lists(value))
}

fn normalise_lists(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let is_list = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
            if is_list {
                let mut items: Vec<(usize, Value)> = map
                    .into_iter()
                    .filter_map(|(k, v)| k.parse().ok().map(|i| (i, normalise_lists(v))))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            } else {
                Value::Object(
                    map.into_iter()
                        .map(|(k, v)| (k, normalise_lists(v)))
                        .collect::<Map<_, _>>(),
                )
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalise_lists).collect()),
        other => other,
    }
}

/// A string field of a decoded form.
pub fn str_at<'a>(form: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = form;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_percent_encoded_bracket_keys_lists_and_scalars() {
        let body = "workflow_id=664f.1&code=user_info\
            &document_id%5B0%5D=crm&document_id%5B1%5D=CCrmDocumentDeal&document_id%5B2%5D=DEAL_1\
            &properties%5Buser_id%5D=user_5\
            &properties%5Btags%5D%5B0%5D=vip&properties%5Btags%5D%5B1%5D=new\
            &properties%5Bsubject%5D=%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82+%26+co%3D1\
            &auth%5Bmember_id%5D=abc&auth%5Bapplication_token%5D=tok";
        let form = decode(body.as_bytes()).unwrap();
        assert_eq!(form["code"], "user_info");
        assert_eq!(
            form["document_id"],
            json!(["crm", "CCrmDocumentDeal", "DEAL_1"])
        );
        assert_eq!(form["properties"]["user_id"], "user_5");
        assert_eq!(form["properties"]["tags"], json!(["vip", "new"]));
        assert_eq!(form["properties"]["subject"], "Привет & co=1");
        assert_eq!(str_at(&form, &["auth", "member_id"]), Some("abc"));
    }

    #[test]
    fn plain_brackets_decode_too() {
        let form = decode(b"auth[member_id]=m&properties[k][1]=b&properties[k][0]=a").unwrap();
        assert_eq!(form["properties"]["k"], json!(["a", "b"]));
        assert_eq!(form["auth"]["member_id"], "m");
    }

    #[test]
    fn garbage_is_refused_or_harmless() {
        assert!(decode(b"a[b][c][d][e][f][g]=1")
            .map(|v| v.is_object())
            .unwrap_or(true));
        assert!(decode(b"%%%").is_err() || decode(b"%%%").is_ok());
    }
}
