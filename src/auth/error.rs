//! Authentication failures and their exact HTTP answers.
//!
//! Every failure is a 401 with a compact JSON body `{"error":"<message>"}`, byte-for-byte the
//! messages of the GitLab AI Gateway (docs/gitlab-contract.md#headers and #errors). The host
//! sets `content-type: application/json`. [`AuthError::reason`] is a short, stable label for
//! logs and metrics; it never contains the token or any claim value.

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    MissingAuthorization,
    /// `Authorization` scheme is not `bearer` (case-insensitive).
    InvalidAuthorization,
    /// `X-Gitlab-Authentication-Type` is missing or not exactly `oidc`.
    InvalidAuthType,
    /// The token failed verification. The label is internal (see [`AuthError::reason`]).
    Forbidden(&'static str),
    /// The token names a `kid` that is not in the current key set. The host may refresh the
    /// key set (rate-limited) and retry once. The kid comes from the token: log it escaped.
    UnknownKid(String),
    /// The key set is empty (JWKS not fetched yet, or every provider failed).
    NoKeys,
    /// A claim does not match its header. The value is the header name as the gateway spells
    /// it: `X-Gitlab-Realm`, `X-Gitlab-Instance-Id` or `X-Gitlab-Global-User-Id`.
    HeaderMismatch(&'static str),
}

impl AuthError {
    /// HTTP status: always 401, like the gateway's authentication middleware.
    pub fn status(&self) -> u16 {
        401
    }

    /// The exact JSON body the gateway sends for this failure.
    pub fn body(&self) -> String {
        let msg = match self {
            AuthError::MissingAuthorization => "No authorization header presented",
            AuthError::InvalidAuthorization => "Invalid authorization header",
            AuthError::InvalidAuthType => {
                "Invalid authentication token type - only OIDC is supported"
            }
            AuthError::Forbidden(_) | AuthError::UnknownKid(_) | AuthError::NoKeys => {
                "Forbidden by auth provider"
            }
            AuthError::HeaderMismatch(header) => {
                // The header names are fixed ASCII identifiers: no JSON escaping needed.
                return format!("{{\"error\":\"Header mismatch '{header}'\"}}");
            }
        };
        format!("{{\"error\":\"{msg}\"}}")
    }

    /// Short stable label for logs and metrics.
    ///
    /// Labels: `missing_header`, `bad_scheme`, `bad_auth_type`, `unknown_kid`, `no_keys`,
    /// `header_mismatch`, and for [`AuthError::Forbidden`] the inner label, one of
    /// `too_large`, `malformed`, `bad_algorithm`, `bad_signature`, `expired`,
    /// `not_yet_valid`, `bad_audience`, `missing_exp`, `missing_aud`, `bad_claims`,
    /// `empty_token`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingAuthorization => "missing_header",
            AuthError::InvalidAuthorization => "bad_scheme",
            AuthError::InvalidAuthType => "bad_auth_type",
            AuthError::Forbidden(reason) => reason,
            AuthError::UnknownKid(_) => "unknown_kid",
            AuthError::NoKeys => "no_keys",
            AuthError::HeaderMismatch(_) => "header_mismatch",
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::HeaderMismatch(h) => write!(f, "header_mismatch ({h})"),
            AuthError::UnknownKid(kid) => write!(f, "unknown_kid ({:?})", kid),
            other => f.write_str(other.reason()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AuthError;

    #[test]
    fn exact_bodies() {
        let cases = [
            (
                AuthError::MissingAuthorization,
                r#"{"error":"No authorization header presented"}"#,
            ),
            (
                AuthError::InvalidAuthorization,
                r#"{"error":"Invalid authorization header"}"#,
            ),
            (
                AuthError::InvalidAuthType,
                r#"{"error":"Invalid authentication token type - only OIDC is supported"}"#,
            ),
            (
                AuthError::Forbidden("expired"),
                r#"{"error":"Forbidden by auth provider"}"#,
            ),
            (
                AuthError::UnknownKid("x".into()),
                r#"{"error":"Forbidden by auth provider"}"#,
            ),
            (
                AuthError::NoKeys,
                r#"{"error":"Forbidden by auth provider"}"#,
            ),
            (
                AuthError::HeaderMismatch("X-Gitlab-Realm"),
                r#"{"error":"Header mismatch 'X-Gitlab-Realm'"}"#,
            ),
            (
                AuthError::HeaderMismatch("X-Gitlab-Instance-Id"),
                r#"{"error":"Header mismatch 'X-Gitlab-Instance-Id'"}"#,
            ),
            (
                AuthError::HeaderMismatch("X-Gitlab-Global-User-Id"),
                r#"{"error":"Header mismatch 'X-Gitlab-Global-User-Id'"}"#,
            ),
        ];
        for (err, body) in cases {
            assert_eq!(err.status(), 401);
            assert_eq!(err.body(), body);
            // Every body is valid JSON with a single "error" string.
            let v: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
            assert!(v["error"].is_string());
        }
    }

    #[test]
    fn reasons() {
        assert_eq!(AuthError::MissingAuthorization.reason(), "missing_header");
        assert_eq!(AuthError::InvalidAuthorization.reason(), "bad_scheme");
        assert_eq!(AuthError::InvalidAuthType.reason(), "bad_auth_type");
        assert_eq!(AuthError::Forbidden("too_large").reason(), "too_large");
        assert_eq!(AuthError::UnknownKid("k".into()).reason(), "unknown_kid");
        assert_eq!(AuthError::NoKeys.reason(), "no_keys");
        assert_eq!(
            AuthError::HeaderMismatch("X-Gitlab-Realm").reason(),
            "header_mismatch"
        );
        assert_eq!(AuthError::Forbidden("expired").to_string(), "expired");
    }
}
