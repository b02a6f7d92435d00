//! The activity codes a process accepts (ACTIVITIES.md), and which of their properties are
//! secret. The ingress refuses calls for any other code, and only these (and `register`)
//! become metric labels, so a caller that invents codes cannot grow the number of series;
//! the secret properties it seals away before a call is stored. The list itself is the worker's
//! (`worker/src/activities/mod.rs`); the ingress imports only `common`, so the `b24flow`
//! binary, which links both, builds [`Codes`] from the worker's catalogue and hands it over.

/// Robots are registered as `robot_<code>` and called with that code.
pub const ROBOT_PREFIX: &str = "robot_";

/// The code of a portal's registration job.
pub const REGISTER_CODE: &str = "register";

/// The activity codes of one catalogue, in registration order, and the keys of the
/// properties its schema flags secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codes {
    // A list, not a set: a catalogue is a few dozen codes at most, and comparing that many
    // short strings costs less than hashing the code on every call.
    codes: Vec<&'static str>,
    secret_properties: Vec<&'static str>,
}

impl Codes {
    pub fn new(codes: impl IntoIterator<Item = &'static str>) -> Self {
        Self {
            codes: codes.into_iter().collect(),
            secret_properties: Vec::new(),
        }
    }

    /// The same codes, whose properties named `keys` are secret.
    pub fn with_secret_properties(mut self, keys: impl IntoIterator<Item = &'static str>) -> Self {
        self.secret_properties = keys.into_iter().collect();
        self
    }

    /// Property keys whose values never reach the job row, logs or operators.
    pub fn secret_properties(&self) -> &[&'static str] {
        &self.secret_properties
    }

    /// True for a code of the catalogue, as an activity or as a robot.
    pub fn is_activity(&self, code: &str) -> bool {
        let plain = code.strip_prefix(ROBOT_PREFIX).unwrap_or(code);
        self.codes.contains(&plain)
    }

    /// `code` as a metric label: itself when it is ours, `unknown` otherwise.
    pub fn label<'a>(&self, code: &'a str) -> &'a str {
        if code == REGISTER_CODE || self.is_activity(code) {
            code
        } else {
            "unknown"
        }
    }

    /// Every code that may be a label: the activities, then `register`.
    pub fn labels(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.codes.iter().copied().chain([REGISTER_CODE])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_catalogue_codes_are_labels() {
        let codes = Codes::new(["smtp_send", "deal_update"]);
        assert!(codes.is_activity("smtp_send") && codes.is_activity("robot_smtp_send"));
        assert!(!codes.is_activity("robot_") && !codes.is_activity("smtp_send2"));
        assert!(!codes.is_activity(REGISTER_CODE));
        assert_eq!(codes.label("deal_update"), "deal_update");
        assert_eq!(codes.label("robot_deal_update"), "robot_deal_update");
        assert_eq!(codes.label("register"), "register");
        assert_eq!(codes.label("invented_42"), "unknown");
        let labels: Vec<&str> = codes.labels().collect();
        assert_eq!(labels, ["smtp_send", "deal_update", "register"]);
    }
}
