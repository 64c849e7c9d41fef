//! Bedrock model selection from GitLab's self-hosted model identifier.
//!
//! Contract: `docs/gitlab-contract.md#model-identifier` (identifier `bedrock/<model>` → LiteLLM
//! provider `bedrock`, model `<model>`; an identifier without a provider prefix means
//! `custom_openai`) and `docs/bedrock-contract.md#model-ids` (accepted Bedrock model id forms,
//! 1..=2048 characters).
//!
//! Accepted identifiers:
//! * `bedrock/<id>`, and LiteLLM's route prefixes `bedrock/converse/<id>` and
//!   `bedrock/invoke/<id>` (the route is stripped: this gateway always uses InvokeModel);
//! * `<id>` may be a foundation model id (`anthropic.claude-3-5-sonnet-20240620-v1:0`), a
//!   cross-region inference profile (`us.`/`eu.`/`apac.`/`global.` + foundation id), or an
//!   ARN (foundation-model, inference-profile, application-inference-profile,
//!   provisioned-model, ...).
//!
//! **Decision:** because the request bodies built here are Anthropic Messages bodies, a
//! non-ARN id that is not an Anthropic model (e.g. `bedrock/amazon.nova-pro-v1:0`,
//! `bedrock/meta.llama3-70b-instruct-v1:0`) gets a clear 400 instead of an opaque Bedrock
//! validation error. ARNs cannot be checked and pass. Every Claude generation GitLab lists for
//! Bedrock passes (Claude 3 Haiku to Claude 4.5 and the undated ids of ai-gateway `main`
//! `ai_gateway/model_selection/models.yml`, e.g. `global.anthropic.claude-sonnet-4-6`), with
//! any geography prefix (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `global.`, `us-gov.`).
//!
//! Every error here has FastAPI's list shape `{"detail":[{"type":"value_error","loc":["body"],
//! "msg":"..."}]}`: it is the shape Rails shows to the admin for a non-421 answer to "Test
//! connection" (`detail[0].msg`, `ee/lib/gitlab/llm/ai_gateway/code_suggestions_client.rb`
//! `test_model_connection`); a string detail becomes "Unknown error" there.
//!
//! `model_endpoint` / `model_api_key` are never read (the gateway ignores them for Bedrock
//! too); the api key is never stored or logged.

use serde_json::{Map, Value};

use super::errors::{bounded_text, GitlabError, LocPart, ValidationIssue};
use super::validate::{at, Validator};

/// Maximum length of a Bedrock model identifier (service model `InvokeModelIdentifier`).
pub const MAX_MODEL_ID_LEN: usize = 2048;

/// Longest piece of a rejected identifier quoted back in an error detail.
const MAX_ECHO_CHARS: usize = 100;

/// Longest `model_metadata.identifier` GitLab's gateway accepts.
pub const MAX_METADATA_IDENTIFIER: usize = 1000;
/// Longest `model_metadata.api_key` GitLab's gateway accepts.
pub const MAX_METADATA_API_KEY: usize = 2000;
/// Longest `model_metadata.name` / `.provider`.
pub const MAX_METADATA_NAME: usize = 255;

/// Reads `model_metadata` (`{provider, name, endpoint?, api_key?, identifier?}`) from a body
/// and returns its `identifier`. In GitLab 18.x a middleware reads this object, not the
/// endpoint's schema; here it is checked leniently: when present it must be an object, and
/// `identifier`, `name`, `provider` and `api_key` must be strings within the gateway's limits
/// (422 otherwise). Nothing else is required (`provider`/`name` are not used to pick a Bedrock
/// model). The api key is checked, then dropped: never stored, logged or echoed.
pub fn metadata_identifier(
    v: &mut Validator,
    body: &mut Map<String, Value>,
    base: &[LocPart],
) -> Option<String> {
    let mut mm = v.opt_object(body, "model_metadata", base)?;
    let loc = at(base, "model_metadata");
    let identifier = v.opt_str(
        &mut mm,
        "identifier",
        &loc,
        Some(MAX_METADATA_IDENTIFIER),
        false,
    );
    let _ = v.opt_str(&mut mm, "name", &loc, Some(MAX_METADATA_NAME), false);
    let _ = v.opt_str(&mut mm, "provider", &loc, Some(MAX_METADATA_NAME), false);
    let _ = v.opt_str(&mut mm, "api_key", &loc, Some(MAX_METADATA_API_KEY), false);
    identifier
}

/// Resolves the Bedrock model id for a request.
///
/// `identifier` is GitLab's `model_identifier` / `model_metadata.identifier`; when it is
/// absent or blank, `default_model` (the filter's configured default, which may be written
/// with or without the `bedrock/` prefix) is used.
pub fn bedrock_model_id(
    identifier: Option<&str>,
    default_model: Option<&str>,
) -> Result<String, GitlabError> {
    match identifier.map(str::trim).filter(|s| !s.is_empty()) {
        Some(id) => from_identifier(id),
        None => from_default(default_model),
    }
}

/// A model-selection error: FastAPI's list shape with one `value_error` at `["body"]`.
fn model_error(status: u16, msg: &str) -> GitlabError {
    GitlabError::issues(
        status,
        vec![ValidationIssue::new(
            "value_error",
            vec![LocPart::from("body")],
            msg,
        )],
    )
}

fn from_identifier(identifier: &str) -> Result<String, GitlabError> {
    let Some(rest) = strip_prefix_ignore_case(identifier, "bedrock/") else {
        return Err(model_error(
            400,
            &format!(
                "Model identifier '{}' is not served by this gateway: only bedrock/<model-id> identifiers are supported",
                echo(identifier)
            ),
        ));
    };
    let id = strip_route(rest);
    validate_model_id(id).map_err(|why| {
        model_error(
            422,
            &format!("Invalid Bedrock model id in model identifier: {why}"),
        )
    })?;
    check_anthropic(id, identifier)?;
    Ok(id.to_string())
}

fn from_default(default_model: Option<&str>) -> Result<String, GitlabError> {
    let Some(default) = default_model.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(model_error(
            422,
            "No model configured: the request has no model identifier and the gateway has no default model; set the self-hosted model identifier to bedrock/<model-id> in GitLab or configure a default model",
        ));
    };
    let id = match strip_prefix_ignore_case(default, "bedrock/") {
        Some(rest) => strip_route(rest),
        None => default,
    };
    validate_model_id(id).map_err(|why| {
        model_error(
            500,
            &format!("The gateway's default model is invalid: {why}"),
        )
    })?;
    check_anthropic(id, default)?;
    Ok(id.to_string())
}

/// Checks a bare Bedrock model id: 1..=2048 characters of `A-Za-z0-9-._:/`.
/// The error text never quotes the id.
pub fn validate_model_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("the model id is empty");
    }
    if id.len() > MAX_MODEL_ID_LEN {
        return Err("the model id is longer than 2048 characters");
    }
    let ok = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'/'));
    if !ok {
        return Err("only letters, digits and - . _ : / are allowed");
    }
    Ok(())
}

/// `converse/<id>` and `invoke/<id>` are LiteLLM route selectors, not part of the id.
fn strip_route(rest: &str) -> &str {
    for route in ["converse/", "invoke/"] {
        if let Some(id) = strip_prefix_ignore_case(rest, route) {
            return id;
        }
    }
    rest
}

/// Non-ARN ids must name an Anthropic model, optionally behind a geography prefix
/// (`us.`, `eu.`, `apac.`, `global.`, `us-gov.`, or any other short lower-case region group).
fn check_anthropic(id: &str, shown: &str) -> Result<(), GitlabError> {
    if is_anthropic(id) {
        Ok(())
    } else {
        Err(model_error(
            400,
            &format!(
                "Model identifier '{}' is not supported by this gateway: it serves only Anthropic Claude models on Amazon Bedrock (bedrock/anthropic.claude-..., their us./eu./apac./global. inference profiles, or inference-profile / provisioned-model ARNs)",
                echo(shown)
            ),
        ))
    }
}

/// True for ARNs (not checkable) and `[<geo>.]anthropic.<model>` ids.
pub fn is_anthropic(id: &str) -> bool {
    if id.starts_with("arn:") {
        return true;
    }
    id.starts_with("anthropic.")
        || id.split_once('.').is_some_and(|(geo, rest)| {
            !geo.is_empty()
                && geo.len() <= 8
                && geo.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                && rest.starts_with("anthropic.")
        })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// A bounded, control-character-free copy of user input for error texts.
fn echo(s: &str) -> String {
    bounded_text(s, MAX_ECHO_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: &str) -> String {
        bedrock_model_id(Some(id), None).unwrap_or_else(|e| panic!("{id}: {}", e.body))
    }

    fn err(id: Option<&str>, default: Option<&str>) -> GitlabError {
        bedrock_model_id(id, default).expect_err("should fail")
    }

    /// `detail[0].msg`, what Rails shows; asserts the list shape.
    fn msg(e: &GitlabError) -> String {
        let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        let list = v["detail"].as_array().expect("list detail");
        assert_eq!(list.len(), 1, "{}", e.body);
        assert_eq!(list[0]["type"], "value_error");
        assert_eq!(list[0]["loc"], serde_json::json!(["body"]));
        list[0]["msg"].as_str().unwrap().to_string()
    }

    /// Every Claude generation GitLab lists for Bedrock (GitLab's supported-models docs,
    /// ai-gateway `main` `ai_gateway/model_selection/models.yml`), as foundation ids.
    const CLAUDE_MODELS: &[&str] = &[
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "anthropic.claude-sonnet-4-20250514-v1:0",
        "anthropic.claude-opus-4-20250514-v1:0",
        "anthropic.claude-opus-4-1-20250805-v1:0",
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        "anthropic.claude-opus-4-5-20251101-v1:0",
        "anthropic.claude-sonnet-4-6",
        "anthropic.claude-opus-4-6-v1",
        "anthropic.claude-opus-4-7",
    ];

    #[test]
    fn every_claude_generation_with_every_profile_prefix_and_arn() {
        for model in CLAUDE_MODELS {
            assert_eq!(ok(&format!("bedrock/{model}")), *model);
            for geo in ["us", "eu", "apac", "global", "jp", "au", "us-gov"] {
                let id = format!("{geo}.{model}");
                assert_eq!(ok(&format!("bedrock/{id}")), id);
                assert_eq!(ok(&format!("bedrock/converse/{id}")), id);
                let arn = format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/{id}");
                assert_eq!(ok(&format!("bedrock/{arn}")), arn);
            }
            let arn = format!("arn:aws:bedrock:eu-central-1::foundation-model/{model}");
            assert_eq!(ok(&format!("bedrock/invoke/{arn}")), arn);
            assert!(is_anthropic(model));
        }
    }

    #[test]
    fn bedrock_forms() {
        assert_eq!(
            ok("bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"),
            "anthropic.claude-3-5-sonnet-20240620-v1:0"
        );
        assert_eq!(
            ok("  bedrock/us.anthropic.claude-3-7-sonnet-20250219-v1:0 "),
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
        );
        for geo in ["eu", "apac", "global", "jp"] {
            let id = format!("{geo}.anthropic.claude-sonnet-4-20250514-v1:0");
            assert_eq!(ok(&format!("bedrock/{id}")), id);
        }
        assert_eq!(
            ok("bedrock/converse/anthropic.claude-3-haiku-20240307-v1:0"),
            "anthropic.claude-3-haiku-20240307-v1:0"
        );
        assert_eq!(
            ok("bedrock/invoke/us.anthropic.claude-3-haiku-20240307-v1:0"),
            "us.anthropic.claude-3-haiku-20240307-v1:0"
        );
        assert_eq!(ok("Bedrock/anthropic.claude-v2"), "anthropic.claude-v2");
    }

    #[test]
    fn arn_forms() {
        for arn in [
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc",
            "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/xyz",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0",
            "arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:imported-model/m1",
        ] {
            assert_eq!(ok(&format!("bedrock/{arn}")), arn);
            assert_eq!(ok(&format!("bedrock/invoke/{arn}")), arn);
        }
    }

    #[test]
    fn non_bedrock_identifiers_get_400() {
        for id in [
            "custom_openai/gpt-4",
            "claude-3",
            "vertex_ai/claude-3-5-sonnet@20240620",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "openai/bedrock/anthropic.claude",
        ] {
            let e = err(Some(id), Some("bedrock/anthropic.claude-v2"));
            assert_eq!(e.status, 400, "{id}");
            assert_eq!(
                msg(&e),
                format!("Model identifier '{id}' is not served by this gateway: only bedrock/<model-id> identifiers are supported")
            );
        }
    }

    #[test]
    fn non_anthropic_bedrock_models_get_400_with_a_list_detail() {
        for id in [
            "bedrock/meta.llama3-70b-instruct-v1:0",
            "bedrock/us.meta.llama3-2-90b-instruct-v1:0",
            "bedrock/amazon.titan-text-express-v1",
            "bedrock/amazon.nova-pro-v1:0",
            "bedrock/mistral.mistral-large-2402-v1:0",
            "bedrock/mistral.mixtral-8x7b-instruct-v0:1",
            "bedrock/cohere.command-r-plus-v1:0",
            "bedrock/ai21.jamba-1-5-large-v1:0",
            "bedrock/us.deepseek.r1-v1:0",
            "bedrock/converse/meta.llama3-1-70b-instruct-v1:0",
            "bedrock/averylonggeo.anthropic.claude",
            "bedrock/US.anthropic.claude-3-haiku-20240307-v1:0",
        ] {
            let e = err(Some(id), None);
            assert_eq!(e.status, 400, "{id}");
            assert_eq!(
                msg(&e),
                format!("Model identifier '{id}' is not supported by this gateway: it serves only Anthropic Claude models on Amazon Bedrock (bedrock/anthropic.claude-..., their us./eu./apac./global. inference profiles, or inference-profile / provisioned-model ARNs)")
            );
        }
        // the configured default model is checked the same way
        let e = err(None, Some("bedrock/meta.llama3-70b-instruct-v1:0"));
        assert_eq!(e.status, 400);
        assert!(msg(&e).contains("only Anthropic Claude models"));
    }

    #[test]
    fn invalid_ids_get_422_without_echo() {
        let long = format!("bedrock/anthropic.{}", "a".repeat(2040));
        for id in [
            "bedrock/",
            "bedrock/converse/",
            "bedrock/anthropic.claude v2",
            "bedrock/anthropic.claude?x=1",
            "bedrock/anthropic.claude%3A0",
            "bedrock/anthropic.claudé",
            long.as_str(),
        ] {
            let e = err(Some(id), None);
            assert_eq!(e.status, 422, "{id}");
            assert!(
                msg(&e).starts_with("Invalid Bedrock model id"),
                "{}",
                e.body
            );
            assert!(!e.body.contains("claude v2"));
        }
        // exactly 2048 characters is fine
        let max = format!("anthropic.{}", "a".repeat(2048 - 10));
        assert_eq!(ok(&format!("bedrock/{max}")).len(), 2048);
    }

    #[test]
    fn default_model_is_used_when_identifier_missing() {
        for id in [None, Some(""), Some("   ")] {
            assert_eq!(
                bedrock_model_id(id, Some("bedrock/anthropic.claude-3-haiku-20240307-v1:0"))
                    .unwrap(),
                "anthropic.claude-3-haiku-20240307-v1:0"
            );
            assert_eq!(
                bedrock_model_id(id, Some("us.anthropic.claude-3-haiku-20240307-v1:0")).unwrap(),
                "us.anthropic.claude-3-haiku-20240307-v1:0"
            );
        }
        let e = err(None, None);
        assert_eq!(e.status, 422);
        assert!(msg(&e).starts_with("No model configured: "));
        assert_eq!(err(Some(""), Some("  ")).status, 422);
        assert_eq!(err(None, Some("bad id")).status, 500);
    }

    #[test]
    fn metadata_identifier_is_read_leniently() {
        use crate::gitlab::validate::body_loc;
        let mut v = Validator::new();
        let mut body = serde_json::json!({"model_metadata": {"provider": "openai", "name": "claude_3",
            "endpoint": "https://x", "api_key": "secret", "identifier": "bedrock/anthropic.claude-v2"}})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            metadata_identifier(&mut v, &mut body, &body_loc()).as_deref(),
            Some("bedrock/anthropic.claude-v2")
        );
        assert!(v.is_clean());
        let mut body = serde_json::json!({}).as_object().cloned().unwrap();
        assert_eq!(metadata_identifier(&mut v, &mut body, &body_loc()), None);
        assert!(v.is_clean());
        let mut body =
            serde_json::json!({"model_metadata": {"identifier": 5, "api_key": "k".repeat(2001)}})
                .as_object()
                .cloned()
                .unwrap();
        assert_eq!(metadata_identifier(&mut v, &mut body, &body_loc()), None);
        let e = v.finish().unwrap_err();
        assert!(
            e.body
                .contains(r#""loc":["body","model_metadata","identifier"]"#),
            "{}",
            e.body
        );
        assert!(
            e.body
                .contains(r#""loc":["body","model_metadata","api_key"]"#),
            "{}",
            e.body
        );
        assert!(!e.body.contains("kkkk"));
        let mut v = Validator::new();
        let mut body = serde_json::json!({"model_metadata": "x"})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(metadata_identifier(&mut v, &mut body, &body_loc()), None);
        assert!(!v.is_clean());
    }

    #[test]
    fn echo_is_bounded() {
        let id = format!("x/{}\n", "y".repeat(500));
        let e = err(Some(&id), None);
        assert!(e.body.len() < 400, "{}", e.body);
        assert!(!e.body.contains("\\n"));
    }
}
