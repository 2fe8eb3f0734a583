//! Verification keys: the shared secret and JWKS keys, each bound to the algorithms
//! it may verify, parsed once into ready verifiers.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use rsa::{pkcs1v15, pss, BoxedUint};
use serde::Deserialize;

use crate::json;
use sha2::{Sha256, Sha384, Sha512};

/// A JWS algorithm this filter can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Hs256,
    Hs384,
    Hs512,
    Es256,
    Es384,
    Es512,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    EdDsa,
}

const RSA_ALGS: [Alg; 6] = [
    Alg::Rs256,
    Alg::Rs384,
    Alg::Rs512,
    Alg::Ps256,
    Alg::Ps384,
    Alg::Ps512,
];
const HMAC_ALGS: [Alg; 3] = [Alg::Hs256, Alg::Hs384, Alg::Hs512];

impl Alg {
    /// Parses a JOSE `alg` value; the match is exact, as RFC 7515 requires.
    pub fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "ES512" => Alg::Es512,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }
}

/// Why a key could not be used. `member` names the JWK member at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub member: &'static str,
    pub reason: String,
}

impl KeyError {
    fn new(member: &'static str, reason: impl Into<String>) -> KeyError {
        KeyError {
            member,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.member, self.reason)
    }
}

/// A ready signature verifier: key material parsed once, bound to one algorithm.
enum Verifier {
    Hs256(Hmac<Sha256>),
    Hs384(Hmac<Sha384>),
    Hs512(Hmac<Sha512>),
    EdDsa(ed25519_dalek::VerifyingKey),
    Es256(p256::ecdsa::VerifyingKey),
    Es384(p384::ecdsa::VerifyingKey),
    Es512(p521::ecdsa::VerifyingKey),
    Rs256(pkcs1v15::VerifyingKey<Sha256>),
    Rs384(pkcs1v15::VerifyingKey<Sha384>),
    Rs512(pkcs1v15::VerifyingKey<Sha512>),
    Ps256(pss::VerifyingKey<Sha256>),
    Ps384(pss::VerifyingKey<Sha384>),
    Ps512(pss::VerifyingKey<Sha512>),
}

impl Verifier {
    /// Whether `signature` (the JWS encoding for this algorithm) signs `message`.
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        fn hmac<M: Mac + Clone>(mac: &M, message: &[u8], signature: &[u8]) -> bool {
            let mut mac = mac.clone();
            mac.update(message);
            mac.verify_slice(signature).is_ok() // constant time
        }
        fn check<S, V>(key: &V, message: &[u8], signature: &[u8]) -> bool
        where
            S: for<'a> TryFrom<&'a [u8]>,
            V: signature::Verifier<S>,
        {
            S::try_from(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
        }

        match self {
            Verifier::Hs256(mac) => hmac(mac, message, signature),
            Verifier::Hs384(mac) => hmac(mac, message, signature),
            Verifier::Hs512(mac) => hmac(mac, message, signature),
            // RFC 8032 verification (s must be canonical; R is compared as encoded).
            // `verify_strict` would also decompress R to refuse small-order points, which
            // matters for weak keys only: `parse` refuses those up front.
            Verifier::EdDsa(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| signature::Verifier::verify(key, message, &sig).is_ok()),
            Verifier::Es256(key) => check::<p256::ecdsa::Signature, _>(key, message, signature),
            Verifier::Es384(key) => check::<p384::ecdsa::Signature, _>(key, message, signature),
            Verifier::Es512(key) => check::<p521::ecdsa::Signature, _>(key, message, signature),
            Verifier::Rs256(key) => check::<pkcs1v15::Signature, _>(key, message, signature),
            Verifier::Rs384(key) => check::<pkcs1v15::Signature, _>(key, message, signature),
            Verifier::Rs512(key) => check::<pkcs1v15::Signature, _>(key, message, signature),
            Verifier::Ps256(key) => check::<pss::Signature, _>(key, message, signature),
            Verifier::Ps384(key) => check::<pss::Signature, _>(key, message, signature),
            Verifier::Ps512(key) => check::<pss::Signature, _>(key, message, signature),
        }
    }
}

/// The public material of a key, checked, before verifiers are built from it.
enum Material {
    Secret(Vec<u8>),
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Rsa(rsa::PublicKey),
}

/// One verification key with a ready verifier per algorithm it may verify.
pub struct Key {
    kid: Option<String>,
    verifiers: Vec<(Alg, Verifier)>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key material never prints; the kid is public (it travels in every token).
        let algs: Vec<Alg> = self.verifiers.iter().map(|(alg, _)| *alg).collect();
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algs", &algs)
            .finish()
    }
}

impl Key {
    /// An HS256 key from a shared secret such as `BETTER_AUTH_SECRET`.
    pub fn from_secret(secret: &[u8]) -> Result<Key, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::new("secret", "must not be empty"));
        }
        let verifier = verifier(&Material::Secret(secret.to_vec()), Alg::Hs256)?;
        Ok(Key {
            kid: None,
            verifiers: vec![(Alg::Hs256, verifier)],
        })
    }

    /// Whether this key verifies `alg`.
    pub fn verifies(&self, alg: Alg) -> bool {
        self.verifiers.iter().any(|(a, _)| *a == alg)
    }

    /// The key id, if the key has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Checks `signature` over `message` with this key's verifier for `alg`.
    pub fn check(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        self.verifiers
            .iter()
            .any(|(a, v)| *a == alg && v.verify(message, signature))
    }
}

/// What parsing a JWKS produced: usable keys, and one note per key it skipped.
#[derive(Debug, Default)]
pub struct ParsedJwks {
    pub keys: Vec<Key>,
    pub skipped: Vec<String>,
}

/// Why a JWKS document as a whole was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    /// Where in the document: `keys`, or `keys[2].x`.
    pub location: String,
    pub reason: String,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.reason)
    }
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// The members of a JWK this filter reads; others (`key_ops`, `x5c`, …) are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    k: Option<String>,
}

/// Parses a JWKS document. Keys of a type or use this filter does not verify with are
/// skipped with a note; a key of a supported type with bad material refuses the set.
pub fn parse_jwks(document: &serde_json::Value) -> Result<ParsedJwks, JwksError> {
    let raw = RawJwks::deserialize(document).map_err(|e| JwksError {
        location: "keys".into(),
        reason: json::describe(&e),
    })?;

    let mut parsed = ParsedJwks::default();
    for (index, value) in raw.keys.iter().enumerate() {
        let jwk = RawJwk::deserialize(value).map_err(|e| JwksError {
            location: format!("keys[{index}]"),
            reason: json::describe(&e),
        })?;
        match key_from_jwk(&jwk) {
            Ok(Some(key)) => parsed.keys.push(key),
            Ok(None) => parsed
                .skipped
                .push(format!("keys[{index}]: {}", skip_reason(&jwk))),
            Err(e) => {
                return Err(JwksError {
                    location: format!("keys[{index}].{}", e.member),
                    reason: e.reason,
                })
            }
        }
    }
    Ok(parsed)
}

fn skip_reason(jwk: &RawJwk) -> String {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return "not a signing key (use)".into();
    }
    format!("unsupported key type or algorithm (kty {})", jwk.kty)
}

/// Builds a key from one JWK; `Ok(None)` means a key this filter does not use.
fn key_from_jwk(jwk: &RawJwk) -> Result<Option<Key>, KeyError> {
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let declared = match jwk.alg.as_deref() {
        None => None,
        Some(name) => match Alg::from_name(name) {
            Some(alg) => Some(alg),
            None => return Ok(None),
        },
    };

    let (material, family): (Material, &[Alg]) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("OKP", Some("Ed25519")) => {
            let x = member(&jwk.x, "x", Some(32))?;
            let bytes: [u8; 32] = x.try_into().map_err(|_| KeyError::new("x", "32 bytes"))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .ok()
                .filter(|key| !key.is_weak())
                .ok_or_else(|| KeyError::new("x", "not an Ed25519 public key of full order"))?;
            (Material::Ed25519(key), &[Alg::EdDsa])
        }
        ("EC", Some("P-256")) => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(jwk, 32)?)
                .map_err(|_| KeyError::new("x", "not a point on P-256"))?;
            (Material::P256(key), &[Alg::Es256])
        }
        ("EC", Some("P-384")) => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(jwk, 48)?)
                .map_err(|_| KeyError::new("x", "not a point on P-384"))?;
            (Material::P384(key), &[Alg::Es384])
        }
        ("EC", Some("P-521")) => {
            let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(jwk, 66)?)
                .map_err(|_| KeyError::new("x", "not a point on P-521"))?;
            (Material::P521(key), &[Alg::Es512])
        }
        ("RSA", _) => {
            let n = member(&jwk.n, "n", None)?;
            let e = member(&jwk.e, "e", None)?;
            let bits = significant_bits(&n);
            if !(2048..=8192).contains(&bits) {
                return Err(KeyError::new(
                    "n",
                    format!("RSA modulus of {bits} bits; 2048 to 8192 accepted"),
                ));
            }
            if e.is_empty() || e.len() > 8 {
                return Err(KeyError::new("e", "not a usable RSA exponent"));
            }
            let key = rsa::PublicKey::new_with_size_limits(
                BoxedUint::from_be_slice_vartime(&n),
                BoxedUint::from_be_slice_vartime(&e),
                2048..=8192,
            )
            .map_err(|_| KeyError::new("e", "not a valid RSA public key"))?;
            (Material::Rsa(key), &RSA_ALGS)
        }
        ("oct", _) => {
            let k = member(&jwk.k, "k", None)?;
            if k.is_empty() {
                return Err(KeyError::new("k", "must not be empty"));
            }
            // Without an `alg`, an HMAC key verifies HS256 only.
            (Material::Secret(k), &HMAC_ALGS[..1])
        }
        _ => return Ok(None),
    };

    let algs: Vec<Alg> = match declared {
        Some(alg) if jwk.kty == "oct" && HMAC_ALGS.contains(&alg) => vec![alg],
        Some(alg) if family.contains(&alg) => vec![alg],
        Some(_) => return Err(KeyError::new("alg", "does not fit the key type")),
        None => family.to_vec(),
    };

    let mut verifiers = Vec::with_capacity(algs.len());
    for alg in algs {
        verifiers.push((alg, verifier(&material, alg)?));
    }
    Ok(Some(Key {
        kid: jwk.kid.clone(),
        verifiers,
    }))
}

/// The uncompressed SEC1 point `04 || x || y` of an EC JWK.
fn ec_point(jwk: &RawJwk, coordinate_len: usize) -> Result<Vec<u8>, KeyError> {
    let x = member(&jwk.x, "x", Some(coordinate_len))?;
    let y = member(&jwk.y, "y", Some(coordinate_len))?;
    let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(point)
}

/// Decodes a base64url JWK member, optionally of an exact length in bytes.
fn member(
    value: &Option<String>,
    name: &'static str,
    len: Option<usize>,
) -> Result<Vec<u8>, KeyError> {
    let text = value
        .as_deref()
        .ok_or_else(|| KeyError::new(name, "missing"))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| KeyError::new(name, "not unpadded base64url"))?;
    match len {
        Some(len) if bytes.len() != len => Err(KeyError::new(
            name,
            format!("{} bytes, {len} expected", bytes.len()),
        )),
        _ => Ok(bytes),
    }
}

fn significant_bits(big_endian: &[u8]) -> usize {
    match big_endian.iter().position(|&b| b != 0) {
        None => 0,
        Some(i) => (big_endian.len() - i) * 8 - big_endian[i].leading_zeros() as usize,
    }
}

/// Builds the verifier for `alg` from checked material of the matching type.
fn verifier(material: &Material, alg: Alg) -> Result<Verifier, KeyError> {
    let mismatch = || KeyError::new("alg", "does not fit the key type");
    let hmac_key = || KeyError::new("k", "not a usable HMAC key");
    Ok(match (material, alg) {
        (Material::Secret(k), Alg::Hs256) => {
            Verifier::Hs256(Hmac::new_from_slice(k).map_err(|_| hmac_key())?)
        }
        (Material::Secret(k), Alg::Hs384) => {
            Verifier::Hs384(Hmac::new_from_slice(k).map_err(|_| hmac_key())?)
        }
        (Material::Secret(k), Alg::Hs512) => {
            Verifier::Hs512(Hmac::new_from_slice(k).map_err(|_| hmac_key())?)
        }
        (Material::Ed25519(key), Alg::EdDsa) => Verifier::EdDsa(*key),
        (Material::P256(key), Alg::Es256) => Verifier::Es256(*key),
        (Material::P384(key), Alg::Es384) => Verifier::Es384(*key),
        (Material::P521(key), Alg::Es512) => Verifier::Es512(*key),
        (Material::Rsa(key), Alg::Rs256) => {
            Verifier::Rs256(pkcs1v15::VerifyingKey::new(key.clone()))
        }
        (Material::Rsa(key), Alg::Rs384) => {
            Verifier::Rs384(pkcs1v15::VerifyingKey::new(key.clone()))
        }
        (Material::Rsa(key), Alg::Rs512) => {
            Verifier::Rs512(pkcs1v15::VerifyingKey::new(key.clone()))
        }
        (Material::Rsa(key), Alg::Ps256) => Verifier::Ps256(pss::VerifyingKey::new(key.clone())),
        (Material::Rsa(key), Alg::Ps384) => Verifier::Ps384(pss::VerifyingKey::new(key.clone())),
        (Material::Rsa(key), Alg::Ps512) => Verifier::Ps512(pss::VerifyingKey::new(key.clone())),
        _ => return Err(mismatch()),
    })
}

/// The keys a filter instance verifies with.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// Why no key accepted a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMiss {
    /// No key matches the token's `kid` and `alg`.
    NoKey,
    /// Candidate keys exist, and none verifies the signature.
    BadSignature,
}

impl KeySet {
    /// A key set holding `keys`.
    pub fn new(keys: Vec<Key>) -> KeySet {
        KeySet { keys }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether some key carries exactly this `kid`.
    pub fn knows_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// Verifies `signature` over `message`. A token `kid` selects keys with that kid
    /// (keys without a kid remain candidates); a key is only tried for an algorithm
    /// it was configured for, so the token's `alg` can never pick a key's type.
    pub fn verify(
        &self,
        kid: Option<&str>,
        alg: Alg,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyMiss> {
        let mut candidates = self.keys.iter().filter(|key| {
            key.verifies(alg)
                && match (kid, key.kid()) {
                    (Some(wanted), Some(have)) => wanted == have,
                    _ => true,
                }
        });
        let first = candidates.next().ok_or(KeyMiss::NoKey)?;
        if first.check(alg, message, signature)
            || candidates.any(|k| k.check(alg, message, signature))
        {
            Ok(())
        } else {
            Err(KeyMiss::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The Ed25519 public key of RFC 8037, appendix A.
    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn parse(doc: serde_json::Value) -> Result<ParsedJwks, JwksError> {
        parse_jwks(&doc)
    }

    #[test]
    fn okp_without_alg_verifies_eddsa_only() {
        let parsed = parse(json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_X}]})).unwrap();
        assert_eq!(parsed.keys.len(), 1);
        assert!(parsed.keys[0].verifies(Alg::EdDsa));
        assert!(!parsed.keys[0].verifies(Alg::Hs256));
    }

    #[test]
    fn okp_short_x_is_refused_naming_member() {
        let err =
            parse(json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]})).unwrap_err();
        assert_eq!(err.location, "keys[0].x");
    }

    #[test]
    fn okp_weak_key_is_refused() {
        // The identity point: a valid encoding, but [k]A is the same for every message,
        // so R = [s]B forges a signature that plain RFC 8032 checks accept (here s = 1,
        // R = the encoded base point). Hence `parse` refuses keys of small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut forged = [0u8; 64];
        forged[..32].fill(0x66);
        forged[0] = 0x58;
        forged[32] = 1;
        let weak = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
        let forged = ed25519_dalek::Signature::from_bytes(&forged);
        assert!(signature::Verifier::verify(&weak, b"any message", &forged).is_ok());

        let x = URL_SAFE_NO_PAD.encode(identity);
        let doc = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]});
        assert_eq!(parse(doc).unwrap_err().location, "keys[0].x");
    }

    #[test]
    fn alg_not_fitting_kty_is_refused() {
        let doc = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_X, "alg": "HS256"}]});
        assert_eq!(parse(doc).unwrap_err().location, "keys[0].alg");
    }

    #[test]
    fn encryption_and_unknown_keys_are_skipped() {
        let doc = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": ED_X, "use": "enc"},
            {"kty": "OKP", "crv": "Ed448", "x": "AA"},
            {"kty": "RSA", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
        ]});
        let parsed = parse(doc).unwrap();
        assert!(parsed.keys.is_empty());
        assert_eq!(parsed.skipped.len(), 3);
    }

    #[test]
    fn small_rsa_modulus_is_refused() {
        let n = URL_SAFE_NO_PAD.encode([0xffu8; 128]);
        let doc = json!({"keys": [{"kty": "RSA", "n": n, "e": "AQAB"}]});
        assert_eq!(parse(doc).unwrap_err().location, "keys[0].n");
    }

    #[test]
    fn padded_member_is_refused() {
        let doc = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "oct", "k": "YQ=="}]});
        assert_eq!(parse(doc).unwrap_err().location, "keys[1].k");
    }

    #[test]
    fn not_a_jwks_is_refused() {
        assert_eq!(parse(json!({"kty": "oct"})).unwrap_err().location, "keys");
        assert_eq!(parse(json!({"keys": [1]})).unwrap_err().location, "keys[0]");
    }

    #[test]
    fn ec_point_off_curve_is_refused() {
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let doc = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": x, "y": x}]});
        assert_eq!(parse(doc).unwrap_err().location, "keys[0].x");
    }

    #[test]
    fn secret_key_verifies_hs256_only() {
        let key = Key::from_secret(b"0123456789abcdef0123456789abcdef").unwrap();
        assert!(key.verifies(Alg::Hs256));
        assert!(!key.verifies(Alg::Hs384));
        assert!(!key.verifies(Alg::Hs512));
    }

    #[test]
    fn key_debug_hides_material() {
        let key = Key::from_secret(b"super-secret-value-that-must-not-print").unwrap();
        assert!(!format!("{key:?}").contains("super-secret"));
    }

    #[test]
    fn keyset_kid_selects_and_unknown_kid_is_no_key() {
        let doc = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ED_X, "kid": "a"}]});
        let set = KeySet::new(parse(doc).unwrap().keys);
        assert!(set.knows_kid("a"));
        assert_eq!(
            set.verify(Some("b"), Alg::EdDsa, b"m", &[0; 64]),
            Err(KeyMiss::NoKey)
        );
        assert_eq!(
            set.verify(Some("a"), Alg::EdDsa, b"m", &[0; 64]),
            Err(KeyMiss::BadSignature)
        );
        assert_eq!(
            set.verify(None, Alg::Es256, b"m", &[0; 64]),
            Err(KeyMiss::NoKey)
        );
    }

    #[test]
    fn alg_names_are_exact() {
        assert_eq!(Alg::from_name("EdDSA"), Some(Alg::EdDsa));
        for name in ["none", "None", "NONE", "hs256", "eddsa", "ES256K", ""] {
            assert_eq!(Alg::from_name(name), None, "{name}");
        }
    }
}
