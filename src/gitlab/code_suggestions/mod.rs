//! Code Suggestions: from a GitLab request body to a Bedrock call, and back.
//!
//! Contract: `docs/gitlab-contract.md#code-completions` to `#code-generations-v3-v4` (endpoints,
//! bodies, responses), `#scopes` (scope per endpoint), `#completion-prompt`, `#generation-prompt`,
//! `#post-processing`, `#gateway-behaviour` (limits, feature flags).
//!
//! Host-independent: no proxy-wasm calls, time is passed in. The host goes through
//! [`super::dispatch::plan`] with `Endpoint::Code(..)`, which calls [`plan`] here and turns the
//! typed [`Plan`] into the common [`super::Plan`]: one scope check ([`Plan::unit_primitive`],
//! [`Plan::reject_gateway_issuer`], [`Plan::denied_detail`]) and the [`Responder`], which
//! implements the common [`super::Responder`] trait (same methods as its inherent ones).
//!
//! Note: validation (422) and model selection (400/422) happen in `plan`, before the scope
//! check. GitLab's gateway also validates bodies before its handler checks scopes; for model
//! errors the order differs (both are answers GitLab handles as failures).
//!
//! Modules: [`v2`] and [`v3`] typed requests, [`responses`] answer shapes and the
//! [`Responder`], [`postprocess`] generation clean-up.

pub mod postprocess;
pub mod responses;
pub mod v2;
pub mod v2_typed;
pub mod v3;

use crate::bedrock::InvokeRequest;
use crate::prompts::{
    self, budget::estimate_tokens, completion::COMPLETION_MAX_TOKENS,
    generation::GENERATION_MAX_TOKENS, CompletionInput, GenerationExample, GenerationInput,
};

use super::errors::GitlabError;
use super::model::bedrock_model_id;

pub use responses::{parse_feature_flags, Responder, SuggestionKind};

use responses::ResponderParts;
use v2::ContextItem;

/// Scope needed for completions.
pub const COMPLETE_CODE: &str = "complete_code";
/// Scope needed for generations.
pub const GENERATE_CODE: &str = "generate_code";

/// The four Code Suggestions routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeEndpoint {
    /// `POST /v2/code/completions` (alias `/v2/completions`).
    V2Completions,
    /// `POST /v2/code/generations`.
    V2Generations,
    /// `POST /v3/code/completions`.
    V3Completions,
    /// `POST /v4/code/suggestions`.
    V4Suggestions,
}

/// Per-request facts from the host (defined in [`super::dispatch`], re-exported for old paths).
pub use super::dispatch::RequestContext;

/// What to do for one Code Suggestions request (typed; [`super::Plan`] is the host's view,
/// built with `From`).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The scope (unit primitive) the JWT must carry.
    pub unit_primitive: &'static str,
    /// Reject tokens whose issuer is `gitlab-ai-gateway`.
    pub reject_gateway_issuer: bool,
    /// The 403 `detail` when the scope check fails.
    pub denied_detail: String,
    pub invoke: InvokeRequest,
    pub responder: Responder,
    /// `code_completions` or `code_generations`, for logs and metrics.
    pub feature: &'static str,
}

/// Validates the body, picks the model, builds the prompt and the responder.
pub fn plan(
    endpoint: CodeEndpoint,
    body: &[u8],
    ctx: &RequestContext<'_>,
) -> Result<Plan, GitlabError> {
    match endpoint {
        CodeEndpoint::V2Completions | CodeEndpoint::V2Generations => plan_v2(endpoint, body, ctx),
        CodeEndpoint::V3Completions | CodeEndpoint::V4Suggestions => plan_v3(endpoint, body, ctx),
    }
}

fn plan_v2(
    endpoint: CodeEndpoint,
    body: &[u8],
    ctx: &RequestContext<'_>,
) -> Result<Plan, GitlabError> {
    // The typed fast path when it recognises the body, else the `Value` path, which it mirrors
    // and which alone answers invalid bodies (`gitlab::typed_body`, docs/performance.md).
    match v2_typed::parse(body) {
        Some(req) => plan_v2_request(endpoint, &req, ctx),
        None => plan_v2_request(endpoint, &v2::parse(body)?, ctx),
    }
}

/// The plan of a validated v2 request.
fn plan_v2_request(
    endpoint: CodeEndpoint,
    req: &v2::V2Request<'_>,
    ctx: &RequestContext<'_>,
) -> Result<Plan, GitlabError> {
    let model_id = bedrock_model_id(req.model_identifier.as_deref(), ctx.default_model)?;
    let cf = &req.current_file;
    let lang = prompts::language_name(cf.language_identifier.as_deref(), &cf.file_name);

    if endpoint == CodeEndpoint::V2Completions {
        let (invoke_body, sent, used) = completion_body(
            &lang,
            &cf.file_name,
            &cf.content_above_cursor,
            &cf.content_below_cursor,
            &req.context,
        );
        let invoke = InvokeRequest {
            model_id,
            stream: req.stream,
            body: invoke_body,
        };
        return Ok(suggestion_plan(
            endpoint,
            SuggestionKind::Completion,
            ctx,
            invoke,
            lang,
            String::new(),
            (sent, used),
        ));
    }

    let (files, snippets) = related_from_context(&req.context);
    let input = GenerationInput {
        language: &lang,
        file_name: &cf.file_name,
        code_above: &cf.content_above_cursor,
        code_below: &cf.content_below_cursor,
        instruction: req.prompt.as_deref(),
        related_files: files.iter().map(String::as_str).collect(),
        related_snippets: snippets.iter().map(String::as_str).collect(),
        libraries: Vec::new(),
        examples: Vec::new(),
    };
    let invoke = InvokeRequest {
        model_id,
        stream: req.stream,
        body: prompts::generation_request(&input),
    };
    Ok(suggestion_plan(
        endpoint,
        SuggestionKind::Generation,
        ctx,
        invoke,
        lang,
        cf.content_above_cursor.to_string(),
        (0, 0),
    ))
}

/// Stream flag of v3/v4: the component payload's `stream`, else the top-level `stream`
/// (Rails sends both, equal), else `false` for v3 and `true` for v4 (GitLab only calls v4
/// for streaming clients).
fn v3_stream(endpoint: CodeEndpoint, req: &v3::V3Request) -> bool {
    req.payload
        .stream
        .or(req.stream)
        .unwrap_or(endpoint == CodeEndpoint::V4Suggestions)
}

fn plan_v3(
    endpoint: CodeEndpoint,
    body: &[u8],
    ctx: &RequestContext<'_>,
) -> Result<Plan, GitlabError> {
    let req = v3::parse(body)?;
    let model_id = bedrock_model_id(req.model_identifier.as_deref(), ctx.default_model)?;
    let stream = v3_stream(endpoint, &req);
    let p = &req.payload;
    let lang = prompts::language_name(p.language_identifier.as_deref(), &p.file_name);

    if req.kind == v3::EditorKind::Completion {
        let (invoke_body, sent, used) = completion_body(
            &lang,
            &p.file_name,
            &p.content_above_cursor,
            &p.content_below_cursor,
            &req.code_context,
        );
        let invoke = InvokeRequest {
            model_id,
            stream,
            body: invoke_body,
        };
        return Ok(suggestion_plan(
            endpoint,
            SuggestionKind::Completion,
            ctx,
            invoke,
            lang,
            String::new(),
            (sent, used),
        ));
    }

    let no_enhancer = v3::PromptEnhancer::default();
    let pe = p.prompt_enhancer.as_ref().unwrap_or(&no_enhancer);
    // Without a prompt_enhancer, code_context components stand in for related files.
    let (ctx_files, ctx_snippets) = if p.prompt_enhancer.is_none() {
        related_from_context(&req.code_context)
    } else {
        (Vec::new(), Vec::new())
    };
    let instruction = pe
        .user_instruction
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or(p.prompt.as_deref());
    let input = GenerationInput {
        language: &lang,
        file_name: &p.file_name,
        code_above: pe
            .trimmed_content_above_cursor
            .as_deref()
            .unwrap_or(&p.content_above_cursor),
        code_below: pe
            .trimmed_content_below_cursor
            .as_deref()
            .unwrap_or(&p.content_below_cursor),
        instruction,
        related_files: pe
            .related_files
            .iter()
            .chain(ctx_files.iter())
            .map(String::as_str)
            .collect(),
        related_snippets: pe
            .related_snippets
            .iter()
            .chain(ctx_snippets.iter())
            .map(String::as_str)
            .collect(),
        libraries: pe.libraries.iter().map(String::as_str).collect(),
        examples: pe
            .examples
            .iter()
            .map(|(example, response)| GenerationExample { example, response })
            .collect(),
    };
    let invoke = InvokeRequest {
        model_id,
        stream,
        body: prompts::generation_request(&input),
    };
    Ok(suggestion_plan(
        endpoint,
        SuggestionKind::Generation,
        ctx,
        invoke,
        lang,
        p.content_above_cursor.clone(),
        (0, 0),
    ))
}

/// The plan of one Code Suggestions request. The scope check (docs/gitlab-contract.md#scopes),
/// `max_tokens` and the feature name follow from the endpoint and the kind of suggestion; `prefix`
/// is the code the responder strips from generations, `context_tokens` the estimated (sent, used)
/// context.
fn suggestion_plan(
    endpoint: CodeEndpoint,
    kind: SuggestionKind,
    ctx: &RequestContext<'_>,
    invoke: InvokeRequest,
    lang: String,
    prefix: String,
    (context_tokens_sent, context_tokens_used): (u64, u64),
) -> Plan {
    let (unit_primitive, max_tokens, feature) = match kind {
        SuggestionKind::Completion => (COMPLETE_CODE, COMPLETION_MAX_TOKENS, "code_completions"),
        SuggestionKind::Generation => (GENERATE_CODE, GENERATION_MAX_TOKENS, "code_generations"),
    };
    // docs/gitlab-contract.md#scopes: v2 generations and v3/v4 completions refuse tokens the
    // gateway issued.
    let (reject_gateway_issuer, denied_detail) = match (endpoint, kind) {
        (CodeEndpoint::V2Completions, _) => (false, "Unauthorized to access code completions"),
        (CodeEndpoint::V2Generations, _) => (true, "Unauthorized to access code generations"),
        (_, SuggestionKind::Completion) => (true, "Unauthorized to access code suggestions"),
        (_, SuggestionKind::Generation) => (false, "Unauthorized to access code suggestions"),
    };
    Plan {
        unit_primitive,
        reject_gateway_issuer,
        denied_detail: denied_detail.to_string(),
        invoke,
        responder: Responder::new(ResponderParts {
            endpoint,
            kind,
            lang,
            prefix,
            feature_flags: parse_feature_flags(ctx.enabled_feature_flags),
            created: ctx.now_secs,
            max_tokens,
            context_tokens_sent,
            context_tokens_used,
        }),
        feature,
    }
}

/// Completion body plus estimated context tokens (sent, used).
fn completion_body(
    lang: &str,
    file_name: &str,
    above: &str,
    below: &str,
    context: &[ContextItem],
) -> (crate::bedrock::messages::MessagesRequest, u64, u64) {
    let prompt = prompts::completion_request(&CompletionInput {
        language: lang,
        file_name,
        prefix: above,
        suffix: below,
        context: context.iter().map(|c| c.content.as_ref()).collect(),
    });
    (
        prompt.request,
        estimate_tokens(prompt.report.context_bytes_sent),
        estimate_tokens(prompt.report.context_bytes_used),
    )
}

/// IDE context items as related files (`type == "file"`) and snippets (everything else),
/// wrapped the way GitLab Rails wraps them for the generation prompt.
fn related_from_context(items: &[ContextItem]) -> (Vec<String>, Vec<String>) {
    let mut files = Vec::new();
    let mut snippets = Vec::new();
    for item in items.iter().filter(|i| !i.content.trim().is_empty()) {
        let name = item.name.replace('"', "&quot;");
        if item.kind == "file" {
            files.push(format!(
                "<file_content file_name=\"{name}\">\n{}\n</file_content>\n",
                item.content
            ));
        } else {
            snippets.push(format!(
                "<snippet_content name=\"{name}\">\n{}\n</snippet_content>\n",
                item.content
            ));
        }
    }
    (files, snippets)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod typed_tests;
