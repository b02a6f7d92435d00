//! Each portal owns its CRM, invoicing, Disk and telephony areas: two portals of one cloud
//! never see each other's data, and each numbers its records from the start.

use serde_json::json;

use crate::support::{sim, unlimited};

#[tokio::test]
async fn two_portals_of_one_cloud_keep_their_areas_apart() {
    let s = sim(unlimited()).await;
    let other = s.cloud.add_portal(unlimited()).await.unwrap();

    let deal = s.portal.crm_add_item(2, json!({"title": "Here"}));
    let other_deal = other.crm_add_item(2, json!({"title": "There"}));
    assert_eq!((deal, other_deal), (1, 1), "IDs count per portal");
    let (status, body) = s
        .call("crm.item.get", json!({"entityTypeId": 2, "id": deal}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["item"]["title"], "Here");
    assert_eq!(other.crm_item(2, 1).unwrap()["title"], "There");

    let requisite = s
        .portal
        .crm_add_requisite(4, 1, json!({"RQ_INN": "7700000000"}));
    assert_eq!(other.crm_add_requisite(4, 1, json!({})), requisite);
    s.portal
        .crm_set_product_rows(2, deal, json!([{"productName": "Seat", "price": 5}]));
    assert!(other.crm_product_rows(2, other_deal).is_empty());

    let file = s.portal.add_disk_file("a.txt", b"a".to_vec());
    assert_eq!(other.add_disk_file("b.txt", b"b".to_vec()), file);
    let (_, body) = s.call("disk.file.get", json!({"id": file})).await;
    assert_eq!(body["result"]["NAME"], "a.txt");

    s.portal.add_phone_line("sip1", "Office");
    let (_, body) = s.call("voximplant.line.get", json!({})).await;
    assert_eq!(body["result"]["sip1"], "Office");
    let other_token = other.issue_token(1).access_token;
    let r = s
        .http
        .post(format!("{}voximplant.line.get", other.rest_url()))
        .json(&json!({"auth": other_token}))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["result"].get("sip1").is_none(), "{body}");
    s.cloud.shutdown().await;
}
