//! The app page's cross-site request guard: each action form carries a token that only this
//! server can make (sealed with the secret key) and that is bound to the portal, to the
//! admin's `AUTH_ID` of this page view, and to an expiry.
use b24flow_common::crypto::SecretBox;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use subtle::ConstantTimeEq;

/// A page stays usable for this long; Bitrix24's `AUTH_ID` lives an hour.
const LIFETIME_SECS: i64 = 3600;

pub fn issue(secrets: &SecretBox, member_id: &str, auth_id: &str) -> String {
    let expires = chrono::Utc::now().timestamp() + LIFETIME_SECS;
    B64.encode(secrets.encrypt(format!("{expires}\n{member_id}\n{auth_id}").as_bytes()))
}

pub fn verify(secrets: &SecretBox, token: &str, member_id: &str, auth_id: &str) -> bool {
    let Ok(sealed) = B64.decode(token) else {
        return false;
    };
    let Ok(plain) = secrets.decrypt(&sealed) else {
        return false;
    };
    let Ok(plain) = String::from_utf8(plain) else {
        return false;
    };
    let mut parts = plain.splitn(3, '\n');
    let (Some(expires), Some(member), Some(auth)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let fresh = expires
        .parse::<i64>()
        .is_ok_and(|e| e >= chrono::Utc::now().timestamp());
    let same = bool::from(member.as_bytes().ct_eq(member_id.as_bytes()))
        & bool::from(auth.as_bytes().ct_eq(auth_id.as_bytes()));
    fresh && same
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_bound_to_its_portal_and_page_view() {
        let secrets = SecretBox::from_base64(&SecretBox::generate_key(), None).unwrap();
        let token = issue(&secrets, "m1", "auth1");
        assert!(verify(&secrets, &token, "m1", "auth1"));
        assert!(!verify(&secrets, &token, "m2", "auth1"));
        assert!(!verify(&secrets, &token, "m1", "auth2"));
        assert!(!verify(&secrets, "forged", "m1", "auth1"));
        let other = SecretBox::from_base64(&SecretBox::generate_key(), None).unwrap();
        assert!(!verify(&other, &token, "m1", "auth1"));
    }
}
