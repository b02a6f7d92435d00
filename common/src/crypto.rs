//! Encryption at rest for tokens and passwords (XChaCha20-Poly1305, random nonces).
//! `B24FLOW_SECRET_KEY_OLD` is still accepted for reading so keys can be rotated.
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0} must be base64 of exactly 32 bytes")]
    BadKey(&'static str),
    #[error("key file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext is malformed or was made with an unknown key")]
    Undecryptable,
}

/// Holds the current key and optionally the previous one. Clone is cheap.
#[derive(Clone)]
pub struct SecretBox {
    current: Arc<XChaCha20Poly1305>,
    old: Option<Arc<XChaCha20Poly1305>>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

fn parse_key(b64: &str, var: &'static str) -> Result<XChaCha20Poly1305, KeyError> {
    let bytes = B64.decode(b64.trim()).map_err(|_| KeyError::BadKey(var))?;
    if bytes.len() != 32 {
        return Err(KeyError::BadKey(var));
    }
    XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| KeyError::BadKey(var))
}

impl SecretBox {
    pub fn from_base64(current: &str, old: Option<&str>) -> Result<Self, KeyError> {
        Ok(Self {
            current: Arc::new(parse_key(current, "B24FLOW_SECRET_KEY")?),
            old: old
                .map(|o| parse_key(o, "B24FLOW_SECRET_KEY_OLD"))
                .transpose()?
                .map(Arc::new),
        })
    }

    /// A fresh random key, base64-encoded.
    pub fn generate_key() -> String {
        B64.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
    }

    /// The key from the environment, else from `key_file`, else a new key written there (0600).
    pub fn from_env_or_key_file(
        current: Option<String>,
        old: Option<String>,
        key_file: &Path,
    ) -> Result<Self, KeyError> {
        if let Some(key) = current {
            return Self::from_base64(&key, old.as_deref());
        }
        let file_err = |source| KeyError::File {
            path: key_file.display().to_string(),
            source,
        };
        let key = match std::fs::read_to_string(key_file) {
            Ok(key) => key,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate_key();
                write_private_file(key_file, &key).map_err(file_err)?;
                tracing::warn!(
                    path = %key_file.display(),
                    "B24FLOW_SECRET_KEY is not set: generated a new key file; keep it, or stored tokens become unreadable"
                );
                key
            }
            Err(e) => return Err(file_err(e)),
        };
        Self::from_base64(&key, old.as_deref())
    }

    pub fn encrypt(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .current
            .encrypt(&nonce, plaintext)
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if data.len() < 1 + NONCE_LEN || data[0] != FORMAT_V1 {
            return Err(CryptoError::Undecryptable);
        }
        let nonce = XNonce::from_slice(&data[1..1 + NONCE_LEN]);
        let sealed = &data[1 + NONCE_LEN..];
        self.current
            .decrypt(nonce, sealed)
            .or_else(|_| match &self.old {
                Some(old) => old.decrypt(nonce, sealed),
                None => Err(chacha20poly1305::aead::Error),
            })
            .map_err(|_| CryptoError::Undecryptable)
    }

    pub fn encrypt_str(&self, s: &str) -> Vec<u8> {
        self.encrypt(s.as_bytes())
    }

    pub fn decrypt_str(&self, data: &[u8]) -> Result<String, CryptoError> {
        String::from_utf8(self.decrypt(data)?).map_err(|_| CryptoError::Undecryptable)
    }
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_with_the_old_key_after_rotation() {
        let old_key = SecretBox::generate_key();
        let old = SecretBox::from_base64(&old_key, None).unwrap();
        let sealed = old.encrypt_str("refresh-token");
        assert_ne!(&sealed[1 + NONCE_LEN..], b"refresh-token");
        let rotated = SecretBox::from_base64(&SecretBox::generate_key(), Some(&old_key)).unwrap();
        assert_eq!(rotated.decrypt_str(&sealed).unwrap(), "refresh-token");
        let unrelated = SecretBox::from_base64(&SecretBox::generate_key(), None).unwrap();
        assert!(unrelated.decrypt_str(&sealed).is_err());
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(SecretBox::from_base64(&B64.encode([0u8; 16]), None).is_err());
    }
}
