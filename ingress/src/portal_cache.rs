//! The portal of each activity call, without a Postgres round trip per call. An entry is
//! trusted only while the change listener (`b24flow_portal_changed`) is connected and no
//! notice about its portal came since it was read, so a reinstall or uninstall takes effect
//! on the next call (issue 11). The last row read is also kept as "last known": when
//! Postgres does not answer, a call of a portal we knew installed can still be handed to
//! the broker instead of being refused (issue 15).
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use b24flow_common::bitrix::PortalChangeSink;
use b24flow_common::db::portals::{self, Portal};
use b24flow_common::db::{DbError, Pool};

/// How long a lookup may wait for Postgres before the last known row is used instead.
const LOOKUP_WAIT: Duration = Duration::from_secs(1);
/// How long a lookup may wait when there is no last known row to fall back on: the only
/// other answer is a 503, and Bitrix24 never repeats a call (a busy Postgres at a cold
/// start, with many portals' first calls at once, is slow, not down).
const FIRST_LOOKUP_WAIT: Duration = Duration::from_secs(5);

struct Entry {
    portal: Portal,
    /// The cache epoch the row was read in; a newer epoch means "read it again".
    epoch: u64,
}

#[derive(Default)]
struct Inner {
    entries: Mutex<HashMap<String, Entry>>,
    watching: AtomicBool,
    epoch: AtomicU64,
}

#[derive(Clone, Default)]
pub struct PortalCache {
    inner: Arc<Inner>,
}

/// A lookup's answer.
pub enum Found {
    /// Read from Postgres now, or cached and still known to be current.
    Current(Option<Portal>),
    /// Postgres did not answer: the last row read, which may be out of date.
    LastKnown(Portal),
}

impl PortalCache {
    pub async fn find(&self, db: &Pool, member_id: &str) -> Result<Found, DbError> {
        if let Some(portal) = self.current(member_id) {
            return Ok(Found::Current(Some(portal)));
        }
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        let read = async {
            let client = db.get().await?;
            portals::find_by_member_id(&client, member_id).await
        };
        let wait = if self.last_known(member_id).is_some() {
            LOOKUP_WAIT
        } else {
            FIRST_LOOKUP_WAIT
        };
        let read = match tokio::time::timeout(wait, read).await {
            Ok(read) => read,
            Err(_) => Err(DbError::Timeout("portal lookup")),
        };
        match read {
            Ok(found) => {
                self.remember(member_id, found.as_ref(), epoch);
                Ok(Found::Current(found))
            }
            Err(e) if e.is_unreachable() => match self.last_known(member_id) {
                Some(portal) => Ok(Found::LastKnown(portal)),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    fn current(&self, member_id: &str) -> Option<Portal> {
        if !self.inner.watching.load(Ordering::Acquire) {
            return None;
        }
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        let entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(member_id)
            .filter(|e| e.epoch == epoch)
            .map(|e| e.portal.clone())
    }

    fn last_known(&self, member_id: &str) -> Option<Portal> {
        let entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(member_id).map(|e| e.portal.clone())
    }

    fn remember(&self, member_id: &str, portal: Option<&Portal>, epoch: u64) {
        let mut entries = self.inner.entries.lock().unwrap_or_else(|e| e.into_inner());
        match portal {
            Some(portal) => {
                entries.insert(
                    member_id.to_string(),
                    Entry {
                        portal: portal.clone(),
                        epoch,
                    },
                );
            }
            None => {
                entries.remove(member_id);
            }
        }
    }
}

impl PortalChangeSink for PortalCache {
    fn set_watching(&self, watching: bool) {
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        self.inner.watching.store(watching, Ordering::Release);
    }

    fn forget_all(&self) {
        // Rows stay as "last known"; the new epoch makes every one be read again.
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn forget_portal(&self, _portal_id: i64) {
        // A new epoch for all: a read that began before this notice must not be stored as
        // current, and portals change rarely enough that re-reading the rest costs nothing.
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
    }
}
