//! The Disk area of a portal (methods.md §2): files with their bytes, which are in the trash
//! or out of the app user's reach, the download links `disk.file.get` handed out (each with
//! the auth token it embeds), and how often each file was downloaded. Test hooks at the end.
//!
//! Kept beside the core state, keyed by the portal's `member_id`, so the area needs no field
//! in it. Lock order: a handler holds the core state, then this; hooks take only this.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use super::auth::random_hex;
use super::Portal;

static AREAS: OnceLock<Mutex<HashMap<String, Disk>>> = OnceLock::new();

/// Runs `f` on `portal`'s Disk.
pub(crate) fn with<R>(portal: &Portal, f: impl FnOnce(&mut Disk) -> R) -> R {
    let areas = AREAS.get_or_init(Default::default);
    let mut areas = areas.lock().unwrap_or_else(PoisonError::into_inner);
    f(areas.entry(portal.member_id()).or_default())
}

#[derive(Default)]
pub(crate) struct Disk {
    pub files: BTreeMap<u64, DiskFile>,
    /// Files the app's user may not read (`ACCESS_DENIED`).
    pub denied: HashSet<u64>,
    /// `token` of a handed-out download link → the file it opens.
    pub links: HashMap<String, u64>,
    /// `auth` embedded in download links → when it stops working.
    pub link_auth: HashMap<String, SystemTime>,
    pub downloads: HashMap<u64, usize>,
    next_id: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct DiskFile {
    pub id: u64,
    pub name: String,
    pub bytes: Vec<u8>,
    /// 0 live, 3 in the trash, 4 deleted with its folder.
    pub deleted_type: u8,
    pub created_by: u64,
    pub created: String,
}

/// IDs in the docs' range, so a test cannot pass by confusing them with user IDs.
const FIRST_ID: u64 = 9043;

impl Disk {
    fn add(&mut self, name: &str, bytes: Vec<u8>, created_by: u64) -> u64 {
        let id = FIRST_ID + self.next_id;
        self.next_id += 1;
        let created = chrono::Utc::now()
            .with_timezone(
                &chrono::FixedOffset::east_opt(3 * 3600)
                    .unwrap_or_else(|| unreachable!("fixed offset")),
            )
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        self.files.insert(
            id,
            DiskFile {
                id,
                name: name.to_string(),
                bytes,
                deleted_type: 0,
                created_by,
                created,
            },
        );
        id
    }

    /// A fresh link for `file`: `token=disk|<object>|<signature>` opens that file only,
    /// `auth` is a token that works until `expires` (the real one embeds the caller's token).
    pub fn issue_link(&mut self, file: u64, expires: SystemTime) -> (String, String) {
        let object: String = format!("id={file}&_={}", random_hex(16))
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        let token = format!("disk|{object}|{}", random_hex(64));
        let auth = random_hex(70);
        self.links.insert(token.clone(), file);
        self.link_auth.insert(auth.clone(), expires);
        (auth, token)
    }
}

impl Portal {
    /// Puts a file on the portal's Disk (uploaded by the admin); returns its ID.
    pub fn add_disk_file(&self, name: &str, bytes: Vec<u8>) -> u64 {
        let admin = self.inner.cfg.admin_user_id;
        with(self, |d| d.add(name, bytes, admin))
    }

    /// Moves a file to the trash (`DELETED_TYPE` 3).
    pub fn trash_disk_file(&self, id: u64) {
        with(self, |d| {
            if let Some(f) = d.files.get_mut(&id) {
                f.deleted_type = 3;
            }
        });
    }

    /// Takes the read right on a file away from the app's user: `disk.file.get` answers
    /// `ACCESS_DENIED`.
    pub fn deny_disk_file(&self, id: u64) {
        with(self, |d| {
            d.denied.insert(id);
        });
    }

    /// How often a file's bytes were served through a download link.
    pub fn disk_downloads(&self, id: u64) -> usize {
        with(self, |d| d.downloads.get(&id).copied().unwrap_or(0))
    }
}
