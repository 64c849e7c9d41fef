//! End-to-end tests of `plan` + `Responder` on Rails-shaped bodies
//! (docs/gitlab-contract.md#code-completions to #code-generations-v3-v4).

use serde_json::{json, Value};

use super::v2::tests::{COMPLETIONS_EXAMPLE, GENERATIONS_EXAMPLE};
use super::v3::tests::GENERATION_EXAMPLE;
use super::*;
use crate::bedrock::messages::{MessagesResponse, Role};

const NOW: u64 = 1_739_952_001;

fn ctx() -> RequestContext<'static> {
    RequestContext {
        now_secs: NOW,
        enabled_feature_flags: None,
        default_model: None,
        scopes: None,
        gitlab_version: None,
    }
}

fn bedrock_answer(text: &str, input: u64, output: u64) -> MessagesResponse {
    serde_json::from_value(json!({
        "id": "msg_bdrk_1", "type": "message", "role": "assistant",
        "model": "claude", "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "usage": {"input_tokens": input, "output_tokens": output}
    }))
    .unwrap()
}

/// The plan of a body that must be accepted (request context [`ctx`]).
fn planned(endpoint: CodeEndpoint, body: &[u8]) -> Plan {
    plan(endpoint, body, &ctx()).unwrap()
}

/// Whether the plan of an accepted body streams.
fn streams(endpoint: CodeEndpoint, body: &[u8]) -> bool {
    planned(endpoint, body).invoke.stream
}

fn with(body: &str, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(body).unwrap();
    f(&mut v);
    v.to_string().into_bytes()
}

fn v3_completion_body(stream: Option<bool>) -> Vec<u8> {
    let mut payload = json!({
        "file_name": "main.go", "content_above_cursor": "func main() {\n\t", "content_below_cursor": "\n}\n",
        "language_identifier": "go"
    });
    if let Some(s) = stream {
        payload["stream"] = json!(s);
    }
    json!({
        "prompt_components": [
            {"type": "code_editor_completion", "payload": payload},
            {"type": "code_context", "payload": {"type": "file", "name": "util.go", "content": "package util"}}
        ],
        "model_metadata": {"provider": "openai", "name": "claude_3", "identifier": "bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0"}
    })
    .to_string()
    .into_bytes()
}

// ---------------------------------------------------------------- plans

#[test]
fn v2_completions_plan() {
    let p = planned(CodeEndpoint::V2Completions, COMPLETIONS_EXAMPLE.as_bytes());
    assert_eq!(p.unit_primitive, "complete_code");
    assert!(!p.reject_gateway_issuer);
    assert_eq!(p.denied_detail, "Unauthorized to access code completions");
    assert_eq!(p.feature, "code_completions");
    assert_eq!(
        p.invoke.model_id,
        "anthropic.claude-3-5-sonnet-20240620-v1:0"
    );
    assert!(!p.invoke.stream);
    let b = &p.invoke.body;
    assert_eq!((b.max_tokens, b.temperature), (128, Some(0.0)));
    assert!(b.messages[0]
        .content
        .contains("<prefix>\nclass User\n  def full_name\n    \n</prefix>"));
    assert_eq!(p.responder.lang(), "ruby");
}

#[test]
fn v2_generations_plan() {
    let p = planned(CodeEndpoint::V2Generations, GENERATIONS_EXAMPLE.as_bytes());
    assert_eq!(p.unit_primitive, "generate_code");
    assert!(p.reject_gateway_issuer);
    assert_eq!(p.denied_detail, "Unauthorized to access code generations");
    assert_eq!(p.feature, "code_generations");
    let b = &p.invoke.body;
    assert_eq!((b.max_tokens, b.temperature), (2048, Some(0.2)));
    assert_eq!(b.stop_sequences, vec!["</new_code>".to_string()]);
    assert_eq!(b.messages.last().unwrap().role, Role::Assistant);
    assert!(b
        .system
        .as_deref()
        .unwrap()
        .contains("def hello():\n  <<CURSOR>>"));
    assert_eq!(p.responder.lang(), "python");

    // the v2 `prompt` is the instruction; context becomes related files/snippets
    let body = with(GENERATIONS_EXAMPLE, |v| {
        v["prompt"] = json!("print a greeting");
        v["context"] = json!([
            {"type": "file", "name": "a\"b.py", "content": "X = 1"},
            {"type": "snippet", "name": "s", "content": "def s(): pass"}
        ]);
        v["stream"] = json!(true);
    });
    let p = planned(CodeEndpoint::V2Generations, &body);
    assert!(p.invoke.stream);
    assert_eq!(p.invoke.body.messages[0].content, "print a greeting");
    let sys = p.invoke.body.system.unwrap();
    assert!(sys.contains("<file_content file_name=\"a&quot;b.py\">\nX = 1\n</file_content>"));
    assert!(sys.contains("<snippet_content name=\"s\">\ndef s(): pass\n</snippet_content>"));
}

#[test]
fn v3_and_v4_generation_plans() {
    for (endpoint, stream) in [
        (CodeEndpoint::V3Completions, true),
        (CodeEndpoint::V4Suggestions, true),
    ] {
        let p = planned(endpoint, GENERATION_EXAMPLE.as_bytes());
        assert_eq!(p.unit_primitive, "generate_code");
        assert!(!p.reject_gateway_issuer);
        assert_eq!(p.denied_detail, "Unauthorized to access code suggestions");
        assert_eq!(p.invoke.stream, stream);
        assert_eq!(
            p.invoke.model_id,
            "anthropic.claude-3-5-sonnet-20240620-v1:0"
        );
        assert_eq!(p.responder.lang(), "python");
        let b = &p.invoke.body;
        assert_eq!(
            b.messages[0].content,
            "Generate the best possible code based on instructions."
        );
        let sys = b.system.as_deref().unwrap();
        assert!(sys.contains("<related_files>\n<file_content file_name=\"a.py\">\n...\n</file_content>\n</related_files>"));
        assert!(sys.contains("<examples>"));
        assert!(!sys.contains("<libs>"));
    }
}

#[test]
fn v3_v4_stream_defaults() {
    // explicit payload value wins; then the top-level value; then v3=false / v4=true
    let no_stream = with(GENERATION_EXAMPLE, |v| {
        v.as_object_mut().unwrap().remove("stream");
        v["prompt_components"][0]["payload"]
            .as_object_mut()
            .unwrap()
            .remove("stream");
    });
    assert!(!streams(CodeEndpoint::V3Completions, &no_stream));
    assert!(streams(CodeEndpoint::V4Suggestions, &no_stream));
    let explicit_false = with(GENERATION_EXAMPLE, |v| {
        v["prompt_components"][0]["payload"]["stream"] = json!(false);
    });
    assert!(!streams(CodeEndpoint::V4Suggestions, &explicit_false));
    let top_only = with(GENERATION_EXAMPLE, |v| {
        v["stream"] = json!(false);
        v["prompt_components"][0]["payload"]
            .as_object_mut()
            .unwrap()
            .remove("stream");
    });
    assert!(!streams(CodeEndpoint::V4Suggestions, &top_only));
}

#[test]
fn v3_completion_component_plan() {
    for endpoint in [CodeEndpoint::V3Completions, CodeEndpoint::V4Suggestions] {
        let p = planned(endpoint, &v3_completion_body(Some(false)));
        assert_eq!(p.unit_primitive, "complete_code");
        assert!(p.reject_gateway_issuer);
        assert_eq!(p.denied_detail, "Unauthorized to access code suggestions");
        assert_eq!(p.feature, "code_completions");
        assert_eq!(
            p.invoke.model_id,
            "us.anthropic.claude-3-5-haiku-20241022-v1:0"
        );
        assert!(!p.invoke.stream);
        assert_eq!(p.invoke.body.max_tokens, 128);
        assert!(p.invoke.body.messages[0]
            .content
            .contains("<prefix>\npackage util\nfunc main() {\n\t\n</prefix>"));
    }
}

#[test]
fn model_selection_in_plans() {
    let no_id = with(COMPLETIONS_EXAMPLE, |v| {
        v.as_object_mut().unwrap().remove("model_identifier");
    });
    let e = plan(CodeEndpoint::V2Completions, &no_id, &ctx()).unwrap_err();
    assert_eq!(e.status, 422);
    assert!(e.body.contains("No model configured"));
    let c = RequestContext {
        default_model: Some("bedrock/anthropic.claude-3-haiku-20240307-v1:0"),
        scopes: None,
        ..ctx()
    };
    let p = plan(CodeEndpoint::V2Completions, &no_id, &c).unwrap();
    assert_eq!(p.invoke.model_id, "anthropic.claude-3-haiku-20240307-v1:0");

    let openai = with(COMPLETIONS_EXAMPLE, |v| {
        v["model_identifier"] = json!("custom_openai/gpt-4o")
    });
    assert_eq!(
        plan(CodeEndpoint::V2Completions, &openai, &c)
            .unwrap_err()
            .status,
        400
    );
    let openai = with(GENERATION_EXAMPLE, |v| {
        v["model_metadata"]["identifier"] = json!("claude-3")
    });
    assert_eq!(
        plan(CodeEndpoint::V4Suggestions, &openai, &c)
            .unwrap_err()
            .status,
        400
    );
    // validation comes before model selection
    let both = with(COMPLETIONS_EXAMPLE, |v| {
        v["model_identifier"] = json!("vertex_ai/x");
        v["current_file"]["file_name"] = json!(1);
    });
    assert_eq!(
        plan(CodeEndpoint::V2Completions, &both, &c)
            .unwrap_err()
            .status,
        422
    );
}

#[test]
fn malformed_bodies_on_every_endpoint() {
    for endpoint in [
        CodeEndpoint::V2Completions,
        CodeEndpoint::V2Generations,
        CodeEndpoint::V3Completions,
        CodeEndpoint::V4Suggestions,
    ] {
        for body in [&b"{"[..], b"", b"null", b"[]", b"\xff\xfe"] {
            let e = plan(endpoint, body, &ctx()).unwrap_err();
            assert_eq!(e.status, 422, "{endpoint:?} {body:?}");
            assert_eq!(e.header("content-type"), Some("application/json"));
        }
    }
}

#[test]
fn big_bodies_work() {
    let body = with(COMPLETIONS_EXAMPLE, |v| {
        v["current_file"]["content_above_cursor"] = json!("x = 1\n".repeat(16_000));
        v["current_file"]["content_below_cursor"] = json!("y".repeat(100_000));
        v["context"] = json!([{"type": "file", "name": "big", "content": "z".repeat(385_000)}]);
    });
    assert!(body.len() > 590_000 && body.len() <= 600_000);
    let p = planned(CodeEndpoint::V2Completions, &body);
    let user = &p.invoke.body.messages[0].content;
    assert!(user.len() < 9_000, "budgeted: {}", user.len());
    assert!(!user.contains('z'), "context that does not fit is dropped");
    // the response reports the context as sent but not used
    let r = p.responder.complete(&bedrock_answer("1", 10, 1));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["model"]["tokens_consumption_metadata"]["context_tokens_sent"],
        96_250
    );
    assert_eq!(
        v["model"]["tokens_consumption_metadata"]["context_tokens_used"],
        0
    );
}

// ---------------------------------------------------------------- non-stream answers

#[test]
fn v2_completions_response_exact() {
    let p = planned(CodeEndpoint::V2Completions, COMPLETIONS_EXAMPLE.as_bytes());
    let r = p
        .responder
        .complete(&bedrock_answer("\"#{first_name} #{last_name}\"", 37, 0));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers,
        vec![("content-type".to_string(), "application/json".to_string())]
    );
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        r##"{"id":"id","model":{"engine":"agent","name":"Claude 3 Code Completions","lang":"ruby","tokens_consumption_metadata":{"input_tokens":37,"output_tokens":0,"max_output_tokens_used":false,"context_tokens_sent":0,"context_tokens_used":0},"region":"us-central1"},"object":"text_completion","created":1739952001,"choices":[{"text":"\"#{first_name} #{last_name}\"","index":0,"finish_reason":"length"}],"metadata":{"enabled_feature_flags":null}}"##
    );
}

#[test]
fn v2_completions_empty_text_max_tokens_and_flags() {
    let c = RequestContext {
        enabled_feature_flags: Some("flag_a, flag_b,,flag_a"),
        ..ctx()
    };
    let p = plan(
        CodeEndpoint::V2Completions,
        COMPLETIONS_EXAMPLE.as_bytes(),
        &c,
    )
    .unwrap();
    let r = p.responder.complete(&bedrock_answer("", 50, 128));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["choices"], json!([]));
    assert_eq!(
        v["model"]["tokens_consumption_metadata"]["max_output_tokens_used"],
        true
    );
    assert_eq!(
        v["metadata"]["enabled_feature_flags"],
        json!(["flag_a", "flag_b"])
    );
    // completions are not post-processed
    let r = p.responder.complete(&bedrock_answer("```\nx\n```", 1, 1));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["choices"][0]["text"], "```\nx\n```");

    let c = RequestContext {
        enabled_feature_flags: Some(""),
        ..ctx()
    };
    let p = plan(
        CodeEndpoint::V2Completions,
        COMPLETIONS_EXAMPLE.as_bytes(),
        &c,
    )
    .unwrap();
    let v: Value =
        serde_json::from_slice(&p.responder.complete(&bedrock_answer("x", 1, 1)).body).unwrap();
    assert_eq!(v["metadata"]["enabled_feature_flags"], json!([]));
}

#[test]
fn v2_generations_response_exact() {
    let p = planned(CodeEndpoint::V2Generations, GENERATIONS_EXAMPLE.as_bytes());
    let r = p
        .responder
        .complete(&bedrock_answer("```python\nprint('hello')\n```", 20, 8));
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        r#"{"id":"id","model":{"engine":"agent","name":"Claude 3 Code Generations Agent","lang":"python","region":"us-central1"},"object":"text_completion","created":1739952001,"choices":[{"text":"\nprint('hello')\n","index":0,"finish_reason":"length"}],"metadata":{"enabled_feature_flags":null}}"#
    );
    let r = p.responder.complete(&bedrock_answer("  \n ", 20, 2));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["choices"], json!([]));
}

#[test]
fn v3_v4_generation_response_exact() {
    for endpoint in [CodeEndpoint::V3Completions, CodeEndpoint::V4Suggestions] {
        let p = planned(endpoint, GENERATION_EXAMPLE.as_bytes());
        let r = p.responder.complete(&bedrock_answer(
            "def sort_ints(xs):\n    return sorted(xs)",
            100,
            12,
        ));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"choices":[{"text":"def sort_ints(xs):\n    return sorted(xs)","index":0,"finish_reason":"length"}],"metadata":{"model":{"engine":"agent","name":"Claude 3 Code Generations Agent","lang":"python"},"timestamp":1739952001,"enabled_feature_flags":null,"region":null}}"#
        );
    }
}

#[test]
fn v3_completion_response_exact() {
    let c = RequestContext {
        enabled_feature_flags: Some("ff"),
        ..ctx()
    };
    let p = plan(CodeEndpoint::V3Completions, &v3_completion_body(None), &c).unwrap();
    let r = p
        .responder
        .complete(&bedrock_answer("fmt.Println(\"hi\")", 10, 5));
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        r#"{"choices":[{"text":"fmt.Println(\"hi\")","index":0,"finish_reason":"length"}],"metadata":{"model":{"engine":"agent","name":"Claude 3 Code Completions","lang":"go"},"timestamp":1739952001,"enabled_feature_flags":["ff"],"region":null}}"#
    );
    let r = p.responder.complete(&bedrock_answer("", 10, 0));
    assert!(String::from_utf8(r.body)
        .unwrap()
        .starts_with(r#"{"choices":[],"#));
}

// ---------------------------------------------------------------- streams

#[test]
fn raw_text_streams() {
    for (endpoint, body) in [
        (
            CodeEndpoint::V2Completions,
            COMPLETIONS_EXAMPLE.as_bytes().to_vec(),
        ),
        (
            CodeEndpoint::V2Generations,
            GENERATIONS_EXAMPLE.as_bytes().to_vec(),
        ),
        (
            CodeEndpoint::V3Completions,
            GENERATION_EXAMPLE.as_bytes().to_vec(),
        ),
    ] {
        let mut r = planned(endpoint, &body).responder;
        assert_eq!(
            r.stream_headers(),
            vec![(
                "content-type".to_string(),
                "text/event-stream; charset=utf-8".to_string()
            )]
        );
        let mut out = r.stream_start();
        out.extend(r.stream_text("```py\ndef f"));
        out.extend(r.stream_text(""));
        out.extend(r.stream_text("(): é\n"));
        out.extend(r.stream_end());
        out.extend(r.stream_text("after end"));
        assert_eq!(
            out,
            "```py\ndef f(): é\n".as_bytes(),
            "{endpoint:?}: streams are raw and not post-processed"
        );
        assert!(r.stream_error("boom").is_empty());
    }
}

#[test]
fn v4_sse_stream_exact() {
    let mut r = planned(CodeEndpoint::V4Suggestions, GENERATION_EXAMPLE.as_bytes()).responder;
    assert_eq!(
        r.stream_headers(),
        vec![
            (
                "content-type".to_string(),
                "text/event-stream; charset=utf-8".to_string()
            ),
            ("x-streaming-format".to_string(), "sse".to_string()),
            ("cache-control".to_string(), "no-store".to_string()),
            ("x-accel-buffering".to_string(), "no".to_string()),
        ]
    );
    let mut out = r.stream_start();
    out.extend(r.stream_start());
    out.extend(r.stream_text("def sort_ints(xs):\n"));
    out.extend(r.stream_text(""));
    out.extend(r.stream_text("    return sorted(xs)"));
    out.extend(r.stream_end());
    out.extend(r.stream_end());
    out.extend(r.stream_text("late"));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        concat!(
            "event: stream_start\n",
            r#"data: {"metadata":{"model":{"engine":"agent","name":"Claude 3 Code Generations Agent"},"timestamp":1739952001,"region":"us-central1"}}"#,
            "\n\n",
            "event: content_chunk\n",
            r#"data: {"choices":[{"delta":{"content":"def sort_ints(xs):\n"},"index":0}]}"#,
            "\n\n",
            "event: content_chunk\n",
            r#"data: {"choices":[{"delta":{"content":"    return sorted(xs)"},"index":0}]}"#,
            "\n\n",
            "event: stream_end\n",
            "data: null\n\n",
        )
    );
}

#[test]
fn v4_sse_with_flags_implicit_start_and_error() {
    let c = RequestContext {
        enabled_feature_flags: Some("a,b"),
        ..ctx()
    };
    let mut r = plan(
        CodeEndpoint::V4Suggestions,
        &v3_completion_body(Some(true)),
        &c,
    )
    .unwrap()
    .responder;
    // no explicit start: the first chunk carries it
    let first = String::from_utf8(r.stream_text("x")).unwrap();
    assert!(first.starts_with(concat!(
        "event: stream_start\n",
        r#"data: {"metadata":{"model":{"engine":"agent","name":"Claude 3 Code Completions"},"timestamp":1739952001,"enabled_feature_flags":["a","b"],"region":"us-central1"}}"#,
        "\n\nevent: content_chunk\n"
    )), "{first}");
    let err = String::from_utf8(r.stream_error("upstream reset: SECRET")).unwrap();
    assert_eq!(err, "event: stream_end\ndata: null\n\n");
    assert!(r.stream_end().is_empty());

    // an error before anything was sent still yields a well-formed SSE stream
    let mut r = planned(CodeEndpoint::V4Suggestions, &v3_completion_body(Some(true))).responder;
    let out = String::from_utf8(r.stream_error("x")).unwrap();
    assert!(
        out.starts_with("event: stream_start\n")
            && out.ends_with("event: stream_end\ndata: null\n\n")
    );
}

#[test]
fn v4_escapes_hostile_deltas() {
    let mut r = planned(CodeEndpoint::V4Suggestions, GENERATION_EXAMPLE.as_bytes()).responder;
    r.stream_start();
    let out =
        String::from_utf8(r.stream_text("a\n\nevent: stream_end\r\ndata: \"x\"\u{0}")).unwrap();
    assert_eq!(
        out.matches('\n').count(),
        3,
        "the data line has no raw newline: {out:?}"
    );
    assert!(out.ends_with("\n\n"));
}

#[test]
fn usage_recording() {
    let mut r = planned(CodeEndpoint::V4Suggestions, GENERATION_EXAMPLE.as_bytes()).responder;
    r.record_usage(Some(25), Some(1));
    r.record_usage(None, Some(40));
    r.record_usage(None, None);
    assert_eq!((r.usage().input_tokens, r.usage().output_tokens), (25, 40));
}
