//! `POST /v1/chat/{chat_invokable}`: the legacy raw-prompt chat path.
//!
//! Contract: `docs/gitlab-contract.md#legacy-chat` (request, answers), `#scopes` (per-invokable
//! unit primitive) and GitLab's `ai_gateway/api/v1/chat/{agent,auth,typing}.py` (AIGW 18.5).
//!
//! Invokables and unit primitives (the gateway's `CHAT_INVOKABLES`): `agent`, `explain_code`,
//! `write_tests`, `refactor_code` → `duo_chat`; `explain_vulnerability`, `summarize_comments`,
//! `troubleshoot_job` → the unit primitive of the same name. 403 detail:
//! `Unauthorized to access <unit primitive>`. Unknown invokable → 404 `{"detail":"Not found"}`
//! (after body validation, as in the gateway, where the check runs inside the handler).
//!
//! Body: `{prompt_components: [exactly one {type, metadata{source, version}, payload{content,
//! provider?, model?, params?, model_endpoint?, model_api_key?, model_identifier?}}], stream?}`.
//! `payload.content` is a string (one user message, ≤ 400 000 characters) or 1–100 messages
//! `{role: system|user|assistant, content}`; `system` messages become Bedrock's `system`, the
//! rest is normalised by [`crate::prompts::conversation`]. Parameters
//! (`params` = Anthropic's: `stop_sequences` 1–10 strings ≤ 225 characters, `temperature`
//! 0–1, `max_tokens_to_sample` 1–8192):
//! * with `params`: its values, pydantic defaults for missing ones (`["\n\nHuman",
//!   "Observation:"]`, 0.2, 8192), `max_tokens` capped at 4096 as the gateway's Anthropic path
//!   does;
//! * without: temperature 0.2, `max_tokens` 2048, no stop sequences (the gateway's LiteLLM
//!   defaults). `top_p` is never sent (recent Claude models refuse it next to `temperature`);
//!   blank stop sequences are dropped (Bedrock refuses them).
//!
//! Model: `payload.model_identifier` (`bedrock/...`) or the default model. Answers: non-stream
//! `{"response": text, "metadata": {"provider": payload.provider, "model": payload.model
//! (default "claude-3-5-sonnet-20241022"), "timestamp": now}}`; stream `text/event-stream;
//! charset=utf-8` raw text; a mid-stream failure just ends the stream.

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::bedrock::messages::{MessagesRequest, MessagesResponse, Role};
use crate::bedrock::InvokeRequest;
use crate::prompts::conversation;

use super::super::dispatch::{Plan, RequestContext, Responder, ScopeCheck};
use super::super::errors::{Family, GitlabError, LocPart, ValidationIssue};
use super::super::model::bedrock_model_id;
use super::super::response::GitlabResponse;
use super::super::validate::{
    at, body_loc, enum_error, list_type, missing, parse_object, string_type, Validator,
};
use super::MESSAGE_ROLES;

/// `(invokable, unit primitive)`.
pub const INVOKABLES: &[(&str, &str)] = &[
    ("explain_code", "duo_chat"),
    ("write_tests", "duo_chat"),
    ("refactor_code", "duo_chat"),
    ("explain_vulnerability", "explain_vulnerability"),
    ("summarize_comments", "summarize_comments"),
    ("troubleshoot_job", "troubleshoot_job"),
    ("agent", "duo_chat"),
];

/// `payload.model` when absent (the gateway's default `KindAnthropicModel`).
pub const DEFAULT_MODEL_NAME: &str = "claude-3-5-sonnet-20241022";
pub const MAX_STRING_CONTENT: usize = 400_000;
pub const MAX_MESSAGES: usize = 100;
pub const MAX_METADATA_FIELD: usize = 100;
pub const MAX_STOP_SEQUENCE: usize = 225;
pub const MAX_STOP_SEQUENCES: usize = 10;
/// Cap on `max_tokens` (the gateway's Anthropic path caps at 4096).
pub const MAX_TOKENS_CAP: u32 = 4096;
/// `max_tokens` without `params` (LiteLLM path default).
pub const DEFAULT_MAX_TOKENS: u32 = 2048;
/// `temperature` default in both paths.
pub const DEFAULT_TEMPERATURE: f64 = 0.2;

/// Content type of the raw text stream.
pub use super::super::response::STREAM_CONTENT_TYPE;

/// A validated legacy chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyRequest {
    pub system: Vec<String>,
    pub turns: Vec<(Role, String)>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub model_identifier: Option<String>,
    pub stop_sequences: Vec<String>,
    pub temperature: f64,
    pub max_tokens: u32,
    pub stream: bool,
}

fn bound_issue(
    loc: Vec<LocPart>,
    kind: &'static str,
    bound: &str,
    ctx_key: &str,
    ctx: Value,
) -> ValidationIssue {
    let relation = if kind == "greater_than_equal" {
        "greater than or equal to"
    } else {
        "less than or equal to"
    };
    ValidationIssue::new(kind, loc, format!("Input should be {relation} {bound}"))
        .with_ctx(json!({ ctx_key: ctx }))
}

/// System parts and role-tagged turns.
type Conversation = (Vec<String>, Vec<(Role, String)>);

/// `payload.content`: a string or a list of messages.
fn content(v: &mut Validator, value: Option<Value>, loc: &[LocPart]) -> Option<Conversation> {
    match value {
        None => {
            v.push(missing(loc.to_vec()));
            None
        }
        Some(Value::String(s)) => {
            let s = v.string(
                Value::String(s),
                at(loc, "str"),
                Some(MAX_STRING_CONTENT),
                false,
            )?;
            Some((Vec::new(), vec![(Role::User, s)]))
        }
        Some(Value::Array(items)) => {
            let lloc = at(loc, "list[Message]");
            let items = v.list(Value::Array(items), lloc.clone(), 1, MAX_MESSAGES)?;
            let mut system = Vec::new();
            let mut turns = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let iloc = at(&lloc, i);
                let Some(mut m) = v.object(item, iloc.clone()) else {
                    continue;
                };
                let role = v.req_str(&mut m, "role", &iloc, None, false);
                let text = v.req_str(&mut m, "content", &iloc, None, false);
                let role = match role.as_deref() {
                    Some("system") => None,
                    Some("user") => Some(Role::User),
                    Some("assistant") => Some(Role::Assistant),
                    Some(_) => {
                        v.push(enum_error(at(&iloc, "role"), MESSAGE_ROLES));
                        continue;
                    }
                    None => continue,
                };
                let Some(text) = text else { continue };
                match role {
                    None => system.push(text),
                    Some(r) => turns.push((r, text)),
                }
            }
            Some((system, turns))
        }
        Some(_) => {
            v.push(string_type(at(loc, "str")));
            v.push(list_type(at(loc, "list[Message]")));
            None
        }
    }
}

struct Params {
    stop_sequences: Vec<String>,
    temperature: f64,
    max_tokens: u32,
}

fn params(v: &mut Validator, p: Option<Map<String, Value>>, loc: &[LocPart]) -> Params {
    let Some(mut p) = p else {
        return Params {
            stop_sequences: Vec::new(),
            temperature: DEFAULT_TEMPERATURE,
            max_tokens: DEFAULT_MAX_TOKENS,
        };
    };
    let stop_sequences = match v.opt_list(&mut p, "stop_sequences", loc, 1, MAX_STOP_SEQUENCES) {
        Some(items) => {
            let sloc = at(loc, "stop_sequences");
            items
                .into_iter()
                .enumerate()
                .filter_map(|(i, s)| v.string(s, at(&sloc, i), Some(MAX_STOP_SEQUENCE), false))
                .collect()
        }
        None => vec!["\n\nHuman".to_string(), "Observation:".to_string()],
    };
    let temperature = match v.opt_float(&mut p, "temperature", loc) {
        Some(t) if t < 0.0 => {
            v.push(bound_issue(
                at(loc, "temperature"),
                "greater_than_equal",
                "0.0",
                "ge",
                json!(0.0),
            ));
            DEFAULT_TEMPERATURE
        }
        Some(t) if t > 1.0 => {
            v.push(bound_issue(
                at(loc, "temperature"),
                "less_than_equal",
                "1.0",
                "le",
                json!(1.0),
            ));
            DEFAULT_TEMPERATURE
        }
        Some(t) => t,
        None => DEFAULT_TEMPERATURE,
    };
    let max_tokens = match v.opt_int(&mut p, "max_tokens_to_sample", loc) {
        Some(n) if n < 1 => {
            v.push(bound_issue(
                at(loc, "max_tokens_to_sample"),
                "greater_than_equal",
                "1",
                "ge",
                json!(1),
            ));
            MAX_TOKENS_CAP
        }
        Some(n) if n > 8192 => {
            v.push(bound_issue(
                at(loc, "max_tokens_to_sample"),
                "less_than_equal",
                "8192",
                "le",
                json!(8192),
            ));
            MAX_TOKENS_CAP
        }
        Some(n) => u32::try_from(n)
            .unwrap_or(MAX_TOKENS_CAP)
            .min(MAX_TOKENS_CAP),
        None => MAX_TOKENS_CAP,
    };
    Params {
        stop_sequences,
        temperature,
        max_tokens,
    }
}

/// Parses and validates the body.
pub fn parse(body: &[u8]) -> Result<LegacyRequest, GitlabError> {
    let mut map = parse_object(body)?;
    let b = body_loc();
    let mut v = Validator::new();
    let mut parsed = None;
    if let Some(items) = v.req_list(&mut map, "prompt_components", &b, 1, 1) {
        let cloc = at(&at(&b, "prompt_components"), 0usize);
        if let Some(mut c) = items
            .into_iter()
            .next()
            .and_then(|i| v.object(i, cloc.clone()))
        {
            let _ = v.req_str(&mut c, "type", &cloc, Some(MAX_METADATA_FIELD), false);
            if let Some(mut meta) = v.req_object(&mut c, "metadata", &cloc) {
                let mloc = at(&cloc, "metadata");
                let _ = v.req_str(&mut meta, "source", &mloc, Some(MAX_METADATA_FIELD), false);
                let _ = v.req_str(&mut meta, "version", &mloc, Some(MAX_METADATA_FIELD), false);
            }
            if let Some(mut p) = v.req_object(&mut c, "payload", &cloc) {
                let ploc = at(&cloc, "payload");
                let content = content(&mut v, p.remove("content"), &at(&ploc, "content"));
                let provider = v.opt_str(&mut p, "provider", &ploc, None, false);
                let model = match p.get("model") {
                    None => Some(DEFAULT_MODEL_NAME.to_string()),
                    Some(_) => v.opt_str(&mut p, "model", &ploc, None, false),
                };
                let raw_params = v.opt_object(&mut p, "params", &ploc);
                let params = params(&mut v, raw_params, &at(&ploc, "params"));
                let _ = v.opt_str(&mut p, "model_endpoint", &ploc, None, false);
                let _ = v.opt_str(&mut p, "model_api_key", &ploc, None, false);
                let model_identifier = v.opt_str(&mut p, "model_identifier", &ploc, None, false);
                parsed = content.map(|(system, turns)| {
                    (system, turns, provider, model, params, model_identifier)
                });
            }
        }
    }
    let stream = v.opt_bool(&mut map, "stream", &b).unwrap_or(false);
    v.finish()?;
    let (system, turns, provider, model, params, model_identifier) =
        parsed.ok_or_else(|| GitlabError::detail(422, "Validation error"))?;
    Ok(LegacyRequest {
        system,
        turns,
        provider,
        model,
        model_identifier,
        stop_sequences: params.stop_sequences,
        temperature: params.temperature,
        max_tokens: params.max_tokens,
        stream,
    })
}

/// Builds the plan of a `/v1/chat/{invokable}` request.
pub fn plan(invokable: &str, body: &[u8], ctx: &RequestContext<'_>) -> Result<Plan, GitlabError> {
    let req = parse(body)?;
    let Some((_, up)) = INVOKABLES.iter().find(|(name, _)| *name == invokable) else {
        return Err(GitlabError::detail(404, "Not found"));
    };
    let model_id = bedrock_model_id(req.model_identifier.as_deref(), ctx.default_model)?;
    let (system, messages) = conversation::build(&req.system, req.turns);
    let mut body = MessagesRequest::new(req.max_tokens, messages);
    body.system = system;
    body.temperature = Some(req.temperature);
    // Bedrock refuses blank stop sequences; pydantic lets them through.
    body.stop_sequences = req
        .stop_sequences
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .collect();
    Ok(Plan {
        scopes: vec![ScopeCheck::new(*up, format!("Unauthorized to access {up}"))],
        invoke: InvokeRequest {
            model_id,
            stream: req.stream,
            body,
        },
        responder: Box::new(LegacyResponder {
            provider: req.provider,
            model: req.model,
            timestamp: ctx.now_secs,
            ended: false,
        }),
        family: Family::Chat,
        feature: "duo_chat_legacy",
        timeout_secs: None,
    })
}

/// Answers of `/v1/chat/{invokable}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyResponder {
    provider: Option<String>,
    model: Option<String>,
    timestamp: u64,
    ended: bool,
}

#[derive(Serialize)]
struct ChatResponseMetadata<'a> {
    provider: Option<&'a str>,
    model: Option<&'a str>,
    timestamp: u64,
}

#[derive(Serialize)]
struct ChatResponse<'a> {
    response: &'a str,
    metadata: ChatResponseMetadata<'a>,
}

impl Responder for LegacyResponder {
    fn complete(&mut self, resp: &MessagesResponse) -> GitlabResponse {
        let text = resp.text();
        let body = serde_json::to_vec(&ChatResponse {
            response: &text,
            metadata: ChatResponseMetadata {
                provider: self.provider.as_deref(),
                model: self.model.as_deref(),
                timestamp: self.timestamp,
            },
        })
        .unwrap_or_else(|_| b"{}".to_vec());
        GitlabResponse::json(body)
    }

    fn stream_headers(&self) -> Vec<(String, String)> {
        vec![("content-type".to_string(), STREAM_CONTENT_TYPE.to_string())]
    }

    fn stream_text(&mut self, delta: &str) -> Vec<u8> {
        if self.ended {
            Vec::new()
        } else {
            delta.as_bytes().to_vec()
        }
    }

    fn stream_end(&mut self) -> Vec<u8> {
        self.ended = true;
        Vec::new()
    }

    fn stream_error(&mut self, _message: &str) -> Vec<u8> {
        self.ended = true;
        Vec::new()
    }

    fn record_usage(&mut self, _input: Option<u64>, _output: Option<u64>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::messages::Message;
    use crate::gitlab::dispatch::{plan as dispatch_plan, Endpoint};
    use crate::gitlab::errors::testing::{detail, issue_types};

    const MODEL: &str = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0";
    const NOW: u64 = 1_739_952_001;

    fn run(invokable: &str, body: Value) -> Result<Plan, GitlabError> {
        dispatch_plan(
            &Endpoint::LegacyChat {
                invokable: invokable.into(),
            },
            body.to_string().as_bytes(),
            &RequestContext {
                now_secs: NOW,
                enabled_feature_flags: None,
                default_model: None,
                scopes: None,
                gitlab_version: None,
            },
        )
    }

    fn body(content: Value, params: Option<Value>, stream: bool) -> Value {
        let mut payload = json!({"content": content, "provider": "litellm", "model": "claude_3",
            "model_endpoint": "https://x", "model_api_key": null, "model_identifier": MODEL});
        if let Some(p) = params {
            payload["params"] = p;
        }
        json!({"prompt_components": [{"type": "prompt", "metadata": {"source": "GitLab EE", "version": "17.9.0"},
            "payload": payload}], "stream": stream})
    }

    #[test]
    fn reference_request() {
        let b = body(
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]),
            Some(
                json!({"stop_sequences": ["\n\nHuman", "Observation:"], "temperature": 0.1, "max_tokens_to_sample": 4096}),
            ),
            true,
        );
        let mut p = run("explain_code", b).unwrap();
        assert_eq!(
            p.scopes,
            vec![ScopeCheck::new(
                "duo_chat",
                "Unauthorized to access duo_chat"
            )]
        );
        assert_eq!(p.family, Family::Chat);
        assert!(p.invoke.stream);
        let body = &p.invoke.body;
        assert_eq!(body.system.as_deref(), Some("Be brief."));
        assert_eq!(body.messages, vec![Message::user("Hello")]);
        assert_eq!(body.temperature, Some(0.1));
        assert_eq!(body.max_tokens, 4096);
        assert_eq!(body.stop_sequences, ["\n\nHuman", "Observation:"]);
        assert_eq!(
            p.responder.stream_headers()[0].1,
            "text/event-stream; charset=utf-8"
        );
        assert_eq!(p.responder.stream_text("Hi"), b"Hi");
        assert!(p.responder.stream_error("x").is_empty());
        assert!(p.responder.stream_text("more").is_empty());
    }

    #[test]
    fn non_stream_answer_and_defaults() {
        let mut p = run("troubleshoot_job", body(json!("log text"), None, false)).unwrap();
        assert_eq!(p.scopes[0].unit_primitive, "troubleshoot_job");
        assert_eq!(
            p.scopes[0].denied_detail,
            "Unauthorized to access troubleshoot_job"
        );
        let b = &p.invoke.body;
        assert_eq!(b.messages, vec![Message::user("log text")]);
        assert_eq!((b.max_tokens, b.temperature), (2048, Some(0.2)));
        assert!(b.stop_sequences.is_empty());
        let resp: MessagesResponse = serde_json::from_value(json!({
            "content": [{"type": "text", "text": "It failed."}], "usage": {"input_tokens": 1, "output_tokens": 2}
        }))
        .unwrap();
        let r = p.responder.complete(&resp);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"response":"It failed.","metadata":{"provider":"litellm","model":"claude_3","timestamp":1739952001}}"#
        );
        // blank stop sequences are dropped
        let p = run(
            "agent",
            body(
                json!("x"),
                Some(json!({"stop_sequences": [" ", "Observation:"]})),
                false,
            ),
        )
        .unwrap();
        assert_eq!(p.invoke.body.stop_sequences, ["Observation:"]);
        // params present but partial: pydantic defaults, capped max_tokens
        let p = run(
            "summarize_comments",
            body(json!("x"), Some(json!({})), false),
        )
        .unwrap();
        assert_eq!(p.invoke.body.stop_sequences, ["\n\nHuman", "Observation:"]);
        assert_eq!(p.invoke.body.max_tokens, 4096);
        assert_eq!(p.scopes[0].unit_primitive, "summarize_comments");
    }

    #[test]
    fn roles_are_normalised_for_bedrock() {
        let b = body(
            json!([{"role": "assistant", "content": "earlier"}, {"role": "user", "content": "a"},
                   {"role": "user", "content": "b"}, {"role": "system", "content": "s"}]),
            None,
            false,
        );
        let p = run("agent", b).unwrap();
        assert_eq!(p.invoke.body.system.as_deref(), Some("s"));
        assert_eq!(
            p.invoke.body.messages,
            vec![
                Message::user(conversation::CONTINUE_PLACEHOLDER),
                Message::assistant("earlier"),
                Message::user("a\n\nb")
            ]
        );
    }

    #[test]
    fn invokables() {
        for (name, up) in INVOKABLES {
            let p = run(name, body(json!("x"), None, false)).unwrap();
            assert_eq!(&p.scopes[0].unit_primitive, up);
        }
        let e = run("nope", body(json!("x"), None, false)).unwrap_err();
        assert_eq!((e.status, detail(&e)), (404, json!("Not found")));
        // body validation comes first
        assert_eq!(run("nope", json!({})).unwrap_err().status, 422);
    }

    #[test]
    fn validation() {
        let e = run("agent", json!({"prompt_components": []})).unwrap_err();
        assert_eq!(detail(&e)[0]["type"], "too_short");
        let two = json!({"type": "prompt", "metadata": {"source": "s", "version": "v"}, "payload": {"content": "x"}});
        let e = run("agent", json!({"prompt_components": [two.clone(), two]})).unwrap_err();
        assert_eq!(detail(&e)[0]["type"], "too_long");
        let e = run("agent", body(json!(5), None, false)).unwrap_err();
        let d = detail(&e);
        assert_eq!(
            d[0]["loc"],
            json!(["body", "prompt_components", 0, "payload", "content", "str"])
        );
        assert_eq!(
            d[1]["loc"],
            json!([
                "body",
                "prompt_components",
                0,
                "payload",
                "content",
                "list[Message]"
            ])
        );
        let e = run(
            "agent",
            body(
                json!("x"),
                Some(json!({"temperature": 2, "max_tokens_to_sample": 0, "stop_sequences": []})),
                false,
            ),
        )
        .unwrap_err();
        let d = detail(&e);
        assert_eq!(
            issue_types(&e),
            ["too_short", "less_than_equal", "greater_than_equal"]
        );
        assert_eq!(d[1]["msg"], "Input should be less than or equal to 1.0");
        let e = run(
            "agent",
            body(
                json!([{"role": "robot", "content": "x"}, {"role": "user"}]),
                None,
                false,
            ),
        )
        .unwrap_err();
        let d = detail(&e);
        assert_eq!(d[0]["type"], "enum");
        assert_eq!(
            d[1]["loc"],
            json!([
                "body",
                "prompt_components",
                0,
                "payload",
                "content",
                "list[Message]",
                1,
                "content"
            ])
        );
        let e = run("agent", body(json!([]), None, false)).unwrap_err();
        assert_eq!(e.status, 422);
        let e = run("agent", json!({"prompt_components": [{}]})).unwrap_err();
        assert_eq!(detail(&e).as_array().unwrap().len(), 3);
    }
}
