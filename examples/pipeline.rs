//! The filter's host-independent per-request work, run as the host runs it (src/host/request),
//! for profiling with callgrind (docs/performance.md): `cargo build --release --example pipeline`
//! then `valgrind --tool=callgrind target/release/examples/pipeline <scenario> <n>`.
//!
//! Scenarios: `completion` (non-stream /v2/code/completions: JWT claims as with jwt_authn in
//! front, bindings, plan, Bedrock body, SigV4, the JSON answer translated, the log line),
//! `chat` (/v2/chat/agent, a streamed answer of 40 text deltas), `stream` (one streamed text delta
//! frame decoded and translated, per iteration), `sign` (SigV4 alone).
//! No hostcalls: what the host does around this is counted in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use duo_bedrock_filter::auth::keys::KeySet;
use duo_bedrock_filter::auth::rules::{
    check_bindings, extract_token, verify_with, AuthConfig, Claims, SignatureCheck,
};
use duo_bedrock_filter::auth::scopes::{authorize, Requirement};
use duo_bedrock_filter::bedrock::endpoint::Endpoint as BedrockEndpoint;
use duo_bedrock_filter::bedrock::eventstream::{EventStreamDecoder, StreamFrame};
use duo_bedrock_filter::bedrock::invoke::{build, UpstreamAuth};
use duo_bedrock_filter::bedrock::messages::MessagesResponse;
use duo_bedrock_filter::bedrock::sigv4::Credentials;
use duo_bedrock_filter::bedrock::stream::StreamEvent;
use duo_bedrock_filter::gitlab::routes::classify;
use duo_bedrock_filter::gitlab::{plan, Endpoint, RequestContext};
use duo_bedrock_filter::logline::{self, LogFormat, RequestRecord};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

const JWKS: &str = include_str!("../src/auth/testdata/jwks.json");
const KEY1_PEM: &str = include_str!("../src/auth/testdata/key1_pkcs1.pem");
const NOW: u64 = 1_739_952_000;
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const INSTANCE: &str = "00000000-0000-4000-8000-000000000001";

fn token(jti: &str) -> String {
    let claims = json!({
        "jti": jti, "aud": ["gitlab-ai-gateway"], "sub": INSTANCE,
        "iss": "https://gitlab.example.com", "iat": NOW, "nbf": NOW - 5, "exp": NOW + 3600,
        "gitlab_realm": "self-managed", "gitlab_instance_id": INSTANCE,
        "scopes": ["complete_code", "generate_code", "duo_chat", "documentation_search"],
    });
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("test-key-1".into());
    encode(
        &h,
        &claims,
        &EncodingKey::from_rsa_pem(KEY1_PEM.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn headers(token: &str, path: &str) -> Vec<(String, String)> {
    [
        (":method", "POST"),
        (":path", path),
        (":scheme", "http"),
        (":authority", "127.0.0.1:5052"),
        ("authorization", &format!("Bearer {token}")),
        ("x-gitlab-authentication-type", "oidc"),
        ("x-gitlab-realm", "self-managed"),
        ("x-gitlab-instance-id", INSTANCE),
        ("content-type", "application/json"),
        ("x-request-id", "0e0f3c5a-6a7b-4d6c-9b1f-6c6a2b7d9e11"),
        ("user-agent", "wrk"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let c = crc32fast::hash(&out[0..8]);
    out.extend_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let c = crc32fast::hash(&out);
    out.extend_from_slice(&c.to_be_bytes());
    out
}

fn chunk(event: serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&event).unwrap());
    let payload =
        serde_json::to_vec(&json!({"bytes": b64, "p": "abcdefghijklmnopqrstuvwxyzAB"})).unwrap();
    frame(
        &[
            (":event-type", "chunk"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        &payload,
    )
}

fn delta(text: &str) -> Vec<u8> {
    chunk(
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
    )
}

fn stream_frames(deltas: usize) -> Vec<Vec<u8>> {
    let mut v = vec![
        chunk(
            json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
            "model": MODEL, "content": [], "stop_reason": null, "usage": {"input_tokens": 120, "output_tokens": 1}}}),
        ),
        chunk(
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    v.push(delta("Thought: I know this.\nFinal Answer: "));
    for i in 0..deltas {
        v.push(delta(if i % 2 == 0 {
            "Use `git revert` "
        } else {
            "to undo a commit. "
        }));
    }
    v.push(chunk(json!({"type": "content_block_stop", "index": 0})));
    v.push(chunk(
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
        "usage": {"output_tokens": 42}}),
    ));
    v.push(chunk(
        json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 120,
        "outputTokenCount": 42, "invocationLatency": 900, "firstByteLatency": 200}}),
    ));
    v
}

struct Fixture {
    keys: KeySet,
    cfg: AuthConfig,
    endpoint: BedrockEndpoint,
    auth: UpstreamAuth,
}

impl Fixture {
    fn new() -> Self {
        let endpoint =
            BedrockEndpoint::resolve(Some("http://127.0.0.1:8080"), Some("us-east-1")).unwrap();
        Fixture {
            keys: KeySet::from_jwks(&[JWKS.as_bytes()]).unwrap(),
            cfg: AuthConfig::default(),
            endpoint,
            auth: UpstreamAuth::SigV4 {
                creds: Credentials {
                    access_key_id: "AKIDEXAMPLE".into(),
                    secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                    session_token: None,
                },
                region: "us-east-1".into(),
            },
        }
    }

    /// Headers phase + body phase + answer phase of one request, as src/host/request does.
    #[inline(never)]
    fn request(
        &self,
        token: &str,
        jti: &str,
        path: &str,
        body: &[u8],
        answer: Answer<'_>,
    ) -> usize {
        // headers: route, header reads, JWT (claims only: jwt_authn verified the signature), bindings
        let h = headers(token, path);
        let find = |name: &str| h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let route = classify(find(":method").unwrap_or(""), find(":path").unwrap_or(""));
        let request_id: String = find("x-request-id")
            .unwrap_or("")
            .chars()
            .take(128)
            .collect();
        let claims = self.auth(&h, jti);
        // body: plan, scopes, build + sign
        let endpoint = Endpoint::from_route(&route).unwrap();
        let ctx = RequestContext {
            now_secs: NOW,
            enabled_feature_flags: None,
            default_model: None,
            scopes: Some(claims.scopes.as_slice()),
            gitlab_version: Some("18.6.0"),
        };
        let mut planned = plan(&endpoint, body, &ctx).unwrap();
        for check in &planned.scopes {
            let r = Requirement {
                unit_primitive: &check.unit_primitive,
                reject_gateway_issuer: check.reject_gateway_issuer,
                denied_detail: check.denied_detail.clone(),
            };
            authorize(Some(&claims), &r).unwrap();
        }
        let time = UNIX_EPOCH + Duration::from_secs(NOW);
        let upstream = build(&planned.invoke, &self.endpoint, &self.auth, time).unwrap();
        let length = upstream.body.len().to_string();
        let mut set = vec![
            (":method", upstream.method),
            (":path", upstream.path.as_str()),
            (":authority", upstream.authority.as_str()),
            ("content-length", length.as_str()),
        ];
        set.extend(
            upstream
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let encoded = duo_bedrock_filter::wire::encode_header_map(&set);
        let mut out = encoded.len() + upstream.body.len();
        // answer
        match answer {
            Answer::Json(json) => {
                let message: MessagesResponse = serde_json::from_slice(json).unwrap();
                let r = planned.responder.complete(&message);
                out += r.body.len();
            }
            Answer::Stream(frames) => {
                let mut decoder = EventStreamDecoder::new();
                out += planned.responder.stream_headers().len();
                out += planned.responder.stream_start().len();
                for f in frames {
                    out += translate(&mut decoder, &mut *planned.responder, f);
                }
            }
        }
        out += log_line(
            &request_id,
            route.name(),
            planned.feature,
            &planned.invoke.model_id,
        )
        .len();
        out
    }

    /// The JWT claims (jwt_authn verified the signature) and the claim/header bindings.
    #[inline(never)]
    fn auth(&self, h: &[(String, String)], jti: &str) -> Claims {
        let t = extract_token(h).unwrap();
        let (claims, _) = verify_with(
            t,
            &self.keys,
            &self.cfg,
            NOW,
            SignatureCheck::VerifiedByEnvoy { jti },
        )
        .unwrap();
        check_bindings(&claims, h).unwrap();
        claims
    }
}

/// The request's log line, as src/host/request/report.rs builds it (text format).
#[inline(never)]
fn log_line(request_id: &str, endpoint: &str, feature: &str, model: &str) -> String {
    logline::record(
        LogFormat::Text,
        &RequestRecord {
            request_id,
            endpoint,
            feature,
            model,
            status: 200,
            bedrock_request_id: "9f1c2d3e-0000-4000-8000-00000000abcd",
            input_tokens: 120,
            output_tokens: 42,
            duration_ms: 3,
            upstream_headers_ms: Some(2),
            time_to_first_token_ms: None,
            auth_failure: None,
            error_type: None,
        },
    )
}

#[inline(never)]
fn sign_once(
    invoke: &duo_bedrock_filter::bedrock::InvokeRequest,
    fx: &Fixture,
    time: std::time::SystemTime,
) -> usize {
    build(invoke, &fx.endpoint, &fx.auth, time)
        .unwrap()
        .body
        .len()
}

enum Answer<'a> {
    Json(&'a [u8]),
    Stream(&'a [Vec<u8>]),
}

/// src/host/request/respond.rs translate_chunk, without the record keeping.
#[inline(never)]
fn translate(
    decoder: &mut EventStreamDecoder,
    responder: &mut dyn duo_bedrock_filter::gitlab::Responder,
    chunk: &[u8],
) -> usize {
    let mut out = Vec::new();
    for frame in decoder.push(chunk) {
        match frame {
            StreamFrame::Event(StreamEvent::TextDelta(text)) => {
                out.extend(responder.stream_text(&text))
            }
            StreamFrame::Event(StreamEvent::MessageStart { input_tokens, .. }) => {
                responder.record_usage(Some(input_tokens), None)
            }
            StreamFrame::Event(StreamEvent::MessageDelta {
                output_tokens,
                stop_reason,
            }) => {
                responder.record_usage(None, Some(output_tokens));
                if let Some(r) = stop_reason.as_deref() {
                    responder.record_stop_reason(r);
                }
            }
            StreamFrame::Event(StreamEvent::MessageStop { .. }) => {
                out.extend(responder.stream_end())
            }
            StreamFrame::Event(_) => {}
            _ => panic!("unexpected frame"),
        }
    }
    out.len()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenario = args.get(1).map(String::as_str).unwrap_or("completion");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let fx = Fixture::new();
    let tokens: Vec<(String, String)> = (0..n)
        .map(|i| (token(&format!("jti-{i:08}")), format!("jti-{i:08}")))
        .collect();
    let completion = serde_json::to_vec(&json!({"current_file": {"file_name": "add.py", "language_identifier": "python",
        "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": "\n"},
        "prompt_version": 2, "model_provider": "litellm", "model_identifier": format!("bedrock/{MODEL}"),
        "stream": false})).unwrap();
    let answer = serde_json::to_vec(&json!({"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "text", "text": "return a + b"}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 120, "output_tokens": 6}})).unwrap();
    let chat = serde_json::to_vec(&json!({
        "messages": [{"role": "user", "content": "How do I revert a commit?", "context": null, "current_file": null, "additional_context": []}],
        "model_metadata": {"provider": "litellm", "name": "claude_3", "endpoint": "", "api_key": null,
            "identifier": format!("bedrock/{MODEL}")},
        "unavailable_resources": ["Pipelines", "Vulnerabilities"]})).unwrap();
    let frames = stream_frames(40);
    let mut total = 0usize;
    match scenario {
        "completion" => {
            for (t, jti) in &tokens {
                total += fx.request(
                    t,
                    jti,
                    "/v2/code/completions",
                    &completion,
                    Answer::Json(&answer),
                );
            }
        }
        "chat" => {
            for (t, jti) in &tokens {
                total += fx.request(t, jti, "/v2/chat/agent", &chat, Answer::Stream(&frames));
            }
        }
        "stream" => {
            // per-delta cost: one long stream through one responder
            let route = classify("POST", "/v2/code/completions");
            let endpoint = Endpoint::from_route(&route).unwrap();
            let body = serde_json::to_vec(&json!({"current_file": {"file_name": "add.py", "language_identifier": "python",
                "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": "\n"},
                "prompt_version": 2, "model_provider": "litellm", "model_identifier": format!("bedrock/{MODEL}"),
                "stream": true})).unwrap();
            let ctx = RequestContext {
                now_secs: NOW,
                ..Default::default()
            };
            let mut planned = plan(&endpoint, &body, &ctx).unwrap();
            let mut decoder = EventStreamDecoder::new();
            let d = delta("Use `git revert` ");
            for _ in 0..n {
                total += translate(&mut decoder, &mut *planned.responder, black_box(&d));
            }
        }
        "sign" => {
            let time = UNIX_EPOCH + Duration::from_secs(NOW);
            let route = classify("POST", "/v2/code/completions");
            let endpoint = Endpoint::from_route(&route).unwrap();
            let ctx = RequestContext {
                now_secs: NOW,
                ..Default::default()
            };
            let planned = plan(&endpoint, &completion, &ctx).unwrap();
            for _ in 0..n {
                total += sign_once(&planned.invoke, &fx, time);
            }
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("{scenario} x{n}: {total}");
}
