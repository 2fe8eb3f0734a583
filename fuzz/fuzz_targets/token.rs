//! Any bytes as an Authorization header value: extraction, decoding, verification and
//! claims must answer with a denial or an identity, never panic; and nothing but a
//! token signed with the configured secret may yield an identity.
#![no_main]

use jwt_guard::cache::TokenCache;
use jwt_guard::config;
use jwt_guard::guard::{Allowed, Request};
use jwt_guard::keys::KeySet;
use libfuzzer_sys::fuzz_target;

const CONFIG: &[u8] = br#"{
    "secret": "fuzz-secret-0123456789abcdef0123456789",
    "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "ed",
                        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},
    "require_exp": false
}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(settings) = config::parse(CONFIG, &|_| None) else {
        return;
    };
    let authorization = [data];
    let request = Request {
        method: b"GET",
        path: b"/api/alice/x",
        authorization: &authorization,
        has_origin: false,
        has_cors_request_method: false,
    };
    let mut cache = TokenCache::new(4);
    let result = settings
        .guard
        .check(&request, &KeySet::default(), &mut cache, 1_800_000_000);
    // Random input forging a signature would be a finding, not luck.
    assert!(
        !matches!(result, Ok(Allowed::User(_))),
        "fuzz input authenticated"
    );
});
