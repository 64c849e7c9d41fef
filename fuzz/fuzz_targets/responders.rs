//! Bedrock answers → GitLab answers: the `Responder` of every endpoint family fed a fuzzed
//! Bedrock JSON answer (`MessagesResponse`), a fuzzed sequence of stream events
//! (`bedrock::stream::parse_event`), or a fuzzed error answer (`bedrock::errors::parse_error` →
//! `gitlab::errors::from_bedrock`), the way `src/host/request.rs` drives them.
//!
//! Input: NUL-separated `control \0 prefix \0 answer`. `control` (hex text) byte 0: the family (v2
//! completions, v2 generations, v3 completions, v3 generations, v4 completions, v4
//! generations, prompt v1, prompt v2, chat agent, legacy chat); byte 1: 0 JSON answer,
//! 1 stream, 2 error answer; bytes 2..4: the error status. `prefix`: the generation's
//! `content_above_cursor` (post-processing input). `answer`: the JSON answer; or one stream
//! event JSON per line (a line `!<message>` is an in-stream exception); or
//! `x-amzn-errortype \n retry-after \n body`.
//!
//! Properties:
//! * a JSON answer gives a 200 with a content type and the family's shape: v2/v3/v4 JSON with
//!   `choices` (completions carry the model text verbatim, usage echoed), prompt v1 a JSON
//!   string of the text, prompt v2 `{content, usage}`, agent NDJSON events, legacy `{response,
//!   metadata}`; an unreadable answer is the host's 502 JSON error;
//! * a stream carries exactly the text deltas (raw families byte for byte; v4 as SSE
//!   `content_chunk` events between one `stream_start` and one `stream_end`; prompt v2 as JSON
//!   lines, usage last; agent NDJSON whose events equal those of the same text answered as
//!   JSON), and nothing is written after the end or after an error;
//! * every Bedrock error becomes a 4xx/5xx GitLab JSON error; throttling is 429 with a short
//!   printable `retry-after`; credential/signature failures never forward Bedrock's message;
//!   normalized error kinds are short identifiers, messages bounded.

#![no_main]

use duo_bedrock_filter::bedrock::errors::{parse_error, BedrockError, MAX_MESSAGE_LEN};
use duo_bedrock_filter::bedrock::messages::MessagesResponse;
use duo_bedrock_filter::bedrock::stream::{parse_event, StreamEvent};
use duo_bedrock_filter::gitlab::code_suggestions::CodeEndpoint;
use duo_bedrock_filter::gitlab::errors::{
    from_bedrock, from_envoy, EnvoyFailure, ACCESS_DENIED_HINT,
};
use duo_bedrock_filter::gitlab::{plan, Endpoint, Family, GitlabError, Plan, RequestContext};
use duo_bedrock_filter_fuzz::{assert_gitlab_error, field, fields, hex, number, text};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const MODEL: &str = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0";
const MODEL_ID: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const NOW: u64 = 1_739_952_001;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fam {
    V2Completions,
    V2Generations,
    V3Completions,
    V3Generations,
    V4Completions,
    V4Generations,
    PromptV1,
    PromptV2,
    Agent,
    Legacy,
}

const FAMILIES: [Fam; 10] = [
    Fam::V2Completions,
    Fam::V2Generations,
    Fam::V3Completions,
    Fam::V3Generations,
    Fam::V4Completions,
    Fam::V4Generations,
    Fam::PromptV1,
    Fam::PromptV2,
    Fam::Agent,
    Fam::Legacy,
];

fn v3_body(generation: bool, prefix: &str) -> Value {
    let component = if generation {
        json!({"type": "code_editor_generation", "payload": {
            "file_name": "main.py", "content_above_cursor": prefix, "content_below_cursor": "",
            "language_identifier": "Python", "stream": true,
            "prompt_enhancer": {
                "examples_array": [{"example": "...", "response": "...", "trigger_type": "comment"}],
                "trimmed_content_above_cursor": prefix, "trimmed_content_below_cursor": "",
                "related_files": ["<file_content file_name=\"a.py\">\n...\n</file_content>\n"],
                "related_snippets": [], "libraries": [],
                "user_instruction": "Generate the best possible code based on instructions."},
            "prompt_id": "code_suggestions/generations", "prompt_version": "^1.0.0"}})
    } else {
        json!({"type": "code_editor_completion", "payload": {
            "file_name": "main.go", "content_above_cursor": prefix, "content_below_cursor": "\n}\n",
            "language_identifier": "go"}})
    };
    json!({
        "prompt_components": [component,
            {"type": "code_context", "payload": {"type": "file", "name": "util.go", "content": "package util"}}],
        "model_metadata": {"provider": "openai", "name": "claude_3", "identifier": MODEL}
    })
}

fn request(fam: Fam, prefix: &str) -> (Endpoint, Value) {
    let v2 = |intent: &str| {
        json!({
            "current_file": {"file_name": "test.py", "language_identifier": "python",
                "content_above_cursor": prefix, "content_below_cursor": ""},
            "intent": intent, "stream": false, "model_provider": "litellm",
            "model_name": "claude_3", "model_identifier": MODEL, "context": [], "telemetry": [],
            "prompt_version": 2, "prompt": null
        })
    };
    let prompt = json!({"inputs": {"diff": "+x"}, "model_metadata": {"identifier": MODEL}});
    match fam {
        Fam::V2Completions => (
            Endpoint::Code(CodeEndpoint::V2Completions),
            v2("completion"),
        ),
        Fam::V2Generations => (
            Endpoint::Code(CodeEndpoint::V2Generations),
            v2("generation"),
        ),
        Fam::V3Completions => (
            Endpoint::Code(CodeEndpoint::V3Completions),
            v3_body(false, prefix),
        ),
        Fam::V3Generations => (
            Endpoint::Code(CodeEndpoint::V3Completions),
            v3_body(true, prefix),
        ),
        Fam::V4Completions => (
            Endpoint::Code(CodeEndpoint::V4Suggestions),
            v3_body(false, prefix),
        ),
        Fam::V4Generations => (
            Endpoint::Code(CodeEndpoint::V4Suggestions),
            v3_body(true, prefix),
        ),
        Fam::PromptV1 => (
            Endpoint::Prompt {
                version: 1,
                prompt_id: "generate_commit_message".into(),
            },
            prompt,
        ),
        Fam::PromptV2 => (
            Endpoint::Prompt {
                version: 2,
                prompt_id: "generate_commit_message".into(),
            },
            prompt,
        ),
        Fam::Agent => (
            Endpoint::ChatAgent,
            json!({"messages": [{"role": "user", "content": "How do I revert a commit?"}],
                   "model_metadata": {"identifier": MODEL}}),
        ),
        Fam::Legacy => (
            Endpoint::LegacyChat {
                invokable: "explain_code".into(),
            },
            json!({"prompt_components": [{"type": "prompt",
                "metadata": {"source": "GitLab EE", "version": "17.9.0"},
                "payload": {"content": [{"role": "user", "content": "Hello"}],
                            "provider": "litellm", "model": "claude_3", "model_identifier": MODEL}}],
                "stream": true}),
        ),
    }
}

/// A responder for `fam`, with `prefix` as the code above the cursor when the body accepts it.
fn planned(fam: Fam, prefix: &str) -> Plan {
    let ctx = RequestContext {
        now_secs: NOW,
        enabled_feature_flags: Some("flag_a, flag_b,,flag_a"),
        default_model: None,
        scopes: None,
        gitlab_version: None,
    };
    let (endpoint, body) = request(fam, prefix);
    plan(&endpoint, body.to_string().as_bytes(), &ctx).unwrap_or_else(|_| {
        let (endpoint, body) = request(fam, "def hello():\n  ");
        plan(&endpoint, body.to_string().as_bytes(), &ctx)
            .unwrap_or_else(|e| panic!("fixed {fam:?} body refused: {e:?}"))
    })
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(b)))
}

/// NDJSON agent events: (concatenated final answer, other events).
fn agent_events(b: &[u8]) -> (String, Vec<Value>) {
    let s = std::str::from_utf8(b).expect("UTF-8 NDJSON");
    assert!(s.is_empty() || s.ends_with('\n'));
    let mut answer = String::new();
    let mut others = Vec::new();
    for line in s.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        match v["type"].as_str() {
            Some("final_answer_delta") => {
                let t = v["data"]["text"].as_str().expect("text");
                assert!(!t.is_empty(), "empty delta");
                answer.push_str(t);
            }
            Some("action" | "unknown" | "error") => others.push(v),
            other => panic!("unknown event type {other:?}"),
        }
    }
    (answer, others)
}

fn json_answer(fam: Fam, prefix: &str, answer: &[u8]) {
    let resp: MessagesResponse = match serde_json::from_slice(answer) {
        Ok(r) => r,
        Err(_) => {
            assert_gitlab_error(&GitlabError::detail(
                502,
                "Inference failed: unreadable answer from Bedrock",
            ));
            return;
        }
    };
    let mut p = planned(fam, prefix);
    let r = p.responder.complete(&resp);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").is_some());
    let text = resp.text();
    match fam {
        Fam::Agent => {
            let mut again = planned(fam, prefix);
            assert_eq!(
                agent_events(&r.body),
                agent_events(&again.responder.complete(&resp).body)
            );
        }
        Fam::PromptV1 => assert_eq!(json_of(&r.body), Value::String(text)),
        Fam::PromptV2 => assert_eq!(
            json_of(&r.body),
            json!({"content": text, "usage": {MODEL_ID: {
                "input_tokens": resp.usage.input_tokens, "output_tokens": resp.usage.output_tokens}}})
        ),
        Fam::Legacy => {
            let v = json_of(&r.body);
            assert_eq!(v["response"], Value::String(text));
            assert_eq!(v["metadata"]["timestamp"], json!(NOW));
        }
        _ => {
            let v = json_of(&r.body);
            let choices = v["choices"].as_array().expect("choices");
            assert!(choices.len() <= 1);
            let generation = matches!(
                fam,
                Fam::V2Generations | Fam::V3Generations | Fam::V4Generations
            );
            if let Some(c) = choices.first() {
                let t = c["text"].as_str().expect("choice text");
                assert!(!t.is_empty());
                if !generation {
                    assert_eq!(t, text);
                }
            } else if !generation {
                assert!(text.is_empty());
            }
            if fam == Fam::V2Completions {
                let t = &v["model"]["tokens_consumption_metadata"];
                assert_eq!(t["input_tokens"], json!(resp.usage.input_tokens));
                assert_eq!(t["output_tokens"], json!(resp.usage.output_tokens));
            }
        }
    }
}

/// SSE events `(name, data)` of a v4 stream.
fn sse_events(b: &[u8]) -> Vec<(String, Value)> {
    let s = std::str::from_utf8(b).expect("UTF-8 SSE");
    assert!(s.is_empty() || s.ends_with("\n\n"));
    s.split_terminator("\n\n")
        .map(|block| {
            let (ev, data) = block.split_once('\n').expect("two lines");
            let name = ev.strip_prefix("event: ").expect("event line").to_string();
            let data = data.strip_prefix("data: ").expect("data line");
            (
                name,
                serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}")),
            )
        })
        .collect()
}

fn stream(fam: Fam, prefix: &str, answer: &[u8]) {
    let mut p = planned(fam, prefix);
    let r = &mut p.responder;
    assert!(r.stream_headers().iter().any(|(k, _)| k == "content-type"));
    let mut out = r.stream_start();
    let mut deltas = String::new();
    let mut usage = (None, None);
    let mut failed = false;
    for line in answer.split(|b| *b == b'\n') {
        if let Some(msg) = line.strip_prefix(b"!") {
            let m = text(msg);
            let e = BedrockError::from_stream_exception("throttlingException", &m);
            assert_eq!(e.status, 429);
            out.extend(r.stream_error(&m));
            failed = true;
            break;
        }
        match parse_event(line) {
            Ok(StreamEvent::TextDelta(t)) => {
                deltas.push_str(&t);
                out.extend(r.stream_text(&t));
            }
            Ok(StreamEvent::MessageStart { input_tokens, .. }) => {
                usage.0 = Some(input_tokens);
                r.record_usage(Some(input_tokens), None);
            }
            Ok(StreamEvent::MessageDelta { output_tokens, .. }) => {
                usage.1 = Some(output_tokens);
                r.record_usage(None, Some(output_tokens));
            }
            Ok(StreamEvent::Error { kind, message }) => {
                let e = BedrockError::from_stream_exception(&kind, &message);
                assert!(e.status >= 400 && !e.kind.is_empty());
                out.extend(r.stream_error(&message));
                failed = true;
                break;
            }
            Ok(_) => {}
            Err(_) => {
                out.extend(r.stream_error("unreadable stream from Bedrock"));
                failed = true;
                break;
            }
        }
    }
    if !failed {
        out.extend(r.stream_end());
    }
    assert!(r.stream_text("late").is_empty(), "text after the end");
    assert!(r.stream_end().is_empty(), "a second end");
    assert!(r.stream_error("late").is_empty(), "an error after the end");

    match fam {
        Fam::V4Completions | Fam::V4Generations => {
            let events = sse_events(&out);
            assert_eq!(events.first().map(|e| e.0.as_str()), Some("stream_start"));
            assert_eq!(events.last().map(|e| e.0.as_str()), Some("stream_end"));
            assert_eq!(events.last().map(|e| &e.1), Some(&Value::Null));
            let mut text = String::new();
            for (name, data) in &events[1..events.len() - 1] {
                assert_eq!(name, "content_chunk");
                let t = data["choices"][0]["delta"]["content"]
                    .as_str()
                    .expect("content");
                assert!(!t.is_empty());
                text.push_str(t);
            }
            assert_eq!(text, deltas);
        }
        Fam::PromptV2 => {
            let s = std::str::from_utf8(&out).expect("UTF-8");
            let mut text = String::new();
            let mut lines: Vec<Value> = s.lines().map(|l| json_of(l.as_bytes())).collect();
            if !failed && (usage.0.is_some() || usage.1.is_some()) {
                let last = lines.pop().expect("usage line");
                assert_eq!(
                    last,
                    json!({"content": "", "usage": {MODEL_ID: {
                        "input_tokens": usage.0.unwrap_or(0), "output_tokens": usage.1.unwrap_or(0)}}})
                );
            }
            for l in &lines {
                assert!(l.get("usage").is_none());
                text.push_str(l["content"].as_str().expect("content"));
            }
            assert_eq!(text, deltas);
        }
        Fam::Agent => {
            let (answer, others) = agent_events(&out);
            if failed {
                assert_eq!(
                    others.last().map(|e| e["type"].clone()),
                    Some(json!("error"))
                );
            } else {
                let resp: MessagesResponse =
                    serde_json::from_value(json!({"content": [{"type": "text", "text": deltas}]}))
                        .expect("answer");
                let mut whole = planned(fam, prefix);
                assert_eq!(
                    (answer, others),
                    agent_events(&whole.responder.complete(&resp).body)
                );
            }
        }
        // Raw text streams: the deltas, unchanged.
        _ => assert_eq!(String::from_utf8(out).expect("UTF-8"), deltas),
    }
}

fn error(fam: Fam, status: u16, answer: &[u8]) {
    let mut parts = answer.splitn(3, |b| *b == b'\n');
    let errortype = text(parts.next().unwrap_or_default());
    let retry_after = text(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let b = parse_error(
        status,
        (!errortype.is_empty()).then_some(errortype.as_str()),
        body,
    );
    assert_eq!(b.status, status);
    assert!(!b.kind.is_empty() && b.kind.len() <= 128, "{b:?}");
    assert!(
        b.kind
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c)),
        "{b:?}"
    );
    assert!(b.message.len() <= MAX_MESSAGE_LEN);
    let _ = b.is_throttle();

    let family = planned(fam, "").family;
    let retry = (!retry_after.is_empty()).then_some(retry_after.as_str());
    let e = from_bedrock(family, b.status, &b.kind, &b.message, retry);
    assert_gitlab_error(&e);
    let detail = json_of(e.body.as_bytes())["detail"]
        .as_str()
        .expect("string detail")
        .to_string();
    if e.status == 429 {
        let r = e.header("retry-after").expect("retry-after");
        assert!(!r.is_empty() && r.len() <= 64 && r.bytes().all(|c| (0x20..0x7f).contains(&c)));
        return;
    }
    if family == Family::Prompts {
        assert_eq!(e.status, 421);
        return;
    }
    assert_eq!(e.status, 503);
    let lower = b.message.to_ascii_lowercase();
    let credential = status == 401
        || status == 403
        || [
            "canonical",
            "string-to-sign",
            "string to sign",
            "security-token",
            "signature",
        ]
        .iter()
        .any(|m| lower.contains(m));
    if credential {
        // Bedrock's message withheld: the credentials hint, or the model-access hint for
        // AccessDeniedException.
        assert!(
            detail.ends_with("bedrock:InvokeModel)") || detail.ends_with(ACCESS_DENIED_HINT),
            "{detail}"
        );
    }
    // Envoy's own failures, whatever its code details say: GitLab's JSON for every family.
    let failure = EnvoyFailure::classify(&text(body));
    for family in [Family::CodeSuggestions, Family::Chat, Family::Prompts] {
        assert_gitlab_error(&from_envoy(family, &failure, "bedrock.example:443"));
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fields(data, 3);
    let control = &hex(field(&f, 0))[..];
    let fam = FAMILIES[usize::from(control.first().copied().unwrap_or(0)) % FAMILIES.len()];
    let prefix = text(field(&f, 1));
    let answer = field(&f, 2);
    match control.get(1).copied().unwrap_or(0) % 3 {
        0 => json_answer(fam, &prefix, answer),
        1 => stream(fam, &prefix, answer),
        _ => error(fam, number(control, 2, 2) as u16, answer),
    }
});
