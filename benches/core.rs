//! Host micro-benchmark of the core's stages: `cargo bench --bench core`.
//! (Native code; inside Envoy's V8 the same work costs several times more, see
//! `make bench` for the figures that matter to users.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use jwt_guard::cache::TokenCache;
use jwt_guard::claims::ClaimsPolicy;
use jwt_guard::guard::{Guard, Request};
use jwt_guard::keys::{parse_jwks, Key, KeySet};
use jwt_guard::rules::Rules;
use jwt_guard::{extract, path, token};
use serde_json::json;

const SECRET: &[u8] = b"bench-secret-0123456789abcdef0123456789";
const NOW: u64 = 1_800_000_000;
const ED_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/unit/ed25519.pk8.der");
const ED_X: &str = include_str!("../tests/fixtures/unit/ed25519.x.txt");

fn guard() -> Guard {
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed"}]});
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

/// A Better Auth–shaped payload: registered claims plus the user object.
fn claims() -> serde_json::Value {
    json!({
        "sub": "Xo3mNqL8vR2sT5wY7zA1bC4dE6fG9hJ0", "iat": NOW - 10, "exp": NOW + 890,
        "iss": "https://auth.example.com", "aud": "https://auth.example.com",
        "id": "Xo3mNqL8vR2sT5wY7zA1bC4dE6fG9hJ0", "name": "Ada Lovelace",
        "email": "ada@example.com", "emailVerified": true,
        "createdAt": "2026-12-01T10:00:00.000Z", "updatedAt": "2026-12-01T10:00:00.000Z"
    })
}

fn tokens() -> (String, String) {
    let hs = encode(
        &Header::default(),
        &claims(),
        &EncodingKey::from_secret(SECRET).unwrap(),
    );
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed".into());
    let ed = encode(&header, &claims(), &EncodingKey::from_ed_der(ED_PRIVATE));
    (hs.unwrap(), ed.unwrap())
}

fn stages(c: &mut Criterion) {
    let guard = guard();
    let (hs, ed) = tokens();
    let header = format!("Bearer {hs}");
    let path_bytes = b"/api/Xo3mNqL8vR2sT5wY7zA1bC4dE6fG9hJ0/documents/42?view=full";

    c.bench_function("extract bearer", |b| {
        b.iter(|| extract::bearer_token(black_box(&[header.as_bytes()]), 8192).unwrap())
    });
    c.bench_function("decode jws", |b| {
        b.iter(|| token::decode(black_box(&hs)).unwrap())
    });

    let hs_jws = token::decode(&hs).unwrap();
    let ed_jws = token::decode(&ed).unwrap();
    c.bench_function("signature hs256", |b| {
        b.iter(|| {
            guard
                .keys
                .verify(None, hs_jws.alg, hs_jws.signing_input, &hs_jws.signature)
        })
    });
    c.bench_function("signature eddsa", |b| {
        b.iter(|| {
            guard.keys.verify(
                Some("ed"),
                ed_jws.alg,
                ed_jws.signing_input,
                &ed_jws.signature,
            )
        })
    });
    c.bench_function("claims parse and check", |b| {
        b.iter(|| {
            let claims = token::object(black_box(&hs_jws.payload)).unwrap();
            guard.claims.check(&claims, NOW).unwrap()
        })
    });
    c.bench_function("path canonicalise and match", |b| {
        b.iter(|| {
            let segments = path::segments(black_box(path_bytes)).unwrap();
            matches!(
                guard.rules.access(&segments),
                jwt_guard::rules::Access::User(_)
            )
        })
    });

    for (name, token, cache) in [
        ("request hs256 uncached", &hs, 0),
        ("request eddsa uncached", &ed, 0),
        ("request cached", &ed, 16),
    ] {
        let auth = format!("Bearer {token}");
        let authorization = [auth.as_bytes()];
        let request = Request {
            method: b"GET",
            path: path_bytes,
            authorization: &authorization,
            has_origin: false,
            has_cors_request_method: false,
        };
        let mut cache = TokenCache::new(cache);
        let fetched = KeySet::default();
        c.bench_function(name, |b| {
            b.iter(|| {
                guard
                    .check(black_box(&request), &fetched, &mut cache, NOW)
                    .unwrap()
            })
        });
    }
}

criterion_group!(benches, stages);
criterion_main!(benches);
