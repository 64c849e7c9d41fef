//! Named prompts: `POST /v1/prompts/{prompt_id}` and `POST /v2/prompts/{prompt_id}`.
//!
//! Contract: `docs/gitlab-contract.md#named-prompts` (request, responses, errors,
//! `#test-connection`), `#scopes` (the prompt's unit primitives), `#errors` (421 for model
//! failures, via `Family::Prompts`).
//!
//! Request `{inputs: object, prompt_version?: string, stream?: bool, model_metadata?: {...}}`.
//! The prompt comes from [`crate::prompts::registry`]; `inputs` are its template variables, with
//! `current_date` added when absent (`%B %d, %Y`, UTC); the model from
//! `model_metadata.identifier` (`bedrock/...`) or the default model.
//!
//! Answers:
//! * v1 non-stream: 200 `application/json`, a JSON string of the model text (`"hey"`);
//! * v1 stream: `text/event-stream; charset=utf-8`, the raw text deltas;
//! * v2 non-stream: `{"content":"hey","usage":{"<bedrock model id>":{"input_tokens":n,"output_tokens":m}}}`;
//! * v2 stream: one `{"content":"<delta>"}` line (`\n`-terminated) per delta, then — when
//!   Bedrock reported usage — a last line `{"content":"","usage":{...}}`. **Decision:** GitLab's
//!   gateway holds every chunk back by one to attach usage to the last one; a separate final
//!   chunk gives clients the same information without delaying any text.
//! * Mid-stream failure: the stream just ends (as in GitLab's gateway).
//!
//! Errors: unknown prompt 404 `Prompt '<id>' not found`; bad constraint 422
//! `Invalid version constraint`; no version 400 `No prompt version found matching the query:
//! <constraint>`; agent prompts (`chat/react`, `chat/agent`) 422 `Prompt '<id>' is not
//! supported`; missing input 422 `'<key>'`; missing scope (host) 403 `Unauthorized to access
//! '<id>'`.
//!
//! Model failures (Bedrock errors of every class, 429 included, and Envoy-side timeouts or
//! connection failures) are 421 `{"detail":"<status>: <reason> - <explanation>"}` for every
//! prompt, as ai-gateway `ai_gateway/api/v1/prompts/invoke.py` answers them: see
//! [`super::errors::prompt_failure`].

use serde::Serialize;
use serde_json::{Map, Value};

use crate::bedrock::messages::{MessagesRequest, MessagesResponse, Role, Usage};
use crate::bedrock::InvokeRequest;
use crate::prompts::conversation;
use crate::prompts::date::Date;
use crate::prompts::definition::{Kind, SectionRole};
use crate::prompts::registry::{self, LookupError};

use super::dispatch::{Plan, RequestContext, Responder, ScopeCheck};
use super::errors::{Family, GitlabError};
use super::model::{bedrock_model_id, metadata_identifier};
use super::response::GitlabResponse;
use super::validate::{body_loc, parse_object, Validator};

/// Content type of both stream forms.
pub use super::response::STREAM_CONTENT_TYPE;

/// A validated prompt request.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptRequest {
    pub inputs: Map<String, Value>,
    pub prompt_version: Option<String>,
    pub stream: bool,
    pub model_identifier: Option<String>,
}

/// Parses and validates the body (422 on problems).
pub fn parse(body: &[u8]) -> Result<PromptRequest, GitlabError> {
    let mut map = parse_object(body)?;
    let b = body_loc();
    let mut v = Validator::new();
    let inputs = v.req_dict(&mut map, "inputs", &b);
    let prompt_version = v.opt_str(&mut map, "prompt_version", &b, None, false);
    let stream = v.opt_bool(&mut map, "stream", &b).unwrap_or(false);
    let model_identifier = metadata_identifier(&mut v, &mut map, &b);
    v.finish()?;
    Ok(PromptRequest {
        inputs: inputs.unwrap_or_default(),
        prompt_version,
        stream,
        model_identifier,
    })
}

/// Builds the plan of a `/v1|v2/prompts/{prompt_id}` request.
pub fn plan(
    version: u8,
    prompt_id: &str,
    body: &[u8],
    ctx: &RequestContext<'_>,
) -> Result<Plan, GitlabError> {
    let req = parse(body)?;
    let def = registry::lookup(prompt_id, req.prompt_version.as_deref()).map_err(|e| match e {
        LookupError::NotFound => {
            GitlabError::detail(404, &format!("Prompt '{prompt_id}' not found"))
        }
        LookupError::InvalidConstraint => GitlabError::detail(422, "Invalid version constraint"),
        LookupError::NoMatch(c) => GitlabError::detail(
            400,
            &format!("No prompt version found matching the query: {c}"),
        ),
    })?;
    if def.kind != Kind::Prompt {
        return Err(GitlabError::detail(
            422,
            &format!("Prompt '{prompt_id}' is not supported"),
        ));
    }
    let model_id = bedrock_model_id(req.model_identifier.as_deref(), ctx.default_model)?;

    let mut vars = req.inputs;
    if !vars.contains_key("current_date") {
        vars.insert(
            "current_date".into(),
            Value::String(Date::from_unix(ctx.now_secs).prompt_format()),
        );
    }
    let rendered = def
        .render(&vars)
        .map_err(|missing| GitlabError::detail(422, &format!("'{}'", missing.0)))?;
    let turns = rendered
        .turns
        .into_iter()
        .map(|(role, text)| {
            let role = if role == SectionRole::Assistant {
                Role::Assistant
            } else {
                Role::User
            };
            (role, text)
        })
        .collect();
    let (system, messages) = conversation::build(&rendered.system, turns);
    let mut body = MessagesRequest::new(def.max_tokens, messages);
    body.system = system;
    body.temperature = def.temperature;
    body.stop_sequences = def.stop.clone();

    let denied = format!("Unauthorized to access '{prompt_id}'");
    Ok(Plan {
        scopes: def
            .unit_primitives
            .iter()
            .map(|up| ScopeCheck::new(up.clone(), denied.clone()))
            .collect(),
        invoke: InvokeRequest {
            model_id: model_id.clone(),
            stream: req.stream,
            body,
        },
        responder: Box::new(PromptResponder::new(version, model_id)),
        family: Family::Prompts,
        timeout_secs: Some(def.timeout_secs),
        feature: "prompts",
    })
}

/// Answers of `/v1/prompts` (`version` 1) and `/v2/prompts` (`version` 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptResponder {
    version: u8,
    model_id: String,
    usage: Option<Usage>,
    ended: bool,
}

#[derive(Serialize)]
struct TokenUsage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct V2Chunk<'a> {
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<std::collections::BTreeMap<&'a str, TokenUsage>>,
}

impl PromptResponder {
    pub fn new(version: u8, model_id: String) -> Self {
        Self {
            version,
            model_id,
            usage: None,
            ended: false,
        }
    }

    fn v2_json(&self, content: &str, usage: Option<&Usage>) -> Vec<u8> {
        let usage = usage.map(|u| {
            std::iter::once((
                self.model_id.as_str(),
                TokenUsage {
                    input_tokens: u.input_tokens,
                    output_tokens: u.output_tokens,
                },
            ))
            .collect()
        });
        serde_json::to_vec(&V2Chunk { content, usage }).unwrap_or_else(|_| b"{}".to_vec())
    }
}

impl Responder for PromptResponder {
    fn complete(&mut self, resp: &MessagesResponse) -> GitlabResponse {
        let text = resp.text();
        let body = if self.version == 1 {
            serde_json::to_vec(&text).unwrap_or_else(|_| b"\"\"".to_vec())
        } else {
            self.v2_json(&text, Some(&resp.usage))
        };
        GitlabResponse::json(body)
    }

    fn stream_headers(&self) -> Vec<(String, String)> {
        vec![("content-type".to_string(), STREAM_CONTENT_TYPE.to_string())]
    }

    fn stream_text(&mut self, delta: &str) -> Vec<u8> {
        if self.ended || delta.is_empty() {
            return Vec::new();
        }
        if self.version == 1 {
            return delta.as_bytes().to_vec();
        }
        let mut line = self.v2_json(delta, None);
        line.push(b'\n');
        line
    }

    fn stream_end(&mut self) -> Vec<u8> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        match (&self.usage, self.version) {
            (Some(u), 2) => {
                let mut line = self.v2_json("", Some(u));
                line.push(b'\n');
                line
            }
            _ => Vec::new(),
        }
    }

    fn stream_error(&mut self, _message: &str) -> Vec<u8> {
        self.ended = true;
        Vec::new()
    }

    fn record_usage(&mut self, input: Option<u64>, output: Option<u64>) {
        if input.is_none() && output.is_none() {
            return;
        }
        let u = self.usage.get_or_insert_with(Usage::default);
        if let Some(i) = input {
            u.input_tokens = i;
        }
        if let Some(o) = output {
            u.output_tokens = o;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::dispatch::{plan as dispatch_plan, Endpoint};
    use crate::gitlab::errors::testing::{detail, issue_types};
    use serde_json::json;

    const MODEL: &str = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0";
    const NOW: u64 = 1_741_348_800; // 2025-03-07

    fn ctx() -> RequestContext<'static> {
        RequestContext {
            now_secs: NOW,
            enabled_feature_flags: None,
            default_model: None,
            scopes: None,
            gitlab_version: None,
        }
    }

    fn run(version: u8, id: &str, body: Value) -> Result<Plan, GitlabError> {
        dispatch_plan(
            &Endpoint::Prompt {
                version,
                prompt_id: id.into(),
            },
            body.to_string().as_bytes(),
            &ctx(),
        )
    }

    fn answer(text: &str) -> MessagesResponse {
        serde_json::from_value(json!({
            "id": "m", "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 10, "output_tokens": 50}
        }))
        .unwrap()
    }

    #[test]
    fn test_connection_body_works() {
        // exactly what Rails' ModelConfigurationProbe sends
        let body = json!({"inputs": {}, "stream": false, "model_metadata": {"name": "claude_3",
            "endpoint": "https://example.com", "api_key": "k", "provider": "openai", "identifier": MODEL}});
        let mut p = run(1, "model_configuration/check", body).unwrap();
        assert_eq!(
            p.scopes,
            vec![ScopeCheck::new(
                "complete_code",
                "Unauthorized to access 'model_configuration/check'"
            )]
        );
        assert_eq!(p.family, Family::Prompts);
        assert_eq!(
            p.invoke.model_id,
            "anthropic.claude-3-5-sonnet-20240620-v1:0"
        );
        assert!(!p.invoke.stream);
        assert_eq!(p.invoke.body.max_tokens, 12);
        assert_eq!(p.invoke.body.messages.len(), 1);
        assert_eq!(p.invoke.body.messages[0].role, Role::User);
        assert!(p.invoke.body.system.is_some());
        let r = p.responder.complete(&answer("Hello!"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"\"Hello!\""[..]));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    #[test]
    fn v2_answers_carry_usage() {
        let body = json!({"inputs": {"diff": "+x"}, "model_metadata": {"provider": "openai", "name": "claude_3", "identifier": MODEL}});
        let mut p = run(2, "generate_commit_message", body).unwrap();
        assert_eq!(p.invoke.body.temperature, Some(0.1));
        assert!(p.invoke.body.messages[0].content.contains("+x"));
        let r = p.responder.complete(&answer("Add x"));
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"content":"Add x","usage":{"anthropic.claude-3-5-sonnet-20240620-v1:0":{"input_tokens":10,"output_tokens":50}}}"#
        );
    }

    #[test]
    fn streams() {
        let body = json!({"inputs": {"diff": "+x"}, "stream": true, "model_metadata": {"provider": "p", "name": "n", "identifier": MODEL}});
        let mut v1 = run(1, "generate_commit_message", body.clone()).unwrap();
        assert!(v1.invoke.stream);
        let r = &mut v1.responder;
        assert_eq!(
            r.stream_headers(),
            vec![("content-type".to_string(), STREAM_CONTENT_TYPE.to_string())]
        );
        assert!(r.stream_start().is_empty());
        assert_eq!(r.stream_text("He"), b"He");
        assert_eq!(r.stream_text(""), b"");
        r.record_usage(Some(3), None);
        r.record_usage(None, Some(4));
        assert!(r.stream_end().is_empty());
        assert!(r.stream_text("late").is_empty());

        let mut v2 = run(2, "generate_commit_message", body).unwrap();
        let r = &mut v2.responder;
        let mut out = r.stream_start();
        out.extend(r.stream_text("He"));
        out.extend(r.stream_text("y \"q\"\n"));
        r.record_usage(Some(3), None);
        r.record_usage(None, Some(4));
        out.extend(r.stream_end());
        out.extend(r.stream_end());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"content\":\"He\"}\n{\"content\":\"y \\\"q\\\"\\n\"}\n{\"content\":\"\",\"usage\":{\"anthropic.claude-3-5-sonnet-20240620-v1:0\":{\"input_tokens\":3,\"output_tokens\":4}}}\n"
        );
        // without usage no trailing line; errors end silently
        let mut v2 = run(
            2,
            "generate_commit_message",
            json!({"inputs": {"diff": "d"}, "stream": true, "model_metadata": {"identifier": MODEL}}),
        )
        .unwrap();
        let r = &mut v2.responder;
        assert_eq!(r.stream_text("a"), b"{\"content\":\"a\"}\n");
        assert!(r.stream_error("boom").is_empty());
        assert!(r.stream_text("b").is_empty());
        assert!(r.stream_end().is_empty());
    }

    #[test]
    fn lookup_errors() {
        let ok_meta = json!({"identifier": MODEL});
        let e = run(
            1,
            "nope/nope",
            json!({"inputs": {}, "model_metadata": ok_meta}),
        )
        .unwrap_err();
        assert_eq!(
            (e.status, detail(&e)),
            (404, json!("Prompt 'nope/nope' not found"))
        );
        let e = run(
            1,
            "model_configuration/check",
            json!({"inputs": {}, "prompt_version": "^2.0.0"}),
        )
        .unwrap_err();
        assert_eq!(
            (e.status, detail(&e)),
            (
                400,
                json!("No prompt version found matching the query: ^2.0.0")
            )
        );
        let e = run(
            2,
            "model_configuration/check",
            json!({"inputs": {}, "prompt_version": "one"}),
        )
        .unwrap_err();
        assert_eq!(
            (e.status, detail(&e)),
            (422, json!("Invalid version constraint"))
        );
        for id in ["chat/react", "chat/agent"] {
            let e = run(1, id, json!({"inputs": {}})).unwrap_err();
            assert_eq!(
                (e.status, detail(&e)),
                (422, json!(format!("Prompt '{id}' is not supported")))
            );
        }
        // empty prompt_version means the default
        assert!(run(
            1,
            "model_configuration/check",
            json!({"inputs": {}, "prompt_version": "", "model_metadata": {"identifier": MODEL}})
        )
        .is_ok());
    }

    #[test]
    fn inputs_and_validation() {
        let e = run(
            1,
            "generate_commit_message",
            json!({"inputs": {}, "model_metadata": {"identifier": MODEL}}),
        )
        .unwrap_err();
        assert_eq!((e.status, detail(&e)), (422, json!("'diff'")));
        let e = run(1, "generate_commit_message", json!({})).unwrap_err();
        assert_eq!(e.status, 422);
        assert_eq!(detail(&e)[0]["loc"], json!(["body", "inputs"]));
        assert_eq!(detail(&e)[0]["type"], "missing");
        let e = run(
            1,
            "generate_commit_message",
            json!({"inputs": [], "stream": "maybe", "prompt_version": 1}),
        )
        .unwrap_err();
        assert_eq!(
            issue_types(&e),
            ["dict_type", "string_type", "bool_parsing"]
        );
        for bad in [&b"not json"[..], b"", b"[]"] {
            let e = dispatch_plan(
                &Endpoint::Prompt {
                    version: 1,
                    prompt_id: "x".into(),
                },
                bad,
                &ctx(),
            )
            .unwrap_err();
            assert_eq!(e.status, 422);
        }
    }

    #[test]
    fn current_date_is_added_unless_given() {
        let body = json!({"inputs": {"diff_lines": "d", "mr_title": "t"}, "model_metadata": {"identifier": MODEL}});
        let p = run(1, "review_merge_request", body).unwrap();
        assert!(p
            .invoke
            .body
            .system
            .as_deref()
            .unwrap()
            .contains("Today is March 07, 2025."));
        let body = json!({"inputs": {"diff_lines": "d", "mr_title": "t", "current_date": "someday"}, "model_metadata": {"identifier": MODEL}});
        let p = run(1, "review_merge_request", body).unwrap();
        assert!(p
            .invoke
            .body
            .system
            .as_deref()
            .unwrap()
            .contains("Today is someday."));
    }

    #[test]
    fn non_string_inputs_and_prefill() {
        let body = json!({"inputs": {"input": "see #12", "suggestions": null}, "model_metadata": {"identifier": MODEL}});
        let p = run(1, "chat/issue_reader", body).unwrap();
        let last = p.invoke.body.messages.last().unwrap();
        assert_eq!(last.role, Role::Assistant);
        assert!(last.content.ends_with("\"ResourceIdentifierType\": \""));
        assert_eq!(p.scopes[0].unit_primitive, "ask_issue");
        let body = json!({"inputs": {"question": "how?", "content_id": "ATTRS", "documents": [{"id": 1, "content": "c"}]}, "model_metadata": {"identifier": MODEL}});
        let p = run(1, "chat/documentation_search", body).unwrap();
        assert!(p.invoke.body.messages[0]
            .content
            .contains(r#"[{"content":"c","id":1}]"#));
    }

    #[test]
    fn model_selection() {
        let e = run(1, "model_configuration/check", json!({"inputs": {}})).unwrap_err();
        assert_eq!(e.status, 422); // no identifier and no default model
        let p = dispatch_plan(
            &Endpoint::Prompt {
                version: 1,
                prompt_id: "model_configuration/check".into(),
            },
            br#"{"inputs":{}}"#,
            &RequestContext {
                now_secs: NOW,
                enabled_feature_flags: None,
                default_model: Some("bedrock/anthropic.claude-3-haiku-20240307-v1:0"),
                scopes: None,
                gitlab_version: None,
            },
        )
        .unwrap();
        assert_eq!(p.invoke.model_id, "anthropic.claude-3-haiku-20240307-v1:0");
        let e = run(
            1,
            "model_configuration/check",
            json!({"inputs": {}, "model_metadata": {"identifier": "custom_openai/gpt"}}),
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
    }
}
