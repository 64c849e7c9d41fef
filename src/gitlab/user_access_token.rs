//! `POST /v1/code/user_access_token`: the token GitLab asks for before it lets IDEs talk to
//! the gateway directly ("direct connections"; Rails calls it unless they are disabled).
//!
//! The self-hosted gateway mints that token with its own signing key
//! (`AIGW_SELF_SIGNED_JWT__SIGNING_KEY`, empty by default in ai-gateway `ai_gateway/config.py`).
//! This filter has no signing key, so it answers exactly as the self-hosted gateway does
//! without one (ai-gateway `ai_gateway/api/v1/code/user_access_token.py`,
//! `self-hosted-v18.5.0-ee`), in the gateway's order:
//! 1. (authentication, as for every endpoint: 401 before routing);
//! 2. the caller must hold `complete_code` or `ai_gateway_model_provider_proxy`, from a token
//!    the gateway did not issue itself, else 403 `Unauthorized to create user access token`;
//! 3. `X-Gitlab-Global-User-Id`, `X-Gitlab-Instance-Id`, `X-Gitlab-Realm` must be present and
//!    non-empty, else 400 `Missing <name> header`;
//! 4. `token_authority.encode(...)` fails without a key and the gateway answers 500
//!    `{"detail":"Failed to generate JWT"}`.
//!
//! Rails (`ee/lib/gitlab/llm/ai_gateway/code_suggestions_client.rb` `direct_access_token`)
//! turns any non-2xx into `Token creation failed`, and the IDE keeps using indirect connections
//! through GitLab, which this gateway serves. (ai-gateway `main` drops step 3 and reads those
//! values from the token's claims; the answer without a key is the same 500.)

use crate::auth::rules::Claims;
use crate::auth::scopes::{user_access_token_scopes, USER_ACCESS_TOKEN};

use super::errors::GitlabError;

/// The 500 detail when no token can be signed.
pub const FAILED_TO_GENERATE: &str = "Failed to generate JWT";

/// The headers the gateway requires, in its order, with the names its 400 details use.
pub const REQUIRED_HEADERS: [(&str, &str); 3] = [
    ("x-gitlab-global-user-id", "X-Gitlab-Global-User-Id"),
    ("x-gitlab-instance-id", "X-Gitlab-Instance-Id"),
    ("x-gitlab-realm", "X-Gitlab-Realm"),
];

/// The answer for an authenticated request (`claims` is `None` when authentication is
/// bypassed); `header` looks up a request header by lower-case name.
pub fn answer(claims: Option<&Claims>, header: &dyn Fn(&str) -> Option<String>) -> GitlabError {
    if user_access_token_scopes(claims).is_empty() {
        return GitlabError::detail(403, USER_ACCESS_TOKEN);
    }
    for (name, shown) in REQUIRED_HEADERS {
        if header(name).is_none_or(|v| v.is_empty()) {
            return GitlabError::detail(400, &format!("Missing {shown} header"));
        }
    }
    GitlabError::detail(500, FAILED_TO_GENERATE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scopes::GATEWAY_ISSUER;

    fn claims(scopes: &[&str], iss: Option<&str>) -> Claims {
        Claims {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            iss: iss.map(Into::into),
            ..Claims::default()
        }
    }

    fn all_headers(name: &str) -> Option<String> {
        Some(format!("value of {name}"))
    }

    fn body(e: &GitlabError) -> (u16, String) {
        (e.status, e.body.clone())
    }

    #[test]
    fn without_a_signing_key_the_answer_is_500() {
        for scopes in [
            &["complete_code"][..],
            &["ai_gateway_model_provider_proxy"],
            &["duo_chat", "complete_code"],
        ] {
            let c = claims(scopes, Some("https://gitlab.example.com"));
            assert_eq!(
                body(&answer(Some(&c), &all_headers)),
                (500, r#"{"detail":"Failed to generate JWT"}"#.to_string())
            );
        }
        // authentication bypassed: every scope is granted
        assert_eq!(answer(None, &all_headers).status, 500);
    }

    #[test]
    fn scopes_come_first() {
        for c in [
            claims(&["duo_chat", "generate_code"], None),
            claims(&[], None),
            claims(&["complete_code"], Some(GATEWAY_ISSUER)),
        ] {
            assert_eq!(
                body(&answer(Some(&c), &|_| None)),
                (
                    403,
                    r#"{"detail":"Unauthorized to create user access token"}"#.to_string()
                )
            );
        }
    }

    #[test]
    fn missing_headers_in_the_gateways_order() {
        let c = claims(&["complete_code"], None);
        let e = answer(Some(&c), &|_| None);
        assert_eq!(
            body(&e),
            (
                400,
                r#"{"detail":"Missing X-Gitlab-Global-User-Id header"}"#.to_string()
            )
        );
        let only_user = |n: &str| (n == "x-gitlab-global-user-id").then(|| "u".to_string());
        assert_eq!(
            body(&answer(Some(&c), &only_user)).1,
            r#"{"detail":"Missing X-Gitlab-Instance-Id header"}"#
        );
        let no_realm = |n: &str| match n {
            "x-gitlab-realm" => Some(String::new()),
            _ => Some("x".to_string()),
        };
        assert_eq!(
            body(&answer(Some(&c), &no_realm)).1,
            r#"{"detail":"Missing X-Gitlab-Realm header"}"#
        );
    }
}
