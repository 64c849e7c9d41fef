//! One refreshed value shared by every VM (worker) through proxy-wasm shared data, so one
//! fetch serves all workers: the GitLab key sets (`keys`) and refreshed AWS credentials
//! (`credentials`) both use it.
//!
//! Under a name `N`, shared data holds
//! - `N`: a [`Record`] (the payload and its schedule), read-modify-written with CAS, and
//! - `N.lease`: who fetches now (an expiry time, claimed with CAS), so that normally one VM
//!   fetches while the others pick the result up on their next tick.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use serde::{Deserialize, Serialize};

/// A claimed lease expires after this long (a fetch is at most a few calls of ≤ 10 s).
pub const LEASE_SECS: u64 = 25;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Record {
    /// The shared value (canonical JWKS JSON, serialized credentials); empty until fetched once.
    #[serde(default)]
    pub payload: String,
    #[serde(default)]
    pub fetched_at: u64,
    #[serde(default)]
    pub next_refresh_at: u64,
    /// Last early refresh asked for (rate limit of unknown-`kid` refreshes).
    #[serde(default)]
    pub forced_at: u64,
    /// Consecutive failed fetches.
    #[serde(default)]
    pub failures: u32,
}

/// True for the first VM of the Envoy process that asks for `key`: for one-time notices (a start
/// warning) that every VM would otherwise repeat. Envoy configures the main thread's VMs before
/// the workers start theirs (measured on 1.40: two configures on the main thread, then one per
/// worker), so the first claim is not raced in practice; a VM reloaded later finds the key.
pub fn claim_once(key: &str) -> bool {
    match hostcalls::get_shared_data(key) {
        Ok((Some(_), _)) => false,
        Ok((None, _)) | Err(_) => hostcalls::set_shared_data(key, Some(b"1"), None).is_ok(),
    }
}

/// A shared value's name: `duo_bedrock.<what>`.
#[derive(Debug, Clone)]
pub struct Shared {
    name: String,
    lease: String,
}

impl Shared {
    pub fn new(name: String) -> Self {
        let lease = format!("{name}.lease");
        Shared { name, lease }
    }

    /// The record and its CAS (changes each time any VM writes it).
    pub fn read(&self) -> (Option<Record>, Option<u32>) {
        match hostcalls::get_shared_data(&self.name) {
            Ok((Some(bytes), cas)) => (serde_json::from_slice(&bytes).ok(), cas),
            Ok((None, cas)) => (None, cas),
            Err(_) => (None, None),
        }
    }

    /// True when nothing was fetched yet or the schedule says so.
    pub fn due(&self, now: u64) -> bool {
        self.read()
            .0
            .as_ref()
            .is_none_or(|r| now >= r.next_refresh_at)
    }

    /// Read-modify-write with CAS (`f` returns false to leave it as is); gives up after a few lost races.
    pub fn update(&self, mut f: impl FnMut(&mut Record) -> bool) -> bool {
        for _ in 0..5 {
            let (record, cas) = self.read();
            let mut record = record.unwrap_or_default();
            if !f(&mut record) {
                return false;
            }
            let Ok(bytes) = serde_json::to_vec(&record) else {
                return false;
            };
            match hostcalls::set_shared_data(&self.name, Some(&bytes), cas) {
                Ok(()) => return true,
                Err(Status::CasMismatch) => continue,
                Err(_) => return false,
            }
        }
        false
    }

    fn lease_expiry(&self) -> (Option<u64>, Option<u32>) {
        let (value, cas) = hostcalls::get_shared_data(&self.lease).unwrap_or((None, None));
        let expiry = value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|s| s.parse().ok());
        (expiry, cas)
    }

    pub fn lease_held(&self, now: u64) -> bool {
        self.lease_expiry().0.is_some_and(|t| t > now)
    }

    /// Claims the lease for [`LEASE_SECS`]; false when another fetch holds it.
    pub fn claim_lease(&self, now: u64) -> bool {
        let (expiry, cas) = self.lease_expiry();
        if expiry.is_some_and(|t| t > now) {
            return false;
        }
        let until = (now + LEASE_SECS).to_string();
        hostcalls::set_shared_data(&self.lease, Some(until.as_bytes()), cas).is_ok()
    }

    pub fn release_lease(&self) {
        let _ = hostcalls::set_shared_data(&self.lease, Some(b"0"), None);
    }

    /// Records a failed fetch: keeps the payload, retries at `retry_at(failures)`; returns the count.
    pub fn failed(&self, retry_at: impl Fn(u32) -> u64) -> u32 {
        let mut failures = 0;
        self.update(|r| {
            r.failures = r.failures.saturating_add(1);
            failures = r.failures;
            r.next_refresh_at = retry_at(r.failures);
            true
        });
        self.release_lease();
        failures
    }

    /// Records a successful fetch and releases the lease.
    pub fn stored(&self, payload: &str, now: u64, next_refresh_at: u64) -> bool {
        let ok = self.update(|r| {
            r.payload = payload.to_string();
            r.fetched_at = now;
            r.next_refresh_at = next_refresh_at;
            r.failures = 0;
            true
        });
        self.release_lease();
        ok
    }
}
