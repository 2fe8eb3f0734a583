//! Checking a verified payload's claims: time, issuer, audience, and who the user is.

use serde_json::{Map, Value};

use crate::denial::Denial;

/// What the claims of a token must satisfy. Built once from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimsPolicy {
    /// Accepted `iss` values; empty means the issuer is not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty means the audience is not checked.
    pub audiences: Vec<String>,
    /// Whether a token without `exp` is refused.
    pub require_exp: bool,
    /// Seconds of clock difference tolerated on `exp` and `nbf`.
    pub clock_skew: u64,
    /// Claims that may name the user, in order of preference.
    pub user_claims: Vec<String>,
}

/// Who a valid token speaks for, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The user id, a non-empty string without control characters.
    pub user: String,
    /// `exp` in seconds since the epoch, if the token has one.
    pub expires: Option<f64>,
    /// `nbf` in seconds since the epoch, if the token has one.
    pub not_before: Option<f64>,
}

impl ClaimsPolicy {
    /// Checks `claims` against this policy at `now` (seconds since the epoch).
    pub fn check(&self, claims: &Map<String, Value>, now: u64) -> Result<Identity, Denial> {
        let expires = numeric_date(claims.get("exp"))?;
        let not_before = numeric_date(claims.get("nbf"))?;

        if expires.is_none() && self.require_exp {
            return Err(Denial::MissingExp);
        }
        self.check_time(expires, not_before, now)?;

        if !self.issuers.is_empty() {
            match claims.get("iss") {
                Some(Value::String(iss)) if self.issuers.contains(iss) => {}
                Some(Value::String(_)) | None => return Err(Denial::WrongIssuer),
                Some(_) => return Err(Denial::InvalidClaim),
            }
        }
        if !self.audiences.is_empty() && !self.audience_matches(claims.get("aud"))? {
            return Err(Denial::WrongAudience);
        }
        Ok(Identity {
            user: self.user(claims)?,
            expires,
            not_before,
        })
    }

    /// Checks a validity window at `now`; also used again for cached identities.
    pub fn check_time(
        &self,
        expires: Option<f64>,
        not_before: Option<f64>,
        now: u64,
    ) -> Result<(), Denial> {
        let now = now as f64;
        let skew = self.clock_skew as f64;
        if expires.is_some_and(|exp| exp + skew <= now) {
            return Err(Denial::TokenExpired);
        }
        if not_before.is_some_and(|nbf| nbf - skew > now) {
            return Err(Denial::TokenNotYetValid);
        }
        Ok(())
    }

    /// The first user claim present must be a usable string; a later one is only
    /// consulted when the earlier ones are absent, never when they are malformed.
    fn user(&self, claims: &Map<String, Value>) -> Result<String, Denial> {
        let value = self
            .user_claims
            .iter()
            .find_map(|name| claims.get(name))
            .ok_or(Denial::MissingUser)?;
        match value {
            Value::String(user) if !user.is_empty() && !user.chars().any(char::is_control) => {
                Ok(user.clone())
            }
            _ => Err(Denial::MissingUser),
        }
    }

    fn audience_matches(&self, aud: Option<&Value>) -> Result<bool, Denial> {
        match aud {
            None => Ok(false),
            Some(Value::String(aud)) => Ok(self.audiences.contains(aud)),
            Some(Value::Array(items)) => {
                let mut matched = false;
                for item in items {
                    let Value::String(aud) = item else {
                        return Err(Denial::InvalidClaim);
                    };
                    matched |= self.audiences.contains(aud);
                }
                Ok(matched)
            }
            Some(_) => Err(Denial::InvalidClaim),
        }
    }
}

/// A NumericDate (RFC 7519 §2): any JSON number; other types are refused.
fn numeric_date(value: Option<&Value>) -> Result<Option<f64>, Denial> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or(Denial::InvalidClaim),
        Some(_) => Err(Denial::InvalidClaim),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn policy() -> ClaimsPolicy {
        ClaimsPolicy {
            issuers: vec![],
            audiences: vec![],
            require_exp: true,
            clock_skew: 60,
            user_claims: vec!["sub".into(), "user_id".into()],
        }
    }

    fn check(policy: &ClaimsPolicy, claims: Value) -> Result<Identity, Denial> {
        let Value::Object(map) = claims else {
            panic!("claims must be an object")
        };
        policy.check(&map, NOW)
    }

    #[test]
    fn valid_claims_give_user() {
        let id = check(&policy(), json!({"sub": "alice", "exp": NOW + 10})).unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.expires, Some((NOW + 10) as f64));
    }

    #[test]
    fn exp_past_is_expired() {
        let claims = json!({"sub": "a", "exp": NOW - 61});
        assert_eq!(check(&policy(), claims), Err(Denial::TokenExpired));
    }

    #[test]
    fn exp_within_skew_is_accepted() {
        assert!(check(&policy(), json!({"sub": "a", "exp": NOW - 59})).is_ok());
    }

    #[test]
    fn exp_far_past_or_negative_is_expired() {
        assert_eq!(
            check(&policy(), json!({"sub": "a", "exp": 0})),
            Err(Denial::TokenExpired)
        );
        assert_eq!(
            check(&policy(), json!({"sub": "a", "exp": -5})),
            Err(Denial::TokenExpired)
        );
    }

    #[test]
    fn exp_missing_is_refused_when_required() {
        assert_eq!(
            check(&policy(), json!({"sub": "a"})),
            Err(Denial::MissingExp)
        );
        let lenient = ClaimsPolicy {
            require_exp: false,
            ..policy()
        };
        assert!(check(&lenient, json!({"sub": "a"})).is_ok());
    }

    #[test]
    fn exp_as_string_or_bool_is_invalid() {
        let exp = (NOW + 10).to_string();
        assert_eq!(
            check(&policy(), json!({"sub": "a", "exp": exp})),
            Err(Denial::InvalidClaim)
        );
        assert_eq!(
            check(&policy(), json!({"sub": "a", "exp": true})),
            Err(Denial::InvalidClaim)
        );
    }

    #[test]
    fn exp_fractional_is_accepted() {
        assert!(check(&policy(), json!({"sub": "a", "exp": NOW as f64 + 0.5})).is_ok());
    }

    #[test]
    fn nbf_future_is_not_yet_valid() {
        let claims = json!({"sub": "a", "exp": NOW + 999, "nbf": NOW + 61});
        assert_eq!(check(&policy(), claims), Err(Denial::TokenNotYetValid));
        assert!(check(
            &policy(),
            json!({"sub": "a", "exp": NOW + 999, "nbf": NOW + 59})
        )
        .is_ok());
    }

    #[test]
    fn user_falls_back_to_user_id_only_when_sub_absent() {
        let id = check(&policy(), json!({"user_id": "bob", "exp": NOW + 9})).unwrap();
        assert_eq!(id.user, "bob");
    }

    #[test]
    fn user_unusable_sub_is_refused_even_with_user_id() {
        for sub in [
            json!(""),
            json!(42),
            json!(["a"]),
            json!(null),
            json!("a\nb"),
        ] {
            let claims = json!({"sub": sub, "user_id": "bob", "exp": NOW + 9});
            assert_eq!(check(&policy(), claims), Err(Denial::MissingUser), "{sub}");
        }
    }

    #[test]
    fn user_missing_is_refused() {
        assert_eq!(
            check(&policy(), json!({"exp": NOW + 9})),
            Err(Denial::MissingUser)
        );
    }

    #[test]
    fn issuer_checked_when_configured() {
        let p = ClaimsPolicy {
            issuers: vec!["https://auth".into()],
            ..policy()
        };
        let base = json!({"sub": "a", "exp": NOW + 9});
        assert_eq!(check(&p, base.clone()), Err(Denial::WrongIssuer));
        let mut ok = base.clone();
        ok["iss"] = json!("https://auth");
        assert!(check(&p, ok).is_ok());
        let mut wrong = base.clone();
        wrong["iss"] = json!("https://evil");
        assert_eq!(check(&p, wrong), Err(Denial::WrongIssuer));
        let mut typed = base;
        typed["iss"] = json!(["https://auth"]);
        assert_eq!(check(&p, typed), Err(Denial::InvalidClaim));
    }

    #[test]
    fn audience_string_or_array_matches() {
        let p = ClaimsPolicy {
            audiences: vec!["api".into()],
            ..policy()
        };
        for (aud, expected) in [
            (json!("api"), Ok(())),
            (json!(["x", "api"]), Ok(())),
            (json!("web"), Err(Denial::WrongAudience)),
            (json!([]), Err(Denial::WrongAudience)),
            (json!(["api", 1]), Err(Denial::InvalidClaim)),
            (json!(7), Err(Denial::InvalidClaim)),
        ] {
            let claims = json!({"sub": "a", "exp": NOW + 9, "aud": aud});
            assert_eq!(check(&p, claims).map(|_| ()), expected, "{aud}");
        }
        assert_eq!(
            check(&p, json!({"sub": "a", "exp": NOW + 9})),
            Err(Denial::WrongAudience)
        );
    }
}
