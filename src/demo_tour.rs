//! The demo's tour: one workflow per activity the simulated portal can serve, each shown
//! with what the workflow got back.
use std::time::Duration;

use b24flow_sim::{ActivityCall, Portal};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// Runs one call per activity; returns how many did not succeed.
pub async fn run(portal: &Portal, users: &[u64]) -> anyhow::Result<usize> {
    let crm = portal.seed_demo_crm();
    let phone = portal.seed_demo_telephony_and_calendar(users);
    let booking: Vec<String> = phone.booking.iter().map(u64::to_string).collect();
    let (company, contact, lead, deal) =
        (&crm["company"], &crm["contact"], &crm["lead"], &crm["deal"]);
    let calls = vec![
        (
            "user_info",
            json!({ "user_id": format!("user_{}", users[0]) }),
        ),
        (
            "company_update",
            json!({ "company_id": company, "title": "Acme Group", "industry": "IT", "phone": ["+49 30 7654321:MOBILE"], "address_city": "Berlin" }),
        ),
        (
            "contact_update",
            json!({ "contact_id": contact, "post": "CFO", "email": "eva@acme.example:HOME" }),
        ),
        (
            "lead_update",
            json!({ "lead_id": lead, "status": "IN_PROCESS", "opportunity": "1 200,50" }),
        ),
        (
            "deal_update",
            json!({ "deal_id": deal, "stage_id": "EXECUTING", "probability": "60" }),
        ),
        (
            "crm_feed_post",
            json!({ "entity_type": "deal", "entity_id": deal, "title": "Audit started", "message": "Kick-off done" }),
        ),
        (
            "callback_call",
            json!({ "phone": phone.client_phone, "line": "default", "text": "Acme asked for a callback" }),
        ),
        ("booking_info", json!({ "booking": booking })),
        (
            "booking_rename",
            json!({ "booking": booking, "name": "Demo: consultation" }),
        ),
    ];
    let mut failures = 0;
    for (code, properties) in calls {
        failures += usize::from(!show(portal, code, properties).await?.0);
    }
    let invoice = portal.seed_demo_invoice(&crm);
    let (ok, created) = show(
        portal,
        "invoice_from_deal",
        json!({ "deal_id": invoice["deal"], "paysystem_company": invoice["paysystem_company"],
                "paysystem_contact": invoice["paysystem_contact"], "invoice_kind": "smart" }),
    )
    .await?;
    failures += usize::from(!ok);
    if let Some(id) = created
        .get("invoice_id")
        .filter(|v| !v.is_null() && *v != "")
    {
        let status = json!({ "invoice_id": id, "invoice_kind": "auto" });
        failures += usize::from(!show(portal, "invoice_status", status).await?.0);
    }
    let (ok, values) = show(
        portal,
        "crm_activity_add",
        json!({ "subject": "Call Eva", "type": "todo", "description": "Discuss the audit", "owner_type": "deal",
                "owner_id": deal, "priority": "high", "communication": "+49 30 1234567", "deadline": "2026-12-01 10:00:00" }),
    )
    .await?;
    failures += usize::from(!ok);
    if let Some(id) = values.get("activity_id").filter(|v| !v.is_null()) {
        failures += usize::from(
            !show(portal, "crm_activity_delete", json!({ "activity_id": id }))
                .await?
                .0,
        );
    }
    Ok(failures)
}

/// Fires one call, waits for its answer and prints one line about it, with the REST
/// requests the job cost the portal alone and the commands they carried (in a crowd, up to
/// 50 commands of many jobs share one request).
async fn show(portal: &Portal, code: &str, properties: Value) -> anyhow::Result<(bool, Value)> {
    let (requests, commands) = (portal.request_count(), portal.command_count());
    let fired = portal.fire(ActivityCall::new(code, properties)).await?;
    let Some(sent) = portal.wait_event_send(&fired.event_token, WAIT).await else {
        println!("  {code:<20} no answer within {WAIT:?}");
        return Ok((false, Value::Null));
    };
    let cost = format!(
        "{} req / {} cmd",
        portal.request_count() - requests,
        portal.command_count() - commands
    );
    let error = sent
        .return_values
        .get("error_text")
        .and_then(Value::as_str)
        .unwrap_or("");
    let took = sent.at.duration_since(sent.fired_at).as_millis();
    if error.is_empty() {
        println!(
            "  {code:<20} ok     {took:>5} ms  {cost:<16} {}",
            sent.log_message
        );
    } else {
        println!("  {code:<20} ERROR  {took:>5} ms  {cost:<16} {error}");
    }
    Ok((error.is_empty(), sent.return_values))
}
