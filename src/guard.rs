//! The whole decision for one request: what the path needs, whether the token is
//! good, and whether its user is the one the path names.

use crate::cache::TokenCache;
use crate::claims::{ClaimsPolicy, Identity};
use crate::denial::Denial;
use crate::keys::{KeyMiss, KeySet};
use crate::rules::{Access, Rules};
use crate::{extract, path, token};

/// What the guard needs to know about a request; header values are raw bytes.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a [u8],
    /// The `:path` pseudo-header (origin-form target, query included).
    pub path: &'a [u8],
    /// Every `Authorization` header value, in order.
    pub authorization: &'a [&'a [u8]],
    /// Whether the request has an `Origin` header.
    pub has_origin: bool,
    /// Whether the request has an `Access-Control-Request-Method` header.
    pub has_cors_request_method: bool,
}

impl Request<'_> {
    fn is_cors_preflight(&self) -> bool {
        self.method == b"OPTIONS" && self.has_origin && self.has_cors_request_method
    }
}

/// What an allowed request carries upstream.
#[derive(Debug, Clone, PartialEq)]
pub enum Allowed {
    /// Let through without a token: a public path or a CORS preflight.
    Anonymous,
    /// Let through on a valid token for this identity.
    User(Identity),
}

/// Ready-to-use policy of one filter instance.
#[derive(Debug)]
pub struct Guard {
    pub rules: Rules,
    pub keys: KeySet,
    pub claims: ClaimsPolicy,
    /// Longest bearer token accepted, in bytes.
    pub max_token_bytes: usize,
    /// Whether CORS preflights pass without a token.
    pub allow_cors_preflight: bool,
}

impl Guard {
    /// Decides `request` at `now` (seconds since the epoch); `fetched` holds the keys
    /// of a remote JWKS, if one is configured, beside the configured ones, and `cache`
    /// the tokens this worker already verified. A cache belongs to one guard: a token
    /// found in it is taken as this guard's verdict on it.
    pub fn check(
        &self,
        request: &Request<'_>,
        fetched: &KeySet,
        cache: &mut TokenCache,
        now: u64,
    ) -> Result<Allowed, Denial> {
        let segments = path::segments(request.path)?;
        let access = self.rules.access(&segments);
        if access == Access::Public || (self.allow_cors_preflight && request.is_cors_preflight()) {
            return Ok(Allowed::Anonymous);
        }

        let credentials = extract::bearer_credentials(request.authorization)?;
        let identity = self.authenticate(credentials, fetched, cache, now)?;

        if let Access::User(owner) = access {
            if owner != identity.user.as_bytes() {
                return Err(Denial::UserMismatch);
            }
        }
        Ok(Allowed::User(identity))
    }

    /// The identity the bearer `credentials` prove: from the cache when they are a token
    /// verified before (its validity window checked again), else by [`Guard::verify`].
    ///
    /// The cache is asked before the credentials are checked to be a token: it holds
    /// only tokens that passed [`extract::token68`] and compares them byte for byte, so a
    /// hit is such a token, and a hit skips a scan of every byte of it.
    fn authenticate(
        &self,
        credentials: &[u8],
        fetched: &KeySet,
        cache: &mut TokenCache,
        now: u64,
    ) -> Result<Identity, Denial> {
        if cache.enabled() {
            if let Some(identity) = cache.get(credentials, now) {
                self.claims
                    .check_time(identity.expires, identity.not_before, now)?;
                return Ok(identity);
            }
        }
        let token = extract::token68(credentials, self.max_token_bytes)?;
        let identity = self.verify(token, fetched, now)?;
        if cache.enabled() {
            cache.insert(token, identity.clone());
        }
        Ok(identity)
    }

    /// Verifies a token's signature, with the configured keys or the `fetched` ones,
    /// and its claims.
    pub fn verify(&self, token: &str, fetched: &KeySet, now: u64) -> Result<Identity, Denial> {
        let jws = token::decode(token)?;
        let kid = jws.kid.as_deref();
        let configured = self
            .keys
            .verify(kid, jws.alg, jws.signing_input, &jws.signature);
        if configured.is_err() {
            let fetched = fetched.verify(kid, jws.alg, jws.signing_input, &jws.signature);
            match (configured, fetched) {
                (_, Ok(())) => {}
                (Err(KeyMiss::NoKey), Err(KeyMiss::NoKey)) => return Err(Denial::UnknownKey),
                _ => return Err(Denial::BadSignature),
            }
        }
        let claims = token::object(&jws.payload)?;
        self.claims.check(&claims, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{parse_jwks, Key};
    use crate::rules::Rules;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::{json, Value};

    const SECRET: &[u8] = b"unit-test-secret-0123456789abcdef";
    const NOW: u64 = 1_800_000_000;
    const ED_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/unit/ed25519.pk8.der");
    const ED_X: &str = include_str!("../tests/fixtures/unit/ed25519.x.txt");
    const P256_PRIVATE: &[u8] = include_bytes!("../tests/fixtures/unit/p256.pk8.der");
    const P256_X: &str = include_str!("../tests/fixtures/unit/p256.x.txt");
    const P256_Y: &str = include_str!("../tests/fixtures/unit/p256.y.txt");

    const P521_X: &str = include_str!("../tests/fixtures/unit/p521.x.txt");
    const P521_Y: &str = include_str!("../tests/fixtures/unit/p521.y.txt");
    // {"alg":"ES512","kid":"p521","typ":"JWT"} {"sub":"alice","exp":1800000900}
    const ES512_ALICE: &str = include_str!("../tests/fixtures/unit/es512.alice.jwt");

    fn guard() -> Guard {
        let jwks = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "ed"},
            {"kty": "EC", "crv": "P-256", "x": P256_X, "y": P256_Y, "kid": "ec"},
            {"kty": "EC", "crv": "P-521", "x": P521_X, "y": P521_Y, "kid": "p521"},
        ]});
        let mut keys = parse_jwks(&jwks).unwrap().keys;
        keys.push(Key::from_secret(SECRET).unwrap());
        Guard {
            rules: Rules::default_rules(),
            keys: KeySet::new(keys),
            claims: ClaimsPolicy {
                issuers: vec![],
                audiences: vec![],
                require_exp: true,
                clock_skew: 60,
                user_claims: vec!["sub".into(), "user_id".into()],
            },
            max_token_bytes: 8192,
            allow_cors_preflight: true,
        }
    }

    fn hs256(claims: Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap()
    }

    fn signed(alg: jsonwebtoken::Algorithm, kid: &str, claims: Value) -> String {
        let key = match alg {
            jsonwebtoken::Algorithm::EdDSA => EncodingKey::from_ed_der(ED_PRIVATE),
            _ => EncodingKey::from_ec_der(P256_PRIVATE),
        };
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        encode(&header, &claims, &key).unwrap()
    }

    fn alice() -> Value {
        json!({"sub": "alice", "exp": NOW + 900})
    }

    fn check(guard: &Guard, method: &str, path: &str, auth: &[&str]) -> Result<Allowed, Denial> {
        let auth: Vec<&[u8]> = auth.iter().map(|a| a.as_bytes()).collect();
        let request = Request {
            method: method.as_bytes(),
            path: path.as_bytes(),
            authorization: &auth,
            has_origin: false,
            has_cors_request_method: false,
        };
        guard.check(&request, &KeySet::default(), &mut TokenCache::new(0), NOW)
    }

    fn user_of(result: Result<Allowed, Denial>) -> Result<String, Denial> {
        match result? {
            Allowed::User(identity) => Ok(identity.user),
            Allowed::Anonymous => Ok("(anonymous)".into()),
        }
    }

    #[test]
    fn own_path_with_hs256_is_allowed() {
        let auth = format!("Bearer {}", hs256(alice()));
        assert_eq!(
            user_of(check(&guard(), "GET", "/api/alice/x", &[&auth])),
            Ok("alice".into())
        );
    }

    #[test]
    fn other_users_path_is_mismatch() {
        let auth = format!("Bearer {}", hs256(alice()));
        assert_eq!(
            check(&guard(), "GET", "/api/bob/x", &[&auth]),
            Err(Denial::UserMismatch)
        );
        assert_eq!(
            check(&guard(), "GET", "/API/bob", &[&auth]),
            Err(Denial::UserMismatch)
        );
        assert_eq!(
            check(&guard(), "GET", "/api/Alice", &[&auth]),
            Err(Denial::UserMismatch)
        );
    }

    #[test]
    fn eddsa_and_es256_tokens_verify_against_jwks() {
        for (alg, kid) in [
            (jsonwebtoken::Algorithm::EdDSA, "ed"),
            (jsonwebtoken::Algorithm::ES256, "ec"),
        ] {
            let auth = format!("Bearer {}", signed(alg, kid, alice()));
            assert_eq!(
                user_of(check(&guard(), "GET", "/api/alice", &[&auth])),
                Ok("alice".into())
            );
        }
    }

    #[test]
    fn es512_token_verifies_against_p521_key() {
        let auth = format!("Bearer {ES512_ALICE}");
        assert_eq!(
            user_of(check(&guard(), "GET", "/api/alice", &[&auth])),
            Ok("alice".into())
        );
    }

    #[test]
    fn es512_altered_signature_is_bad_signature() {
        let mut token = ES512_ALICE.to_owned();
        let last = if token.ends_with('A') { "B" } else { "A" };
        token.replace_range(token.len() - 3..token.len() - 2, last);
        let auth = format!("Bearer {token}");
        assert_eq!(
            check(&guard(), "GET", "/api/alice", &[&auth]),
            Err(Denial::BadSignature)
        );
    }

    #[test]
    fn kid_naming_no_key_is_unknown_key() {
        let auth = format!(
            "Bearer {}",
            signed(jsonwebtoken::Algorithm::EdDSA, "zz", alice())
        );
        assert_eq!(
            check(&guard(), "GET", "/x", &[&auth]),
            Err(Denial::UnknownKey)
        );
    }

    #[test]
    fn kid_of_another_keys_type_is_unknown_key() {
        let auth = format!(
            "Bearer {}",
            signed(jsonwebtoken::Algorithm::EdDSA, "ec", alice())
        );
        assert_eq!(
            check(&guard(), "GET", "/x", &[&auth]),
            Err(Denial::UnknownKey)
        );
    }

    #[test]
    fn hmac_signed_with_public_key_is_refused() {
        // Algorithm confusion: HS256 keyed with the bytes of the Ed25519 public key.
        let header = Header {
            kid: Some("ed".into()),
            ..Header::default()
        };
        let token = encode(
            &header,
            &alice(),
            &EncodingKey::from_secret(ED_X.as_bytes()).unwrap(),
        )
        .unwrap();
        let auth = format!("Bearer {token}");
        assert_eq!(
            check(&guard(), "GET", "/x", &[&auth]),
            Err(Denial::BadSignature)
        );
    }

    #[test]
    fn hs512_with_hs256_secret_is_unknown_key() {
        let header = Header::new(jsonwebtoken::Algorithm::HS512);
        let token = encode(
            &header,
            &alice(),
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap();
        let auth = format!("Bearer {token}");
        assert_eq!(
            check(&guard(), "GET", "/x", &[&auth]),
            Err(Denial::UnknownKey)
        );
    }

    #[test]
    fn altered_payload_is_bad_signature() {
        let token = hs256(alice());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(json!({"sub": "bob", "exp": NOW + 900}).to_string());
        let auth = format!("Bearer {}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(
            check(&guard(), "GET", "/api/bob", &[&auth]),
            Err(Denial::BadSignature)
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let auth = format!(
            "Bearer {}",
            hs256(json!({"sub": "alice", "exp": NOW - 3600}))
        );
        assert_eq!(
            check(&guard(), "GET", "/api/alice", &[&auth]),
            Err(Denial::TokenExpired)
        );
    }

    #[test]
    fn duplicate_sub_is_malformed() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        let payload = URL_SAFE_NO_PAD.encode(r#"{"sub":"alice","sub":"bob","exp":1900000000}"#);
        let input = format!("{header}.{payload}");
        let sig = jsonwebtoken::crypto::sign(
            input.as_bytes(),
            &EncodingKey::from_secret(SECRET).unwrap(),
            jsonwebtoken::Algorithm::HS256,
        )
        .unwrap();
        let auth = format!("Bearer {input}.{sig}");
        assert_eq!(
            check(&guard(), "GET", "/api/bob", &[&auth]),
            Err(Denial::MalformedToken)
        );
    }

    #[test]
    fn public_path_and_preflight_need_no_token() {
        let mut g = guard();
        g.rules = Rules::new(vec![
            crate::rules::Rule::new("/public/**", Require::Public).unwrap()
        ]);
        assert_eq!(check(&g, "GET", "/public/a", &[]), Ok(Allowed::Anonymous));
        assert_eq!(
            check(&g, "GET", "/api/alice", &[]),
            Err(Denial::MissingToken)
        );

        let preflight = Request {
            method: b"OPTIONS",
            path: b"/api/alice",
            authorization: &[],
            has_origin: true,
            has_cors_request_method: true,
        };
        assert_eq!(
            g.check(&preflight, &KeySet::default(), &mut TokenCache::new(0), NOW),
            Ok(Allowed::Anonymous)
        );
        g.allow_cors_preflight = false;
        assert_eq!(
            g.check(&preflight, &KeySet::default(), &mut TokenCache::new(0), NOW),
            Err(Denial::MissingToken)
        );
        let plain_options = Request {
            has_origin: false,
            ..preflight
        };
        assert_eq!(
            guard().check(
                &plain_options,
                &KeySet::default(),
                &mut TokenCache::new(0),
                NOW
            ),
            Err(Denial::MissingToken)
        );
    }

    fn check_cached(
        guard: &Guard,
        cache: &mut TokenCache,
        path: &str,
        token: &str,
        now: u64,
    ) -> Result<Allowed, Denial> {
        let auth = format!("Bearer {token}");
        let authorization = [auth.as_bytes()];
        let request = Request {
            method: b"GET",
            path: path.as_bytes(),
            authorization: &authorization,
            has_origin: false,
            has_cors_request_method: false,
        };
        guard.check(&request, &KeySet::default(), cache, now)
    }

    #[test]
    fn cached_token_skips_signature_but_not_binding_or_expiry() {
        let mut cache = TokenCache::new(8);
        let token = hs256(alice());
        let first = check_cached(&guard(), &mut cache, "/api/alice", &token, NOW);
        assert_eq!(user_of(first), Ok("alice".into()));
        assert_eq!(cache.len(), 1);

        // A guard without any key still accepts the cached token: no signature check.
        let keyless = Guard {
            keys: KeySet::default(),
            ..guard()
        };
        let again = check_cached(&keyless, &mut cache, "/api/alice/x", &token, NOW + 1);
        assert_eq!(user_of(again), Ok("alice".into()));
        // The path binding is decided every time.
        let other = check_cached(&keyless, &mut cache, "/api/bob", &token, NOW + 1);
        assert_eq!(other, Err(Denial::UserMismatch));
        // And the entry dies with the token.
        let late = check_cached(&keyless, &mut cache, "/api/alice", &token, NOW + 900 + 61);
        assert_eq!(late, Err(Denial::UnknownKey));
    }

    #[test]
    fn warm_cache_still_refuses_what_is_not_a_token() {
        let mut cache = TokenCache::new(8);
        let token = hs256(alice());
        let first = check_cached(&guard(), &mut cache, "/api/alice", &token, NOW);
        assert_eq!(user_of(first), Ok("alice".into()));
        for bad in [
            format!("{token},"),
            format!("{token} {token}"),
            format!("{token}\u{e9}"),
            format!("{token}\u{0}"),
            String::new(),
        ] {
            assert_eq!(
                check_cached(&guard(), &mut cache, "/api/alice", &bad, NOW),
                Err(Denial::InvalidAuthorization)
            );
        }
        let too_long = format!("{token}{}", "A".repeat(8192));
        assert_eq!(
            check_cached(&guard(), &mut cache, "/api/alice", &too_long, NOW),
            Err(Denial::TokenTooLarge)
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn failed_tokens_are_not_cached() {
        let mut cache = TokenCache::new(8);
        let token = hs256(json!({"sub": "alice", "exp": NOW - 3600}));
        let result = check_cached(&guard(), &mut cache, "/api/alice", &token, NOW);
        assert_eq!(result, Err(Denial::TokenExpired));
        assert!(cache.is_empty());
    }

    #[test]
    fn ambiguous_path_is_refused_before_the_token() {
        assert_eq!(
            check(&guard(), "GET", "/api/alice/../bob", &[]),
            Err(Denial::AmbiguousPath)
        );
    }

    use crate::rules::Require;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// A token for `user` never opens a path whose user segment, as the upstream
        /// decodes it, names someone else.
        #[test]
        fn token_never_authorises_another_users_segment(
            user in "[a-zA-Z0-9_-]{1,12}",
            prefix in prop::sample::select(vec!["api", "API", "Api", "%61pi", "%41PI"]),
            segment in "([a-zA-Z0-9._~-]|%[0-9a-fA-F]{2}|/|\\\\|;|%25){0,16}",
            tail in "(/[a-z.%0-9]{0,4}){0,3}",
        ) {
            let g = guard();
            let auth = format!("Bearer {}", hs256(json!({"sub": user.clone(), "exp": NOW + 900})));
            let path = format!("/{prefix}/{segment}{tail}");
            if let Ok(Allowed::User(identity)) = check(&g, "GET", &path, &[&auth]) {
                prop_assert_eq!(&identity.user, &user);
                // What an upstream decoding once would take as the user segment:
                let raw = path.split('/').nth(2).unwrap_or_default();
                let decoded = percent_encoding::percent_decode_str(raw).collect::<Vec<u8>>();
                let segs = crate::path::segments(path.as_bytes()).unwrap();
                if segs.len() >= 2 {
                    prop_assert_eq!(decoded, user.as_bytes().to_vec());
                }
            }
        }
    }
}
