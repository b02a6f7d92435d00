//! Invoices from deals and their status (ACTIVITIES.md #1, #11) against the simulated portal.
use serde_json::{json, Value};

use b24flow_sim::EventSend;

use crate::support::*;

/// A deal with two products, a company and a contact with requisites and bank details, and
/// "my company" with its own.
pub(crate) struct Seeded {
    pub(crate) deal: u64,
    company: u64,
    contact: u64,
    mine: u64,
    company_rq: u64,
    company_bd: u64,
    contact_rq: u64,
    my_rq: u64,
    my_bd: u64,
}

pub(crate) fn seed(app: &TestApp, company: bool, contact: bool) -> Seeded {
    let p = &app.portal;
    let mine = p.crm_add_item(4, json!({"title": "Seller Ltd", "isMyCompany": "Y"}));
    let my_rq = p.crm_add_requisite(4, mine, json!({"RQ_COMPANY_NAME": "Seller Ltd"}));
    let my_bd = p.crm_add_bank_detail(my_rq, json!({"RQ_BANK_NAME": "Seller Bank"}));
    let company_id = p.crm_add_item(
        4,
        json!({"title": "Acme card title", "fm": [{"typeId": "PHONE", "valueType": "WORK", "value": "+49 30 1"}]}),
    );
    let company_rq = p.crm_add_requisite(
        4,
        company_id,
        json!({"RQ_COMPANY_NAME": "Acme GmbH", "RQ_INN": "7701"}),
    );
    let company_bd = p.crm_add_bank_detail(company_rq, json!({"RQ_BANK_NAME": "Acme Bank"}));
    let contact_id = p.crm_add_item(
        3,
        json!({"name": "Eva", "lastName": "Lang", "fm": [
            {"typeId": "EMAIL", "valueType": "WORK", "value": "eva@acme.example"},
            {"typeId": "PHONE", "valueType": "WORK", "value": "+49 30 2"}]}),
    );
    let contact_rq = p.crm_add_requisite(
        3,
        contact_id,
        json!({"PRESET_ID": "3", "RQ_FIRST_NAME": "Eva", "RQ_LAST_NAME": "Lang-Private"}),
    );
    let mut deal = json!({"title": "Audit 2026", "currencyId": "EUR", "assignedById": 1});
    if company {
        deal["companyId"] = json!(company_id);
    }
    if contact {
        deal["contactId"] = json!(contact_id);
        deal["contactIds"] = json!([contact_id]);
    }
    let deal = p.crm_add_item(2, deal);
    p.crm_set_product_rows(
        2,
        deal,
        json!([
            {"productId": 7, "productName": "Audit", "price": 500, "quantity": 2, "taxRate": 19, "taxIncluded": "Y"},
            {"productName": "Report", "price": 20.5, "quantity": 3}
        ]),
    );
    Seeded {
        deal,
        company: company_id,
        contact: contact_id,
        mine,
        company_rq,
        company_bd,
        contact_rq,
        my_rq,
        my_bd,
    }
}

pub(crate) fn props(deal: u64, kind: &str) -> Value {
    json!({"deal_id": deal.to_string(), "paysystem_company": "1", "paysystem_contact": "2", "invoice_kind": kind})
}

fn error_text(sent: &EventSend) -> String {
    sent.return_values["error_text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The only new invoice; panics unless there is exactly one.
fn only_invoice(app: &TestApp) -> Value {
    let invoices = app.portal.crm_smart_invoices();
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    invoices[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_invoice_gets_the_deal_products_requisites_payment_link_and_number() {
    let app = spawn_app().await;
    let s = seed(&app, true, true);
    let before = app.portal.request_count();
    let sent = app
        .run_activity("invoice_from_deal", props(s.deal, "smart"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    // batch of reads, batch of requisite look-ups, the write batch, bizproc.event.send
    assert_eq!(app.portal.request_count() - before, 4);

    let invoice = only_invoice(&app);
    let id = invoice["id"].as_u64().unwrap();
    assert_eq!(sent.return_values["invoice_id"], json!(id));
    assert_eq!(
        sent.return_values["invoice_number"],
        invoice["accountNumber"]
    );
    assert_eq!(invoice["accountNumber"], format!("INV-{id}"));
    assert_eq!(invoice["parentId2"], json!(s.deal));
    assert_eq!(invoice["companyId"], json!(s.company));
    assert_eq!(invoice["contactIds"], json!([s.contact]));
    assert_eq!(invoice["mycompanyId"], json!(s.mine));
    assert_eq!(invoice["currencyId"], "EUR");
    assert_eq!(invoice["title"], "Audit 2026");
    assert_eq!(invoice["stageId"], "DT31_2:N");
    assert!(invoice["xmlId"].as_str().unwrap().starts_with("b24flow:"));
    assert_eq!(invoice["opportunity"], json!(1061.5));

    let rows = app.portal.crm_product_rows(31, id);
    let shape: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r["ownerType"].clone(),
                r["productId"].clone(),
                r["productName"].clone(),
                r["price"].clone(),
                r["quantity"].clone(),
                r["taxRate"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (
                json!("SI"),
                json!(7),
                json!("Audit"),
                json!(500.0),
                json!(2.0),
                json!(19.0)
            ),
            (
                json!("SI"),
                json!(0),
                json!("Report"),
                json!(20.5),
                json!(3.0),
                Value::Null
            ),
        ]
    );
    assert_eq!(
        app.portal.crm_requisite_link(31, id),
        Some([s.company_rq, s.company_bd, s.my_rq, s.my_bd])
    );
    let payments = app.portal.crm_payments(31, id);
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["paySystemId"], json!(1));
    assert_eq!(payments[0]["sum"], json!(1061.5));
    let paid_rows: Vec<_> = payments[0]["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["rowId"].clone(), p["quantity"].clone()))
        .collect();
    assert_eq!(
        paid_rows,
        vec![
            (rows[0]["id"].clone(), json!(2.0)),
            (rows[1]["id"].clone(), json!(3.0))
        ]
    );
    let url = sent.return_values["payment_url"].as_str().unwrap();
    assert!(
        url.starts_with(&app.portal.base_url())
            && url.ends_with(&format!("paymentId={}", payments[0]["id"])),
        "{url}"
    );
    // The deal itself is untouched.
    assert_eq!(app.portal.crm_product_rows(2, s.deal).len(), 2);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requisites_chosen_on_the_deal_win_and_save_a_request() {
    let app = spawn_app().await;
    let s = seed(&app, true, true);
    let second_rq =
        app.portal
            .crm_add_requisite(4, s.company, json!({"RQ_COMPANY_NAME": "Acme Holding"}));
    let second_bd = app
        .portal
        .crm_add_bank_detail(second_rq, json!({"RQ_BANK_NAME": "Other"}));
    app.portal
        .crm_set_requisite_link(2, s.deal, [second_rq, second_bd, s.my_rq, 0]);
    let before = app.portal.request_count();
    let sent = app
        .run_activity("invoice_from_deal", props(s.deal, "smart"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    // reads, writes, bizproc.event.send
    assert_eq!(app.portal.request_count() - before, 3);
    let id = only_invoice(&app)["id"].as_u64().unwrap();
    assert_eq!(
        app.portal.crm_requisite_link(31, id),
        Some([second_rq, second_bd, s.my_rq, 0])
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_with_only_a_contact_bills_the_contact_with_its_requisite() {
    let app = spawn_app().await;
    let s = seed(&app, false, true);
    let sent = app
        .run_activity("invoice_from_deal", props(s.deal, "smart"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    let invoice = only_invoice(&app);
    let id = invoice["id"].as_u64().unwrap();
    assert!(invoice.get("companyId").is_none_or(|c| c == 0), "{invoice}");
    assert_eq!(invoice["contactIds"], json!([s.contact]));
    assert_eq!(
        app.portal.crm_requisite_link(31, id),
        Some([s.contact_rq, 0, s.my_rq, s.my_bd])
    );
    // The contact's payment system.
    assert_eq!(app.portal.crm_payments(31, id)[0]["paySystemId"], json!(2));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_with_only_a_company_bills_the_company_and_a_party_without_requisites_is_no_obstacle(
) {
    let app = spawn_app().await;
    let s = seed(&app, true, false);
    let bare = app
        .portal
        .crm_add_item(4, json!({"title": "No requisites"}));
    let other_deal = app
        .portal
        .crm_add_item(2, json!({"title": "Bare", "companyId": bare}));
    app.portal.crm_set_product_rows(
        2,
        other_deal,
        json!([{"productName": "X", "price": 1, "quantity": 1}]),
    );
    let sent = app
        .run_activity("invoice_from_deal", props(s.deal, "smart"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    let first = only_invoice(&app);
    assert_eq!(first["companyId"], json!(s.company));
    assert!(
        first.get("contactIds").is_none_or(|c| c == &json!([])),
        "{first}"
    );
    let id = first["id"].as_u64().unwrap();
    assert_eq!(
        app.portal.crm_requisite_link(31, id),
        Some([s.company_rq, s.company_bd, s.my_rq, s.my_bd])
    );
    let sent = app
        .run_activity("invoice_from_deal", props(other_deal, "smart"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    let id = sent.return_values["invoice_id"].as_u64().unwrap();
    assert_eq!(
        app.portal.crm_requisite_link(31, id),
        Some([0, 0, s.my_rq, s.my_bd])
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_without_products_or_parties_and_unknown_or_forbidden_deals_create_nothing() {
    let app = spawn_app().await;
    let s = seed(&app, true, true);
    let empty = app
        .portal
        .crm_add_item(2, json!({"title": "Empty", "companyId": s.company}));
    let nobody = app.portal.crm_add_item(2, json!({"title": "Nobody"}));
    app.portal.crm_set_product_rows(
        2,
        nobody,
        json!([{"productName": "X", "price": 1, "quantity": 1}]),
    );
    let secret = app
        .portal
        .crm_add_item(2, json!({"title": "Secret", "companyId": s.company}));
    app.portal.crm_deny_item(2, secret);
    // The simulator's portal is Russian: so are our texts; the portal's own stay as they are.
    for (deal, expected) in [
        (empty, "нет товаров: счёт не создан"),
        (nobody, "нет ни компании, ни контакта"),
        (987654, "not found"),
        (secret, "Access denied"),
    ] {
        let sent = app
            .run_activity("invoice_from_deal", props(deal, "smart"))
            .await;
        let error = error_text(&sent);
        assert!(error.contains(expected), "deal {deal}: {error}");
        assert_eq!(sent.return_values["invoice_id"], Value::Null, "{sent:?}");
    }
    let sent = app
        .run_activity(
            "invoice_from_deal",
            json!({"deal_id": "x", "paysystem_company": "1", "paysystem_contact": "2"}),
        )
        .await;
    assert!(
        error_text(&sent).contains("deal_id"),
        "{}",
        error_text(&sent)
    );
    assert!(app.portal.crm_smart_invoices().is_empty());
    assert!(app.portal.crm_legacy_invoices().is_empty());
    assert!(
        app.portal.crm_writes().is_empty(),
        "{:?}",
        app.portal.crm_writes()
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_right_to_create_invoices_the_error_is_clear_and_nothing_is_written() {
    let app = spawn_english_app().await;
    let s = seed(&app, true, true);
    app.portal.crm_deny_create(31);
    let sent = app
        .run_activity("invoice_from_deal", props(s.deal, "smart"))
        .await;
    let error = error_text(&sent);
    assert!(
        error.contains("no invoice created") && error.contains("ACCESS_DENIED"),
        "{error}"
    );
    assert!(app.portal.crm_smart_invoices().is_empty());
    assert!(app.portal.crm_writes().is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_invoice_takes_payer_type_pay_system_and_payer_properties() {
    let app = spawn_app().await;
    let s = seed(&app, true, true);
    let before = app.portal.request_count();
    let sent = app
        .run_activity("invoice_from_deal", props(s.deal, "legacy"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    assert_eq!(app.portal.request_count() - before, 4);
    assert!(app.portal.crm_smart_invoices().is_empty());
    let invoices = app.portal.crm_legacy_invoices();
    assert_eq!(invoices.len(), 1);
    let inv = &invoices[0];
    let id: u64 = inv["ID"].as_str().unwrap().parse().unwrap();
    assert_eq!(sent.return_values["invoice_id"], json!(id));
    assert_eq!(sent.return_values["invoice_number"], inv["ACCOUNT_NUMBER"]);
    assert_eq!(inv["ORDER_TOPIC"], "Audit 2026");
    assert_eq!(inv["PERSON_TYPE_ID"], "1");
    assert_eq!(inv["PAY_SYSTEM_ID"], "1");
    assert_eq!(inv["UF_DEAL_ID"], s.deal.to_string());
    assert_eq!(inv["UF_COMPANY_ID"], s.company.to_string());
    assert_eq!(inv["UF_CONTACT_ID"], s.contact.to_string());
    assert_eq!(inv["UF_MYCOMPANY_ID"], s.mine.to_string());
    assert_eq!(
        inv["INVOICE_PROPERTIES"],
        json!({"COMPANY": "Acme GmbH", "CONTACT_PERSON": "Lang Eva", "EMAIL": "eva@acme.example", "PHONE": "+49 30 2", "INN": "7701"})
    );
    let rows: Vec<_> = inv["PRODUCT_ROWS"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["PRODUCT_NAME"].clone(),
                r["PRICE"].clone(),
                r["QUANTITY"].clone(),
                r["VAT_RATE"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (json!("Audit"), json!(500.0), json!(2.0), json!(0.19)),
            (json!("Report"), json!(20.5), json!(3.0), json!(0.0)),
        ]
    );
    assert_eq!(
        app.portal.crm_requisite_link(5, id),
        Some([s.company_rq, s.company_bd, s.my_rq, s.my_bd])
    );
    let url = sent.return_values["payment_url"].as_str().unwrap();
    assert!(
        url.contains(&format!("/pub/invoice.php?invoice_id={id}&hash=")),
        "{url}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_invoice_for_a_contact_names_the_person() {
    let app = spawn_app().await;
    let s = seed(&app, false, true);
    let sent = app
        .run_activity("invoice_from_deal", props(s.deal, "legacy"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    let inv = &app.portal.crm_legacy_invoices()[0];
    assert_eq!(inv["PERSON_TYPE_ID"], "2");
    assert_eq!(inv["PAY_SYSTEM_ID"], "2");
    assert_eq!(inv["UF_COMPANY_ID"], "0");
    assert_eq!(
        inv["INVOICE_PROPERTIES"],
        json!({"FIO": "Lang-Private Eva", "EMAIL": "eva@acme.example", "PHONE": "+49 30 2"})
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deal_user_fields_are_copied_where_the_invoice_has_one_of_the_same_name() {
    let app = spawn_app().await;
    let s = seed(&app, true, true);
    let p = &app.portal;
    p.crm_add_user_field(2, "ufCrm_1700000001", "string", "Contract No.");
    p.crm_add_user_field(2, "ufCrm_1700000002", "string", "Internal note");
    p.crm_add_user_field(
        31,
        "ufCrm_SMART_INVOICE_1700000003",
        "string",
        "Contract No.",
    );
    p.crm_add_user_field(5, "UF_CRM_1700000004", "string", "Contract No.");
    let deal = p.crm_add_item(
        2,
        json!({"title": "With fields", "companyId": s.company, "ufCrm_1700000001": "C-17", "ufCrm_1700000002": "secret"}),
    );
    p.crm_set_product_rows(
        2,
        deal,
        json!([{"productName": "X", "price": 1, "quantity": 1}]),
    );
    let sent = app
        .run_activity("invoice_from_deal", props(deal, "smart"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    let invoice = only_invoice(&app);
    assert_eq!(invoice["ufCrm_SMART_INVOICE_1700000003"], "C-17");
    assert!(!invoice.to_string().contains("secret"), "{invoice}");
    let sent = app
        .run_activity("invoice_from_deal", props(deal, "legacy"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    assert_eq!(
        app.portal.crm_legacy_invoices()[0]["UF_CRM_1700000004"],
        "C-17"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_after_the_invoice_was_created_does_not_create_a_second_one() {
    let app = spawn_english_app().await;
    let s = seed(&app, true, true);
    app.portal.crm_fail_after("crm.item.add");
    let sent = app
        .run_activity("invoice_from_deal", props(s.deal, "smart"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    let invoice = only_invoice(&app);
    let id = invoice["id"].as_u64().unwrap();
    assert_eq!(sent.return_values["invoice_id"], json!(id));
    assert_eq!(
        sent.return_values["invoice_number"],
        invoice["accountNumber"]
    );
    assert!(
        sent.log_message.contains("interrupted"),
        "{}",
        sent.log_message
    );
    // The retry finished the invoice: rows, link and one payment with its products.
    assert_eq!(app.portal.crm_product_rows(31, id).len(), 2);
    assert!(app.portal.crm_requisite_link(31, id).is_some());
    let payments = app.portal.crm_payments(31, id);
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["products"].as_array().unwrap().len(), 2);

    // Lost after the payment: the retry finds the finished invoice and adds nothing.
    app.portal.crm_fail_after("crm.item.payment.product.add");
    let sent = app
        .run_activity("invoice_from_deal", props(s.deal, "smart"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    let invoices = app.portal.crm_smart_invoices();
    assert_eq!(invoices.len(), 2, "one per workflow call");
    let id = sent.return_values["invoice_id"].as_u64().unwrap();
    let payments = app.portal.crm_payments(31, id);
    assert_eq!(payments.len(), 1);
    // The retry paid the row whose answer never came back, and only that one.
    assert_eq!(
        payments[0]["products"].as_array().unwrap().len(),
        2,
        "{payments:?}"
    );
    assert_eq!(payments[0]["sum"], json!(1061.5));
    assert!(
        sent.log_message.contains("earlier attempt"),
        "{}",
        sent.log_message
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_of_an_old_invoice_does_not_create_a_second_one() {
    let app = spawn_app().await;
    let s = seed(&app, true, true);
    app.portal.crm_fail_after("crm.invoice.add");
    let sent = app
        .run_activity("invoice_from_deal", props(s.deal, "legacy"))
        .await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    let invoices = app.portal.crm_legacy_invoices();
    assert_eq!(invoices.len(), 1);
    let id: u64 = invoices[0]["ID"].as_str().unwrap().parse().unwrap();
    assert_eq!(sent.return_values["invoice_id"], json!(id));
    assert_eq!(
        app.portal.crm_requisite_link(5, id),
        Some([s.company_rq, s.company_bd, s.my_rq, s.my_bd])
    );
    app.cleanup().await;
}

async fn status(app: &TestApp, id: u64, kind: &str) -> EventSend {
    app.run_activity(
        "invoice_status",
        json!({"invoice_id": id.to_string(), "invoice_kind": kind}),
    )
    .await
}

fn triple(sent: &EventSend) -> (String, String, String) {
    let v = |k: &str| {
        sent.return_values[k]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (v("status"), v("status_name"), v("status_semantics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_invoice_status_is_its_stage_with_name_and_semantics_in_one_request() {
    let app = spawn_app().await;
    let p = &app.portal;
    let new = p.crm_add_smart_invoice(json!({"title": "A"}));
    let paid = p.crm_add_smart_invoice(json!({"title": "B", "stageId": "DT31_2:P"}));
    let declined = p.crm_add_smart_invoice(json!({"title": "C", "stageId": "DT31_2:D"}));
    let before = p.request_count();
    let sent = status(&app, new, "smart").await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    assert_eq!(p.request_count() - before, 2);
    assert_eq!(
        triple(&sent),
        ("DT31_2:N".into(), "New".into(), "process".into())
    );
    let sent = status(&app, paid, "auto").await;
    assert_eq!(
        triple(&sent),
        ("DT31_2:P".into(), "Paid".into(), "success".into())
    );
    let sent = status(&app, declined, "smart").await;
    assert_eq!(
        triple(&sent),
        ("DT31_2:D".into(), "Declined".into(), "failure".into())
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_invoice_status_is_its_letter_and_auto_falls_back_to_it() {
    let app = spawn_app().await;
    let p = &app.portal;
    let paid = p.crm_add_legacy_invoice(json!({"ORDER_TOPIC": "Old", "STATUS_ID": "P"}));
    let sent = status(&app, paid, "legacy").await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    assert_eq!(triple(&sent), ("P".into(), "Paid".into(), "success".into()));
    // No new invoice has this ID: auto reads the old one, still in one request.
    let before = p.request_count();
    let sent = status(&app, paid, "auto").await;
    assert_eq!(error_text(&sent), "", "{}", sent.log_message);
    assert_eq!(p.request_count() - before, 2);
    assert_eq!(triple(&sent), ("P".into(), "Paid".into(), "success".into()));
    let fresh = p.crm_add_legacy_invoice(json!({"ORDER_TOPIC": "New one"}));
    let sent = status(&app, fresh, "legacy").await;
    assert_eq!(triple(&sent), ("N".into(), "New".into(), "process".into()));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_refuses_a_number_that_is_both_a_new_and_an_old_invoice() {
    let app = spawn_english_app().await;
    let p = &app.portal;
    let smart = p.crm_add_smart_invoice(json!({"title": "New", "stageId": "DT31_2:P"}));
    let mut legacy = p.crm_add_legacy_invoice(json!({"ORDER_TOPIC": "Old", "STATUS_ID": "N"}));
    while legacy < smart {
        legacy = p.crm_add_legacy_invoice(json!({"ORDER_TOPIC": "Old", "STATUS_ID": "N"}));
    }
    assert_eq!(legacy, smart, "both kinds hold the same number");
    let sent = status(&app, smart, "auto").await;
    let error = error_text(&sent);
    assert!(
        error.contains("both") && error.contains("invoice_kind"),
        "{error}"
    );
    assert_eq!(sent.return_values["status"], Value::Null, "{sent:?}");
    // Told which one, each kind answers for itself.
    let sent = status(&app, smart, "smart").await;
    assert_eq!(triple(&sent).0, "DT31_2:P");
    let sent = status(&app, smart, "legacy").await;
    assert_eq!(triple(&sent).0, "N");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_invoice_status_is_a_clear_error() {
    let app = spawn_app().await;
    for kind in ["auto", "smart", "legacy"] {
        let sent = status(&app, 987654, kind).await;
        let error = error_text(&sent);
        assert!(
            error.contains("987654") && error.to_lowercase().contains("not found"),
            "{kind}: {error}"
        );
        assert_eq!(sent.return_values["status"], Value::Null, "{sent:?}");
    }
    let sent = app
        .run_activity(
            "invoice_status",
            json!({"invoice_id": "1", "invoice_kind": "draft"}),
        )
        .await;
    assert!(error_text(&sent).contains("invoice_kind"));
    app.cleanup().await;
}
