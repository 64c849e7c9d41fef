//! Soak (issue 6 "Safety"): thousands of mixed valid, invalid and faulted requests through the
//! real Envoy end with no VM panic in the log, every answer in GitLab's format, and flat memory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::json;
use std::time::Instant;

const ROUNDS: usize = 3000;

#[test]
fn mixed_soak_has_no_panic_and_flat_memory() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let expired =
        emu.mint(json!({"exp": 1_000_000_000u64, "iat": 999_999_000u64, "nbf": 999_999_000u64}));
    let body = |model: &str, stream: bool| {
        json!({"current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n    ", "content_below_cursor": ""},
               "prompt_version": 2, "model_identifier": format!("bedrock/{model}"), "stream": stream}).to_string()
    };
    // (token, path, body, expected status)
    let cases: Vec<(String, &str, String, u16)> = vec![
        (
            token.clone(),
            "/v2/code/completions",
            body(MODEL, false),
            200,
        ),
        (
            token.clone(),
            "/v2/code/completions",
            body(MODEL, true),
            200,
        ),
        (
            token.clone(),
            "/v2/code/completions",
            body("anthropic.claude-fault-split-v1:0", true),
            200,
        ),
        (
            token.clone(),
            "/v4/code/suggestions",
            body("anthropic.claude-fault-midstream-v1:0", true),
            422,
        ),
        (
            token.clone(),
            "/v2/code/completions",
            body("anthropic.claude-fault-midstream-v1:0", true),
            200,
        ),
        (
            token.clone(),
            "/v2/code/completions",
            body("anthropic.claude-fault-throttle-v1:0", false),
            429,
        ),
        (
            token.clone(),
            "/v2/code/completions",
            body("anthropic.claude-fault-500-v1:0", false),
            503,
        ),
        (
            token.clone(),
            "/v2/code/completions",
            body("anthropic.claude-fault-badcrc-v1:0", true),
            200,
        ),
        (
            token.clone(),
            "/v2/code/completions",
            "{\"current_file\":".to_string(),
            422,
        ),
        (token.clone(), "/v9/unknown", "{}".to_string(), 404),
        (
            expired.clone(),
            "/v2/code/completions",
            body(MODEL, false),
            401,
        ),
        (
            "garbage".to_string(),
            "/v2/code/completions",
            body(MODEL, false),
            401,
        ),
    ];
    let run = |n: usize, offset: usize| {
        let port = sidecar.port;
        let cases = cases.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                let (tok, path, body, expected) = &cases[(i + offset) % cases.len()];
                let headers = gitlab_headers(tok);
                let r = request(
                    port,
                    "POST",
                    path,
                    &as_refs(&headers),
                    Some(body.as_bytes()),
                );
                assert_eq!(r.status, *expected, "{path} {}", r.text());
                if r.header("content-type") == Some("application/json") {
                    let _: serde_json::Value = serde_json::from_slice(&r.body)
                        .unwrap_or_else(|e| panic!("{e}: {}", r.text()));
                }
            }
        })
    };
    // Warm up (VM heaps, connection pools, caches), then measure.
    for h in (0..2).map(|t| run(200, t * 7)) {
        h.join().unwrap();
    }
    let rss_before = sidecar.rss_kib();
    let start = Instant::now();
    for h in (0..4).map(|t| run(ROUNDS / 4, t * 5)) {
        h.join().unwrap();
    }
    let elapsed = start.elapsed();
    let rss_after = sidecar.rss_kib();
    let logs = sidecar.logs();
    eprintln!(
        "soak: {ROUNDS} mixed requests in {elapsed:?} ({:.0} req/s), Envoy RSS {} KiB -> {} KiB ({:+} KiB)",
        ROUNDS as f64 / elapsed.as_secs_f64(),
        rss_before,
        rss_after,
        rss_after as i64 - rss_before as i64
    );
    assert!(!logs.contains("panicked"), "a VM panicked");
    assert!(!logs.contains("RuntimeError"), "a VM trapped");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "memory grew: {rss_before} KiB -> {rss_after} KiB"
    );
}
