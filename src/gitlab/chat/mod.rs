//! Duo Chat: `POST /v2/chat/agent` (one ReAct step) and `POST /v1/chat/{invokable}` (legacy).
//!
//! Contract: `docs/gitlab-contract.md#chat-agent`, `#legacy-chat`, `#scopes`, `#chat-prompts`.
//!
//! * [`agent`] — the `/v2/chat/agent` request, scopes and Bedrock call.
//! * [`react`] — the incremental ReAct output parser and the NDJSON [`react::AgentResponder`].
//! * [`events`] — the NDJSON event lines GitLab Rails parses.
//! * [`legacy`] — the `/v1/chat/{invokable}` pass-through.

/// The values of the gateway's chat message `role` enum, in the order its errors list them.
pub const MESSAGE_ROLES: &[&str] = &["system", "user", "assistant"];

pub mod agent;
pub mod events;
pub mod legacy;
pub mod react;
