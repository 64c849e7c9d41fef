//! The root context of a VM: configuration, the key-set refresher, and waking waiting requests.

use super::abi;
use super::credentials::CredentialFetcher;
use super::keys::Fetcher;
use super::request::{Http, Request};
use super::vm::Vm;
use super::{now_ms, now_secs};
use crate::config::Config;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Tick period: how quickly a waiting request sees keys another VM fetched.
const TICK: Duration = Duration::from_millis(100);

pub struct Root {
    vm: Option<Rc<RefCell<Vm>>>,
    fetcher: Fetcher,
    credentials: CredentialFetcher,
}

impl Root {
    pub fn new(_context_id: u32) -> Self {
        Root {
            vm: None,
            fetcher: Fetcher::default(),
            credentials: CredentialFetcher::default(),
        }
    }

    /// Retries every waiting request whose keys changed or whose deadline passed.
    fn wake_waiters(&mut self, now_ms: u64) {
        let Some(vm) = self.vm.clone() else { return };
        let mut vm = vm.borrow_mut();
        if vm.waiters.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut vm.waiters);
        for mut w in waiters {
            let Some(request) = w.request.upgrade() else {
                continue;
            };
            let timed_out = now_ms >= w.deadline_ms;
            if vm.generation == w.generation && !timed_out {
                vm.waiters.push(w);
                continue;
            }
            let Ok(mut request) = request.try_borrow_mut() else {
                vm.waiters.push(w);
                continue;
            };
            if hostcalls::set_effective_context(w.context_id).is_err() {
                continue;
            }
            let _log = request.log_scope();
            if request.retry(&mut vm, timed_out) {
                w.generation = vm.generation;
                vm.waiters.push(w);
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(vm) = self.vm.clone() else { return };
        let now = now_secs();
        let handled = {
            let mut vm = vm.borrow_mut();
            self.fetcher.on_response(&mut vm, token_id, body_size, now)
                || self
                    .credentials
                    .on_response(&mut vm, token_id, body_size, now)
        };
        if handled {
            self.wake_waiters(now_ms());
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        super::follow_host_log_level();
        let raw = if size == 0 {
            Vec::new()
        } else {
            abi::buffer(BufferType::PluginConfiguration, 0, size).unwrap_or_default()
        };
        match Config::load(&raw, |name| std::env::var(name).ok()) {
            Ok(config) => {
                super::logging::set_format(config.log_format);
                if config.auth_bypass {
                    log::warn!(
                        "AIGW_AUTH__BYPASS_EXTERNAL=true: AUTHENTICATION IS DISABLED, every request is accepted \
                         without a token. Use only for development."
                    );
                }
                match &config.knowledge_base {
                    Some(kb) => log::info!(
                        "documentation search: knowledge base {} at {} (region {})",
                        kb.id,
                        kb.endpoint.authority(),
                        kb.endpoint.region
                    ),
                    // Once per Envoy process, not once per VM (docs/gitlab-contract.md#documentation-search).
                    None if super::shared::claim_once("duo_bedrock.kb_unconfigured_warned") => {
                        log::warn!(
                            "AIGW_BEDROCK_KNOWLEDGE_BASE_ID is not set: documentation search \
                             (POST /v1/search/gitlab-docs) answers no results, so Duo Chat answers \
                             documentation questions from the model alone (deploy/aws/knowledge-base.md)"
                        )
                    }
                    None => {}
                }
                log::info!(
                    "duo-bedrock filter configured: Bedrock {} (region {}), GitLab {}, audience {}",
                    config.endpoint.authority(),
                    config.endpoint.region,
                    config
                        .providers
                        .iter()
                        .map(|p| p.base_url.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    config.auth.audience
                );
                // The first tick (not configure time: clusters may not be ready) fetches the keys.
                self.vm = Some(Rc::new(RefCell::new(Vm::new(Rc::new(config)))));
                self.set_tick_period(TICK);
                true
            }
            Err(e) => {
                log::error!("invalid configuration, refusing to start: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        super::follow_host_log_level();
        let Some(vm) = self.vm.clone() else { return };
        {
            let mut vm = vm.borrow_mut();
            if !vm.config.auth_bypass {
                self.fetcher.tick(&mut vm, now_secs());
            }
            self.credentials.tick(&mut vm, now_secs());
        }
        self.wake_waiters(now_ms());
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let vm = self.vm.clone()?;
        let request = Rc::new(RefCell::new(Request::new(vm, context_id)));
        request.borrow_mut().set_this(Rc::downgrade(&request));
        Some(Box::new(Http::new(request)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
