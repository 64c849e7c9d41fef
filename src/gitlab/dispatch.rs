//! One interface for every endpoint family: a GitLab request body → a [`Plan`].
//!
//! Contract: `docs/gitlab-contract.md#endpoints`, `#scopes` (scope per endpoint), `#errors`.
//!
//! The host, for any non-monitoring route:
//! 1. maps the route to an [`Endpoint`] ([`Endpoint::from_route`]);
//! 2. once the whole body arrived, calls [`plan`]; an `Err` is a complete answer to send as is;
//! 3. checks every [`ScopeCheck`] of [`Plan::scopes`] in order against the JWT; the first that
//!    fails is a 403 `{"detail": <its denied_detail>}`;
//! 4. sends [`Plan::invoke`] to Bedrock (`invoke.stream` says which Bedrock API);
//! 5. answers with [`Responder::complete`] for a JSON Bedrock answer, or, for an event stream,
//!    [`Responder::stream_headers`] (status 200), then `stream_start`, `stream_text` per text
//!    delta, `record_usage` for usage events, and `stream_end` (or `stream_error` when the stream
//!    fails midway). Bedrock errors map through `errors::from_bedrock(plan.family, ...)`.
//!
//! Everything a family needs beyond that lives in its responder (ReAct parsing for chat,
//! `{content, usage}` framing for `/v2/prompts`, SSE for `/v4/code/suggestions`...).
//!
//! Order of checks: body validation (422), then endpoint lookups (404/400/422, e.g. unknown
//! prompt or version), model selection (400/422), then the host's scope checks (403). GitLab's
//! gateway checks a prompt's scopes before rendering it, so a request that both lacks the scope
//! and misses an input gets 403 there and 422 here.

use crate::auth::rules::Claims;
use crate::bedrock::messages::MessagesResponse;
use crate::bedrock::InvokeRequest;

use super::chat;
use super::code_suggestions::{self, CodeEndpoint};
use super::errors::{Family, GitlabError};
use super::prompts;
use super::response::GitlabResponse;
use super::routes::Route;

/// Which endpoint a request is for (everything that needs a plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/code/completions`, `/v2/code/generations`, `/v3/code/completions`, `/v4/code/suggestions`.
    Code(CodeEndpoint),
    /// `/v1/prompts/{id}` (`version` 1) and `/v2/prompts/{id}` (`version` 2), id percent-decoded.
    Prompt { version: u8, prompt_id: String },
    /// `/v2/chat/agent`.
    ChatAgent,
    /// `/v1/chat/{invokable}`.
    LegacyChat { invokable: String },
}

impl Endpoint {
    /// The endpoint of a route; `None` for monitoring, documentation search (planned by
    /// [`super::docs_search::plan`]) and unknown routes.
    pub fn from_route(route: &Route) -> Option<Endpoint> {
        Some(match route {
            Route::V2CodeCompletions => Endpoint::Code(CodeEndpoint::V2Completions),
            Route::V2CodeGenerations => Endpoint::Code(CodeEndpoint::V2Generations),
            Route::V3CodeCompletions => Endpoint::Code(CodeEndpoint::V3Completions),
            Route::V4CodeSuggestions => Endpoint::Code(CodeEndpoint::V4Suggestions),
            Route::Prompt { version, prompt_id } => Endpoint::Prompt {
                version: *version,
                prompt_id: prompt_id.clone(),
            },
            Route::ChatAgent => Endpoint::ChatAgent,
            Route::LegacyChat { invokable } => Endpoint::LegacyChat {
                invokable: invokable.clone(),
            },
            // Documentation search calls the knowledge base, not a model: `docs_search::plan`.
            Route::DocsSearch
            | Route::Healthz
            | Route::Ready
            | Route::Docs
            | Route::UserAccessToken
            | Route::Unknown => return None,
        })
    }
}

/// Per-request facts from the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestContext<'a> {
    /// Unix time in seconds (`created` / `timestamp` of answers, `current_date` of prompts).
    pub now_secs: u64,
    /// `x-gitlab-enabled-feature-flags`, `None` when the header is absent.
    pub enabled_feature_flags: Option<&'a str>,
    /// The filter's configured default model (`bedrock/<id>` or a bare id).
    pub default_model: Option<&'a str>,
    /// The verified token's unit primitives (`None` when authentication is bypassed): the
    /// chat agent offers only the tools they allow.
    pub scopes: Option<&'a [String]>,
    /// `x-gitlab-version` (`Gitlab.version_info`, sent by Rails with every AI request), `None`
    /// when absent: the chat agent applies the Duo Classic Chat rules of the GitLab versions
    /// that know them.
    pub gitlab_version: Option<&'a str>,
}

/// One scope the JWT must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeCheck {
    /// The unit primitive that must be in the token's `scopes`.
    pub unit_primitive: String,
    /// Refuse tokens whose issuer is `gitlab-ai-gateway`.
    pub reject_gateway_issuer: bool,
    /// The 403 `detail` when this check fails.
    pub denied_detail: String,
}

impl ScopeCheck {
    /// A check that does not care about the issuer.
    pub fn new(unit_primitive: impl Into<String>, denied_detail: impl Into<String>) -> Self {
        Self {
            unit_primitive: unit_primitive.into(),
            reject_gateway_issuer: false,
            denied_detail: denied_detail.into(),
        }
    }
}

/// What to do for one request.
pub struct Plan {
    /// All must pass, checked in order; the first failure is a 403 with its detail.
    pub scopes: Vec<ScopeCheck>,
    pub invoke: InvokeRequest,
    pub responder: Box<dyn Responder>,
    /// Decides how Bedrock errors are answered (`errors::from_bedrock`).
    pub family: Family,
    /// Low-cardinality name for logs and metrics (`code_completions`, `prompts`, `duo_chat`...).
    pub feature: &'static str,
    /// The prompt definition's model timeout, when it has one (`timeout_secs:`); the host
    /// applies it when shorter than the configured upstream timeout.
    pub timeout_secs: Option<u32>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("scopes", &self.scopes)
            .field("invoke", &self.invoke)
            .field("family", &self.family)
            .field("feature", &self.feature)
            .field("timeout_secs", &self.timeout_secs)
            .finish_non_exhaustive()
    }
}

/// Turns Bedrock's answer into GitLab's, for one request.
pub trait Responder {
    /// The whole answer for a non-stream (JSON) Bedrock response.
    fn complete(&mut self, resp: &MessagesResponse) -> GitlabResponse;
    /// Headers of a streamed answer (status 200); lower-case names, `content-type` included.
    fn stream_headers(&self) -> Vec<(String, String)>;
    /// Bytes to send before the first delta (none unless the family has a preamble).
    fn stream_start(&mut self) -> Vec<u8> {
        Vec::new()
    }
    /// Bytes for one text delta (may be empty: some families hold text back).
    fn stream_text(&mut self, delta: &str) -> Vec<u8>;
    /// Bytes that end the stream (may be empty). Nothing is produced after it.
    fn stream_end(&mut self) -> Vec<u8>;
    /// Bytes to send when the Bedrock stream fails midway; ends the stream. `message` is
    /// Bedrock's error text (some families show it, sanitised; others only end the stream).
    fn stream_error(&mut self, message: &str) -> Vec<u8>;
    /// Usage seen in the stream (`message_start` input tokens, `message_delta` cumulative output
    /// tokens); the latest value of each wins.
    fn record_usage(&mut self, input: Option<u64>, output: Option<u64>);
    /// Bedrock's `stop_reason` (`message_delta`), before [`Self::stream_end`]. Ignored unless
    /// the family reports it (the chat agent's `finish_reason`).
    fn record_stop_reason(&mut self, _stop_reason: &str) {}
}

/// The answer to an authenticated request whose route has no [`Endpoint`] (no Bedrock call):
/// `/v1/code/user_access_token` ([`super::user_access_token::answer`]), else FastAPI's 404.
/// `claims` is `None` when authentication is bypassed; `header` looks up a request header by
/// lower-case name.
pub fn unplanned(
    route: &Route,
    claims: Option<&Claims>,
    header: &dyn Fn(&str) -> Option<String>,
) -> GitlabError {
    match route {
        Route::UserAccessToken => super::user_access_token::answer(claims, header),
        _ => GitlabError::not_found(),
    }
}

/// Validates the body, picks the model, builds the prompt and the responder.
pub fn plan(
    endpoint: &Endpoint,
    body: &[u8],
    ctx: &RequestContext<'_>,
) -> Result<Plan, GitlabError> {
    match endpoint {
        Endpoint::Code(e) => code_suggestions::plan(*e, body, ctx).map(Plan::from),
        Endpoint::Prompt { version, prompt_id } => prompts::plan(*version, prompt_id, body, ctx),
        Endpoint::ChatAgent => chat::agent::plan(body, ctx),
        Endpoint::LegacyChat { invokable } => chat::legacy::plan(invokable, body, ctx),
    }
}

impl From<code_suggestions::Plan> for Plan {
    fn from(p: code_suggestions::Plan) -> Self {
        Plan {
            scopes: vec![ScopeCheck {
                unit_primitive: p.unit_primitive.to_string(),
                reject_gateway_issuer: p.reject_gateway_issuer,
                denied_detail: p.denied_detail,
            }],
            invoke: p.invoke,
            responder: Box::new(p.responder),
            family: Family::CodeSuggestions,
            feature: p.feature,
            timeout_secs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::routes::classify;

    #[test]
    fn routes_map_to_endpoints() {
        assert_eq!(
            Endpoint::from_route(&classify("POST", "/v2/code/completions")),
            Some(Endpoint::Code(CodeEndpoint::V2Completions))
        );
        assert_eq!(
            Endpoint::from_route(&classify("POST", "/v4/code/suggestions")),
            Some(Endpoint::Code(CodeEndpoint::V4Suggestions))
        );
        assert_eq!(
            Endpoint::from_route(&classify("POST", "/v1/prompts/model_configuration%2Fcheck")),
            Some(Endpoint::Prompt {
                version: 1,
                prompt_id: "model_configuration/check".into()
            })
        );
        assert_eq!(
            Endpoint::from_route(&classify("POST", "/v2/chat/agent")),
            Some(Endpoint::ChatAgent)
        );
        assert_eq!(
            Endpoint::from_route(&classify("POST", "/v1/chat/explain_code")),
            Some(Endpoint::LegacyChat {
                invokable: "explain_code".into()
            })
        );
        assert_eq!(
            Endpoint::from_route(&classify("GET", "/monitoring/ready")),
            None
        );
        assert_eq!(Endpoint::from_route(&classify("POST", "/nope")), None);
    }

    #[test]
    fn unplanned_routes() {
        let none = |_: &str| None;
        assert_eq!(
            unplanned(&classify("POST", "/nope"), None, &none),
            GitlabError::not_found()
        );
        let e = unplanned(&classify("POST", "/v1/code/user_access_token"), None, &none);
        assert_eq!(
            (e.status, e.body.as_str()),
            (
                400,
                r#"{"detail":"Missing X-Gitlab-Global-User-Id header"}"#
            )
        );
        assert_eq!(
            Endpoint::from_route(&classify("POST", "/v1/code/user_access_token")),
            None
        );
    }

    #[test]
    fn code_plans_carry_one_scope_check() {
        let body = code_suggestions::v2::tests::GENERATIONS_EXAMPLE.as_bytes();
        let ctx = RequestContext {
            now_secs: 1,
            ..Default::default()
        };
        let p = plan(&Endpoint::Code(CodeEndpoint::V2Generations), body, &ctx).unwrap();
        assert_eq!(
            p.scopes,
            vec![ScopeCheck {
                unit_primitive: "generate_code".into(),
                reject_gateway_issuer: true,
                denied_detail: "Unauthorized to access code generations".into()
            }]
        );
        assert_eq!(p.family, Family::CodeSuggestions);
        assert_eq!(p.feature, "code_generations");
        assert!(format!("{p:?}").contains("generate_code"));
        let mut r = p.responder;
        assert_eq!(
            r.stream_headers(),
            vec![(
                "content-type".to_string(),
                "text/event-stream; charset=utf-8".to_string()
            )]
        );
        assert_eq!(r.stream_text("abc"), b"abc");
        let e = plan(&Endpoint::Code(CodeEndpoint::V2Completions), b"{}", &ctx).unwrap_err();
        assert_eq!(e.status, 422);
    }

    /// Every endpoint survives junk and near-miss bodies without panicking, and every answer
    /// is either a plan or a JSON error.
    #[test]
    fn hostile_bodies_never_panic() {
        let endpoints = [
            Endpoint::Code(CodeEndpoint::V2Completions),
            Endpoint::Code(CodeEndpoint::V4Suggestions),
            Endpoint::Prompt {
                version: 1,
                prompt_id: "chat/explain_code".into(),
            },
            Endpoint::Prompt {
                version: 2,
                prompt_id: "model_configuration/check".into(),
            },
            Endpoint::Prompt {
                version: 2,
                prompt_id: "\u{0}../..%00".into(),
            },
            Endpoint::ChatAgent,
            Endpoint::LegacyChat {
                invokable: "agent".into(),
            },
            Endpoint::LegacyChat {
                invokable: "".into(),
            },
        ];
        let mut bodies: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"null".to_vec(),
            b"{\"inputs\":{\"selected_text\":{\"a\":[1,{\"b\":null}]},\"input\":\"{{x}}\"},\"prompt_version\":\"^1 || ~0\",\"stream\":1}".to_vec(),
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"\\u0000\",\"additional_context\":[{\"category\":\"file\",\"metadata\":[]}]}]}".to_vec(),
            b"{\"prompt_components\":[{\"type\":\"prompt\",\"metadata\":{\"source\":\"s\",\"version\":\"v\"},\"payload\":{\"content\":[{\"role\":\"system\",\"content\":\"\"}],\"params\":{\"max_tokens_to_sample\":1e300}}}]}".to_vec(),
            "{\"inputs\":{},\"model_metadata\":{\"identifier\":\"bedrock/é\"}}".as_bytes().to_vec(),
            format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        ];
        // pseudo-random bytes and pseudo-random JSON-ish text
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in 0..200 {
            let mut b = Vec::new();
            for _ in 0..(n % 64) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let alphabet = b"{}[]\":,0123456789abcdefnrtul \\eE+-.";
                b.push(if n % 2 == 0 {
                    (x & 0xff) as u8
                } else {
                    alphabet[(x as usize) % alphabet.len()]
                });
            }
            bodies.push(b);
        }
        let ctx = RequestContext {
            now_secs: u64::MAX,
            enabled_feature_flags: Some(",,"),
            default_model: Some("bedrock/anthropic.claude-3-haiku-20240307-v1:0"),
            scopes: None,
            gitlab_version: None,
        };
        for e in &endpoints {
            for b in &bodies {
                match plan(e, b, &ctx) {
                    Ok(mut p) => {
                        let _ = p.responder.stream_text("x");
                        let _ = p.responder.stream_end();
                    }
                    Err(err) => {
                        assert!(serde_json::from_str::<serde_json::Value>(&err.body).is_ok());
                        assert!((400..600).contains(&err.status));
                    }
                }
            }
        }
    }
}
