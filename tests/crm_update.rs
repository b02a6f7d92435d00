//! The CRM updates (ACTIVITIES.md #7–10) against the simulated portal's CRM.
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_updates_are_registered_with_select_options_read_from_the_portal() {
    let app = spawn_app().await;
    let activities = app.portal.activities();
    let find = |code: &str| {
        activities
            .iter()
            .find(|a| a.code == code && !a.is_robot)
            .unwrap_or_else(|| panic!("{code} registered"))
            .clone()
    };
    let deal = find("deal_update");
    let stage = &deal.properties["stage_id"]["OPTIONS"];
    assert_eq!(stage["NEW"], "General: New", "{stage}");
    assert_eq!(deal.properties["currency"]["OPTIONS"]["EUR"], "Euro");
    // PHP keeps an option map keyed 0..n as a list.
    let pipelines = &deal.properties["category_id"]["OPTIONS"];
    assert!(
        pipelines["0"] == "General" || pipelines[0] == "General",
        "{pipelines}"
    );
    assert_eq!(deal.properties["deal_type"]["OPTIONS"]["SALE"], "Sales");
    let company = find("company_update");
    assert_eq!(
        company.properties["industry"]["OPTIONS"]["IT"],
        "Information Technology"
    );
    assert_eq!(
        company.properties["employees"]["OPTIONS"]["EMPLOYEES_1"],
        "less than 50"
    );
    assert_eq!(
        find("lead_update").properties["honorific"]["OPTIONS"]["HNR_EN_1"],
        "Mr."
    );
    assert_eq!(
        find("contact_update").properties["contact_type"]["OPTIONS"]["CLIENT"],
        "Clients"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_company_update_writes_only_set_fields_adds_multi_fields_and_the_address_in_one_request()
{
    let app = spawn_app().await;
    let company = app.portal.crm_add_item(
        4,
        json!({
            "title": "Old name", "comments": "keep me", "industry": "OTHER",
            "fm": [{"typeId": "PHONE", "valueType": "WORK", "value": "+49 30 1"}]
        }),
    );
    let before = app.portal.request_count();
    let sent = app
        .run_activity("company_update", json!({
            "company_id": company.to_string(), "title": "Acme GmbH", "industry": "IT", "revenue": "1 500 000,50",
            "contact_ids": ["7", "8"], "assigned_by": "user_1", "comments": "",
            "phone": ["+49 170 2:MOBILE"], "email": "info@acme.example", "im": "acme:telegram",
            "address_city": "Berlin"
        }))
        .await;
    assert_eq!(sent.return_values["error_text"], "");
    assert_eq!(sent.return_values["result"], "true");
    // One batch (crm.item.update + crm.company.update), one bizproc.event.send.
    assert_eq!(app.portal.request_count() - before, 2);
    let item = app.portal.crm_item(4, company).unwrap();
    assert_eq!(item["title"], "Acme GmbH");
    assert_eq!(item["industry"], "IT");
    assert_eq!(item["revenue"], json!(1500000.5));
    assert_eq!(item["contactIds"], json!([7, 8]));
    assert_eq!(item["assignedById"], json!(1));
    assert_eq!(
        item["comments"], "keep me",
        "an empty property leaves the field as it is"
    );
    assert_eq!(item["ADDRESS_CITY"], "Berlin");
    let fm: Vec<(String, String, String)> = item["fm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["typeId"].as_str().unwrap().into(),
                f["valueType"].as_str().unwrap().into(),
                f["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        fm,
        vec![
            ("PHONE".into(), "WORK".into(), "+49 30 1".into()),
            ("PHONE".into(), "MOBILE".into(), "+49 170 2".into()),
            ("EMAIL".into(), "WORK".into(), "info@acme.example".into()),
            ("IM".into(), "TELEGRAM".into(), "acme".into()),
        ]
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_update_moves_the_deal_to_another_pipeline_in_one_request() {
    let app = spawn_app().await;
    let pipeline = app.portal.crm_add_deal_category("Retail");
    let deal = app
        .portal
        .crm_add_item(2, json!({"title": "Deal", "opportunity": 10}));
    let before = app.portal.request_count();
    let sent = app
        .run_activity("deal_update", json!({
            "deal_id": deal.to_string(), "category_id": pipeline.to_string(), "opportunity": "2 500,75",
            "probability": "40", "tax_rate": "19", "deal_type": "GOODS", "source_description": "fair"
        }))
        .await;
    assert_eq!(sent.return_values["error_text"], "", "{}", sent.log_message);
    assert_eq!(app.portal.request_count() - before, 2);
    let item = app.portal.crm_item(2, deal).unwrap();
    assert_eq!(item["categoryId"], json!(pipeline));
    assert_eq!(item["stageId"], format!("C{pipeline}:NEW"));
    assert_eq!(item["opportunity"], json!(2500.75));
    assert_eq!(item["isManualOpportunity"], "Y");
    assert_eq!(item["probability"], json!(40));
    assert_eq!(item["taxValue"], json!(19.0));
    assert_eq!(item["typeId"], "GOODS");
    assert_eq!(item["sourceDescription"], "fair");
    assert_eq!(item["title"], "Deal");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_and_contact_updates_write_their_own_fields() {
    let app = spawn_app().await;
    let lead = app.portal.crm_add_item(1, json!({"title": "Lead"}));
    let contact = app.portal.crm_add_item(3, json!({"name": "Eva"}));
    let sent = app
        .run_activity("lead_update", json!({
            "lead_id": lead.to_string(), "status": "IN_PROCESS", "honorific": "HNR_EN_3", "birthdate": "01.05.1990",
            "company_id": "4", "phone": "+49 30 9", "status_description": "called back"
        }))
        .await;
    assert_eq!(sent.return_values["error_text"], "");
    let item = app.portal.crm_item(1, lead).unwrap();
    assert_eq!(item["stageId"], "IN_PROCESS");
    assert_eq!(item["honorific"], "HNR_EN_3");
    assert_eq!(item["birthdate"], "1990-05-01");
    assert_eq!(item["companyId"], json!(4));
    assert_eq!(item["statusDescription"], "called back");
    assert_eq!(item["fm"][0]["value"], "+49 30 9");
    let sent = app
        .run_activity("contact_update", json!({
            "contact_id": contact.to_string(), "last_name": "Lang", "contact_type": "PARTNER", "source": "WEB",
            "company_ids": "3", "post": "CFO", "web": "https://lang.example:8080", "assigned_by": "1"
        }))
        .await;
    assert_eq!(sent.return_values["error_text"], "");
    let item = app.portal.crm_item(3, contact).unwrap();
    assert_eq!(item["name"], "Eva");
    assert_eq!(item["lastName"], "Lang");
    assert_eq!(item["typeId"], "PARTNER");
    assert_eq!(item["sourceId"], "WEB");
    assert_eq!(item["companyIds"], json!([3]));
    assert_eq!(item["post"], "CFO");
    assert_eq!(item["fm"][0]["typeId"], "WEB");
    assert_eq!(item["fm"][0]["value"], "https://lang.example:8080");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_errors_are_clear_and_write_nothing() {
    let app = spawn_app().await;
    let deal = app.portal.crm_add_item(2, json!({"title": "Deal"}));
    let denied = app.portal.crm_add_item(4, json!({"title": "Secret"}));
    app.portal.crm_deny_item(4, denied);

    let cases = [
        (
            "deal_update",
            json!({"deal_id": "987654", "title": "x"}),
            "not found",
        ),
        (
            "deal_update",
            json!({"deal_id": deal.to_string(), "stage_id": "NO_SUCH_STAGE"}),
            "stageId",
        ),
        (
            "deal_update",
            json!({"deal_id": deal.to_string(), "opportunity": "lots"}),
            "opportunity",
        ),
        ("deal_update", json!({"title": "x"}), "deal_id"),
        (
            "company_update",
            json!({"company_id": denied.to_string(), "title": "x"}),
            "Access denied",
        ),
        (
            "company_update",
            json!({"company_id": denied.to_string(), "title": "x", "address": "Street 1"}),
            "Access denied",
        ),
        (
            "company_update",
            json!({"company_id": "1", "assigned_by": "group_5"}),
            "assigned_by",
        ),
        (
            "contact_update",
            json!({"contact_id": "1", "birthdate": "someday"}),
            "birthdate",
        ),
    ];
    for (code, props, expected) in cases {
        let sent = app.run_activity(code, props.clone()).await;
        let error = sent.return_values["error_text"]
            .as_str()
            .unwrap_or_default();
        assert!(error.contains(expected), "{code} {props}: {error}");
        assert_eq!(sent.return_values["result"], "false", "{code} {props}");
    }
    assert!(
        app.portal.crm_writes().is_empty(),
        "{:?}",
        app.portal.crm_writes()
    );
    assert_eq!(app.portal.crm_item(2, deal).unwrap()["title"], "Deal");
    assert_eq!(app.portal.crm_item(4, denied).unwrap()["title"], "Secret");
    app.cleanup().await;
}
