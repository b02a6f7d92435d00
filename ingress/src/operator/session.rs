//! Dashboard sessions, kept in a signed cookie (no server-side store, so any ingress process
//! accepts it, and changing the operator token ends every session). The CSRF token is
//! derived from the session's nonce with the same key. A logout lists the nonce in
//! `revoked_sessions` until the cookie would expire, so a copy of the cookie dies with it.
use b24flow_common::db::revoked_sessions;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const SESSION_COOKIE: &str = "b24flow_session";
/// How long a dashboard login lasts.
pub const SESSION_HOURS: i64 = 12;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, Debug)]
pub struct Session {
    pub name: String,
    nonce: String,
    expires: i64,
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
        m.update(b"\0");
    }
    m
}

impl Session {
    pub fn new(name: String) -> Self {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        Self {
            name,
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            expires: chrono::Utc::now().timestamp() + SESSION_HOURS * 3600,
        }
    }

    /// The cookie value: payload and its HMAC.
    pub fn seal(&self, key: &[u8; 32]) -> String {
        let payload = format!("{}|{}|{}", self.expires, self.nonce, self.name);
        let tag = mac(key, &[b"session", payload.as_bytes()])
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The session in a cookie value, if it is ours and has not expired.
    pub fn verify(key: &[u8; 32], value: &str) -> Option<Self> {
        let (payload_b64, tag_b64) = value.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload_b64).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag_b64).ok()?;
        mac(key, &[b"session", &payload]).verify_slice(&tag).ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let mut fields = payload.splitn(3, '|');
        let expires: i64 = fields.next()?.parse().ok()?;
        let nonce = fields.next()?.to_string();
        let name = fields.next()?.to_string();
        (expires > chrono::Utc::now().timestamp()).then_some(Self {
            name,
            nonce,
            expires,
        })
    }

    /// Ended by a logout (one indexed lookup). When the list cannot be read the session is
    /// refused: a logout must not be undone by a database hiccup.
    pub async fn is_revoked(&self, db: &b24flow_common::db::Pool) -> bool {
        let Ok(client) = db.get().await else {
            return true;
        };
        revoked_sessions::is_revoked(&client, &self.nonce)
            .await
            .unwrap_or(true)
    }

    /// Ends this session on every ingress process.
    pub async fn revoke(
        &self,
        db: &b24flow_common::db::Pool,
    ) -> Result<(), b24flow_common::db::DbError> {
        let client = db.get().await?;
        let expires = chrono::DateTime::from_timestamp(self.expires, 0)
            .unwrap_or_else(|| chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS));
        revoked_sessions::revoke(&client, &self.nonce, expires).await
    }

    pub fn csrf_token(&self, key: &[u8; 32]) -> String {
        let tag = mac(key, &[b"csrf", self.nonce.as_bytes()])
            .finalize()
            .into_bytes();
        URL_SAFE_NO_PAD.encode(tag)
    }

    /// Constant-time check of a submitted CSRF token.
    pub fn csrf_matches(&self, key: &[u8; 32], candidate: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(candidate.trim()) else {
            return false;
        };
        mac(key, &[b"csrf", self.nonce.as_bytes()])
            .verify_slice(&tag)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_session_verifies_and_a_tampered_one_does_not() {
        let key = [7u8; 32];
        let session = Session::new("ann".into());
        let sealed = session.seal(&key);
        let back = Session::verify(&key, &sealed).expect("valid");
        assert_eq!(back.name, "ann");
        assert!(Session::verify(&[8u8; 32], &sealed).is_none());
        let (payload, tag) = sealed.split_once('.').expect("two parts");
        let forged = URL_SAFE_NO_PAD.encode(format!("9999999999|x|{}", "admin"));
        assert!(Session::verify(&key, &format!("{forged}.{tag}")).is_none());
        assert!(Session::verify(&key, payload).is_none());
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session() {
        let key = [7u8; 32];
        let (a, b) = (Session::new("a".into()), Session::new("b".into()));
        assert!(a.csrf_matches(&key, &a.csrf_token(&key)));
        assert!(!a.csrf_matches(&key, &b.csrf_token(&key)));
        assert!(!a.csrf_matches(&key, "garbage"));
    }
}
