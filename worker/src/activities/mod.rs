//! One module per activity; [`all`] lists them and [`Catalogue`] is the map by code that
//! the runner, registration and the app page read, built once per process.
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

use std::collections::HashMap;
use std::sync::Arc;

use crate::activity::Activity;
use crate::schema::{ActivityDef, ROBOT_PREFIX};

/// Every implemented activity, in registration order.
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

/// The activities a worker runs, by code. Definitions are built once here, not per job.
pub struct Catalogue {
    activities: Vec<Arc<dyn Activity>>,
    definitions: Vec<ActivityDef>,
    by_code: HashMap<&'static str, usize>,
}

impl Catalogue {
    /// `activities` in this order (tests pass a list with one activity wrapped to misbehave).
    pub fn new(activities: Vec<Arc<dyn Activity>>) -> Self {
        let definitions: Vec<ActivityDef> = activities.iter().map(|a| a.definition()).collect();
        let by_code = definitions
            .iter()
            .enumerate()
            .map(|(i, def)| (def.code, i))
            .collect();
        Self {
            activities,
            definitions,
            by_code,
        }
    }

    /// Every implemented activity.
    pub fn standard() -> Self {
        Self::new(all())
    }

    /// The activity of exactly `code`.
    pub fn get(&self, code: &str) -> Option<&Arc<dyn Activity>> {
        self.by_code.get(code).map(|i| &self.activities[*i])
    }

    /// The activity a call's `code` runs (a robot's `robot_<code>` included).
    pub fn find(&self, code: &str) -> Option<&Arc<dyn Activity>> {
        self.get(code.strip_prefix(ROBOT_PREFIX).unwrap_or(code))
    }

    /// All of them, in registration order.
    pub fn activities(&self) -> &[Arc<dyn Activity>] {
        &self.activities
    }

    /// Their definitions without portal options, in the same order.
    pub fn definitions(&self) -> &[ActivityDef] {
        &self.definitions
    }

    pub fn codes(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.definitions.iter().map(|def| def.code)
    }

    /// The keys of properties flagged secret, each once.
    pub fn secret_properties(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = self
            .definitions
            .iter()
            .flat_map(|def| def.properties.iter())
            .filter(|p| p.secret)
            .map(|p| p.key)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::Catalogue;
    use b24flow_common::{catalogue, secrets};

    // The ingress imports only `common`, so it keeps its own copy of what it must know
    // before any worker runs; this catalogue is the source and these tests keep them equal.
    #[test]
    fn the_codes_the_ingress_accepts_are_this_catalogue() {
        let mut ours: Vec<&str> = Catalogue::standard().codes().collect();
        let mut accepted = catalogue::ACTIVITY_CODES.to_vec();
        ours.sort_unstable();
        accepted.sort_unstable();
        assert_eq!(ours, accepted);
    }

    #[test]
    fn the_properties_the_ingress_seals_are_the_ones_flagged_secret() {
        let mut sealed = secrets::SECRET_PROPERTIES.to_vec();
        sealed.sort_unstable();
        assert_eq!(Catalogue::standard().secret_properties(), sealed);
    }

    #[test]
    fn a_robot_code_finds_its_activity_and_an_unknown_code_nothing() {
        let catalogue = Catalogue::standard();
        let robot = catalogue.find("robot_smtp_send").expect("robot");
        assert_eq!(robot.definition().code, "smtp_send");
        assert!(catalogue.get("robot_smtp_send").is_none());
        assert!(catalogue.find("smtp_send2").is_none());
        assert!(catalogue.find("register").is_none());
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
