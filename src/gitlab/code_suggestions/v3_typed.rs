//! The typed, borrowed fast path of `/v3/code/completions` and `/v4/code/suggestions`.
//!
//! Contract: the one of every fast path (`gitlab::typed_body`): `None` unless [`super::v3::parse`]
//! accepts the body, and then the same [`V3Request`], its strings borrowed from the body where
//! they hold no escape. The rules are [`super::v3`]'s (docs/gitlab-contract.md#code-generations-v3-v4).
//!
//! A component payload is read into one struct holding the fields of every component type
//! (`code_editor_*` and `code_context`); which of them count is decided by the component's
//! `type` afterwards, and fields the `Value` path does not read for that type are dropped
//! (they still had to parse, else the body is declined). Declined, for the `Value` path to
//! answer: a value of a wrong or coercible JSON type, a missing required field, a limit exceeded,
//! an unknown component type, a first component that is not an editor, a duplicate key, any
//! field not named below, and `prompt_enhancer` entries the `Value` path would skip over
//! (non-string items, examples without both strings).

use std::borrow::Cow;

use serde::Deserialize;

use super::super::typed_body::{fits, from_body, text, trimmed, Object, Skip, Text};
use super::v2::{ContextItem, MAX_CONTENT, MAX_FILE_NAME, MAX_LANGUAGE_IDENTIFIER};
use super::v2::{MAX_CONTEXT_NAME, MAX_CONTEXT_TYPE};
use super::v3::{
    EditorKind, EditorPayload, PromptEnhancer, V3Request, COMPLETION_TYPE, CONTEXT_TYPE,
    GENERATION_TYPE, MAX_CODE_CONTEXT_CONTENT, MAX_COMPONENTS, MAX_GENERATION_PROMPT,
    MAX_METADATA_FIELD, MIN_COMPONENTS,
};

/// The body as Rails sends it: the IDE's fields passed through, plus `prompt_components` and
/// `model_metadata` (docs/gitlab-contract.md#code-generations-v3-v4).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body<'a> {
    #[serde(borrow)]
    prompt_components: Vec<Object<Component<'a>>>,
    stream: Option<bool>,
    #[serde(borrow)]
    model_metadata: Option<Object<ModelMetadata<'a>>>,
    #[serde(borrow, rename = "role_arn")]
    _role_arn: Option<Text<'a>>,
    // The IDE's request, passed through by Rails; not part of the v3 schema.
    #[serde(default, rename = "current_file")]
    _current_file: Skip,
    #[serde(default, rename = "intent")]
    _intent: Skip,
    #[serde(default, rename = "generation_type")]
    _generation_type: Skip,
    #[serde(default, rename = "user_instruction")]
    _user_instruction: Skip,
    #[serde(default, rename = "project_path")]
    _project_path: Skip,
    #[serde(default, rename = "project_id")]
    _project_id: Skip,
    #[serde(default, rename = "context")]
    _context: Skip,
    #[serde(default, rename = "telemetry")]
    _telemetry: Skip,
    #[serde(default, rename = "choices_count")]
    _choices_count: Skip,
}

/// Read by a middleware in GitLab's gateway; here only `identifier` and `name`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelMetadata<'a> {
    #[serde(borrow)]
    identifier: Option<Text<'a>>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(default, rename = "provider")]
    _provider: Skip,
    #[serde(default, rename = "endpoint")]
    _endpoint: Skip,
    // A secret: never read.
    #[serde(default, rename = "api_key")]
    _api_key: Skip,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Component<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    payload: Object<Payload<'a>>,
    #[serde(borrow)]
    metadata: Option<Object<Metadata<'a>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata<'a> {
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    version: Cow<'a, str>,
}

/// The fields of every component type's payload.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload<'a> {
    // code_editor_completion and code_editor_generation
    #[serde(borrow)]
    file_name: Option<Text<'a>>,
    #[serde(borrow)]
    content_above_cursor: Option<Text<'a>>,
    #[serde(borrow)]
    content_below_cursor: Option<Text<'a>>,
    #[serde(borrow)]
    language_identifier: Option<Text<'a>>,
    #[serde(borrow, rename = "model_provider")]
    _model_provider: Option<Text<'a>>,
    #[serde(borrow)]
    model_name: Option<Text<'a>>,
    stream: Option<bool>,
    #[serde(borrow)]
    prompt: Option<Text<'a>>,
    // code_editor_completion
    #[serde(rename = "choices_count")]
    _choices_count: Option<i64>,
    // code_editor_generation
    #[serde(borrow)]
    prompt_id: Option<Text<'a>>,
    #[serde(borrow)]
    prompt_version: Option<Text<'a>>,
    #[serde(borrow)]
    prompt_enhancer: Option<Object<Enhancer<'a>>>,
    // code_context
    #[serde(borrow, rename = "type")]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    content: Option<Text<'a>>,
}

/// `prompt_enhancer` as Rails fills it (`ai_gateway_messages.rb`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Enhancer<'a> {
    #[serde(borrow)]
    examples_array: Option<Vec<Object<Example<'a>>>>,
    #[serde(borrow)]
    trimmed_content_above_cursor: Option<Text<'a>>,
    #[serde(borrow)]
    trimmed_content_below_cursor: Option<Text<'a>>,
    #[serde(borrow)]
    related_files: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    related_snippets: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    libraries: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    user_instruction: Option<Text<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Example<'a> {
    #[serde(borrow)]
    example: Cow<'a, str>,
    #[serde(borrow)]
    response: Cow<'a, str>,
    #[serde(default, rename = "trigger_type")]
    _trigger_type: Skip,
}

/// The request of a body [`super::v3::parse`] accepts, or `None` to let it decide.
pub fn parse(body: &[u8]) -> Option<V3Request<'_>> {
    let b: Body = from_body::<Object<Body>>(body)?.0;
    let n = b.prompt_components.len();
    if !(MIN_COMPONENTS..=MAX_COMPONENTS).contains(&n) {
        return None;
    }
    let mut first = None;
    let mut code_context = Vec::new();
    for (i, Object(c)) in b.prompt_components.into_iter().enumerate() {
        if let Some(Object(m)) = &c.metadata {
            if !(fits(&m.source, MAX_METADATA_FIELD) && fits(&m.version, MAX_METADATA_FIELD)) {
                return None;
            }
        }
        let kind = match c.kind.as_ref() {
            COMPLETION_TYPE => EditorKind::Completion,
            GENERATION_TYPE => EditorKind::Generation,
            CONTEXT_TYPE => {
                code_context.push(context_item(c.payload.0)?);
                continue;
            }
            _ => return None,
        };
        let payload = editor_payload(kind, c.payload.0)?;
        if i == 0 {
            first = Some((kind, payload));
        }
    }
    let (kind, payload) = first?;
    let (model_identifier, model_name) = match b.model_metadata {
        Some(Object(m)) => (text(m.identifier), text(m.name)),
        None => (None, None),
    };
    Some(V3Request {
        kind,
        payload,
        code_context,
        model_identifier,
        model_name,
        stream: b.stream,
    })
}

fn context_item(p: Payload<'_>) -> Option<ContextItem<'_>> {
    let item = ContextItem {
        kind: text(p.kind)?,
        name: text(p.name)?,
        content: text(p.content)?,
    };
    let ok = fits(&item.kind, MAX_CONTEXT_TYPE)
        && fits(&item.name, MAX_CONTEXT_NAME)
        && fits(&item.content, MAX_CODE_CONTEXT_CONTENT);
    ok.then_some(item)
}

fn editor_payload(kind: EditorKind, p: Payload<'_>) -> Option<EditorPayload<'_>> {
    let file_name = trimmed(text(p.file_name)?);
    let content_above_cursor = text(p.content_above_cursor)?;
    let content_below_cursor = text(p.content_below_cursor)?;
    let language_identifier = text(p.language_identifier);
    let ok = fits(&file_name, MAX_FILE_NAME)
        && fits(&content_above_cursor, MAX_CONTENT)
        && fits(&content_below_cursor, MAX_CONTENT)
        && language_identifier
            .as_deref()
            .is_none_or(|s| fits(s, MAX_LANGUAGE_IDENTIFIER));
    if !ok {
        return None;
    }
    let mut out = EditorPayload {
        file_name,
        content_above_cursor,
        content_below_cursor,
        language_identifier,
        model_name: text(p.model_name),
        stream: p.stream,
        ..EditorPayload::default()
    };
    if kind == EditorKind::Generation {
        out.prompt = text(p.prompt);
        if out
            .prompt
            .as_deref()
            .is_some_and(|s| !fits(s, MAX_GENERATION_PROMPT))
        {
            return None;
        }
        out.prompt_id = text(p.prompt_id);
        out.prompt_version = text(p.prompt_version);
        out.prompt_enhancer = p.prompt_enhancer.map(|Object(e)| enhancer(e));
    }
    Some(out)
}

fn enhancer(e: Enhancer<'_>) -> PromptEnhancer<'_> {
    PromptEnhancer {
        examples: e
            .examples_array
            .unwrap_or_default()
            .into_iter()
            .map(|Object(x)| (x.example, x.response))
            .collect(),
        trimmed_content_above_cursor: text(e.trimmed_content_above_cursor),
        trimmed_content_below_cursor: text(e.trimmed_content_below_cursor),
        related_files: texts(e.related_files),
        related_snippets: texts(e.related_snippets),
        libraries: texts(e.libraries),
        user_instruction: text(e.user_instruction),
    }
}

fn texts(t: Option<Vec<Text<'_>>>) -> Vec<Cow<'_, str>> {
    t.unwrap_or_default().into_iter().map(|t| t.0).collect()
}
