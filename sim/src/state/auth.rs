//! OAuth tokens of one portal (protocol.md §2): access tokens with a lifetime, refresh tokens
//! that rotate on use, and the cloud-wide record of every token ever issued, so a token of
//! another portal is told apart from one that never existed.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;

/// The scopes every token carries (comma-separated, as in every capture, §8.6).
pub(crate) const SCOPE: &str = "crm,bizproc,user,department,disk,calendar,telephony,placement";

/// Every token any portal of one cloud issued.
#[derive(Default)]
pub(crate) struct IssuedTokens(Mutex<HashSet<String>>);

impl IssuedTokens {
    pub fn add(&self, token: &str) {
        self.0.lock().unwrap().insert(token.to_string());
    }
    pub fn contains(&self, token: &str) -> bool {
        self.0.lock().unwrap().contains(token)
    }
}

/// A freshly issued access/refresh pair.
#[derive(Clone, Debug)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix time the access token expires.
    pub expires: u64,
    pub expires_in: u64,
    pub user_id: u64,
}

struct AccessToken {
    user_id: u64,
    expires_at: SystemTime,
}

/// Why a presented access token is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenError {
    Unknown,
    Expired,
}

#[derive(Default)]
pub(crate) struct TokenStore {
    access: HashMap<String, AccessToken>,
    /// refresh token -> user id
    refresh: HashMap<String, u64>,
}

pub(crate) fn random_hex(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenStore {
    pub fn issue(&mut self, user_id: u64, ttl: Duration, registry: &IssuedTokens) -> TokenPair {
        // Real tokens are 70-odd hex characters with no visible structure.
        let access_token = random_hex(70);
        let refresh_token = random_hex(70);
        let expires_at = SystemTime::now() + ttl;
        self.access.insert(
            access_token.clone(),
            AccessToken {
                user_id,
                expires_at,
            },
        );
        self.refresh.insert(refresh_token.clone(), user_id);
        registry.add(&access_token);
        registry.add(&refresh_token);
        TokenPair {
            expires: expires_at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            expires_in: ttl.as_secs(),
            access_token,
            refresh_token,
            user_id,
        }
    }

    /// The user behind a live access token.
    pub fn check(&self, token: &str) -> Result<u64, TokenError> {
        match self.access.get(token) {
            None => Err(TokenError::Unknown),
            Some(t) if t.expires_at <= SystemTime::now() => Err(TokenError::Expired),
            Some(t) => Ok(t.user_id),
        }
    }

    /// Spends `refresh_token` and issues a new pair for the same user; the old refresh token
    /// is gone afterwards (protocol.md §2: "replace the stored one").
    pub fn refresh(
        &mut self,
        refresh_token: &str,
        ttl: Duration,
        registry: &IssuedTokens,
    ) -> Option<TokenPair> {
        let user_id = self.refresh.remove(refresh_token)?;
        Some(self.issue(user_id, ttl, registry))
    }

    pub fn knows_refresh(&self, refresh_token: &str) -> bool {
        self.refresh.contains_key(refresh_token)
    }

    pub fn expire_all(&mut self) {
        let past = SystemTime::now() - Duration::from_secs(1);
        for t in self.access.values_mut() {
            t.expires_at = past;
        }
    }

    /// Uninstall: API access ends at once; refresh tokens stay known so the OAuth server
    /// can say `invalid_client` (app not installed) instead of `invalid_grant`.
    pub fn revoke_access(&mut self) {
        self.access.clear();
    }

    pub fn revoke_all(&mut self) {
        self.access.clear();
        self.refresh.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_token_works_once() {
        let registry = IssuedTokens::default();
        let mut store = TokenStore::default();
        let pair = store.issue(7, Duration::from_secs(60), &registry);
        assert_eq!(store.check(&pair.access_token), Ok(7));
        let next = store
            .refresh(&pair.refresh_token, Duration::from_secs(60), &registry)
            .unwrap();
        assert_eq!(next.user_id, 7);
        assert!(store
            .refresh(&pair.refresh_token, Duration::from_secs(60), &registry)
            .is_none());
        store.expire_all();
        assert_eq!(store.check(&next.access_token), Err(TokenError::Expired));
    }
}
