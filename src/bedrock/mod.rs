//! Amazon Bedrock runtime: Messages bodies, the invoke path, SigV4, event-stream decoding, errors.

pub mod endpoint;
pub mod messages;
pub mod sigv4;
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
