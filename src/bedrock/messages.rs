//! Anthropic Messages API bodies as Bedrock's InvokeModel takes and returns them.
//!
//! The model goes in the URL, so the request body never carries `model` or `stream`
//! (Bedrock rejects them as extra inputs); `anthropic_version` is always set.

use serde::{Deserialize, Serialize};

/// The only `anthropic_version` Bedrock accepts for the Messages API.
pub const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A Messages request body for `/model/{id}/invoke[-with-response-stream]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessagesRequest {
    pub anthropic_version: &'static str,
    pub max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
}

impl MessagesRequest {
    pub fn new(max_tokens: u32, messages: Vec<Message>) -> Self {
        Self {
            anthropic_version: ANTHROPIC_VERSION,
            max_tokens,
            system: None,
            messages,
            temperature: None,
            top_p: None,
            stop_sequences: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContentBlock {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// The non-streaming answer (`Message` object).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MessagesResponse {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: Usage,
}

impl MessagesResponse {
    /// The concatenated text of every `text` block.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter(|b| b.kind == "text")
            .filter_map(|b| b.text.as_deref())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_never_carries_model_or_stream() {
        let mut r = MessagesRequest::new(128, vec![Message::user("hi")]);
        r.temperature = Some(0.0);
        let v: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&r).unwrap_or_default()).unwrap_or_default();
        assert_eq!(v["anthropic_version"], "bedrock-2023-05-31");
        assert!(v.get("model").is_none() && v.get("stream").is_none());
        assert!(
            v.get("stop_sequences").is_none(),
            "empty stop list is omitted"
        );
        assert_eq!(v["messages"][0]["role"], "user");
    }

    #[test]
    fn response_text_joins_text_blocks() {
        let r: MessagesResponse = serde_json::from_str(
            r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"a"},{"type":"tool_use","id":"x"},{"type":"text","text":"b"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":2}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.text(), "ab");
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 3,
                output_tokens: 2
            }
        );
    }
}
