//! GitLab JWT authentication and authorization, host-independent (no proxy-wasm calls; the
//! clock is a `now: u64` in seconds from the host).
//!
//! Contract: the GitLab AI Gateway rules in docs/gitlab-contract.md#authentication (headers, JWT
//! validation, key sources, scopes) and #errors (exact 401/403 bodies).
//!
//! Host flow:
//! 1. request headers → [`extract_token`] → [`TokenCache::get`] (hit: skip 2)
//! 2. [`verify`] with the current [`KeySet`] → [`TokenCache::insert`]; on
//!    [`AuthError::UnknownKid`] ask [`RefreshPolicy::allow_unknown_kid_refresh`] and, if
//!    allowed, refresh the JWKS and retry once
//! 3. [`check_bindings`] (every request, also on cache hits); [`seat_count_warning`] is
//!    log-only
//! 4. after the body is parsed: [`authorize`] with the endpoint's unit primitive.
//!
//! Keys: [`discovery_url`] → [`jwks_uri_from_discovery`] → fetch → [`merge_jwks_json`]
//! (plus [`self_signed_jwks`] for `AIGW_SELF_SIGNED_JWT__*` keys) → shared data →
//! [`KeySet::from_jwks`] in every worker; [`RefreshPolicy`] schedules refreshes from
//! [`max_age`]. Clear the [`TokenCache`] whenever the key set changes.
//!
//! Deliberate differences from the gateway (all stricter or clearer, none looser):
//! - `exp` and `aud` are REQUIRED (python-jose accepts tokens lacking them; GitLab Rails
//!   always sends both).
//! - Tokens are bounded in size ([`AuthConfig::max_token_bytes`], default 8 KiB).
//! - A token's `kid` must name a known key (python-jose tries every key); tokens without a
//!   `kid` are tried against every key, like python-jose.
//! - A missing scope on the LiteLLM/self-hosted code-completion path is a 403 with a JSON
//!   `detail` (the gateway lets the error escape as a plain-text 500).
//! - Keys are refreshed at least hourly and, rate limited, on an unknown `kid` (the gateway
//!   caches its JWKS for 24 h and never refreshes early).
//!
//! Same as the gateway: RS256 only, leeway 0, `exp == now` still valid, issuer not checked,
//! future `iat` not rejected, header names case-insensitive, `X-Gitlab-Authentication-Type`
//! compared exactly with `oidc`.

pub mod cache;
mod claims;
pub mod error;
pub mod headers;
pub mod keys;
pub mod rs256;
#[cfg(test)]
mod rs256_wycheproof;
pub mod rules;
pub mod scopes;

pub use cache::TokenCache;
pub use error::AuthError;
pub use headers::Headers;
pub use keys::{
    discovery_url, http_target, jwk_from_private_pem, jwks_uri_from_discovery, max_age,
    merge_jwks_json, self_signed_jwks, HttpTarget, KeySet, RefreshPolicy,
};
pub use rs256::Rs256Key;
pub use rules::{
    check_bindings, check_bindings_for_issuer, extract_token, seat_count_warning, verify,
    AuthConfig, Claims,
};
pub use scopes::{authorize, can, missing_context_scopes, Requirement, GATEWAY_ISSUER};
