//! Code Suggestions through the real Envoy + .wasm + emulator (issue 4;
//! docs/gitlab-contract.md#code-completions to #code-generations-v3-v4, #model-call,
//! #gateway-behaviour).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn completion(model: &str, stream: bool) -> Value {
    json!({
        "current_file": {"file_name": "app/models/user.rb", "language_identifier": "ruby",
                         "content_above_cursor": "class User\n  def full_name\n    ", "content_below_cursor": "\n  end\nend\n"},
        "intent": "completion", "stream": stream, "project_path": "group/project", "telemetry": [], "context": [],
        "model_provider": "litellm", "prompt_version": 2, "prompt": null,
        "model_endpoint": "https://bedrock-runtime.us-east-1.amazonaws.com", "model_name": "claude_3",
        "model_identifier": format!("bedrock/{model}")
    })
}

fn generation_v3(model: &str, stream: bool) -> Value {
    json!({
        "current_file": {"file_name": "main.py", "content_above_cursor": "# sort a list of ints\n", "content_below_cursor": ""},
        "intent": "generation", "stream": stream,
        "prompt_components": [{"type": "code_editor_generation", "payload": {
            "file_name": "main.py", "content_above_cursor": "# sort a list of ints\n", "content_below_cursor": "",
            "language_identifier": "Python", "stream": stream,
            "prompt_enhancer": {"examples_array": [], "trimmed_content_above_cursor": "# sort a list of ints\n",
                "trimmed_content_below_cursor": "", "related_files": [], "related_snippets": [], "libraries": [],
                "user_instruction": "Generate the best possible code based on instructions."},
            "prompt_id": "code_suggestions/generations", "prompt_version": "^1.0.0"}}],
        "model_metadata": {"provider": "openai", "name": "claude_3", "endpoint": "https://bedrock-runtime.us-east-1.amazonaws.com",
                           "api_key": null, "identifier": format!("bedrock/{model}")}
    })
}

fn post(
    sidecar: &Sidecar,
    token: &str,
    path: &str,
    body: &Value,
    extra: &[(&'static str, String)],
) -> Response {
    let mut headers = gitlab_headers(token);
    headers.extend(extra.iter().cloned());
    sidecar.request(
        "POST",
        path,
        &as_refs(&headers),
        Some(body.to_string().as_bytes()),
    )
}

/// The one Bedrock request the emulator saw, after checking it is signed and clean.
fn only_bedrock_request(emu: &Emulator) -> Value {
    let reqs = emu.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let r = reqs[0].clone();
    assert_eq!(r["signature_valid"], true, "{r:#}");
    let headers = r["headers"].as_object().unwrap();
    for name in headers.keys() {
        assert!(
            !name.starts_with("x-gitlab"),
            "GitLab header {name} leaked to Bedrock"
        );
    }
    assert!(headers["authorization"]
        .as_str()
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"));
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["anthropic_version"], "bedrock-2023-05-31");
    assert!(body.get("model").is_none() && body.get("stream").is_none());
    r
}

#[test]
fn v2_completion_non_stream() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let r = post(
        &sidecar,
        &emu.token(),
        "/v2/code/completions",
        &completion(MODEL, false),
        &[("x-gitlab-enabled-feature-flags", "flag_a,flag_b".into())],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["id"], "id");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"]["engine"], "agent");
    assert_eq!(v["model"]["lang"], "ruby");
    assert!(
        v["choices"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{v:#}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(
        v["metadata"]["enabled_feature_flags"],
        json!(["flag_a", "flag_b"])
    );
    assert!(
        v["model"]["tokens_consumption_metadata"]["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    let b = only_bedrock_request(&emu);
    assert_eq!(
        b["path"],
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke"
    );
    let body: Value = serde_json::from_str(b["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["max_tokens"], 128);
    assert_eq!(body["temperature"], 0.0);
    let prompt = body["messages"][0]["content"].as_str().unwrap();
    assert!(
        prompt.contains("def full_name") && prompt.contains("end\nend"),
        "prefix and suffix reach the prompt"
    );
    assert!(
        !sidecar.logs().contains("def full_name"),
        "prompts never reach the log"
    );
}

#[test]
fn v2_completion_stream_and_alias() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let plain = post(
        &sidecar,
        &token,
        "/v2/completions",
        &completion(MODEL, false),
        &[],
    )
    .json();
    let expected = plain["choices"][0]["text"].as_str().unwrap().to_string();
    // fault-drip: 250 ms between frames; the first text must reach GitLab long before the end.
    let r = post(
        &sidecar,
        &token,
        "/v2/code/completions",
        &completion("anthropic.claude-fault-drip-250-v1:0", true),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(r.text(), expected, "raw text deltas, no SSE framing");
    // Three text chunks two drip intervals apart (nominally 500 ms; allow for timer jitter).
    let (first, last) = (r.chunk_times[0], *r.chunk_times.last().unwrap());
    assert!(
        last - first >= Duration::from_millis(400),
        "streamed as it arrives: {:?}",
        r.chunk_times
    );
    let reqs = emu.requests();
    assert!(reqs.iter().all(|q| q["signature_valid"] == true));
    assert!(reqs[1]["path"]
        .as_str()
        .unwrap()
        .ends_with("/invoke-with-response-stream"));
    assert_eq!(
        reqs[1]["headers"]["x-amzn-bedrock-accept"],
        "application/json"
    );
}

/// `DUO_BEDROCK_UPSTREAM_HTTP2=true`: Bedrock is reached over HTTP/2 (prior knowledge to the
/// plain-http emulator; ALPN over TLS), buffered and streamed answers alike, and the concurrent
/// streams share connections (at most one per Envoy worker; the test sidecar has two).
#[test]
fn bedrock_over_http2() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start_with(&emu, &[("DUO_BEDROCK_UPSTREAM_HTTP2", "true")]);
    let token = emu.token();
    let plain = post(
        &sidecar,
        &token,
        "/v2/code/completions",
        &completion(MODEL, false),
        &[],
    );
    assert_eq!(plain.status, 200, "{}", plain.text());
    let expected = plain.json()["choices"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let streams: Vec<_> = (0..4)
        .map(|_| {
            let (port, token) = (sidecar.port, token.clone());
            std::thread::spawn(move || {
                let headers = gitlab_headers(&token);
                request(
                    port,
                    "POST",
                    "/v2/code/completions",
                    &as_refs(&headers),
                    Some(
                        completion("anthropic.claude-fault-drip-100-v1:0", true)
                            .to_string()
                            .as_bytes(),
                    ),
                )
            })
        })
        .collect();
    for s in streams {
        let r = s.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), expected);
    }
    let reqs = emu.requests();
    assert_eq!(reqs.len(), 5);
    assert!(
        reqs.iter()
            .all(|q| q["signature_valid"] == true && q["http_version"] == "HTTP/2.0"),
        "{reqs:#?}"
    );
    let stats = sidecar.stats();
    let connections = stats
        .lines()
        .find_map(|l| l.strip_prefix("cluster.bedrock.upstream_cx_total: "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(
        connections.is_some_and(|n| (1..=2).contains(&n)),
        "five requests over {connections:?} HTTP/2 connections"
    );
}

#[test]
fn v2_generations_and_v3_v4() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let mut gen = completion(MODEL, false);
    gen["prompt_id"] = json!("code_suggestions/generations");
    gen["prompt"] = json!("");
    let r = post(&sidecar, &token, "/v2/code/generations", &gen, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"], "text_completion");
    let body: Value = serde_json::from_str(emu.requests()[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["max_tokens"], 2048);
    assert_eq!(body["stop_sequences"], json!(["</new_code>"]));
    assert_eq!(
        body["messages"].as_array().unwrap().last().unwrap()["content"],
        "<new_code>"
    );
    let mut gen_stream = gen.clone();
    gen_stream["stream"] = json!(true);
    let r = post(&sidecar, &token, "/v2/code/generations", &gen_stream, &[]);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(
        !r.text().is_empty() && !r.text().contains("</new_code>"),
        "{}",
        r.text()
    );

    let r = post(
        &sidecar,
        &token,
        "/v3/code/completions",
        &generation_v3(MODEL, false),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(
        v["choices"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty() && !t.contains("new_code")),
        "{v:#}"
    );
    assert_eq!(v["metadata"]["model"]["lang"], "python");

    let r = post(
        &sidecar,
        &token,
        "/v3/code/completions",
        &generation_v3(MODEL, true),
        &[],
    );
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(!r.text().is_empty() && !r.text().contains("event:"));

    let r = post(
        &sidecar,
        &token,
        "/v4/code/suggestions",
        &generation_v3("anthropic.claude-fault-split-v1:0", true),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-streaming-format"), Some("sse"));
    let text = r.text();
    assert!(text.starts_with("event: stream_start\ndata: "), "{text}");
    assert!(
        text.contains("event: content_chunk\ndata: {\"choices\":[{\"delta\":{\"content\":"),
        "{text}"
    );
    assert!(
        text.ends_with("event: stream_end\ndata: null\n\n"),
        "{text}"
    );
    // v4 without streaming answers the v3 JSON.
    let r = post(
        &sidecar,
        &token,
        "/v4/code/suggestions",
        &generation_v3(MODEL, false),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["choices"][0]["text"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert!(emu.requests().iter().all(|q| q["signature_valid"] == true));
}

#[test]
fn every_model_id_form_is_encoded_and_signed() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let forms = [
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/invoke"),
        ("global.anthropic.claude-sonnet-4-20250514-v1:0", "/model/global.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke"),
        ("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123",
         "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabc123/invoke"),
        ("arn:aws:bedrock:us-east-1:123456789012:provisioned-model/xyz",
         "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aprovisioned-model%2Fxyz/invoke"),
    ];
    for (model, path) in forms {
        emu.clear_requests();
        let r = post(
            &sidecar,
            &token,
            "/v2/code/completions",
            &completion(model, false),
            &[],
        );
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(only_bedrock_request(&emu)["path"], path);
    }
    emu.clear_requests();
    let r = post(
        &sidecar,
        &token,
        "/v2/code/completions",
        &json!({"current_file": {"file_name": "a.py",
        "content_above_cursor": "x", "content_below_cursor": ""}, "prompt_version": 2,
        "model_identifier": "vertex_ai/claude-3"}),
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["detail"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("vertex_ai/claude-3"));
    assert!(emu.requests().is_empty());
}

#[test]
fn invalid_bodies_are_422_and_never_reach_bedrock() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let headers = gitlab_headers(&token);
    let r = sidecar.request(
        "POST",
        "/v2/code/completions",
        &as_refs(&headers),
        Some(b"{not json"),
    );
    assert_eq!(r.status, 422);
    let mut missing = completion(MODEL, false);
    missing["current_file"]
        .as_object_mut()
        .unwrap()
        .remove("content_above_cursor");
    let r = post(&sidecar, &token, "/v2/code/completions", &missing, &[]);
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        r.json()["detail"][0]["loc"],
        json!(["body", "current_file", "content_above_cursor"])
    );
    let mut huge = completion(MODEL, false);
    huge["current_file"]["content_above_cursor"] = json!("x".repeat(100_001));
    assert_eq!(
        post(&sidecar, &token, "/v2/code/completions", &huge, &[]).status,
        422
    );
    assert!(emu.requests().is_empty());
    // What Rails may send: up to 600 000 bytes.
    let mut big = completion(MODEL, false);
    let filler = "# filler\n".repeat(30_000);
    big["context"] = json!([{"type": "file", "name": "a.rb", "content": filler}, {"type": "file", "name": "b.rb", "content": filler}]);
    assert!(big.to_string().len() > 595_000);
    let r = post(&sidecar, &token, "/v2/code/completions", &big, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn scopes_are_enforced() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let chat_only = emu.mint(json!({"scopes": ["duo_chat"]}));
    let r = post(
        &sidecar,
        &chat_only,
        "/v2/code/completions",
        &completion(MODEL, false),
        &[],
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json()["detail"],
        "Unauthorized to access code completions"
    );
    let r = post(
        &sidecar,
        &chat_only,
        "/v3/code/completions",
        &generation_v3(MODEL, false),
        &[],
    );
    assert_eq!(r.status, 403);
    // AIGW-minted user tokens may not generate code (docs/gitlab-contract.md#scopes).
    let gateway = emu.mint(
        json!({"iss": "gitlab-ai-gateway", "aud": ["gitlab-ai-gateway"], "sub": "user-hash"}),
    );
    let mut gen = completion(MODEL, false);
    gen["prompt_id"] = json!("code_suggestions/generations");
    let r = post(&sidecar, &gateway, "/v2/code/generations", &gen, &[]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json()["detail"],
        "Unauthorized to access code generations"
    );
    assert!(emu.requests().is_empty());
}

#[test]
fn bedrock_faults_become_gitlab_errors_and_the_vm_keeps_serving() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start_with(&emu, &[("AIGW_MODEL_TIMEOUT_SECONDS", "2")]);
    let token = emu.token();
    let call = |model: &str, stream: bool| {
        post(
            &sidecar,
            &token,
            "/v2/code/completions",
            &completion(model, stream),
            &[],
        )
    };

    let r = call("anthropic.claude-fault-throttle-v1:0", false);
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        r.json()["detail"],
        "Too many requests. Please try again later."
    );
    assert_eq!(
        call("anthropic.claude-fault-notready-v1:0", true).status,
        429
    );
    for fault in [
        "fault-500",
        "fault-503",
        "fault-403",
        "fault-400",
        "fault-424",
    ] {
        let r = call(&format!("anthropic.claude-{fault}-v1:0"), false);
        assert!(r.status >= 400, "{fault}: {}", r.status);
        assert!(r.json()["detail"].is_string(), "{fault}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let r = call("anthropic.claude-fault-reset-v1:0", false);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.json()["detail"].is_string());
    let r = call("anthropic.claude-fault-hang-v1:0", false);
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.json()["detail"].is_string());

    // Mid-stream: 200 already sent; the stream ends cleanly with what arrived, and the log says so.
    let r = call("anthropic.claude-fault-midstream-v1:0", true);
    assert_eq!(r.status, 200);
    assert!(
        sidecar.logs().contains("modelStreamErrorException"),
        "mid-stream exception logged"
    );
    let r = call("anthropic.claude-fault-badcrc-v1:0", true);
    assert_eq!(r.status, 200);

    let r = call(MODEL, false);
    assert_eq!(r.status, 200, "the VM still serves: {}", r.text());
    assert!(!sidecar.logs().contains("panicked"), "no VM panic");
}

#[test]
fn session_token_is_signed_and_client_aws_headers_are_stripped() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start_with(&emu, &[("AWS_SESSION_TOKEN", "FQoGZXIvYXdzEXAMPLETOKEN")]);
    let extra = [
        ("x-amz-security-token", "evil".to_string()),
        ("x-amzn-bedrock-trace", "ENABLED".to_string()),
        ("x-amz-date", "19990101T000000Z".to_string()),
        ("x-forwarded-for", "10.0.0.1".to_string()),
    ];
    let r = post(
        &sidecar,
        &emu.token(),
        "/v2/code/completions",
        &completion(MODEL, false),
        &extra,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let b = only_bedrock_request(&emu);
    let h = &b["headers"];
    assert_eq!(h["x-amz-security-token"], "FQoGZXIvYXdzEXAMPLETOKEN");
    assert!(h["authorization"]
        .as_str()
        .unwrap()
        .contains("x-amz-security-token"));
    assert!(h.get("x-amzn-bedrock-trace").is_none());
    assert_ne!(h["x-amz-date"], "19990101T000000Z");
    assert!(
        !sidecar.logs().contains("FQoGZXIvYXdzEXAMPLETOKEN"),
        "secrets never reach the log"
    );
    assert!(!sidecar.logs().contains(SECRET_KEY));
}
