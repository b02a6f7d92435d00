//! One module per activity, each with a `pub(super) fn activity()` building it. The list in
//! `catalogue!` below is the only place activities are named; from it come [`all`], the
//! [`Catalogue`] (the map by code that the runner, registration and the app page read, built
//! once per process) and the [`codes`] the ingress accepts.
use std::collections::HashMap;
use std::sync::Arc;

use b24flow_common::catalogue::Codes;

use crate::activity::Activity;
use crate::schema::{ActivityDef, ROBOT_PREFIX};

/// Declares each activity module and lists its `activity()` in [`all`], so that adding an
/// activity is one line here.
macro_rules! catalogue {
    ($($module:ident),+ $(,)?) => {
        $(mod $module;)+

        /// Every implemented activity, in registration order.
        pub fn all() -> Vec<Arc<dyn Activity>> {
            vec![$($module::activity()),+]
        }
    };
}

catalogue! {
    user_info,
    smtp_send,
    callback_call,
    booking_info,
    booking_rename,
    company_update,
    contact_update,
    lead_update,
    deal_update,
    crm_activity_add,
    crm_activity_delete,
    crm_feed_post,
    invoice_status,
    invoice_from_deal,
}

/// The codes and secret properties of every implemented activity, for the ingress (which
/// cannot import this crate).
pub fn codes() -> Codes {
    Catalogue::standard().codes().clone()
}

/// The activities a worker runs, by code. Definitions are built once here, not per job.
pub struct Catalogue {
    activities: Vec<Arc<dyn Activity>>,
    definitions: Vec<ActivityDef>,
    by_code: HashMap<&'static str, usize>,
    codes: Codes,
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
        let codes = Codes::new(definitions.iter().map(|def| def.code))
            .with_secret_properties(secret_properties(&definitions));
        Self {
            activities,
            definitions,
            by_code,
            codes,
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

    /// Their codes, which also label this worker's metrics.
    pub fn codes(&self) -> &Codes {
        &self.codes
    }
}

/// The keys of properties flagged secret (`Property::secret`), each once.
fn secret_properties(definitions: &[ActivityDef]) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = definitions
        .iter()
        .flat_map(|def| def.properties.iter())
        .filter(|p| p.secret)
        .map(|p| p.key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::{codes, Catalogue};

    #[test]
    fn every_activity_has_a_code_of_its_own() {
        let catalogue = Catalogue::standard();
        let mut seen = std::collections::HashSet::new();
        for def in catalogue.definitions() {
            assert!(seen.insert(def.code), "{} is listed twice", def.code);
        }
    }

    #[test]
    fn the_ingress_accepts_every_code_of_this_catalogue_and_no_other() {
        let accepted = codes();
        for def in Catalogue::standard().definitions() {
            assert!(accepted.is_activity(def.code), "{}", def.code);
            assert!(accepted.is_activity(&format!("robot_{}", def.code)));
        }
        assert!(!accepted.is_activity("register") && !accepted.is_activity("smtp_send2"));
    }

    #[test]
    fn the_ingress_seals_the_smtp_password_and_no_other_property() {
        assert_eq!(codes().secret_properties(), ["smtp_password"]);
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
