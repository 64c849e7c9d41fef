//! State shared by the root context and the HTTP contexts of one VM (one Envoy worker).
//!
//! A VM is single-threaded, so `Rc<RefCell<_>>` is enough. Across VMs, state goes
//! through proxy-wasm shared data (see `keys`).

use super::metrics::Metrics;
use super::request::Request;
use crate::auth::cache::TokenCache;
use crate::auth::keys::KeySet;
use crate::bedrock::credentials::Fetched;
use crate::config::Config;
use std::cell::RefCell;
use std::rc::{Rc, Weak};

/// A request that waits for the key set (first load, or a refresh after an unknown `kid`).
pub struct Waiter {
    pub context_id: u32,
    /// Give up (401) after this time, in host milliseconds.
    pub deadline_ms: u64,
    /// The key-set generation the request already tried.
    pub generation: u64,
    pub request: Weak<RefCell<Request>>,
}

pub struct Vm {
    pub config: Rc<Config>,
    /// The merged key set of every provider, `None` until one was loaded.
    pub keys: Option<Rc<KeySet>>,
    /// Bumped each time `keys` or `aws` changes (waiting requests then retry).
    pub generation: u64,
    pub cache: TokenCache,
    pub waiters: Vec<Waiter>,
    /// True while a key fetch is in flight somewhere (any VM), as last seen.
    pub fetch_in_flight: bool,
    pub metrics: Metrics,
    /// Refreshed AWS credentials (container endpoint / IMDS), when configured so.
    pub aws: Option<Rc<Fetched>>,
}

impl Vm {
    pub fn new(config: Rc<Config>) -> Self {
        Vm {
            cache: TokenCache::new(config.token_cache_size, config.auth.leeway_secs),
            config,
            keys: None,
            generation: 0,
            waiters: Vec::new(),
            fetch_in_flight: false,
            metrics: Metrics::default(),
            aws: None,
        }
    }
}
