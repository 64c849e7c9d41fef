//! One HTTP request through the filter: the adapter between Envoy and the core.
//!
//! GitLab request → (headers) route + JWT → (body) typed plan → Bedrock request, signed →
//! forwarded; Bedrock answer → (headers) mode → (body) GitLab answer, streamed or buffered.
//! Everything that decides lives in the core modules; this file only moves bytes.
//!
//! One file per phase: [`auth`] (headers: route, public answers, JWT, waits), [`forward`]
//! (body: plan, build, sign, forward), [`respond`] (the upstream answer to GitLab's), [`report`]
//! (the log line and metrics). This file holds the request's state and the Envoy callbacks.

mod auth;
mod forward;
mod report;
mod respond;

use super::abi;
use super::keys::request_refresh;
use super::logging::{self, RequestScope};
use super::vm::{Vm, Waiter};
use super::{now_ms, now_secs, ClockScope};
use crate::auth::cache::TokenKey;
use crate::auth::error::AuthError;
use crate::auth::rules::{
    check_bindings, extract_token, verify_with, Claims, SignatureCheck, VerifiedBy,
};
use crate::auth::scopes::{authorize, Requirement};
use crate::bedrock::errors::parse_error;
use crate::bedrock::eventstream::{EventStreamDecoder, StreamFrame};
use crate::bedrock::invoke::{build, UpstreamAuth, UpstreamRequest};
use crate::bedrock::messages::MessagesResponse;
use crate::bedrock::retrieve;
use crate::bedrock::stream::StreamEvent;
use crate::config::{
    Upstream, JWT_AUTHN_PAYLOAD_KEY, UPSTREAM_BEDROCK, UPSTREAM_BEDROCK_AGENT,
    UPSTREAM_MARKER_PROPERTY,
};
use crate::gitlab::docs_search::{self, SearchAction, SearchContext, SearchResponder};
use crate::gitlab::errors::{self, EnvoyFailure, Family, GitlabError};
use crate::gitlab::routes::{classify, Route};
use crate::gitlab::service_page::public_answer;
use crate::gitlab::{plan, unplanned, Endpoint, RequestContext, Responder, ScopeCheck};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::{Duration, UNIX_EPOCH};

/// Bodies above this are refused before parsing (Rails sends at most 600 000 bytes).
const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;
/// A buffered Bedrock answer read at its trailers (the cluster buffer limit is 16 MiB).
const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

/// The HTTP context Envoy talks to; the state is shared with the root for key waits.
pub struct Http(Rc<RefCell<Request>>);

impl Http {
    pub fn new(request: Rc<RefCell<Request>>) -> Self {
        Http(request)
    }
}

enum Auth {
    /// Not checked yet.
    Pending,
    /// Waiting for the key set (first load or refresh).
    Waiting,
    /// Accepted; `None` when auth is bypassed by configuration.
    Done(Option<Claims>),
}

enum Outcome {
    Accepted(Claims),
    Wait,
    Rejected(AuthError),
}

/// How the upstream answer is being turned into GitLab's.
enum ResponseMode {
    Undecided,
    /// Bedrock streams (200): translate each chunk as it arrives.
    Streaming {
        decoder: EventStreamDecoder,
        started: bool,
        finished: bool,
    },
    /// Buffer the whole answer, then translate: a Bedrock JSON message.
    Success,
    /// A Bedrock error answer.
    BedrockError {
        status: u16,
        error_type: Option<String>,
        retry_after: Option<String>,
    },
    /// Envoy answered itself (timeout, reset, connect failure).
    EnvoyError {
        details: String,
    },
}

/// The upstream call in flight, and what turns its answer into GitLab's.
enum Forwarded {
    /// A model call (InvokeModel or its stream): the endpoint family's responder.
    Model {
        responder: Box<dyn Responder>,
        stream: bool,
        family: Family,
    },
    /// A knowledge base `Retrieve` (documentation search): always a JSON answer.
    Search(SearchResponder),
}

pub struct Request {
    vm: Rc<RefCell<Vm>>,
    /// This request's own cell, for the waiter list (set right after creation).
    this: Weak<RefCell<Request>>,
    context_id: u32,
    /// Waiting for refreshed AWS credentials (first fetch), and whether that wait timed out.
    creds_waiting: bool,
    creds_timed_out: bool,
    started_ms: u64,
    route: Route,
    auth: Auth,
    body_complete: bool,
    body_size: usize,
    /// Set once the filter answered locally: its own reply passes back through the
    /// response callbacks, which must leave it alone.
    local_reply: bool,
    forwarded: Option<Forwarded>,
    response: ResponseMode,
    /// What the one log line and the metrics of this request report.
    record: Record,
    /// The client's `:scheme` and `X-Request-ID` (Envoy sets one when absent), kept for the
    /// forwarded request, whose header map is replaced as a whole.
    scheme: String,
    request_id_header: Option<String>,
    /// `x-gitlab-enabled-feature-flags` and `x-gitlab-version`, for the plan; taken from the
    /// header map read once in the headers phase (no second hostcall when forwarding).
    feature_flags: Option<String>,
    gitlab_version: Option<String>,
}

impl Record {
    fn auth_failed(&mut self, e: &AuthError) {
        self.auth_failure = Some(e.reason());
        let detail = e.to_string();
        self.auth_detail = (detail != e.reason()).then_some(detail);
    }
}

/// Facts about one request for its log line and metrics (never a secret, a token or a prompt).
#[derive(Default)]
struct Record {
    request_id: String,
    status: u16,
    feature: &'static str,
    model: String,
    bedrock_request_id: String,
    input_tokens: u64,
    output_tokens: u64,
    forwarded_ms: u64,
    first_token_ms: u64,
    upstream_done_ms: u64,
    auth_failure: Option<&'static str>,
    /// The failure with its detail when it has one (which header did not match its claim).
    auth_detail: Option<String>,
    error_type: Option<String>,
    stream_exception: bool,
    /// `x-gitlab-enabled-instance-verbose-ai-logs: true`: prompts and answers may be logged.
    verbose: bool,
    /// The streamed answer, kept only in verbose mode (bounded).
    answer: String,
}

impl Request {
    pub fn new(vm: Rc<RefCell<Vm>>, context_id: u32) -> Self {
        Request {
            vm,
            this: Weak::new(),
            context_id,
            creds_waiting: false,
            creds_timed_out: false,
            started_ms: 0,
            route: Route::Unknown,
            auth: Auth::Pending,
            body_complete: false,
            body_size: 0,
            local_reply: false,
            forwarded: None,
            response: ResponseMode::Undecided,
            record: Record::default(),
            scheme: String::new(),
            request_id_header: None,
            feature_flags: None,
            gitlab_version: None,
        }
    }

    fn process_time(&self) -> String {
        crate::gitlab::response::process_time(now_ms().saturating_sub(self.started_ms))
    }

    fn reply(&mut self, status: u16, body: &[u8], extra: &[(String, String)]) {
        let time = self.process_time();
        let content_type = extra
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map_or("application/json", |(_, v)| v.as_str());
        let mut headers: Vec<(&str, &str)> =
            vec![("content-type", content_type), ("x-process-time", &time)];
        headers.extend(
            extra
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        self.local_reply = true;
        self.record.status = status;
        if !abi::send_response(status, &headers, body) {
            log::warn!("could not send a local reply ({status})");
        }
    }

    fn reply_error(&mut self, e: &GitlabError) {
        self.reply(e.status, e.body.as_bytes(), &e.headers);
    }

    /// Messages logged until the scope is dropped carry this request's id (JSON logs).
    pub fn log_scope(&self) -> RequestScope {
        RequestScope::enter(&self.record.request_id)
    }

    pub fn set_this(&mut self, this: Weak<RefCell<Request>>) {
        self.this = this;
    }

    /// Queues this request until the keys or credentials change, or `key_wait_ms` passes.
    fn wait(&self, vm: &mut Vm) {
        vm.waiters.push(Waiter {
            context_id: self.context_id,
            deadline_ms: now_ms() + vm.config.key_wait_ms,
            generation: vm.generation,
            request: self.this.clone(),
        });
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Pause;
        };
        let _log = request.log_scope();
        let _clock = ClockScope::enter();
        request.on_request_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Pause;
        };
        let _log = request.log_scope();
        let _clock = ClockScope::enter();
        request.on_request_body(body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Pause;
        };
        let _log = request.log_scope();
        let _clock = ClockScope::enter();
        request.on_request_trailers()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Continue;
        };
        let _log = request.log_scope();
        let _clock = ClockScope::enter();
        request.on_response_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Continue;
        };
        let _log = request.log_scope();
        let _clock = ClockScope::enter();
        request.on_response_body(body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Continue;
        };
        let _log = request.log_scope();
        let _clock = ClockScope::enter();
        request.on_response_trailers()
    }

    fn on_log(&mut self) {
        if let Ok(mut request) = self.0.try_borrow_mut() {
            let _log = request.log_scope();
            let _clock = ClockScope::enter();
            request.on_log();
        }
    }
}
