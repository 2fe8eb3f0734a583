//! Why a request is refused, and the one place that turns the reason into a reply.

use std::fmt;

/// A reason to refuse a request. Each variant has a stable wire code and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// No `Authorization` header on a request that needs a token.
    MissingToken,
    /// An `Authorization` header that is not exactly one well-formed bearer token.
    InvalidAuthorization,
    /// A token longer than `max_token_bytes`.
    TokenTooLarge,
    /// A bearer token that is not a JWT at all, such as an opaque session token.
    NotAJwt,
    /// A JWT that cannot be decoded: segments, base64url, JSON, duplicate members.
    MalformedToken,
    /// An `alg` this filter never accepts, `none` included.
    UnsupportedAlgorithm,
    /// A `crit` header naming an extension this filter does not understand.
    UnsupportedCrit,
    /// No configured key matches the token's `kid` and `alg`.
    UnknownKey,
    /// The signature does not verify with the selected key.
    BadSignature,
    /// `exp` is in the past (beyond the allowed clock skew).
    TokenExpired,
    /// `nbf` is in the future (beyond the allowed clock skew).
    TokenNotYetValid,
    /// `exp` is required and absent.
    MissingExp,
    /// A registered claim has the wrong JSON type.
    InvalidClaim,
    /// `iss` is absent or not one of the configured issuers.
    WrongIssuer,
    /// `aud` is absent or names none of the configured audiences.
    WrongAudience,
    /// None of the user claims holds a non-empty string.
    MissingUser,
    /// The token's user is not the user named by the path.
    UserMismatch,
    /// The path could mean different things to this filter and to the upstream.
    AmbiguousPath,
    /// No verification keys could be obtained yet.
    KeysUnavailable,
}

/// Every denial, for metrics and documentation.
pub const ALL: [Denial; 19] = [
    Denial::MissingToken,
    Denial::InvalidAuthorization,
    Denial::TokenTooLarge,
    Denial::NotAJwt,
    Denial::MalformedToken,
    Denial::UnsupportedAlgorithm,
    Denial::UnsupportedCrit,
    Denial::UnknownKey,
    Denial::BadSignature,
    Denial::TokenExpired,
    Denial::TokenNotYetValid,
    Denial::MissingExp,
    Denial::InvalidClaim,
    Denial::WrongIssuer,
    Denial::WrongAudience,
    Denial::MissingUser,
    Denial::UserMismatch,
    Denial::AmbiguousPath,
    Denial::KeysUnavailable,
];

impl Denial {
    /// The stable snake_case code sent in the body and used in metric names.
    pub fn code(self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::InvalidAuthorization => "invalid_authorization",
            Denial::TokenTooLarge => "token_too_large",
            Denial::NotAJwt => "not_a_jwt",
            Denial::MalformedToken => "malformed_token",
            Denial::UnsupportedAlgorithm => "unsupported_algorithm",
            Denial::UnsupportedCrit => "unsupported_crit",
            Denial::UnknownKey => "unknown_key",
            Denial::BadSignature => "bad_signature",
            Denial::TokenExpired => "token_expired",
            Denial::TokenNotYetValid => "token_not_yet_valid",
            Denial::MissingExp => "missing_exp",
            Denial::InvalidClaim => "invalid_claim",
            Denial::WrongIssuer => "wrong_issuer",
            Denial::WrongAudience => "wrong_audience",
            Denial::MissingUser => "missing_user",
            Denial::UserMismatch => "user_mismatch",
            Denial::AmbiguousPath => "ambiguous_path",
            Denial::KeysUnavailable => "keys_unavailable",
        }
    }

    /// The HTTP status of the reply.
    pub fn status(self) -> u32 {
        match self {
            Denial::UserMismatch => 403,
            Denial::AmbiguousPath => 400,
            Denial::KeysUnavailable => 503,
            _ => 401,
        }
    }

    /// A sentence for humans; it never contains request data.
    pub fn message(self) -> &'static str {
        match self {
            Denial::MissingToken => "this path needs an Authorization: Bearer token",
            Denial::InvalidAuthorization => {
                "the Authorization header must be exactly one 'Bearer <token>'"
            }
            Denial::TokenTooLarge => "the bearer token is larger than this service accepts",
            Denial::NotAJwt => "the bearer token is not a JWT (an opaque session token?)",
            Denial::MalformedToken => "the bearer token is not a well-formed JWT",
            Denial::UnsupportedAlgorithm => "the token's signing algorithm is not accepted",
            Denial::UnsupportedCrit => {
                "the token requires a header extension that is not supported"
            }
            Denial::UnknownKey => "no configured key can verify this token",
            Denial::BadSignature => "the token's signature is not valid",
            Denial::TokenExpired => "the token has expired",
            Denial::TokenNotYetValid => "the token is not valid yet",
            Denial::MissingExp => "the token has no expiry (exp) claim",
            Denial::InvalidClaim => "a registered claim in the token has the wrong type",
            Denial::WrongIssuer => "the token was not issued by an accepted issuer",
            Denial::WrongAudience => "the token is not meant for this audience",
            Denial::MissingUser => "the token does not name a user",
            Denial::UserMismatch => "the token's user may not access this path",
            Denial::AmbiguousPath => "the request path is ambiguous and was refused",
            Denial::KeysUnavailable => "verification keys are not available yet; retry later",
        }
    }

    /// Whether this denial is about a token the client presented.
    fn concerns_presented_token(self) -> bool {
        !matches!(
            self,
            Denial::MissingToken
                | Denial::InvalidAuthorization
                | Denial::UserMismatch
                | Denial::AmbiguousPath
                | Denial::KeysUnavailable
        )
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A fully rendered local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u32,
    /// Response headers, names in lower case.
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: String,
}

/// Renders the reply for `denial`; `realm` is the configured, already-validated realm.
pub fn reply(denial: Denial, realm: &str) -> Reply {
    // Codes and messages are fixed ASCII without quotes or backslashes (a test checks
    // every one), so the body needs no JSON serializer.
    let body = format!(
        r#"{{"error":"{}","message":"{}"}}"#,
        denial.code(),
        denial.message()
    );
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if denial.status() == 401 {
        headers.push(("www-authenticate", www_authenticate(denial, realm)));
    }
    if denial == Denial::KeysUnavailable {
        headers.push(("retry-after", "1".to_owned()));
    }
    Reply {
        status: denial.status(),
        headers,
        body: body.to_string(),
    }
}

/// The RFC 6750 §3 challenge for a 401.
fn www_authenticate(denial: Denial, realm: &str) -> String {
    let error = if denial.concerns_presented_token() {
        Some("invalid_token")
    } else if denial == Denial::InvalidAuthorization {
        Some("invalid_request")
    } else {
        None
    };
    match error {
        Some(error) => format!("Bearer realm=\"{realm}\", error=\"{error}\""),
        None => format!("Bearer realm=\"{realm}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for denial in ALL {
            let code = denial.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
    }

    #[test]
    fn reply_user_mismatch_is_403_without_challenge() {
        let reply = reply(Denial::UserMismatch, "r");
        assert_eq!(reply.status, 403);
        assert!(reply
            .headers
            .iter()
            .all(|(name, _)| *name != "www-authenticate"));
    }

    #[test]
    fn reply_missing_token_challenges_without_error() {
        let reply = reply(Denial::MissingToken, "api");
        assert_eq!(reply.status, 401);
        let challenge = reply.headers.iter().find(|(n, _)| *n == "www-authenticate");
        assert_eq!(
            challenge.map(|(_, v)| v.as_str()),
            Some("Bearer realm=\"api\"")
        );
    }

    #[test]
    fn reply_bad_signature_challenges_with_invalid_token() {
        let reply = reply(Denial::BadSignature, "api");
        let challenge = reply.headers.iter().find(|(n, _)| *n == "www-authenticate");
        assert_eq!(
            challenge.map(|(_, v)| v.as_str()),
            Some("Bearer realm=\"api\", error=\"invalid_token\"")
        );
    }

    #[test]
    fn reply_body_is_json_with_code_and_message_for_every_denial() {
        for denial in ALL {
            let reply = reply(denial, "api");
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["error"], denial.code());
            assert_eq!(body["message"], denial.message());
        }
    }

    #[test]
    fn reply_ambiguous_path_is_400() {
        assert_eq!(reply(Denial::AmbiguousPath, "r").status, 400);
    }
}
