//! `disk.file.get` (methods.md §2, docs `api-reference/disk/file/disk-file-get.md`): the
//! file's fields with numbers as strings and a `DOWNLOAD_URL` that embeds an auth token;
//! `ERROR_ARGUMENT` without an ID, `ERROR_NOT_FOUND`, `ACCESS_DENIED`. The link it hands
//! out is served by `endpoint::download`.
use std::time::SystemTime;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::{Ctx, Handler, Reply, RestError};
use crate::php;
use crate::state::disk::DiskFile;

pub(crate) fn route(method: &str) -> Option<Handler> {
    let handler: Handler = match method {
        "disk.file.get" => file_get,
        _ => return None,
    };
    Some(handler)
}

fn file_get(ctx: &mut Ctx<'_>, params: Value) -> Result<Reply, RestError> {
    // The disk REST service reads its parameters case-insensitively.
    let id = php::entries(&params)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("id"))
        .map(|(_, v)| php::intval(&v))
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            RestError::bad_request(
                "ERROR_ARGUMENT",
                "Invalid value of parameter {Parameter #0}",
            )
        })?;
    let expires = SystemTime::now() + ctx.portal.inner.cfg.access_token_ttl;
    let base = ctx.portal.base_url();
    ctx.portal.disk(|d| {
        let file = d.files.get(&(id as u64)).cloned().ok_or_else(|| {
            RestError::bad_request(
                "ERROR_NOT_FOUND",
                format!("Could not find entity with id `{id}`"),
            )
        })?;
        if d.denied.contains(&file.id) {
            return Err(RestError::new(
                StatusCode::FORBIDDEN,
                "ACCESS_DENIED",
                "Access denied",
            ));
        }
        let (auth, token) = d.issue_link(file.id, expires);
        Ok(Reply::from(render(&file, &base, &auth, &token)))
    })
}

fn render(f: &DiskFile, base: &str, auth: &str, token: &str) -> Value {
    let deleted = f.deleted_type != 0;
    json!({
        "ID": f.id.to_string(),
        "NAME": f.name,
        "CODE": null,
        "STORAGE_ID": "1",
        "TYPE": "file",
        "PARENT_ID": "1",
        "DELETED_TYPE": f.deleted_type.to_string(),
        "GLOBAL_CONTENT_VERSION": "1",
        "FILE_ID": (f.id + 23926).to_string(),
        "SIZE": f.bytes.len().to_string(),
        "CREATE_TIME": f.created,
        "UPDATE_TIME": f.created,
        "DELETE_TIME": if deleted { json!(f.created) } else { Value::Null },
        "CREATED_BY": f.created_by.to_string(),
        "UPDATED_BY": f.created_by.to_string(),
        "DELETED_BY": if deleted { f.created_by.to_string() } else { "0".to_string() },
        "DOWNLOAD_URL": format!("{base}/rest/download.json?auth={auth}&token={}", php::rawurlencode(token)),
        "DETAIL_URL": format!("{base}/company/personal/user/{}/disk/file/{}", f.created_by, php::rawurlencode(&f.name)),
    })
}
