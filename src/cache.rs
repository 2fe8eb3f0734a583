//! A bounded cache of verified tokens, so a token seen again skips its signature check.
//!
//! Entries are keyed by the whole token, compared byte for byte: a lookup costs a keyed
//! SipHash and one comparison, where a cryptographic digest of the token cost more than
//! the rest of a cache hit inside Envoy's V8 (see bench/README.md). Entries hold the
//! identity the token proved. An entry never outlives the token's `exp` (tokens without
//! one are not cached), the validity window is checked again on every hit, and the path
//! binding is never cached: it depends on the request.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::claims::Identity;

/// Verified tokens, oldest evicted first once `capacity` is reached.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    // The default hasher is SipHash with a key drawn per VM, so clients cannot aim
    // tokens at one bucket.
    entries: HashMap<Rc<str>, Identity>,
    order: VecDeque<Rc<str>>,
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

    /// The identity `token` proved, unless it has expired by `now`.
    pub fn get(&mut self, token: &str, now: u64) -> Option<&Identity> {
        let expired = self
            .entries
            .get(token)?
            .expires
            .is_none_or(|exp| exp <= now as f64);
        if expired {
            self.entries.remove(token);
            return None;
        }
        self.hits += 1;
        self.entries.get(token)
    }

    /// How many lookups found a live entry so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Remembers a verified token; tokens without `exp` are not kept.
    pub fn insert(&mut self, token: &str, identity: Identity, now: u64) {
        if self.capacity == 0 || identity.expires.is_none() {
            return;
        }
        if let Some(held) = self.entries.get_mut(token) {
            *held = identity;
            return;
        }
        if self.entries.len() >= self.capacity {
            self.evict(now);
        }
        let token: Rc<str> = Rc::from(token);
        self.order.push_back(Rc::clone(&token));
        self.entries.insert(token, identity);
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
        self.order.retain(|token| self.entries.contains_key(token));
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
        cache.insert("t1", identity("alice", Some(100)), 10);
        assert_eq!(cache.get("t1", 50).map(|i| i.user.as_str()), Some("alice"));
        assert!(cache.get("t2", 50).is_none());
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn only_the_identical_token_hits() {
        let mut cache = TokenCache::new(4);
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
        cache.insert(token, identity("alice", Some(100)), 10);
        for other in [
            &token[..token.len() - 1],
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lo",
        ] {
            assert!(cache.get(other, 50).is_none(), "{other}");
        }
        assert!(cache.get(token, 50).is_some());
    }

    #[test]
    fn inserting_again_replaces_without_growing() {
        let mut cache = TokenCache::new(2);
        cache.insert("t1", identity("alice", Some(100)), 10);
        cache.insert("t1", identity("alice", Some(200)), 10);
        cache.insert("t2", identity("bob", Some(100)), 10);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("t1", 150).map(|i| i.user.as_str()), Some("alice"));
        assert_eq!(cache.order.len(), 2);
    }

    #[test]
    fn entry_never_outlives_exp() {
        let mut cache = TokenCache::new(4);
        cache.insert("t1", identity("alice", Some(100)), 10);
        assert!(cache.get("t1", 100).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn token_without_exp_is_not_cached() {
        let mut cache = TokenCache::new(4);
        cache.insert("t1", identity("alice", None), 10);
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_evicts_expired_then_oldest() {
        let mut cache = TokenCache::new(2);
        cache.insert("old", identity("a", Some(20)), 10);
        cache.insert("live", identity("b", Some(500)), 10);
        cache.insert("new", identity("c", Some(500)), 30); // "old" has expired
        assert!(cache.get("live", 30).is_some());
        assert!(cache.get("new", 30).is_some());
        cache.insert("newer", identity("d", Some(500)), 30); // evicts "live"
        assert_eq!(cache.len(), 2);
        assert!(cache.get("live", 30).is_none());
        assert!(cache.get("newer", 30).is_some());
    }

    #[test]
    fn zero_capacity_disables() {
        let mut cache = TokenCache::new(0);
        assert!(!cache.enabled());
        cache.insert("t", identity("a", Some(500)), 1);
        assert!(cache.is_empty());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut cache = TokenCache::new(2);
        cache.insert("t", identity("a", Some(500)), 1);
        cache.clear();
        assert!(cache.get("t", 2).is_none());
    }
}
