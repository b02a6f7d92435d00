//! `bizproc.activity.*`, `bizproc.robot.*`, `bizproc.event.send`, `bizproc.activity.log`
//! (protocol.md §3, §5), following the core's `Bitrix\Bizproc\RestService`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::{Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::{EventSend, RegisteredActivity};

const VALIDATION: &str = "ERROR_ACTIVITY_VALIDATION_FAILURE";

pub(crate) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "bizproc.activity.add" => activity_add,
        "bizproc.robot.add" => robot_add,
        "bizproc.activity.update" => activity_update,
        "bizproc.robot.update" => robot_update,
        "bizproc.activity.delete" => activity_delete,
        "bizproc.robot.delete" => robot_delete,
        "bizproc.activity.list" => activity_list,
        "bizproc.robot.list" => robot_list,
        "bizproc.event.send" => send_event,
        "bizproc.activity.log" => write_log,
        _ => return None,
    };
    Some(handler)
}

fn activity_add(c: &mut Ctx<'_>, p: Value) -> Result<Reply, RestError> {
    add(c, p, false)
}
fn robot_add(c: &mut Ctx<'_>, p: Value) -> Result<Reply, RestError> {
    add(c, p, true)
}
fn activity_update(c: &mut Ctx<'_>, p: Value) -> Result<Reply, RestError> {
    update(c, p, false)
}
fn robot_update(c: &mut Ctx<'_>, p: Value) -> Result<Reply, RestError> {
    update(c, p, true)
}
fn activity_delete(c: &mut Ctx<'_>, p: Value) -> Result<Reply, RestError> {
    delete(c, p, false)
}
fn robot_delete(c: &mut Ctx<'_>, p: Value) -> Result<Reply, RestError> {
    delete(c, p, true)
}
fn activity_list(c: &mut Ctx<'_>, p: Value) -> Result<Reply, RestError> {
    list(c, p, false)
}
fn robot_list(c: &mut Ctx<'_>, p: Value) -> Result<Reply, RestError> {
    list(c, p, true)
}

fn invalid(message: impl Into<String>) -> RestError {
    RestError::bad_request(VALIDATION, message)
}

/// Registering needs a portal admin (`checkAdminPermissions`).
fn require_admin(ctx: &Ctx<'_>) -> Result<(), RestError> {
    if ctx.caller.is_admin {
        Ok(())
    } else {
        Err(RestError::access_denied(""))
    }
}

/// `prepareActivityData`: keys upper-cased at every level except directly inside
/// PROPERTIES, RETURN_PROPERTIES and OPTIONS (property keys and option values keep case).
fn prepare_activity_data(v: &Value, keep_keys: bool) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, child) in m {
                let key = if keep_keys {
                    k.clone()
                } else {
                    k.to_uppercase()
                };
                let keep = matches!(key.as_str(), "PROPERTIES" | "RETURN_PROPERTIES" | "OPTIONS");
                out.insert(key, prepare_activity_data(child, keep));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|c| prepare_activity_data(c, false))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn isset<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn validate_code(code: Option<&Value>) -> Result<String, RestError> {
    let code = code.cloned().unwrap_or(Value::Null);
    if php::is_empty(&code) {
        return Err(invalid("Empty activity code!"));
    }
    let text = php::to_string(&code).unwrap_or_default();
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if ok {
        Ok(text)
    } else {
        Err(invalid("Wrong activity code!"))
    }
}

/// `HandlerHelper::checkCallback`: a host containing a dot (not first), scheme http(s).
fn check_callback(handler: Option<&Value>) -> Result<String, RestError> {
    let url = handler.and_then(php::to_string).unwrap_or_default();
    let wrong = || RestError::bad_request("ERROR_WRONG_HANDLER_URL", "Wrong handler URL");
    let (scheme, rest) = url.split_once("://").ok_or_else(wrong)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let host = match host_port.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host_port,
    };
    if host.is_empty() || host.find('.').unwrap_or(0) == 0 {
        return Err(wrong());
    }
    if scheme != "http" && scheme != "https" {
        return Err(RestError::bad_request(
            "ERROR_UNSUPPORTED_PROTOCOL",
            "Unsupported handler protocol",
        ));
    }
    Ok(url)
}

fn validate_properties(props: &Value) -> Result<(), RestError> {
    if !php::is_array(props) {
        return Err(invalid("Wrong properties array!"));
    }
    for (key, prop) in php::entries(props) {
        let key_ok = key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(invalid(format!("Wrong property key ({key})!")));
        }
        let name = prop.get("NAME").cloned().unwrap_or(Value::Null);
        if !prop.is_object() || php::is_empty(&name) {
            return Err(invalid(format!("Empty property NAME ({key})!")));
        }
    }
    Ok(())
}

/// `getDocumentFieldTypes` refuses a document type that is not `[module, entity, type]`.
fn validate_document_type(v: &Value) -> Result<(), RestError> {
    let parts = php::values(v);
    if !php::is_array(v) || parts.len() < 3 || parts.iter().take(3).any(php::is_empty) {
        return Err(invalid("Wrong activity DOCUMENT_TYPE!"));
    }
    Ok(())
}

fn add(ctx: &mut Ctx<'_>, params: Value, is_robot: bool) -> Result<Reply, RestError> {
    require_admin(ctx)?;
    let data = match prepare_activity_data(&params, false) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if data.is_empty() {
        return Err(invalid("Empty data!"));
    }
    let code = validate_code(data.get("CODE"))?;
    let handler = check_callback(data.get("HANDLER"))?;
    let name = data.get("NAME").cloned().unwrap_or(Value::Null);
    if php::is_empty(&name) {
        return Err(invalid("Empty activity NAME!"));
    }
    if let Some(p) = isset(&data, "PROPERTIES") {
        validate_properties(p)?;
    }
    if let Some(p) = isset(&data, "RETURN_PROPERTIES") {
        validate_properties(p)?;
    }
    if !is_robot {
        if let Some(d) = isset(&data, "DOCUMENT_TYPE") {
            validate_document_type(d)?;
        }
    }
    if isset(&data, "FILTER").is_some_and(|f| !php::is_array(f)) {
        return Err(invalid("Wrong activity FILTER!"));
    }
    // The key is md5(APP_ID@CODE) whatever the kind: one namespace for both (§3.1).
    if ctx.state.activities.iter().any(|a| a.code == code) {
        return Err(RestError::bad_request(
            "ERROR_ACTIVITY_ALREADY_INSTALLED",
            "Activity or Robot already installed!",
        ));
    }
    let get = |k: &str| isset(&data, k).cloned().unwrap_or(Value::Null);
    ctx.state.activities.push(RegisteredActivity {
        code,
        is_robot,
        handler,
        auth_user_id: data
            .get("AUTH_USER_ID")
            .map(php::intval)
            .unwrap_or(0)
            .max(0) as u64,
        use_subscription: data
            .get("USE_SUBSCRIPTION")
            .and_then(php::to_string)
            .unwrap_or_default(),
        name,
        properties: Arc::new(
            isset(&data, "PROPERTIES")
                .cloned()
                .unwrap_or_else(|| json!({})),
        ),
        return_properties: Arc::new(
            isset(&data, "RETURN_PROPERTIES")
                .cloned()
                .unwrap_or_else(|| json!({})),
        ),
        document_type: get("DOCUMENT_TYPE"),
        filter: get("FILTER"),
    });
    Ok(json!(true).into())
}

fn find_own(ctx: &Ctx<'_>, code: &str, is_robot: bool) -> Result<usize, RestError> {
    // The lookup filters by IS_ROBOT: activity.update does not find a robot (§3.2).
    ctx.state
        .activities
        .iter()
        .position(|a| a.code == code && a.is_robot == is_robot)
        .ok_or_else(|| {
            RestError::bad_request("ERROR_ACTIVITY_NOT_FOUND", "Activity or Robot not found!")
        })
}

fn update(ctx: &mut Ctx<'_>, params: Value, is_robot: bool) -> Result<Reply, RestError> {
    let data = match prepare_activity_data(&params, false) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    require_admin(ctx)?;
    let code = validate_code(data.get("CODE"))?;
    let index = find_own(ctx, &code, is_robot)?;
    let fields = match isset(&data, "FIELDS") {
        Some(Value::Object(f)) if !f.is_empty() => f.clone(),
        _ => return Err(invalid("No fields to update")),
    };
    let mut next = ctx.state.activities[index].clone();
    let mut changed = false;
    if isset(&fields, "HANDLER").is_some() {
        next.handler = check_callback(fields.get("HANDLER"))?;
        changed = true;
    }
    if let Some(v) = isset(&fields, "AUTH_USER_ID") {
        next.auth_user_id = php::intval(v).max(0) as u64;
        changed = true;
    }
    if let Some(v) = isset(&fields, "USE_SUBSCRIPTION") {
        next.use_subscription = php::to_string(v).unwrap_or_default();
        changed = true;
    }
    if isset(&fields, "USE_PLACEMENT").is_some() {
        changed = true;
    }
    if let Some(v) = fields.get("NAME").filter(|v| !php::is_empty(v)) {
        next.name = v.clone();
        changed = true;
    }
    if isset(&fields, "DESCRIPTION").is_some() {
        changed = true;
    }
    if let Some(v) = isset(&fields, "PROPERTIES") {
        validate_properties(v)?;
        next.properties = Arc::new(v.clone());
        changed = true;
    }
    if let Some(v) = isset(&fields, "RETURN_PROPERTIES") {
        validate_properties(v)?;
        next.return_properties = Arc::new(v.clone());
        changed = true;
    }
    if let Some(v) = isset(&fields, "DOCUMENT_TYPE") {
        if php::is_empty(v) {
            next.document_type = Value::Null;
        } else {
            validate_document_type(v)?;
            next.document_type = v.clone();
        }
        changed = true;
    }
    if let Some(v) = isset(&fields, "FILTER") {
        if php::is_empty(v) {
            next.filter = Value::Null;
        } else if !php::is_array(v) {
            return Err(invalid("Wrong activity FILTER!"));
        } else {
            next.filter = v.clone();
        }
        changed = true;
    }
    if !changed {
        return Err(invalid("No fields to update"));
    }
    ctx.state.activities[index] = next;
    Ok(json!(true).into())
}

fn delete(ctx: &mut Ctx<'_>, params: Value, is_robot: bool) -> Result<Reply, RestError> {
    let data = php::upper_keys(&params);
    require_admin(ctx)?;
    let code = validate_code(data.get("CODE"))?;
    let index = find_own(ctx, &code, is_robot)?;
    ctx.state.activities.remove(index);
    Ok(json!(true).into())
}

fn list(ctx: &mut Ctx<'_>, _params: Value, is_robot: bool) -> Result<Reply, RestError> {
    require_admin(ctx)?;
    let codes: Vec<Value> = ctx
        .state
        .activities
        .iter()
        .filter(|a| a.is_robot == is_robot)
        .map(|a| json!(a.code))
        .collect();
    Ok(Value::Array(codes).into())
}

/// The instance an event token points to; a forged token is `ACCESS_DENIED`, a finished
/// workflow (instance gone) is error `404` with HTTP 400 (protocol.md §5.1).
fn instance_of(
    ctx: &Ctx<'_>,
    params: &Map<String, Value>,
) -> Result<(String, String, String), RestError> {
    let token = params
        .get("EVENT_TOKEN")
        .and_then(php::to_string)
        .unwrap_or_default();
    let (workflow_id, activity, event_id) = ctx
        .portal
        .extract_event_token(&token)
        .ok_or_else(|| RestError::access_denied(""))?;
    if !ctx.state.workflows.contains_key(&workflow_id) {
        return Err(RestError::bad_request(
            "404",
            "Workflow instance not found.",
        ));
    }
    Ok((workflow_id, activity, event_id))
}

fn send_event(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let params = php::upper_keys(&params);
    let (workflow_id, activity, event_id) = instance_of(ctx, &params)?;
    let raw = params
        .get("RETURN_VALUES")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let log_message = params.get("LOG_MESSAGE").map(log_text).unwrap_or_default();
    let Some(wf) = ctx.state.workflows.get_mut(&workflow_id) else {
        return Err(RestError::bad_request(
            "404",
            "Workflow instance not found.",
        ));
    };
    if wf.activity_name != activity || wf.event_id != event_id {
        // Another activity of this workflow: nothing of ours listens, the runtime ignores it.
        return Ok(json!(true).into());
    }
    if wf.closed {
        // A second (or late) send while the instance exists: ignored, still `true` (§5.1).
        ctx.state.duplicate_event_sends += 1;
        return Ok(json!(true).into());
    }
    wf.closed = true;
    if !log_message.is_empty() {
        wf.logs.push(log_message.clone());
    }
    let send = EventSend {
        event_token: wf.event_token.clone(),
        return_values: accepted_return_values(&wf.return_properties, &raw),
        raw_return_values: raw,
        log_message,
        at: Instant::now(),
        fired_at: wf.fired_at,
    };
    let index = ctx.state.event_sends.len();
    ctx.state
        .event_send_index
        .insert(send.event_token.clone(), index);
    ctx.state.event_sends.push(send);
    Ok(json!(true).into())
}

fn write_log(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    let params = php::upper_keys(&params);
    let token = params
        .get("EVENT_TOKEN")
        .and_then(php::to_string)
        .unwrap_or_default();
    ctx.portal
        .extract_event_token(&token)
        .ok_or_else(|| RestError::access_denied(""))?;
    let message = params.get("LOG_MESSAGE").cloned().unwrap_or(Value::Null);
    if php::is_empty(&message) {
        return Err(RestError::bad_request(
            "ERROR_EMPTY_LOG_MESSAGE",
            "Empty log message!",
        ));
    }
    let (workflow_id, activity, event_id) = instance_of(ctx, &params)?;
    if let Some(wf) = ctx.state.workflows.get_mut(&workflow_id) {
        // Logged without closing the activity; a closed one no longer listens.
        if !wf.closed && wf.activity_name == activity && wf.event_id == event_id {
            wf.logs.push(log_text(&message));
        }
    }
    Ok(json!(true).into())
}

fn log_text(v: &Value) -> String {
    php::to_string(v).unwrap_or_else(|| v.to_string())
}

/// Keys matched case-insensitively to the declared RETURN_PROPERTIES, unknown ones dropped,
/// values converted by the declared type; a null value leaves the default (unset).
pub(crate) fn accepted_return_values(declared: &Value, raw: &Value) -> Value {
    let received: Map<String, Value> = php::upper_keys(raw);
    let mut out = Map::new();
    if let Value::Object(decl) = declared {
        for (key, desc) in decl {
            let Some(value) = received.get(&key.to_uppercase()).filter(|v| !v.is_null()) else {
                continue;
            };
            out.insert(key.clone(), convert_by_type(desc, value));
        }
    }
    Value::Object(out)
}

fn convert_by_type(desc: &Value, value: &Value) -> Value {
    let ty = desc
        .get("TYPE")
        .and_then(Value::as_str)
        .unwrap_or("string")
        .to_lowercase();
    let multiple = desc.get("MULTIPLE").and_then(Value::as_str) == Some("Y");
    if multiple {
        let items = match value {
            Value::String(s) if s.is_empty() => Vec::new(),
            other => php::values(other),
        };
        return Value::Array(items.iter().map(|v| convert_scalar(&ty, v)).collect());
    }
    match value {
        Value::Array(_) | Value::Object(_) => Value::Array(
            php::values(value)
                .iter()
                .map(|v| convert_scalar(&ty, v))
                .collect(),
        ),
        scalar => convert_scalar(&ty, scalar),
    }
}

fn convert_scalar(ty: &str, v: &Value) -> Value {
    match ty {
        "int" => {
            if php::is_empty(v) && !matches!(v, Value::Number(_)) && v.as_str() != Some("0") {
                Value::Null
            } else {
                json!(php::intval(v))
            }
        }
        "double" => match v {
            Value::Number(n) => json!(n.as_f64().unwrap_or(0.0)),
            other => {
                let s = php::to_string(other).unwrap_or_default();
                let s = s.trim().replace(',', ".");
                s.parse::<f64>().map(|f| json!(f)).unwrap_or(Value::Null)
            }
        },
        "bool" => {
            let yes = match v {
                Value::String(s) => matches!(s.to_lowercase().as_str(), "y" | "1" | "true" | "yes"),
                other => php::to_bool(other),
            };
            json!(if yes { "Y" } else { "N" })
        }
        _ => match v {
            Value::Array(_) | Value::Object(_) => v.clone(),
            other => json!(php::to_string(other).unwrap_or_default()),
        },
    }
}
