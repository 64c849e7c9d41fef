//! Typed requests of `POST /v3/code/completions` and `POST /v4/code/suggestions`.
//!
//! Contract: `docs/gitlab-contract.md#code-generations-v3-v4` (AIGW
//! `ai_gateway/api/v3/code/typing.py`): `prompt_components` is a list of 1..=100 items
//! discriminated on `type` ∈ `code_editor_completion` | `code_editor_generation` | `code_context`;
//! only the **first** component is executed; `code_context` components (anywhere) feed context.
//! Payload limits: `file_name` ≤ 255 (stripped), `content_above_cursor`/`content_below_cursor`
//! ≤ 100 000 (required), `language_identifier` ≤ 255; generation `prompt` ≤ 400 000;
//! `code_context` payload `{type ≤ 1024, name ≤ 1024, content ≤ 100 000}`; optional component
//! `metadata {source ≤ 255, version ≤ 255}`.
//!
//! `model_metadata` is not a declared field in GitLab's gateway (a middleware reads it from
//! the raw body); here `model_metadata.identifier` / `.name` are read when present.
//! `model_metadata.api_key` / `.endpoint` are dropped unread. `prompt_enhancer` is a free
//! dictionary: its known keys are read leniently (wrong types are ignored, as the gateway's
//! template rendering would), never rejected.

use serde_json::{Map, Value};

use super::super::errors::{GitlabError, LocPart, ValidationIssue};
use super::super::validate::{at, body_loc, parse_object, string_type, Validator};
use super::v2::{context_item, ContextItem, MAX_CONTENT, MAX_FILE_NAME, MAX_LANGUAGE_IDENTIFIER};

pub const MIN_COMPONENTS: usize = 1;
pub const MAX_COMPONENTS: usize = 100;
pub const MAX_GENERATION_PROMPT: usize = 400_000;
pub const MAX_CODE_CONTEXT_CONTENT: usize = 100_000;
pub const MAX_METADATA_FIELD: usize = 255;

pub const COMPLETION_TYPE: &str = "code_editor_completion";
pub const GENERATION_TYPE: &str = "code_editor_generation";
pub const CONTEXT_TYPE: &str = "code_context";

/// `prompt_enhancer` fields used by the generation prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromptEnhancer {
    /// `(example, response)` pairs from `examples_array`.
    pub examples: Vec<(String, String)>,
    pub trimmed_content_above_cursor: Option<String>,
    pub trimmed_content_below_cursor: Option<String>,
    pub related_files: Vec<String>,
    pub related_snippets: Vec<String>,
    pub libraries: Vec<String>,
    pub user_instruction: Option<String>,
}

/// The payload of a `code_editor_completion` / `code_editor_generation` component.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EditorPayload {
    pub file_name: String,
    pub content_above_cursor: String,
    pub content_below_cursor: String,
    pub language_identifier: Option<String>,
    pub model_name: Option<String>,
    /// `None` when absent or null.
    pub stream: Option<bool>,
    /// Generation only: a text prompt (≤ 400 000). Completion text prompts are ignored.
    pub prompt: Option<String>,
    pub prompt_id: Option<String>,
    pub prompt_version: Option<String>,
    pub prompt_enhancer: Option<PromptEnhancer>,
}

/// Which editor component came first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditorKind {
    Completion,
    Generation,
}

/// A validated v3/v4 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Request {
    pub kind: EditorKind,
    /// The first component's payload.
    pub payload: EditorPayload,
    /// Payloads of every `code_context` component, in order.
    pub code_context: Vec<ContextItem<'static>>,
    /// `model_metadata.identifier`.
    pub model_identifier: Option<String>,
    /// `model_metadata.name` (GitLab's model family, e.g. `claude_3`).
    pub model_name: Option<String>,
    /// Top-level `stream` that Rails also passes through.
    pub stream: Option<bool>,
}

enum Component {
    Editor(EditorKind, Box<EditorPayload>),
    Context(ContextItem<'static>),
}

/// Parses and validates a v3/v4 body; problems → 422.
pub fn parse(body: &[u8]) -> Result<V3Request, GitlabError> {
    let mut map = parse_object(body)?;
    let b = body_loc();
    let mut v = Validator::new();

    let mut components = Vec::new();
    if let Some(items) = v.req_list(
        &mut map,
        "prompt_components",
        &b,
        MIN_COMPONENTS,
        MAX_COMPONENTS,
    ) {
        let loc = at(&b, "prompt_components");
        for (i, item) in items.into_iter().enumerate() {
            if let Some(c) = component(&mut v, item, &at(&loc, i)) {
                components.push(c);
            }
        }
    }
    let _role_arn = v.opt_str(&mut map, "role_arn", &b, None, false);
    let stream = v.opt_bool(&mut map, "stream", &b);
    let (mut model_identifier, mut model_name) = (None, None);
    if let Some(mut mm) = v.opt_object(&mut map, "model_metadata", &b) {
        let loc = at(&b, "model_metadata");
        model_identifier = v.opt_str(&mut mm, "identifier", &loc, None, false);
        model_name = v.opt_str(&mut mm, "name", &loc, None, false);
        // api_key and endpoint are never read.
    }
    v.finish()?;

    let mut code_context = Vec::new();
    let mut first = None;
    for (i, c) in components.into_iter().enumerate() {
        match c {
            Component::Context(item) => code_context.push(item),
            Component::Editor(kind, payload) if i == 0 => first = Some((kind, *payload)),
            Component::Editor(..) => {}
        }
    }
    let Some((kind, payload)) = first else {
        return Err(GitlabError::detail(
            422,
            "The first prompt component must be of type code_editor_completion or code_editor_generation",
        ));
    };
    Ok(V3Request {
        kind,
        payload,
        code_context,
        model_identifier,
        model_name,
        stream,
    })
}

fn component(v: &mut Validator, item: Value, loc: &[LocPart]) -> Option<Component> {
    let mut m = v.object(item, loc.to_vec())?;
    let tag = match m.get("type") {
        None => {
            v.push(ValidationIssue::new(
                "union_tag_not_found",
                loc.to_vec(),
                "Unable to extract tag using discriminator 'type'",
            ));
            return None;
        }
        Some(Value::String(s)) => s.as_str(),
        Some(_) => "",
    };
    let kind = match tag {
        COMPLETION_TYPE => Some(EditorKind::Completion),
        GENERATION_TYPE => Some(EditorKind::Generation),
        CONTEXT_TYPE => None,
        _ => {
            v.push(ValidationIssue::new(
                "union_tag_invalid",
                loc.to_vec(),
                "Input tag found using 'type' does not match any of the expected tags: 'code_editor_completion', 'code_editor_generation', 'code_context'",
            ));
            return None;
        }
    };
    if let Some(mut meta) = v.opt_object(&mut m, "metadata", loc) {
        let mloc = at(loc, "metadata");
        let _ = v.req_str(&mut meta, "source", &mloc, Some(MAX_METADATA_FIELD), false);
        let _ = v.req_str(&mut meta, "version", &mloc, Some(MAX_METADATA_FIELD), false);
    }
    let mut payload = v.req_object(&mut m, "payload", loc)?;
    let ploc = at(loc, "payload");
    match kind {
        None => {
            context_item(v, &mut payload, &ploc, MAX_CODE_CONTEXT_CONTENT).map(Component::Context)
        }
        Some(kind) => editor_payload(v, &mut payload, &ploc, kind)
            .map(|p| Component::Editor(kind, Box::new(p))),
    }
}

fn editor_payload(
    v: &mut Validator,
    m: &mut Map<String, Value>,
    loc: &[LocPart],
    kind: EditorKind,
) -> Option<EditorPayload> {
    let file_name = v.req_str(m, "file_name", loc, Some(MAX_FILE_NAME), true);
    let above = v.req_str(m, "content_above_cursor", loc, Some(MAX_CONTENT), false);
    let below = v.req_str(m, "content_below_cursor", loc, Some(MAX_CONTENT), false);
    let language_identifier = v.opt_str(
        m,
        "language_identifier",
        loc,
        Some(MAX_LANGUAGE_IDENTIFIER),
        false,
    );
    let _model_provider = v.opt_str(m, "model_provider", loc, None, false);
    let model_name = v.opt_str(m, "model_name", loc, None, false);
    let stream = v.opt_bool(m, "stream", loc);
    let mut out = EditorPayload {
        language_identifier,
        model_name,
        stream,
        ..EditorPayload::default()
    };
    match kind {
        EditorKind::Completion => {
            let _ = v.opt_int(m, "choices_count", loc);
            match m.remove("prompt") {
                None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
                Some(_) => v.push(string_type(at(loc, "prompt"))),
            }
        }
        EditorKind::Generation => {
            out.prompt = v.opt_str(m, "prompt", loc, Some(MAX_GENERATION_PROMPT), false);
            out.prompt_id = v.opt_str(m, "prompt_id", loc, None, false);
            out.prompt_version = v.opt_str(m, "prompt_version", loc, None, false);
            out.prompt_enhancer = v.opt_dict(m, "prompt_enhancer", loc).map(prompt_enhancer);
        }
    }
    out.file_name = file_name?;
    out.content_above_cursor = above?;
    out.content_below_cursor = below?;
    Some(out)
}

fn prompt_enhancer(mut m: Map<String, Value>) -> PromptEnhancer {
    let string = |v: Option<Value>| match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    let strings = |v: Option<Value>| match v {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|i| match i {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let examples = match m.remove("examples_array") {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|i| match i {
                Value::Object(mut e) => {
                    match (string(e.remove("example")), string(e.remove("response"))) {
                        (Some(ex), Some(resp)) => Some((ex, resp)),
                        _ => None,
                    }
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    PromptEnhancer {
        examples,
        trimmed_content_above_cursor: string(m.remove("trimmed_content_above_cursor")),
        trimmed_content_below_cursor: string(m.remove("trimmed_content_below_cursor")),
        related_files: strings(m.remove("related_files")),
        related_snippets: strings(m.remove("related_snippets")),
        libraries: strings(m.remove("libraries")),
        user_instruction: string(m.remove("user_instruction")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gitlab::errors::testing::{only_issue, validation_issues};
    use serde_json::json;

    /// A Rails 18.x self-hosted generation body (docs/gitlab-contract.md#code-generations-v3-v4).
    pub(crate) const GENERATION_EXAMPLE: &str = r##"{
  "current_file": { "file_name": "main.py", "content_above_cursor": "# sort a list of ints\n", "content_below_cursor": "" },
  "intent": "generation",
  "stream": true,
  "prompt_components": [
    {
      "type": "code_editor_generation",
      "payload": {
        "file_name": "main.py",
        "content_above_cursor": "# sort a list of ints\n",
        "content_below_cursor": "",
        "language_identifier": "Python",
        "stream": true,
        "prompt_enhancer": {
          "examples_array": [ { "example": "...", "response": "...", "trigger_type": "comment" } ],
          "trimmed_content_above_cursor": "# sort a list of ints\n",
          "trimmed_content_below_cursor": "",
          "related_files": [ "<file_content file_name=\"a.py\">\n...\n</file_content>\n" ],
          "related_snippets": [],
          "libraries": [],
          "user_instruction": "Generate the best possible code based on instructions."
        },
        "prompt_id": "code_suggestions/generations",
        "prompt_version": "^1.0.0"
      }
    }
  ],
  "model_metadata": {
    "provider": "openai",
    "name": "claude_3",
    "endpoint": "https://bedrock-runtime.us-east-1.amazonaws.com",
    "api_key": null,
    "identifier": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"
  }
}"##;

    fn base() -> Value {
        serde_json::from_str(GENERATION_EXAMPLE).unwrap()
    }

    fn one_issue(v: &Value) -> (String, Value) {
        only_issue(&parse(v.to_string().as_bytes()).expect_err("should fail"))
    }

    fn completion_component() -> Value {
        json!({"type": "code_editor_completion", "payload": {
            "file_name": "a.go", "content_above_cursor": "func main() {\n", "content_below_cursor": "}\n",
            "language_identifier": "go", "stream": false, "choices_count": 1, "prompt": null}})
    }

    #[test]
    fn generation_example_parses() {
        let r = parse(GENERATION_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(r.kind, EditorKind::Generation);
        assert_eq!(r.payload.file_name, "main.py");
        assert_eq!(r.payload.language_identifier.as_deref(), Some("Python"));
        assert_eq!(r.payload.stream, Some(true));
        assert_eq!(r.stream, Some(true));
        assert_eq!(r.payload.prompt_version.as_deref(), Some("^1.0.0"));
        let pe = r.payload.prompt_enhancer.unwrap();
        assert_eq!(pe.examples, vec![("...".to_string(), "...".to_string())]);
        assert_eq!(pe.related_files.len(), 1);
        assert_eq!(
            pe.user_instruction.as_deref(),
            Some("Generate the best possible code based on instructions.")
        );
        assert_eq!(
            pe.trimmed_content_above_cursor.as_deref(),
            Some("# sort a list of ints\n")
        );
        assert_eq!(
            r.model_identifier.as_deref(),
            Some("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0")
        );
        assert_eq!(r.model_name.as_deref(), Some("claude_3"));
    }

    #[test]
    fn completion_component_and_context() {
        let mut v = base();
        v["prompt_components"] = json!([
            completion_component(),
            {"type": "code_context", "payload": {"type": "file", "name": "b.go", "content": "package b"}},
            {"type": "code_editor_generation", "payload": {"file_name": "x", "content_above_cursor": "", "content_below_cursor": ""}}
        ]);
        let r = parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(r.kind, EditorKind::Completion);
        assert_eq!(r.payload.stream, Some(false));
        assert_eq!(r.code_context.len(), 1);
        assert_eq!(r.code_context[0].content, "package b");
    }

    #[test]
    fn first_component_must_be_an_editor() {
        let mut v = base();
        v["prompt_components"] = json!([
            {"type": "code_context", "payload": {"type": "file", "name": "b", "content": "c"}},
            completion_component()
        ]);
        let e = parse(v.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.body.contains("first prompt component"));
    }

    #[test]
    fn component_count_limits() {
        let mut v = base();
        v["prompt_components"] = json!([]);
        assert_eq!(
            one_issue(&v),
            ("too_short".into(), json!(["body", "prompt_components"]))
        );
        v["prompt_components"] = json!(vec![completion_component(); 100]);
        parse(v.to_string().as_bytes()).unwrap();
        v["prompt_components"] = json!(vec![completion_component(); 101]);
        assert_eq!(
            one_issue(&v),
            ("too_long".into(), json!(["body", "prompt_components"]))
        );
        v.as_object_mut().unwrap().remove("prompt_components");
        assert_eq!(
            one_issue(&v),
            ("missing".into(), json!(["body", "prompt_components"]))
        );
    }

    #[test]
    fn tags() {
        let mut v = base();
        v["prompt_components"] = json!([{"payload": {}}]);
        assert_eq!(
            one_issue(&v),
            (
                "union_tag_not_found".into(),
                json!(["body", "prompt_components", 0])
            )
        );
        v["prompt_components"] = json!([{"type": "nope", "payload": {}}]);
        assert_eq!(
            one_issue(&v),
            (
                "union_tag_invalid".into(),
                json!(["body", "prompt_components", 0])
            )
        );
        v["prompt_components"] = json!([{"type": 5, "payload": {}}]);
        assert_eq!(one_issue(&v).0, "union_tag_invalid");
        v["prompt_components"] = json!([{"type": "code_editor_completion"}]);
        assert_eq!(
            one_issue(&v),
            (
                "missing".into(),
                json!(["body", "prompt_components", 0, "payload"])
            )
        );
    }

    fn set_payload(v: &mut Value, field: &str, value: Value) {
        v["prompt_components"][0]["payload"][field] = value;
    }

    #[test]
    fn payload_limits() {
        for (field, max) in [
            ("file_name", 255),
            ("content_above_cursor", 100_000),
            ("content_below_cursor", 100_000),
            ("language_identifier", 255),
            ("prompt", 400_000),
        ] {
            let mut v = base();
            set_payload(&mut v, field, json!("a".repeat(max)));
            parse(v.to_string().as_bytes()).unwrap_or_else(|e| panic!("{field}: {}", e.body));
            set_payload(&mut v, field, json!("a".repeat(max + 1)));
            assert_eq!(
                one_issue(&v),
                (
                    "string_too_long".into(),
                    json!(["body", "prompt_components", 0, "payload", field])
                )
            );
        }
        let mut v = base();
        set_payload(&mut v, "file_name", json!(format!(" {} ", "a".repeat(255))));
        assert_eq!(
            parse(v.to_string().as_bytes())
                .unwrap()
                .payload
                .file_name
                .len(),
            255
        );
    }

    #[test]
    fn code_context_limits() {
        for (field, max) in [("type", 1024), ("name", 1024), ("content", 100_000)] {
            let mut ctx = json!({"type": "code_context", "payload": {"type": "file", "name": "n", "content": "c"}});
            ctx["payload"][field] = json!("a".repeat(max));
            let mut v = base();
            v["prompt_components"] = json!([completion_component(), ctx.clone()]);
            parse(v.to_string().as_bytes()).unwrap();
            ctx["payload"][field] = json!("a".repeat(max + 1));
            v["prompt_components"] = json!([completion_component(), ctx]);
            assert_eq!(
                one_issue(&v),
                (
                    "string_too_long".into(),
                    json!(["body", "prompt_components", 1, "payload", field])
                )
            );
        }
    }

    #[test]
    fn metadata_and_missing_fields() {
        let mut v = base();
        v["prompt_components"][0]["metadata"] = json!({"source": "ide", "version": "1"});
        parse(v.to_string().as_bytes()).unwrap();
        v["prompt_components"][0]["metadata"] = json!({"source": "a".repeat(256), "version": "1"});
        assert_eq!(
            one_issue(&v),
            (
                "string_too_long".into(),
                json!(["body", "prompt_components", 0, "metadata", "source"])
            )
        );
        let mut v = base();
        v["prompt_components"][0]["payload"]
            .as_object_mut()
            .unwrap()
            .remove("content_below_cursor");
        assert_eq!(
            one_issue(&v),
            (
                "missing".into(),
                json!([
                    "body",
                    "prompt_components",
                    0,
                    "payload",
                    "content_below_cursor"
                ])
            )
        );
        let mut v = base();
        set_payload(&mut v, "prompt_enhancer", json!("x"));
        assert_eq!(one_issue(&v).0, "dict_type");
        let mut v = base();
        v["model_metadata"] = json!(3);
        assert_eq!(
            one_issue(&v),
            (
                "model_attributes_type".into(),
                json!(["body", "model_metadata"])
            )
        );
    }

    #[test]
    fn lenient_prompt_enhancer() {
        let mut v = base();
        set_payload(
            &mut v,
            "prompt_enhancer",
            json!({"examples_array": "x", "related_files": [1, "ok"], "libraries": {"a": 1}, "user_instruction": 5}),
        );
        let pe = parse(v.to_string().as_bytes())
            .unwrap()
            .payload
            .prompt_enhancer
            .unwrap();
        assert_eq!(pe.related_files, vec!["ok".to_string()]);
        assert!(pe.examples.is_empty() && pe.libraries.is_empty() && pe.user_instruction.is_none());
    }

    #[test]
    fn malformed() {
        let e = parse(b"{\"prompt_components\": [}").unwrap_err();
        assert_eq!(validation_issues(&e)[0]["type"], "json_invalid");
    }
}
