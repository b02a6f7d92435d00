//! The CRM methods (methods.md §7–14): `crm.item.*` for leads, deals, contacts and companies,
//! the deprecated `crm.company.update` (company addresses), dictionaries (`crm.status.list`,
//! `crm.category.list`, `crm.currency.list`), activities and timeline comments. Modern
//! controllers answer coded errors (`NOT_FOUND`, `ACCESS_DENIED`); the legacy proxies a bare
//! message with an empty code (`CCrmRestProxyBase`: `RestException($message)`).
mod invoices;
mod items;
mod legacy_invoice;
mod payments;
mod requisites;
mod timeline;

use axum::http::StatusCode;
use serde_json::Value;

use super::{Ctx, Handler, RestError};
use crate::php;

pub(crate) fn route(method: &str) -> Option<Handler> {
    items::route(method)
        .or_else(|| timeline::route(method))
        .or_else(|| invoices::route(method))
        .or_else(|| requisites::route(method))
        .or_else(|| payments::route(method))
        .or_else(|| legacy_invoice::route(method))
}

/// A parameter as PHP's REST proxies resolve it: exact, lower, upper case.
pub(crate) fn param<'a>(params: &'a Value, name: &str) -> Option<&'a Value> {
    params
        .get(name)
        .or_else(|| params.get(name.to_lowercase()))
        .or_else(|| params.get(name.to_uppercase()))
}

pub(crate) fn int_param(params: &Value, name: &str) -> i64 {
    param(params, name).map(php::intval).unwrap_or(0)
}

/// A legacy proxy's error: HTTP 400, empty code, the message.
pub(crate) fn legacy_error(message: &str) -> RestError {
    RestError::bad_request("", message)
}

pub(crate) fn not_found(what: &str) -> RestError {
    RestError::bad_request("NOT_FOUND", format!("{what} not found"))
}

pub(crate) fn denied() -> RestError {
    RestError::new(StatusCode::FORBIDDEN, "ACCESS_DENIED", "Access denied")
}

/// After a method marked with `Portal::crm_fail_after` did its work: the lost answer.
pub(crate) fn lost_answer(ctx: &Ctx<'_>, method: &str) -> Result<(), RestError> {
    let fail = ctx.portal.crm(|c| c.fail_after.remove(method));
    if fail {
        Err(RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "Internal server error",
        ))
    } else {
        Ok(())
    }
}

/// `lead`/`deal`/`contact`/`company` (or their IDs) → entity type ID.
pub(crate) fn owner_type(v: &Value) -> Option<u64> {
    match php::to_string(v)?.to_lowercase().as_str() {
        "lead" | "1" => Some(1),
        "deal" | "2" => Some(2),
        "contact" | "3" => Some(3),
        "company" | "4" => Some(4),
        _ => None,
    }
}
