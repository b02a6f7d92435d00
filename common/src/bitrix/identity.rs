//! Whose token a REST request carries: the installer's (app-level calls: registration,
//! the app's own reads) or the user a job's workflow runs as (protocol.md §4: the call's
//! `auth[…]` is the token of the activity's "run as" user). Requests of one identity
//! may share a `batch`; requests of different identities never do, since a batch runs
//! under one token.
use std::fmt;
use std::sync::Arc;

use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use crate::secrets::RunAs;

/// A token is renewed this long before the expiry the call announced, so a request does
/// not leave with a token that dies on the way.
const EXPIRY_MARGIN_SECS: f64 = 30.0;

#[derive(Clone)]
pub(crate) enum Identity {
    Installer,
    User(Arc<UserToken>),
}

/// What decides which requests may share one batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum IdentityKey {
    Installer,
    /// A user's tokens of different jobs carry the same rights.
    User(i64),
    /// A token whose user the call did not name shares with nobody.
    Job(Uuid),
}

impl fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityKey::Installer => f.write_str("installer"),
            IdentityKey::User(id) => write!(f, "user-{id}"),
            IdentityKey::Job(id) => write!(f, "job-{id}"),
        }
    }
}

impl Identity {
    pub(crate) fn key(&self) -> IdentityKey {
        match self {
            Identity::Installer => IdentityKey::Installer,
            Identity::User(user) => match user.user_id {
                Some(id) => IdentityKey::User(id),
                None => IdentityKey::Job(user.job_id),
            },
        }
    }
}

/// One job's run-as token as this process last knew it.
pub(crate) struct UserToken {
    job_id: Uuid,
    user_id: Option<i64>,
    current: RwLock<CachedUserToken>,
    /// One refresh at a time per job in this process; the job's secret row lock covers
    /// other processes.
    refresh_gate: Mutex<()>,
}

#[derive(Clone)]
pub(crate) struct CachedUserToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_at: Option<i64>,
    /// Grows with every replacement, so a refresh after a failure with an older token
    /// adopts the newer one instead of refreshing again.
    pub version: u64,
}

impl CachedUserToken {
    pub(crate) fn expired(&self, now: f64) -> bool {
        self.expires_at
            .is_some_and(|at| (at as f64) <= now + EXPIRY_MARGIN_SECS)
    }
}

impl UserToken {
    pub(crate) fn new(job_id: Uuid, run_as: RunAs) -> Self {
        Self {
            job_id,
            user_id: run_as.user_id,
            current: RwLock::new(CachedUserToken {
                access_token: run_as.access_token,
                refresh_token: run_as.refresh_token,
                expires_at: run_as.expires_at,
                version: 0,
            }),
            refresh_gate: Mutex::new(()),
        }
    }

    pub(crate) fn job_id(&self) -> Uuid {
        self.job_id
    }

    pub(crate) fn user_id(&self) -> Option<i64> {
        self.user_id
    }

    pub(crate) async fn current(&self) -> CachedUserToken {
        self.current.read().await.clone()
    }

    pub(crate) async fn can_refresh(&self) -> bool {
        self.current.read().await.refresh_token.is_some()
    }

    pub(crate) fn refresh_gate(&self) -> &Mutex<()> {
        &self.refresh_gate
    }

    /// Takes a rotated (or elsewhere stored) pair; returns it as now current.
    pub(crate) async fn replace(&self, run_as: RunAs) -> CachedUserToken {
        let mut current = self.current.write().await;
        *current = CachedUserToken {
            access_token: run_as.access_token,
            refresh_token: run_as.refresh_token,
            expires_at: run_as.expires_at,
            version: current.version + 1,
        };
        current.clone()
    }
}
