//! Anthropic Messages streaming events, as carried inside Bedrock `chunk` events.
//!
//! Contract: `docs/bedrock-contract.md#stream-events` (Anthropic events inside
//! `bytes`: `message_start`, `content_block_*`, `message_delta`, `message_stop` with
//! `amazon-bedrock-invocationMetrics`). Only what the GitLab side needs is kept: text deltas,
//! token usage, the stop reason and in-stream errors. Everything else (`ping`, tool-use JSON
//! deltas, thinking, block start/stop, unknown types) becomes [`StreamEvent::Other`].

use std::borrow::Cow;

use super::lenient::{read, Members, Slot};

/// One decoded Anthropic stream event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// `message_start`: prompt token count and the model that answers.
    MessageStart {
        input_tokens: u64,
        model: Option<String>,
    },
    /// A piece of answer text (`content_block_delta` with a `text_delta`).
    TextDelta(String),
    /// `message_delta`: why generation stopped, and the output token count so far.
    MessageDelta {
        stop_reason: Option<String>,
        output_tokens: u64,
    },
    /// `message_stop`, with Bedrock's invocation metrics when present.
    MessageStop { metrics: Option<InvocationMetrics> },
    /// An in-stream `error` event (`{"type":"error","error":{"type":..,"message":..}}`).
    Error { kind: String, message: String },
    /// Anything else; safe to ignore.
    Other,
}

/// `amazon-bedrock-invocationMetrics` from the final `message_stop`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvocationMetrics {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub invocation_latency_ms: u64,
    pub first_byte_latency_ms: u64,
}

/// An Anthropic stream event: every member any event type uses, read whatever the `type`
/// (a member's meaning depends on the type, and the type may come after it). Members of the
/// wrong type are `None` or 0, as walking a `Value` gave (src/bedrock/lenient.rs).
#[derive(Default)]
struct Event<'a> {
    kind: Option<Cow<'a, str>>,
    /// `message_start`.
    message: Option<Message<'a>>,
    /// `content_block_delta` (`type`, `text`) and `message_delta` (`stop_reason`).
    delta: Option<Block<'a>>,
    /// `content_block_start` (`type`, `text`).
    content_block: Option<Block<'a>>,
    /// `message_delta`.
    usage: Option<Usage>,
    /// `message_stop`: `amazon-bedrock-invocationMetrics`.
    metrics: Option<InvocationMetrics>,
    /// `error`.
    error: Option<ErrorBody<'a>>,
}

#[derive(Default)]
struct Message<'a> {
    model: Option<Cow<'a, str>>,
    usage: Option<Usage>,
}

/// A `delta` or `content_block`.
#[derive(Default)]
struct Block<'a> {
    kind: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    stop_reason: Option<Cow<'a, str>>,
}

/// Token counts: 0 when absent or not a `u64`.
#[derive(Default)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Default)]
struct ErrorBody<'a> {
    kind: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
}

impl<'de> Members<'de> for Event<'de> {
    fn slot(&mut self, key: &str) -> Slot<'_, 'de> {
        match key {
            "type" => Slot::Str(&mut self.kind),
            "message" => Slot::Object(&mut self.message),
            "delta" => Slot::Object(&mut self.delta),
            "content_block" => Slot::Object(&mut self.content_block),
            "usage" => Slot::Object(&mut self.usage),
            "amazon-bedrock-invocationMetrics" => Slot::Object(&mut self.metrics),
            "error" => Slot::Object(&mut self.error),
            _ => Slot::Skip,
        }
    }
}

impl<'de> Members<'de> for Message<'de> {
    fn slot(&mut self, key: &str) -> Slot<'_, 'de> {
        match key {
            "model" => Slot::Str(&mut self.model),
            "usage" => Slot::Object(&mut self.usage),
            _ => Slot::Skip,
        }
    }
}

impl<'de> Members<'de> for Block<'de> {
    fn slot(&mut self, key: &str) -> Slot<'_, 'de> {
        match key {
            "type" => Slot::Str(&mut self.kind),
            "text" => Slot::Str(&mut self.text),
            "stop_reason" => Slot::Str(&mut self.stop_reason),
            _ => Slot::Skip,
        }
    }
}

impl<'de> Members<'de> for Usage {
    fn slot(&mut self, key: &str) -> Slot<'_, 'de> {
        match key {
            "input_tokens" => Slot::Count(&mut self.input_tokens),
            "output_tokens" => Slot::Count(&mut self.output_tokens),
            _ => Slot::Skip,
        }
    }
}

impl<'de> Members<'de> for InvocationMetrics {
    fn slot(&mut self, key: &str) -> Slot<'_, 'de> {
        match key {
            "inputTokenCount" => Slot::Count(&mut self.input_tokens),
            "outputTokenCount" => Slot::Count(&mut self.output_tokens),
            "invocationLatency" => Slot::Count(&mut self.invocation_latency_ms),
            "firstByteLatency" => Slot::Count(&mut self.first_byte_latency_ms),
            _ => Slot::Skip,
        }
    }
}

impl<'de> Members<'de> for ErrorBody<'de> {
    fn slot(&mut self, key: &str) -> Slot<'_, 'de> {
        match key {
            "type" => Slot::Str(&mut self.kind),
            "message" => Slot::Str(&mut self.message),
            _ => Slot::Skip,
        }
    }
}

/// Parses one event JSON object. Errors only when the input is not a JSON object with a string
/// `type`; unknown or partial shapes degrade to [`StreamEvent::Other`] or zero counts.
pub fn parse_event(json: &[u8]) -> Result<StreamEvent, String> {
    let event = read::<Event>(json).map_err(|e| format!("stream event is not JSON: {e}"))?;
    let Some((kind, event)) = event.and_then(|mut e| Some((e.kind.take()?, e))) else {
        return Err("stream event has no \"type\"".to_string());
    };
    Ok(match &*kind {
        "message_start" => {
            let message = event.message.unwrap_or_default();
            StreamEvent::MessageStart {
                input_tokens: message.usage.map_or(0, |u| u.input_tokens),
                model: message.model.map(Cow::into_owned),
            }
        }
        "content_block_delta" => match event.delta {
            Some(Block {
                kind: Some(kind),
                text: Some(text),
                ..
            }) if kind == "text_delta" => StreamEvent::TextDelta(text.into_owned()),
            _ => StreamEvent::Other,
        },
        // Always empty in practice, but keep any initial text rather than lose it.
        "content_block_start" => match event.content_block {
            Some(Block {
                kind: Some(kind),
                text: Some(text),
                ..
            }) if kind == "text" && !text.is_empty() => StreamEvent::TextDelta(text.into_owned()),
            _ => StreamEvent::Other,
        },
        "message_delta" => StreamEvent::MessageDelta {
            stop_reason: event.delta.and_then(|d| d.stop_reason).map(Cow::into_owned),
            output_tokens: event.usage.map_or(0, |u| u.output_tokens),
        },
        "message_stop" => StreamEvent::MessageStop {
            metrics: event.metrics,
        },
        "error" => {
            let error = event.error.unwrap_or_default();
            StreamEvent::Error {
                kind: error
                    .kind
                    .map_or_else(|| "error".to_string(), Cow::into_owned),
                message: error.message.map(Cow::into_owned).unwrap_or_default(),
            }
        }
        _ => StreamEvent::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> StreamEvent {
        parse_event(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// The decoded ai-gateway "aws-anthropic" fixture events
    /// (docs/bedrock-contract.md#stream-events).
    #[test]
    fn ai_gateway_fixture_events() {
        assert_eq!(
            p(
                r#"{"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_bdrk_01","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1}}}"#
            ),
            StreamEvent::MessageStart {
                input_tokens: 10,
                model: Some("claude-sonnet-4-5-20250929".into())
            }
        );
        assert_eq!(
            p(
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#
            ),
            StreamEvent::Other
        );
        assert_eq!(
            p(
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#
            ),
            StreamEvent::TextDelta("Hi".into())
        );
        assert_eq!(
            p(r#"{"type":"content_block_stop","index":0}"#),
            StreamEvent::Other
        );
        assert_eq!(
            p(
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":15}}"#
            ),
            StreamEvent::MessageDelta {
                stop_reason: Some("end_turn".into()),
                output_tokens: 15
            }
        );
        assert_eq!(
            p(
                r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":10,"outputTokenCount":15,"invocationLatency":1798,"firstByteLatency":1507}}"#
            ),
            StreamEvent::MessageStop {
                metrics: Some(InvocationMetrics {
                    input_tokens: 10,
                    output_tokens: 15,
                    invocation_latency_ms: 1798,
                    first_byte_latency_ms: 1507
                })
            }
        );
    }

    #[test]
    fn non_text_and_unknown_events_are_other() {
        for s in [
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":7}}"#,
            r#"{"type":"content_block_delta"}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"future_event","x":1}"#,
            r#"{"type":""}"#,
        ] {
            assert_eq!(p(s), StreamEvent::Other, "{s}");
        }
    }

    #[test]
    fn text_and_unicode() {
        assert_eq!(
            p(
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\n    return a + b  # 合計 😀\u0000"}}"#
            ),
            StreamEvent::TextDelta("\n    return a + b  # 合計 😀\u{0}".into())
        );
        assert_eq!(
            p(
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"pre"}}"#
            ),
            StreamEvent::TextDelta("pre".into())
        );
    }

    #[test]
    fn partial_shapes_default_to_zero_or_none() {
        assert_eq!(
            p(r#"{"type":"message_start"}"#),
            StreamEvent::MessageStart {
                input_tokens: 0,
                model: None
            }
        );
        assert_eq!(
            p(r#"{"type":"message_start","message":{"usage":{"input_tokens":-3},"model":5}}"#),
            StreamEvent::MessageStart {
                input_tokens: 0,
                model: None
            }
        );
        assert_eq!(
            p(r#"{"type":"message_delta","delta":{"stop_reason":null}}"#),
            StreamEvent::MessageDelta {
                stop_reason: None,
                output_tokens: 0
            }
        );
        assert_eq!(
            p(
                r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":1.5}}"#
            ),
            StreamEvent::MessageDelta {
                stop_reason: Some("max_tokens".into()),
                output_tokens: 0
            }
        );
        assert_eq!(
            p(r#"{"type":"message_stop"}"#),
            StreamEvent::MessageStop { metrics: None }
        );
        assert_eq!(
            p(r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":"x"}"#),
            StreamEvent::MessageStop { metrics: None }
        );
        assert_eq!(
            p(
                r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"outputTokenCount":18446744073709551615}}"#
            ),
            StreamEvent::MessageStop {
                metrics: Some(InvocationMetrics {
                    output_tokens: u64::MAX,
                    ..Default::default()
                })
            }
        );
    }

    #[test]
    fn error_events() {
        assert_eq!(
            p(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
            StreamEvent::Error {
                kind: "overloaded_error".into(),
                message: "Overloaded".into()
            }
        );
        assert_eq!(
            p(r#"{"type":"error"}"#),
            StreamEvent::Error {
                kind: "error".into(),
                message: String::new()
            }
        );
    }

    #[test]
    fn invalid_input_is_an_error_not_a_panic() {
        for s in [
            "",
            "{",
            "null",
            "[]",
            "\"message_stop\"",
            "{}",
            r#"{"type":1}"#,
            "{\"type\":\"ping\"} trailing",
        ] {
            assert!(parse_event(s.as_bytes()).is_err(), "{s}");
        }
        assert!(parse_event(&[0xff, 0xfe]).is_err());
        let deep = "[".repeat(100_000);
        assert!(parse_event(deep.as_bytes()).is_err());
    }

    #[test]
    fn escapes_unknown_members_nulls_and_wrong_types() {
        // Escaped text is unescaped; unknown members anywhere are skipped.
        assert_eq!(
            p(
                r#"{"index":0,"x":{"y":[1,{"z":null}]},"delta":{"text":"a\"b\\c\u00e9\ud83d\ude00\n","extra":true,"type":"text_delta"},"type":"content_block_delta"}"#
            ),
            StreamEvent::TextDelta("a\"b\\cé😀\n".into())
        );
        // `type` after the members it governs; escaped keys and type.
        assert_eq!(
            p(
                r#"{"\u0064elta":{"type":"text_delta","text":"x"},"type":"content_block_\u0064elta"}"#
            ),
            StreamEvent::TextDelta("x".into())
        );
        // A repeated key keeps its last value, as a `Value` map (and Python's json) does.
        assert_eq!(
            p(
                r#"{"type":"ping","type":"content_block_delta","delta":{"type":"text_delta","text":"x"},"delta":5}"#
            ),
            StreamEvent::Other
        );
        assert_eq!(
            p(
                r#"{"type":"message_delta","usage":{"output_tokens":4,"output_tokens":"9"},"delta":{"stop_reason":"a","stop_reason":"b"}}"#
            ),
            StreamEvent::MessageDelta {
                stop_reason: Some("b".into()),
                output_tokens: 0
            }
        );
        // A later `message` replaces the earlier one whole.
        assert_eq!(
            p(
                r#"{"type":"message_start","message":{"usage":{"input_tokens":3}},"message":{"model":"m"}}"#
            ),
            StreamEvent::MessageStart {
                input_tokens: 0,
                model: Some("m".into())
            }
        );
        // Nulls and wrong types count as absent.
        for s in [
            r#"{"type":"content_block_delta","delta":null}"#,
            r#"{"type":"content_block_delta","delta":{"type":null,"text":"x"}}"#,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":null}}"#,
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":["x"]}}"#,
            r#"{"type":"content_block_delta","delta":[{"type":"text_delta","text":"x"}]}"#,
            r#"{"type":"content_block_start","content_block":{"type":"text","text":null}}"#,
            r#"{"type":"content_block_start","content_block":"text"}"#,
        ] {
            assert_eq!(p(s), StreamEvent::Other, "{s}");
        }
        assert_eq!(
            p(r#"{"type":"message_start","message":{"usage":null,"model":null}}"#),
            StreamEvent::MessageStart {
                input_tokens: 0,
                model: None
            }
        );
        assert_eq!(
            p(r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{}}"#),
            StreamEvent::MessageStop {
                metrics: Some(InvocationMetrics::default())
            }
        );
        assert_eq!(
            p(r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":null}"#),
            StreamEvent::MessageStop { metrics: None }
        );
        assert_eq!(
            p(r#"{"type":"error","error":{"type":7,"message":null}}"#),
            StreamEvent::Error {
                kind: "error".into(),
                message: String::new()
            }
        );
        assert_eq!(
            p(r#"{"type":"error","error":"overloaded"}"#),
            StreamEvent::Error {
                kind: "error".into(),
                message: String::new()
            }
        );
        for s in [
            r#"{"type":null}"#,
            r#"{"type":["ping"]}"#,
            r#"{"type":{"t":"ping"}}"#,
        ] {
            assert!(parse_event(s.as_bytes()).is_err(), "{s}");
        }
    }

    /// The reader before typed deserialization: the whole event parsed into a `Value` and
    /// walked. [`parse_event`] must answer exactly as it did, errors included.
    fn parse_event_by_value(json: &[u8]) -> Result<StreamEvent, String> {
        use serde_json::Value;
        fn u64_at(v: &Value, key: &str) -> u64 {
            v.get(key).and_then(Value::as_u64).unwrap_or(0)
        }
        fn str_at(v: &Value, key: &str) -> Option<String> {
            v.get(key).and_then(Value::as_str).map(str::to_string)
        }
        let v: Value =
            serde_json::from_slice(json).map_err(|e| format!("stream event is not JSON: {e}"))?;
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            return Err("stream event has no \"type\"".to_string());
        };
        let null = Value::Null;
        Ok(match kind {
            "message_start" => {
                let msg = v.get("message").unwrap_or(&null);
                let usage = msg.get("usage").unwrap_or(&null);
                StreamEvent::MessageStart {
                    input_tokens: u64_at(usage, "input_tokens"),
                    model: str_at(msg, "model"),
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&null);
                match (
                    delta.get("type").and_then(Value::as_str),
                    delta.get("text").and_then(Value::as_str),
                ) {
                    (Some("text_delta"), Some(text)) => StreamEvent::TextDelta(text.to_string()),
                    _ => StreamEvent::Other,
                }
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&null);
                match (
                    block.get("type").and_then(Value::as_str),
                    block.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(text)) if !text.is_empty() => {
                        StreamEvent::TextDelta(text.to_string())
                    }
                    _ => StreamEvent::Other,
                }
            }
            "message_delta" => {
                let delta = v.get("delta").unwrap_or(&null);
                let usage = v.get("usage").unwrap_or(&null);
                StreamEvent::MessageDelta {
                    stop_reason: str_at(delta, "stop_reason"),
                    output_tokens: u64_at(usage, "output_tokens"),
                }
            }
            "message_stop" => {
                let metrics = v
                    .get("amazon-bedrock-invocationMetrics")
                    .filter(|m| m.is_object())
                    .map(|m| InvocationMetrics {
                        input_tokens: u64_at(m, "inputTokenCount"),
                        output_tokens: u64_at(m, "outputTokenCount"),
                        invocation_latency_ms: u64_at(m, "invocationLatency"),
                        first_byte_latency_ms: u64_at(m, "firstByteLatency"),
                    });
                StreamEvent::MessageStop { metrics }
            }
            "error" => {
                let err = v.get("error").unwrap_or(&null);
                StreamEvent::Error {
                    kind: str_at(err, "type").unwrap_or_else(|| "error".to_string()),
                    message: str_at(err, "message").unwrap_or_default(),
                }
            }
            _ => StreamEvent::Other,
        })
    }

    /// Events of every type, with partial shapes, wrong types, escapes and repeated keys.
    const CORPUS: &[&str] = &[
        r#"{"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_bdrk_01","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1}}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"pre\tx"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \"there\" \u00e9\ud83d\ude00"}}"#,
        r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
        r#"{"type":"content_block_stop","index":0}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":10,"outputTokenCount":15,"invocationLatency":1798,"firstByteLatency":1507}}"#,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"a","stop_reason":"b"},"usage":{"output_tokens":1.5},"type":"message_delta"}"#,
        r#"{"type":"ping"}"#,
    ];

    #[test]
    fn same_answers_as_walking_a_value() {
        let check = |input: &[u8]| {
            assert_eq!(
                parse_event(input),
                parse_event_by_value(input),
                "{}",
                String::from_utf8_lossy(input)
            );
        };
        let deep = format!("{{\"type\":\"ping\",\"x\":{}", "[".repeat(100_000));
        for s in [
            "",
            "{",
            "null",
            "[]",
            "\"ping\"",
            "{}",
            r#"{"type":1}"#,
            &deep,
        ] {
            check(s.as_bytes());
        }
        for event in CORPUS {
            let bytes = event.as_bytes();
            check(bytes);
            // Every byte removed, and every byte replaced by each byte that matters to JSON.
            for i in 0..bytes.len() {
                let mut cut = bytes.to_vec();
                cut.remove(i);
                check(&cut);
                for b in *b"\"\\{}[],:0-1.en tu\xff\x01" {
                    let mut changed = bytes.to_vec();
                    changed[i] = b;
                    check(&changed);
                }
            }
        }
    }
}
