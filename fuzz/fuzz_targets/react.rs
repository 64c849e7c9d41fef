//! The ReAct output parser of `/v2/chat/agent` (`src/gitlab/chat/react.rs`) and its NDJSON
//! responder, under arbitrary delta splits.
//!
//! Input: the model text; each `\x01` byte is a delta boundary (removed from the text). With no
//! `\x01`, the text is split every `(first byte % 7) + 1` characters instead.
//!
//! Properties:
//! * the events do not depend on the deltas: the text pushed whole, at the marked boundaries,
//!   and character by character gives the same final answer and the same other events;
//! * a final answer is exactly the text after the first `Final Answer:`, trimmed, streamed in
//!   non-empty pieces, and nothing else is sent then; without one, `finish` gives exactly one
//!   event (an action of a known tool, `tool not available`, or `unknown` with the stripped text);
//! * `AgentResponder` writes one JSON object per line, and streaming gives the same events as
//!   answering the whole text at once; an error ends the stream with one `error` event whose
//!   message has no control characters and at most 500 characters.
//!
//! Time must stay linear in the input; the harness asserts nothing about time, `make fuzz` runs
//! it with a `-timeout`.

#![no_main]

use duo_bedrock_filter::bedrock::messages::MessagesResponse;
use duo_bedrock_filter::gitlab::chat::events::AgentEvent;
use duo_bedrock_filter::gitlab::chat::react::{AgentResponder, ReactParser};
use duo_bedrock_filter::gitlab::Responder;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const FINAL_ANSWER: &str = "Final Answer:";

/// (final answer, other events) for `parts` pushed in order.
fn feed<'a>(parts: impl IntoIterator<Item = &'a str>) -> (String, Vec<AgentEvent>) {
    let mut p = ReactParser::new();
    let mut answer = String::new();
    let mut others = Vec::new();
    for part in parts {
        for e in p.push(part) {
            match e {
                AgentEvent::FinalAnswerDelta { text } => {
                    assert!(!text.is_empty(), "empty delta");
                    answer.push_str(&text);
                }
                other => panic!("push gave {other:?}"),
            }
        }
    }
    for e in p.finish() {
        match e {
            AgentEvent::FinalAnswerDelta { .. } => panic!("finish gave a delta"),
            other => others.push(other),
        }
    }
    (answer, others)
}

fn lines(b: &[u8]) -> Vec<Value> {
    let s = std::str::from_utf8(b).expect("UTF-8");
    assert!(s.is_empty() || s.ends_with('\n'));
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

/// Merges consecutive final-answer deltas, so streams and whole answers compare.
fn merged(events: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for e in events {
        if e["type"] == "final_answer_delta" {
            if let Some(last) = out.last_mut().filter(|l| l["type"] == "final_answer_delta") {
                let t = format!(
                    "{}{}",
                    last["data"]["text"].as_str().unwrap_or(""),
                    e["data"]["text"].as_str().unwrap_or("")
                );
                last["data"]["text"] = Value::String(t);
                continue;
            }
        }
        out.push(e);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let text: String = raw.chars().filter(|&c| c != '\u{1}').collect();
    let parts: Vec<String> = if raw.contains('\u{1}') {
        raw.split('\u{1}').map(str::to_string).collect()
    } else {
        let step = usize::from(data.first().copied().unwrap_or(0) % 7) + 1;
        let chars: Vec<char> = text.chars().collect();
        chars.chunks(step).map(|c| c.iter().collect()).collect()
    };

    let whole = feed([text.as_str()]);
    assert_eq!(
        feed(parts.iter().map(String::as_str)),
        whole,
        "split at the marks"
    );
    let mut buf = [0u8; 4];
    let chars: Vec<String> = text
        .chars()
        .map(|c| c.encode_utf8(&mut buf).to_string())
        .collect();
    assert_eq!(
        feed(chars.iter().map(String::as_str)),
        whole,
        "char by char"
    );

    match text.split_once(FINAL_ANSWER) {
        Some((_, after)) => {
            assert_eq!(whole.0, after.trim(), "final answer");
            assert!(whole.1.is_empty(), "events besides the final answer");
        }
        None => {
            assert!(whole.0.is_empty());
            assert_eq!(whole.1.len(), 1);
            match &whole.1[0] {
                AgentEvent::Unknown { text: t } => assert_eq!(t, text.trim()),
                AgentEvent::Action { tool, .. } => {
                    assert!(duo_bedrock_filter::prompts::react::is_tool(tool), "{tool}")
                }
                AgentEvent::Error { message, retryable } => {
                    assert_eq!(
                        (message.as_str(), *retryable),
                        ("tool not available", false)
                    )
                }
                other => panic!("{other:?}"),
            }
        }
    }

    // The responder: streamed deltas vs the whole answer.
    let mut r = AgentResponder::new();
    let mut out = r.stream_start();
    for p in &parts {
        out.extend(r.stream_text(p));
    }
    out.extend(r.stream_end());
    assert!(r.stream_text("late").is_empty() && r.stream_end().is_empty());
    let resp: MessagesResponse =
        serde_json::from_value(serde_json::json!({"content": [{"type": "text", "text": text}]}))
            .expect("answer");
    let complete = AgentResponder::new().complete(&resp);
    assert_eq!(merged(lines(&out)), merged(lines(&complete.body)));

    // A failure midway: one error event, clean message, then nothing.
    let mut r = AgentResponder::new();
    let half = parts.len() / 2;
    let mut out = Vec::new();
    for p in &parts[..half] {
        out.extend(r.stream_text(p));
    }
    let message = parts.last().map(String::as_str).unwrap_or("");
    out.extend(r.stream_error(message));
    assert!(r.stream_text("late").is_empty() && r.stream_end().is_empty());
    let events = lines(&out);
    let last = events.last().expect("an error event");
    assert_eq!(last["type"], "error");
    let m = last["data"]["message"].as_str().expect("message");
    assert!(
        !m.is_empty() && m.chars().count() <= 501 && !m.chars().any(char::is_control),
        "{m:?}"
    );
    assert_eq!(
        last["data"]["retryable"],
        Value::Bool(message.to_ascii_lowercase().contains("overloaded"))
    );
    assert!(events[..events.len() - 1]
        .iter()
        .all(|e| e["type"] == "final_answer_delta"));
});
