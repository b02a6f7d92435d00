//! The simulator against the protocol (../shared/bitrix/protocol.md), one module per area:
//! REST envelope and auth, OAuth refresh, batch, rate limit, bizproc registration and
//! event.send, injected faults, install events, users, Disk, the driver, and the layering of
//! the simulator's own modules. Loopback only.
#![allow(clippy::unwrap_used)]

mod support;

mod areas;
mod batch;
mod bizproc;
mod disk;
mod driver;
mod event_send;
mod faults;
mod install;
mod layers;
mod limits;
mod oauth;
mod rest;
mod user;
