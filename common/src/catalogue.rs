//! The activity codes b24flow implements (ACTIVITIES.md). The ingress refuses calls for
//! any other code, and only these (and `register`) become metric labels, so a caller that
//! invents codes cannot grow the number of series. The worker's catalogue
//! (`worker/src/activities/mod.rs`) is the source: its unit test keeps this list equal.
pub const ACTIVITY_CODES: &[&str] = &[
    "user_info",
    "smtp_send",
    "callback_call",
    "booking_info",
    "booking_rename",
    "company_update",
    "contact_update",
    "lead_update",
    "deal_update",
    "crm_activity_add",
    "crm_activity_delete",
    "crm_feed_post",
    "invoice_status",
    "invoice_from_deal",
];

/// Robots are registered as `robot_<code>` and called with that code.
pub const ROBOT_PREFIX: &str = "robot_";

/// The code of a portal's registration job.
pub const REGISTER_CODE: &str = "register";

/// True for an activity code of the catalogue, as an activity or as a robot.
pub fn is_activity(code: &str) -> bool {
    let plain = code.strip_prefix(ROBOT_PREFIX).unwrap_or(code);
    ACTIVITY_CODES.contains(&plain)
}

/// `code` as a metric label: itself when it is ours, `unknown` otherwise.
pub fn label(code: &str) -> &str {
    if code == REGISTER_CODE || is_activity(code) {
        code
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_catalogue_codes_are_labels() {
        assert!(is_activity("smtp_send") && is_activity("robot_smtp_send"));
        assert!(!is_activity("robot_") && !is_activity("smtp_send2"));
        assert_eq!(label("deal_update"), "deal_update");
        assert_eq!(label("register"), "register");
        assert_eq!(label("invented_42"), "unknown");
    }
}
