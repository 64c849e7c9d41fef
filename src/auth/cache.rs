//! A bounded per-VM cache of verified tokens.
//!
//! RS256 verification dominates the filter's CPU cost (docs/envoy-proxy-wasm.md#rs256-cost: ~1.4 ms
//! per token in Envoy's V8 against ~20 µs for a cache hit), and GitLab clients reuse tokens, so
//! the host keeps the claims of tokens it has verified.
//!
//! - Key: SHA-256 of the token ([`TokenKey`], computed once by the caller and used for the lookup
//!   and the insertion after a miss); the token itself is not kept.
//! - A hit re-checks `exp`/`nbf` against the host clock; an expired entry is removed and
//!   reported as a miss.
//! - At most `capacity` entries (default 1024). When full, expired entries go first, then the
//!   oldest insertion.
//! - The host must [`clear`](TokenCache::clear) the cache whenever the key set changes
//!   (a removed key must not keep its tokens alive).
//! - Claim/header bindings are NOT cached: the host runs `check_bindings` on every request.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::rules::Claims;

/// Default number of cached tokens.
pub const DEFAULT_CAPACITY: usize = 1024;

struct Entry {
    claims: Claims,
    seq: u64,
}

/// What the cache knows a token by: its SHA-256, computed once per request and used for both
/// the lookup and the insertion after a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    pub fn of(token: &str) -> Self {
        TokenKey(Sha256::digest(token.as_bytes()).into())
    }
}

/// Verified tokens by SHA-256.
pub struct TokenCache {
    map: HashMap<TokenKey, Entry>,
    capacity: usize,
    leeway: u64,
    next_seq: u64,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(DEFAULT_CAPACITY, 0)
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables caching); `leeway_secs` as in
    /// `AuthConfig::leeway_secs`.
    pub fn new(capacity: usize, leeway_secs: u64) -> Self {
        TokenCache {
            map: HashMap::new(),
            capacity,
            leeway: leeway_secs,
            next_seq: 0,
        }
    }

    /// The cached claims of the token `key` names if still time-valid at `now`.
    pub fn get(&mut self, key: &TokenKey, now: u64) -> Option<Claims> {
        let entry = self.map.get(key)?;
        if entry.claims.time_valid(now, self.leeway) {
            return Some(entry.claims.clone());
        }
        // Expired (or, after a clock jump back, not yet valid): drop it.
        self.map.remove(key);
        None
    }

    /// Remember a token that `verify` accepted at `now`. Tokens not time-valid at `now` are
    /// not stored.
    pub fn insert(&mut self, key: TokenKey, claims: Claims, now: u64) {
        if self.capacity == 0 || !claims.time_valid(now, self.leeway) {
            return;
        }
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            self.evict(now);
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.map.insert(key, Entry { claims, seq });
    }

    fn evict(&mut self, now: u64) {
        let leeway = self.leeway;
        self.map.retain(|_, e| e.claims.time_valid(now, leeway));
        while self.map.len() >= self.capacity {
            let oldest = self.map.iter().min_by_key(|(_, e)| e.seq).map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.map.remove(&k);
                }
                None => break,
            }
        }
    }

    /// Forget everything (call when the key set changes).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// `true` when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Maximum number of cached tokens.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(token: &str) -> TokenKey {
        TokenKey::of(token)
    }

    fn claims(exp: u64, nbf: Option<u64>) -> Claims {
        Claims {
            exp,
            nbf,
            sub: Some("s".into()),
            ..Claims::default()
        }
    }

    #[test]
    fn hit_miss_and_expiry() {
        let mut c = TokenCache::default();
        assert_eq!(c.capacity(), DEFAULT_CAPACITY);
        assert!(c.get(&k("t1"), 100).is_none());
        c.insert(k("t1"), claims(200, Some(90)), 100);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&k("t1"), 150).unwrap().sub.as_deref(), Some("s"));
        assert!(c.get(&k("t2"), 150).is_none());
        assert!(c.get(&k("t1"), 200).is_some(), "exp == now still valid");
        assert!(c.get(&k("t1"), 201).is_none(), "expired");
        assert!(c.is_empty(), "expired entry removed");
        assert!(c.get(&k("t1"), 150).is_none(), "stays removed");
    }

    #[test]
    fn nbf_rechecked_and_leeway() {
        let mut c = TokenCache::new(4, 10);
        c.insert(k("t"), claims(100, Some(50)), 45);
        assert_eq!(c.len(), 1, "nbf within leeway at insert");
        assert!(
            c.get(&k("t"), 39).is_none(),
            "clock went back before nbf - leeway"
        );
        c.insert(k("t"), claims(100, Some(50)), 60);
        assert!(c.get(&k("t"), 110).is_some(), "exp + leeway");
        assert!(c.get(&k("t"), 111).is_none());
    }

    #[test]
    fn does_not_store_invalid_or_when_disabled() {
        let mut c = TokenCache::default();
        c.insert(k("old"), claims(10, None), 11);
        assert!(c.is_empty());
        let mut off = TokenCache::new(0, 0);
        off.insert(k("t"), claims(100, None), 1);
        assert!(off.is_empty());
        assert!(off.get(&k("t"), 1).is_none());
    }

    #[test]
    fn capacity_evicts_expired_first_then_oldest() {
        let mut c = TokenCache::new(3, 0);
        c.insert(k("a"), claims(1000, None), 0);
        c.insert(k("b"), claims(50, None), 0);
        c.insert(k("c"), claims(1000, None), 0);
        // Full; at t=100 "b" is expired and goes first.
        c.insert(k("d"), claims(1000, None), 100);
        assert_eq!(c.len(), 3);
        assert!(c.get(&k("a"), 100).is_some());
        assert!(c.get(&k("c"), 100).is_some());
        assert!(c.get(&k("d"), 100).is_some());
        // Full of live tokens: the oldest insertion ("a") goes.
        c.insert(k("e"), claims(1000, None), 100);
        assert_eq!(c.len(), 3);
        assert!(c.get(&k("a"), 100).is_none());
        assert!(c.get(&k("e"), 100).is_some());
        // Re-inserting a present token does not evict anything.
        c.insert(k("c"), claims(1000, None), 100);
        assert_eq!(c.len(), 3);
        assert!(c.get(&k("d"), 100).is_some());
    }

    #[test]
    fn flood_stays_bounded() {
        let mut c = TokenCache::new(1024, 0);
        for i in 0..10_000u32 {
            c.insert(k(&format!("token-{i}")), claims(1_000_000, None), 0);
            assert!(c.len() <= 1024);
        }
        assert_eq!(c.len(), 1024);
        // The newest survive.
        assert!(c.get(&k("token-9999"), 1).is_some());
        assert!(c.get(&k("token-0"), 1).is_none());
    }

    #[test]
    fn clear_and_distinct_keys() {
        let mut c = TokenCache::default();
        c.insert(k("x"), claims(100, None), 0);
        c.insert(k("x "), claims(100, None), 0);
        assert_eq!(c.len(), 2);
        c.clear();
        assert!(c.is_empty());
        assert!(c.get(&k("x"), 0).is_none());
    }
}
