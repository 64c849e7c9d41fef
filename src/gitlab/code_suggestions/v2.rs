//! Typed requests of `POST /v2/code/completions` and `POST /v2/code/generations`.
//!
//! Contract: `docs/gitlab-contract.md#code-completions` (schema table) and `#code-generations-v2`.
//! The body is a pydantic discriminated union on `prompt_version` ∈ {1, 2, 3}: the field must be
//! present. Limits: `current_file.file_name` ≤ 255 (whitespace-stripped first),
//! `language_identifier` ≤ 255, `content_above_cursor` / `content_below_cursor` ≤ 100 000
//! characters (both required), `project_path` ≤ 255, `model_name` ≤ 50, `telemetry` ≤ 10 objects,
//! `context` ≤ 100 items of `{type ≤ 1024, name ≤ 1024, content ≤ 500 000}`.
//! `prompt` is `str | null` for versions 1/2 and a list of `{role, content}` messages for
//! version 3; version-3 messages are checked for shape but **not used** (this gateway always
//! builds its own prompt). Unknown fields (`intent`, `generation_type`, `user_instruction`…)
//! are ignored; `model_endpoint` and `model_api_key` are dropped unread.
//!
//! Issue `loc`s are FastAPI-like without the union tag: `["body","current_file","file_name"]`.

use std::borrow::Cow;

use serde_json::Value;

use super::super::errors::{GitlabError, LocPart, ValidationIssue};
use super::super::validate::{at, body_loc, list_type, parse_object, Validator};

pub const MAX_FILE_NAME: usize = 255;
pub const MAX_LANGUAGE_IDENTIFIER: usize = 255;
pub const MAX_CONTENT: usize = 100_000;
pub const MAX_PROJECT_PATH: usize = 255;
pub const MAX_MODEL_NAME: usize = 50;
pub const MAX_TELEMETRY: usize = 10;
pub const MAX_CONTEXT_ITEMS: usize = 100;
pub const MAX_CONTEXT_TYPE: usize = 1024;
pub const MAX_CONTEXT_NAME: usize = 1024;
pub const MAX_CONTEXT_CONTENT: usize = 500_000;

/// `current_file`.
///
/// Strings are `Cow`: this [`parse`] owns them, the typed fast path ([`super::v2_fast`])
/// borrows them from the body where no escape had to be decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrentFile<'a> {
    pub file_name: Cow<'a, str>,
    pub language_identifier: Option<Cow<'a, str>>,
    pub content_above_cursor: Cow<'a, str>,
    pub content_below_cursor: Cow<'a, str>,
}

/// One IDE context item (`{type, name, content}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextItem<'a> {
    pub kind: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub content: Cow<'a, str>,
}

/// A validated v2 code suggestions request (completions and generations share it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Request<'a> {
    pub current_file: CurrentFile<'a>,
    pub project_path: Option<Cow<'a, str>>,
    pub project_id: Option<i64>,
    pub model_provider: Option<Cow<'a, str>>,
    pub model_name: Option<Cow<'a, str>>,
    pub model_identifier: Option<Cow<'a, str>>,
    pub stream: bool,
    pub choices_count: i64,
    pub context: Vec<ContextItem<'a>>,
    pub prompt_id: Option<Cow<'a, str>>,
    /// 1, 2 or 3.
    pub prompt_version: u8,
    /// The text prompt of versions 1/2 (for generations: the instruction). `None` for v3.
    pub prompt: Option<Cow<'a, str>>,
}

/// `Some(s)` owned.
fn owned(s: Option<String>) -> Option<Cow<'static, str>> {
    s.map(Cow::Owned)
}

/// Parses and validates a v2 body; any problem → the 422 FastAPI would send.
///
/// The reference for [`super::v2_fast::parse`], which must accept a subset of these bodies and
/// give the same request for them.
pub fn parse(body: &[u8]) -> Result<V2Request<'static>, GitlabError> {
    let mut map = parse_object(body)?;
    let prompt_version = discriminator(map.get("prompt_version"))?;
    let b = body_loc();
    let mut v = Validator::new();
    let mut req = V2Request {
        prompt_version,
        ..V2Request::default()
    };

    if let Some(mut cf) = v.req_object(&mut map, "current_file", &b) {
        let loc = at(&b, "current_file");
        let file_name = v.req_str(&mut cf, "file_name", &loc, Some(MAX_FILE_NAME), true);
        let language_identifier = v.opt_str(
            &mut cf,
            "language_identifier",
            &loc,
            Some(MAX_LANGUAGE_IDENTIFIER),
            false,
        );
        let above = v.req_str(
            &mut cf,
            "content_above_cursor",
            &loc,
            Some(MAX_CONTENT),
            false,
        );
        let below = v.req_str(
            &mut cf,
            "content_below_cursor",
            &loc,
            Some(MAX_CONTENT),
            false,
        );
        req.current_file = CurrentFile {
            file_name: Cow::Owned(file_name.unwrap_or_default()),
            language_identifier: owned(language_identifier),
            content_above_cursor: Cow::Owned(above.unwrap_or_default()),
            content_below_cursor: Cow::Owned(below.unwrap_or_default()),
        };
    }
    req.project_path =
        owned(v.opt_str(&mut map, "project_path", &b, Some(MAX_PROJECT_PATH), false));
    req.project_id = v.opt_int(&mut map, "project_id", &b);
    req.model_provider = owned(v.opt_str(&mut map, "model_provider", &b, None, false));
    req.model_name = owned(v.opt_str(&mut map, "model_name", &b, Some(MAX_MODEL_NAME), false));
    req.model_identifier = owned(v.opt_str(&mut map, "model_identifier", &b, None, false));
    // Never read: the gateway ignores them for Bedrock, and the key is a secret.
    map.remove("model_endpoint");
    map.remove("model_api_key");
    req.stream = v.opt_bool(&mut map, "stream", &b).unwrap_or(false);
    req.choices_count = v.opt_int(&mut map, "choices_count", &b).unwrap_or(0);
    req.prompt_id = owned(v.opt_str(&mut map, "prompt_id", &b, None, false));
    let _role_arn = v.opt_str(&mut map, "role_arn", &b, None, false);

    if let Some(items) = v.opt_list(&mut map, "telemetry", &b, 0, MAX_TELEMETRY) {
        let loc = at(&b, "telemetry");
        for (i, item) in items.into_iter().enumerate() {
            let _ = v.object(item, at(&loc, i));
        }
    }
    if let Some(items) = v.opt_list(&mut map, "context", &b, 0, MAX_CONTEXT_ITEMS) {
        req.context = context_items(&mut v, items, &at(&b, "context"), MAX_CONTEXT_CONTENT);
    }

    match prompt_version {
        3 => prompt_messages(&mut v, map.remove("prompt"), &at(&b, "prompt")),
        _ => req.prompt = owned(v.opt_str(&mut map, "prompt", &b, None, false)),
    }

    v.finish()?;
    Ok(req)
}

/// Validates `{type, name, content}` items (shared with v3 `code_context` payloads).
pub(crate) fn context_items(
    v: &mut Validator,
    items: Vec<Value>,
    loc: &[LocPart],
    max_content: usize,
) -> Vec<ContextItem<'static>> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let item_loc = at(loc, i);
        if let Some(mut m) = v.object(item, item_loc.clone()) {
            if let Some(c) = context_item(v, &mut m, &item_loc, max_content) {
                out.push(c);
            }
        }
    }
    out
}

pub(crate) fn context_item(
    v: &mut Validator,
    m: &mut serde_json::Map<String, Value>,
    loc: &[LocPart],
    max_content: usize,
) -> Option<ContextItem<'static>> {
    let kind = v.req_str(m, "type", loc, Some(MAX_CONTEXT_TYPE), false);
    let name = v.req_str(m, "name", loc, Some(MAX_CONTEXT_NAME), false);
    let content = v.req_str(m, "content", loc, Some(max_content), false);
    Some(ContextItem {
        kind: Cow::Owned(kind?),
        name: Cow::Owned(name?),
        content: Cow::Owned(content?),
    })
}

/// `prompt` of version 3: `null` or a list of `{role, content}` objects.
fn prompt_messages(v: &mut Validator, value: Option<Value>, loc: &[LocPart]) {
    let items = match value {
        None | Some(Value::Null) => return,
        Some(Value::Array(items)) => items,
        Some(_) => {
            v.push(list_type(loc.to_vec()));
            return;
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let item_loc = at(loc, i);
        if let Some(mut m) = v.object(item, item_loc.clone()) {
            let _ = v.req_str(&mut m, "role", &item_loc, None, false);
            let _ = v.req_str(&mut m, "content", &item_loc, None, false);
        }
    }
}

/// `prompt_version` → 1/2/3, or pydantic's tag error (reported alone, as pydantic does).
fn discriminator(value: Option<&Value>) -> Result<u8, GitlabError> {
    let tag = match value {
        None => {
            return Err(GitlabError::validation(vec![ValidationIssue::new(
                "union_tag_not_found",
                body_loc(),
                "Unable to extract tag using discriminator 'prompt_version'",
            )]))
        }
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match tag {
        Some(t @ 1..=3) => Ok(t as u8),
        _ => Err(GitlabError::validation(vec![ValidationIssue::new(
            "union_tag_invalid",
            body_loc(),
            "Input tag found using 'prompt_version' does not match any of the expected tags: 1, 2, 3",
        )])),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gitlab::errors::testing::{only_issue, validation_issues};
    use serde_json::json;

    /// A Rails-shaped self-hosted completion body (docs/gitlab-contract.md#code-completions).
    pub(crate) const COMPLETIONS_EXAMPLE: &str = r#"{
  "current_file": {
    "file_name": "app/models/user.rb",
    "language_identifier": "ruby",
    "content_above_cursor": "class User\n  def full_name\n    ",
    "content_below_cursor": "\n  end\nend\n"
  },
  "intent": "completion",
  "stream": false,
  "project_path": "group/project",
  "telemetry": [],
  "context": [],
  "model_provider": "litellm",
  "prompt_version": 2,
  "prompt": null,
  "model_endpoint": "https://bedrock-runtime.us-east-1.amazonaws.com",
  "model_name": "claude_3",
  "model_identifier": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"
}"#;

    /// The body AIGW's troubleshooting script posts (docs/gitlab-contract.md#code-generations-v2).
    pub(crate) const GENERATIONS_EXAMPLE: &str = r#"{
  "project_path": "string", "project_id": 0,
  "current_file": { "file_name": "test.py", "language_identifier": "python",
                    "content_above_cursor": "def hello():\n  ", "content_below_cursor": "" },
  "model_provider": "litellm",
  "model_endpoint": null,
  "model_api_key": null,
  "model_identifier": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
  "model_name": "claude_3",
  "telemetry": [], "stream": false, "choices_count": 0, "context": [],
  "agent_id": "string",
  "prompt_id": "code_suggestions/generations",
  "prompt_version": 2,
  "prompt": ""
}"#;

    fn base() -> Value {
        serde_json::from_str(COMPLETIONS_EXAMPLE).unwrap()
    }

    fn parse_value(v: &Value) -> Result<V2Request<'static>, GitlabError> {
        parse(v.to_string().as_bytes())
    }

    fn one_issue(v: &Value) -> (String, Value) {
        only_issue(&parse_value(v).expect_err("should fail"))
    }

    #[test]
    fn completions_example_parses() {
        let r = parse(COMPLETIONS_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(r.current_file.file_name, "app/models/user.rb");
        assert_eq!(r.current_file.language_identifier.as_deref(), Some("ruby"));
        assert_eq!(
            r.current_file.content_above_cursor,
            "class User\n  def full_name\n    "
        );
        assert_eq!(r.current_file.content_below_cursor, "\n  end\nend\n");
        assert_eq!(r.project_path.as_deref(), Some("group/project"));
        assert_eq!(r.model_provider.as_deref(), Some("litellm"));
        assert_eq!(r.model_name.as_deref(), Some("claude_3"));
        assert_eq!(
            r.model_identifier.as_deref(),
            Some("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0")
        );
        assert_eq!(
            (r.prompt_version, r.stream, r.prompt.as_deref()),
            (2, false, None)
        );
    }

    #[test]
    fn generations_example_parses() {
        let r = parse(GENERATIONS_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(r.current_file.file_name, "test.py");
        assert_eq!(r.current_file.content_above_cursor, "def hello():\n  ");
        assert_eq!(r.project_id, Some(0));
        assert_eq!(r.prompt.as_deref(), Some(""));
        assert_eq!(r.prompt_id.as_deref(), Some("code_suggestions/generations"));
    }

    #[test]
    fn prompt_version_is_required_and_checked() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("prompt_version");
        assert_eq!(
            one_issue(&v),
            ("union_tag_not_found".into(), json!(["body"]))
        );
        for bad in [
            json!(4),
            json!(0),
            json!("x"),
            json!(null),
            json!(2.5),
            json!(-1),
        ] {
            v["prompt_version"] = bad.clone();
            assert_eq!(one_issue(&v).0, "union_tag_invalid", "{bad}");
        }
        for good in [json!(1), json!(3), json!("2")] {
            v["prompt_version"] = good;
            v["prompt"] = Value::Null;
            parse_value(&v).unwrap();
        }
    }

    #[test]
    fn version_3_prompt_messages_are_validated() {
        let mut v = base();
        v["prompt_version"] = json!(3);
        v["prompt"] = json!([{"role": "user", "content": "hi"}]);
        let r = parse_value(&v).unwrap();
        assert_eq!(r.prompt, None);
        v["prompt"] = json!("text");
        assert_eq!(
            one_issue(&v),
            ("list_type".into(), json!(["body", "prompt"]))
        );
        v["prompt"] = json!([{"role": "user"}]);
        assert_eq!(
            one_issue(&v),
            ("missing".into(), json!(["body", "prompt", 0, "content"]))
        );
        v["prompt_version"] = json!(2);
        v["prompt"] = json!(["x"]);
        assert_eq!(
            one_issue(&v),
            ("string_type".into(), json!(["body", "prompt"]))
        );
    }

    #[test]
    fn required_fields() {
        for f in ["file_name", "content_above_cursor", "content_below_cursor"] {
            let mut v = base();
            v["current_file"].as_object_mut().unwrap().remove(f);
            assert_eq!(
                one_issue(&v),
                ("missing".into(), json!(["body", "current_file", f]))
            );
        }
        let mut v = base();
        v.as_object_mut().unwrap().remove("current_file");
        assert_eq!(
            one_issue(&v),
            ("missing".into(), json!(["body", "current_file"]))
        );
        v["current_file"] = json!("x");
        assert_eq!(
            one_issue(&v),
            (
                "model_attributes_type".into(),
                json!(["body", "current_file"])
            )
        );
        // optional fields may be absent or null
        let mut v = base();
        let m = v.as_object_mut().unwrap();
        for f in [
            "project_path",
            "telemetry",
            "context",
            "model_name",
            "model_identifier",
            "stream",
            "model_provider",
        ] {
            m.remove(f);
        }
        v["current_file"]["language_identifier"] = Value::Null;
        let r = parse_value(&v).unwrap();
        assert_eq!(
            (r.stream, r.context.len(), r.model_identifier),
            (false, 0, None)
        );
    }

    fn check_limit(path: &[&str], max: usize, strip: bool) {
        let mut v = base();
        let set = |v: &mut Value, s: String| {
            let mut cur = v;
            for p in &path[..path.len() - 1] {
                cur = &mut cur[*p];
            }
            cur[path[path.len() - 1]] = Value::String(s);
        };
        set(&mut v, "é".repeat(max));
        parse_value(&v).unwrap_or_else(|e| panic!("{path:?} at limit: {}", e.body));
        set(&mut v, "a".repeat(max + 1));
        let (kind, loc) = one_issue(&v);
        assert_eq!(kind, "string_too_long", "{path:?}");
        let mut want = vec![json!("body")];
        want.extend(path.iter().map(|p| json!(p)));
        assert_eq!(loc, Value::Array(want));
        if strip {
            set(&mut v, format!("  {}  ", "a".repeat(max)));
            parse_value(&v).unwrap();
        }
    }

    #[test]
    fn string_limits() {
        check_limit(&["current_file", "file_name"], 255, true);
        check_limit(&["current_file", "language_identifier"], 255, false);
        check_limit(&["current_file", "content_above_cursor"], 100_000, false);
        check_limit(&["current_file", "content_below_cursor"], 100_000, false);
        check_limit(&["project_path"], 255, false);
        check_limit(&["model_name"], 50, false);
    }

    #[test]
    fn file_name_is_stripped() {
        let mut v = base();
        v["current_file"]["file_name"] = json!("  a.rb \n");
        assert_eq!(parse_value(&v).unwrap().current_file.file_name, "a.rb");
    }

    #[test]
    fn telemetry_limit() {
        let mut v = base();
        v["telemetry"] = json!(vec![json!({"model_engine": "x"}); 10]);
        parse_value(&v).unwrap();
        v["telemetry"] = json!(vec![json!({}); 11]);
        assert_eq!(
            one_issue(&v),
            ("too_long".into(), json!(["body", "telemetry"]))
        );
        v["telemetry"] = json!([{}, 3]);
        assert_eq!(
            one_issue(&v),
            (
                "model_attributes_type".into(),
                json!(["body", "telemetry", 1])
            )
        );
    }

    #[test]
    fn context_limits() {
        let item = json!({"type": "file", "name": "a.rb", "content": "x"});
        let mut v = base();
        v["context"] = json!(vec![item.clone(); 100]);
        assert_eq!(parse_value(&v).unwrap().context.len(), 100);
        v["context"] = json!(vec![item.clone(); 101]);
        assert_eq!(
            one_issue(&v),
            ("too_long".into(), json!(["body", "context"]))
        );

        for (field, max) in [("type", 1024), ("name", 1024), ("content", 500_000)] {
            let mut it = item.clone();
            it[field] = json!("a".repeat(max));
            v["context"] = json!([item.clone(), it.clone()]);
            parse_value(&v).unwrap();
            it[field] = json!("a".repeat(max + 1));
            v["context"] = json!([item.clone(), it]);
            assert_eq!(
                one_issue(&v),
                (
                    "string_too_long".into(),
                    json!(["body", "context", 1, field])
                )
            );
        }
        v["context"] = json!([{"type": "file", "name": "a"}]);
        assert_eq!(
            one_issue(&v),
            ("missing".into(), json!(["body", "context", 0, "content"]))
        );
        let r = {
            v["context"] = json!([item]);
            parse_value(&v).unwrap()
        };
        assert_eq!(
            r.context,
            vec![ContextItem {
                kind: "file".into(),
                name: "a.rb".into(),
                content: "x".into()
            }]
        );
    }

    #[test]
    fn several_issues_are_reported_together_without_input() {
        let mut v = base();
        v["current_file"]["content_above_cursor"] = json!("SECRET".repeat(20_000));
        v["project_path"] = json!(12);
        v["stream"] = json!("perhaps");
        let e = parse_value(&v).unwrap_err();
        let list = validation_issues(&e);
        assert_eq!(list.len(), 3);
        assert!(!e.body.contains("SECRET"));
        assert!(!e.body.contains("perhaps"));
        assert!(!e.body.contains("\"input\""));
    }

    #[test]
    fn malformed_and_non_object_bodies() {
        let e = parse(b"{\"current_file\": ").unwrap_err();
        assert_eq!(validation_issues(&e)[0]["type"], "json_invalid");
        let e = parse(b"").unwrap_err();
        assert_eq!(validation_issues(&e)[0]["type"], "missing");
        let e = parse(b"\"str\"").unwrap_err();
        assert_eq!(validation_issues(&e)[0]["type"], "model_attributes_type");
    }

    #[test]
    fn unknown_fields_are_ignored_and_secrets_dropped() {
        let mut v = base();
        v["model_api_key"] = json!("sk-SECRET");
        v["whatever"] = json!({"deep": [1, 2, 3]});
        v["user_instruction"] = json!(42);
        let r = parse_value(&v).unwrap();
        assert!(!format!("{r:?}").contains("sk-SECRET"));
    }

    #[test]
    fn body_of_600_000_bytes_works() {
        let mut v = base();
        v["current_file"]["content_above_cursor"] = json!("a".repeat(100_000));
        v["current_file"]["content_below_cursor"] = json!("b".repeat(100_000));
        v["context"] = json!([
            {"type": "file", "name": "x", "content": "c".repeat(390_000)}
        ]);
        let body = v.to_string();
        assert!(
            body.len() >= 590_000 && body.len() <= 600_000,
            "{}",
            body.len()
        );
        let r = parse(body.as_bytes()).unwrap();
        assert_eq!(r.context[0].content.len(), 390_000);
    }
}
