//! Property-based tests of the form decoder (issue 15): whatever a caller posts, decoding
//! ends in a value or an error, never a panic, and well-formed calls decode to what was
//! sent. The case count is fixed (PROPTEST_CASES overrides it for a longer run).
use b24flow_common::bitrix::form;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes that look like a form more often than random bytes would.
fn formish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"=".to_vec()),
        Just(b"&".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"%5B".to_vec()),
        Just(b"%5D".to_vec()),
        Just(b"%".to_vec()),
        Just(b"+".to_vec()),
        Just(b"properties".to_vec()),
        Just(b"0".to_vec()),
        "[a-z0-9_]{1,8}".prop_map(String::into_bytes),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    prop::collection::vec(piece, 0..64).prop_map(|parts| parts.concat())
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_decode_or_fail_cleanly(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(value) = form::decode(&body) {
            prop_assert!(value.is_object());
            let _ = form::str_at(&value, &["auth", "member_id"]);
        }
    }

    #[test]
    fn formish_bytes_decode_or_fail_cleanly(body in formish()) {
        if let Ok(value) = form::decode(&body) {
            prop_assert!(value.is_object());
            let _ = form::str_at(&value, &["properties", "to", "0"]);
        }
    }

    #[test]
    fn well_formed_calls_decode_to_what_was_sent(
        code in "[a-z_]{1,20}",
        token in "[A-Za-z0-9|._-]{1,60}",
        value in "\\PC{0,40}",
        list in prop::collection::vec("\\PC{0,12}", 1..5),
    ) {
        let mut body = format!(
            "code={}&event_token={}&properties%5Bsubject%5D={}",
            encode(&code), encode(&token), encode(&value)
        );
        for (i, item) in list.iter().enumerate() {
            body.push_str(&format!("&properties%5Bto%5D%5B{i}%5D={}", encode(item)));
        }
        let form = form::decode(body.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(form::str_at(&form, &["code"]), Some(code.as_str()));
        prop_assert_eq!(form::str_at(&form, &["event_token"]), Some(token.as_str()));
        prop_assert_eq!(form::str_at(&form, &["properties", "subject"]), Some(value.as_str()));
        let to = form["properties"]["to"].as_array().cloned().unwrap_or_default();
        prop_assert_eq!(to.len(), list.len());
        for (got, sent) in to.iter().zip(&list) {
            prop_assert_eq!(got.as_str(), Some(sent.as_str()));
        }
    }
}
