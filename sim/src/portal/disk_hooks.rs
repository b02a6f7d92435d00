//! Test and demo hooks of the Disk area: put files on it, trash them, take the read right
//! away, and count downloads.
use super::Portal;

impl Portal {
    /// Puts a file on the portal's Disk (uploaded by the admin); returns its ID.
    pub fn add_disk_file(&self, name: &str, bytes: Vec<u8>) -> u64 {
        let admin = self.inner.cfg.admin_user_id;
        self.disk(|d| d.add(name, bytes, admin))
    }

    /// Moves a file to the trash (`DELETED_TYPE` 3).
    pub fn trash_disk_file(&self, id: u64) {
        self.disk(|d| {
            if let Some(f) = d.files.get_mut(&id) {
                f.deleted_type = 3;
            }
        });
    }

    /// Takes the read right on a file away from the app's user: `disk.file.get` answers
    /// `ACCESS_DENIED`.
    pub fn deny_disk_file(&self, id: u64) {
        self.disk(|d| {
            d.denied.insert(id);
        });
    }

    /// How often a file's bytes were served through a download link.
    pub fn disk_downloads(&self, id: u64) -> usize {
        self.disk(|d| d.downloads.get(&id).copied().unwrap_or(0))
    }
}
