//! The GitLab side of the gateway: what GitLab sends, what it expects back.
//!
//! Contract: `docs/gitlab-contract.md` (anchors below are in that file).
//!
//! * [`errors`] — FastAPI-shaped error answers and the Bedrock → GitLab error mapping (#errors).
//! * [`response`] — [`GitlabResponse`], a complete host-independent answer.
//! * [`model`] — Bedrock model id from GitLab's `bedrock/<model-id>` identifier
//!   (#model-identifier).
//! * [`validate`] — pydantic-like body validation with FastAPI `loc` paths (#validation-errors).
//! * [`typed_body`] — typed, borrowed fast paths in front of it (same answers, less work).
//! * [`routes`] — which endpoint a method + path is (#endpoints).
//! * [`dispatch`] — the one interface the host uses for every endpoint family:
//!   [`Endpoint`] + body → [`plan`] → [`Plan`] (scopes, Bedrock call, [`Responder`]).
//! * [`code_suggestions`] — `/v2/code/completions`, `/v2/code/generations`,
//!   `/v3/code/completions`, `/v4/code/suggestions` (#code-completions to
//!   #code-generations-v3-v4, #completion-prompt, #generation-prompt).
//! * [`prompts`] — `/v1/prompts/{id}`, `/v2/prompts/{id}` (#named-prompts).
//! * [`chat`] — `/v2/chat/agent` (#chat-agent) and `/v1/chat/{invokable}` (#legacy-chat).
//! * [`service_page`] — the public answers: monitoring probes and the `/docs` page.
//! * [`user_access_token`] — `/v1/code/user_access_token`, answered without Bedrock.
//! * [`docs_search`] — `/v1/search/gitlab-docs` (#documentation-search): a knowledge base
//!   `Retrieve` instead of a model call, planned on its own ([`docs_search::plan`]).

pub mod chat;
pub mod code_suggestions;
pub mod dispatch;
pub mod docs_search;
pub mod errors;
pub mod model;
pub mod prompts;
pub mod response;
pub mod routes;
pub mod service_page;
pub mod typed_body;
pub mod user_access_token;
pub mod validate;

pub use dispatch::{plan, unplanned, Endpoint, Plan, RequestContext, Responder, ScopeCheck};
pub use errors::{Family, GitlabError, ValidationIssue};
pub use response::GitlabResponse;
