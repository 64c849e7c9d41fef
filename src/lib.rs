//! GitLab AI Gateway drop-in for Envoy: a proxy-wasm filter in front of Amazon Bedrock.
//!
//! Wiring only. The host-independent core lives in `auth`, `gitlab`, `prompts`,
//! `bedrock`, `config` and `civil` (calendar arithmetic); `host` is the one place that calls proxy-wasm.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod auth;
pub mod bedrock;
pub mod civil;
pub mod config;
pub mod gitlab;
pub mod json_skip;
pub mod logline;
pub mod prompts;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    host::start();
}}
