//! `disk.file.get` and the download links it hands out.

use serde_json::json;

use crate::support::{sim, unlimited};

#[tokio::test]
async fn files_are_described_and_downloaded_only_through_a_valid_link() {
    let s = sim(unlimited()).await;
    let portal = &s.portal;
    let id = portal.add_disk_file("Счёт 5.pdf", b"%PDF bytes".to_vec());
    let denied = portal.add_disk_file("secret.txt", b"x".to_vec());
    portal.deny_disk_file(denied);
    let http = &s.http;

    let (status, body) = s.call("disk.file.get", json!({ "id": id })).await;
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

    let (status, body) = s.call("disk.file.get", json!({ "id": 1 })).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("ERROR_NOT_FOUND"))
    );
    let (status, body) = s.call("disk.file.get", json!({ "id": denied })).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("ACCESS_DENIED"))
    );
    let (status, body) = s.call("disk.file.get", json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("ERROR_ARGUMENT"))
    );

    portal.trash_disk_file(id);
    let (_, body) = s.call("disk.file.get", json!({ "ID": id })).await;
    assert_eq!(body["result"]["DELETED_TYPE"], "3");
    s.cloud.shutdown().await;
}
