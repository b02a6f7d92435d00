//! Layer 1 of the simulator: what one portal holds, as plain data. The core [`State`]
//! (install, tokens, registered activities, workflow instances, the company directory,
//! limits and faults) and the areas beside it (CRM, invoicing, Disk, telephony and
//! calendar), each behind its own lock in [`Areas`]. A `Portal` owns one `State` and one
//! `Areas`, so both are freed with it. Nothing here knows the portal handle, the methods
//! or HTTP: this layer imports only `php`.

pub(crate) mod auth;
pub(crate) mod crm;
pub(crate) mod directory;
pub(crate) mod disk;
pub(crate) mod faults;
pub(crate) mod invoicing;
pub(crate) mod limits;
pub(crate) mod operating;
pub(crate) mod telephony_calendar;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

pub use auth::TokenPair;
pub use faults::Faults;

use auth::{random_hex, TokenStore};
use directory::Directory;
use limits::LeakyBucket;

/// A `bizproc.activity.add` / `bizproc.robot.add` registration as the portal stored it:
/// top-level and property-descriptor keys upper-cased, property keys as given.
#[derive(Clone, Debug)]
pub struct RegisteredActivity {
    pub code: String,
    pub is_robot: bool,
    pub handler: String,
    pub auth_user_id: u64,
    pub use_subscription: String,
    pub name: Value,
    /// Shared: every workflow instance of the activity reads them, none changes them.
    pub properties: Arc<Value>,
    pub return_properties: Arc<Value>,
    pub document_type: Value,
    pub filter: Value,
}

/// The first accepted `bizproc.event.send` of one workflow instance.
#[derive(Clone, Debug)]
pub struct EventSend {
    pub event_token: String,
    /// Values of declared RETURN_PROPERTIES only, keyed as declared, converted by type.
    pub return_values: Value,
    /// `RETURN_VALUES` as received.
    pub raw_return_values: Value,
    pub log_message: String,
    pub at: Instant,
    pub fired_at: Instant,
}

/// A workflow instance waiting in (or past) one of our activities.
pub(crate) struct Workflow {
    pub activity_name: String,
    pub event_id: String,
    pub event_token: String,
    pub return_properties: Arc<Value>,
    pub closed: bool,
    pub fired_at: Instant,
    pub logs: Vec<String>,
}

pub(crate) struct State {
    /// False after ONAPPUNINSTALL until the next install.
    pub app_installed: bool,
    /// `app.info` INSTALLED: set once the install finished (`BX24.installFinish()`, §1.1).
    pub install_finished: bool,
    pub application_token: String,
    pub tokens: TokenStore,
    pub activities: Vec<RegisteredActivity>,
    pub directory: Directory,
    /// by workflow id
    pub workflows: HashMap<String, Workflow>,
    pub event_sends: Vec<EventSend>,
    pub event_send_index: HashMap<String, usize>,
    pub duplicate_event_sends: usize,
    pub method_calls: HashMap<String, u64>,
    pub faults: Faults,
    /// Top-level methods (lower case) that answer 500 every time, for retry-exhaustion tests.
    pub failing_methods: HashSet<String>,
    pub rate_limit_enabled: bool,
    pub bucket: LeakyBucket,
    pub operating: operating::Operating,
    /// Every authenticated REST request: (method, the user its token belongs to).
    pub requests_by_user: Vec<(String, u64)>,
}

impl State {
    /// A fresh portal with the app installed and `admin_user_id` as its only user.
    pub(crate) fn new(admin_user_id: u64, faults: Faults, rate_limit_enabled: bool) -> Self {
        let mut directory = Directory::new("Company");
        directory.add_user(&serde_json::json!({
            "ID": admin_user_id, "NAME": "Alex", "LAST_NAME": "Admin",
            "EMAIL": "admin@example.com", "WORK_POSITION": "Administrator", "IS_ONLINE": "Y",
        }));
        State {
            app_installed: true,
            install_finished: false,
            application_token: random_hex(32),
            tokens: TokenStore::default(),
            activities: Vec::new(),
            directory,
            workflows: HashMap::new(),
            event_sends: Vec::new(),
            event_send_index: HashMap::new(),
            duplicate_event_sends: 0,
            method_calls: HashMap::new(),
            faults,
            failing_methods: HashSet::new(),
            rate_limit_enabled,
            bucket: LeakyBucket::new(),
            operating: operating::Operating::default(),
            requests_by_user: Vec::new(),
        }
    }
}

/// The areas kept beside the core state, each behind its own lock so a handler that holds
/// the core state can take one. Lock order: core state, then CRM, then invoicing; the
/// hooks take an area alone.
pub(crate) struct Areas {
    pub crm: Mutex<crm::Crm>,
    pub invoicing: Mutex<invoicing::Invoicing>,
    pub disk: Mutex<disk::Disk>,
    pub telephony_calendar: Mutex<telephony_calendar::TelephonyCalendar>,
}

impl Areas {
    pub(crate) fn new() -> Self {
        Areas {
            crm: Mutex::new(crm::Crm::new()),
            invoicing: Mutex::new(invoicing::Invoicing::new()),
            disk: Mutex::new(disk::Disk::default()),
            telephony_calendar: Mutex::new(telephony_calendar::TelephonyCalendar::new()),
        }
    }
}
