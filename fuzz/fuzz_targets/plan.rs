//! Request planning for every endpoint family: method + path → route → `gitlab::plan` with a
//! fuzzed body, feature-flags header, default model and token claims → scope checks →
//! `bedrock::invoke::build`.
//!
//! Input: NUL-separated fields
//! `control \0 method \0 path \0 feature-flags \0 default-model \0 scopes \0 iss \0 body`.
//! `control` (hex text) byte 0 bits: 0 flags header present, 1 default model set, 2 claims present (else auth
//! bypass), 3 Bedrock API key instead of SigV4, 4 session token, 5 endpoint override; bytes 1..9
//! the request time.
//!
//! Properties:
//! * an error is a complete GitLab answer: 4xx/5xx, `{"detail": ...}`, JSON content type;
//! * a refused scope is 403 `{"detail": <its denied detail>}`; a granted one is in the claims;
//! * the Bedrock body follows the conversation rules Bedrock enforces (first turn user,
//!   alternating roles, no blank text, no trailing whitespace on a final assistant turn,
//!   no blank stop sequence, max_tokens ≥ 1) and is the serialized plan body, byte for byte;
//! * a planned request can be signed; it carries exactly the expected headers, all printable;
//!   its path is `/model/<id>/invoke[-with-response-stream]` with the id fully percent-encoded
//!   (decodes back to the id; no raw `/ ? #`, no dot segment, no control characters);
//! * no secret (AWS secret key, session token, API key, the client's JWT) appears in any body
//!   or `Debug` output, unless the input itself contained it.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use duo_bedrock_filter::auth::rules::Claims;
use duo_bedrock_filter::auth::scopes::{authorize, Requirement, GATEWAY_ISSUER};
use duo_bedrock_filter::bedrock::endpoint::Endpoint as BedrockEndpoint;
use duo_bedrock_filter::bedrock::invoke::{build, UpstreamAuth};
use duo_bedrock_filter::bedrock::messages::Role;
use duo_bedrock_filter::bedrock::sigv4::Credentials;
use duo_bedrock_filter::gitlab::routes::{classify, Route};
use duo_bedrock_filter::gitlab::{plan, Endpoint, GitlabError, RequestContext};
use duo_bedrock_filter_fuzz::{assert_gitlab_error, bit, field, fields, hex, number, text};
use libfuzzer_sys::fuzz_target;

const ACCESS_KEY: &str = "AKIAFUZZEXAMPLE0001";
const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYFUZZSECRETKEY";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjFUZZSESSIONTOKEN//////////wEaCXVzLWVhc3QtMSJH";
const API_KEY: &str = "bedrock-api-key-FUZZAPIKEYSECRET0123456789";
/// The client's bearer token (the host never hands it to the planner).
const JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZ1enoifQ.eyJmdXp6IjoiSldUIn0.FUZZJWTSIGNATURE";
/// Latest instant SigV4 can format (9999-12-31T23:59:59Z).
const MAX_SIGNING_SECS: u64 = 253_402_300_799;

fn assert_no_secret(what: &str, s: &str, input: &[u8]) {
    for secret in [SECRET_KEY, SESSION_TOKEN, API_KEY, JWT] {
        if s.contains(secret) {
            let in_input = input.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(in_input, "{what} leaks a secret: {s}");
        }
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let f = fields(data, 8);
    let control = &hex(field(&f, 0))[..];
    let method = text(field(&f, 1));
    let path = text(field(&f, 2));
    let flags = text(field(&f, 3));
    let default_model = text(field(&f, 4));
    let scopes: Vec<String> = text(field(&f, 5))
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let iss = text(field(&f, 6));
    let body = field(&f, 7);
    let now_secs = number(control, 1, 8);

    let route = classify(&method, &path);
    if route.is_public() {
        assert!(method.eq_ignore_ascii_case("GET"));
    }
    let Some(endpoint) = Endpoint::from_route(&route) else {
        assert!(matches!(
            route,
            Route::Healthz | Route::Ready | Route::Unknown
        ));
        assert_gitlab_error(&GitlabError::not_found());
        return;
    };
    assert!(
        method.eq_ignore_ascii_case("POST"),
        "{method} {path} -> {route:?}"
    );

    let claims = Claims {
        iss: (!iss.is_empty()).then(|| iss.clone()),
        scopes,
        ..Claims::default()
    };
    let ctx = RequestContext {
        now_secs,
        enabled_feature_flags: bit(control, 0).then_some(flags.as_str()),
        default_model: bit(control, 1).then_some(default_model.as_str()),
        scopes: bit(control, 2).then_some(claims.scopes.as_slice()),
        // Newer GitLab (Duo Classic Chat rules from 18.9) or older / no header.
        gitlab_version: match number(control, 9, 1) % 3 {
            0 => None,
            1 => Some("18.9.0-ee"),
            _ => Some("18.5.1-ee"),
        },
    };
    let planned = match plan(&endpoint, body, &ctx) {
        Ok(p) => p,
        Err(e) => {
            assert_gitlab_error(&e);
            assert_no_secret("error body", &e.body, data);
            return;
        }
    };
    let debug = format!("{planned:?}");
    assert_no_secret("plan Debug", &debug, data);

    // The host's scope checks.
    let claims = bit(control, 2).then_some(&claims);
    for check in &planned.scopes {
        let req = Requirement {
            unit_primitive: &check.unit_primitive,
            reject_gateway_issuer: check.reject_gateway_issuer,
            denied_detail: check.denied_detail.clone(),
        };
        match authorize(claims, &req) {
            Ok(()) => {
                if let Some(c) = claims {
                    assert!(c.scopes.contains(&check.unit_primitive));
                    assert!(
                        !(check.reject_gateway_issuer && c.iss.as_deref() == Some(GATEWAY_ISSUER))
                    );
                }
            }
            Err((status, body)) => {
                assert_eq!(status, 403);
                let v: serde_json::Value = serde_json::from_str(&body).expect("403 body is JSON");
                assert_eq!(v, serde_json::json!({ "detail": check.denied_detail }));
            }
        }
    }

    // What Bedrock accepts as a conversation.
    let req = &planned.invoke.body;
    assert!(req.max_tokens >= 1);
    assert!(!req.messages.is_empty());
    assert_eq!(req.messages[0].role, Role::User, "{:?}", req.messages);
    for pair in req.messages.windows(2) {
        assert_ne!(
            pair[0].role, pair[1].role,
            "roles alternate: {:?}",
            req.messages
        );
    }
    for m in &req.messages {
        assert!(
            !m.content.trim().is_empty(),
            "blank turn: {:?}",
            req.messages
        );
    }
    if let Some(last) = req.messages.last().filter(|m| m.role == Role::Assistant) {
        assert_eq!(
            last.content.trim_end(),
            last.content,
            "final assistant turn ends with whitespace"
        );
    }
    assert!(req.stop_sequences.iter().all(|s| !s.trim().is_empty()));
    if let Some(system) = &req.system {
        assert!(!system.trim().is_empty(), "blank system prompt");
    }

    // Signing and sending.
    let endpoint = if bit(control, 5) {
        BedrockEndpoint::resolve(Some("http://127.0.0.1:9000"), Some("us-east-1"))
    } else {
        BedrockEndpoint::resolve(None, Some("eu-west-1"))
    }
    .expect("fixed endpoint");
    let bearer = bit(control, 3);
    let with_token = bit(control, 4);
    let auth = if bearer {
        UpstreamAuth::Bearer(API_KEY.into())
    } else {
        UpstreamAuth::SigV4 {
            creds: Credentials {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: SECRET_KEY.into(),
                session_token: with_token.then(|| SESSION_TOKEN.into()),
            },
            region: endpoint.region.clone(),
        }
    };
    let time = UNIX_EPOCH + Duration::from_secs(now_secs % MAX_SIGNING_SECS);
    let up = build(&planned.invoke, &endpoint, &auth, time)
        .unwrap_or_else(|e| panic!("a planned request cannot be signed: {e} ({debug})"));
    let stream = planned.invoke.stream;

    let mut expected: Vec<&str> = vec![
        "content-type",
        if stream {
            "x-amzn-bedrock-accept"
        } else {
            "accept"
        },
    ];
    if bearer {
        expected.push("authorization");
    } else {
        expected.extend(["x-amz-date", "authorization"]);
        if with_token {
            expected.push("x-amz-security-token");
        }
    }
    let names: Vec<&str> = up.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, expected);
    for (k, v) in &up.headers {
        assert!(v.bytes().all(|b| (b' '..=b'~').contains(&b)), "{k}: {v:?}");
        if k != "x-amz-security-token" {
            assert!(!v.contains(SESSION_TOKEN));
        }
        if !(bearer && k == "authorization") {
            assert!(!v.contains(API_KEY));
        }
        assert!(!v.contains(SECRET_KEY) && !v.contains(JWT));
    }
    assert_eq!(up.method, "POST");
    assert_eq!(up.authority, endpoint.authority());

    // The path: one fully encoded segment for the model id.
    let op = if stream {
        "/invoke-with-response-stream"
    } else {
        "/invoke"
    };
    let segment = up
        .path
        .strip_prefix("/model/")
        .and_then(|p| p.strip_suffix(op))
        .unwrap_or_else(|| panic!("path {:?}", up.path));
    assert!(!segment.is_empty());
    assert!(
        segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "raw byte in {segment:?}"
    );
    assert!(segment != "." && segment != "..", "dot segment {segment:?}");
    assert_eq!(percent_decode(segment), planned.invoke.model_id.as_bytes());

    // The body: exactly the plan's, JSON, never `model` or `stream`.
    assert_eq!(up.body, serde_json::to_vec(req).expect("serializable"));
    let v: serde_json::Value = serde_json::from_slice(&up.body).expect("JSON body");
    assert_eq!(v["anthropic_version"], "bedrock-2023-05-31");
    assert!(v.get("model").is_none() && v.get("stream").is_none());
    assert_no_secret("Bedrock body", &String::from_utf8_lossy(&up.body), data);
    let up_debug = format!("{up:?} {auth:?}");
    for secret in [SECRET_KEY, SESSION_TOKEN, API_KEY] {
        assert!(
            !up_debug.contains(secret),
            "Debug leaks a secret: {up_debug}"
        );
    }

    // The responder accepts a minimal stream without panicking.
    let mut r = planned.responder;
    assert!(r.stream_headers().iter().any(|(k, _)| k == "content-type"));
    let _ = r.stream_start();
    let _ = r.stream_text("x");
    let _ = r.stream_end();
    assert!(r.stream_text("late").is_empty(), "nothing after stream_end");
});
