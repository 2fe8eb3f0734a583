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

/// Verified tokens, the oldest insertion evicted first once `capacity` is reached.
///
/// Every operation costs one or two hash lookups, whatever the capacity: a stream of
/// new valid tokens (each one evicting the oldest) must not cost a scan of the cache.
#[derive(Debug, Default)]
pub struct TokenCache {
    capacity: usize,
    // The default hasher is SipHash with a key drawn per VM, so clients cannot aim
    // tokens at one bucket.
    entries: HashMap<Rc<[u8]>, Entry>,
    /// Insertion order. An entry removed since (expired, replaced) leaves a stale item
    /// here, recognised by its sequence number and skipped.
    order: VecDeque<(u64, Rc<[u8]>)>,
    next_seq: u64,
    hits: u64,
}

#[derive(Debug)]
struct Entry {
    identity: Identity,
    seq: u64,
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

    /// The identity `token` proved, unless it has expired by `now` (then it is dropped).
    pub fn get(&mut self, token: &[u8], now: u64) -> Option<Identity> {
        let entry = self.entries.get(token)?;
        if entry.identity.expires.is_some_and(|exp| exp > now as f64) {
            self.hits += 1;
            return Some(entry.identity.clone());
        }
        self.entries.remove(token);
        None
    }

    /// How many lookups found a live entry so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Remembers a verified token; tokens without `exp` are not kept.
    pub fn insert(&mut self, token: &str, identity: Identity) {
        if self.capacity == 0 || identity.expires.is_none() {
            return;
        }
        self.entries.remove(token.as_bytes());
        while self.entries.len() >= self.capacity {
            self.evict_oldest();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let token: Rc<[u8]> = Rc::from(token.as_bytes());
        self.order.push_back((seq, Rc::clone(&token)));
        self.entries.insert(token, Entry { identity, seq });
        // Stale items are dropped as eviction reaches them; should expiries keep the
        // cache below capacity, they are swept here, at most once per `capacity` inserts.
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order
                .retain(|(seq, token)| entries.get(token).is_some_and(|e| e.seq == *seq));
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

    fn evict_oldest(&mut self) {
        while let Some((seq, token)) = self.order.pop_front() {
            if self.entries.get(&token).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&token);
                return;
            }
        }
        // Unreachable while every entry has its item in `order`; never loop on it.
        self.entries.clear();
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
        cache.insert("t1", identity("alice", Some(100)));
        assert_eq!(cache.get(b"t1", 50).map(|i| i.user), Some("alice".into()));
        assert!(cache.get(b"t2", 50).is_none());
        assert_eq!(cache.hits(), 1);
    }

    #[test]
    fn only_the_identical_token_hits() {
        let mut cache = TokenCache::new(4);
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
        cache.insert(token, identity("alice", Some(100)));
        for other in [
            &token[..token.len() - 1],
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lo",
        ] {
            assert!(cache.get(other.as_bytes(), 50).is_none(), "{other}");
        }
        assert!(cache.get(token.as_bytes(), 50).is_some());
    }

    #[test]
    fn inserting_again_replaces_and_renews() {
        let mut cache = TokenCache::new(2);
        cache.insert("t1", identity("alice", Some(100)));
        cache.insert("t2", identity("bob", Some(100)));
        cache.insert("t1", identity("alice", Some(200)));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(b"t1", 150).is_some());
        // t1 was inserted last, so t2 is the oldest.
        cache.insert("t3", identity("carol", Some(100)));
        assert!(cache.get(b"t2", 50).is_none());
        assert!(cache.get(b"t1", 50).is_some());
        assert!(cache.get(b"t3", 50).is_some());
    }

    #[test]
    fn entry_never_outlives_exp() {
        let mut cache = TokenCache::new(4);
        cache.insert("t1", identity("alice", Some(100)));
        assert!(cache.get(b"t1", 100).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn token_without_exp_is_not_cached() {
        let mut cache = TokenCache::new(4);
        cache.insert("t1", identity("alice", None));
        assert!(cache.is_empty());
    }

    #[test]
    fn capacity_evicts_the_oldest_insertion() {
        let mut cache = TokenCache::new(2);
        cache.insert("a", identity("a", Some(500)));
        cache.insert("b", identity("b", Some(500)));
        assert!(cache.get(b"a", 30).is_some()); // a hit does not renew
        cache.insert("c", identity("c", Some(500)));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(b"a", 30).is_none());
        assert!(cache.get(b"b", 30).is_some());
        assert!(cache.get(b"c", 30).is_some());
    }

    #[test]
    fn a_stream_of_new_tokens_keeps_the_cache_at_capacity() {
        let mut cache = TokenCache::new(8);
        for i in 0..1000 {
            cache.insert(&format!("t{i}"), identity("u", Some(500)));
            assert!(cache.len() <= 8);
            assert!(cache.order.len() <= 2 * 8, "{}", cache.order.len());
        }
        for i in 992..1000 {
            assert!(cache.get(format!("t{i}").as_bytes(), 30).is_some(), "t{i}");
        }
    }

    #[test]
    fn expiries_below_capacity_do_not_grow_the_order_without_bound() {
        let mut cache = TokenCache::new(4);
        for i in 0..1000u64 {
            let token = format!("t{i}");
            cache.insert(&token, identity("u", Some(i + 1)));
            // Looked up after its expiry: dropped, leaving a stale item in `order`.
            assert!(cache.get(token.as_bytes(), i + 1).is_none());
            assert!(cache.order.len() <= 2 * 4 + 1, "{}", cache.order.len());
        }
        assert!(cache.is_empty());
    }

    #[test]
    fn zero_capacity_disables() {
        let mut cache = TokenCache::new(0);
        assert!(!cache.enabled());
        cache.insert("t", identity("a", Some(500)));
        assert!(cache.is_empty());
    }

    #[test]
    fn clear_forgets_everything() {
        let mut cache = TokenCache::new(2);
        cache.insert("t", identity("a", Some(500)));
        cache.clear();
        assert!(cache.get(b"t", 2).is_none());
    }
}
