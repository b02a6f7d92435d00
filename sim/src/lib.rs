//! A Bitrix24 cloud simulator for integration tests, `b24flow demo` and benchmarks.
//!
//! It follows the documented protocol and the core's code (`../shared/bitrix/protocol.md`,
//! `methods.md`), not our convenience, and depends on none of our crates so it cannot share
//! our misreadings. A [`Cloud`] runs the OAuth server; each [`Portal`] has its own REST
//! endpoint on loopback, its users and departments, the activities the app registered, and
//! a driver that installs the app and fires workflows at it.
//!
//! - `cloud`: the OAuth server and the portal registry.
//! - `portal`: one portal: REST endpoint (`rest`), `batch`, tokens (`auth`), rate limit
//!   (`limits`), injected `faults`, company `directory`.
//! - `methods`: the REST method router, one file per scope.
//! - `driver`: the portal acting towards the app (install, events, activity calls).
//! - `php`: PHP semantics the portal imposes (`parse_str`, `intval`, `empty()`…).

// Unwraps here are on internal state (mutexes, constants), never on request input.
#![allow(clippy::unwrap_used)]

mod cloud;
mod driver;
mod methods;
mod php;
mod portal;

pub use cloud::{Cloud, CloudConfig};
pub use driver::{ActivityCall, FiredCall};
pub use portal::{EventSend, Faults, Portal, PortalConfig, RegisteredActivity, TokenPair};
