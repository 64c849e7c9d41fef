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

/// Milliseconds since the epoch from the host clock (never the WASI clock). Inside a
/// [`ClockScope`] (one per Envoy callback of a request) the host is asked once and every later
/// reading of the same callback gets that instant: a hostcall costs microseconds in Envoy's V8
/// (docs/performance.md), and one callback's work takes far less than the millisecond resolution
/// of what the times are used for. Outside a scope every reading asks the host, so a callback
/// path without one is only slower, never given a stale time.
pub(crate) fn now_ms() -> u64 {
    CALLBACK_NOW_MS.with(|cached| match cached.get() {
        Some(Some(ms)) => ms,
        Some(None) => {
            let ms = host_now_ms();
            cached.set(Some(Some(ms)));
            ms
        }
        None => host_now_ms(),
    })
}

pub(crate) fn now_secs() -> u64 {
    now_ms() / 1000
}

fn host_now_ms() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

thread_local! {
    /// `None`: no scope (ask the host every time); `Some(None)`: in a scope, not read yet;
    /// `Some(Some(ms))`: the callback's instant.
    static CALLBACK_NOW_MS: std::cell::Cell<Option<Option<u64>>> = const { std::cell::Cell::new(None) };
}

/// One callback's clock: readings of [`now_ms`] share one host reading while it lives.
pub(crate) struct ClockScope(());

impl ClockScope {
    pub(crate) fn enter() -> ClockScope {
        CALLBACK_NOW_MS.with(|c| c.set(Some(None)));
        ClockScope(())
    }
}

impl Drop for ClockScope {
    fn drop(&mut self) {
        CALLBACK_NOW_MS.with(|c| c.set(None));
    }
}
