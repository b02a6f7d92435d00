//! A job's secrets: secret activity properties and the token pair of the user the workflow
//! runs as. The ingress moves them out of the job row into `job_secrets` (encrypted) before
//! anything is stored; the worker reads them back in memory. They are erased when the job ends.
//!
//! The sealed value is one JSON object: the secret properties under their own keys, and the
//! run-as token under [`RUN_AS_KEY`], which no property key can be (property keys match
//! `^[a-z][a-z0-9_]*$`, protocol.md §3.1). Jobs sealed before "run as" existed simply lack it.
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::crypto::{CryptoError, SecretBox};

/// Where the run-as token sits in the sealed object.
const RUN_AS_KEY: &str = "$run_as";

/// The token of the user a workflow runs as ("Запускать от имени"), from the activity
/// call's `auth[…]` (protocol.md §4), or as the OAuth server last rotated it.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunAs {
    /// `auth[user_id]`; unknown when the call did not say.
    pub user_id: Option<i64>,
    pub access_token: String,
    /// Absent when the call carried none: the token is then used until it expires.
    pub refresh_token: Option<String>,
    /// Unix time the access token expires (`auth[expires]`, or the call's time plus
    /// `auth[expires_in]`); `None` when the call said neither.
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for RunAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunAs")
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl RunAs {
    /// From the call's `auth[access_token|refresh_token|expires|expires_in|user_id]`;
    /// `None` without an access token. `now` is the unix time the call arrived.
    pub fn from_call(
        access_token: Option<&str>,
        refresh_token: Option<&str>,
        expires: Option<&str>,
        expires_in: Option<&str>,
        user_id: Option<&str>,
        now: i64,
    ) -> Option<Self> {
        let access_token = access_token.map(str::trim).filter(|t| !t.is_empty())?;
        let number = |v: Option<&str>| v.and_then(|v| v.trim().parse::<i64>().ok());
        let expires_at = number(expires)
            .filter(|e| *e > 0)
            .or_else(|| number(expires_in).map(|s| now.saturating_add(s.max(0))));
        Some(Self {
            user_id: number(user_id).filter(|u| *u > 0),
            access_token: access_token.to_string(),
            refresh_token: refresh_token
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            expires_at,
        })
    }
}

/// Removes the properties named by `secret_keys` (the catalogue's secret flags,
/// `catalogue::Codes::secret_properties`) from `properties` and seals them with the run-as
/// token; `None` when there is nothing to keep.
pub fn split_secrets(
    properties: &mut Value,
    secret_keys: &[&str],
    run_as: Option<&RunAs>,
    secrets: &SecretBox,
) -> Option<Vec<u8>> {
    let mut taken = Map::new();
    if let Some(map) = properties.as_object_mut() {
        for key in secret_keys {
            if let Some(v) = map.remove(*key) {
                taken.insert((*key).to_string(), v);
            }
        }
    }
    if let Some(run_as) = run_as {
        taken.insert(
            RUN_AS_KEY.into(),
            serde_json::to_value(run_as).unwrap_or_default(),
        );
    }
    if taken.is_empty() {
        return None;
    }
    Some(seal(taken, secrets))
}

fn seal(taken: Map<String, Value>, secrets: &SecretBox) -> Vec<u8> {
    let plain = serde_json::to_vec(&Value::Object(taken)).unwrap_or_default();
    secrets.encrypt(&plain)
}

fn open(sealed: &[u8], secrets: &SecretBox) -> Result<Map<String, Value>, CryptoError> {
    let plain = secrets.decrypt(sealed)?;
    serde_json::from_slice(&plain).map_err(|_| CryptoError::Undecryptable)
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
    let mut taken = open(sealed, secrets)?;
    taken.remove(RUN_AS_KEY);
    if let Some(map) = merged.as_object_mut() {
        map.extend(taken);
    }
    Ok(merged)
}

/// The run-as token sealed with a job's secrets, if the call carried one.
pub fn run_as(sealed: Option<&[u8]>, secrets: &SecretBox) -> Result<Option<RunAs>, CryptoError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    match open(sealed, secrets)?.remove(RUN_AS_KEY) {
        None => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|_| CryptoError::Undecryptable),
    }
}

/// The same secrets sealed anew with a rotated run-as token.
pub fn with_run_as(
    sealed: &[u8],
    run_as: &RunAs,
    secrets: &SecretBox,
) -> Result<Vec<u8>, CryptoError> {
    let mut taken = open(sealed, secrets)?;
    taken.insert(
        RUN_AS_KEY.into(),
        serde_json::to_value(run_as).unwrap_or_default(),
    );
    Ok(seal(taken, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret_box() -> SecretBox {
        SecretBox::from_base64(&SecretBox::generate_key(), None).expect("key")
    }

    fn token() -> RunAs {
        RunAs::from_call(
            Some("access-1"),
            Some("refresh-1"),
            None,
            Some("3600"),
            Some("5"),
            1_000,
        )
        .expect("a token")
    }

    #[test]
    fn the_run_as_token_is_sealed_apart_from_the_properties() {
        let secrets = secret_box();
        let mut properties = json!({"smtp_password": "pw", "subject": "Hi"});
        let sealed = split_secrets(
            &mut properties,
            &["smtp_password"],
            Some(&token()),
            &secrets,
        )
        .expect("sealed");
        assert_eq!(properties, json!({"subject": "Hi"}));
        let merged = merge_secrets(&properties, Some(&sealed), &secrets).unwrap();
        assert_eq!(merged, json!({"subject": "Hi", "smtp_password": "pw"}));
        let run_as = run_as(Some(&sealed), &secrets).unwrap().expect("run as");
        assert_eq!(run_as, token());
        assert_eq!(run_as.expires_at, Some(4_600));
        assert_eq!(run_as.user_id, Some(5));
        assert!(!String::from_utf8_lossy(&sealed).contains("access-1"));
        assert!(!format!("{run_as:?}").contains("access-1"));
    }

    #[test]
    fn a_rotated_token_replaces_the_old_one_and_keeps_the_properties() {
        let secrets = secret_box();
        let mut properties = json!({"smtp_password": "pw"});
        let sealed = split_secrets(
            &mut properties,
            &["smtp_password"],
            Some(&token()),
            &secrets,
        )
        .unwrap();
        let rotated = RunAs {
            access_token: "access-2".into(),
            refresh_token: Some("refresh-2".into()),
            ..token()
        };
        let resealed = with_run_as(&sealed, &rotated, &secrets).unwrap();
        assert_eq!(run_as(Some(&resealed), &secrets).unwrap(), Some(rotated));
        let merged = merge_secrets(&json!({}), Some(&resealed), &secrets).unwrap();
        assert_eq!(merged, json!({"smtp_password": "pw"}));
    }

    #[test]
    fn secrets_sealed_before_run_as_existed_have_no_token() {
        let secrets = secret_box();
        let old = secrets.encrypt(br#"{"smtp_password":"pw"}"#);
        assert_eq!(run_as(Some(&old), &secrets).unwrap(), None);
        assert_eq!(run_as(None, &secrets).unwrap(), None);
        let mut nothing = json!({"subject": "Hi"});
        assert!(split_secrets(&mut nothing, &["smtp_password"], None, &secrets).is_none());
        assert!(RunAs::from_call(Some(" "), None, None, None, None, 0).is_none());
    }
}
