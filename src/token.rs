//! Decoding a compact JWS (RFC 7515) into its parts, before any trust is placed in it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::denial::Denial;
use crate::keys::Alg;

/// A token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub struct Jws<'a> {
    /// The algorithm named by the header.
    pub alg: Alg,
    /// The header's key id.
    pub kid: Option<String>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes that were signed.
    pub signing_input: &'a [u8],
    /// The decoded signature.
    pub signature: Vec<u8>,
    /// The decoded payload; its JSON is parsed only after the signature holds.
    pub payload: Vec<u8>,
}

/// Splits and decodes `token`. Every segment must be unpadded base64url, the header a
/// JSON object with unique member names naming a supported `alg` and no `crit`.
///
/// Header members other than `alg`, `kid` and `crit` are ignored, `jwk`, `jku`, `x5u`
/// and `x5c` included: keys come from configuration only.
pub fn decode(token: &str) -> Result<Jws<'_>, Denial> {
    if !looks_like_jws(token) {
        return Err(Denial::NotAJwt);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Denial::MalformedToken);
    };

    let header = object(&base64url(header)?)?;
    let payload = base64url(payload)?;
    let signature = base64url(signature)?;

    let alg = match header.get("alg") {
        Some(Value::String(name)) => Alg::from_name(name).ok_or(Denial::UnsupportedAlgorithm)?,
        Some(_) => return Err(Denial::UnsupportedAlgorithm),
        None => return Err(Denial::MalformedToken),
    };
    // No extension is understood, so any `crit` list is one this filter must refuse.
    if header.contains_key("crit") {
        return Err(Denial::UnsupportedCrit);
    }
    if signature.is_empty() {
        return Err(Denial::MalformedToken);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(Denial::MalformedToken),
    };

    let signing_input_len = token.len() - token.rsplit('.').next().map_or(0, str::len) - 1;
    Ok(Jws {
        alg,
        kid,
        signing_input: &token.as_bytes()[..signing_input_len],
        signature,
        payload,
    })
}

/// Whether `token` is shaped like a compact JWS at all: three segments, or a first
/// segment that decodes to a JSON object. Opaque tokens, such as Better Auth session
/// tokens (`<id>` or `<id>.<signature>`), are not, and deserve a clearer answer than
/// "malformed".
fn looks_like_jws(token: &str) -> bool {
    if token.split('.').count() >= 3 {
        return true;
    }
    let Some((header, _)) = token.split_once('.') else {
        return false;
    };
    // "eyJ…" and friends: a base64url '{' within the first few characters.
    let prefix = header.get(..4).unwrap_or(header);
    URL_SAFE_NO_PAD
        .decode(prefix)
        .is_ok_and(|bytes| bytes.first() == Some(&b'{'))
}

/// Parses a JSON object whose member names are unique (RFC 7515 §5.2, RFC 7519 §4).
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, Denial> {
    serde_json::from_slice::<UniqueObject>(bytes)
        .map(|o| o.0)
        .map_err(|_| Denial::MalformedToken)
}

fn base64url(segment: &str) -> Result<Vec<u8>, Denial> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Denial::MalformedToken)
}

/// A JSON object that refuses a member name given twice, so a payload cannot say one
/// `sub` to this filter and another to a parser that keeps the first.
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UniqueObjectVisitor)
    }
}

struct UniqueObjectVisitor;

impl<'de> Visitor<'de> for UniqueObjectVisitor {
    type Value = UniqueObject;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object with unique member names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            let value = access.next_value::<Value>()?;
            if map.insert(name, value).is_some() {
                return Err(serde::de::Error::custom("duplicate member name"));
            }
        }
        Ok(UniqueObject(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    #[test]
    fn decode_well_formed_gives_parts() {
        let t = token(
            r#"{"alg":"EdDSA","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"a"}"#,
        );
        let jws = decode(&t).unwrap();
        assert_eq!(jws.alg, Alg::EdDsa);
        assert_eq!(jws.kid.as_deref(), Some("k1"));
        assert_eq!(jws.signature, b"sig");
        assert_eq!(jws.payload, br#"{"sub":"a"}"#);
        assert_eq!(jws.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
    }

    #[test]
    fn decode_opaque_token_is_not_a_jwt() {
        for opaque in [
            "v3kQ2lYh8fZ0pQ9sT1uW",
            "Xo3mNqL8vR2sT5wY7zA1bC4dE6fG9hJ0.k2J4l6N8p0R2t4V6x8Z0b2D4f6H8j0L2n4P6r8T0v2X",
            "session.",
        ] {
            assert_eq!(decode(opaque).unwrap_err(), Denial::NotAJwt, "{opaque}");
        }
    }

    #[test]
    fn decode_wrong_segment_count_is_malformed() {
        let good = token(r#"{"alg":"HS256"}"#, "{}");
        let (head, _) = good.rsplit_once('.').unwrap();
        for bad in [
            head.to_owned(),
            format!("{good}.x"),
            format!("{good}.x.y"),
            format!("{}.", head.split('.').next().unwrap_or_default()),
        ] {
            assert_eq!(decode(&bad).unwrap_err(), Denial::MalformedToken, "{bad}");
        }
    }

    #[test]
    fn decode_padding_or_standard_alphabet_is_malformed() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        for payload in ["e30=", "e30+", "e3/9"] {
            let t = format!("{header}.{payload}.c2ln");
            assert_eq!(decode(&t).unwrap_err(), Denial::MalformedToken, "{payload}");
        }
    }

    #[test]
    fn decode_empty_signature_is_malformed() {
        let t = format!("{}.{}.", b64(r#"{"alg":"HS256"}"#), b64("{}"));
        assert_eq!(decode(&t).unwrap_err(), Denial::MalformedToken);
    }

    #[test]
    fn decode_alg_none_any_case_is_unsupported() {
        for alg in ["none", "None", "NONE", "nOnE", "HS999", ""] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert_eq!(
                decode(&t).unwrap_err(),
                Denial::UnsupportedAlgorithm,
                "{alg}"
            );
        }
        let t = token(r#"{"alg":null}"#, "{}");
        assert_eq!(decode(&t).unwrap_err(), Denial::UnsupportedAlgorithm);
        let unsigned = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}"));
        assert_eq!(decode(&unsigned).unwrap_err(), Denial::UnsupportedAlgorithm);
    }

    #[test]
    fn decode_crit_is_unsupported() {
        let t = token(r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, "{}");
        assert_eq!(decode(&t).unwrap_err(), Denial::UnsupportedCrit);
    }

    #[test]
    fn decode_embedded_key_headers_are_ignored() {
        let header = r#"{"alg":"HS256","jwk":{"kty":"oct","k":"AA"},"jku":"http://x","x5u":"y"}"#;
        assert!(decode(&token(header, "{}")).is_ok());
    }

    #[test]
    fn decode_duplicate_header_member_is_malformed() {
        let t = token(r#"{"alg":"HS256","alg":"none"}"#, "{}");
        assert_eq!(decode(&t).unwrap_err(), Denial::MalformedToken);
    }

    #[test]
    fn decode_non_string_kid_is_malformed() {
        let t = token(r#"{"alg":"HS256","kid":7}"#, "{}");
        assert_eq!(decode(&t).unwrap_err(), Denial::MalformedToken);
    }

    #[test]
    fn object_duplicate_member_is_malformed() {
        assert_eq!(
            object(br#"{"sub":"a","sub":"b"}"#).unwrap_err(),
            Denial::MalformedToken
        );
    }

    #[test]
    fn object_non_object_or_bad_utf8_is_malformed() {
        for bad in [&b"[]"[..], b"\"s\"", b"{\"sub\":\"\xff\"}", b"{", b""] {
            assert_eq!(object(bad).unwrap_err(), Denial::MalformedToken);
        }
    }

    #[test]
    fn object_deep_nesting_is_malformed_not_a_crash() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(object(deep.as_bytes()).unwrap_err(), Denial::MalformedToken);
    }
}
