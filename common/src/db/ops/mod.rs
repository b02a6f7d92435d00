//! What operators read and do (the `/api`, the dashboard and `b24flow jobs` all come here):
//! job search with cursor paging, one job in full, counts and time series, and the actions
//! (retry, discard, pause, resume, the portal's limiter plan), each recorded with who did it.
mod actions;
mod filter;
mod plan;
mod read;
mod stats;

pub use actions::{
    discard, pause_portal, resume_portal, retry, ActionOutcome, Requeued, Target, BULK_LIMIT,
    DISCARDED_BY_OPERATOR,
};
pub use filter::{Cursor, ErrorClass, JobFilter, StateFilter};
pub use plan::set_portal_plan;
pub use read::{
    job_detail, list_jobs, portal_detail, portals, Attempt, HistoryEntry, JobDetail, JobPage,
    JobSummary, PortalDetail, PortalEvent, PortalSummary,
};
pub use stats::{
    counts, current_by_status_and_code, timeseries, CountRow, Counts, SeriesBucket, Window,
};

/// What a failed job's `last_error` starts with when the workflow could not be answered
/// (written by the worker's report path): such a job can still be retried or discarded.
pub const UNANSWERED_PREFIX: &str = "bizproc.event.send:";
