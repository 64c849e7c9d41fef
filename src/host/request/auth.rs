//! Phase 1, the request headers: route, public answers, and the GitLab JWT checks, waiting
//! for the key set (first load, unknown `kid`) or for AWS credentials when needed.

use super::*;

impl Request {
    pub(super) fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        self.started_ms = now_ms();
        let headers = abi::header_map(MapType::HttpRequestHeaders);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let header = |name: &str| find(name).unwrap_or("");
        self.feature_flags = find("x-gitlab-enabled-feature-flags").map(str::to_string);
        self.gitlab_version = find("x-gitlab-version").map(str::to_string);
        self.route = classify(header(":method"), header(":path"));
        self.record.request_id = header("x-request-id").chars().take(128).collect();
        logging::set_request_id(&self.record.request_id);
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
        if vm.borrow().config.crash_injection {
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
    pub(super) fn after_auth(&mut self, vm: &mut Vm) -> Option<Action> {
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
    pub(super) fn retry_auth(&mut self, vm: &mut Vm, timed_out: bool) -> bool {
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
}

/// What this VM still lacks to serve a Duo request (the readiness probe's answer).
pub(super) fn not_ready(vm: &Vm) -> Vec<String> {
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
pub(super) fn authenticate(vm: &mut Vm, headers: &[(String, String)]) -> Outcome {
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
pub(super) fn envoy_verified_jti(headers: &[(String, String)]) -> Option<String> {
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
