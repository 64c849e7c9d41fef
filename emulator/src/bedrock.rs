//! Bedrock runtime model behaviour for Anthropic Messages bodies: request
//! validation as Bedrock does it, a deterministic fake generation, the
//! InvokeModel JSON answer and the InvokeModelWithResponseStream event list.
//!
//! Contract: `docs/bedrock-contract.md#invoke-model` to `#messages-body`
//! (`anthropic_version` = `bedrock-2023-05-31`, no `model`/`stream` keys,
//! `msg_bdrk_` ids, usage, the six stream event kinds and
//! `amazon-bedrock-invocationMetrics`).

use serde::Serialize;
use serde_json::Value;

/// The only `anthropic_version` Bedrock accepts for Claude Messages.
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Default generated text.
pub const DEFAULT_REPLY: &str = "return a + b";

/// What the fake model needs from a validated request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedRequest {
    pub max_tokens: u64,
    pub stop_sequences: Vec<String>,
    /// Text of a trailing assistant message (prefill), if any.
    pub prefill: Option<String>,
    /// Rough input token count (bytes / 4).
    pub input_tokens: u64,
}

fn malformed(detail: &str) -> String {
    format!("Malformed input request: #: {detail}, please reformat your input and try again.")
}

/// Validate an InvokeModel body the way Bedrock + Anthropic do. The error is
/// the `message` of a 400 `ValidationException`.
pub fn validate(body: &[u8]) -> Result<ParsedRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!("Malformed input request: {e}, please reformat your input and try again.")
    })?;
    let obj = match v.as_object() {
        Some(o) => o,
        None => return Err(malformed("expected type: JSONObject")),
    };
    for key in ["model", "stream"] {
        if obj.contains_key(key) {
            return Err(malformed(&format!(
                "extraneous key [{key}] is not permitted"
            )));
        }
    }
    match obj.get("anthropic_version") {
        None => return Err(malformed("required key [anthropic_version] not found")),
        Some(Value::String(s)) if s == ANTHROPIC_VERSION => {}
        Some(other) => {
            return Err(format!(
                "Malformed input request: #/anthropic_version: {} is not a valid enum value, please reformat your input and try again.",
                other.as_str().map(str::to_string).unwrap_or_else(|| other.to_string())
            ))
        }
    }
    let max_tokens = match obj.get("max_tokens") {
        None => return Err(malformed("required key [max_tokens] not found")),
        Some(m) => match m.as_u64() {
            Some(n) if n >= 1 => n,
            Some(_) => return Err("max_tokens: Input should be greater than or equal to 1".into()),
            None => {
                return Err(format!(
                    "Malformed input request: #/max_tokens: expected type: Integer, found: {}, please reformat your input and try again.",
                    json_type(m)
                ))
            }
        },
    };
    let messages = match obj.get("messages") {
        None => return Err(malformed("required key [messages] not found")),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(format!(
                "Malformed input request: #/messages: expected type: JSONArray, found: {}, please reformat your input and try again.",
                json_type(other)
            ))
        }
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let mut input_bytes = 0usize;
    let mut prefill = None;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        match role {
            Some("user") | Some("assistant") => {}
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ))
            }
        }
        if i == 0 && role != Some("user") {
            return Err("messages: first message must use the \"user\" role".into());
        }
        let text = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(blocks)) => {
                let mut t = String::new();
                for (j, b) in blocks.iter().enumerate() {
                    match b.get("type").and_then(Value::as_str) {
                        Some("text") => match b.get("text").and_then(Value::as_str) {
                            Some(s) => t.push_str(s),
                            None => {
                                return Err(format!(
                                    "messages.{i}.content.{j}.text: Field required"
                                ))
                            }
                        },
                        Some(_) => input_bytes += b.to_string().len(),
                        None => {
                            return Err(format!("messages.{i}.content.{j}.type: Field required"))
                        }
                    }
                }
                t
            }
            _ => return Err(format!("messages.{i}.content: Field required")),
        };
        input_bytes += text.len();
        if i + 1 == messages.len() && role == Some("assistant") {
            if text.ends_with(char::is_whitespace) {
                return Err("final assistant content cannot end with trailing whitespace".into());
            }
            prefill = Some(text);
        }
    }
    if let Some(system) = obj.get("system") {
        input_bytes += match system {
            Value::String(s) => s.len(),
            other => other.to_string().len(),
        };
    }
    let stop_sequences = match obj.get("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for s in a {
                match s.as_str() {
                    Some(s) if !s.is_empty() => out.push(s.to_string()),
                    _ => {
                        return Err(
                            "stop_sequences: each stop sequence must be a non-empty string".into(),
                        )
                    }
                }
            }
            out
        }
        Some(_) => return Err("stop_sequences: Input should be a valid list".into()),
    };
    Ok(ParsedRequest {
        max_tokens,
        stop_sequences,
        prefill,
        input_tokens: estimate_tokens(input_bytes),
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "JSONArray",
        Value::Object(_) => "JSONObject",
    }
}

/// bytes / 4, at least 1.
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4).max(1)
}

/// The fake model's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub text: String,
    /// `end_turn`, `stop_sequence` or `max_tokens`.
    pub stop_reason: &'static str,
    pub stop_sequence: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// If `prefill` ends with an opening tag like `<new_code>`, its name.
fn trailing_open_tag(prefill: &str) -> Option<&str> {
    let t = prefill.trim_end();
    let inner = t.strip_suffix('>')?;
    let start = inner.rfind('<')?;
    let name = &inner[start + 1..];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return None;
    }
    Some(name)
}

/// Produce the deterministic answer for `req` from the configured `reply`.
/// After an assistant prefill that opens a tag, the model writes the reply
/// on its own lines and closes the tag; stop sequences cut the text before
/// their first occurrence, and `max_tokens` (bytes/4) truncates it.
pub fn generate(reply: &str, req: &ParsedRequest) -> Generation {
    let full = match req.prefill.as_deref().and_then(trailing_open_tag) {
        Some(tag) => format!("\n{}\n</{tag}>", reply.trim_end()),
        None => reply.to_string(),
    };
    let mut cut = full.len();
    let mut stop_reason = "end_turn";
    let mut stop_sequence = None;
    for s in &req.stop_sequences {
        if let Some(pos) = full.find(s.as_str()) {
            if pos < cut {
                cut = pos;
                stop_reason = "stop_sequence";
                stop_sequence = Some(s.clone());
            }
        }
    }
    let budget = usize::try_from(req.max_tokens.saturating_mul(4)).unwrap_or(usize::MAX);
    if budget < cut {
        let mut b = budget;
        while !full.is_char_boundary(b) {
            b -= 1;
        }
        cut = b;
        stop_reason = "max_tokens";
        stop_sequence = None;
    }
    let text = full[..cut].to_string();
    let output_tokens = estimate_tokens(text.len());
    Generation {
        text,
        stop_reason,
        stop_sequence,
        input_tokens: req.input_tokens,
        output_tokens,
    }
}

#[derive(Serialize)]
struct TextBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

/// Anthropic `Message` with fields in the order Anthropic/Bedrock send them.
#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<TextBlock<'a>>,
    stop_reason: Option<&'a str>,
    stop_sequence: Option<&'a str>,
    usage: Usage,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct StopDelta<'a> {
    stop_reason: &'a str,
    stop_sequence: Option<&'a str>,
}

#[derive(Serialize)]
struct DeltaUsage {
    output_tokens: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InvocationMetrics {
    input_token_count: u64,
    output_token_count: u64,
    invocation_latency: u64,
    first_byte_latency: u64,
}

/// Anthropic stream events; `type` is serialised first.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: MessageOut<'a>,
    },
    ContentBlockStart {
        index: u32,
        content_block: TextBlock<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: TextDelta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: StopDelta<'a>,
        usage: DeltaUsage,
    },
    MessageStop {
        #[serde(rename = "amazon-bedrock-invocationMetrics")]
        metrics: InvocationMetrics,
    },
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The InvokeModel response body (JSON text, Anthropic field order).
pub fn message_json(id: &str, model: &str, g: &Generation) -> String {
    to_json(&MessageOut {
        id,
        kind: "message",
        role: "assistant",
        model,
        content: vec![TextBlock {
            kind: "text",
            text: &g.text,
        }],
        stop_reason: Some(g.stop_reason),
        stop_sequence: g.stop_sequence.as_deref(),
        usage: Usage {
            input_tokens: g.input_tokens,
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
            output_tokens: g.output_tokens,
        },
    })
}

/// Split `text` into at least 3 pieces (when it has 3+ chars), each at most
/// 8 bytes, on char boundaries.
pub fn split_deltas(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let target = (text.len() / 3).clamp(1, 8);
    let mut out = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + target).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[start..end]);
        start = end;
    }
    out
}

/// Split `text` into exactly `n` pieces of near-equal length on char
/// boundaries (one per char when it has fewer than `n` chars).
pub fn split_exact(text: &str, n: usize) -> Vec<&str> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    let n = n.min(chars);
    (0..n)
        .map(|k| &text[bounds[k * chars / n]..bounds[(k + 1) * chars / n]])
        .collect()
}

/// The reply as the model writes it under `fault-deltas-<n>`: `n` times over
/// (`n` = 0: unchanged).
pub fn repeated_reply(reply: &str, n: usize) -> String {
    if n == 0 {
        reply.to_string()
    } else {
        reply.repeat(n)
    }
}

/// The Anthropic stream events (JSON text each) for one generation, in
/// order: message_start, content_block_start, content_block_delta…,
/// content_block_stop, message_delta, message_stop. `deltas` > 0 streams
/// the text as exactly that many deltas ([`split_exact`]); 0 as
/// [`split_deltas`] does.
pub fn stream_events(
    id: &str,
    model: &str,
    g: &Generation,
    latency_ms: u64,
    first_byte_ms: u64,
    deltas: usize,
) -> Vec<String> {
    let mut ev = vec![
        to_json(&Event::MessageStart {
            message: MessageOut {
                id,
                kind: "message",
                role: "assistant",
                model,
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: Usage {
                    input_tokens: g.input_tokens,
                    cache_creation_input_tokens: 0,
                    cache_read_input_tokens: 0,
                    output_tokens: 1,
                },
            },
        }),
        to_json(&Event::ContentBlockStart {
            index: 0,
            content_block: TextBlock {
                kind: "text",
                text: "",
            },
        }),
    ];
    let pieces = if deltas > 0 {
        split_exact(&g.text, deltas)
    } else {
        split_deltas(&g.text)
    };
    for piece in pieces {
        ev.push(to_json(&Event::ContentBlockDelta {
            index: 0,
            delta: TextDelta {
                kind: "text_delta",
                text: piece,
            },
        }));
    }
    ev.push(to_json(&Event::ContentBlockStop { index: 0 }));
    ev.push(to_json(&Event::MessageDelta {
        delta: StopDelta {
            stop_reason: g.stop_reason,
            stop_sequence: g.stop_sequence.as_deref(),
        },
        usage: DeltaUsage {
            output_tokens: g.output_tokens,
        },
    }));
    ev.push(to_json(&Event::MessageStop {
        metrics: InvocationMetrics {
            input_token_count: g.input_tokens,
            output_token_count: g.output_tokens,
            invocation_latency: latency_ms,
            first_byte_latency: first_byte_ms,
        },
    }));
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn ok_body() -> Value {
        json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 128,
               "system": "Complete the code.",
               "messages": [{"role": "user", "content": "<prefix>def add(a, b):\n    </prefix>"}]})
    }

    #[test]
    fn accepts_a_valid_body() {
        let p = validate(&body(ok_body())).unwrap();
        assert_eq!(p.max_tokens, 128);
        assert!(p.prefill.is_none());
        assert!(p.input_tokens > 5);
    }

    #[test]
    fn rejects_extraneous_keys() {
        for key in ["model", "stream"] {
            let mut b = ok_body();
            b[key] = json!(true);
            let e = validate(&body(b)).unwrap_err();
            assert!(
                e.contains(&format!("extraneous key [{key}] is not permitted")),
                "{e}"
            );
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "JSONObject"),
            (
                json!({"max_tokens": 1, "messages": []}),
                "anthropic_version",
            ),
            (
                json!({"anthropic_version": "2023-06-01", "max_tokens": 1, "messages": []}),
                "not a valid enum",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "messages": []}),
                "max_tokens",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": "5", "messages": []}),
                "Integer",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 0, "messages": []}),
                "greater",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 1.5, "messages": []}),
                "Integer",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 5}),
                "messages",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 5, "messages": {}}),
                "JSONArray",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 5, "messages": []}),
                "at least one",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 5, "messages": [{"role": "assistant", "content": "x"}]}),
                "first message",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
                "role",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 5, "messages": [{"role": "user"}]}),
                "content",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "x"}]}]}),
                "type",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "<new_code> "}]}),
                "trailing whitespace",
            ),
            (
                json!({"anthropic_version": ANTHROPIC_VERSION, "max_tokens": 5, "stop_sequences": [""], "messages": [{"role": "user", "content": "x"}]}),
                "stop sequence",
            ),
        ];
        for (b, want) in cases {
            let e = validate(&body(b.clone())).unwrap_err();
            assert!(e.contains(want), "{b}: {e}");
        }
        assert!(validate(b"not json")
            .unwrap_err()
            .starts_with("Malformed input request"));
        assert!(validate(b"").is_err());
        assert!(validate(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn plain_generation() {
        let p = validate(&body(ok_body())).unwrap();
        let g = generate(DEFAULT_REPLY, &p);
        assert_eq!(g.text, "return a + b");
        assert_eq!(g.stop_reason, "end_turn");
        assert_eq!(g.output_tokens, 3);
    }

    #[test]
    fn prefill_with_stop_sequence_stops_before_it() {
        let mut b = ok_body();
        b["messages"] = json!([{"role": "user", "content": "add two numbers"},
                               {"role": "assistant", "content": "<new_code>"}]);
        b["stop_sequences"] = json!(["</new_code>"]);
        let p = validate(&body(b.clone())).unwrap();
        assert_eq!(p.prefill.as_deref(), Some("<new_code>"));
        let g = generate(DEFAULT_REPLY, &p);
        assert_eq!(g.text, "\nreturn a + b\n");
        assert_eq!(g.stop_reason, "stop_sequence");
        assert_eq!(g.stop_sequence.as_deref(), Some("</new_code>"));
        // Without stop sequences the model closes the tag and ends its turn.
        b.as_object_mut().unwrap().remove("stop_sequences");
        let g = generate(DEFAULT_REPLY, &validate(&body(b)).unwrap());
        assert_eq!(g.text, "\nreturn a + b\n</new_code>");
        assert_eq!(g.stop_reason, "end_turn");
    }

    #[test]
    fn max_tokens_truncates() {
        let mut b = ok_body();
        b["max_tokens"] = json!(1);
        let g = generate("héllo world", &validate(&body(b)).unwrap());
        assert_eq!(g.text, "hél");
        assert_eq!(g.stop_reason, "max_tokens");
    }

    #[test]
    fn open_tag_detection() {
        assert_eq!(trailing_open_tag("<new_code>"), Some("new_code"));
        assert_eq!(trailing_open_tag("text <a-b_1>"), Some("a-b_1"));
        assert_eq!(trailing_open_tag("</x>"), None);
        assert_eq!(trailing_open_tag("<>"), None);
        assert_eq!(trailing_open_tag("x >"), None);
        assert_eq!(trailing_open_tag(">"), None);
    }

    #[test]
    fn deltas_split_in_at_least_three() {
        assert_eq!(split_deltas("return a + b"), vec!["retu", "rn a", " + b"]);
        assert_eq!(split_deltas("ab"), vec!["a", "b"]);
        assert!(split_deltas("").is_empty());
        let long = "x".repeat(100);
        let d = split_deltas(&long);
        assert!(d.len() >= 3 && d.iter().all(|p| p.len() <= 8));
        let uni = "ééééé";
        assert_eq!(split_deltas(uni).concat(), uni);
    }

    #[test]
    fn exact_split() {
        assert_eq!(split_exact("abcdef", 3), vec!["ab", "cd", "ef"]);
        assert_eq!(split_exact("abcdefg", 3), vec!["ab", "cd", "efg"]);
        assert_eq!(split_exact("ab", 5), vec!["a", "b"]);
        assert!(split_exact("", 4).is_empty());
        assert!(split_exact("abc", 0).is_empty());
        let uni = "éàü€x";
        let d = split_exact(uni, 2);
        assert_eq!(d.len(), 2);
        assert_eq!(d.concat(), uni);
    }

    #[test]
    fn forced_delta_count() {
        // fault-deltas-40: the reply written 40 times, streamed as exactly 40 deltas.
        let p = validate(&body(ok_body())).unwrap();
        let g = generate(&repeated_reply(DEFAULT_REPLY, 40), &p);
        assert_eq!(g.text, DEFAULT_REPLY.repeat(40));
        assert_eq!(g.stop_reason, "end_turn");
        let ev: Vec<Value> = stream_events("msg_bdrk_01x", "m", &g, 10, 5, 40)
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(ev.len(), 40 + 5);
        let deltas: Vec<&str> = ev
            .iter()
            .filter(|e| e["type"] == "content_block_delta")
            .map(|e| e["delta"]["text"].as_str().unwrap())
            .collect();
        assert_eq!(deltas.len(), 40);
        assert!(deltas.iter().all(|d| *d == DEFAULT_REPLY));
        assert_eq!(ev[2]["type"], "content_block_delta");
        assert_eq!(ev[44]["type"], "message_stop");
        // A max_tokens cut shortens the deltas, not their number.
        let mut b = ok_body();
        b["max_tokens"] = json!(30);
        let g = generate(
            &repeated_reply(DEFAULT_REPLY, 40),
            &validate(&body(b)).unwrap(),
        );
        assert_eq!(g.text.len(), 120);
        let n = stream_events("id", "m", &g, 1, 1, 40)
            .iter()
            .filter(|e| e.contains("content_block_delta"))
            .count();
        assert_eq!(n, 40);
        assert_eq!(repeated_reply("x", 0), "x");
    }

    #[test]
    fn stream_event_sequence() {
        let p = validate(&body(ok_body())).unwrap();
        let g = generate(DEFAULT_REPLY, &p);
        let ev: Vec<Value> = stream_events("msg_bdrk_01x", "m", &g, 10, 5, 0)
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        for e in stream_events("msg_bdrk_01x", "m", &g, 10, 5, 0) {
            assert!(e.starts_with(r#"{"type":""#), "{e}");
        }
        let types: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            ev[7]["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
            3
        );
        assert_eq!(ev[6]["delta"]["stop_reason"], "end_turn");
        let text = message_json("msg_bdrk_01x", "m", &g);
        assert!(text.starts_with(r#"{"id":"msg_bdrk_01x","type":"message","role":"assistant","model":"m","content":[{"type":"text","#), "{text}");
        let m: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(m["content"][0]["text"], "return a + b");
        assert_eq!(m["stop_sequence"], Value::Null);
    }
}
