//! `/rest/download.json`, where the links `disk.file.get` hands out point: it serves a
//! file's bytes only for a valid `auth` and `token` pair.
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::rest::json_response;
use crate::methods::RestError;
use crate::php;
use crate::portal::Portal;

/// `GET /rest/download.json?auth=…&token=disk|…`: the file's bytes, or the REST error
/// envelope when the token or the link is not (or no longer) valid.
pub(super) async fn download(State(portal): State<Portal>, uri: Uri) -> Response {
    portal.inner.request_count.fetch_add(1, Ordering::Relaxed);
    let query = php::parse_str(uri.query().unwrap_or_default());
    let param = |k: &str| query.get(k).and_then(php::to_string).unwrap_or_default();
    let (auth, token) = (param("auth"), param("token"));
    let served = portal.disk(|d| {
        let live = d
            .link_auth
            .get(&auth)
            .is_some_and(|until| *until > SystemTime::now());
        if !live {
            return Err(RestError::invalid_token());
        }
        let file = d
            .links
            .get(&token)
            .and_then(|id| d.files.get(id))
            .filter(|f| !d.denied.contains(&f.id))
            .cloned()
            .ok_or_else(|| {
                RestError::new(StatusCode::NOT_FOUND, "ERROR_NOT_FOUND", "File not found")
            })?;
        *d.downloads.entry(file.id).or_insert(0) += 1;
        Ok(file)
    });
    match served {
        Ok(file) => {
            let disposition = format!(
                "attachment; filename=\"{}\"; filename*=utf-8''{}",
                ascii_fallback(&file.name),
                php::rawurlencode(&file.name)
            );
            (
                StatusCode::OK,
                [
                    ("content-type", "application/octet-stream".to_string()),
                    ("content-disposition", disposition),
                ],
                file.bytes,
            )
                .into_response()
        }
        Err(e) => json_response(e.status, &e.body()),
    }
}

/// The plain `filename` for clients that do not read `filename*` (RFC 6266 §4.3): ASCII only.
fn ascii_fallback(name: &str) -> String {
    name.chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
