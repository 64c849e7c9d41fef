//! The end of a request: its one structured log line and its metrics.

use super::*;
use crate::logline::RequestRecord;

impl Request {
    /// A stream that ended before `message_stop` without an exception: Envoy cut it (the
    /// model timeout, an upstream reset) or GitLab went away. Its log line and metrics say
    /// which, from Envoy's response code details.
    pub(super) fn record_unfinished_stream(&mut self) {
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
    pub(super) fn on_log(&mut self) {
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
        logging::record(&RequestRecord {
            request_id: &r.request_id,
            endpoint,
            feature: r.feature,
            model: &r.model,
            status,
            bedrock_request_id: &r.bedrock_request_id,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            duration_ms: now_ms().saturating_sub(self.started_ms),
            upstream_headers_ms: (r.forwarded_ms > 0).then_some(upstream_ms),
            time_to_first_token_ms: (r.first_token_ms > 0).then_some(ttft_ms),
            auth_failure: r.auth_detail.as_deref().or(r.auth_failure),
            error_type: r.error_type.as_deref(),
        });
    }
}
