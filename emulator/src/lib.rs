//! `bedrock-emulator`: a local stand-in for the Amazon Bedrock runtime
//! (InvokeModel / InvokeModelWithResponseStream with SigV4 verification,
//! event-stream framing and fault injection), for a knowledge base of the Agents for Amazon
//! Bedrock Runtime (`Retrieve`, same SigV4 verification), for a GitLab OIDC issuer
//! (discovery, JWKS, token minting), and for the AWS credential services
//! (ECS/EKS container endpoint, EC2 IMDSv2). It is the offline demo peer and the
//! upstream of the integration tests and benchmarks.
//!
//! Modules: [`sigv4`] (independent verifier), [`eventstream`] (encoder),
//! [`bedrock`] (validation and fake generation), [`faults`] (model-id knobs),
//! [`kb`] (a knowledge base for `Retrieve`: corpus, score, answer), [`oidc`] (keys, JWKS, minting), [`creds`] (container credentials endpoint
//! and IMDSv2 issuing expiring credentials), [`server`] (HTTP surface), [`ids`].

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bedrock;
pub mod creds;
pub mod eventstream;
pub mod faults;
pub mod ids;
pub mod kb;
pub mod oidc;
pub mod server;
pub mod sigv4;
