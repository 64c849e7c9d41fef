//! `POST /v2/chat/agent`: one Duo Chat ReAct step.
//!
//! Contract: `docs/gitlab-contract.md#chat-agent` (request schema), `#streaming` (NDJSON answer),
//! `#scopes`, `#chat-prompts` (ReAct settings).
//!
//! Request (`AgentRequest`): `messages[]` of `{role: user|assistant|system, content?, context?,
//! current_file?{file_path, data, selected_code}, additional_context?[{category, id?, content?,
//! metadata?}], agent_scratchpad?[{action?{type?, thought, tool, tool_input}, observation?}]}`,
//! optional `options.agent_scratchpad{agent_type: "react", steps[{thought, tool, tool_input,
//! observation}]}`, `unavailable_resources` (default `["Merge Requests, Pipelines,
//! Vulnerabilities"]`, `null` = none), `model_metadata` (the model, as for prompts).
//!
//! Checks and answers:
//! * schema problems → 422 (FastAPI list shape); `agent_scratchpad` on a non-assistant message
//!   → 400 `agent_scratchpad can only be present when role is ASSISTANT` (raised by the
//!   gateway's model validator, ahead of the other errors);
//! * **Decision:** a `system` message → 400 `Unsupported message`, and no user message last →
//!   400 `Last message must be a human message` (the gateway fails inside its stream with these
//!   texts, after a 200; GitLab treats both as errors);
//! * scopes: Duo Classic Chat ([`chat_scope`]: `duo_classic_chat`, or `duo_chat`, else 403
//!   `Unauthorized to access duo chat`; Duo Core tokens of GitLab 18.9 and later get 403 `Duo
//!   Core no longer authorized to access Duo Classic Chat` unless the request is an `@GitLabDuo`
//!   mention), then `include_<category>_context` for each distinct `additional_context`
//!   category in order (403 `Unauthorized to access include_<category>_context`);
//! * the Bedrock call always streams; the answer is NDJSON ([`super::react::AgentResponder`]).
//!
//! The scratchpad of the current question comes from `options.agent_scratchpad.steps`, else
//! from the last message when it is an assistant message without `content`; `\_` becomes `_`
//! in its thoughts and tool names (as in the gateway).

use serde_json::{json, Map, Value};

use crate::bedrock::InvokeRequest;
use crate::prompts::date::Date;
use crate::prompts::react::{
    react_request, AdditionalContext, CurrentFile, PageContext, ReactError, ReactInput, Step, Turn,
};

use super::super::dispatch::{Plan, RequestContext, ScopeCheck};
use super::super::errors::{Family, GitlabError, LocPart, ValidationIssue};
use super::super::model::{bedrock_model_id, metadata_identifier};
use super::super::validate::{at, body_loc, enum_error, literal_error, parse_object, Validator};
use super::react::AgentResponder;
use super::MESSAGE_ROLES;

/// `additional_context[].category` values GitLab's gateway accepts.
pub const CATEGORIES: &[&str] = &[
    "file",
    "snippet",
    "merge_request",
    "issue",
    "dependency",
    "local_git",
    "terminal",
    "repository",
    "directory",
    "os_information",
    "agent_user_environment",
];

/// `context.type` values (current page).
pub const PAGE_TYPES: &[&str] = &[
    "issue",
    "epic",
    "merge_request",
    "commit",
    "build",
    "work_item",
];

/// The gateway's default for `unavailable_resources`.
pub const DEFAULT_UNAVAILABLE: &str = "Merge Requests, Pipelines, Vulnerabilities";

/// The 403 detail of the `duo_chat` check.
pub const DUO_CHAT_DENIED: &str = "Unauthorized to access duo chat";

/// The unit primitive of Duo Classic Chat in newer GitLab (ai-gateway `main`: `chat/react`'s
/// `unit_primitive: duo_classic_chat`; Rails `ee/app/services/llm/chat_service.rb`).
pub const DUO_CLASSIC_CHAT: &str = "duo_classic_chat";

/// The 403 detail for a Duo Core token (`duo_chat` without `duo_classic_chat`).
pub const DUO_CORE_DENIED: &str = "Duo Core no longer authorized to access Duo Classic Chat";

/// The first GitLab version whose tokens carry `duo_classic_chat` for the add-ons entitled to
/// classic chat (Rails' `no_duo_classic_for_duo_core_users` work, milestone 18.7) and whose
/// paired gateway authorizes `chat/react` against it (ai-gateway commit 0829cea1f,
/// 2026-01-28, in the 18.9 cycle). Older GitLab never sends `duo_classic_chat`.
pub const CLASSIC_CHAT_SINCE: (u32, u32) = (18, 9);

/// The mention that marks the `@GitLabDuo` merge-request review flow.
const GITLAB_DUO_MENTION: &str = "@GitLabDuo";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MsgRole {
    User,
    Assistant,
    System,
}

/// One validated message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    role: MsgRole,
    content: Option<String>,
    page: Option<PageContext>,
    current_file: Option<CurrentFile>,
    additional_context: Vec<AdditionalContext>,
    /// Steps that have an action.
    steps: Vec<Step>,
}

/// A validated `/v2/chat/agent` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRequest {
    messages: Vec<Message>,
    options_steps: Option<Vec<Step>>,
    unavailable_resources: Vec<String>,
    model_identifier: Option<String>,
}

fn unescape(s: &str) -> String {
    s.replace("\\_", "_")
}

fn page_context(
    v: &mut Validator,
    m: &mut Map<String, Value>,
    loc: &[LocPart],
) -> Option<PageContext> {
    let kind = v.req_str(m, "type", loc, None, false);
    let title = v.opt_str(m, "title", loc, None, false);
    let content = v.opt_str(m, "content", loc, None, false);
    let kind = kind?;
    if !PAGE_TYPES.contains(&kind.as_str()) {
        v.push(literal_error(at(loc, "type"), PAGE_TYPES));
        return None;
    }
    Some(PageContext {
        kind,
        title,
        content,
    })
}

fn current_file(
    v: &mut Validator,
    m: &mut Map<String, Value>,
    loc: &[LocPart],
) -> Option<CurrentFile> {
    let file_path = v.req_str(m, "file_path", loc, None, false);
    let data = v.req_str(m, "data", loc, None, false);
    let selected_code = v.req_bool(m, "selected_code", loc);
    Some(CurrentFile {
        file_path: file_path?,
        data: data?,
        selected_code: selected_code?,
    })
}

fn additional_context(
    v: &mut Validator,
    item: Value,
    loc: &[LocPart],
) -> Option<AdditionalContext> {
    let mut m = v.object(item, loc.to_vec())?;
    let category = v.req_str(&mut m, "category", loc, None, false);
    let id = v.opt_str(&mut m, "id", loc, None, false);
    let content = v.opt_str(&mut m, "content", loc, None, false);
    let _ = v.opt_dict(&mut m, "metadata", loc);
    let category = category?;
    if !CATEGORIES.contains(&category.as_str()) {
        v.push(literal_error(at(loc, "category"), CATEGORIES));
        return None;
    }
    Some(AdditionalContext {
        category,
        id,
        content,
    })
}

/// One `agent_scratchpad[]` item of a message; `Some(None)` when it has no action.
fn message_step(v: &mut Validator, item: Value, loc: &[LocPart]) -> Option<Option<Step>> {
    let mut m = v.object(item, loc.to_vec())?;
    let observation = v
        .opt_str(&mut m, "observation", loc, None, false)
        .unwrap_or_default();
    let Some(mut action) = v.opt_object(&mut m, "action", loc) else {
        return Some(None);
    };
    let aloc = at(loc, "action");
    let _ = v.opt_str(&mut action, "type", &aloc, None, false);
    let tool = v.req_str(&mut action, "tool", &aloc, None, false);
    let tool_input = v.req_str(&mut action, "tool_input", &aloc, None, false);
    let thought = v.req_str(&mut action, "thought", &aloc, None, false);
    Some(Some(Step {
        thought: unescape(&thought?),
        tool: unescape(&tool?),
        tool_input: tool_input?,
        observation,
    }))
}

/// One message; `Err` is the immediate 400 for a misplaced scratchpad.
fn message(
    v: &mut Validator,
    item: Value,
    loc: &[LocPart],
) -> Result<Option<Message>, GitlabError> {
    let Some(mut m) = v.object(item, loc.to_vec()) else {
        return Ok(None);
    };
    let issues_before = v.issue_count();
    let role = v.req_str(&mut m, "role", loc, None, false);
    let role = match role.as_deref() {
        Some("user") => Some(MsgRole::User),
        Some("assistant") => Some(MsgRole::Assistant),
        Some("system") => Some(MsgRole::System),
        Some(_) => {
            v.push(enum_error(at(loc, "role"), MESSAGE_ROLES));
            None
        }
        None => None,
    };
    let content = v.opt_str(&mut m, "content", loc, None, false);
    let page = v
        .opt_object(&mut m, "context", loc)
        .and_then(|mut c| page_context(v, &mut c, &at(loc, "context")));
    let current_file = v
        .opt_object(&mut m, "current_file", loc)
        .and_then(|mut f| current_file(v, &mut f, &at(loc, "current_file")));
    let mut extra = Vec::new();
    if let Some(items) = v.opt_list(&mut m, "additional_context", loc, 0, usize::MAX) {
        let base = at(loc, "additional_context");
        for (i, item) in items.into_iter().enumerate() {
            if let Some(c) = additional_context(v, item, &at(&base, i)) {
                extra.push(c);
            }
        }
    }
    let has_scratchpad = m.get("agent_scratchpad").is_some_and(|s| !s.is_null());
    let mut steps = Vec::new();
    if let Some(items) = v.opt_list(&mut m, "agent_scratchpad", loc, 0, usize::MAX) {
        let base = at(loc, "agent_scratchpad");
        for (i, item) in items.into_iter().enumerate() {
            if let Some(Some(step)) = message_step(v, item, &at(&base, i)) {
                steps.push(step);
            }
        }
    }
    let Some(role) = role else {
        return Ok(None);
    };
    if v.issue_count() != issues_before {
        return Ok(None);
    }
    if has_scratchpad && role != MsgRole::Assistant {
        return Err(GitlabError::detail(
            400,
            "agent_scratchpad can only be present when role is ASSISTANT",
        ));
    }
    Ok(Some(Message {
        role,
        content,
        page,
        current_file,
        additional_context: extra,
        steps,
    }))
}

fn options_steps(
    v: &mut Validator,
    mut options: Map<String, Value>,
    loc: &[LocPart],
) -> Option<Vec<Step>> {
    let mut pad = v.req_object(&mut options, "agent_scratchpad", loc)?;
    let ploc = at(loc, "agent_scratchpad");
    match v
        .req_str(&mut pad, "agent_type", &ploc, None, false)
        .as_deref()
    {
        Some("react") => {}
        Some(_) => {
            v.push(
                ValidationIssue::new(
                    "union_tag_invalid",
                    ploc.clone(),
                    "Input tag does not match any of the expected tags: 'react'",
                )
                .with_ctx(json!({"discriminator": "'agent_type'", "expected_tags": "'react'"})),
            );
            return None;
        }
        None => return None,
    }
    let items = v.req_list(&mut pad, "steps", &ploc, 0, usize::MAX)?;
    let sloc = at(&ploc, "steps");
    let mut steps = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let iloc = at(&sloc, i);
        let Some(mut s) = v.object(item, iloc.clone()) else {
            continue;
        };
        let thought = v.req_str(&mut s, "thought", &iloc, None, false);
        let tool = v.req_str(&mut s, "tool", &iloc, None, false);
        let tool_input = v.req_str(&mut s, "tool_input", &iloc, None, false);
        let observation = v.req_str(&mut s, "observation", &iloc, None, false);
        if let (Some(thought), Some(tool), Some(tool_input), Some(observation)) =
            (thought, tool, tool_input, observation)
        {
            steps.push(Step {
                thought: unescape(&thought),
                tool: unescape(&tool),
                tool_input,
                observation,
            });
        }
    }
    Some(steps)
}

/// Parses and validates the body.
pub fn parse(body: &[u8]) -> Result<AgentRequest, GitlabError> {
    let mut map = parse_object(body)?;
    let b = body_loc();
    let mut v = Validator::new();
    let mut messages = Vec::new();
    if let Some(items) = v.req_list(&mut map, "messages", &b, 1, usize::MAX) {
        let base = at(&b, "messages");
        for (i, item) in items.into_iter().enumerate() {
            if let Some(m) = message(&mut v, item, &at(&base, i))? {
                messages.push(m);
            }
        }
    }
    let options_steps = v
        .opt_object(&mut map, "options", &b)
        .and_then(|o| options_steps(&mut v, o, &at(&b, "options")));
    let unavailable_resources = match map.get("unavailable_resources") {
        None => vec![DEFAULT_UNAVAILABLE.to_string()],
        Some(Value::Null) => Vec::new(),
        Some(_) => {
            let loc = at(&b, "unavailable_resources");
            let items = v
                .opt_list(&mut map, "unavailable_resources", &b, 0, usize::MAX)
                .unwrap_or_default();
            items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| v.string(item, at(&loc, i), None, false))
                .collect()
        }
    };
    let model_identifier = metadata_identifier(&mut v, &mut map, &b);
    v.finish()?;
    Ok(AgentRequest {
        messages,
        options_steps,
        unavailable_resources,
        model_identifier,
    })
}

/// The Duo Classic Chat check, ai-gateway `main` `ai_gateway/api/v2/chat/agent.py`
/// `get_agent`, kept compatible with the GitLab versions before [`CLASSIC_CHAT_SINCE`]:
/// * a token with `duo_classic_chat` is authorized against it;
/// * a token with neither `duo_classic_chat` nor `duo_chat`: 403 [`DUO_CHAT_DENIED`];
/// * a token with `duo_chat` only (Duo Core): from GitLab [`CLASSIC_CHAT_SINCE`] on
///   (`x-gitlab-version`), 403 [`DUO_CORE_DENIED`] unless the latest user message with content
///   mentions `@GitLabDuo` (the merge-request review flow, still allowed on `duo_chat`:
///   `_has_gitlabduo_mention`); for older GitLab, or without the header, authorized against
///   `duo_chat` as the 18.x self-hosted gateways do (`chat/react` declared `duo_chat` there).
///
/// Authentication bypassed (`ctx.scopes` `None`): everything is allowed.
fn chat_scope(req: &AgentRequest, ctx: &RequestContext<'_>) -> Result<ScopeCheck, GitlabError> {
    let duo_chat = ScopeCheck::new("duo_chat", DUO_CHAT_DENIED);
    let Some(scopes) = ctx.scopes else {
        return Ok(duo_chat);
    };
    let has = |up: &str| scopes.iter().any(|s| s == up);
    if has(DUO_CLASSIC_CHAT) {
        return Ok(ScopeCheck::new(DUO_CLASSIC_CHAT, DUO_CHAT_DENIED));
    }
    if !has("duo_chat") || !knows_classic_chat(ctx.gitlab_version) {
        return Ok(duo_chat);
    }
    if has_gitlab_duo_mention(req) {
        Ok(duo_chat)
    } else {
        Err(GitlabError::detail(403, DUO_CORE_DENIED))
    }
}

/// True when `x-gitlab-version` (`18.9.0`, `18.10.1-ee`, `19.0.0-pre`...) is at least
/// [`CLASSIC_CHAT_SINCE`]; false when absent or unreadable.
fn knows_classic_chat(version: Option<&str>) -> bool {
    let Some(v) = version else {
        return false;
    };
    let mut parts = v.trim().split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= CLASSIC_CHAT_SINCE,
        _ => false,
    }
}

/// ai-gateway `main` `_has_gitlabduo_mention`: the latest user message with content contains
/// `@GitLabDuo`.
fn has_gitlab_duo_mention(req: &AgentRequest) -> bool {
    req.messages
        .iter()
        .rev()
        .filter(|m| m.role == MsgRole::User)
        .find_map(|m| m.content.as_deref().filter(|c| !c.is_empty()))
        .is_some_and(|c| c.contains(GITLAB_DUO_MENTION))
}

/// Builds the plan of a `/v2/chat/agent` request.
pub fn plan(body: &[u8], ctx: &RequestContext<'_>) -> Result<Plan, GitlabError> {
    let req = parse(body)?;
    if req.messages.iter().any(|m| m.role == MsgRole::System) {
        return Err(GitlabError::detail(400, "Unsupported message"));
    }

    let mut scopes = vec![chat_scope(&req, ctx)?];
    for m in &req.messages {
        for c in &m.additional_context {
            let up = format!("include_{}_context", c.category);
            if !scopes.iter().any(|s| s.unit_primitive == up) {
                let detail = format!("Unauthorized to access {up}");
                scopes.push(ScopeCheck::new(up, detail));
            }
        }
    }

    let model_id = bedrock_model_id(req.model_identifier.as_deref(), ctx.default_model)?;

    let scratchpad = match (&req.options_steps, req.messages.last()) {
        (Some(steps), _) => steps.clone(),
        (None, Some(last)) if last.role == MsgRole::Assistant && last.content.is_none() => {
            last.steps.clone()
        }
        _ => Vec::new(),
    };
    let turns = req
        .messages
        .into_iter()
        .filter_map(|m| match m.role {
            MsgRole::User => Some(Turn::User {
                content: m.content.unwrap_or_default(),
                page: m.page,
                current_file: m.current_file,
                additional_context: m.additional_context,
            }),
            MsgRole::Assistant => m.content.map(|content| Turn::Assistant {
                content,
                steps: m.steps,
            }),
            MsgRole::System => None,
        })
        .collect();
    let input = ReactInput {
        turns,
        scratchpad,
        unavailable_resources: req.unavailable_resources,
        current_date: Date::from_unix(ctx.now_secs).chat_format(),
        scopes: ctx.scopes.map(<[String]>::to_vec),
    };
    let body = react_request(&input).map_err(|e| match e {
        ReactError::LastMessageNotHuman => {
            GitlabError::detail(400, "Last message must be a human message")
        }
        ReactError::Definition(why) => {
            log::error!("chat prompt definition: {why}");
            GitlabError::detail(500, "The chat prompt definition of this gateway is invalid")
        }
    })?;

    Ok(Plan {
        scopes,
        invoke: InvokeRequest {
            model_id,
            stream: true,
            body,
        },
        responder: Box::new(AgentResponder::new()),
        family: Family::Chat,
        feature: "duo_chat",
        timeout_secs: crate::prompts::registry::lookup(crate::prompts::react::PROMPT_ID, None)
            .ok()
            .map(|d| d.timeout_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::messages::Role;
    use crate::gitlab::dispatch::{plan as dispatch_plan, Endpoint};
    use crate::gitlab::errors::testing::detail;

    const MODEL: &str = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0";

    fn run(body: Value) -> Result<Plan, GitlabError> {
        dispatch_plan(
            &Endpoint::ChatAgent,
            body.to_string().as_bytes(),
            &RequestContext {
                now_secs: 1_741_348_800,
                enabled_feature_flags: None,
                default_model: Some(MODEL),
                scopes: None,
                gitlab_version: None,
            },
        )
    }

    fn run_as(body: &Value, scopes: &[&str], version: Option<&str>) -> Result<Plan, GitlabError> {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        dispatch_plan(
            &Endpoint::ChatAgent,
            body.to_string().as_bytes(),
            &RequestContext {
                now_secs: 1_741_348_800,
                enabled_feature_flags: None,
                default_model: Some(MODEL),
                scopes: Some(&scopes),
                gitlab_version: version,
            },
        )
    }

    fn chat_with(messages: Value) -> Value {
        json!({"messages": messages, "model_metadata": {"identifier": MODEL}})
    }

    /// ai-gateway `main` `tests/api/v2/test_v2_chat_agent.py` `test_authorization` cases, with
    /// the GitLab version deciding whether the Duo Core cutoff applies.
    #[test]
    fn duo_classic_chat_rules() {
        let plain = chat_with(json!([{"role": "user", "content": "How do I revert?"}]));
        let mention =
            chat_with(json!([{"role": "user", "content": "@GitLabDuo explain this diff"}]));
        // second ReAct step: the mention is not the last message; the assistant scratchpad
        // message (no content) is skipped
        let mention_then_step = chat_with(json!([
            {"role": "user", "content": "the diff"},
            {"role": "user", "content": "@GitLabDuo explain this diff"},
            {"role": "assistant", "agent_scratchpad": []}
        ]));
        let mention_earlier = chat_with(json!([
            {"role": "user", "content": "@GitLabDuo explain this diff"},
            {"role": "assistant", "content": "It adds x."},
            {"role": "user", "content": "and then?"}
        ]));
        let classic = |p: Plan| p.scopes[0].unit_primitive.clone();
        for version in [
            Some("18.9.0"),
            Some("18.10.2-ee"),
            Some("19.0.0-pre"),
            None,
            Some("18.8.4"),
        ] {
            // entitled to classic chat: always, against duo_classic_chat
            for body in [&plain, &mention] {
                let p = run_as(body, &["duo_classic_chat", "duo_chat"], version).unwrap();
                assert_eq!(classic(p), "duo_classic_chat");
            }
            // neither primitive: the duo_chat check refuses (403 Unauthorized to access duo chat)
            let p = run_as(&mention, &["amazon_q_integration"], version).unwrap();
            assert_eq!(p.scopes[0], ScopeCheck::new("duo_chat", DUO_CHAT_DENIED));
            // the @GitLabDuo review flow stays allowed on duo_chat
            for body in [&mention, &mention_then_step] {
                let p = run_as(body, &["duo_chat"], version).unwrap();
                assert_eq!(p.scopes[0], ScopeCheck::new("duo_chat", DUO_CHAT_DENIED));
            }
        }
        // Duo Core (duo_chat only), standalone chat: refused by GitLab versions that know
        // duo_classic_chat, allowed for older ones and without the version header
        for version in ["18.9.0", "18.10.2-ee", "19.0.0-pre", " 20.1"] {
            for body in [&plain, &mention_earlier] {
                let e =
                    run_as(body, &["duo_chat", "include_file_context"], Some(version)).unwrap_err();
                assert_eq!(
                    (e.status, detail(&e)),
                    (403, json!(DUO_CORE_DENIED)),
                    "{version}"
                );
            }
        }
        for version in [
            None,
            Some("18.8.4"),
            Some("17.11.0"),
            Some("garbage"),
            Some("18"),
        ] {
            let p = run_as(&plain, &["duo_chat"], version).unwrap();
            assert_eq!(
                p.scopes[0],
                ScopeCheck::new("duo_chat", DUO_CHAT_DENIED),
                "{version:?}"
            );
        }
        // authentication bypassed: no cutoff
        assert!(run(plain).is_ok());
    }

    #[test]
    fn reference_request() {
        // a Rails-shaped body (docs/gitlab-contract.md#chat-agent)
        let body = json!({
            "messages": [
                { "role": "user", "content": "How do I revert a commit?",
                  "context": null, "current_file": null, "additional_context": [] },
                { "role": "assistant",
                  "agent_scratchpad": [ { "action": { "thought": "I should\\_search", "tool": "gitlab\\_documentation", "tool_input": "revert commit" },
                                          "observation": "Use git revert." } ] }
            ],
            "model_metadata": { "provider": "openai", "name": "claude_3", "endpoint": "https://x", "api_key": null, "identifier": MODEL },
            "unavailable_resources": ["Pipelines", "Vulnerabilities"]
        });
        let p = run(body).unwrap();
        assert_eq!(p.scopes, vec![ScopeCheck::new("duo_chat", DUO_CHAT_DENIED)]);
        assert_eq!(p.family, Family::Chat);
        assert_eq!(p.feature, "duo_chat");
        assert!(p.invoke.stream);
        assert_eq!(
            p.invoke.model_id,
            "anthropic.claude-3-5-sonnet-20240620-v1:0"
        );
        let b = &p.invoke.body;
        assert_eq!(b.stop_sequences, ["Observation:"]);
        assert!(b
            .system
            .as_deref()
            .unwrap()
            .contains("Friday, March, 07, 2025"));
        assert!(b.system.as_deref().unwrap().contains(
            "You cannot reach these GitLab resources at the moment: Pipelines, Vulnerabilities."
        ));
        assert_eq!(b.messages.len(), 2);
        assert_eq!(b.messages[0].content, "How do I revert a commit?");
        assert_eq!(b.messages[1].role, Role::Assistant);
        assert_eq!(
            b.messages[1].content,
            "Thought: I should_search\nAction: gitlab_documentation\nAction Input: revert commit\nObservation: Use git revert.\nThought:"
        );
        assert_eq!(
            p.responder.stream_headers()[0].1,
            "application/x-ndjson; charset=utf-8"
        );
    }

    #[test]
    fn additional_context_scopes_in_order() {
        let ac = |c: &str| json!({"category": c, "id": "x", "content": "y", "metadata": {"a": 1}});
        let body = json!({"messages": [
            {"role": "user", "content": "a", "additional_context": [ac("file"), ac("snippet")]},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c", "additional_context": [ac("file"), ac("local_git")]}
        ]});
        let p = run(body).unwrap();
        let ups: Vec<&str> = p.scopes.iter().map(|s| s.unit_primitive.as_str()).collect();
        assert_eq!(
            ups,
            [
                "duo_chat",
                "include_file_context",
                "include_snippet_context",
                "include_local_git_context"
            ]
        );
        assert_eq!(
            p.scopes[1].denied_detail,
            "Unauthorized to access include_file_context"
        );
        assert!(p.scopes.iter().all(|s| !s.reject_gateway_issuer));
        let m = &p.invoke.body.messages;
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].content, "b");
        // default unavailable resources
        assert!(p
            .invoke
            .body
            .system
            .as_deref()
            .unwrap()
            .contains("Merge Requests, Pipelines, Vulnerabilities"));
    }

    #[test]
    fn options_scratchpad_wins() {
        let body = json!({
            "messages": [{"role": "user", "content": "q"}],
            "options": {"agent_scratchpad": {"agent_type": "react", "steps": [
                {"thought": "t", "tool": "issue\\_reader", "tool_input": "#1", "observation": "o"}]}},
            "unavailable_resources": null
        });
        let p = run(body).unwrap();
        let last = p.invoke.body.messages.last().unwrap();
        assert_eq!(
            last.content,
            "Thought: t\nAction: issue_reader\nAction Input: #1\nObservation: o\nThought:"
        );
        assert!(!p
            .invoke
            .body
            .system
            .as_deref()
            .unwrap()
            .contains("cannot reach these"));
    }

    #[test]
    fn scratchpad_on_user_message_is_400() {
        let body = json!({"messages": [{"role": "user", "content": "q", "agent_scratchpad": []}]});
        let e = run(body).unwrap_err();
        assert_eq!(
            (e.status, detail(&e)),
            (
                400,
                json!("agent_scratchpad can only be present when role is ASSISTANT")
            )
        );
        // null scratchpad is fine
        assert!(run(
            json!({"messages": [{"role": "user", "content": "q", "agent_scratchpad": null}]})
        )
        .is_ok());
    }

    #[test]
    fn structural_400s() {
        let e = run(json!({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]})).unwrap_err();
        assert_eq!((e.status, detail(&e)), (400, json!("Unsupported message")));
        let e = run(json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})).unwrap_err();
        assert_eq!(
            (e.status, detail(&e)),
            (400, json!("Last message must be a human message"))
        );
    }

    #[test]
    fn validation_errors() {
        let e = run(json!({})).unwrap_err();
        assert_eq!(e.status, 422);
        assert_eq!(detail(&e)[0]["loc"], json!(["body", "messages"]));
        let e = run(json!({"messages": []})).unwrap_err();
        assert_eq!(detail(&e)[0]["type"], "too_short");
        let e = run(json!({"messages": [
            {"role": "bot", "content": 1},
            {"role": "user", "current_file": {"file_path": "a", "data": "b"},
             "additional_context": [{"category": "secrets"}], "context": {"type": "page"}},
            "x"
        ], "options": {"agent_scratchpad": {"agent_type": "other", "steps": []}},
           "unavailable_resources": [1]}))
        .unwrap_err();
        assert_eq!(e.status, 422);
        let d = detail(&e);
        let got: Vec<(String, Value)> = d
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["type"].as_str().unwrap().to_string(), i["loc"].clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("enum".into(), json!(["body", "messages", 0, "role"])),
                (
                    "string_type".into(),
                    json!(["body", "messages", 0, "content"])
                ),
                (
                    "literal_error".into(),
                    json!(["body", "messages", 1, "context", "type"])
                ),
                (
                    "missing".into(),
                    json!(["body", "messages", 1, "current_file", "selected_code"])
                ),
                (
                    "literal_error".into(),
                    json!(["body", "messages", 1, "additional_context", 0, "category"])
                ),
                (
                    "model_attributes_type".into(),
                    json!(["body", "messages", 2])
                ),
                (
                    "union_tag_invalid".into(),
                    json!(["body", "options", "agent_scratchpad"])
                ),
                (
                    "string_type".into(),
                    json!(["body", "unavailable_resources", 0])
                ),
            ]
        );
        assert!(d[2]["msg"].as_str().unwrap().starts_with(
            "Input should be 'issue', 'epic', 'merge_request', 'commit', 'build' or 'work_item'"
        ));
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        for body in [
            json!({"messages": [{"role": "user", "content": "{{tools}}\u{0}é"}]}),
            json!({"messages": [{"role": "assistant"}]}),
            json!({"messages": [{"role": "assistant", "content": null, "agent_scratchpad": [{"observation": "o"}]}]}),
            json!({"messages": [{"role": "user"}], "options": {"agent_scratchpad": {"agent_type": "react", "steps": [{}]}}}),
            json!({"messages": [{"role": "user", "context": {"type": "build"}}]}),
            json!({"messages": [{"role": "user", "content": "q"}], "model_metadata": {"identifier": "x"}}),
            json!({"messages": [null, 5, [], {}]}),
        ] {
            let _ = run(body);
        }
    }
}
