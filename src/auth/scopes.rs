//! Authorization: does the verified token grant the unit primitive an endpoint needs?
//! (docs/gitlab-contract.md#scopes and #errors).
//!
//! The gateway's `can(unit_primitive, disallowed_issuers)` is true when the unit primitive is
//! in the token's `scopes` and the token's `iss` is not disallowed; an auth-bypass user can
//! do everything. A refusal is HTTP 403 with FastAPI's body `{"detail":"<message>"}`.
//!
//! Difference from the gateway, on purpose: on the LiteLLM/self-hosted path of
//! `/v2/code/completions` (and the prompt-based generation component of v3/v4) the gateway's
//! missing-scope error is not caught and becomes a plain-text 500; this filter answers a
//! proper 403 there too (the caller picks the detail, e.g. [`CODE_COMPLETIONS`]).

use super::rules::Claims;

/// The gateway's own issuer / service name (`AIGW_CLOUD_CONNECTOR_SERVICE_NAME` default).
/// Tokens it minted itself carry `iss = aud = GATEWAY_ISSUER`.
pub const GATEWAY_ISSUER: &str = "gitlab-ai-gateway";

/// `/v2/code/completions` detail.
pub const CODE_COMPLETIONS: &str = "Unauthorized to access code completions";
/// `/v2/code/generations` detail.
pub const CODE_GENERATIONS: &str = "Unauthorized to access code generations";
/// `/v3/code/completions`, `/v4/code/suggestions` detail.
pub const CODE_SUGGESTIONS: &str = "Unauthorized to access code suggestions";
/// `/v2/chat/agent` detail.
pub const DUO_CHAT: &str = "Unauthorized to access duo chat";
/// `/v1/search/gitlab-docs` detail (unit primitive `documentation_search`; AIGW 18.5
/// `ai_gateway/api/v1/search/docs.py`).
pub const DOCUMENTATION_SEARCH: &str = "Unauthorized to search documentations";
/// `/v1/code/user_access_token` detail.
pub const USER_ACCESS_TOKEN: &str = "Unauthorized to create user access token";

/// What an endpoint requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement<'a> {
    /// Unit primitive that must be in `scopes` (e.g. `complete_code`).
    pub unit_primitive: &'a str,
    /// Refuse tokens whose `iss` is [`GATEWAY_ISSUER`] (generations, v3/v4 completion
    /// component, user access token).
    pub reject_gateway_issuer: bool,
    /// The 403 `detail` message.
    pub denied_detail: String,
}

/// `claims == None` means authentication is bypassed: everything is allowed.
pub fn can(claims: Option<&Claims>, unit_primitive: &str) -> bool {
    can_with(claims, unit_primitive, false)
}

/// [`can`], also refusing tokens issued by the gateway itself when `reject_gateway_issuer`.
pub fn can_with(
    claims: Option<&Claims>,
    unit_primitive: &str,
    reject_gateway_issuer: bool,
) -> bool {
    let Some(c) = claims else {
        return true;
    };
    if reject_gateway_issuer && c.iss.as_deref() == Some(GATEWAY_ISSUER) {
        return false;
    }
    c.scopes.iter().any(|s| s == unit_primitive)
}

/// `Ok(())` or `Err((403, "{\"detail\":\"...\"}"))`.
pub fn authorize(claims: Option<&Claims>, req: &Requirement) -> Result<(), (u16, String)> {
    if can_with(claims, req.unit_primitive, req.reject_gateway_issuer) {
        Ok(())
    } else {
        Err(denied(&req.denied_detail))
    }
}

/// A 403 with `{"detail":"<detail>"}` (JSON-escaped).
pub fn denied(detail: &str) -> (u16, String) {
    (403, serde_json::json!({ "detail": detail }).to_string())
}

/// `/v1/prompts/*` detail: `Unauthorized to access '<prompt_id>'`.
pub fn prompt_detail(prompt_id: &str) -> String {
    format!("Unauthorized to access '{prompt_id}'")
}

/// `/v1/chat/{x}` and context-category detail: `Unauthorized to access <unit_primitive>`.
pub fn unit_primitive_detail(unit_primitive: &str) -> String {
    format!("Unauthorized to access {unit_primitive}")
}

/// The unit primitive for an `additional_context` category: `include_<category>_context`.
pub fn context_unit_primitive(category: &str) -> String {
    format!("include_{category}_context")
}

/// `/v2/chat/agent`: the detail for the first `additional_context` category whose
/// `include_<category>_context` scope is missing (`Unauthorized to access
/// include_file_context`), or `None` when all are granted.
pub fn missing_context_scopes(claims: Option<&Claims>, categories: &[&str]) -> Option<String> {
    categories
        .iter()
        .map(|c| context_unit_primitive(c))
        .find(|up| !can(claims, up))
        .map(|up| unit_primitive_detail(&up))
}

/// `/v1/code/user_access_token`: the scopes to copy into a gateway-minted token: those of
/// `complete_code` and `ai_gateway_model_provider_proxy` the caller holds, never for a token
/// the gateway issued itself. Empty → 403 [`USER_ACCESS_TOKEN`].
pub fn user_access_token_scopes(claims: Option<&Claims>) -> Vec<&'static str> {
    ["complete_code", "ai_gateway_model_provider_proxy"]
        .into_iter()
        .filter(|up| can_with(claims, up, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_scopes(scopes: &[&str], iss: Option<&str>) -> Claims {
        Claims {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            iss: iss.map(Into::into),
            ..Claims::default()
        }
    }

    #[test]
    fn can_checks_scopes_and_bypass() {
        let c = with_scopes(&["complete_code", "duo_chat"], Some("https://gl"));
        assert!(can(Some(&c), "complete_code"));
        assert!(!can(Some(&c), "generate_code"));
        assert!(!can(Some(&c), "Complete_Code"));
        assert!(!can(Some(&c), ""));
        assert!(can(None, "anything"));
        assert!(!can(Some(&Claims::default()), "complete_code"));
    }

    #[test]
    fn authorize_and_issuer() {
        let rails = with_scopes(&["generate_code"], Some("https://gl"));
        let gw = with_scopes(&["generate_code"], Some(GATEWAY_ISSUER));
        let req = Requirement {
            unit_primitive: "generate_code",
            reject_gateway_issuer: true,
            denied_detail: CODE_GENERATIONS.to_string(),
        };
        assert_eq!(authorize(Some(&rails), &req), Ok(()));
        assert_eq!(
            authorize(Some(&gw), &req),
            Err((
                403,
                r#"{"detail":"Unauthorized to access code generations"}"#.to_string()
            ))
        );
        assert_eq!(authorize(None, &req), Ok(()));
        let req = Requirement {
            reject_gateway_issuer: false,
            ..req
        };
        assert_eq!(authorize(Some(&gw), &req), Ok(()));
        let req = Requirement {
            unit_primitive: "complete_code",
            reject_gateway_issuer: false,
            denied_detail: CODE_COMPLETIONS.into(),
        };
        assert_eq!(
            authorize(Some(&rails), &req).unwrap_err().1,
            r#"{"detail":"Unauthorized to access code completions"}"#
        );
    }

    #[test]
    fn details() {
        assert_eq!(
            denied(&prompt_detail("chat/explain_code")).1,
            r#"{"detail":"Unauthorized to access 'chat/explain_code'"}"#
        );
        assert_eq!(
            denied(&unit_primitive_detail("explain_vulnerability")).1,
            r#"{"detail":"Unauthorized to access explain_vulnerability"}"#
        );
        // JSON escaping of caller-controlled text.
        assert_eq!(
            denied(&prompt_detail("a\"b\\c\n")).1,
            r#"{"detail":"Unauthorized to access 'a\"b\\c\n'"}"#
        );
        assert_eq!(
            denied(DUO_CHAT).1,
            r#"{"detail":"Unauthorized to access duo chat"}"#
        );
        assert_eq!(
            denied(CODE_SUGGESTIONS).1,
            r#"{"detail":"Unauthorized to access code suggestions"}"#
        );
    }

    #[test]
    fn context_scopes() {
        let c = with_scopes(
            &[
                "duo_chat",
                "include_file_context",
                "include_snippet_context",
            ],
            None,
        );
        assert_eq!(missing_context_scopes(Some(&c), &[]), None);
        assert_eq!(missing_context_scopes(Some(&c), &["file", "snippet"]), None);
        assert_eq!(
            missing_context_scopes(Some(&c), &["file", "issue", "merge_request"]).as_deref(),
            Some("Unauthorized to access include_issue_context")
        );
        assert_eq!(missing_context_scopes(None, &["issue"]), None);
        assert_eq!(context_unit_primitive("file"), "include_file_context");
    }

    #[test]
    fn user_access_token() {
        let both = with_scopes(
            &["complete_code", "ai_gateway_model_provider_proxy"],
            Some("x"),
        );
        assert_eq!(
            user_access_token_scopes(Some(&both)),
            vec!["complete_code", "ai_gateway_model_provider_proxy"]
        );
        let gw = with_scopes(&["complete_code"], Some(GATEWAY_ISSUER));
        assert!(user_access_token_scopes(Some(&gw)).is_empty());
        let none = with_scopes(&["duo_chat"], None);
        assert!(user_access_token_scopes(Some(&none)).is_empty());
        assert_eq!(user_access_token_scopes(None).len(), 2);
    }
}
