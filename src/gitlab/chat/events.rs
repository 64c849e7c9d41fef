//! The NDJSON events of `/v2/chat/agent`, written exactly like GitLab's gateway writes them.
//!
//! Contract: `docs/gitlab-contract.md#streaming` (NDJSON): one JSON object per line, terminated by
//! `\n`, shaped `{"type": <type>, "data": {...}}`; Rails matches each line with `/(\{.*\})\n/` and
//! dispatches on `type` (`action`, `final_answer_delta`, `unknown`, `error`).
//!
//! The gateway writes them with Python's `json.dumps` defaults: `", "` and `": "` separators and
//! `ensure_ascii` (every character outside printable ASCII as `\uXXXX`, UTF-16 surrogate pairs
//! beyond the BMP). This module reproduces that byte for byte; in particular a line never
//! contains a raw newline, which Rails' line regex relies on. Field order follows the gateway's
//! pydantic models: action `tool, tool_input, thought`; final answer `text, finish_reason`;
//! error `message, retryable`.
//!
//! `finish_reason` (ai-gateway `main` `ai_gateway/chat/agents/typing.py` `AgentFinalAnswer`,
//! `Optional[str] = None`, dumped as `null`) is on every `final_answer_delta`: `null` while the
//! answer streams, then the model's finish reason on one last delta with empty text
//! ([`AgentEvent::FinalAnswerFinish`]; see [`litellm_finish_reason`]). GitLab versions that do
//! not know the field read only `data["text"]` (`ee/lib/gitlab/duo/chat/agent_events/
//! final_answer_delta.rb`), and an empty text adds nothing to the answer.

use std::fmt::Write as _;

/// One event of the agent stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// The model wants a tool run.
    Action {
        tool: String,
        tool_input: String,
        thought: String,
    },
    /// A piece of the final answer (`finish_reason` `null`).
    FinalAnswerDelta { text: String },
    /// The last `final_answer_delta` of an answer: empty text, the finish reason.
    FinalAnswerFinish { finish_reason: String },
    /// Output that is neither an action nor a final answer.
    Unknown { text: String },
    /// The step failed.
    Error { message: String, retryable: bool },
}

/// Appends `s` as a Python `json.dumps` string literal (ensure_ascii).
fn push_py_string(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    // Runs of printable ASCII other than `"` and `\` are copied as slices; the search is by
    // byte, and stops at the first byte of any other character (so always at a char boundary).
    while let Some(at) = rest
        .bytes()
        .position(|b| !matches!(b, b' '..=b'~') || b == b'"' || b == b'\\')
    {
        let Some((plain, tail)) = rest.split_at_checked(at) else {
            break;
        };
        out.push_str(plain);
        let mut chars = tail.chars();
        let Some(c) = chars.next() else {
            break;
        };
        rest = chars.as_str();
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
                continue;
            }
        };
        out.push_str(escape);
    }
    out.push_str(rest);
    out.push('"');
}

/// A value of an event's `data`.
enum Val<'a> {
    Str(&'a str),
    Bool(bool),
    Null,
}

impl AgentEvent {
    /// The event as one NDJSON line, `\n` included.
    pub fn to_line(&self) -> String {
        let mut out = String::with_capacity(64);
        self.push_line(&mut out);
        out
    }

    /// Appends the event as one NDJSON line, `\n` included.
    pub fn push_line(&self, out: &mut String) {
        out.push_str("{\"type\": ");
        // At most three `data` fields, in the gateway's order (an array: nothing allocated).
        let (kind, fields): (&str, [Option<(&str, Val<'_>)>; 3]) = match self {
            AgentEvent::Action {
                tool,
                tool_input,
                thought,
            } => (
                "action",
                [
                    Some(("tool", Val::Str(tool))),
                    Some(("tool_input", Val::Str(tool_input))),
                    Some(("thought", Val::Str(thought))),
                ],
            ),
            AgentEvent::FinalAnswerDelta { text } => (
                "final_answer_delta",
                [
                    Some(("text", Val::Str(text))),
                    Some(("finish_reason", Val::Null)),
                    None,
                ],
            ),
            AgentEvent::FinalAnswerFinish { finish_reason } => (
                "final_answer_delta",
                [
                    Some(("text", Val::Str(""))),
                    Some(("finish_reason", Val::Str(finish_reason))),
                    None,
                ],
            ),
            AgentEvent::Unknown { text } => {
                ("unknown", [Some(("text", Val::Str(text))), None, None])
            }
            AgentEvent::Error { message, retryable } => (
                "error",
                [
                    Some(("message", Val::Str(message))),
                    Some(("retryable", Val::Bool(*retryable))),
                    None,
                ],
            ),
        };
        push_py_string(out, kind);
        out.push_str(", \"data\": {");
        for (i, (key, value)) in fields.iter().flatten().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            push_py_string(out, key);
            out.push_str(": ");
            match value {
                Val::Str(t) => push_py_string(out, t),
                Val::Bool(true) => out.push_str("true"),
                Val::Bool(false) => out.push_str("false"),
                Val::Null => out.push_str("null"),
            }
        }
        out.push_str("}}\n");
    }
}

/// The `finish_reason` GitLab's gateway reports for Bedrock's Anthropic `stop_reason`.
///
/// The self-hosted gateway drives `bedrock/...` models through LiteLLM, whose streamed chunks
/// carry OpenAI-style finish reasons (BerriAI/litellm `litellm/litellm_core_utils/
/// core_helpers.py` `map_finish_reason`: `end_turn`/`stop_sequence` → `stop`, `max_tokens` →
/// `length`, `tool_use` → `tool_calls`, `refusal`/`guardrail_intervened`/`content_filtered` →
/// `content_filter`, anything else → `stop`); ai-gateway `main` `ai_gateway/chat/agents/react.py`
/// `parse_finish_reason` reads that value from the message metadata.
pub fn litellm_finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "compaction" => "length",
        "tool_use" => "tool_calls",
        "refusal" | "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn lines_match_python_json_dumps() {
        let a = AgentEvent::Action {
            tool: "gitlab_documentation".into(),
            tool_input: "revert commit".into(),
            thought: "I should search docs".into(),
        };
        assert_eq!(
            a.to_line(),
            "{\"type\": \"action\", \"data\": {\"tool\": \"gitlab_documentation\", \"tool_input\": \"revert commit\", \"thought\": \"I should search docs\"}}\n"
        );
        assert_eq!(
            AgentEvent::FinalAnswerDelta {
                text: "You can ".into()
            }
            .to_line(),
            "{\"type\": \"final_answer_delta\", \"data\": {\"text\": \"You can \", \"finish_reason\": null}}\n"
        );
        assert_eq!(
            AgentEvent::FinalAnswerFinish {
                finish_reason: "stop".into()
            }
            .to_line(),
            "{\"type\": \"final_answer_delta\", \"data\": {\"text\": \"\", \"finish_reason\": \"stop\"}}\n"
        );
        assert_eq!(
            AgentEvent::Error {
                message: "boom".into(),
                retryable: false
            }
            .to_line(),
            "{\"type\": \"error\", \"data\": {\"message\": \"boom\", \"retryable\": false}}\n"
        );
        assert_eq!(
            AgentEvent::Unknown { text: "x".into() }.to_line(),
            "{\"type\": \"unknown\", \"data\": {\"text\": \"x\"}}\n"
        );
    }

    #[test]
    fn escaping_is_ensure_ascii() {
        let text = "é\u{1F600}\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}<>/";
        let line = AgentEvent::FinalAnswerDelta { text: text.into() }.to_line();
        // what Python prints for json.dumps(text)
        assert!(
            line.contains(r#""\u00e9\ud83d\ude00\"\\\n\r\t\b\f\u0001\u007f<>/""#),
            "{line}"
        );
        assert!(line.is_ascii());
        assert_eq!(line.matches('\n').count(), 1);
        // and any JSON parser reads the original text back
        let v: Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(
            v,
            json!({"type": "final_answer_delta", "data": {"text": text, "finish_reason": null}})
        );
    }

    #[test]
    fn escapes_between_and_around_plain_runs() {
        let py = |s: &str| {
            let mut out = String::new();
            push_py_string(&mut out, s);
            out
        };
        assert_eq!(py(""), r#""""#);
        assert_eq!(py("plain text"), r#""plain text""#);
        assert_eq!(py("\"a\"b\\"), r#""\"a\"b\\""#);
        assert_eq!(py("a\nb\tc"), r#""a\nb\tc""#);
        assert_eq!(py("\n\n"), r#""\n\n""#);
        assert_eq!(py("x合計y😀z"), r#""x\u5408\u8a08y\ud83d\ude00z""#);
        assert_eq!(py("é"), r#""\u00e9""#);
        assert_eq!(py("~\u{7f}\u{80} \u{1f}"), r#""~\u007f\u0080 \u001f""#);
        // Each character alone and between plain runs reads back as itself.
        for c in [
            'a', ' ', '~', '"', '\\', '\n', '\u{0}', '\u{7f}', 'é', '\u{ffff}', '😀',
        ] {
            for s in [c.to_string(), format!("ab{c}cd"), format!("{c}{c}x{c}")] {
                let out = py(&s);
                assert!(out.is_ascii(), "{out}");
                assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
            }
        }
    }

    #[test]
    fn finish_reasons_are_litellm_s() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("guardrail_intervened", "content_filter"),
            ("pause_turn", "stop"),
            ("", "stop"),
        ] {
            assert_eq!(litellm_finish_reason(stop), finish, "{stop}");
        }
    }
}
