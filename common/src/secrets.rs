//! Which activity properties are secrets. The ingress moves them out of the job row into
//! `job_secrets` (encrypted) before anything is stored; the worker puts them back in memory.
use serde_json::{Map, Value};

use crate::crypto::{CryptoError, SecretBox};

/// Property keys whose values never reach the job row, logs or operators.
pub const SECRET_PROPERTIES: &[&str] = &["smtp_password"];

/// Removes secret properties from `properties`; returns them encrypted, if there were any.
pub fn split_secrets(properties: &mut Value, secrets: &SecretBox) -> Option<Vec<u8>> {
    let map = properties.as_object_mut()?;
    let mut taken = Map::new();
    for key in SECRET_PROPERTIES {
        if let Some(v) = map.remove(*key) {
            taken.insert((*key).to_string(), v);
        }
    }
    if taken.is_empty() {
        return None;
    }
    let plain = serde_json::to_vec(&Value::Object(taken)).unwrap_or_default();
    Some(secrets.encrypt(&plain))
}

/// Puts decrypted secret properties back into a copy of the job's properties.
pub fn merge_secrets(
    properties: &Value,
    sealed: Option<&[u8]>,
    secrets: &SecretBox,
) -> Result<Value, CryptoError> {
    let mut merged = properties.clone();
    let Some(sealed) = sealed else {
        return Ok(merged);
    };
    let plain = secrets.decrypt(sealed)?;
    let taken: Map<String, Value> =
        serde_json::from_slice(&plain).map_err(|_| CryptoError::Undecryptable)?;
    if let Some(map) = merged.as_object_mut() {
        map.extend(taken);
    }
    Ok(merged)
}
