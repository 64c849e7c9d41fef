//! JSON-lines logs (issue 11 §3): with `AIGW_LOGGING__FORMAT_JSON=true` every line Envoy writes
//! is one JSON object, Envoy's own lines included, and the filter's messages are JSON objects
//! that carry the request's id (the request record and the warnings about a request).
//!
//! Envoy is started as the launcher starts it in that mode: `--log-format` [`JSON_LOG_FORMAT`]
//! on the command line (the bootstrap's `application_log_config` would only apply once the
//! bootstrap is loaded: the lines before it would still be text), and the plugin configuration
//! key `"log_format":"json"`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{json, Value};

/// The `--log-format` for `AIGW_LOGGING__FORMAT_JSON=true` (README.md#logs): the keys of the
/// gateway's structlog JSON lines; `%j` is Envoy's JSON-escaped message.
const JSON_LOG_FORMAT: &str =
    r#"{"timestamp":"%Y-%m-%dT%T.%e%z","level":"%l","logger":"%n","message":"%j"}"#;

/// The filter's message inside Envoy's `message` (after `wasm log <plugin> <root id>: `), as
/// JSON, when it is one.
fn filter_message(line: &Value) -> Option<Value> {
    let m = line["message"].as_str()?;
    let rest = m.strip_prefix("wasm log ")?;
    let (_, json) = rest.split_once(": ")?;
    serde_json::from_str(json).ok()
}

#[test]
fn every_line_is_a_json_object_with_request_ids() {
    let emu = Emulator::start();
    let env: Vec<(&str, String)> = vec![
        ("AIGW_GITLAB_URL", emu.url.clone()),
        ("AWS_BEDROCK_RUNTIME_ENDPOINT", emu.url.clone()),
        ("AWS_REGION_NAME", REGION.into()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        // The launcher renders the plugin configuration key `"log_format":"json"`.
        ("AIGW_LOGGING__FORMAT_JSON", "true".into()),
    ];
    let rendered = |config: String| {
        assert!(config.contains(r#""log_format":"json""#), "{config}");
        config
    };
    let sidecar = Sidecar::boot_with_args(env, &rendered, &["--log-format", JSON_LOG_FORMAT])
        .unwrap_or_else(|e| panic!("sidecar did not start: {e}"));
    let token = emu.token();
    let body = json!({"current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n    ", "content_below_cursor": ""},
                      "prompt_version": 2, "model_identifier": format!("bedrock/{MODEL}"), "stream": false});
    let mut headers = gitlab_headers(&token);
    headers.push(("x-request-id", "json-logs-ok".into()));
    let r = sidecar.request(
        "POST",
        "/v2/code/completions",
        &as_refs(&headers),
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Bedrock throttles: a warning about this request, then its record.
    let mut throttled = body.clone();
    throttled["model_identifier"] = json!("bedrock/anthropic.claude-fault-throttle-v1:0");
    let mut headers = gitlab_headers(&token);
    headers.push(("x-request-id", "json-logs-throttled".into()));
    let r = sidecar.request(
        "POST",
        "/v2/code/completions",
        &as_refs(&headers),
        Some(throttled.to_string().as_bytes()),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    let r = sidecar.request(
        "POST",
        "/v2/code/completions",
        &[("x-request-id", "json-logs-401")],
        Some(b"{}"),
    );
    assert_eq!(r.status, 401);
    std::thread::sleep(std::time::Duration::from_millis(300));

    let logs = sidecar.logs();
    let mut lines = Vec::new();
    for l in logs.lines() {
        let v: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\n{logs}"));
        assert!(v.is_object(), "{l}");
        for key in ["timestamp", "level", "logger", "message"] {
            assert!(v[key].is_string(), "{key} missing: {l}");
        }
        lines.push(v);
    }
    assert!(lines.len() > 20, "Envoy's own lines are there too:\n{logs}");
    assert!(lines.iter().any(|v| v["logger"] == "main"));

    let filter: Vec<(Value, Value)> = lines
        .iter()
        .filter(|v| v["logger"] == "wasm")
        .map(|v| {
            let m = filter_message(v).unwrap_or_else(|| panic!("filter message not JSON: {v}"));
            (v.clone(), m)
        })
        .collect();
    let records: Vec<&Value> = filter
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m["message"] == "request")
        .collect();
    assert_eq!(records.len(), 3, "one record per request:\n{logs}");
    let by_id = |id: &str| {
        records
            .iter()
            .find(|m| m["request_id"] == id)
            .unwrap_or_else(|| panic!("no record for {id}:\n{logs}"))
    };
    assert_eq!(by_id("json-logs-ok")["status"], 200);
    assert_eq!(by_id("json-logs-ok")["endpoint"], "v2_code_completions");
    assert_eq!(by_id("json-logs-throttled")["status"], 429);
    assert_eq!(
        by_id("json-logs-throttled")["error_type"],
        "ThrottlingException"
    );
    assert_eq!(by_id("json-logs-401")["auth_failure"], "missing_header");
    let warning = filter
        .iter()
        .find(|(line, m)| {
            line["level"] == "warning"
                && m["message"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Bedrock answered 429"))
        })
        .unwrap_or_else(|| panic!("no throttling warning:\n{logs}"));
    assert_eq!(warning.1["request_id"], "json-logs-throttled");
    // Messages outside a request carry no request id (e.g. the configuration line).
    assert!(filter.iter().any(|(_, m)| m["message"]
        .as_str()
        .is_some_and(|t| t.starts_with("duo-bedrock filter configured"))
        && m.get("request_id").is_none()));
    for secret in [token.as_str(), SECRET_KEY, "def f()"] {
        assert!(!logs.contains(secret), "secret or prompt in the log");
    }
}
