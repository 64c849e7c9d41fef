//! The typed fast paths against the `Value` path they mirror (`gitlab::typed_body`): for every
//! body of a corpus of valid, near-valid and broken bodies, `plan` (fast path first) must give
//! what the `Value` path alone gives: the same plan, the same signed Bedrock request byte for
//! byte, or the same error body. And the fast path must be taken for the bodies GitLab sends.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};

use super::v2::tests::{COMPLETIONS_EXAMPLE, GENERATIONS_EXAMPLE};
use super::*;
use crate::bedrock::endpoint::Endpoint as BedrockEndpoint;
use crate::bedrock::invoke::{build, UpstreamAuth, UpstreamRequest};
use crate::bedrock::sigv4::Credentials;

fn ctx() -> RequestContext<'static> {
    RequestContext {
        now_secs: 1_739_952_001,
        enabled_feature_flags: Some("a, b"),
        default_model: Some("anthropic.claude-3-haiku-20240307-v1:0"),
        scopes: None,
        gitlab_version: None,
    }
}

/// The plan as the `Value` path alone makes it.
fn reference(endpoint: CodeEndpoint, body: &[u8]) -> Result<Plan, GitlabError> {
    match endpoint {
        CodeEndpoint::V2Completions | CodeEndpoint::V2Generations => {
            plan_v2_request(endpoint, &v2::parse(body)?, &ctx())
        }
        CodeEndpoint::V3Completions | CodeEndpoint::V4Suggestions => {
            plan_v3(endpoint, body, &ctx())
        }
    }
}

fn signed(p: &Plan) -> UpstreamRequest {
    let endpoint = BedrockEndpoint::resolve(None, Some("us-east-1")).unwrap();
    let auth = UpstreamAuth::SigV4 {
        creds: Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        },
        region: "us-east-1".into(),
    };
    build(
        &p.invoke,
        &endpoint,
        &auth,
        UNIX_EPOCH + Duration::from_secs(1_739_952_001),
    )
    .unwrap()
}

/// Checks one body on one endpoint; `true` when the fast path took it.
fn check(endpoint: CodeEndpoint, body: &[u8]) -> bool {
    let fast = v2_typed::parse(body);
    if let Some(req) = &fast {
        assert_eq!(
            Ok(req),
            v2::parse(body).as_ref(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let got = plan(endpoint, body, &ctx());
    let want = reference(endpoint, body);
    assert_eq!(got, want, "{}", String::from_utf8_lossy(body));
    if let (Ok(g), Ok(w)) = (&got, &want) {
        let sent = signed(g);
        assert_eq!(sent, signed(w));
        assert_eq!(sent.body, serde_json::to_vec(&w.invoke.body).unwrap());
    }
    fast.is_some()
}

fn check_v2(body: &[u8]) -> bool {
    let a = check(CodeEndpoint::V2Completions, body);
    let b = check(CodeEndpoint::V2Generations, body);
    assert_eq!(a, b);
    a
}

fn bench_body() -> Value {
    json!({"current_file": {"file_name": "add.py", "language_identifier": "python",
        "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": "\n"},
        "prompt_version": 2, "model_provider": "litellm",
        "model_identifier": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", "stream": false})
}

fn v2_bases() -> Vec<Value> {
    vec![
        serde_json::from_str(COMPLETIONS_EXAMPLE).unwrap(),
        serde_json::from_str(GENERATIONS_EXAMPLE).unwrap(),
        bench_body(),
    ]
}

/// Values of every JSON type and the coercions pydantic (and the `Value` path) make.
fn odd_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(1),
        json!(2),
        json!(3),
        json!(-1),
        json!(2.0),
        json!(2.5),
        json!(1e300),
        json!(u64::MAX),
        json!(""),
        json!(" "),
        json!("2"),
        json!("true"),
        json!("yes"),
        json!("x"),
        json!(" a.py\t"),
        json!("é".repeat(255)),
        json!("a".repeat(256)),
        json!([]),
        json!(["x"]),
        json!([{}]),
        json!([{"role": "user", "content": "hi"}]),
        json!({}),
        json!({"a": 1}),
    ]
}

#[test]
fn gitlab_bodies_take_the_fast_path() {
    for base in v2_bases() {
        assert!(check_v2(base.to_string().as_bytes()), "{base}");
    }
    // pretty-printed, escapes everywhere, null optionals, every field Rails and the IDE send
    assert!(check_v2(COMPLETIONS_EXAMPLE.as_bytes()));
    assert!(check_v2(GENERATIONS_EXAMPLE.as_bytes()));
    let full = json!({
        "current_file": {"file_name": "  src/\u{e9}t\u{e9}.rs\n", "language_identifier": null,
            "content_above_cursor": "fn main() {\n\t\"\\\u{1f600}", "content_below_cursor": ""},
        "prompt_version": 1, "prompt": "write \"it\"", "project_path": "g/p", "project_id": 7,
        "model_provider": "litellm", "model_name": "claude_3", "model_identifier": null,
        "stream": true, "choices_count": 1, "prompt_id": "code_suggestions/generations",
        "role_arn": null, "telemetry": [{"model_engine": "x", "lang": null, "requests": 1e3}],
        "context": [{"type": "file", "name": "a\"b.rs", "content": "X"},
                    {"type": "snippet", "name": "s", "content": "  "}],
        "model_endpoint": {"deep": [1, 2.5, null]}, "model_api_key": "sk-x",
        "intent": "generation", "generation_type": "comment", "user_instruction": "do it",
        "agent_id": "a"
    });
    assert!(check_v2(full.to_string().as_bytes()));
    // escaped keys are the same keys
    let escaped = br#"{"prompt_\u0076ersion": 2, "current_file": {"file_name": "a.py",
        "content_above_cursor": "x", "content_below_cursor": "y"}}"#;
    assert!(check_v2(escaped));
}

#[test]
fn every_field_with_odd_values() {
    let top = [
        "prompt_version",
        "current_file",
        "prompt",
        "project_path",
        "project_id",
        "model_provider",
        "model_name",
        "model_identifier",
        "stream",
        "choices_count",
        "prompt_id",
        "role_arn",
        "telemetry",
        "context",
        "model_endpoint",
        "model_api_key",
        "intent",
        "unknown_field",
    ];
    let file = [
        "file_name",
        "language_identifier",
        "content_above_cursor",
        "content_below_cursor",
        "extra",
    ];
    let item = ["type", "name", "content", "extra"];
    let mut fast = 0;
    for base in v2_bases() {
        for value in odd_values() {
            for key in top {
                let mut v = base.clone();
                v[key] = value.clone();
                fast += usize::from(check_v2(v.to_string().as_bytes()));
                v.as_object_mut().unwrap().remove(key);
                fast += usize::from(check_v2(v.to_string().as_bytes()));
            }
            for key in file {
                let mut v = base.clone();
                v["current_file"][key] = value.clone();
                fast += usize::from(check_v2(v.to_string().as_bytes()));
                v["current_file"].as_object_mut().unwrap().remove(key);
                fast += usize::from(check_v2(v.to_string().as_bytes()));
            }
            for key in item {
                let mut v = base.clone();
                let mut it = json!({"type": "file", "name": "n.py", "content": "c"});
                it[key] = value.clone();
                v["context"] = json!([it.clone()]);
                fast += usize::from(check_v2(v.to_string().as_bytes()));
                it.as_object_mut().unwrap().remove(key);
                v["context"] = json!([{"type": "file", "name": "m", "content": "d"}, it]);
                fast += usize::from(check_v2(v.to_string().as_bytes()));
            }
            let mut v = base.clone();
            v["telemetry"] = json!([{}, value.clone()]);
            fast += usize::from(check_v2(v.to_string().as_bytes()));
        }
    }
    assert!(fast > 100, "{fast}");
}

#[test]
fn limits() {
    let cases: [(&[&str], usize); 6] = [
        (&["current_file", "file_name"], 255),
        (&["current_file", "language_identifier"], 255),
        (&["current_file", "content_above_cursor"], 100_000),
        (&["current_file", "content_below_cursor"], 100_000),
        (&["project_path"], 255),
        (&["model_name"], 50),
    ];
    for (path, max) in cases {
        for (s, fast) in [
            ("a".repeat(max), true),
            ("é".repeat(max), true),
            (
                format!(" {} ", "a".repeat(max)),
                path[path.len() - 1] == "file_name",
            ),
            ("a".repeat(max + 1), false),
            ("é".repeat(max + 1), false),
        ] {
            let mut v = bench_body();
            let mut cur = &mut v;
            for p in &path[..path.len() - 1] {
                cur = &mut cur[*p];
            }
            cur[path[path.len() - 1]] = json!(s);
            assert_eq!(
                check_v2(v.to_string().as_bytes()),
                fast,
                "{path:?} {}",
                s.len()
            );
        }
    }
    let item = json!({"type": "file", "name": "a.rb", "content": "x"});
    for (n, fast) in [(100, true), (101, false)] {
        let mut v = bench_body();
        v["context"] = json!(vec![item.clone(); n]);
        assert_eq!(check_v2(v.to_string().as_bytes()), fast);
    }
    for (n, fast) in [(10, true), (11, false)] {
        let mut v = bench_body();
        v["telemetry"] = json!(vec![json!({}); n]);
        assert_eq!(check_v2(v.to_string().as_bytes()), fast);
    }
    for (field, max) in [("type", 1024), ("name", 1024), ("content", 500_000)] {
        for (len, fast) in [(max, true), (max + 1, false)] {
            let mut it = item.clone();
            it[field] = json!("ü".repeat(len));
            let mut v = bench_body();
            v["context"] = json!([item.clone(), it]);
            assert_eq!(check_v2(v.to_string().as_bytes()), fast, "{field} {len}");
        }
    }
}

#[test]
fn raw_bodies() {
    let bench = bench_body().to_string();
    let inner = bench.strip_prefix('{').unwrap();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"  ".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        format!("[{}]", bench).into_bytes(),
        format!("{bench} x").into_bytes(),
        format!("\u{feff}{bench}").into_bytes(),
        // duplicate keys: the Value path keeps the last one
        format!(r#"{{"stream": true, {inner}"#).into_bytes(),
        format!(r#"{{"prompt_version": 9, {inner}"#).into_bytes(),
        format!(r#"{{"model_endpoint": 1, "model_endpoint": 2, {inner}"#).into_bytes(),
        format!(r#"{{"current_file": 1, {inner}"#).into_bytes(),
        // what IgnoredAny would let through
        format!(r#"{{"model_endpoint": 1e400, {inner}"#).into_bytes(),
        format!(r#"{{"model_endpoint": {deep}, {inner}"#).into_bytes(),
        format!(r#"{{"model_api_key": "\ud800", {inner}"#).into_bytes(),
        [&br#"{"intent": ""#[..], b"\xff\"", b",", inner.as_bytes()].concat(),
        // fields given as an array
        format!(
            r#"{{"current_file": ["a.py", null, "x", "y"], {}"#,
            &inner[inner.find("\"prompt_version").unwrap()..]
        )
        .into_bytes(),
        format!(r#"{{"context": [["file", "n", "c"]], {inner}"#).into_bytes(),
        // truncated
        bench.as_bytes()[..bench.len() / 2].to_vec(),
    ];
    for b in &bodies {
        assert!(!check_v2(b), "{}", String::from_utf8_lossy(b));
    }
    assert!(check_v2(format!(" \n{bench}\n").as_bytes()));
    // a duplicate key in an object nobody reads is no duplicate field
    let b = format!(r#"{{"model_endpoint": {{"a": 1, "a": 2}}, {inner}"#);
    assert!(check_v2(b.as_bytes()));
}

/// Single-byte changes of GitLab's bodies: whatever they turn into, both paths agree.
#[test]
fn mutated_bodies() {
    let alphabet = b"{}[]\":,0123456789.eE+- \\untrfalsx\n\xc3\xa9";
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for base in [
        COMPLETIONS_EXAMPLE.to_string(),
        GENERATIONS_EXAMPLE.to_string(),
        bench_body().to_string(),
    ] {
        let base = base.into_bytes();
        for _ in 0..600 {
            let mut b = base.clone();
            for _ in 0..=(next() % 2) {
                let at = (next() as usize) % b.len();
                let byte = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 => b[at] = byte,
                    1 => b.insert(at, byte),
                    _ => {
                        b.remove(at);
                    }
                }
            }
            check_v2(&b);
        }
    }
}
