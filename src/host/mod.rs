//! The proxy-wasm adapter: the only code that calls proxy-wasm hostcalls.
//!
//! - [`root`]: one root context per VM (one VM per Envoy worker): loads the configuration,
//!   keeps the GitLab key set fresh ([`keys`]) and wakes requests that wait for keys.
//! - [`request`]: one HTTP context per request: moves bytes between Envoy and the core
//!   (`auth`, `gitlab`, `bedrock`), nothing else.
//! - [`vm`]: the state the root and the requests of one VM share.

mod abi;
mod credentials;
mod keys;
pub(crate) mod logging;
mod metrics;
mod request;
mod root;
mod shared;
mod vm;

use proxy_wasm::types::LogLevel;

pub fn start() {
    // Also installs a panic hook that logs through proxy_log (a panic would kill the VM).
    logging::init(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
}

/// Logs at the host's level for this VM (Envoy's `wasm` logger, changeable at runtime through
/// the admin `/logging` page): messages the host would drop are then never formatted.
pub(crate) fn follow_host_log_level() {
    if let Ok(level) = proxy_wasm::hostcalls::get_log_level() {
        logging::set_level(level);
    }
}

/// Seconds and milliseconds since the epoch from the host clock (never the WASI clock).
pub(crate) fn now_ms() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn now_secs() -> u64 {
    now_ms() / 1000
}
