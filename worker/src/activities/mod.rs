//! One module per activity; [`all`] is the one list that registers and runs them.
mod booking_info;
mod booking_rename;
mod callback_call;
mod company_update;
mod contact_update;
mod crm_activity_add;
mod crm_activity_delete;
mod crm_feed_post;
mod deal_update;
mod invoice_from_deal;
mod invoice_status;
mod lead_update;
mod smtp_send;
mod user_info;

use std::sync::Arc;

use crate::activity::Activity;

/// Every implemented activity.
pub fn all() -> Vec<Arc<dyn Activity>> {
    vec![
        Arc::new(user_info::UserInfo),
        Arc::new(smtp_send::SmtpSend),
        Arc::new(callback_call::CallbackCall),
        Arc::new(booking_info::BookingInfo),
        Arc::new(booking_rename::BookingRename),
        Arc::new(crate::crm::update::CrmUpdate(&company_update::SPEC)),
        Arc::new(crate::crm::update::CrmUpdate(&contact_update::SPEC)),
        Arc::new(crate::crm::update::CrmUpdate(&lead_update::SPEC)),
        Arc::new(crate::crm::update::CrmUpdate(&deal_update::SPEC)),
        Arc::new(crm_activity_add::CrmActivityAdd),
        Arc::new(crm_activity_delete::CrmActivityDelete),
        Arc::new(crm_feed_post::CrmFeedPost),
        Arc::new(invoice_status::InvoiceStatus),
        Arc::new(invoice_from_deal::InvoiceFromDeal),
    ]
}

/// The activity for a call's `code` (a robot's `robot_<code>` included).
pub fn find(code: &str) -> Option<Arc<dyn Activity>> {
    find_in(&all(), code)
}

/// Like [`find`], in a given list (a worker runs the list it was started with).
pub fn find_in(list: &[Arc<dyn Activity>], code: &str) -> Option<Arc<dyn Activity>> {
    let code = code
        .strip_prefix(crate::schema::ROBOT_PREFIX)
        .unwrap_or(code);
    list.iter().find(|a| a.definition().code == code).cloned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_catalogue_the_ingress_checks_is_this_list() {
        let mut ours: Vec<&str> = super::all().iter().map(|a| a.definition().code).collect();
        let mut catalogue = b24flow_common::catalogue::ACTIVITY_CODES.to_vec();
        ours.sort_unstable();
        catalogue.sort_unstable();
        assert_eq!(ours, catalogue);
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;
    use crate::schema::Text;

    fn is_russian(text: &str) -> bool {
        text.chars()
            .any(|c| ('а'..='я').contains(&c.to_lowercase().next().unwrap_or(c)))
    }

    fn translated(text: &Text) -> bool {
        !text.en.trim().is_empty() && is_russian(&text.ru) && text.en != text.ru
    }

    #[test]
    fn every_property_explains_itself_in_both_languages() {
        for activity in all() {
            let def = activity.definition();
            assert!(translated(&def.name), "{}: name", def.code);
            assert!(translated(&def.description), "{}: description", def.code);
            for p in &def.properties {
                let help = p.help.as_ref();
                assert!(
                    help.is_some_and(translated),
                    "{}.{}: help {help:?} is missing or not in both languages",
                    def.code,
                    p.key
                );
                assert!(is_russian(&p.name.ru), "{}.{}: name", def.code, p.key);
            }
        }
    }

    #[test]
    fn every_fixed_option_has_a_russian_title() {
        let mut options = 0;
        for activity in all() {
            let def = activity.definition();
            for p in &def.properties {
                for choice in &p.options {
                    options += 1;
                    let ru = choice.title.ru.trim();
                    assert!(
                        is_russian(ru) && !ru.eq_ignore_ascii_case(&choice.value),
                        "{}.{} = {}: Russian title {ru:?}",
                        def.code,
                        p.key,
                        choice.value
                    );
                    assert!(!choice.title.en.trim().is_empty());
                }
            }
        }
        // Types, owners, priorities, invoice kinds, security modes, body types, lines.
        assert!(options >= 25, "only {options} fixed options found");
    }
}
