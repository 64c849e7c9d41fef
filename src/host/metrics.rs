//! Prometheus-style metrics through proxy-wasm (`define_metric` / `increment_metric` /
//! `record_metric`), exported by Envoy's admin at `/stats/prometheus`.
//!
//! Envoy metric names are flat, so labels are spelled into the name as `.l_<key>.<value>`
//! pairs, and the `stats_tags` rules in `envoy/envoy.yaml.tmpl` turn each pair back into a
//! Prometheus label: `wasmcustom.duo_bedrock_requests_total.l_endpoint.v2_code_completions.l_status.200`
//! is exported as `duo_bedrock_requests_total{endpoint="v2_code_completions",status="200"}`
//! (Envoy drops its `wasmcustom.` prefix for Prometheus).
//! Label values are reduced to `[a-z0-9_]` so a model id cannot break the name. README.md
//! lists every metric.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

// Label keys must be among those the Envoy template extracts: endpoint, status, reason, model,
// feature, direction, error_type, provider, result, source. Metrics without labels (such as
// `docs_search_unconfigured_total`) need no rule.

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
    /// The name being looked up, reused: a known series costs no allocation.
    scratch: String,
}

impl Metrics {
    fn id(&mut self, kind: MetricType, name: &str, labels: &[(&str, &str)]) -> Option<u32> {
        let full = &mut self.scratch;
        full.clear();
        full.push_str("duo_bedrock_");
        full.push_str(name);
        for (key, value) in labels {
            full.push_str(".l_");
            full.push_str(key);
            full.push('.');
            push_sanitized(full, value);
        }
        if let Some(id) = self.ids.get(full.as_str()) {
            return Some(*id);
        }
        // Bound the number of distinct series a VM can create (model ids come from requests).
        if self.ids.len() >= 2048 {
            return None;
        }
        let id = hostcalls::define_metric(kind, full).ok()?;
        self.ids.insert(full.clone(), id);
        Some(id)
    }

    pub fn inc(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1);
    }

    pub fn add(&mut self, name: &str, labels: &[(&str, &str)], n: u64) {
        if let Some(id) = self.id(MetricType::Counter, name, labels) {
            let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn record(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        if let Some(id) = self.id(MetricType::Histogram, name, labels) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// Appends `value` reduced to `[a-z0-9_]` (at most 96 characters; `none` when empty).
fn push_sanitized(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push_str("none");
        return;
    }
    out.extend(value.chars().take(96).map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
}
