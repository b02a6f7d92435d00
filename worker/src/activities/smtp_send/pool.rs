//! Idle SMTP connections kept for the next job to the same server with the same login,
//! in this process. The key carries a salted digest of the password, so a job never
//! inherits a connection that another job's (different or wrong) password opened.
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use lettre::transport::smtp::client::AsyncSmtpConnection;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::transport::{Security, Server};

/// Servers commonly drop idle clients after a minute or more; stay well below.
const IDLE_FOR_AT_MOST: Duration = Duration::from_secs(30);
const IDLE_PER_KEY: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    host: String,
    port: u16,
    security: Security,
    login: Option<String>,
    secret: [u8; 32],
}

/// Random per process, so the digests in memory say nothing outside it.
static SALT: LazyLock<[u8; 32]> = LazyLock::new(|| {
    let mut salt = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut salt);
    salt
});

impl PoolKey {
    pub fn new(server: &Server) -> Self {
        let mut digest = Sha256::new();
        digest.update(*SALT);
        if let Some((login, password)) = &server.credentials {
            digest.update(login.as_bytes());
            digest.update([0u8]);
            digest.update(password.as_bytes());
        }
        Self {
            host: server.host.to_ascii_lowercase(),
            port: server.port,
            security: server.security,
            login: server.credentials.as_ref().map(|(l, _)| l.clone()),
            secret: digest.finalize().into(),
        }
    }
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

static IDLE: LazyLock<Mutex<HashMap<PoolKey, Vec<Idle>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn idle() -> std::sync::MutexGuard<'static, HashMap<PoolKey, Vec<Idle>>> {
    // A panic while holding the lock leaves only a map of sockets behind: keep using it.
    IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn drop_stale(map: &mut HashMap<PoolKey, Vec<Idle>>) {
    for list in map.values_mut() {
        list.retain(|i| i.since.elapsed() < IDLE_FOR_AT_MOST);
    }
    map.retain(|_, list| !list.is_empty());
}

/// The most recently used idle connection for `key`, if any.
pub fn take(key: &PoolKey) -> Option<AsyncSmtpConnection> {
    let mut map = idle();
    drop_stale(&mut map);
    map.get_mut(key).and_then(|list| list.pop()).map(|i| i.conn)
}

pub fn put(key: PoolKey, conn: AsyncSmtpConnection) {
    let mut map = idle();
    drop_stale(&mut map);
    let list = map.entry(key).or_default();
    if list.len() < IDLE_PER_KEY {
        list.push(Idle {
            conn,
            since: Instant::now(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(login: &str, password: &str) -> Server {
        Server {
            host: "smtp.example.com".into(),
            port: 465,
            security: Security::Ssl,
            credentials: Some((login.into(), password.into())),
        }
    }

    #[test]
    fn a_different_password_is_a_different_pool() {
        assert_eq!(
            PoolKey::new(&server("a", "p1")),
            PoolKey::new(&server("a", "p1"))
        );
        assert_ne!(
            PoolKey::new(&server("a", "p1")),
            PoolKey::new(&server("a", "p2"))
        );
        assert_ne!(
            PoolKey::new(&server("a", "p1")),
            PoolKey::new(&server("b", "p1"))
        );
        let key = format!("{:?}", PoolKey::new(&server("a", "hunter2")));
        assert!(!key.contains("hunter2"));
    }
}
