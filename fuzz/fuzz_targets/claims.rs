//! Any bytes as the payload of a correctly signed HS256 token: claim parsing and
//! checking never panic, and an identity is only ever the string the first user claim
//! present holds.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use jwt_guard::config;
use jwt_guard::keys::KeySet;
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789";

fuzz_target!(|payload: &[u8]| {
    let config = format!(r#"{{"secret":"{SECRET}","require_exp":false}}"#);
    let Ok(settings) = config::parse(config.as_bytes(), &|_| None) else {
        return;
    };

    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()) else {
        return;
    };
    mac.update(input.as_bytes());
    let token = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );

    if let Ok(identity) = settings
        .guard
        .verify(&token, &KeySet::default(), 1_800_000_000)
    {
        let claims: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
        let first = ["sub", "user_id"].iter().find_map(|name| claims.get(name));
        assert_eq!(first.and_then(|v| v.as_str()), Some(identity.user.as_str()));
        assert!(!identity.user.is_empty());
    }
});
