//! Phase 2, the request body: the typed plan, the Bedrock (or knowledge base) request built
//! and signed, and the forwarded request that replaces GitLab's, marked for its route.

use super::*;

impl Request {
    pub(super) fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
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
    pub(super) fn on_request_trailers(&mut self) -> Action {
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
    pub(super) fn upstream_auth(
        &mut self,
        vm: &mut Vm,
        region: &str,
    ) -> Result<UpstreamAuth, Option<Action>> {
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
    pub(super) fn forward(&mut self, vm: &mut Vm) -> Option<Action> {
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
        let scopes = match &self.auth {
            Auth::Done(Some(claims)) => Some(claims.scopes.as_slice()),
            _ => None,
        };
        let ctx = RequestContext {
            now_secs: now_secs(),
            enabled_feature_flags: self.feature_flags.as_deref(),
            default_model: vm.config.default_model.as_deref(),
            scopes,
            gitlab_version: self.gitlab_version.as_deref(),
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
        let built = build(&planned.invoke, &vm.config.endpoint, &auth, time);
        let Some(upstream) = self.signed(built, "Bedrock") else {
            return Some(Action::Pause);
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
    pub(super) fn authorized(&mut self, check: &ScopeCheck) -> bool {
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
    pub(super) fn forward_search(&mut self, vm: &mut Vm) -> Option<Action> {
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
        let built = retrieve::build(&request, &kb.endpoint, &auth, time);
        let Some(upstream) = self.signed(built, "Retrieve") else {
            return Some(Action::Pause);
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

    /// The built and signed upstream request, or `None` once GitLab got a 500 (what failed is
    /// logged, never the credentials).
    pub(super) fn signed<E: std::fmt::Display>(
        &mut self,
        built: Result<UpstreamRequest, E>,
        what: &str,
    ) -> Option<UpstreamRequest> {
        match built {
            Ok(u) => Some(u),
            Err(e) => {
                log::error!("could not sign the {what} request: {e}");
                self.reply_error(&GitlabError::detail(
                    500,
                    "Could not sign the Bedrock request",
                ));
                None
            }
        }
    }

    /// Replaces the request with the filter-built, signed `upstream` and marks it for the route
    /// of `marker` (config::UPSTREAM_MARKER_PROPERTY). False once a 500 was sent instead.
    pub(super) fn send_upstream(
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
}
