//! `voximplant.line.get`, `voximplant.line.outgoing.get`, `voximplant.tts.voices.get` and
//! `voximplant.callback.start` (methods.md §3), with the docs' errors: `ACCESS_DENIED` without
//! the permission, `ERROR_CORE` for an unknown line or a number that is not one.
use axum::http::StatusCode;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::{Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::telephony_calendar::{CallbackCall, BASE_NUMBER_LINE};

pub(crate) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "voximplant.line.get" => line_get,
        "voximplant.line.outgoing.get" => outgoing_get,
        "voximplant.tts.voices.get" => voices_get,
        "voximplant.callback.start" => callback_start,
        _ => return None,
    };
    Some(handler)
}

/// "Management of Numbers — modification": the admin has it.
fn require_line_management(ctx: &Ctx<'_>) -> Result<(), RestError> {
    if ctx.caller.is_admin {
        Ok(())
    } else {
        Err(RestError::access_denied(""))
    }
}

/// PHP encodes an empty array as `[]`, a filled one as an object.
fn php_map<'a>(pairs: impl Iterator<Item = (&'a String, &'a String)>) -> Value {
    let map: Map<String, Value> = pairs.map(|(k, v)| (k.clone(), json!(v))).collect();
    if map.is_empty() {
        json!([])
    } else {
        Value::Object(map)
    }
}

fn line_get(ctx: &mut Ctx<'_>, _params: Value) -> Result<Reply, RestError> {
    require_line_management(ctx)?;
    Ok(ctx
        .portal
        .telephony_calendar(|a| php_map(a.telephony.lines.iter()))
        .into())
}

fn outgoing_get(ctx: &mut Ctx<'_>, _params: Value) -> Result<Reply, RestError> {
    require_line_management(ctx)?;
    Ok(ctx
        .portal
        .telephony_calendar(|a| json!(a.telephony.default_line))
        .into())
}

fn voices_get(ctx: &mut Ctx<'_>, _params: Value) -> Result<Reply, RestError> {
    Ok(ctx
        .portal
        .telephony_calendar(|a| php_map(a.telephony.voices.iter()))
        .into())
}

fn core_error(description: String) -> RestError {
    RestError::bad_request("ERROR_CORE", description)
}

/// `CVoxImplantPhone`-style check: separators allowed, 10 to 15 digits, nothing else.
fn is_phone_number(number: &str) -> bool {
    let digits = number.chars().filter(char::is_ascii_digit).count();
    let only_phone_chars = number.chars().enumerate().all(|(i, c)| {
        c.is_ascii_digit() || (c == '+' && i == 0) || matches!(c, ' ' | '-' | '(' | ')')
    });
    only_phone_chars && (10..=15).contains(&digits)
}

fn callback_start(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let p = php::upper_keys(&params);
    let text_of = |key: &str| p.get(key).and_then(php::to_string).unwrap_or_default();
    let (line, number, text) = (
        text_of("FROM_LINE"),
        text_of("TO_NUMBER"),
        text_of("TEXT_TO_PRONOUNCE"),
    );
    let voice = Some(text_of("VOICE")).filter(|v| !v.is_empty());
    let caller = ctx.caller.user_id;
    ctx.portal.telephony_calendar(|a| {
        let t = &mut a.telephony;
        if t.cannot_call.contains(&caller) {
            return Err(RestError::new(
                StatusCode::FORBIDDEN,
                "ACCESS_DENIED",
                "Access denied",
            ));
        }
        if line == BASE_NUMBER_LINE {
            if t.base_number.is_none() {
                return Err(core_error(format!(
                    "Could not find config for number {line}"
                )));
            }
        } else if !t.lines.contains_key(&line) {
            return Err(core_error(format!("Could not find line {line}")));
        }
        if !is_phone_number(&number) {
            return Err(core_error("Phone number is not correct".to_string()));
        }
        let hash: String = (0..32)
            .map(|_| format!("{:x}", rand::thread_rng().gen_range(0..16)))
            .collect();
        let call_id = format!("callback.{hash}.{}", chrono::Utc::now().timestamp());
        t.calls.push(CallbackCall {
            call_id: call_id.clone(),
            from_line: line,
            to_number: number,
            text,
            voice,
            user_id: caller,
        });
        Ok(json!({ "RESULT": true, "CALL_ID": call_id }).into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_need_ten_to_fifteen_digits_and_nothing_else() {
        assert!(is_phone_number("+79123456789"));
        assert!(is_phone_number("+7 (912) 345-67-89"));
        assert!(!is_phone_number("12345"));
        assert!(!is_phone_number("+7912345678x"));
        assert!(!is_phone_number("7+9123456789"));
    }
}
