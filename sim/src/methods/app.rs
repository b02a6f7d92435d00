//! `app.info` (core `CRestProvider::appInfo`): what the portal says about the calling app.

use serde_json::{json, Value};

use super::{Ctx, Handler, Reply, RestError};

pub(crate) fn route(method: &str) -> Option<Handler> {
    match method {
        "app.info" => Some(info),
        _ => None,
    }
}

fn info(ctx: &mut Ctx<'_>, _params: Value) -> Result<Reply, RestError> {
    Ok(json!({
        "ID": 17,
        "CODE": "b24flow",
        "VERSION": 1,
        "STATUS": "P",
        // False until the install finished (BX24.installFinish(), protocol.md §1.1).
        "INSTALLED": ctx.state.install_finished,
        "PAYMENT_EXPIRED": "N",
        "DAYS": null,
        "LANGUAGE_ID": "en",
        "LICENSE": "en_project",
        "LICENSE_TYPE": "project",
        "LICENSE_FAMILY": "project",
    })
    .into())
}
