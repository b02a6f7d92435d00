//! `disk.file.get` (methods.md §2, docs `api-reference/disk/file/disk-file-get.md`): the
//! file's fields with numbers as strings and a `DOWNLOAD_URL` that embeds an auth token;
//! `ERROR_ARGUMENT` without an ID, `ERROR_NOT_FOUND`, `ACCESS_DENIED`. And the download
//! endpoint that link points to, `/rest/download.json`, which serves the bytes only for a
//! valid `auth` and `token` pair.
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{Ctx, Handler, Reply, RestError};
use crate::php;
use crate::portal::disk::{self, DiskFile};
use crate::portal::Portal;

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
    disk::with(ctx.portal, |d| {
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
        "DOWNLOAD_URL": format!("{base}/rest/download.json?auth={auth}&token={}", percent(token)),
        "DETAIL_URL": format!("{base}/company/personal/user/{}/disk/file/{}", f.created_by, percent(&f.name)),
    })
}

/// `GET /rest/download.json?auth=…&token=disk|…`: the file's bytes, or the REST error
/// envelope when the token or the link is not (or no longer) valid.
pub(crate) async fn download(State(portal): State<Portal>, uri: Uri) -> Response {
    portal.inner.request_count.fetch_add(1, Ordering::Relaxed);
    let query = php::parse_str(uri.query().unwrap_or_default());
    let param = |k: &str| query.get(k).and_then(php::to_string).unwrap_or_default();
    let (auth, token) = (param("auth"), param("token"));
    let served = disk::with(&portal, |d| {
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
                percent(&file.name)
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
        Err(e) => (
            e.status,
            [("content-type", "application/json; charset=utf-8")],
            e.body().to_string(),
        )
            .into_response(),
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

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::{Cloud, CloudConfig, PortalConfig};
    use serde_json::{json, Value};

    async fn call(
        client: &reqwest::Client,
        rest: &str,
        token: &str,
        method: &str,
        params: Value,
    ) -> (u16, Value) {
        let mut body = params;
        body["auth"] = json!(token);
        let r = client
            .post(format!("{rest}{method}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    #[tokio::test]
    async fn files_are_described_and_downloaded_only_through_a_valid_link() {
        let cloud = Cloud::start(CloudConfig::default()).await.unwrap();
        let portal = cloud
            .add_portal(PortalConfig {
                rate_limit_enabled: false,
                ..PortalConfig::default()
            })
            .await
            .unwrap();
        let id = portal.add_disk_file("Счёт 5.pdf", b"%PDF bytes".to_vec());
        let denied = portal.add_disk_file("secret.txt", b"x".to_vec());
        portal.deny_disk_file(denied);
        let token = portal.issue_token(1).access_token;
        let http = reqwest::Client::new();
        let rest = portal.rest_url();

        let (status, body) = call(&http, &rest, &token, "disk.file.get", json!({ "id": id })).await;
        assert_eq!(status, 200, "{body}");
        let file = &body["result"];
        assert_eq!(file["ID"], id.to_string());
        assert_eq!(file["NAME"], "Счёт 5.pdf");
        assert_eq!(file["SIZE"], "10");
        assert_eq!(file["DELETED_TYPE"], "0");
        let url = file["DOWNLOAD_URL"].as_str().unwrap().to_string();
        assert!(
            url.starts_with(&format!(
                "{}rest/download.json?auth=",
                portal.base_url() + "/"
            )),
            "{url}"
        );

        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let disposition = r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            disposition.contains("filename*=utf-8''%D0%A1%D1%87%D1%91%D1%82%205.pdf"),
            "{disposition}"
        );
        assert_eq!(&r.bytes().await.unwrap()[..], b"%PDF bytes");
        assert_eq!(portal.disk_downloads(id), 1);

        let forged_auth = url.replace("auth=", "auth=0");
        let r = http.get(&forged_auth).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let forged_token = url.replace("token=disk", "token=xdisk");
        let r = http.get(&forged_token).send().await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(portal.disk_downloads(id), 1);

        let (status, body) = call(&http, &rest, &token, "disk.file.get", json!({ "id": 1 })).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("ERROR_NOT_FOUND"))
        );
        let (status, body) = call(
            &http,
            &rest,
            &token,
            "disk.file.get",
            json!({ "id": denied }),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("ACCESS_DENIED"))
        );
        let (status, body) = call(&http, &rest, &token, "disk.file.get", json!({})).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("ERROR_ARGUMENT"))
        );

        portal.trash_disk_file(id);
        let (_, body) = call(&http, &rest, &token, "disk.file.get", json!({ "ID": id })).await;
        assert_eq!(body["result"]["DELETED_TYPE"], "3");
        cloud.shutdown().await;
    }
}
