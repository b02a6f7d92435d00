//! Attachments: Disk files by ID (all metadata in one `disk.file.get` batch, then each
//! `DOWNLOAD_URL`; methods.md §2) and direct links. A file that cannot be fetched becomes
//! a line in the workflow log; the message goes out without it.
use b24flow_common::bitrix::{Batch, ErrorKind};
use lettre::message::header::ContentType;
use serde_json::{json, Value};

use super::download::{filename_from_url, redact, sanitize, too_big, Downloader};
use crate::activity::{ActivityError, RunContext};

/// Size caps (`B24FLOW_ATTACHMENT_MAX_BYTES`, `B24FLOW_ATTACHMENTS_TOTAL_MAX_BYTES`;
/// 25 MB each by default, what common mail services accept).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub per_file: u64,
    pub total: u64,
}

/// A batch holds at most 50 commands (protocol.md §6.5).
const BATCH_SIZE: usize = b24flow_common::bitrix::BATCH_MAX_COMMANDS;

impl Limits {
    pub fn from_config(config: &b24flow_common::Config) -> Self {
        Self {
            per_file: config.attachment_max_bytes,
            total: config.attachments_total_max_bytes,
        }
    }
}

pub struct Attachment {
    pub name: String,
    pub content_type: ContentType,
    pub bytes: Vec<u8>,
}

#[derive(Default)]
pub struct Fetched {
    pub files: Vec<Attachment>,
    /// One entry per attachment left out, for the workflow log.
    pub problems: Vec<String>,
}

/// Room left under the total cap.
struct Budget {
    limits: Limits,
    used: u64,
}

impl Budget {
    fn cap(&self) -> u64 {
        self.limits
            .per_file
            .min(self.limits.total.saturating_sub(self.used))
    }
    fn refuse(&self, size: u64) -> Option<String> {
        if size > self.limits.per_file {
            Some(too_big(size, self.limits.per_file))
        } else if self.used + size > self.limits.total {
            Some(format!(
                "would take the attachments over their total limit of {} bytes",
                self.limits.total
            ))
        } else {
            None
        }
    }
}

pub async fn fetch_all(
    ctx: &RunContext,
    downloader: &Downloader,
    disk_ids: &[u64],
    links: &[String],
    limits: Limits,
) -> Result<Fetched, ActivityError> {
    let mut fetched = Fetched::default();
    let mut budget = Budget { limits, used: 0 };
    for file in disk_files(ctx, disk_ids, &mut fetched.problems).await? {
        let label = format!("Disk file {} ({})", file.id, file.name);
        if let Some(why) = file.unusable.or_else(|| budget.refuse(file.size)) {
            fetched.problems.push(format!("{label} {why}"));
            continue;
        }
        match downloader.fetch(&file.download_url, budget.cap()).await {
            Ok(d) => {
                budget.used += d.bytes.len() as u64;
                fetched.files.push(Attachment {
                    content_type: guess_type(&file.name, None),
                    name: file.name,
                    bytes: d.bytes,
                });
            }
            Err(why) => fetched.problems.push(format!("{label}: {why}")),
        }
    }
    for link in links {
        match downloader.fetch(link, budget.cap()).await {
            Ok(d) => {
                budget.used += d.bytes.len() as u64;
                let name = d
                    .disposition_name
                    .or_else(|| filename_from_url(&d.final_url))
                    .unwrap_or_else(|| "attachment".into());
                fetched.files.push(Attachment {
                    content_type: guess_type(&name, d.content_type.as_deref()),
                    name,
                    bytes: d.bytes,
                });
            }
            Err(why) => fetched.problems.push(format!("{}: {why}", redact(link))),
        }
    }
    Ok(fetched)
}

struct DiskFile {
    id: u64,
    name: String,
    size: u64,
    download_url: String,
    /// Why it cannot be attached although the portal knows it (e.g. in the trash).
    unusable: Option<String>,
}

/// The metadata of all files, in batches of 50. A file the portal does not give us
/// (not found, no access) is a problem for the log; a portal that cannot answer right
/// now (limits, outage) is retried, since nothing has been sent yet.
async fn disk_files(
    ctx: &RunContext,
    ids: &[u64],
    problems: &mut Vec<String>,
) -> Result<Vec<DiskFile>, ActivityError> {
    let mut files = Vec::new();
    for chunk in ids.chunks(BATCH_SIZE) {
        let mut batch = Batch::new(false);
        for (i, id) in chunk.iter().enumerate() {
            batch.push(&format!("f{i}"), "disk.file.get", &json!({ "id": id }));
        }
        let answer = match ctx.b24.batch(&batch).await {
            Ok(a) => a,
            Err(e) if e.kind() == ErrorKind::Permanent => {
                problems.push(format!(
                    "Disk files {chunk:?} could not be read: {}",
                    e.description()
                ));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for (i, id) in chunk.iter().enumerate() {
            match answer.get(&format!("f{i}")) {
                Ok(v) => match disk_file(*id, v) {
                    Some(file) => files.push(file),
                    None => problems.push(format!(
                        "Disk file {id}: the portal's answer has no download link"
                    )),
                },
                Err(e) => problems.push(format!("Disk file {id}: {}", e.description())),
            }
        }
    }
    Ok(files)
}

/// `disk.file.get` answers numbers as strings (`"SIZE":"21668"`).
fn disk_file(id: u64, v: &Value) -> Option<DiskFile> {
    let number = |key: &str| match v.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let download_url = v.get("DOWNLOAD_URL")?.as_str()?.to_string();
    let name = v
        .get("NAME")
        .and_then(Value::as_str)
        .map(sanitize)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("file-{id}"));
    // DELETED_TYPE: 0 live, 3 in the trash, 4 deleted with its folder.
    let unusable = match number("DELETED_TYPE").unwrap_or(0) {
        0 => None,
        _ => Some("is in the portal's trash".to_string()),
    };
    Some(DiskFile {
        id,
        name,
        size: number("SIZE").unwrap_or(0),
        download_url,
        unusable,
    })
}

/// From the name; the server's Content-Type only when the name says nothing.
fn guess_type(name: &str, served: Option<&str>) -> ContentType {
    let guessed = mime_guess::from_path(name)
        .first()
        .and_then(|m| ContentType::parse(m.essence_str()).ok());
    guessed
        .or_else(|| served.and_then(|s| ContentType::parse(s.trim()).ok()))
        .unwrap_or_else(|| {
            ContentType::parse("application/octet-stream").unwrap_or(ContentType::TEXT_PLAIN)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_answers_are_read_with_string_numbers_and_trash() {
        let live = disk_file(
            9043,
            &json!({"ID":"9043","NAME":"Offer.pdf","SIZE":"21668","DELETED_TYPE":"0","DOWNLOAD_URL":"https://p/rest/download.json?auth=x"}),
        )
        .expect("file");
        assert_eq!(
            (live.name.as_str(), live.size, live.unusable.is_none()),
            ("Offer.pdf", 21668, true)
        );
        let trashed = disk_file(
            1,
            &json!({"NAME":"a.txt","SIZE":1,"DELETED_TYPE":"3","DOWNLOAD_URL":"u"}),
        )
        .expect("file");
        assert!(trashed.unusable.is_some());
        assert!(disk_file(2, &json!({"NAME":"no link"})).is_none());
    }

    #[test]
    fn the_budget_caps_each_file_and_the_total() {
        let mut b = Budget {
            limits: Limits {
                per_file: 10,
                total: 15,
            },
            used: 0,
        };
        assert!(b.refuse(11).is_some());
        assert!(b.refuse(10).is_none());
        b.used = 10;
        assert_eq!(b.cap(), 5);
        assert!(b.refuse(6).is_some());
    }

    #[test]
    fn content_types_come_from_the_name() {
        let ct = |s: &str| ContentType::parse(s).expect("content type");
        assert_eq!(
            guess_type("a.pdf", Some("text/plain")),
            ct("application/pdf")
        );
        assert_eq!(guess_type("noext", Some("image/png")), ct("image/png"));
        assert_eq!(guess_type("noext", None), ct("application/octet-stream"));
    }
}
