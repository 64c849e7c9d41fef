//! GitLab's Code Suggestions response shapes and the [`Responder`] that produces them.
//!
//! Contract: `docs/gitlab-contract.md#code-completions` (`SuggestionsResponse`),
//! `#code-generations-v2` (same shape for v2 generations, without `tokens_consumption_metadata`),
//! `#code-generations-v3-v4` (`CompletionResponse` for v3/v4), `#streaming` (raw text, v4 SSE
//! events), `#gateway-behaviour` (feature flags echoed as `metadata.enabled_feature_flags`).
//!
//! Decisions:
//! * `experiments` (17.9 only, removed by 18.5) is not sent.
//! * `enabled_feature_flags`: `null` when the `x-gitlab-enabled-feature-flags` header is
//!   absent, else the header split on `,`, trimmed, empty and duplicate entries dropped
//!   (an empty header gives `[]`).
//! * Streams: v2 and v3 write the model's text deltas unchanged (`text/event-stream;
//!   charset=utf-8`, no framing). v4 writes SSE with `\n` line endings (sse-starlette uses
//!   `\r\n`; both are valid SSE and any conforming parser, such as GitLab's language
//!   server's, accepts either) and compact JSON. No `: ping` comments are sent.
//!   Events: `stream_start` (metadata: model engine/name, timestamp, flags when present,
//!   region), one `content_chunk` per non-empty delta, `stream_end` with `data: null`.
//! * `stream_error`: raw modes write nothing (the stream just ends, as in GitLab); v4 ends
//!   the SSE stream cleanly with `stream_end` (after `stream_start` if nothing was sent yet),
//!   so clients treat what they got as a partial answer. All stream calls are idempotent
//!   about start/end: nothing is written after `stream_end`.
//! * Streams are not post-processed (as in GitLab); non-stream generations are.

use serde::Serialize;
use serde_json::json;

use crate::bedrock::messages::{MessagesResponse, Usage};

use super::super::response::GitlabResponse;
use super::postprocess;
use super::CodeEndpoint;

/// `model.engine` of every answer.
pub const ENGINE: &str = "agent";
/// `model.name` of completions (the name of GitLab's prompt for Claude).
pub const COMPLETIONS_MODEL_NAME: &str = "Claude 3 Code Completions";
/// `model.name` of generations.
pub const GENERATIONS_MODEL_NAME: &str = "Claude 3 Code Generations Agent";
/// The `region` GitLab's gateway reports by default (`RUNWAY_REGION` unset).
pub const REGION: &str = "us-central1";
/// Content type of every stream.
pub use super::super::response::STREAM_CONTENT_TYPE;

/// Completion (fill-in-the-middle) or generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuggestionKind {
    Completion,
    Generation,
}

/// Everything needed to answer one request, built by `plan`.
#[derive(Debug, Clone, PartialEq)]
pub struct Responder {
    endpoint: CodeEndpoint,
    kind: SuggestionKind,
    lang: String,
    /// `content_above_cursor`, kept for generation post-processing (empty for completions).
    prefix: String,
    feature_flags: Option<Vec<String>>,
    created: u64,
    model_name: &'static str,
    max_tokens: u32,
    context_tokens_sent: u64,
    context_tokens_used: u64,
    usage: Usage,
    started: bool,
    ended: bool,
}

/// Splits the feature-flags header (see the module doc).
pub fn parse_feature_flags(header: Option<&str>) -> Option<Vec<String>> {
    let header = header?;
    let mut out: Vec<String> = Vec::new();
    for flag in header.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        if !out.iter().any(|f| f == flag) {
            out.push(flag.to_string());
        }
    }
    Some(out)
}

#[derive(Serialize)]
struct Choice<'a> {
    text: &'a str,
    index: u32,
    finish_reason: &'static str,
}

fn choices(text: &str) -> Vec<Choice<'_>> {
    if text.is_empty() {
        Vec::new()
    } else {
        vec![Choice {
            text,
            index: 0,
            finish_reason: "length",
        }]
    }
}

#[derive(Serialize)]
struct TokensConsumption {
    input_tokens: u64,
    output_tokens: u64,
    max_output_tokens_used: bool,
    context_tokens_sent: u64,
    context_tokens_used: u64,
}

#[derive(Serialize)]
struct SuggestionsModel<'a> {
    engine: &'static str,
    name: &'static str,
    lang: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_consumption_metadata: Option<TokensConsumption>,
    region: &'static str,
}

#[derive(Serialize)]
struct FlagsMetadata<'a> {
    enabled_feature_flags: Option<&'a [String]>,
}

/// `/v2/code/*` non-stream answer.
#[derive(Serialize)]
struct SuggestionsResponse<'a> {
    id: &'static str,
    model: SuggestionsModel<'a>,
    object: &'static str,
    created: u64,
    choices: Vec<Choice<'a>>,
    metadata: FlagsMetadata<'a>,
}

#[derive(Serialize)]
struct CompletionModel<'a> {
    engine: &'static str,
    name: &'static str,
    lang: &'a str,
}

#[derive(Serialize)]
struct CompletionMetadata<'a> {
    model: CompletionModel<'a>,
    timestamp: u64,
    enabled_feature_flags: Option<&'a [String]>,
    region: Option<&'static str>,
}

/// `/v3/code/completions` and `/v4/code/suggestions` non-stream answer.
#[derive(Serialize)]
struct CompletionResponse<'a> {
    choices: Vec<Choice<'a>>,
    metadata: CompletionMetadata<'a>,
}

#[derive(Serialize)]
struct StreamModel {
    engine: &'static str,
    name: &'static str,
}

/// `stream_start` data: like GitLab's `model_dump(exclude_none=True)`.
#[derive(Serialize)]
struct StreamStartMetadata<'a> {
    model: StreamModel,
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled_feature_flags: Option<&'a [String]>,
    region: &'static str,
}

#[derive(Serialize)]
struct StreamStart<'a> {
    metadata: StreamStartMetadata<'a>,
}

/// What `plan` knows when it builds the responder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResponderParts {
    pub endpoint: CodeEndpoint,
    pub kind: SuggestionKind,
    pub lang: String,
    pub prefix: String,
    pub feature_flags: Option<Vec<String>>,
    pub created: u64,
    pub max_tokens: u32,
    pub context_tokens_sent: u64,
    pub context_tokens_used: u64,
}

impl Responder {
    pub(crate) fn new(p: ResponderParts) -> Self {
        let model_name = match p.kind {
            SuggestionKind::Completion => COMPLETIONS_MODEL_NAME,
            SuggestionKind::Generation => GENERATIONS_MODEL_NAME,
        };
        Self {
            endpoint: p.endpoint,
            kind: p.kind,
            lang: p.lang,
            prefix: p.prefix,
            feature_flags: p.feature_flags,
            created: p.created,
            model_name,
            max_tokens: p.max_tokens,
            context_tokens_sent: p.context_tokens_sent,
            context_tokens_used: p.context_tokens_used,
            usage: Usage::default(),
            started: false,
            ended: false,
        }
    }

    pub fn endpoint(&self) -> CodeEndpoint {
        self.endpoint
    }

    pub fn kind(&self) -> SuggestionKind {
        self.kind
    }

    /// The language name reported as `model.lang`.
    pub fn lang(&self) -> &str {
        &self.lang
    }

    /// Usage recorded so far with [`Self::record_usage`] (streams; for logs/metrics).
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// The whole answer for a non-stream Bedrock response.
    pub fn complete(&self, resp: &MessagesResponse) -> GitlabResponse {
        let raw = resp.text();
        let text = match self.kind {
            SuggestionKind::Completion => raw,
            SuggestionKind::Generation => postprocess::generation(&self.prefix, &raw),
        };
        let flags = self.feature_flags.as_deref();
        let body = match self.endpoint {
            CodeEndpoint::V2Completions | CodeEndpoint::V2Generations => {
                let tokens =
                    (self.endpoint == CodeEndpoint::V2Completions).then(|| TokensConsumption {
                        input_tokens: resp.usage.input_tokens,
                        output_tokens: resp.usage.output_tokens,
                        max_output_tokens_used: resp.usage.output_tokens
                            >= u64::from(self.max_tokens),
                        context_tokens_sent: self.context_tokens_sent,
                        context_tokens_used: self.context_tokens_used,
                    });
                serde_json::to_vec(&SuggestionsResponse {
                    id: "id",
                    model: SuggestionsModel {
                        engine: ENGINE,
                        name: self.model_name,
                        lang: &self.lang,
                        tokens_consumption_metadata: tokens,
                        region: REGION,
                    },
                    object: "text_completion",
                    created: self.created,
                    choices: choices(&text),
                    metadata: FlagsMetadata {
                        enabled_feature_flags: flags,
                    },
                })
            }
            CodeEndpoint::V3Completions | CodeEndpoint::V4Suggestions => {
                serde_json::to_vec(&CompletionResponse {
                    choices: choices(&text),
                    metadata: CompletionMetadata {
                        model: CompletionModel {
                            engine: ENGINE,
                            name: self.model_name,
                            lang: &self.lang,
                        },
                        timestamp: self.created,
                        enabled_feature_flags: flags,
                        region: None,
                    },
                })
            }
        };
        // Serialising these plain structs cannot fail; fall back to an empty object anyway.
        GitlabResponse::json(body.unwrap_or_else(|_| b"{}".to_vec()))
    }

    fn is_sse(&self) -> bool {
        self.endpoint == CodeEndpoint::V4Suggestions
    }

    /// Response headers of a streamed answer (status is always 200).
    pub fn stream_headers(&self) -> Vec<(String, String)> {
        let mut h = vec![("content-type".to_string(), STREAM_CONTENT_TYPE.to_string())];
        if self.is_sse() {
            h.push(("x-streaming-format".to_string(), "sse".to_string()));
            h.push(("cache-control".to_string(), "no-store".to_string()));
            h.push(("x-accel-buffering".to_string(), "no".to_string()));
        }
        h
    }

    /// Bytes to send first (v4: the `stream_start` event; raw modes: nothing).
    pub fn stream_start(&mut self) -> Vec<u8> {
        if !self.is_sse() || self.started || self.ended {
            self.started = true;
            return Vec::new();
        }
        self.started = true;
        let start = StreamStart {
            metadata: StreamStartMetadata {
                model: StreamModel {
                    engine: ENGINE,
                    name: self.model_name,
                },
                timestamp: self.created,
                enabled_feature_flags: self.feature_flags.as_deref(),
                region: REGION,
            },
        };
        let data = serde_json::to_string(&start).unwrap_or_else(|_| "{}".to_string());
        sse_event("stream_start", &data)
    }

    /// Bytes for one text delta (raw: the text itself; v4: a `content_chunk` event, preceded
    /// by `stream_start` if it was not sent yet).
    pub fn stream_text(&mut self, delta: &str) -> Vec<u8> {
        if self.ended || delta.is_empty() {
            return Vec::new();
        }
        if !self.is_sse() {
            self.started = true;
            return delta.as_bytes().to_vec();
        }
        let mut out = self.stream_start();
        let data = json!({ "choices": [ { "delta": { "content": delta }, "index": 0 } ] });
        out.extend(sse_event("content_chunk", &data.to_string()));
        out
    }

    /// Bytes that end the stream (v4: `stream_end`; raw: nothing).
    pub fn stream_end(&mut self) -> Vec<u8> {
        if self.ended {
            return Vec::new();
        }
        let mut out = if self.is_sse() {
            self.stream_start()
        } else {
            Vec::new()
        };
        self.ended = true;
        if self.is_sse() {
            out.extend(sse_event("stream_end", "null"));
        }
        out
    }

    /// Bytes to send when the model stream fails after the headers went out. `message` is
    /// for the caller's log only; it is never sent to the client.
    pub fn stream_error(&mut self, message: &str) -> Vec<u8> {
        let _ = message;
        self.stream_end()
    }

    /// Records usage seen in the Bedrock stream (`message_start` input tokens,
    /// `message_delta` cumulative output tokens, or the final invocation metrics). The latest
    /// value of each wins, because Bedrock reports cumulative counts.
    pub fn record_usage(&mut self, input: Option<u64>, output: Option<u64>) {
        if let Some(i) = input {
            self.usage.input_tokens = i;
        }
        if let Some(o) = output {
            self.usage.output_tokens = o;
        }
    }
}

impl super::super::dispatch::Responder for Responder {
    fn complete(&mut self, resp: &MessagesResponse) -> GitlabResponse {
        Responder::complete(self, resp)
    }
    fn stream_headers(&self) -> Vec<(String, String)> {
        Responder::stream_headers(self)
    }
    fn stream_start(&mut self) -> Vec<u8> {
        Responder::stream_start(self)
    }
    fn stream_text(&mut self, delta: &str) -> Vec<u8> {
        Responder::stream_text(self, delta)
    }
    fn stream_end(&mut self) -> Vec<u8> {
        Responder::stream_end(self)
    }
    fn stream_error(&mut self, message: &str) -> Vec<u8> {
        Responder::stream_error(self, message)
    }
    fn record_usage(&mut self, input: Option<u64>, output: Option<u64>) {
        Responder::record_usage(self, input, output)
    }
}

fn sse_event(event: &str, data: &str) -> Vec<u8> {
    format!("event: {event}\ndata: {data}\n\n").into_bytes()
}
