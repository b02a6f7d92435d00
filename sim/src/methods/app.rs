//! `app.info` (core `CRestProvider::appInfo`): what the portal says about the calling app;
//! and the basic-scope `server.time` (the portal's clock and time zone) and `user.admin`
//! (whether the caller is a portal administrator).

use serde_json::{json, Value};

use super::{Ctx, Handler, Reply, RestError};

pub(crate) fn route(method: &str) -> Option<Handler> {
    match method {
        "app.info" => Some(info),
        "server.time" => Some(server_time),
        "user.admin" => Some(user_admin),
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

/// `YYYY-MM-DDThh:mm:ss±hh:mm` in the portal's zone (Moscow, as every `time` member here).
fn server_time(_ctx: &mut Ctx<'_>, _params: Value) -> Result<Reply, RestError> {
    let msk = chrono::FixedOffset::east_opt(3 * 3600).expect("a valid offset");
    let now = chrono::Utc::now().with_timezone(&msk);
    Ok(json!(now.format("%Y-%m-%dT%H:%M:%S%:z").to_string()).into())
}

fn user_admin(ctx: &mut Ctx<'_>, _params: Value) -> Result<Reply, RestError> {
    Ok(json!(ctx.caller.is_admin).into())
}
