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

pub use batch::{Batch, BatchResult};
pub use client::{Bitrix, PortalClient, RestResponse};
pub use error::{classify, B24Error, ErrorKind};
pub use oauth::{InstallProof, OAuthApp};
