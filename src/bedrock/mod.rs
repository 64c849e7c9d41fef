//! Amazon Bedrock runtime: Messages bodies, the invoke path, SigV4, event-stream decoding, errors.
//!
//! Everything here is host-independent (no proxy-wasm calls; time is always a parameter).
//! Data flow:
//!
//! * Request: [`InvokeRequest`] + [`endpoint::Endpoint`] + [`invoke::UpstreamAuth`] →
//!   [`invoke::build`] (body from [`messages`], path from [`uri`], signature from [`sigv4`]) →
//!   [`invoke::UpstreamRequest`], which the host sends as `:path`/`:authority`/headers/body.
//!   Client headers for which [`invoke::stripped_request_header`] is true are never forwarded.
//! * Non-streaming answer: 200 body → [`messages::MessagesResponse`].
//! * Streaming answer: body chunks → [`eventstream::EventStreamDecoder::push`] →
//!   [`eventstream::StreamFrame`] (wrapping a [`stream::StreamEvent`], an in-stream exception,
//!   or `Malformed`).
//! * Credentials fetched at run time (web identity through STS, container endpoint, EC2
//!   IMDSv2; token files served by the launcher): [`credentials::Source`] from the environment
//!   → [`credentials::Fetch`] state machine (the host dispatches its [`credentials::HttpCall`]s
//!   to the cluster each names) → [`credentials::Fetched`], shared across VMs and refreshed at
//!   [`credentials::refresh_at`].
//! * Knowledge base search (Agents for Amazon Bedrock Runtime): [`retrieve::RetrieveRequest`] +
//!   the agent runtime's [`endpoint::Endpoint`] → [`retrieve::build`] (SigV4 only) → the same
//!   [`invoke::UpstreamRequest`]; the 200 body → [`retrieve::RetrieveResponse`].
//! * Errors: non-2xx status + `x-amzn-errortype` + body → [`errors::parse_error`] →
//!   [`errors::BedrockError`]; in-stream exceptions map through
//!   [`errors::BedrockError::from_stream_exception`].
//!
//! Contract: `docs/bedrock-contract.md`.

pub mod credentials;
pub mod endpoint;
pub mod errors;
pub mod eventstream;
pub mod invoke;
mod lenient;
pub mod messages;
pub mod retrieve;
pub mod sigv4;
pub mod stream;
pub mod uri;

/// What the GitLab side asks of Bedrock: one InvokeModel (or its streaming twin) call.
#[derive(Debug, Clone, PartialEq)]
pub struct InvokeRequest {
    /// The Bedrock model id, ARN or inference profile, as the user wrote it (not yet encoded).
    pub model_id: String,
    /// `true` for `/invoke-with-response-stream`.
    pub stream: bool,
    pub body: messages::MessagesRequest,
}
