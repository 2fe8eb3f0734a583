//! A JWKS fetched from an issuer through an Envoy cluster: where it lives, when it
//! is fetched, and the fetch state every worker shares.
//!
//! Envoy runs one VM per worker and they share no memory, only Envoy's shared-data
//! store. [`FetchState`] is what they keep there, updated with compare-and-swap, so
//! that one worker fetches at a time and all of them see the outcome.

use serde::{Deserialize, Serialize};

use crate::json;
use crate::keys::{parse_jwks, ParsedJwks};

/// Largest JWKS response accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys a fetched JWKS may hold; tokens without a `kid` may be tried on each.
pub const MAX_JWKS_KEYS: usize = 32;

/// Where and how often to fetch a JWKS. Times are in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// Envoy cluster that reaches the issuer.
    pub cluster: String,
    /// `:authority` of the fetch.
    pub authority: String,
    /// Path of the JWKS, such as `/api/auth/jwks`.
    pub path: String,
    /// Time limit of one fetch; also how long a request waits for keys.
    pub timeout_ms: u64,
    /// Interval between scheduled refreshes.
    pub refresh_ms: u64,
    /// Least time between two fetches caused by an unknown `kid`.
    pub min_refetch_ms: u64,
}

impl RemoteJwks {
    /// The shared-data key prefix: the same JWKS is shared by every filter using it.
    pub fn shared_key(&self, suffix: &str) -> String {
        format!(
            "jwt_guard|{}|{}|{}|{suffix}",
            self.cluster, self.authority, self.path
        )
    }

    /// Delay before retrying after `failures` failed fetches in a row: 1 s, doubling,
    /// at most a minute and never later than the scheduled refresh.
    fn retry_ms(&self, failures: u32) -> u64 {
        let backoff = 1000u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
        backoff.min(60_000).min(self.refresh_ms)
    }
}

/// Why a fetch is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The refresh interval has passed, or no keys were ever fetched.
    Scheduled,
    /// A token named a key the current set lacks.
    UnknownKid,
}

/// Fetch state shared by all workers. Times are milliseconds since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchState {
    /// Bumped each time a new key set is published.
    pub version: u64,
    /// A fetch is in flight until then (0: none).
    pub lock_until: u64,
    /// When the next scheduled fetch is due (0: now).
    pub next_due: u64,
    /// When the last unknown-`kid` fetch began.
    pub last_refetch: u64,
    /// Failed fetches in a row.
    pub failures: u32,
}

impl FetchState {
    /// Reads the shared value; a missing or unreadable value is the initial state.
    pub fn decode(bytes: Option<&[u8]>) -> FetchState {
        bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }

    /// The shared value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether some worker is fetching at `now`.
    pub fn fetching(&self, now: u64) -> bool {
        now < self.lock_until
    }

    /// The state after taking the fetch lock for `reason`, or `None` when no fetch
    /// may start now: one is in flight, the refresh is not due, or an unknown-`kid`
    /// fetch happened too recently.
    pub fn begin(&self, now: u64, reason: Reason, remote: &RemoteJwks) -> Option<FetchState> {
        if self.fetching(now) {
            return None;
        }
        let mut next = self.clone();
        match reason {
            Reason::Scheduled if now < self.next_due => return None,
            Reason::Scheduled => {}
            Reason::UnknownKid if now < self.last_refetch.saturating_add(remote.min_refetch_ms) => {
                return None
            }
            Reason::UnknownKid => next.last_refetch = now,
        }
        // A little beyond the fetch timeout, so a lost response cannot hold it forever.
        next.lock_until = now + remote.timeout_ms + 1000;
        Some(next)
    }

    /// The state after a fetch that published a new key set.
    pub fn succeeded(&self, now: u64, remote: &RemoteJwks) -> FetchState {
        FetchState {
            version: self.version + 1,
            lock_until: 0,
            next_due: now + remote.refresh_ms,
            last_refetch: self.last_refetch,
            failures: 0,
        }
    }

    /// The state after a failed fetch; the published keys stay as they were.
    pub fn failed(&self, now: u64, remote: &RemoteJwks) -> FetchState {
        let failures = self.failures.saturating_add(1);
        FetchState {
            lock_until: 0,
            next_due: now + remote.retry_ms(failures),
            failures,
            ..self.clone()
        }
    }
}

/// Why a fetch did not yield a usable key set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// No response: connection failure, reset or timeout.
    NoResponse,
    /// A status other than 200.
    Status(String),
    /// A body over [`MAX_JWKS_BYTES`].
    TooLarge,
    /// A body that is not a JWKS.
    NotJwks(String),
    /// A JWKS without a single usable key, or with too many.
    NoUsableKeys,
    TooManyKeys,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NoResponse => f.write_str("no response (connection failed or timed out)"),
            FetchError::Status(s) => write!(f, "status {s}"),
            FetchError::TooLarge => write!(f, "body over {MAX_JWKS_BYTES} bytes"),
            FetchError::NotJwks(why) => write!(f, "not a JWKS: {why}"),
            FetchError::NoUsableKeys => f.write_str("no usable signing key in the set"),
            FetchError::TooManyKeys => write!(f, "more than {MAX_JWKS_KEYS} keys"),
        }
    }
}

/// Checks a fetch response: `status` is the `:status` header, if any arrived.
pub fn check_response(status: Option<&[u8]>, body: &[u8]) -> Result<ParsedJwks, FetchError> {
    match status {
        None => return Err(FetchError::NoResponse),
        Some(b"200") => {}
        Some(other) => return Err(FetchError::Status(String::from_utf8_lossy(other).into())),
    }
    if body.len() > MAX_JWKS_BYTES {
        return Err(FetchError::TooLarge);
    }
    parse_body(body)
}

/// Parses a JWKS body already accepted once (as published in shared data) or fresh.
pub fn parse_body(body: &[u8]) -> Result<ParsedJwks, FetchError> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| FetchError::NotJwks(json::describe(&e)))?;
    let parsed = parse_jwks(&document).map_err(|e| FetchError::NotJwks(e.to_string()))?;
    match parsed.keys.len() {
        0 => Err(FetchError::NoUsableKeys),
        n if n > MAX_JWKS_KEYS => Err(FetchError::TooManyKeys),
        _ => Ok(parsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote() -> RemoteJwks {
        RemoteJwks {
            cluster: "auth".into(),
            authority: "auth.example".into(),
            path: "/api/auth/jwks".into(),
            timeout_ms: 2000,
            refresh_ms: 300_000,
            min_refetch_ms: 10_000,
        }
    }

    const JWKS: &[u8] = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a",
        "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    #[test]
    fn initial_state_allows_scheduled_fetch() {
        let state = FetchState::decode(None);
        let taken = state.begin(1000, Reason::Scheduled, &remote()).unwrap();
        assert!(taken.fetching(1000));
        assert_eq!(taken.begin(1500, Reason::Scheduled, &remote()), None);
        assert_eq!(taken.begin(1500, Reason::UnknownKid, &remote()), None);
    }

    #[test]
    fn lost_fetch_releases_lock_after_timeout() {
        let taken = FetchState::default()
            .begin(1000, Reason::Scheduled, &remote())
            .unwrap();
        assert!(taken
            .begin(1000 + 3001, Reason::Scheduled, &remote())
            .is_some());
    }

    #[test]
    fn success_schedules_refresh_and_bumps_version() {
        let taken = FetchState::default()
            .begin(1000, Reason::Scheduled, &remote())
            .unwrap();
        let done = taken.succeeded(1200, &remote());
        assert_eq!(done.version, 1);
        assert!(!done.fetching(1200));
        assert_eq!(done.begin(1300, Reason::Scheduled, &remote()), None);
        assert!(done
            .begin(1200 + 300_000, Reason::Scheduled, &remote())
            .is_some());
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let done = FetchState::default().succeeded(0, &remote());
        let first = done.begin(50_000, Reason::UnknownKid, &remote()).unwrap();
        let after = first.succeeded(50_100, &remote());
        assert_eq!(after.begin(55_000, Reason::UnknownKid, &remote()), None);
        assert!(after.begin(60_000, Reason::UnknownKid, &remote()).is_some());
    }

    #[test]
    fn failures_back_off_and_keep_version() {
        let mut state = FetchState {
            version: 4,
            ..FetchState::default()
        };
        let mut delays = vec![];
        for _ in 0..9 {
            state = state.failed(0, &remote());
            delays.push(state.next_due);
        }
        assert_eq!(state.version, 4);
        assert_eq!(state.failures, 9);
        assert_eq!(&delays[..4], &[1000, 2000, 4000, 8000]);
        assert_eq!(delays[8], 60_000);
    }

    #[test]
    fn state_round_trips_and_garbage_is_initial() {
        let state = FetchState {
            version: 3,
            lock_until: 9,
            next_due: 7,
            last_refetch: 5,
            failures: 1,
        };
        assert_eq!(FetchState::decode(Some(&state.encode())), state);
        assert_eq!(FetchState::decode(Some(b"\xff")), FetchState::default());
    }

    #[test]
    fn response_ok_gives_keys() {
        assert_eq!(check_response(Some(b"200"), JWKS).unwrap().keys.len(), 1);
    }

    #[test]
    fn response_failures_are_classified() {
        assert_eq!(
            check_response(None, JWKS).unwrap_err(),
            FetchError::NoResponse
        );
        assert_eq!(
            check_response(Some(b"503"), JWKS).unwrap_err(),
            FetchError::Status("503".into())
        );
        assert!(matches!(
            check_response(Some(b"200"), b"<html>").unwrap_err(),
            FetchError::NotJwks(_)
        ));
        assert_eq!(
            check_response(Some(b"200"), br#"{"keys":[]}"#).unwrap_err(),
            FetchError::NoUsableKeys
        );
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(
            check_response(Some(b"200"), &big).unwrap_err(),
            FetchError::TooLarge
        );
    }
}
