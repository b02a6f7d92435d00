//! NOTE FOR ENGINEERS WORKING IN PARALLEL (temporary, the lead removes it): read /work/PARALLEL_WORK_BRIEF.md before editing anything.
//! One module per activity; [`all`] is the one list that registers and runs them.
mod user_info;

use std::sync::Arc;

use crate::activity::Activity;

/// Every implemented activity.
pub fn all() -> Vec<Arc<dyn Activity>> {
    vec![Arc::new(user_info::UserInfo)]
}

/// The activity for a call's `code` (a robot's `robot_<code>` included).
pub fn find(code: &str) -> Option<Arc<dyn Activity>> {
    let code = code
        .strip_prefix(crate::schema::ROBOT_PREFIX)
        .unwrap_or(code);
    all().into_iter().find(|a| a.definition().code == code)
}
