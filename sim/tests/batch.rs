//! `batch` as the core runs it: references between commands, `halt`, the length limit.

use serde_json::{json, Value};

use crate::support::{decode, sim, unlimited};

#[tokio::test]
async fn batch_resolves_references_like_the_core() {
    let s = sim(unlimited()).await;
    let sales = s.portal.add_department("Sales", None);
    let north = s.portal.add_department("Продажи Север", Some(sales));
    let user = s
        .portal
        .add_user(json!({"NAME": "Анна", "UF_DEPARTMENT": [sales, north]}));
    let before = s.portal.request_count();
    // Raw JSON: commands run in the order sent (a serde_json::Value would sort the keys).
    let batch = format!(
        r#"{{"auth":"{}","halt":1,"cmd":{{
            "u":"user.get?filter[ID]={user}",
            "all":"department.get?ID=$result[u][0][UF_DEPARTMENT]",
            "first":"department.get?ID=$result[u][0][UF_DEPARTMENT][0]",
            "text":"user.get?filter[NAME]=$result[u][0][NAME]"}}}}"#,
        s.admin
    );
    let r = s
        .http
        .post(format!("{}batch", s.portal.rest_url()))
        .header("content-type", "application/json")
        .body(batch)
        .send()
        .await
        .unwrap();
    let (status, body) = decode(r).await;
    assert_eq!(status, 200, "{body}");
    let r = &body["result"];
    assert_eq!(r["result_error"], json!([]));
    assert_eq!(r["result"]["u"][0]["ID"], user.to_string());
    let names: Vec<&str> = r["result"]["all"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["NAME"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Sales", "Продажи Север"]);
    assert_eq!(r["result"]["first"][0]["ID"], sales.to_string());
    assert_eq!(r["result"]["text"][0]["ID"], user.to_string());
    assert_eq!(r["result_total"]["all"], 2);
    assert!(r["result_time"]["u"].get("start").is_some());
    assert_eq!(
        s.portal.request_count() - before,
        1,
        "a batch is one request"
    );
    assert_eq!(s.portal.method_calls("user.get"), 2);
    assert_eq!(s.portal.method_calls("department.get"), 2);

    // An empty list filters nothing in department.get (CIBlock::FilterCreateEx).
    let nobody = s
        .portal
        .add_user(json!({"NAME": "Ben", "UF_DEPARTMENT": []}));
    // Keys sorted on purpose: "d" would run before "u" (its reference finds nothing).
    let (_, body) = s
        .call(
            "batch",
            json!({"cmd": {
                "a_user": format!("user.get?ID={nobody}"),
                "d": "department.get?ID=$result[a_user][0][UF_DEPARTMENT]",
            }}),
        )
        .await;
    assert_eq!(
        body["result"]["result"]["a_user"][0]["UF_DEPARTMENT"],
        json!([])
    );
    assert_eq!(
        body["result"]["result"]["d"].as_array().unwrap().len(),
        3,
        "root, Sales, North"
    );
    s.cloud.shutdown().await;
}

#[tokio::test]
async fn batch_halt_length_limit_and_nesting() {
    let s = sim(unlimited()).await;
    // Form encoding: cmd values are encoded twice, keys keep their order.
    let cmd = |key: &str, call: &str| {
        format!(
            "cmd%5B{key}%5D={}",
            url::form_urlencoded::byte_serialize(call.as_bytes()).collect::<String>()
        )
    };
    let body = format!(
        "halt=1&{}&{}",
        cmd("bad", "no.such.method?x=1"),
        cmd("info", "app.info")
    );
    let (status, body) = s.form("batch", &body).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"]["result_error"]["bad"]["error"],
        "ERROR_METHOD_NOT_FOUND"
    );
    assert_eq!(
        body["result"]["result"],
        json!([]),
        "halt stops before app.info"
    );

    let (_, body) = s
        .call("batch", json!({"halt": 0, "cmd": {"bad": "no.such.method", "info": "app.info", "nested": "batch?cmd[a]=app.info"}}))
        .await;
    assert_eq!(body["result"]["result"]["info"]["CODE"], "b24flow");
    assert_eq!(
        body["result"]["result_error"]["nested"]["error"],
        "ERROR_BATCH_METHOD_NOT_ALLOWED"
    );

    let cmds: serde_json::Map<String, Value> = (0..51)
        .map(|i| (format!("c{i:02}"), json!("app.info")))
        .collect();
    let (status, body) = s.call("batch", json!({"cmd": cmds})).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["result"].as_object().unwrap().len(), 50);
    assert_eq!(
        body["result"]["result_error"]["c50"]["error"],
        "ERROR_BATCH_LENGTH_EXCEEDED"
    );
    assert_eq!(s.portal.method_calls("app.info"), 51);
    s.cloud.shutdown().await;
}
