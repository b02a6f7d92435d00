//! The Disk area of a portal (methods.md §2): files with their bytes, which are in the trash
//! or out of the app user's reach, the download links `disk.file.get` handed out (each with
//! the auth token it embeds), and how often each file was downloaded. One per portal, in its
//! `Areas`.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use super::auth::random_hex;
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
    pub(crate) fn add(&mut self, name: &str, bytes: Vec<u8>, created_by: u64) -> u64 {
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
