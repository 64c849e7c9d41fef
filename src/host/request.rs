//! One HTTP request through the filter: the adapter between Envoy and the core.
//!
//! GitLab request → (headers) route + JWT → (body) typed plan → Bedrock request, signed →
//! forwarded; Bedrock answer → (headers) mode → (body) GitLab answer, streamed or buffered.
//! Everything that decides lives in the core modules; this file only moves bytes.

use super::abi;
use super::keys::request_refresh;
use super::vm::{Vm, Waiter};
use super::{now_ms, now_secs};
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
        }
    }

    fn process_time(&self) -> String {
        format!(
            "{:.6}",
            now_ms().saturating_sub(self.started_ms) as f64 / 1000.0
        )
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

    fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        self.started_ms = now_ms();
        let headers = abi::header_map(MapType::HttpRequestHeaders);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        self.route = classify(header(":method"), header(":path"));
        self.record.request_id = header("x-request-id").chars().take(128).collect();
        // Forwarded to Bedrock only when it is plain visible ASCII (GitLab's ids are).
        self.request_id_header = Some(header("x-request-id"))
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_string);
        self.scheme = match header(":scheme") {
            "" => "http".to_string(),
            s => s.to_string(),
        };
        self.record.verbose = header("x-gitlab-enabled-instance-verbose-ai-logs") == "true";
        let vm = self.vm.clone();
        let missing = || not_ready(&vm.borrow());
        if let Some(page) = public_answer(&self.route, &missing) {
            self.reply(page.status, &page.body, &page.headers);
            return Action::Pause;
        }
        if self.vm.borrow().config.crash_injection {
            match header("x-duo-bedrock-crash") {
                "now" => {
                    log::warn!("fault injection: crashing this VM on request (DUO_BEDROCK_FAULT_INJECTION=crash)");
                    #[allow(clippy::panic)]
                    {
                        panic!("fault injection: x-duo-bedrock-crash");
                    }
                }
                // A callback path that forgets to plan the request: Envoy's routes must refuse it.
                "pass" => {
                    log::warn!("fault injection: passing this request on unplanned (DUO_BEDROCK_FAULT_INJECTION=crash)");
                    return Action::Continue;
                }
                _ => {}
            }
        }
        let vm = self.vm.clone();
        let mut vm = vm.borrow_mut();
        if vm.config.auth_bypass {
            self.auth = Auth::Done(None);
        } else {
            match authenticate(&mut vm, &headers) {
                Outcome::Accepted(claims) => self.auth = Auth::Done(Some(claims)),
                Outcome::Wait => {
                    self.auth = Auth::Waiting;
                    self.wait(&mut vm);
                }
                Outcome::Rejected(e) => {
                    self.record.auth_failed(&e);
                    self.reply(e.status(), e.body().as_bytes(), &[]);
                    return Action::Pause;
                }
            }
        }
        if end_of_stream {
            self.body_complete = true;
        }
        self.after_auth(&mut vm).unwrap_or(Action::Pause)
    }

    /// Once authenticated: route, and forward when the body is complete. `None` = keep waiting.
    fn after_auth(&mut self, vm: &mut Vm) -> Option<Action> {
        if !matches!(self.auth, Auth::Done(_)) {
            return None;
        }
        if Endpoint::from_route(&self.route).is_none() && self.route != Route::DocsSearch {
            let header = |name: &str| abi::header(MapType::HttpRequestHeaders, name);
            let claims = match &self.auth {
                Auth::Done(c) => c.as_ref(),
                _ => None,
            };
            let e = unplanned(&self.route, claims, &header);
            self.reply_error(&e);
            return Some(Action::Pause);
        }
        if !self.body_complete {
            return None;
        }
        self.forward(vm)
    }

    /// Called by the root when keys or credentials changed, or the wait timed out.
    /// True = keep this waiter queued.
    pub fn retry(&mut self, vm: &mut Vm, timed_out: bool) -> bool {
        if self.local_reply {
            return false;
        }
        if self.creds_waiting {
            self.creds_waiting = false;
            self.creds_timed_out = timed_out;
        } else if matches!(self.auth, Auth::Waiting) {
            if self.retry_auth(vm, timed_out) {
                return true;
            }
            if self.local_reply {
                return false;
            }
        } else {
            return false;
        }
        if let Some(Action::Continue) = self.after_auth(vm) {
            if !abi::resume_request() {
                log::warn!("could not resume a request after its wait");
            }
        }
        false
    }

    /// The JWT check again, with the keys as they are now. True = keep waiting.
    fn retry_auth(&mut self, vm: &mut Vm, timed_out: bool) -> bool {
        let headers = abi::header_map(MapType::HttpRequestHeaders);
        match authenticate(vm, &headers) {
            Outcome::Accepted(claims) => self.auth = Auth::Done(Some(claims)),
            Outcome::Wait if !timed_out => return true,
            Outcome::Wait => {
                let e = if vm.keys.is_none() {
                    log::warn!("401: no GitLab keys loaded within the wait (is AIGW_GITLAB_URL reachable?)");
                    AuthError::NoKeys
                } else {
                    log::warn!("401: the token's key id is not in the GitLab key set, even after a refresh");
                    AuthError::Forbidden("unknown_kid")
                };
                self.record.auth_failed(&e);
                self.reply(e.status(), e.body().as_bytes(), &[]);
                return false;
            }
            Outcome::Rejected(e) => {
                self.record.auth_failed(&e);
                self.reply(e.status(), e.body().as_bytes(), &[]);
                return false;
            }
        }
        false
    }

    fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.local_reply {
            return Action::Pause;
        }
        self.body_size = body_size;
        if body_size > MAX_REQUEST_BODY {
            let e = GitlabError::detail(
                413,
                &format!("Request body too large: at most {MAX_REQUEST_BODY} bytes"),
            );
            self.reply_error(&e);
            return Action::Pause;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.body_complete = true;
        let vm = self.vm.clone();
        let mut vm = vm.borrow_mut();
        self.after_auth(&mut vm).unwrap_or(Action::Pause)
    }

    /// Request trailers (HTTP/2, or HTTP/1.1 chunked when the listener enables them): the body
    /// ends here, never with `end_of_stream` on a body callback. GitLab sends none (Rails and
    /// the IDE clients speak HTTP/1.1 without trailers), so the request is refused in GitLab's
    /// format; had the callback been left to its default, Envoy would have passed the original
    /// request on unplanned (the Envoy routes refuse it too: config::UPSTREAM_MARKER_PROPERTY).
    fn on_request_trailers(&mut self) -> Action {
        if !self.local_reply {
            log::warn!("request with trailers refused (400)");
            self.record.error_type = Some("request_trailers".into());
            self.reply_error(&GitlabError::detail(
                400,
                "Request trailers are not supported",
            ));
        }
        Action::Pause
    }

    /// The credentials to sign with, for `region`; `Err(None)` while the request waits for the
    /// first refreshed AWS credentials, `Err(Some(action))` when it was answered instead.
    fn upstream_auth(&mut self, vm: &mut Vm, region: &str) -> Result<UpstreamAuth, Option<Action>> {
        let creds = match &vm.config.upstream {
            Upstream::Fixed(UpstreamAuth::SigV4 { creds, .. }) => creds.clone(),
            Upstream::Fixed(auth) => return Ok(auth.clone()),
            Upstream::Refreshing { source, .. } => {
                match vm.aws.as_ref().filter(|c| !c.is_expired(now_secs())) {
                    Some(current) => current.creds.clone(),
                    None if !self.creds_timed_out => {
                        self.creds_waiting = true;
                        self.wait(vm);
                        return Err(None);
                    }
                    None => {
                        log::warn!("no valid AWS credentials from the {} source", source.kind());
                        self.record.error_type = Some("no_credentials".into());
                        let e = GitlabError::detail(503, "No valid AWS credentials: the credential source did not answer (see the sidecar log)");
                        self.reply_error(&e);
                        return Err(Some(Action::Pause));
                    }
                }
            }
        };
        Ok(UpstreamAuth::SigV4 {
            creds,
            region: region.to_string(),
        })
    }

    /// Builds, signs and forwards the Bedrock request; or answers locally. Returns the action
    /// for the current callback (`Continue` = the rewritten request goes upstream), `None`
    /// while it waits for the first refreshed AWS credentials.
    fn forward(&mut self, vm: &mut Vm) -> Option<Action> {
        if self.route == Route::DocsSearch {
            return self.forward_search(vm);
        }
        let Some(endpoint) = Endpoint::from_route(&self.route) else {
            return Some(Action::Pause);
        };
        let region = vm.config.endpoint.region.clone();
        let auth = match self.upstream_auth(vm, &region) {
            Ok(auth) => auth,
            Err(action) => return action,
        };
        let body = abi::buffer(BufferType::HttpRequestBody, 0, self.body_size).unwrap_or_default();
        let flags = abi::header(
            MapType::HttpRequestHeaders,
            "x-gitlab-enabled-feature-flags",
        );
        let scopes = match &self.auth {
            Auth::Done(Some(claims)) => Some(claims.scopes.as_slice()),
            _ => None,
        };
        let gitlab_version = abi::header(MapType::HttpRequestHeaders, "x-gitlab-version");
        let ctx = RequestContext {
            now_secs: now_secs(),
            enabled_feature_flags: flags.as_deref(),
            default_model: vm.config.default_model.as_deref(),
            scopes,
            gitlab_version: gitlab_version.as_deref(),
        };
        let planned = match plan(&endpoint, &body, &ctx) {
            Ok(p) => p,
            Err(e) => {
                self.reply_error(&e);
                return Some(Action::Pause);
            }
        };
        for check in &planned.scopes {
            if !self.authorized(check) {
                return Some(Action::Pause);
            }
        }
        let time = UNIX_EPOCH + Duration::from_millis(now_ms());
        let upstream = match build(&planned.invoke, &vm.config.endpoint, &auth, time) {
            Ok(u) => u,
            Err(e) => {
                log::error!("could not sign the Bedrock request: {e}");
                self.reply_error(&GitlabError::detail(
                    500,
                    "Could not sign the Bedrock request",
                ));
                return Some(Action::Pause);
            }
        };
        // A prompt's own, shorter model timeout (e.g. chat/react: 30 s) through Envoy's
        // per-request route timeout; the router consumes the header, Bedrock never sees it.
        let timeout_ms = planned
            .timeout_secs
            .map(u64::from)
            .filter(|t| *t < vm.config.upstream_timeout_secs)
            .map(|t| (t * 1000).to_string());
        let scheme = vm.config.endpoint.scheme.as_str();
        if !self.send_upstream(UPSTREAM_BEDROCK, &upstream, scheme, timeout_ms.as_deref()) {
            return Some(Action::Pause);
        }
        self.record.model.clone_from(&planned.invoke.model_id);
        self.record.feature = planned.feature;
        if self.record.verbose {
            log::info!(
                "verbose AI log {}: Bedrock request {}",
                self.record.request_id,
                String::from_utf8_lossy(&upstream.body)
            );
        }
        self.forwarded = Some(Forwarded::Model {
            responder: planned.responder,
            stream: planned.invoke.stream,
            family: planned.family,
        });
        Some(Action::Continue)
    }

    /// The token must grant `check`'s unit primitive; false once the 403 was sent.
    fn authorized(&mut self, check: &ScopeCheck) -> bool {
        let claims = match &self.auth {
            Auth::Done(c) => c.as_ref(),
            _ => return false,
        };
        let requirement = Requirement {
            unit_primitive: &check.unit_primitive,
            reject_gateway_issuer: check.reject_gateway_issuer,
            denied_detail: check.denied_detail.clone(),
        };
        match authorize(claims, &requirement) {
            Ok(()) => true,
            Err((status, body)) => {
                self.reply(status, body.as_bytes(), &[]);
                false
            }
        }
    }

    /// `POST /v1/search/gitlab-docs`: validation, scope, then the knowledge base's `Retrieve`
    /// through the `bedrock_agent` route, or the empty answer when no knowledge base is
    /// configured (docs/gitlab-contract.md#documentation-search).
    fn forward_search(&mut self, vm: &mut Vm) -> Option<Action> {
        self.record.feature = "documentation_search";
        let body = abi::buffer(BufferType::HttpRequestBody, 0, self.body_size).unwrap_or_default();
        let kb = vm.config.knowledge_base.clone();
        let ctx = SearchContext {
            now_secs: now_secs(),
            knowledge_base_id: kb.as_ref().map(|kb| kb.id.as_str()),
        };
        let planned = match docs_search::plan(&body, &ctx) {
            Ok(p) => p,
            Err(e) => {
                self.reply_error(&e);
                return Some(Action::Pause);
            }
        };
        if !self.authorized(&planned.scope) {
            return Some(Action::Pause);
        }
        let (request, responder) = match planned.action {
            SearchAction::Local {
                response,
                unconfigured,
            } => {
                if unconfigured {
                    vm.metrics.inc("docs_search_unconfigured_total", &[]);
                }
                self.reply(response.status, &response.body, &response.headers);
                return Some(Action::Pause);
            }
            SearchAction::Retrieve { request, responder } => (request, responder),
        };
        let Some(kb) = kb else {
            return Some(Action::Pause);
        };
        let auth = match self.upstream_auth(vm, &kb.endpoint.region) {
            Ok(auth) => auth,
            Err(action) => return action,
        };
        let time = UNIX_EPOCH + Duration::from_millis(now_ms());
        let upstream = match retrieve::build(&request, &kb.endpoint, &auth, time) {
            Ok(u) => u,
            Err(e) => {
                log::error!("could not sign the Retrieve request: {e}");
                self.reply_error(&GitlabError::detail(
                    500,
                    "Could not sign the Bedrock request",
                ));
                return Some(Action::Pause);
            }
        };
        let scheme = kb.endpoint.scheme.as_str();
        if !self.send_upstream(UPSTREAM_BEDROCK_AGENT, &upstream, scheme, None) {
            return Some(Action::Pause);
        }
        self.record.model = format!("knowledge-base/{}", kb.id);
        if self.record.verbose {
            log::info!(
                "verbose AI log {}: documentation search query {:?}",
                self.record.request_id,
                request.query
            );
        }
        self.forwarded = Some(Forwarded::Search(responder));
        Some(Action::Continue)
    }

    /// Replaces the request with the filter-built, signed `upstream` and marks it for the route
    /// of `marker` (config::UPSTREAM_MARKER_PROPERTY). False once a 500 was sent instead.
    fn send_upstream(
        &mut self,
        marker: &str,
        upstream: &UpstreamRequest,
        upstream_scheme: &str,
        timeout_ms: Option<&str>,
    ) -> bool {
        // Only the filter-built, signed request leaves: every client header is dropped (one
        // hostcall replaces the whole map), except the correlation id; x-forwarded-proto is
        // rewritten (Envoy's route lookup needs the header).
        let length = upstream.body.len().to_string();
        let mut set = vec![
            (":method", upstream.method),
            (":path", upstream.path.as_str()),
            (":authority", upstream.authority.as_str()),
            (":scheme", self.scheme.as_str()),
            ("x-forwarded-proto", upstream_scheme),
            ("content-length", length.as_str()),
        ];
        if let Some(id) = &self.request_id_header {
            set.push(("x-request-id", id.as_str()));
        }
        if let Some(ms) = timeout_ms {
            set.push(("x-envoy-upstream-rq-timeout-ms", ms));
        }
        set.extend(
            upstream
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        // The marker first: replacing the header map clears Envoy's route cache, so the route
        // is chosen again with the marker set (config::UPSTREAM_MARKER_PROPERTY).
        let ok = abi::set_property(&[UPSTREAM_MARKER_PROPERTY], marker.as_bytes())
            && abi::set_header_map(MapType::HttpRequestHeaders, &set)
            && abi::set_buffer(
                BufferType::HttpRequestBody,
                0,
                self.body_size,
                &upstream.body,
            );
        if !ok {
            self.reply_error(&GitlabError::detail(500, "Could not forward the request"));
            return false;
        }
        self.record.forwarded_ms = now_ms();
        true
    }

    fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        if self.local_reply {
            return Action::Continue;
        }
        let Some(fwd) = self.forwarded.as_mut() else {
            return Action::Continue;
        };
        let headers = abi::header_map(MapType::HttpResponseHeaders);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let status = header(":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(502);
        self.record.upstream_done_ms = now_ms();
        if let Some(id) = header("x-amzn-requestid") {
            self.record.bedrock_request_id = id.chars().take(128).collect();
        }
        let details = abi::property(&["response", "code_details"])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        self.response = if details != "via_upstream" {
            ResponseMode::EnvoyError { details }
        } else if let (
            200,
            Forwarded::Model {
                responder,
                stream: true,
                ..
            },
        ) = (status, &*fwd)
        {
            let mut out: Vec<(String, String)> = vec![(":status".into(), "200".into())];
            out.extend(responder.stream_headers());
            out.push(("x-process-time".into(), self.process_time()));
            self.record.status = 200;
            let out: Vec<(&str, &str)> =
                out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            abi::set_header_map(MapType::HttpResponseHeaders, &out);
            self.response = ResponseMode::Streaming {
                decoder: EventStreamDecoder::new(),
                started: false,
                finished: false,
            };
            return Action::Continue;
        } else if status == 200 {
            ResponseMode::Success
        } else {
            ResponseMode::BedrockError {
                status,
                error_type: header("x-amzn-errortype"),
                retry_after: header("retry-after"),
            }
        };
        if end_of_stream {
            self.finish_buffered(&[]);
            return Action::Continue;
        }
        Action::Pause
    }

    fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.local_reply || self.forwarded.is_none() {
            return Action::Continue;
        }
        if let ResponseMode::Streaming { .. } = self.response {
            let chunk = abi::buffer(BufferType::HttpResponseBody, 0, body_size).unwrap_or_default();
            let out = self.translate_chunk(&chunk, end_of_stream);
            abi::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out);
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = abi::buffer(BufferType::HttpResponseBody, 0, body_size).unwrap_or_default();
        let out = self.finish_buffered(&body);
        abi::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out);
        Action::Continue
    }

    /// Upstream trailers (an HTTP/2 upstream; the `bedrock` cluster speaks HTTP/1.1, which drops
    /// them): the answer ends here. A buffered answer is translated from the buffered body as on
    /// `end_of_stream`; a stream was translated chunk by chunk and ended at `message_stop`, and
    /// one cut before it is recorded as truncated. The trailers themselves never reach GitLab.
    fn on_response_trailers(&mut self) -> Action {
        if self.local_reply || self.forwarded.is_none() {
            return Action::Continue;
        }
        abi::set_header_map(MapType::HttpResponseTrailers, &[]);
        match &mut self.response {
            ResponseMode::Streaming { finished, .. } => {
                if !*finished {
                    *finished = true;
                    log::warn!("Bedrock stream ended by trailers before message_stop");
                    self.record.error_type = Some("truncated_stream".into());
                    self.record.stream_exception = true;
                }
            }
            ResponseMode::Undecided => {}
            _ => {
                let body = abi::buffer(BufferType::HttpResponseBody, 0, MAX_RESPONSE_BODY)
                    .unwrap_or_default();
                let size = body.len();
                let out = self.finish_buffered(&body);
                abi::set_buffer(BufferType::HttpResponseBody, 0, size, &out);
            }
        }
        Action::Continue
    }

    /// Translates a buffered upstream answer; sets the response headers and returns the body.
    fn finish_buffered(&mut self, body: &[u8]) -> Vec<u8> {
        let Some(fwd) = self.forwarded.as_mut() else {
            return body.to_vec();
        };
        let (status, mut headers, out): (u16, Vec<(String, String)>, Vec<u8>) =
            match (&self.response, fwd) {
                (ResponseMode::Success, Forwarded::Model { responder, .. }) => {
                    match serde_json::from_slice::<MessagesResponse>(body) {
                        Ok(message) => {
                            self.record.input_tokens = message.usage.input_tokens;
                            self.record.output_tokens = message.usage.output_tokens;
                            if self.record.verbose {
                                log::info!(
                                    "verbose AI log {}: Bedrock answer {:?}",
                                    self.record.request_id,
                                    message.text()
                                );
                            }
                            let r = responder.complete(&message);
                            (r.status, r.headers, r.body)
                        }
                        Err(_) => {
                            self.record.error_type = Some("unreadable_answer".into());
                            log::warn!("unreadable Bedrock answer ({} bytes)", body.len());
                            let e = GitlabError::detail(
                                502,
                                "Inference failed: unreadable answer from Bedrock",
                            );
                            (e.status, e.headers, e.body.into_bytes())
                        }
                    }
                }
                (ResponseMode::Success, Forwarded::Search(responder)) => {
                    match responder.complete(body) {
                        Ok(r) => (r.status, r.headers, r.body),
                        Err(e) => {
                            self.record.error_type = Some("unreadable_answer".into());
                            log::warn!("unreadable Retrieve answer ({} bytes)", body.len());
                            (e.status, e.headers, e.body.into_bytes())
                        }
                    }
                }
                (
                    ResponseMode::BedrockError {
                        status,
                        error_type,
                        retry_after,
                    },
                    fwd,
                ) => {
                    let b = parse_error(*status, error_type.as_deref(), body);
                    self.record.error_type = Some(b.kind.clone());
                    log::warn!(
                        "Bedrock answered {} {}: {}",
                        b.status,
                        b.kind,
                        errors::log_text(&b.message)
                    );
                    let e = match fwd {
                        Forwarded::Model { family, .. } => errors::from_bedrock(
                            *family,
                            b.status,
                            &b.kind,
                            &b.message,
                            retry_after.as_deref(),
                        ),
                        Forwarded::Search(_) => docs_search::bedrock_error(
                            b.status,
                            &b.kind,
                            &b.message,
                            retry_after.as_deref(),
                        ),
                    };
                    (e.status, e.headers, e.body.into_bytes())
                }
                (ResponseMode::EnvoyError { details }, fwd) => {
                    let failure = EnvoyFailure::classify(details);
                    let endpoint = {
                        let vm = self.vm.borrow();
                        match fwd {
                            Forwarded::Search(_) => vm
                                .config
                                .knowledge_base
                                .as_ref()
                                .map(|kb| kb.endpoint.authority())
                                .unwrap_or_default(),
                            Forwarded::Model { .. } => vm.config.endpoint.authority(),
                        }
                    };
                    log::warn!(
                        "no answer from Bedrock ({endpoint}): {} ({details})",
                        failure.error_type()
                    );
                    self.record.error_type = Some(failure.error_type().into());
                    let e = match (fwd, &failure) {
                        (Forwarded::Model { family, .. }, _) => {
                            errors::from_envoy(*family, &failure, &endpoint)
                        }
                        (Forwarded::Search(_), EnvoyFailure::Timeout) => {
                            docs_search::upstream_timeout()
                        }
                        (Forwarded::Search(_), _) => docs_search::upstream_unavailable(details),
                    };
                    (e.status, e.headers, e.body.into_bytes())
                }
                (ResponseMode::Undecided | ResponseMode::Streaming { .. }, _) => {
                    return body.to_vec()
                }
            };
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".into(), "application/json".into()));
        }
        self.record.status = status;
        let mut all: Vec<(String, String)> = vec![(":status".into(), status.to_string())];
        all.extend(headers);
        all.push(("content-length".into(), out.len().to_string()));
        all.push(("x-process-time".into(), self.process_time()));
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        abi::set_header_map(MapType::HttpResponseHeaders, &all);
        out
    }

    /// One chunk of an event stream in, GitLab's stream bytes out.
    fn translate_chunk(&mut self, chunk: &[u8], end_of_stream: bool) -> Vec<u8> {
        let (
            Some(Forwarded::Model { responder, .. }),
            ResponseMode::Streaming {
                decoder,
                started,
                finished,
            },
        ) = (self.forwarded.as_mut(), &mut self.response)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if *finished {
            return out;
        }
        if !*started {
            *started = true;
            out.extend(responder.stream_start());
        }
        for frame in decoder.push(chunk) {
            match frame {
                StreamFrame::Event(StreamEvent::TextDelta(text)) => {
                    if self.record.first_token_ms == 0 {
                        self.record.first_token_ms = now_ms();
                    }
                    if self.record.verbose && self.record.answer.len() < 65_536 {
                        self.record.answer.push_str(&text);
                    }
                    out.extend(responder.stream_text(&text))
                }
                StreamFrame::Event(StreamEvent::MessageStart { input_tokens, .. }) => {
                    self.record.input_tokens = input_tokens;
                    responder.record_usage(Some(input_tokens), None)
                }
                StreamFrame::Event(StreamEvent::MessageDelta {
                    output_tokens,
                    stop_reason,
                }) => {
                    self.record.output_tokens = output_tokens;
                    responder.record_usage(None, Some(output_tokens));
                    if let Some(reason) = stop_reason.as_deref() {
                        responder.record_stop_reason(reason);
                    }
                }
                StreamFrame::Event(StreamEvent::Error { kind, message })
                | StreamFrame::Exception { kind, message } => {
                    log::warn!(
                        "Bedrock stream ended by {kind}: {}",
                        errors::bounded_text(&message, 300)
                    );
                    self.record.error_type = Some(kind);
                    self.record.stream_exception = true;
                    out.extend(responder.stream_error(&message));
                    *finished = true;
                    return out;
                }
                StreamFrame::Malformed(why) => {
                    log::warn!("Bedrock stream unreadable: {why}");
                    self.record.error_type = Some("malformed_stream".into());
                    self.record.stream_exception = true;
                    out.extend(responder.stream_error("unreadable stream from Bedrock"));
                    *finished = true;
                    return out;
                }
                // The answer is complete at `message_stop`: GitLab's stream ends here, whether
                // the upstream then ends the body or sends trailers (see on_response_trailers).
                StreamFrame::Event(StreamEvent::MessageStop { .. }) => {
                    *finished = true;
                    out.extend(responder.stream_end());
                    return out;
                }
                StreamFrame::Event(_) => {}
            }
        }
        if end_of_stream {
            *finished = true;
            if let Some(StreamFrame::Malformed(why)) = decoder.finish() {
                log::warn!("Bedrock stream cut off: {why}");
                self.record.error_type = Some("truncated_stream".into());
                self.record.stream_exception = true;
                out.extend(responder.stream_error("stream from Bedrock cut off"));
                return out;
            }
            out.extend(responder.stream_end());
        }
        out
    }
}

/// What this VM still lacks to serve a Duo request (the readiness probe's answer).
fn not_ready(vm: &Vm) -> Vec<String> {
    let mut missing = Vec::new();
    if !vm.config.auth_bypass && vm.keys.is_none() {
        let urls: Vec<&str> = vm
            .config
            .providers
            .iter()
            .map(|p| p.base_url.as_str())
            .collect();
        missing.push(format!(
            "GitLab's token signing keys are not loaded yet (OIDC discovery and JWKS of {}; see \
             the log for why)",
            urls.join(", ")
        ));
    }
    if let Upstream::Refreshing { source, .. } = &vm.config.upstream {
        if vm.aws.as_ref().is_none_or(|c| c.is_expired(now_secs())) {
            missing.push(format!(
                "no usable AWS credentials yet from the {} credential source",
                source.kind()
            ));
        }
    }
    missing
}

/// The GitLab JWT checks (docs/gitlab-contract.md#headers, #jwt-rules), with the VM's key set and
/// verified-token cache.
fn authenticate(vm: &mut Vm, headers: &[(String, String)]) -> Outcome {
    let now = now_secs();
    let token = match extract_token(headers) {
        Ok(t) => t,
        Err(e) => return Outcome::Rejected(e),
    };
    let envoy_jti = if vm.config.envoy_jwt_authn {
        envoy_verified_jti(headers)
    } else {
        None
    };
    // With jwt_authn in front, a fresh token costs less than hashing it for the cache; otherwise
    // the token is hashed once, for the lookup and for the insertion after a miss.
    let cache_key = match envoy_jti {
        None if vm.cache.capacity() > 0 => Some(TokenKey::of(token)),
        _ => None,
    };
    let cached = cache_key.as_ref().and_then(|key| vm.cache.get(key, now));
    let claims = if let Some(claims) = cached {
        claims
    } else {
        let Some(keys) = vm.keys.clone() else {
            return Outcome::Wait;
        };
        let check = match envoy_jti.as_deref() {
            Some(jti) => SignatureCheck::VerifiedByEnvoy { jti },
            None => SignatureCheck::Verify,
        };
        match verify_with(token, &keys, &vm.config.auth, now, check) {
            Ok((claims, by)) => {
                let source = match by {
                    VerifiedBy::Envoy => "envoy_jwt_authn",
                    VerifiedBy::Filter => {
                        if vm.cache.capacity() > 0 {
                            let key = cache_key.unwrap_or_else(|| TokenKey::of(token));
                            vm.cache.insert(key, claims.clone(), now);
                        }
                        "filter"
                    }
                };
                vm.metrics
                    .inc("jwt_signature_checks_total", &[("source", source)]);
                claims
            }
            Err(AuthError::UnknownKid(_)) if request_refresh(vm, now) => return Outcome::Wait,
            Err(e) => return Outcome::Rejected(e),
        }
    };
    match check_bindings(&claims, headers) {
        Ok(()) => Outcome::Accepted(claims),
        Err(e) => Outcome::Rejected(e),
    }
}

/// The `jti` of the token Envoy's jwt_authn verified for this request (its dynamic metadata,
/// which clients cannot set), when the request carries exactly one `Authorization` header, so
/// jwt_authn and the filter read the same token.
fn envoy_verified_jti(headers: &[(String, String)]) -> Option<String> {
    if headers.iter().filter(|(k, _)| k == "authorization").count() != 1 {
        return None;
    }
    let jti = abi::property(&[
        "metadata",
        "filter_metadata",
        "envoy.filters.http.jwt_authn",
        JWT_AUTHN_PAYLOAD_KEY,
        "jti",
    ])?;
    String::from_utf8(jti).ok().filter(|j| !j.is_empty())
}

impl Request {
    /// A stream that ended before `message_stop` without an exception: Envoy cut it (the
    /// model timeout, an upstream reset) or GitLab went away. Its log line and metrics say
    /// which, from Envoy's response code details.
    fn record_unfinished_stream(&mut self) {
        let ResponseMode::Streaming {
            finished: false, ..
        } = self.response
        else {
            return;
        };
        if self.record.error_type.is_some() {
            return;
        }
        let details = abi::property(&["response", "code_details"])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let kind = if details.contains("downstream") {
            "client_disconnected"
        } else {
            match EnvoyFailure::classify(&details) {
                EnvoyFailure::Timeout => "upstream_timeout",
                _ => "truncated_stream",
            }
        };
        log::warn!("Bedrock stream cut before its end: {kind} ({details})");
        self.record.error_type = Some(kind.into());
        self.record.stream_exception = true;
    }

    /// The request is over: one structured log line and its metrics.
    fn on_log(&mut self) {
        self.record_unfinished_stream();
        let r = &self.record;
        let endpoint = self.route.name();
        let status = if r.status == 0 { 499 } else { r.status };
        let vm = self.vm.clone();
        let Ok(mut vm) = vm.try_borrow_mut() else {
            return;
        };
        let m = &mut vm.metrics;
        let status_text = status.to_string();
        m.inc(
            "requests_total",
            &[("endpoint", endpoint), ("status", &status_text)],
        );
        if let Some(reason) = r.auth_failure {
            m.inc("auth_failures_total", &[("reason", reason)]);
        }
        if let Some(kind) = &r.error_type {
            let name = if r.stream_exception {
                "stream_exceptions_total"
            } else {
                "upstream_errors_total"
            };
            let model = if r.model.is_empty() {
                "none"
            } else {
                r.model.as_str()
            };
            m.inc(name, &[("error_type", kind), ("model", model)]);
        }
        let upstream_ms = r.upstream_done_ms.saturating_sub(r.forwarded_ms);
        let ttft_ms = r.first_token_ms.saturating_sub(r.forwarded_ms);
        if r.forwarded_ms > 0 {
            m.record(
                "bedrock_latency_ms",
                &[("endpoint", endpoint)],
                now_ms().saturating_sub(r.forwarded_ms),
            );
            if r.first_token_ms > 0 {
                m.record("time_to_first_token_ms", &[("endpoint", endpoint)], ttft_ms);
            }
            let labels = |d| {
                [
                    ("model", r.model.as_str()),
                    ("feature", r.feature),
                    ("direction", d),
                ]
            };
            if r.input_tokens.saturating_add(r.output_tokens) > 0 {
                m.add("tokens_total", &labels("input"), r.input_tokens);
                m.add("tokens_total", &labels("output"), r.output_tokens);
            }
        }
        if self.route.is_public() {
            return; // health probes: counted, not logged
        }
        if r.verbose && !r.answer.is_empty() {
            log::info!(
                "verbose AI log {}: streamed answer {:?}",
                r.request_id,
                r.answer
            );
        }
        if !log::log_enabled!(log::Level::Info) {
            return;
        }
        let line = serde_json::json!({
            "request_id": r.request_id,
            "endpoint": endpoint,
            "feature": r.feature,
            "model": r.model,
            "status": status,
            "bedrock_request_id": r.bedrock_request_id,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "duration_ms": now_ms().saturating_sub(self.started_ms),
            "upstream_headers_ms": if r.forwarded_ms > 0 { Some(upstream_ms) } else { None },
            "time_to_first_token_ms": if r.first_token_ms > 0 { Some(ttft_ms) } else { None },
            "auth_failure": r.auth_detail.as_deref().or(r.auth_failure),
            "error_type": r.error_type,
        });
        log::info!("request {line}");
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Pause;
        };
        request.on_request_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Pause;
        };
        request.on_request_body(body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Pause;
        };
        request.on_request_trailers()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Continue;
        };
        request.on_response_headers(end_of_stream)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Continue;
        };
        request.on_response_body(body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        let Ok(mut request) = self.0.try_borrow_mut() else {
            return Action::Continue;
        };
        request.on_response_trailers()
    }

    fn on_log(&mut self) {
        if let Ok(mut request) = self.0.try_borrow_mut() {
            request.on_log();
        }
    }
}
