//! A bounded cache of verified tokens, so a token seen again skips its signature check.
//!
//! Entries are keyed by the SHA-256 of the whole token and hold the identity the token
//! proved. An entry never outlives the token's `exp` (tokens without one are not
//! cached), the validity window is checked again on every hit, and the path binding is
//! never cached: it depends on the request.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::claims::Identity;

/// The SHA-256 of a token.
pub type TokenHash = [u8; 32];

/// Hashes a token for the cache.
pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Verified tokens, oldest evicted first once `capacity` is reached.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<TokenHash, Identity>,
    order: VecDeque<TokenHash>,
    hits: u64,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; 0 disables it.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            ..TokenCache::default()
        }
    }

    /// Whether the cache stores anything at all.
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The identity a token with this hash proved, unless it has expired by `now`.
    pub fn get(&mut self, key: &TokenHash, now: u64) -> Option<&Identity> {
        let expired = self
            .entries
            .get(key)?
            .expires
            .is_none_or(|exp| exp <= now as f64);
        if expired {
            self.entries.remove(key);
            return None;
        }
        self.hits += 1;
        self.entries.get(key)
    }

    /// How many lookups found a live entry so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Remembers a verified token; tokens without `exp` are not kept.
    pub fn insert(&mut self, key: TokenHash, identity: Identity, now: u64) {
        if self.capacity == 0 || identity.expires.is_none() {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.evict(now);
        }
        if self.entries.insert(key, identity).is_none() {
            self.order.push_back(key);
        }
    }

    /// Forgets everything, as when the key set changes.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// Number of tokens held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops expired entries, or else the oldest one.
    fn evict(&mut self, now: u64) {
        let before = self.entries.len();
        self.entries
            .retain(|_, id| id.expires.is_some_and(|exp| exp > now as f64));
        if self.entries.len() == before {
            while let Some(oldest) = self.order.pop_front() {
                if self.entries.remove(&oldest).is_some() {
                    break;
                }
            }
        }
        self.order.retain(|key| self.entries.contains_key(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(user: &str, expires: Option<u64>) -> Identity {
        Identity {
            user: user.into(),
            expires: expires.map(|e| e as f64),
            not_before: None,
        }
    }

    #[test]
    fn hit_returns_identity() {
        let mut cache = TokenCache::new(4);
        cache.insert(hash("t1"), identity("alice", Some(100)), 10);
        assert_eq!(
            cache.get(&hash("t1"), 50).map(|i| i.user.as_str()),
            Some("alice")
        );
        assert!(cache.get(&hash("t2"), 50).is_none());
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn entry_never_outlives_exp() {
        let mut cache = TokenCache::new(4);
        cache.insert(hash("t1"), identity("alice", Some(100)), 10);
        assert!(cache.get(&hash("t1"), 100).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn token_without_exp_is_not_cached() {
        let mut cache = TokenCache::new(4);
        cache.insert(hash("t1"), identity("alice", None), 10);
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_evicts_expired_then_oldest() {
        let mut cache = TokenCache::new(2);
        cache.insert(hash("old"), identity("a", Some(20)), 10);
        cache.insert(hash("live"), identity("b", Some(500)), 10);
        cache.insert(hash("new"), identity("c", Some(500)), 30); // "old" has expired
        assert!(cache.get(&hash("live"), 30).is_some());
        assert!(cache.get(&hash("new"), 30).is_some());
        cache.insert(hash("newer"), identity("d", Some(500)), 30); // evicts "live"
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&hash("live"), 30).is_none());
        assert!(cache.get(&hash("newer"), 30).is_some());
    }

    #[test]
    fn zero_capacity_disables() {
        let mut cache = TokenCache::new(0);
        assert!(!cache.enabled());
        cache.insert(hash("t"), identity("a", Some(500)), 1);
        assert!(cache.is_empty());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut cache = TokenCache::new(2);
        cache.insert(hash("t"), identity("a", Some(500)), 1);
        cache.clear();
        assert!(cache.get(&hash("t"), 2).is_none());
    }
}
