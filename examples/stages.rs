//! The core's stages timed with a plain loop, so that the same code runs natively and
//! as wasm32-wasip1 inside V8 (`make bench-wasm`), where criterion cannot run.
//! Prints one line per stage: the median over batches, in µs per operation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use jwt_guard::cache::TokenCache;
use jwt_guard::claims::ClaimsPolicy;
use jwt_guard::guard::{Guard, Request};
use jwt_guard::keys::{parse_jwks, Key, KeySet};
use jwt_guard::rules::Rules;
use jwt_guard::token;
use serde_json::json;

const SECRET: &[u8] = b"bench-secret-0123456789abcdef0123456789";
const NOW: u64 = 1_800_000_000;
const ED_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/unit/ed25519.pk8.der");
const ED_X: &str = include_str!("../tests/fixtures/unit/ed25519.x.txt");
const P256_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/unit/p256.pk8.der");
const P256_X: &str = include_str!("../tests/fixtures/unit/p256.x.txt");
const P256_Y: &str = include_str!("../tests/fixtures/unit/p256.y.txt");
const PATH: &[u8] = b"/api/Xo3mNqL8vR2sT5wY7zA1bC4dE6fG9hJ0/documents/42?view=full";

fn guard() -> Guard {
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed"},
        {"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "kid": "p256"},
    ]});
    let mut keys = parse_jwks(&jwks).unwrap().keys;
    keys.push(Key::from_secret(SECRET).unwrap());
    Guard {
        rules: Rules::default_rules(),
        keys: KeySet::new(keys),
        claims: ClaimsPolicy {
            issuers: vec!["https://auth.example.com".into()],
            audiences: vec!["https://auth.example.com".into()],
            require_exp: true,
            clock_skew: 60,
            user_claims: vec!["sub".into(), "user_id".into()],
        },
        max_token_bytes: 8192,
        allow_cors_preflight: true,
    }
}

fn token(alg: Algorithm) -> String {
    let claims = json!({
        "sub": "Xo3mNqL8vR2sT5wY7zA1bC4dE6fG9hJ0", "iat": NOW - 10, "exp": NOW + 890,
        "iss": "https://auth.example.com", "aud": "https://auth.example.com",
        "name": "Ada Lovelace", "email": "ada@example.com", "emailVerified": true,
    });
    let mut header = Header::new(alg);
    let key = match alg {
        Algorithm::EdDSA => {
            header.kid = Some("ed".into());
            EncodingKey::from_ed_der(ED_PRIVATE)
        }
        Algorithm::ES256 => {
            header.kid = Some("p256".into());
            EncodingKey::from_ec_der(P256_PRIVATE)
        }
        _ => EncodingKey::from_secret(SECRET).unwrap(),
    };
    encode(&header, &claims, &key).unwrap()
}

/// Median over 15 batches of `per_batch` calls, in µs per call.
fn time(name: &str, per_batch: u32, mut f: impl FnMut()) {
    let mut batches: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(per_batch)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    println!("{name:<32} {:>9.2} µs", batches[batches.len() / 2]);
}

fn main() {
    let guard = guard();
    let fetched = KeySet::default();
    let (hs, ed) = (token(Algorithm::HS256), token(Algorithm::EdDSA));
    let es = token(Algorithm::ES256);
    for (name, token, kid) in [
        ("signature eddsa", &ed, "ed"),
        ("signature es256", &es, "p256"),
    ] {
        let jws = token::decode(token).unwrap();
        time(name, 20, || {
            let key = guard
                .keys
                .verify(Some(kid), jws.alg, jws.signing_input, &jws.signature);
            black_box(key).unwrap();
        });
    }
    for (name, token, capacity) in [
        ("request hs256 uncached", &hs, 0),
        ("request eddsa uncached", &ed, 0),
        ("request cache hit", &ed, 16),
    ] {
        let authorization = format!("Bearer {token}");
        let authorization = [authorization.as_bytes()];
        let request = Request {
            method: b"GET",
            path: PATH,
            authorization: &authorization,
            has_origin: false,
            has_cors_request_method: false,
        };
        let mut cache = TokenCache::new(capacity);
        let per_batch = if token == &ed && capacity == 0 {
            50
        } else {
            2000
        };
        time(name, per_batch, || {
            let allowed = guard.check(black_box(&request), &fetched, &mut cache, NOW);
            black_box(allowed).unwrap();
        });
    }
}
