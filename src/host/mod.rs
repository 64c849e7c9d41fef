//! The proxy-wasm adapter: the one place that calls proxy-wasm hostcalls.
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

pub fn start() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
}

struct Root;
impl Context for Root {}
impl RootContext for Root {}
