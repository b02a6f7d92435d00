//! `user.get` / `user.search` / `user.current` (methods.md §6), following the core's
//! `Bitrix\Rest\Api\User`: every allowed field is in each row (null when unset), filters are
//! the allowed field names (optionally with the documented prefixes), and users without a
//! department are visible to an admin only when the filter names an ID.

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use super::{page, start_param, Ctx, Handler, Reply, RestError};
use crate::php;

/// `getDefaultAllowedUserFields()` for the full `user` scope, intranet installed.
pub(crate) const USER_FIELDS: &[&str] = &[
    "ID",
    "XML_ID",
    "ACTIVE",
    "NAME",
    "LAST_NAME",
    "SECOND_NAME",
    "TITLE",
    "EMAIL",
    "LAST_LOGIN",
    "DATE_REGISTER",
    "TIME_ZONE",
    "IS_ONLINE",
    "TIME_ZONE_OFFSET",
    "TIMESTAMP_X",
    "LAST_ACTIVITY_DATE",
    "PERSONAL_GENDER",
    "PERSONAL_PROFESSION",
    "PERSONAL_WWW",
    "PERSONAL_BIRTHDAY",
    "PERSONAL_PHOTO",
    "PERSONAL_ICQ",
    "PERSONAL_PHONE",
    "PERSONAL_FAX",
    "PERSONAL_MOBILE",
    "PERSONAL_PAGER",
    "PERSONAL_STREET",
    "PERSONAL_CITY",
    "PERSONAL_STATE",
    "PERSONAL_ZIP",
    "PERSONAL_COUNTRY",
    "PERSONAL_MAILBOX",
    "PERSONAL_NOTES",
    "WORK_PHONE",
    "WORK_COMPANY",
    "WORK_POSITION",
    "WORK_DEPARTMENT",
    "WORK_WWW",
    "WORK_FAX",
    "WORK_PAGER",
    "WORK_STREET",
    "WORK_MAILBOX",
    "WORK_CITY",
    "WORK_STATE",
    "WORK_ZIP",
    "WORK_COUNTRY",
    "WORK_PROFILE",
    "WORK_LOGO",
    "WORK_NOTES",
    "UF_SKYPE_LINK",
    "UF_ZOOM",
    "UF_EMPLOYMENT_DATE",
    "UF_TIMEMAN",
    "UF_DEPARTMENT",
    "UF_INTERESTS",
    "UF_SKILLS",
    "UF_WEB_SITES",
    "UF_XING",
    "UF_LINKEDIN",
    "UF_FACEBOOK",
    "UF_TWITTER",
    "UF_SKYPE",
    "UF_DISTRICT",
    "UF_PHONE_INNER",
    "USER_TYPE",
];

const EXTRA_FILTER_FIELDS: &[&str] = &["HAS_DEPARTAMENT", "NAME_SEARCH", "EXTERNAL_AUTH_ID"];

/// Filter prefixes, longest first (user-get.md).
const OPERATORS: &[&str] = &[
    "!=%", "!%=", "!@", "!=", "!%", "=%", "%=", ">=", "<=", "@", "%", "=", "!", ">", "<",
];

pub(crate) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "user.get" | "user.search" => get,
        "user.current" => current,
        _ => return None,
    };
    Some(handler)
}

/// One user as `getUserData` renders it.
pub(crate) fn render(id: u64, stored: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for &key in USER_FIELDS {
        let value = stored.get(key).cloned().unwrap_or(Value::Null);
        let rendered = match key {
            "ID" => json!(id.to_string()),
            "ACTIVE" => json!(value == "Y"),
            "IS_ONLINE" => json!(if value == "Y" { "Y" } else { "N" }),
            // CRestUtil::ConvertDate: midnight in the server's zone (MSK), or "".
            "PERSONAL_BIRTHDAY" => match value.as_str() {
                Some(d) if !d.is_empty() => json!(format!("{d}T03:00:00+03:00")),
                _ => json!(""),
            },
            "LAST_LOGIN" | "DATE_REGISTER" => json!(value.as_str().unwrap_or("")),
            // Bitrix DateTime objects json-encode as empty objects (user-get.md example).
            "TIMESTAMP_X" | "LAST_ACTIVITY_DATE" => json!({}),
            "UF_DEPARTMENT" => match value {
                Value::Array(_) => value,
                _ => json!([]),
            },
            "USER_TYPE" => json!(value.as_str().unwrap_or("employee")),
            _ => value,
        };
        out.insert(key.to_string(), rendered);
    }
    Value::Object(out)
}

fn current(ctx: &mut Ctx<'_>, _params: Value) -> Result<Reply, RestError> {
    let id = ctx.caller.user_id;
    Ok(match ctx.state.directory.users.get(&id) {
        Some(stored) => render(id, stored).into(),
        None => json!([]).into(),
    })
}

struct Condition {
    op: &'static str,
    field: String,
    value: Value,
}

fn parse_condition(key: &str, value: &Value) -> Option<Condition> {
    let op = OPERATORS
        .iter()
        .find(|op| key.starts_with(*op))
        .copied()
        .unwrap_or("");
    let field = &key[op.len()..];
    let allowed = USER_FIELDS.contains(&field) || EXTRA_FILTER_FIELDS.contains(&field);
    if !allowed {
        return None;
    }
    // prepareUserData's conversions.
    let value = match field {
        "ID" => match value {
            Value::Array(_) | Value::Object(_) => json!(php::values(value)
                .iter()
                .map(php::intval)
                .collect::<Vec<_>>()),
            v => json!(php::intval(v)),
        },
        // `($v && $v != 'N') ? 'Y' : 'N'` with PHP's loose `!=`: a JSON `true` compares as
        // a bool with the truthy 'N' and yields 'N'; only strings other than "N" mean Y.
        "ACTIVE" | "IS_ONLINE" => {
            let yes = php::to_bool(value)
                && match value {
                    Value::Bool(_) => false,
                    Value::String(s) => s != "N",
                    _ => true,
                };
            json!(if yes { "Y" } else { "N" })
        }
        "UF_DEPARTMENT" if !php::is_array(value) && !php::is_empty(value) => json!([value]),
        _ => value.clone(),
    };
    Some(Condition {
        op,
        field: field.to_string(),
        value,
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => String::new(),
        other => php::to_string(other).unwrap_or_default(),
    }
}

fn compare(a: &str, b: &str) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.to_lowercase().cmp(&b.to_lowercase()),
    }
}

fn matches(id: u64, user: &Map<String, Value>, c: &Condition) -> bool {
    if c.field == "NAME_SEARCH" {
        let hay = ["NAME", "LAST_NAME", "SECOND_NAME", "EMAIL", "WORK_POSITION"]
            .iter()
            .map(|k| text(user.get(*k).unwrap_or(&Value::Null)).to_lowercase())
            .collect::<Vec<_>>()
            .join(" ");
        return text(&c.value)
            .to_lowercase()
            .split_whitespace()
            .all(|word| hay.contains(word));
    }
    if c.field == "HAS_DEPARTAMENT" || c.field == "EXTERNAL_AUTH_ID" {
        return true;
    }
    let actual: Vec<String> = match c.field.as_str() {
        "ID" => vec![id.to_string()],
        "UF_DEPARTMENT" => php::values(user.get("UF_DEPARTMENT").unwrap_or(&json!([])))
            .iter()
            .map(text)
            .collect(),
        f => vec![text(user.get(f).unwrap_or(&Value::Null))],
    };
    let wanted: Vec<String> = match &c.value {
        Value::Array(_) | Value::Object(_) => php::values(&c.value).iter().map(text).collect(),
        v => vec![text(v)],
    };
    if c.field == "UF_DEPARTMENT" && matches!(c.op, "" | "=" | "@") {
        return actual.iter().any(|a| wanted.contains(a));
    }
    let any =
        |f: &dyn Fn(&str, &str) -> bool| actual.iter().any(|a| wanted.iter().any(|w| f(a, w)));
    let eq = |a: &str, w: &str| {
        if w.contains('%') {
            php::like(a, w)
        } else {
            a.to_lowercase() == w.to_lowercase()
        }
    };
    let sub = |a: &str, w: &str| a.to_lowercase().contains(&w.to_lowercase());
    match c.op {
        "" | "=" | "@" => any(&eq),
        "!" | "!=" | "!@" => !any(&eq),
        "%" => any(&sub),
        "!%" => !any(&sub),
        "=%" | "%=" => any(&|a, w| php::like(a, w)),
        "!=%" | "!%=" => !any(&|a, w| php::like(a, w)),
        ">" => any(&|a, w| compare(a, w) == Ordering::Greater),
        ">=" => any(&|a, w| compare(a, w) != Ordering::Less),
        "<" => any(&|a, w| compare(a, w) == Ordering::Less),
        "<=" => any(&|a, w| compare(a, w) != Ordering::Greater),
        _ => true,
    }
}

fn get(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let offset = start_param(&params);
    let mut query = php::upper_keys(&params);
    let sort = query
        .get("SORT")
        .and_then(php::to_string)
        .unwrap_or_default()
        .to_uppercase();
    let order = query
        .get("ORDER")
        .and_then(php::to_string)
        .unwrap_or_default();
    if let Some(filter) = query.get("FILTER").filter(|f| php::is_array(f)) {
        query = php::upper_keys(filter);
    }
    let conditions: Vec<Condition> = query
        .iter()
        .filter_map(|(k, v)| parse_condition(k, v))
        .collect();
    let has_id_filter = conditions
        .iter()
        .any(|c| c.field == "ID" && c.op.is_empty());
    let has_department_only = query.get("HAS_DEPARTAMENT").and_then(Value::as_str) == Some("Y");
    let caller = ctx.caller.clone();

    let mut rows: Vec<(u64, &Map<String, Value>)> = ctx
        .state
        .directory
        .users
        .iter()
        .filter(|(_, u)| {
            // `=IS_REAL_USER`: e-mail users, bots and the like are never listed.
            !matches!(
                u.get("USER_TYPE").and_then(Value::as_str),
                Some("email" | "bot")
            )
        })
        .filter(|(id, u)| {
            // Extranet rule: without (admin and an ID filter), users with no department are
            // hidden unless they are the caller.
            let has_department = !php::is_empty(u.get("UF_DEPARTMENT").unwrap_or(&Value::Null));
            (caller.is_admin && has_id_filter) || has_department || **id == caller.user_id
        })
        .filter(|(_, u)| {
            !has_department_only || !php::is_empty(u.get("UF_DEPARTMENT").unwrap_or(&Value::Null))
        })
        .filter(|(id, u)| conditions.iter().all(|c| matches(**id, u, c)))
        .map(|(id, u)| (*id, u))
        .collect();
    if rows.is_empty() {
        // No count, no nav data: `{"result":[]}` without `total`.
        return Ok(json!([]).into());
    }
    if !sort.is_empty() && !order.is_empty() {
        let desc = order.eq_ignore_ascii_case("DESC");
        rows.sort_by(|(ia, a), (ib, b)| {
            let ord = if sort == "ID" {
                ia.cmp(ib)
            } else {
                compare(
                    &text(a.get(&sort).unwrap_or(&Value::Null)),
                    &text(b.get(&sort).unwrap_or(&Value::Null)),
                )
            };
            if desc {
                ord.reverse()
            } else {
                ord
            }
        });
    }
    let items = rows.into_iter().map(|(id, u)| render(id, u)).collect();
    Ok(page(items, offset))
}
