//! A Bitrix24 cloud simulator for integration tests, `b24flow demo` and benchmarks.
//!
//! It follows the documented protocol and the core's code (`../shared/bitrix/protocol.md`,
//! `methods.md`), not our convenience, and depends on none of our crates so it cannot share
//! our misreadings. A [`Cloud`] runs the OAuth server; each [`Portal`] has its own REST
//! endpoint on loopback, its users and departments, the activities the app registered, and
//! a driver that installs the app and fires workflows at it.
//!
//! The modules form layers; each imports only the ones below it (never sideways into a
//! higher one), so the simulator has no import loops:
//!
//! 0. `php`: PHP semantics the portal imposes (`parse_str`, `intval`, `empty()`…).
//! 1. `state`: what one portal holds, as plain data: tokens, directory, limits, faults,
//!    workflows, and the CRM, invoicing, Disk, telephony and calendar areas.
//! 2. `portal`: the [`Portal`] handle that owns one portal's state (freed with it), its
//!    identity, and the test hooks.
//! 3. `methods`: the REST method router, one file per scope, working on a portal's state.
//! 4. `endpoint`: the portal over HTTP (`/rest`, `batch`, download links, the app frame).
//! 5. `cloud` (the OAuth server and the portal registry) and `driver` (the portal acting
//!    towards the app: install, events, activity calls).

// Unwraps here are on internal state (mutexes, constants), never on request input.
#![allow(clippy::unwrap_used)]

mod cloud;
mod driver;
mod endpoint;
mod methods;
mod php;
mod portal;
mod state;

pub use cloud::{Cloud, CloudConfig};
pub use driver::{ActivityCall, FiredCall};
pub use portal::{Portal, PortalConfig};
pub use state::{EventSend, Faults, RegisteredActivity, TokenPair};
