//! The typed, borrowed fast path of `/v2/code/completions` and `/v2/code/generations`.
//!
//! Contract: the one of every fast path (`gitlab::typed_body`): `None` unless [`super::v2::parse`]
//! accepts the body, and then the same [`V2Request`], its strings borrowed from the body where
//! they hold no escape. The rules are [`super::v2`]'s (docs/gitlab-contract.md#code-completions).
//!
//! What is declined, for the `Value` path to answer: `prompt_version` other than the JSON integers
//! 1 and 2 (3 carries message lists, and strings such as `"2"` are pydantic coercions), any
//! value of a wrong JSON type (including coercible ones: `"true"` or `1` for `stream`, `3.0` or
//! `"3"` for an integer), a limit exceeded, a duplicate key, and any field not named below (the
//! `Value` path ignores unknown fields; here they are declined, see `typed_body`).

use std::borrow::Cow;

use serde::Deserialize;

use super::super::typed_body::{fits, from_body, text, trimmed, Object, Skip, SkipObject, Text};
use super::v2::{
    ContextItem, CurrentFile, V2Request, MAX_CONTENT, MAX_CONTEXT_CONTENT, MAX_CONTEXT_ITEMS,
    MAX_CONTEXT_NAME, MAX_CONTEXT_TYPE, MAX_FILE_NAME, MAX_LANGUAGE_IDENTIFIER, MAX_MODEL_NAME,
    MAX_PROJECT_PATH, MAX_TELEMETRY,
};

/// The body as Rails and the IDE send it (docs/gitlab-contract.md#code-completions).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body<'a> {
    prompt_version: u8,
    #[serde(borrow)]
    current_file: Object<File<'a>>,
    #[serde(borrow)]
    prompt: Option<Text<'a>>,
    #[serde(borrow)]
    project_path: Option<Text<'a>>,
    project_id: Option<i64>,
    #[serde(borrow)]
    model_provider: Option<Text<'a>>,
    #[serde(borrow)]
    model_name: Option<Text<'a>>,
    #[serde(borrow)]
    model_identifier: Option<Text<'a>>,
    stream: Option<bool>,
    choices_count: Option<i64>,
    #[serde(borrow)]
    prompt_id: Option<Text<'a>>,
    #[serde(borrow, rename = "role_arn")]
    _role_arn: Option<Text<'a>>,
    telemetry: Option<Vec<SkipObject>>,
    #[serde(borrow)]
    context: Option<Vec<Object<Context<'a>>>>,
    // Read by nobody: the gateway ignores them for Bedrock, and the key is a secret.
    #[serde(default, rename = "model_endpoint")]
    _model_endpoint: Skip,
    #[serde(default, rename = "model_api_key")]
    _model_api_key: Skip,
    // Sent by the IDE or the gateway's troubleshooting script; not part of the v2 schema.
    #[serde(default, rename = "intent")]
    _intent: Skip,
    #[serde(default, rename = "generation_type")]
    _generation_type: Skip,
    #[serde(default, rename = "user_instruction")]
    _user_instruction: Skip,
    #[serde(default, rename = "agent_id")]
    _agent_id: Skip,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File<'a> {
    #[serde(borrow)]
    file_name: Cow<'a, str>,
    #[serde(borrow)]
    language_identifier: Option<Text<'a>>,
    #[serde(borrow)]
    content_above_cursor: Cow<'a, str>,
    #[serde(borrow)]
    content_below_cursor: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Context<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    content: Cow<'a, str>,
}

/// The request of a body [`super::v2::parse`] accepts, or `None` to let it decide.
pub fn parse(body: &[u8]) -> Option<V2Request<'_>> {
    let b: Body = from_body::<Object<Body>>(body)?.0;
    if !matches!(b.prompt_version, 1 | 2) {
        return None;
    }
    let File {
        file_name,
        language_identifier,
        content_above_cursor,
        content_below_cursor,
    } = b.current_file.0;
    let file_name = trimmed(file_name);
    let language_identifier = text(language_identifier);
    let project_path = text(b.project_path);
    let model_name = text(b.model_name);
    let within = |s: &Option<Cow<str>>, max| s.as_deref().is_none_or(|s| fits(s, max));
    let ok = fits(&file_name, MAX_FILE_NAME)
        && within(&language_identifier, MAX_LANGUAGE_IDENTIFIER)
        && fits(&content_above_cursor, MAX_CONTENT)
        && fits(&content_below_cursor, MAX_CONTENT)
        && within(&project_path, MAX_PROJECT_PATH)
        && within(&model_name, MAX_MODEL_NAME)
        && b.telemetry
            .as_ref()
            .is_none_or(|t| t.len() <= MAX_TELEMETRY);
    if !ok {
        return None;
    }
    let context = match b.context {
        None => Vec::new(),
        Some(items) if items.len() <= MAX_CONTEXT_ITEMS => items
            .into_iter()
            .map(|Object(c)| {
                let ok = fits(&c.kind, MAX_CONTEXT_TYPE)
                    && fits(&c.name, MAX_CONTEXT_NAME)
                    && fits(&c.content, MAX_CONTEXT_CONTENT);
                ok.then_some(ContextItem {
                    kind: c.kind,
                    name: c.name,
                    content: c.content,
                })
            })
            .collect::<Option<Vec<_>>>()?,
        Some(_) => return None,
    };
    Some(V2Request {
        current_file: CurrentFile {
            file_name,
            language_identifier,
            content_above_cursor,
            content_below_cursor,
        },
        project_path,
        project_id: b.project_id,
        model_provider: text(b.model_provider),
        model_name,
        model_identifier: text(b.model_identifier),
        stream: b.stream.unwrap_or(false),
        choices_count: b.choices_count.unwrap_or(0),
        context,
        prompt_id: text(b.prompt_id),
        prompt_version: b.prompt_version,
        prompt: text(b.prompt),
    })
}
