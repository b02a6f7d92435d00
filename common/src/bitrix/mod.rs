//! The Bitrix24 REST client. Every request to a portal goes through [`PortalClient`], the one
//! place where OAuth refresh happens and where the per-portal rate limiter and cross-job
//! batching attach. Protocol facts: `../shared/bitrix/protocol.md`.
mod batch;
mod body;
pub mod call_log;
pub use batch::MAX_COMMANDS as BATCH_MAX_COMMANDS;
mod client;
mod dispatch;
mod error;
pub mod form;
mod identity;
mod limiter;
mod oauth;
mod portal_changes;
pub use portal_changes::{follow_portal_changes, PortalChangeSink};
pub mod slots;

/// Kept here too: most callers meet the class on a REST error.
pub use crate::error_kind::ErrorKind;
pub use batch::{Batch, BatchResult};
pub use client::{Bitrix, PortalClient, RestResponse};
pub use error::B24Error;
pub use oauth::{InstallProof, OAuthApp};
