//! `user.get` answers in Bitrix formats.

use serde_json::json;

use crate::support::{sim, unlimited};

#[tokio::test]
async fn user_get_returns_bitrix_formats() {
    let s = sim(unlimited()).await;
    let dept = s.portal.add_department("Sales", None);
    let id = s.portal.add_user(json!({
        "NAME": "Анна", "LAST_NAME": "Koch", "ACTIVE": true, "IS_ONLINE": "Y", "PERSONAL_GENDER": "F",
        "PERSONAL_BIRTHDAY": "1990-05-01", "UF_DEPARTMENT": [dept], "UF_PHONE_INNER": 204,
    }));
    let (status, body) = s.form("user.get", &format!("filter%5BID%5D={id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1);
    let u = &body["result"][0];
    assert_eq!(u["ID"], id.to_string());
    assert_eq!(u["ACTIVE"], true);
    assert_eq!(u["IS_ONLINE"], "Y");
    assert_eq!(u["PERSONAL_BIRTHDAY"], "1990-05-01T03:00:00+03:00");
    assert_eq!(u["UF_DEPARTMENT"], json!([dept]));
    assert_eq!(u["UF_PHONE_INNER"], "204");
    assert_eq!(u["USER_TYPE"], "employee");
    assert!(u["UF_SKYPE"].is_null(), "unset fields are present as null");
    assert!(u["EMAIL"].as_str().unwrap().contains('@'));

    // A missing user is an empty list without `total`.
    let (status, body) = s.call("user.get", json!({"ID": 987654})).await;
    assert_eq!((status, &body["result"]), (200, &json!([])));
    assert!(body.get("total").is_none());

    // Without a department a user is visible to an admin asking by ID, not to others.
    let loner = s
        .portal
        .add_user(json!({"NAME": "Ben", "UF_DEPARTMENT": []}));
    assert_eq!(
        s.call("user.get", json!({"filter": {"ID": loner}})).await.1["result"][0]["NAME"],
        "Ben"
    );
    let other = s.portal.issue_token(id).access_token;
    assert_eq!(
        s.call_as(&other, "user.get", json!({"filter": {"ID": loner}}))
            .await
            .1["result"],
        json!([])
    );
    let (_, me) = s.call_as(&other, "user.current", json!({})).await;
    assert_eq!(me["result"]["NAME"], "Анна");

    let ids = s.portal.seed_demo_directory(60);
    assert_eq!(ids.len(), 60);
    let (_, page) = s.call("user.get", json!({})).await;
    assert_eq!(page["result"].as_array().unwrap().len(), 50);
    assert_eq!(page["next"], 50);
    let (_, page2) = s.call("user.get", json!({"start": 50})).await;
    assert_eq!(page2["total"], page["total"]);
    s.cloud.shutdown().await;
}
