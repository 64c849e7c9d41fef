//! Hostile input through the real Envoy + .wasm, as `make run` configures it (jwt_authn in
//! front): every request gets a defined answer, no input crashes the VM, and nothing reaches
//! the upstream that the filter did not build and sign (docs/security.md).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{json, Value};

const BEDROCK_PATH: &str = "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/invoke";
const FORBIDDEN: &str = r#"{"error":"Forbidden by auth provider"}"#;

fn completion(model: &str, stream: bool) -> Value {
    json!({
        "current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n    ", "content_below_cursor": ""},
        "intent": "completion", "stream": stream, "prompt_version": 1,
        "model_provider": "litellm", "model_name": "claude_3",
        "model_identifier": format!("bedrock/{model}")
    })
}

/// The filter never crashed: no VM reload, no panic in the log.
fn assert_vm_intact(sidecar: &Sidecar) {
    let stats = sidecar.stats();
    for line in stats
        .lines()
        .filter(|l| l.starts_with("wasm.duo_bedrock.vm_reload"))
    {
        assert!(line.ends_with(": 0"), "VM reloaded: {line}");
    }
    let logs = sidecar.logs();
    assert!(!logs.contains("panicked"), "a VM panicked:\n{logs}");
}

/// Everything the upstream saw was a Bedrock call the filter signed.
fn assert_only_signed_bedrock_calls(emu: &Emulator) {
    assert_eq!(
        emu.stats()["unknown_paths"],
        0,
        "a request that is not a Bedrock call reached the upstream"
    );
    for r in emu.requests() {
        assert_eq!(
            r["signature_valid"], true,
            "unsigned request upstream: {r:#}"
        );
        let headers = r["headers"].as_object().unwrap();
        for name in headers.keys() {
            assert!(
                !name.starts_with("x-gitlab") && name != "user-agent" && name != "x-probe",
                "client header {name} reached the upstream: {r:#}"
            );
        }
        let auth = headers["authorization"].as_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
    }
}

/// A request with GitLab's headers as raw bytes, so values need not be UTF-8.
fn raw_post(port: u16, path: &str, headers: &[(&[u8], &[u8])], body: &[u8]) -> Response {
    let mut req =
        format!("POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n")
            .into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k);
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    raw_request(port, &req).unwrap()
}

fn gitlab_raw(token: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    gitlab_headers(token)
        .into_iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
        .collect()
}

fn with(mut base: Vec<(Vec<u8>, Vec<u8>)>, name: &[u8], value: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    base.retain(|(k, _)| k != name);
    base.push((name.to_vec(), value.to_vec()));
    base
}

fn refs(h: &[(Vec<u8>, Vec<u8>)]) -> Vec<(&[u8], &[u8])> {
    h.iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect()
}

#[test]
fn non_utf8_header_values_get_defined_answers_and_never_crash_the_vm() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let body = completion(MODEL, false).to_string();
    let port = sidecar.port;

    // The probe of the report: no token, a health check with a latin-1 header value.
    let r = raw_request(
        port,
        b"GET /monitoring/healthz HTTP/1.1\r\nhost: x\r\nx-probe: caf\xe9\r\nconnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));

    // Unauthenticated POST with a binary User-Agent: GitLab's 401, as for any missing token.
    let r = raw_post(
        port,
        "/v2/code/completions",
        &[(b"user-agent", b"\xff\xfe")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401, "{}", r.text());

    // Authenticated with a binary User-Agent and X-Request-ID: served (the gateway reads
    // headers as latin-1 and ignores these), and neither header reaches Bedrock.
    let h = with(gitlab_raw(&token), b"user-agent", b"\xff\xfe");
    let h = with(h, b"x-request-id", b"id-\xe9\xff");
    let r = raw_post(port, "/v2/code/completions", &refs(&h), body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["choices"][0]["text"].is_string(), "{}", r.text());

    // A token with a non-ASCII byte is not a JWT: 401 with the gateway's body.
    let h = with(
        gitlab_raw(&token),
        b"authorization",
        &[b"Bearer ".as_slice(), token.as_bytes(), b"\xe9"].concat(),
    );
    let r = raw_post(port, "/v2/code/completions", &refs(&h), body.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (401, FORBIDDEN));

    // A binding header that differs from its claim only in a latin-1 byte: refused.
    let h = with(gitlab_raw(&token), b"x-gitlab-realm", b"self-manag\xe9d");
    let r = raw_post(port, "/v2/code/completions", &refs(&h), body.as_bytes());
    assert_eq!(r.status, 401, "{}", r.text());

    // A header name outside the token grammar: Envoy's codec refuses it (400) before the filter.
    let h = with(gitlab_raw(&token), b"x-caf\xe9", b"1");
    let r = raw_post(port, "/v2/code/completions", &refs(&h), body.as_bytes());
    assert!(matches!(r.status, 400 | 200), "{} {}", r.status, r.text());

    // The VM keeps serving.
    let r = raw_post(
        port,
        "/v2/code/completions",
        &refs(&gitlab_raw(&token)),
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_vm_intact(&sidecar);
    assert_only_signed_bedrock_calls(&emu);
}

#[test]
fn requests_with_trailers_are_refused_and_never_forwarded() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let body = completion(MODEL, false).to_string();
    let trailers = [("x-trailer", "1")];

    // The report's relay: a forged token (unknown kid) with a Bedrock body and trailers.
    let forged = {
        let parts: Vec<&str> = token.split('.').collect();
        let header = base64_url(r#"{"alg":"RS256","kid":"forged","typ":"JWT"}"#);
        format!("{header}.{}.{}", parts[1], parts[2])
    };
    let bedrock_body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let auth = format!("Bearer {forged}");
    let r = h2::request(
        sidecar.port,
        "POST",
        BEDROCK_PATH,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        bedrock_body.as_bytes(),
        &trailers,
    )
    .unwrap();
    assert!(matches!(r.status, 400 | 401), "{} {}", r.status, r.text());

    // A valid token and a valid body with trailers: refused in GitLab's format.
    let headers = gitlab_headers(&token);
    let r = h2::request(
        sidecar.port,
        "POST",
        "/v2/code/completions",
        &as_refs(&headers),
        body.as_bytes(),
        &trailers,
    )
    .unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, r#"{"detail":"Request trailers are not supported"}"#)
    );
    assert_eq!(
        emu.requests().len(),
        0,
        "a request with trailers was forwarded"
    );

    // Without trailers, the same request over HTTP/2 is served.
    let r = h2::request(
        sidecar.port,
        "POST",
        "/v2/code/completions",
        &as_refs(&headers),
        body.as_bytes(),
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // HTTP/1.1 chunked trailers: Envoy's codec drops them (the listener does not enable them),
    // so the body ends as usual and the signed request carries no trailer.
    let mut req =
        b"POST /v2/code/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n"
            .to_vec();
    for (k, v) in &headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    req.extend_from_slice(
        format!(
            "\r\n{:x}\r\n{body}\r\n0\r\nx-trailer: 1\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let r = raw_request(sidecar.port, &req).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    for rec in emu.requests() {
        assert!(rec["headers"].get("x-trailer").is_none(), "{rec:#}");
    }
    assert_eq!(emu.requests().len(), 2);
    assert_vm_intact(&sidecar);
    assert_only_signed_bedrock_calls(&emu);
}

#[test]
fn envoy_refuses_what_the_filter_did_not_build() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start_with(&emu, &[("DUO_BEDROCK_FAULT_INJECTION", "crash")]);
    let token = emu.token();
    let body = completion(MODEL, false).to_string();
    // The filter passes these on without planning or signing them (a forgotten callback
    // path, simulated): Envoy's route refuses them itself, with GitLab's 401 body.
    let r = sidecar.request(
        "POST",
        BEDROCK_PATH,
        &[
            ("x-duo-bedrock-crash", "pass"),
            ("content-type", "application/json"),
        ],
        Some(b"{}"),
    );
    assert_eq!((r.status, r.text().as_str()), (401, FORBIDDEN));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let mut headers = gitlab_headers(&token);
    headers.push(("x-duo-bedrock-crash", "pass".into()));
    let r = sidecar.request(
        "POST",
        "/v2/code/completions",
        &as_refs(&headers),
        Some(body.as_bytes()),
    );
    assert_eq!((r.status, r.text().as_str()), (401, FORBIDDEN));
    assert_eq!(emu.requests().len(), 0);
    assert_eq!(emu.stats()["unknown_paths"], 0);
    // What the filter built still goes through.
    let r = sidecar.request(
        "POST",
        "/v2/code/completions",
        &as_refs(&gitlab_headers(&token)),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_only_signed_bedrock_calls(&emu);
}

#[test]
fn smuggling_paths_and_oversized_headers_get_defined_answers() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let body = completion(MODEL, false).to_string();
    let port = sidecar.port;
    let headers = gitlab_headers(&token);

    // Content-Length and Transfer-Encoding together: Envoy refuses the request (400).
    let mut req = b"POST /v2/code/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n"
        .to_vec();
    for (k, v) in &headers {
        req.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    req.extend_from_slice(
        format!("\r\n{:x}\r\n{body}\r\n0\r\n\r\nPOST {BEDROCK_PATH} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{{}}", body.len())
            .as_bytes(),
    );
    let r = raw_request(port, &req).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());

    // Two Authorization headers (a valid token and a forged one): GitLab's 401.
    let mut dup = headers.clone();
    dup.push(("authorization", "Bearer forged.token.here".into()));
    let r = sidecar.request(
        "POST",
        "/v2/code/completions",
        &as_refs(&dup),
        Some(body.as_bytes()),
    );
    assert_eq!((r.status, r.text().as_str()), (401, FORBIDDEN));

    // :path tricks over HTTP/2 with a valid token: never a Bedrock path chosen by the client.
    for path in [
        "/v2/code/completions/../../model/x/invoke",
        "/v2/code/completions/%2e%2e/%2e%2e/model/x/invoke",
        "//model/anthropic.claude-3-5-sonnet-20240620-v1:0/invoke",
        BEDROCK_PATH,
        "/v2/code/completions%2F..%2F..%2Fmodel%2Fx%2Finvoke",
        "/v2/code/completions?/model/x/invoke",
    ] {
        let r = h2::request(port, "POST", path, &as_refs(&headers), body.as_bytes(), &[]);
        let r = r.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            matches!(r.status, 200 | 400 | 404),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        if r.status != 200 {
            let detail: Value = serde_json::from_slice(&r.body)
                .unwrap_or_else(|_| panic!("{path}: not JSON: {}", r.text()));
            assert!(detail["detail"].is_string(), "{path}: {}", r.text());
        }
    }

    // Oversized header sets: Envoy's own limits answer (431 / 400), before the filter.
    let mut many = String::new();
    for i in 0..200 {
        many.push_str(&format!("x-h-{i}: v\r\n"));
    }
    let r = raw_request(
        port,
        format!("GET /monitoring/healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{many}\r\n")
            .as_bytes(),
    )
    .unwrap();
    assert!(matches!(r.status, 400 | 431), "{}", r.status);
    let big = "a".repeat(120 * 1024);
    let r = raw_request(
        port,
        format!("GET /monitoring/healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-big: {big}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    assert!(matches!(r.status, 400 | 431), "{}", r.status);

    // Still serving; only signed Bedrock calls went out.
    let r = sidecar.request(
        "POST",
        "/v2/code/completions",
        &as_refs(&headers),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_vm_intact(&sidecar);
    assert_only_signed_bedrock_calls(&emu);
}

/// The `bedrock` cluster as an HTTP/2 upstream (a mesh or a proxy in between), so upstream
/// trailers reach the filter; the launcher's cluster speaks HTTP/1.1, which drops them.
fn http2_upstream(config: String) -> String {
    config.replacen(
        "  - name: bedrock\n",
        "  - name: bedrock\n    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config: { http2_protocol_options: {} }\n",
        1,
    )
}

#[test]
fn bedrock_answers_ending_in_trailers_are_still_translated() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start_patched(&emu, &[], &http2_upstream);
    let token = emu.token();
    let headers = gitlab_headers(&token);
    let model = "anthropic.claude-3-5-sonnet-fault-trailers-20240620-v1:0";

    for stream in [false, true] {
        let body = completion(model, stream).to_string();
        let r = h2::request(
            sidecar.port,
            "POST",
            "/v2/code/completions",
            &as_refs(&headers),
            body.as_bytes(),
            &[],
        )
        .unwrap();
        assert_eq!(r.status, 200, "stream={stream}: {}", r.text());
        assert!(
            r.trailers.is_empty(),
            "upstream trailers passed on: {:?}",
            r.trailers
        );
        let text = r.text();
        if stream {
            // The raw text stream GitLab reads, never event-stream frames.
            assert!(
                !text.is_empty() && !text.contains(":event-type"),
                "{text:?}"
            );
        } else {
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("raw: {text:?}"));
            assert!(v["choices"][0]["text"].is_string(), "{text}");
            assert!(
                v.get("content").is_none(),
                "Bedrock's own JSON passed on: {text}"
            );
        }
    }
    let logs = sidecar.logs();
    assert!(!logs.contains("truncated_stream"), "{logs}");
    assert_vm_intact(&sidecar);
    assert_only_signed_bedrock_calls(&emu);
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}
