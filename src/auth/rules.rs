//! The GitLab AI Gateway authentication rules: header checks, JWT verification and
//! claim/header bindings (docs/gitlab-contract.md#headers, #jwt-rules, #errors).
//!
//! Order, as in the gateway (`gitlab_cloud_connector` `auth.py::authenticate`):
//! 1. [`extract_token`]: `Authorization` present → scheme `bearer` (case-insensitive, the
//!    header is split at its first space) → `X-Gitlab-Authentication-Type` exactly `oidc`.
//!    An empty token (`"Bearer"`, `"Bearer "`) passes the scheme check in the gateway and
//!    then fails verification; here it fails in `extract_token` with the same answer
//!    (`Forbidden("empty_token")`, body "Forbidden by auth provider"), after the auth-type
//!    check, so every header combination gets the gateway's exact body.
//! 2. [`verify`]: RS256 signature against the key set, then `exp`, `nbf`, `iat`, `aud`.
//! 3. [`check_bindings`]: realm, instance id, then subject.
//!
//! Time rules follow python-jose with leeway 0 by default: a token is expired when
//! `now > exp + leeway` (so `exp == now` is still valid), not yet valid when
//! `nbf > now + leeway`; `iat` must be a number when present but is not compared with the
//! clock (python-jose only checks its type).
//!
//! Deliberately STRICTER than the gateway:
//! - `exp` and `aud` are required (python-jose accepts tokens without them; GitLab always
//!   sends both).
//! - Tokens larger than [`AuthConfig::max_token_bytes`] are refused before any parsing.
//! - A `kid` in the token must name a key of the set (python-jose ignores `kid` and tries every
//!   key). A token without `kid` is checked only when the set holds a single key, and refused
//!   otherwise (`missing_kid`): GitLab always names its key, and trying every key would let one
//!   unauthenticated request cost up to [`MAX_KEYS`](crate::auth::keys::MAX_KEYS) RSA
//!   verifications. So no token costs more than one.
//! - Time claims must be JSON numbers (python-jose's `int()` would also take numeric strings);
//!   `sub`, `iss`, `jti`, `gitlab_realm`, `gitlab_instance_id` must be strings and `scopes` a
//!   list of strings when present (`null` counts as absent). `src/auth/claims.rs` reads the
//!   payload under these rules.
//!
//! Like the gateway, the issuer is not checked (it only selects the subject binding).
//!
//! Why the token is not decoded with `jsonwebtoken` (the design's library, here a test
//! dependency): jsonwebtoken 10 can take this crate's RS256 verifier through its `CryptoProvider`
//! hook (tried with `default-features = false`, no backend; all tests of this module pass), but
//! - its claim validation cannot follow the gateway: `exp`/`nbf` are compared with the system
//!   clock (`get_current_timestamp`, not the host time given here), fractional dates are rounded
//!   where python-jose truncates, `aud` of the wrong type passes, a missing `aud` passes unless
//!   required; so it would only parse and dispatch the signature check;
//! - its typed parse is stricter than python-jose's on signed tokens: header members other than
//!   strings (`#[serde(flatten)] extras: HashMap<String, String>`, a typed `jwk`), duplicate
//!   registered claims, or an `exp` such as `[1]` (its `numeric_type` swallows the error
//!   mid-parse) make the whole `decode` fail;
//! - the provider is process-wide (`install_default`, once, no getter) and its verifier factory a
//!   plain `fn` given only the key's `n`/`e` (the Montgomery precomputation must be cached aside);
//! - it adds 109,365 bytes to the release .wasm (980,029 → 1,089,394; memory for every worker)
//!   and a `clock_time_get` import; natively, one
//!   verification took 490,381 instructions instead of 441,151 (+11 %, callgrind).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::claims::Payload;
use super::error::AuthError;
use super::headers::Headers;
use super::keys::KeySet;
use super::rs256::Rs256Key;
use super::scopes::GATEWAY_ISSUER;

/// `Authorization`.
pub const AUTHORIZATION: &str = "authorization";
/// `X-Gitlab-Authentication-Type`.
pub const AUTH_TYPE: &str = "x-gitlab-authentication-type";
/// `X-Gitlab-Realm`.
pub const REALM: &str = "x-gitlab-realm";
/// `X-Gitlab-Instance-Id`.
pub const INSTANCE_ID: &str = "x-gitlab-instance-id";
/// `X-Gitlab-Global-User-Id`.
pub const GLOBAL_USER_ID: &str = "x-gitlab-global-user-id";
/// `X-Gitlab-Duo-Seat-Count`.
pub const DUO_SEAT_COUNT: &str = "x-gitlab-duo-seat-count";

/// Longest `kid` echoed back in [`AuthError::UnknownKid`] (the rest is cut).
const MAX_KID_ECHO: usize = 128;

/// Step 1: the bearer token, after the gateway's header checks (see the module doc for the
/// order). The token is returned exactly as sent after the first space (not trimmed).
pub fn extract_token<H: Headers + ?Sized>(h: &H) -> Result<&str, AuthError> {
    let auth = h
        .get(AUTHORIZATION)
        .ok_or(AuthError::MissingAuthorization)?;
    // Python `str.partition(" ")`: no space → the whole value is the scheme, token "".
    let (scheme, token) = auth.split_once(' ').unwrap_or((auth, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::InvalidAuthorization);
    }
    if h.get(AUTH_TYPE) != Some("oidc") {
        return Err(AuthError::InvalidAuthType);
    }
    if token.is_empty() {
        return Err(AuthError::Forbidden("empty_token"));
    }
    Ok(token)
}

/// Verification settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Required member of `aud` (`AIGW_CLOUD_CONNECTOR_SERVICE_NAME`, default
    /// `gitlab-ai-gateway`).
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, seconds (default 0, like python-jose).
    pub leeway_secs: u64,
    /// Larger tokens are refused before parsing (default 8192 bytes).
    pub max_token_bytes: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            audience: GATEWAY_ISSUER.to_string(),
            leeway_secs: 0,
            max_token_bytes: 8192,
        }
    }
}

/// The claims the filter uses, from a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    /// `aud` as a list (a single string becomes a one-element list).
    pub aud: Vec<String>,
    pub exp: u64,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    /// Unit primitives the token grants (absent → empty).
    pub scopes: Vec<String>,
    pub gitlab_realm: Option<String>,
    pub gitlab_instance_id: Option<String>,
    /// `duo_seat_count` as text (a JSON number is rendered in decimal); other types are
    /// ignored. Only used for logging, like the gateway.
    pub duo_seat_count: Option<String>,
    pub jti: Option<String>,
}

impl Claims {
    /// `true` when the token is within its validity window at `now`.
    pub fn time_valid(&self, now: u64, leeway: u64) -> bool {
        check_times(self.exp, self.nbf, now, leeway).is_ok()
    }
}

fn check_times(exp: u64, nbf: Option<u64>, now: u64, leeway: u64) -> Result<(), AuthError> {
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(AuthError::Forbidden("not_yet_valid"));
    }
    if now > exp.saturating_add(leeway) {
        return Err(AuthError::Forbidden("expired"));
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct RawHeader {
    alg: Option<String>,
    #[serde(default)]
    kid: Option<Value>,
}

/// How the RS256 signature of a token is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck<'a> {
    /// Verify it here (the in-wasm RS256 verifier).
    Verify,
    /// Envoy's native `jwt_authn` filter, configured with the same GitLab JWKS and reading the
    /// same single `Authorization: Bearer` header, verified a token and reported its `jti`. The
    /// filter trusts that only for a token whose own `jti` is exactly this one and whose `kid`
    /// is in the filter's key set; otherwise it verifies the signature itself.
    VerifiedByEnvoy { jti: &'a str },
}

/// How a token's signature was found valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    Filter,
    Envoy,
}

/// Step 2: verify a bearer token against `keys` at host time `now` (seconds).
///
/// Checks, in order: size; exactly three non-empty dot-separated segments; header JSON with
/// `alg == "RS256"` (anything else, including `none`, HS*, RS384, PS*, ES*, is refused before
/// any key is touched, so RSA material is never used as an HMAC secret); key lookup by `kid`
/// ([`AuthError::UnknownKid`] when absent; no `kid` → every key is tried); the RS256 signature
/// (RSASSA-PKCS1-v1_5 + SHA-256 over the first two segments, [`Rs256Key::verify`]); only then is
/// the payload decoded and the claims checked: `exp` present and a number, `aud` present, `nbf`/`exp` against `now`,
/// `aud` contains [`AuthConfig::audience`]. Failures are [`AuthError::Forbidden`] with a
/// distinct reason, [`AuthError::UnknownKid`] or [`AuthError::NoKeys`]. Header members other
/// than `alg` and `kid` (`jwk`, `jku`, `x5u`, `x5c`, `crit`, `typ`...) are ignored: keys only
/// ever come from the [`KeySet`].
pub fn verify(token: &str, keys: &KeySet, cfg: &AuthConfig, now: u64) -> Result<Claims, AuthError> {
    verify_with(token, keys, cfg, now, SignatureCheck::Verify).map(|(claims, _)| claims)
}

/// [`verify`], with the signature possibly vouched for by Envoy's `jwt_authn`
/// ([`SignatureCheck::VerifiedByEnvoy`]). Every step but the RSA arithmetic runs either way, in
/// the same order, so both paths accept and reject the same tokens with the same errors; the
/// Envoy path is taken only when the token carries a `kid` the key set knows and its payload's
/// `jti` is the one jwt_authn verified (each segment is strict base64url, so the token is exactly
/// the string jwt_authn extracted from the header).
pub fn verify_with(
    token: &str,
    keys: &KeySet,
    cfg: &AuthConfig,
    now: u64,
    check: SignatureCheck<'_>,
) -> Result<(Claims, VerifiedBy), AuthError> {
    if token.len() > cfg.max_token_bytes {
        return Err(AuthError::Forbidden("too_large"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Forbidden("malformed"));
    };
    if header_b64.is_empty() || payload_b64.is_empty() {
        return Err(AuthError::Forbidden("malformed"));
    }
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| AuthError::Forbidden("malformed"))?;
    // UTF-8 first: serde skips the members it ignores without checking their bytes.
    let header: RawHeader = std::str::from_utf8(&header_json)
        .ok()
        .and_then(|h| serde_json::from_str(h).ok())
        .ok_or(AuthError::Forbidden("malformed"))?;
    if header.alg.as_deref() != Some("RS256") {
        return Err(AuthError::Forbidden("bad_algorithm"));
    }
    if sig_b64.is_empty() {
        return Err(AuthError::Forbidden("bad_signature"));
    }
    let kid = match header.kid {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(AuthError::Forbidden("malformed")),
    };
    if keys.is_empty() {
        return Err(AuthError::NoKeys);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| AuthError::Forbidden("malformed"))?;
    let named = kid.is_some();
    let key = match kid {
        Some(kid) => match keys.get(&kid) {
            Some(key) => key,
            None => return Err(AuthError::UnknownKid(truncate(kid, MAX_KID_ECHO))),
        },
        None => match keys.single() {
            Some(key) => key,
            None => return Err(AuthError::Forbidden("missing_kid")),
        },
    };

    // The Envoy path: a known kid and the very token jwt_authn verified (same jti). Otherwise
    // the payload is read only once the signature holds (its errors come after it); what was
    // decoded for the jti waits for that.
    let mut decoded = None;
    if let (SignatureCheck::VerifiedByEnvoy { jti }, true) = (check, named) {
        let payload = decode_payload(payload_b64);
        if let Ok(json) = &payload {
            if let Ok(p) = Payload::parse(json) {
                if p.jti() == Some(jti) {
                    return accept(p, cfg, now).map(|c| (c, VerifiedBy::Envoy));
                }
            }
        }
        decoded = Some(payload);
    }

    // JWS signing input: the first two segments as sent, with their dot.
    let signed_len = header_b64
        .len()
        .saturating_add(1)
        .saturating_add(payload_b64.len());
    let signing_input = token
        .get(..signed_len)
        .ok_or(AuthError::Forbidden("malformed"))?;
    let digest: [u8; 32] = Sha256::digest(signing_input.as_bytes()).into();
    if !rs256_ok(key, &digest, &signature) {
        return Err(AuthError::Forbidden("bad_signature"));
    }
    let json = decoded.unwrap_or_else(|| decode_payload(payload_b64))?;
    accept(Payload::parse(&json)?, cfg, now).map(|c| (c, VerifiedBy::Filter))
}

fn decode_payload(payload_b64: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| AuthError::Forbidden("malformed"))
}

/// The claims of a verified token, if its type rules hold ([`Payload::into_claims`]), it is
/// valid at `now` and its audience is ours.
fn accept(payload: Payload<'_>, cfg: &AuthConfig, now: u64) -> Result<Claims, AuthError> {
    let claims = payload.into_claims()?;
    check_times(claims.exp, claims.nbf, now, cfg.leeway_secs)?;
    if !claims.aud.contains(&cfg.audience) {
        return Err(AuthError::Forbidden("bad_audience"));
    }
    Ok(claims)
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (JWS `RS256`, RFC 7518 §3.3). [`Rs256Key::verify`] checks
/// the signature length against the modulus and the full DigestInfo encoding.
fn rs256_ok(key: &Rs256Key, digest: &[u8; 32], signature: &[u8]) -> bool {
    key.verify(digest, signature)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut = cut.saturating_sub(1);
        }
        s.truncate(cut);
    }
    s
}

/// Step 3: claim/header bindings, in the gateway's order, each only when the claim is
/// non-empty (a missing header then counts as a mismatch):
/// `gitlab_realm` ↔ `X-Gitlab-Realm`, `gitlab_instance_id` ↔ `X-Gitlab-Instance-Id`, then
/// `sub` ↔ `X-Gitlab-Global-User-Id` when `iss` is the gateway itself
/// ([`GATEWAY_ISSUER`]), otherwise `sub` ↔ `X-Gitlab-Instance-Id`.
pub fn check_bindings<H: Headers + ?Sized>(claims: &Claims, h: &H) -> Result<(), AuthError> {
    check_bindings_for_issuer(claims, h, GATEWAY_ISSUER)
}

/// [`check_bindings`] with the gateway's own issuer name given explicitly (the gateway
/// compares `iss` with its configured service name, `gitlab-ai-gateway` by default).
pub fn check_bindings_for_issuer<H: Headers + ?Sized>(
    claims: &Claims,
    h: &H,
    self_issuer: &str,
) -> Result<(), AuthError> {
    let sub_header = if claims.iss.as_deref() == Some(self_issuer) {
        (GLOBAL_USER_ID, "X-Gitlab-Global-User-Id")
    } else {
        (INSTANCE_ID, "X-Gitlab-Instance-Id")
    };
    let rules = [
        (&claims.gitlab_realm, (REALM, "X-Gitlab-Realm")),
        (
            &claims.gitlab_instance_id,
            (INSTANCE_ID, "X-Gitlab-Instance-Id"),
        ),
        (&claims.sub, sub_header),
    ];
    for (claim, (lower, spelled)) in rules {
        if let Some(value) = claim.as_deref().filter(|v| !v.is_empty()) {
            if h.get(lower) != Some(value) {
                return Err(AuthError::HeaderMismatch(spelled));
            }
        }
    }
    Ok(())
}

/// The gateway's `duo_seat_count` check, which only LOGS (the request continues): the
/// message to log, or `None` when fine (claim absent/empty, or equal to the header).
pub fn seat_count_warning<H: Headers + ?Sized>(claims: &Claims, h: &H) -> Option<&'static str> {
    let claim = claims.duo_seat_count.as_deref().filter(|c| !c.is_empty())?;
    match h.get(DUO_SEAT_COUNT) {
        None | Some("") => Some("Header is missing: 'X-Gitlab-Duo-Seat-Count'"),
        Some(v) if v != claim => Some("Header mismatch 'X-Gitlab-Duo-Seat-Count'"),
        Some(_) => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::json;

    pub const JWKS: &str = include_str!("testdata/jwks.json");
    pub const KEY1_PEM: &str = include_str!("testdata/key1_pkcs1.pem");
    pub const KEY2_PEM: &str = include_str!("testdata/key2_pkcs8.pem");
    pub const NOW: u64 = 1_739_952_000;

    pub fn keys() -> KeySet {
        KeySet::from_jwks(&[JWKS.as_bytes()]).unwrap()
    }

    /// A GitLab-shaped self-issued token payload (docs/gitlab-contract.md#rails-tokens).
    pub fn rails_claims() -> Value {
        json!({
            "jti": "8b1e6c5e-2d4a-4f0e-9a7b-000000000001",
            "aud": ["gitlab-ai-gateway", "other-service"],
            "sub": "instance-uuid-1",
            "iss": "https://gitlab.example.com",
            "iat": NOW, "nbf": NOW - 5, "exp": NOW + 3600,
            "gitlab_realm": "self-managed",
            "scopes": ["complete_code", "generate_code", "duo_chat"],
            "skip_usage_cutoff": false
        })
    }

    pub fn sign_with(pem: &str, kid: Option<&str>, alg: Algorithm, claims: &Value) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_string);
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        encode(&h, claims, &key).unwrap()
    }

    pub fn sign(claims: &Value) -> String {
        sign_with(KEY1_PEM, Some("test-key-1"), Algorithm::RS256, claims)
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn v(token: &str) -> Result<Claims, AuthError> {
        verify(token, &keys(), &AuthConfig::default(), NOW)
    }

    fn forbidden(token: &str) -> &'static str {
        match v(token) {
            Err(AuthError::Forbidden(r)) => r,
            other => panic!("expected Forbidden, got {other:?}"),
        }
    }

    // ---- extract_token ----

    #[test]
    fn extract_ok_and_scheme_case() {
        let h = hdrs(&[
            ("Authorization", "Bearer abc.def.ghi"),
            ("X-Gitlab-Authentication-Type", "oidc"),
        ]);
        assert_eq!(extract_token(h.as_slice()), Ok("abc.def.ghi"));
        let h = hdrs(&[
            ("authorization", "bearer tok"),
            ("x-gitlab-authentication-type", "oidc"),
        ]);
        assert_eq!(extract_token(h.as_slice()), Ok("tok"));
        let h = hdrs(&[
            ("AUTHORIZATION", "BEARER tok"),
            ("X-GITLAB-AUTHENTICATION-TYPE", "oidc"),
        ]);
        assert_eq!(extract_token(h.as_slice()), Ok("tok"));
    }

    #[test]
    fn extract_errors_in_gateway_order() {
        let oidc = ("X-Gitlab-Authentication-Type", "oidc");
        // Missing Authorization wins over everything.
        assert_eq!(
            extract_token(hdrs(&[]).as_slice()),
            Err(AuthError::MissingAuthorization)
        );
        assert_eq!(
            extract_token(hdrs(&[oidc]).as_slice()),
            Err(AuthError::MissingAuthorization)
        );
        // Wrong scheme is checked before the auth type.
        assert_eq!(
            extract_token(hdrs(&[("Authorization", "Basic dXNlcjpwdw==")]).as_slice()),
            Err(AuthError::InvalidAuthorization)
        );
        assert_eq!(
            extract_token(hdrs(&[("Authorization", "Basic x"), oidc]).as_slice()),
            Err(AuthError::InvalidAuthorization)
        );
        assert_eq!(
            extract_token(hdrs(&[("Authorization", "tokenwithoutscheme"), oidc]).as_slice()),
            Err(AuthError::InvalidAuthorization)
        );
        assert_eq!(
            extract_token(hdrs(&[("Authorization", ""), oidc]).as_slice()),
            Err(AuthError::InvalidAuthorization)
        );
        assert_eq!(
            extract_token(hdrs(&[("Authorization", " Bearer tok"), oidc]).as_slice()),
            Err(AuthError::InvalidAuthorization)
        );
        assert_eq!(
            extract_token(hdrs(&[("Authorization", "Bearer\ttok"), oidc]).as_slice()),
            Err(AuthError::InvalidAuthorization)
        );
        // Then the auth type: missing, upper case, other.
        let bearer = ("Authorization", "Bearer tok");
        assert_eq!(
            extract_token(hdrs(&[bearer]).as_slice()),
            Err(AuthError::InvalidAuthType)
        );
        for t in ["OIDC", "Oidc", "oidc ", "", "jwt"] {
            assert_eq!(
                extract_token(hdrs(&[bearer, ("X-Gitlab-Authentication-Type", t)]).as_slice()),
                Err(AuthError::InvalidAuthType),
                "{t:?}"
            );
        }
        // "Bearer" without a token: the gateway checks the auth type first, then fails
        // verification with "Forbidden by auth provider".
        assert_eq!(
            extract_token(hdrs(&[("Authorization", "Bearer")]).as_slice()),
            Err(AuthError::InvalidAuthType)
        );
        for a in ["Bearer", "Bearer ", "bearer "] {
            let e = extract_token(hdrs(&[("Authorization", a), oidc]).as_slice()).unwrap_err();
            assert_eq!(e, AuthError::Forbidden("empty_token"));
            assert_eq!(e.body(), r#"{"error":"Forbidden by auth provider"}"#);
        }
        // Token kept verbatim after the first space (a second space stays in the token).
        assert_eq!(
            extract_token(hdrs(&[("Authorization", "Bearer  tok"), oidc]).as_slice()),
            Ok(" tok")
        );
    }

    // ---- verify: good tokens ----

    #[test]
    fn verify_rails_token() {
        let c = v(&sign(&rails_claims())).unwrap();
        assert_eq!(c.iss.as_deref(), Some("https://gitlab.example.com"));
        assert_eq!(c.sub.as_deref(), Some("instance-uuid-1"));
        assert_eq!(c.aud, vec!["gitlab-ai-gateway", "other-service"]);
        assert_eq!(c.exp, NOW + 3600);
        assert_eq!(c.nbf, Some(NOW - 5));
        assert_eq!(c.iat, Some(NOW));
        assert_eq!(c.scopes, vec!["complete_code", "generate_code", "duo_chat"]);
        assert_eq!(c.gitlab_realm.as_deref(), Some("self-managed"));
        assert_eq!(c.gitlab_instance_id, None);
        assert_eq!(c.duo_seat_count, None);
        assert_eq!(
            c.jti.as_deref(),
            Some("8b1e6c5e-2d4a-4f0e-9a7b-000000000001")
        );
    }

    #[test]
    fn verify_second_key_pkcs8_and_string_aud() {
        let mut c = rails_claims();
        c["aud"] = json!("gitlab-ai-gateway");
        c["duo_seat_count"] = json!(42);
        c["gitlab_instance_id"] = json!("iid");
        let t = sign_with(KEY2_PEM, Some("test-key-2"), Algorithm::RS256, &c);
        let c = v(&t).unwrap();
        assert_eq!(c.aud, vec!["gitlab-ai-gateway"]);
        assert_eq!(c.duo_seat_count.as_deref(), Some("42"));
        assert_eq!(c.gitlab_instance_id.as_deref(), Some("iid"));
    }

    #[test]
    fn verify_minimal_and_null_optionals() {
        let c = json!({"aud": "gitlab-ai-gateway", "exp": NOW + 1, "sub": null, "scopes": null});
        let c = v(&sign(&c)).unwrap();
        assert_eq!(c.sub, None);
        assert!(c.scopes.is_empty());
        assert_eq!(c.nbf, None);
        // Fractional times are truncated.
        let c = json!({"aud": "gitlab-ai-gateway", "exp": (NOW as f64) + 0.9, "iat": 1.5});
        let c = v(&sign(&c)).unwrap();
        assert_eq!(c.exp, NOW);
        assert_eq!(c.iat, Some(1));
    }

    #[test]
    fn custom_audience() {
        let cfg = AuthConfig {
            audience: "other-service".into(),
            ..AuthConfig::default()
        };
        assert!(verify(&sign(&rails_claims()), &keys(), &cfg, NOW).is_ok());
        let cfg = AuthConfig {
            audience: "nobody".into(),
            ..AuthConfig::default()
        };
        assert_eq!(
            verify(&sign(&rails_claims()), &keys(), &cfg, NOW),
            Err(AuthError::Forbidden("bad_audience"))
        );
    }

    // ---- verify: time ----

    #[test]
    fn expiry_matches_python_jose() {
        let mut c = rails_claims();
        c["exp"] = json!(NOW);
        assert!(v(&sign(&c)).is_ok(), "exp == now is still valid");
        c["exp"] = json!(NOW - 1);
        assert_eq!(forbidden(&sign(&c)), "expired");
        c["exp"] = json!(0);
        assert_eq!(forbidden(&sign(&c)), "expired");
        // Leeway.
        c["exp"] = json!(NOW - 30);
        let cfg = AuthConfig {
            leeway_secs: 30,
            ..AuthConfig::default()
        };
        assert!(verify(&sign(&c), &keys(), &cfg, NOW).is_ok());
        assert_eq!(
            verify(&sign(&c), &keys(), &cfg, NOW + 1),
            Err(AuthError::Forbidden("expired"))
        );
        // Huge exp does not overflow.
        c["exp"] = json!(u64::MAX);
        let cfg = AuthConfig {
            leeway_secs: u64::MAX,
            ..AuthConfig::default()
        };
        assert!(verify(&sign(&c), &keys(), &cfg, u64::MAX).is_ok());
    }

    #[test]
    fn not_before() {
        let mut c = rails_claims();
        c["nbf"] = json!(NOW + 1);
        assert_eq!(forbidden(&sign(&c)), "not_yet_valid");
        c["nbf"] = json!(NOW);
        assert!(v(&sign(&c)).is_ok());
        c["nbf"] = json!(NOW + 10);
        let cfg = AuthConfig {
            leeway_secs: 10,
            ..AuthConfig::default()
        };
        assert!(
            verify(&sign(&c), &keys(), &cfg, NOW).is_ok(),
            "nbf within leeway"
        );
        c["nbf"] = json!(NOW + 11);
        assert_eq!(
            verify(&sign(&c), &keys(), &cfg, NOW),
            Err(AuthError::Forbidden("not_yet_valid"))
        );
    }

    #[test]
    fn iat_only_type_checked() {
        let mut c = rails_claims();
        c["iat"] = json!(NOW + 86_400 * 365);
        assert!(
            v(&sign(&c)).is_ok(),
            "future iat is not rejected (python-jose)"
        );
        c["iat"] = json!("1739952000");
        assert_eq!(forbidden(&sign(&c)), "bad_claims");
        c["iat"] = json!(-1);
        assert_eq!(forbidden(&sign(&c)), "bad_claims");
    }

    #[test]
    fn exp_and_aud_required() {
        let mut c = rails_claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(forbidden(&sign(&c)), "missing_exp");
        let mut c = rails_claims();
        c["exp"] = json!(null);
        assert_eq!(forbidden(&sign(&c)), "missing_exp");
        let mut c = rails_claims();
        c.as_object_mut().unwrap().remove("aud");
        assert_eq!(forbidden(&sign(&c)), "missing_aud");
        for bad in [
            json!("soon"),
            json!(true),
            json!(-5),
            json!(1e300),
            json!([NOW]),
            json!({"t": NOW}),
        ] {
            let mut c = rails_claims();
            c["exp"] = bad.clone();
            assert_eq!(forbidden(&sign(&c)), "bad_claims", "{bad}");
        }
    }

    #[test]
    fn wrong_audience() {
        let mut c = rails_claims();
        c["aud"] = json!("gitlab-code-suggestions");
        assert_eq!(forbidden(&sign(&c)), "bad_audience");
        c["aud"] = json!(["a", "b", "GITLAB-AI-GATEWAY"]);
        assert_eq!(forbidden(&sign(&c)), "bad_audience");
        c["aud"] = json!([]);
        assert_eq!(forbidden(&sign(&c)), "bad_audience");
        c["aud"] = json!("");
        assert_eq!(forbidden(&sign(&c)), "bad_audience");
        c["aud"] = json!(["gitlab-ai-gateway", 5]);
        assert_eq!(forbidden(&sign(&c)), "bad_claims");
        c["aud"] = json!({"gitlab-ai-gateway": true});
        assert_eq!(forbidden(&sign(&c)), "bad_claims");
    }

    #[test]
    fn claim_types() {
        for (name, bad) in [
            ("sub", json!(5)),
            ("iss", json!(["x"])),
            ("jti", json!({})),
            ("gitlab_realm", json!(true)),
            ("gitlab_instance_id", json!(1)),
            ("scopes", json!("complete_code")),
            ("scopes", json!(["complete_code", 1])),
            ("nbf", json!("0")),
        ] {
            let mut c = rails_claims();
            c[name] = bad.clone();
            assert_eq!(forbidden(&sign(&c)), "bad_claims", "{name}={bad}");
        }
        // duo_seat_count of another type is ignored, not fatal.
        let mut c = rails_claims();
        c["duo_seat_count"] = json!([1]);
        assert_eq!(v(&sign(&c)).unwrap().duo_seat_count, None);
    }

    // ---- verify: hostile tokens ----

    #[test]
    fn alg_none_unsigned() {
        let body = b64(&rails_claims().to_string());
        let t = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), body);
        assert_eq!(forbidden(&t), "bad_algorithm");
        let t = format!("{}.{}.", b64(r#"{"alg":"none","kid":"test-key-1"}"#), body);
        assert_eq!(forbidden(&t), "bad_algorithm");
        // RS256 header but an empty signature.
        let t = format!("{}.{}.", b64(r#"{"alg":"RS256","kid":"test-key-1"}"#), body);
        assert_eq!(forbidden(&t), "bad_signature");
        // No alg at all.
        let t = format!("{}.{}.AAAA", b64(r#"{"kid":"test-key-1"}"#), body);
        assert_eq!(forbidden(&t), "bad_algorithm");
        // Lower-case alg name.
        let t = format!("{}.{}.AAAA", b64(r#"{"alg":"rs256"}"#), body);
        assert_eq!(forbidden(&t), "bad_algorithm");
    }

    #[test]
    fn hs256_key_confusion() {
        // Attacker signs HS256 with the RSA public key material (JWKS n, the DER/PEM of the
        // public key, ...) as the HMAC secret. Never accepted: alg is refused up front.
        let jwks: Value = serde_json::from_str(JWKS).unwrap();
        let n = jwks["keys"][0]["n"].as_str().unwrap();
        let secrets: Vec<Vec<u8>> = vec![
            n.as_bytes().to_vec(),
            URL_SAFE_NO_PAD.decode(n).unwrap(),
            JWKS.as_bytes().to_vec(),
        ];
        for secret in secrets {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let mut h = Header::new(alg);
                h.kid = Some("test-key-1".into());
                let t = encode(&h, &rails_claims(), &EncodingKey::from_secret(&secret)).unwrap();
                assert_eq!(forbidden(&t), "bad_algorithm");
            }
        }
    }

    #[test]
    fn other_rsa_algorithms_refused() {
        for alg in [
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            let t = sign_with(KEY1_PEM, Some("test-key-1"), alg, &rails_claims());
            assert_eq!(forbidden(&t), "bad_algorithm", "{alg:?}");
        }
        // ES256 / EdDSA headers (signature bytes irrelevant: refused before any key use).
        for alg in ["ES256", "ES384", "EdDSA", "RS1", "HS256"] {
            let t = format!(
                "{}.{}.AAAA",
                b64(&format!(r#"{{"alg":"{alg}","kid":"test-key-1"}}"#)),
                b64(&rails_claims().to_string())
            );
            assert_eq!(forbidden(&t), "bad_algorithm", "{alg}");
        }
    }

    #[test]
    fn tampered_payload_and_signature() {
        let t = sign(&rails_claims());
        let parts: Vec<&str> = t.split('.').collect();
        // Payload swapped for one with more scopes.
        let mut c = rails_claims();
        c["scopes"] = json!(["everything"]);
        let forged = format!("{}.{}.{}", parts[0], b64(&c.to_string()), parts[2]);
        assert_eq!(forbidden(&forged), "bad_signature");
        // One signature character changed.
        let mut sig = parts[2].to_string();
        let last = sig.pop().unwrap();
        sig.push(if last == 'A' { 'B' } else { 'A' });
        let t2 = format!("{}.{}.{}", parts[0], parts[1], sig);
        assert_eq!(forbidden(&t2), "bad_signature");
        // Signature truncated / not base64.
        let t3 = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..20]);
        assert_eq!(forbidden(&t3), "bad_signature");
        let t4 = format!("{}.{}.!!!!", parts[0], parts[1]);
        assert_eq!(forbidden(&t4), "malformed");
        // Signed by key 2 but claiming key 1's kid.
        let t5 = sign_with(
            KEY2_PEM,
            Some("test-key-1"),
            Algorithm::RS256,
            &rails_claims(),
        );
        assert_eq!(forbidden(&t5), "bad_signature");
    }

    #[test]
    fn kid_handling() {
        let t = sign_with(
            KEY1_PEM,
            Some("rotated-away"),
            Algorithm::RS256,
            &rails_claims(),
        );
        assert_eq!(v(&t), Err(AuthError::UnknownKid("rotated-away".into())));
        // The EC key in the JWKS is not usable for RS256.
        let t = sign_with(KEY1_PEM, Some("test-ec"), Algorithm::RS256, &rails_claims());
        assert_eq!(v(&t), Err(AuthError::UnknownKid("test-ec".into())));
        // A long kid is cut in the error.
        let long = "k".repeat(5000);
        let t = sign_with(KEY1_PEM, Some(&long), Algorithm::RS256, &rails_claims());
        match v(&t) {
            Err(AuthError::UnknownKid(k)) => assert_eq!(k.len(), MAX_KID_ECHO),
            other => panic!("{other:?}"),
        }
        // Multi-byte kid cut on a char boundary.
        let t = sign_with(
            KEY1_PEM,
            Some(&"é".repeat(100)),
            Algorithm::RS256,
            &rails_claims(),
        );
        match v(&t) {
            Err(AuthError::UnknownKid(k)) => assert_eq!(k.len(), MAX_KID_ECHO),
            other => panic!("{other:?}"),
        }
        // No kid with several keys: refused before any RSA work, whichever key signed it (one
        // unauthenticated request never costs more than one verification).
        for pem in [KEY1_PEM, KEY2_PEM] {
            let t = sign_with(pem, None, Algorithm::RS256, &rails_claims());
            assert_eq!(v(&t), Err(AuthError::Forbidden("missing_kid")));
        }
        // No kid with a single key: that key, and only it, is tried.
        let only_key2 = {
            let j: Value = serde_json::from_str(JWKS).unwrap();
            let doc = json!({"keys": [j["keys"][1]]}).to_string();
            KeySet::from_jwks(&[doc.as_bytes()]).unwrap()
        };
        let t = sign_with(KEY2_PEM, None, Algorithm::RS256, &rails_claims());
        assert!(verify(&t, &only_key2, &AuthConfig::default(), NOW).is_ok());
        let t = sign_with(KEY1_PEM, None, Algorithm::RS256, &rails_claims());
        assert_eq!(
            verify(&t, &only_key2, &AuthConfig::default(), NOW),
            Err(AuthError::Forbidden("bad_signature"))
        );
        // Non-string kid.
        let t = format!(
            "{}.{}.AAAA",
            b64(r#"{"alg":"RS256","kid":7}"#),
            b64(&rails_claims().to_string())
        );
        assert_eq!(forbidden(&t), "malformed");
    }

    // ---- signature vouched for by Envoy's jwt_authn ----

    const JTI: &str = "8b1e6c5e-2d4a-4f0e-9a7b-000000000001";

    fn via_envoy(token: &str, jti: &str) -> Result<(Claims, VerifiedBy), AuthError> {
        verify_with(
            token,
            &keys(),
            &AuthConfig::default(),
            NOW,
            SignatureCheck::VerifiedByEnvoy { jti },
        )
    }

    /// The token with its signature replaced by another valid-looking one (bad signature).
    fn resigned_badly(token: &str) -> String {
        let (signed, _) = token.rsplit_once('.').unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]))
    }

    #[test]
    fn envoy_verified_skips_only_the_rsa_arithmetic() {
        let good = sign(&rails_claims());
        let (claims, by) = via_envoy(&good, JTI).unwrap();
        assert_eq!(by, VerifiedBy::Envoy);
        assert_eq!(claims, v(&good).unwrap());
        // The RSA step is what is skipped: the same bytes with a wrong signature pass only
        // because jwt_authn vouched for this jti (jwt_authn would have refused such a token;
        // this shows which step is delegated).
        assert_eq!(
            via_envoy(&resigned_badly(&good), JTI).unwrap().1,
            VerifiedBy::Envoy
        );
        // Another jti: not the token jwt_authn verified, so the filter verifies it itself.
        assert_eq!(via_envoy(&good, "other").unwrap().1, VerifiedBy::Filter);
        assert_eq!(
            via_envoy(&resigned_badly(&good), "other"),
            Err(AuthError::Forbidden("bad_signature"))
        );
        // A token without a jti is never taken on trust.
        let mut no_jti = rails_claims();
        no_jti.as_object_mut().unwrap().remove("jti");
        let t = sign(&no_jti);
        assert_eq!(via_envoy(&t, "").unwrap().1, VerifiedBy::Filter);
        assert_eq!(
            via_envoy(&resigned_badly(&t), ""),
            Err(AuthError::Forbidden("bad_signature"))
        );
    }

    #[test]
    fn envoy_verified_keeps_every_other_rule() {
        // No kid: refused with several keys, as on the filter's own path; with a single key the
        // filter checks that key itself (jwt_authn's key choice is not taken on trust).
        let t = sign_with(KEY1_PEM, None, Algorithm::RS256, &rails_claims());
        assert_eq!(via_envoy(&t, JTI), Err(AuthError::Forbidden("missing_kid")));
        let only_key1 = {
            let j: Value = serde_json::from_str(JWKS).unwrap();
            let doc = json!({"keys": [j["keys"][0]]}).to_string();
            KeySet::from_jwks(&[doc.as_bytes()]).unwrap()
        };
        let check = SignatureCheck::VerifiedByEnvoy { jti: JTI };
        let cfg = AuthConfig::default();
        assert_eq!(
            verify_with(&t, &only_key1, &cfg, NOW, check).unwrap().1,
            VerifiedBy::Filter
        );
        assert_eq!(
            verify_with(&resigned_badly(&t), &only_key1, &cfg, NOW, check),
            Err(AuthError::Forbidden("bad_signature"))
        );
        // A kid the filter does not know: refresh/unknown-kid handling as usual.
        let t = sign_with(KEY1_PEM, Some("rotated"), Algorithm::RS256, &rails_claims());
        assert_eq!(
            via_envoy(&t, JTI),
            Err(AuthError::UnknownKid("rotated".into()))
        );
        // Algorithms other than RS256 are refused before anything else.
        let h = b64(r#"{"alg":"RS384","kid":"test-key-1"}"#);
        let t = format!("{h}.{}.AAAA", b64(&rails_claims().to_string()));
        assert_eq!(
            via_envoy(&t, JTI),
            Err(AuthError::Forbidden("bad_algorithm"))
        );
        // Claims: expiry, audience, required members.
        for (edit, reason) in [
            (json!({"exp": NOW - 1}), "expired"),
            (json!({"nbf": NOW + 60}), "not_yet_valid"),
            (json!({"aud": "someone-else"}), "bad_audience"),
            (json!({"exp": null}), "missing_exp"),
        ] {
            let mut c = rails_claims();
            for (k, val) in edit.as_object().unwrap() {
                c[k] = val.clone();
            }
            assert_eq!(
                via_envoy(&sign(&c), JTI),
                Err(AuthError::Forbidden(reason)),
                "{edit}"
            );
        }
        // Segment syntax is still the filter's: padding or foreign characters get the same
        // answer as on the filter-only path.
        let good = sign(&rails_claims());
        let (h, rest) = good.split_once('.').unwrap();
        for t in [
            format!("{good}="),
            format!("{h}.+{rest}"),
            format!("{h}= .{rest}"),
        ] {
            assert_eq!(via_envoy(&t, JTI).map(|(c, _)| c), v(&t), "{t}");
            assert!(v(&t).is_err());
        }
    }

    #[test]
    fn header_supplied_keys_ignored() {
        // An attacker-supplied `jwk` / `jku` / `x5u` in the header is never used: the token is
        // signed with key 2, embeds key 2's JWK and points at key 1's kid.
        let jwks: Value = serde_json::from_str(JWKS).unwrap();
        let header = json!({
            "alg": "RS256", "kid": "test-key-1",
            "jwk": jwks["keys"][1], "jku": "https://evil.example/jwks", "x5u": "https://evil.example/c"
        });
        let h64 = b64(&header.to_string());
        let p64 = b64(&rails_claims().to_string());
        let signing_input = format!("{h64}.{p64}");
        let key2 = EncodingKey::from_rsa_pem(KEY2_PEM.as_bytes()).unwrap();
        let sig =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key2, Algorithm::RS256).unwrap();
        let t = format!("{signing_input}.{sig}");
        assert_eq!(forbidden(&t), "bad_signature");
        // The same construction with the right kid verifies (the extra members are ignored).
        let header = json!({"alg": "RS256", "kid": "test-key-2", "jku": "https://evil.example/"});
        let signing_input = format!("{}.{p64}", b64(&header.to_string()));
        let sig =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key2, Algorithm::RS256).unwrap();
        assert!(v(&format!("{signing_input}.{sig}")).is_ok());
    }

    #[test]
    fn no_keys() {
        let t = sign(&rails_claims());
        assert_eq!(
            verify(&t, &KeySet::empty(), &AuthConfig::default(), NOW),
            Err(AuthError::NoKeys)
        );
    }

    /// A header that is not UTF-8 is not JSON (RFC 8259 §8.1): refused like the gateway
    /// (python-jose decodes the header as UTF-8 first), even inside a member the filter ignores
    /// and under a valid signature. Found by the `jwt` fuzz target.
    #[test]
    fn header_must_be_utf8() {
        let mut header = br#"{"alg":"RS256","kid":"test-key-1","typ":""#.to_vec();
        header.extend_from_slice(&[0xff, 0x8b]);
        header.extend_from_slice(br#""}"#);
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&header),
            b64(&rails_claims().to_string())
        );
        let key = EncodingKey::from_rsa_pem(KEY1_PEM.as_bytes()).unwrap();
        let sig =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::RS256).unwrap();
        let t = format!("{signing_input}.{sig}");
        assert_eq!(forbidden(&t), "malformed");
        let jti = rails_claims()["jti"].as_str().unwrap().to_string();
        assert_eq!(
            verify_with(
                &t,
                &keys(),
                &AuthConfig::default(),
                NOW,
                SignatureCheck::VerifiedByEnvoy { jti: &jti }
            ),
            Err(AuthError::Forbidden("malformed"))
        );
    }

    #[test]
    fn malformed_shapes() {
        let t = sign(&rails_claims());
        let parts: Vec<&str> = t.split('.').collect();
        let cases: Vec<String> = vec![
            String::new(),
            ".".into(),
            "..".into(),
            "...".into(),
            "abc".into(),
            format!("{}.{}", parts[0], parts[1]), // 2 segments
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]), // 4 segments
            format!("{}..{}", parts[0], parts[2]), // empty payload
            format!(".{}.{}", parts[1], parts[2]), // empty header
            t[..t.len() / 2].to_string(),         // truncated
            format!("{}.{}.{}", b64("not json"), parts[1], parts[2]), // non-JSON header
            format!("{}.{}.{}", b64("[1,2]"), parts[1], parts[2]), // header not an object
            format!("%%%.{}.{}", parts[1], parts[2]), // garbage base64
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]), // padded header
            "eyJ.eyJ.eyJ".into(),
            "\u{0}\u{1}.\u{2}.\u{3}".into(),
            "é.é.é".into(),
        ];
        for c in &cases {
            let r = forbidden(c);
            assert!(
                matches!(r, "malformed" | "bad_signature" | "bad_algorithm"),
                "{c:?} -> {r}"
            );
        }
        // Truncating in the middle of the signature keeps 3 segments: bad signature.
        assert_eq!(forbidden(&t[..t.len() - 10]), "bad_signature");
        // Valid header, signed payload that is not a JSON object.
        let key = EncodingKey::from_rsa_pem(KEY1_PEM.as_bytes()).unwrap();
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("test-key-1".into());
        let arr = encode(&h, &json!([1, 2, 3]), &key).unwrap();
        assert_eq!(forbidden(&arr), "malformed");
    }

    #[test]
    fn size_limit_before_parsing() {
        let big = "a".repeat(64 * 1024);
        assert_eq!(forbidden(&big), "too_large");
        // A genuinely signed but padded-out token is also refused on size alone.
        let mut c = rails_claims();
        c["pad"] = json!("x".repeat(9000));
        assert_eq!(forbidden(&sign(&c)), "too_large");
        let cfg = AuthConfig {
            max_token_bytes: 64 * 1024,
            ..AuthConfig::default()
        };
        assert!(verify(&sign(&c), &keys(), &cfg, NOW).is_ok());
        // Exactly at the limit is allowed.
        let t = sign(&rails_claims());
        let cfg = AuthConfig {
            max_token_bytes: t.len(),
            ..AuthConfig::default()
        };
        assert!(verify(&t, &keys(), &cfg, NOW).is_ok());
        let cfg = AuthConfig {
            max_token_bytes: t.len() - 1,
            ..AuthConfig::default()
        };
        assert_eq!(
            verify(&t, &keys(), &cfg, NOW),
            Err(AuthError::Forbidden("too_large"))
        );
    }

    #[test]
    fn time_valid_helper() {
        let c = v(&sign(&rails_claims())).unwrap();
        assert!(c.time_valid(NOW, 0));
        assert!(c.time_valid(NOW + 3600, 0));
        assert!(!c.time_valid(NOW + 3601, 0));
        assert!(!c.time_valid(NOW - 6, 0));
        assert!(c.time_valid(NOW - 6, 1));
    }

    // ---- bindings ----

    fn claims(
        realm: Option<&str>,
        iid: Option<&str>,
        sub: Option<&str>,
        iss: Option<&str>,
    ) -> Claims {
        Claims {
            gitlab_realm: realm.map(Into::into),
            gitlab_instance_id: iid.map(Into::into),
            sub: sub.map(Into::into),
            iss: iss.map(Into::into),
            ..Claims::default()
        }
    }

    #[test]
    fn bindings_rails_token() {
        let c = claims(Some("self-managed"), None, Some("uuid"), Some("https://gl"));
        let ok = hdrs(&[
            ("X-Gitlab-Realm", "self-managed"),
            ("X-Gitlab-Instance-Id", "uuid"),
        ]);
        assert_eq!(check_bindings(&c, ok.as_slice()), Ok(()));
        let bad_realm = hdrs(&[("X-Gitlab-Realm", "saas"), ("X-Gitlab-Instance-Id", "uuid")]);
        assert_eq!(
            check_bindings(&c, bad_realm.as_slice()),
            Err(AuthError::HeaderMismatch("X-Gitlab-Realm"))
        );
        let bad_sub = hdrs(&[
            ("X-Gitlab-Realm", "self-managed"),
            ("X-Gitlab-Instance-Id", "x"),
        ]);
        assert_eq!(
            check_bindings(&c, bad_sub.as_slice()),
            Err(AuthError::HeaderMismatch("X-Gitlab-Instance-Id"))
        );
        // Missing headers count as mismatches; realm is checked first.
        assert_eq!(
            check_bindings(&c, hdrs(&[]).as_slice()),
            Err(AuthError::HeaderMismatch("X-Gitlab-Realm"))
        );
        let e =
            check_bindings(&c, hdrs(&[("X-Gitlab-Realm", "self-managed")]).as_slice()).unwrap_err();
        assert_eq!(
            e.body(),
            r#"{"error":"Header mismatch 'X-Gitlab-Instance-Id'"}"#
        );
        // Exact, case-sensitive value comparison.
        let case = hdrs(&[
            ("X-Gitlab-Realm", "Self-Managed"),
            ("X-Gitlab-Instance-Id", "uuid"),
        ]);
        assert!(check_bindings(&c, case.as_slice()).is_err());
    }

    #[test]
    fn bindings_instance_id_claim_before_sub() {
        let c = claims(Some("saas"), Some("iid"), Some("sub-x"), Some("https://gl"));
        let h = hdrs(&[
            ("X-Gitlab-Realm", "saas"),
            ("X-Gitlab-Instance-Id", "other"),
        ]);
        assert_eq!(
            check_bindings(&c, h.as_slice()),
            Err(AuthError::HeaderMismatch("X-Gitlab-Instance-Id"))
        );
        // gitlab_instance_id and sub both bind to X-Gitlab-Instance-Id: both must equal it.
        let h = hdrs(&[("X-Gitlab-Realm", "saas"), ("X-Gitlab-Instance-Id", "iid")]);
        assert_eq!(
            check_bindings(&c, h.as_slice()),
            Err(AuthError::HeaderMismatch("X-Gitlab-Instance-Id"))
        );
        let c = claims(Some("saas"), Some("iid"), Some("iid"), Some("https://gl"));
        assert_eq!(check_bindings(&c, h.as_slice()), Ok(()));
    }

    #[test]
    fn bindings_gateway_issued_token() {
        let c = claims(
            Some("self-managed"),
            Some("iid"),
            Some("user-42"),
            Some(GATEWAY_ISSUER),
        );
        let ok = hdrs(&[
            ("x-gitlab-realm", "self-managed"),
            ("x-gitlab-instance-id", "iid"),
            ("x-gitlab-global-user-id", "user-42"),
        ]);
        assert_eq!(check_bindings(&c, ok.as_slice()), Ok(()));
        let bad = hdrs(&[
            ("x-gitlab-realm", "self-managed"),
            ("x-gitlab-instance-id", "iid"),
            ("x-gitlab-global-user-id", "user-43"),
        ]);
        let e = check_bindings(&c, bad.as_slice()).unwrap_err();
        assert_eq!(e, AuthError::HeaderMismatch("X-Gitlab-Global-User-Id"));
        assert_eq!(
            e.body(),
            r#"{"error":"Header mismatch 'X-Gitlab-Global-User-Id'"}"#
        );
        let missing = hdrs(&[
            ("x-gitlab-realm", "self-managed"),
            ("x-gitlab-instance-id", "iid"),
        ]);
        assert_eq!(
            check_bindings(&c, missing.as_slice()),
            Err(AuthError::HeaderMismatch("X-Gitlab-Global-User-Id"))
        );
        // A configured service name other than the default.
        let c = claims(None, None, Some("user-42"), Some("my-gw"));
        let h = hdrs(&[("x-gitlab-global-user-id", "user-42")]);
        assert_eq!(check_bindings_for_issuer(&c, h.as_slice(), "my-gw"), Ok(()));
        assert_eq!(
            check_bindings(&c, h.as_slice()),
            Err(AuthError::HeaderMismatch("X-Gitlab-Instance-Id"))
        );
    }

    #[test]
    fn bindings_skip_empty_claims() {
        let c = claims(Some(""), Some(""), Some(""), None);
        assert_eq!(check_bindings(&c, hdrs(&[]).as_slice()), Ok(()));
        let c = claims(None, None, None, Some(GATEWAY_ISSUER));
        assert_eq!(
            check_bindings(&c, hdrs(&[("X-Gitlab-Realm", "whatever")]).as_slice()),
            Ok(())
        );
    }

    #[test]
    fn seat_count_only_warns() {
        let mut c = Claims::default();
        assert_eq!(seat_count_warning(&c, hdrs(&[]).as_slice()), None);
        c.duo_seat_count = Some("10".into());
        assert_eq!(
            seat_count_warning(&c, hdrs(&[]).as_slice()),
            Some("Header is missing: 'X-Gitlab-Duo-Seat-Count'")
        );
        assert_eq!(
            seat_count_warning(&c, hdrs(&[("X-Gitlab-Duo-Seat-Count", "9")]).as_slice()),
            Some("Header mismatch 'X-Gitlab-Duo-Seat-Count'")
        );
        assert_eq!(
            seat_count_warning(&c, hdrs(&[("X-Gitlab-Duo-Seat-Count", "10")]).as_slice()),
            None
        );
    }

    #[test]
    fn end_to_end_flow() {
        let t = sign(&rails_claims());
        let h = hdrs(&[
            ("authorization", &format!("Bearer {t}")),
            ("x-gitlab-authentication-type", "oidc"),
            ("x-gitlab-realm", "self-managed"),
            ("x-gitlab-instance-id", "instance-uuid-1"),
        ]);
        let token = extract_token(h.as_slice()).unwrap();
        let c = verify(token, &keys(), &AuthConfig::default(), NOW).unwrap();
        check_bindings(&c, h.as_slice()).unwrap();
    }

    /// Differential check: on signature acceptance, this module agrees with jsonwebtoken's
    /// `decode` (RS256, claim checks off) for valid, mutated and cross-signed tokens.
    #[test]
    fn agrees_with_jsonwebtoken_on_signatures() {
        use jsonwebtoken::{decode, DecodingKey, Validation};
        let jwks: Value = serde_json::from_str(JWKS).unwrap();
        let k1 = &jwks["keys"][0];
        let dk =
            DecodingKey::from_rsa_components(k1["n"].as_str().unwrap(), k1["e"].as_str().unwrap())
                .unwrap();
        let mut val = Validation::new(Algorithm::RS256);
        val.validate_exp = false;
        val.validate_aud = false;
        val.required_spec_claims.clear();

        let good = sign(&rails_claims());
        let mut corpus = vec![
            good.clone(),
            sign_with(
                KEY2_PEM,
                Some("test-key-1"),
                Algorithm::RS256,
                &rails_claims(),
            ),
        ];
        let bytes = good.as_bytes();
        let alphabet = b"AZaz09-_";
        for (i, pos) in (0..bytes.len()).step_by(13).enumerate() {
            if bytes[pos] == b'.' {
                continue;
            }
            let mut m = bytes.to_vec();
            let repl = alphabet[i % alphabet.len()];
            m[pos] = if m[pos] == repl { b'Q' } else { repl };
            corpus.push(String::from_utf8(m).unwrap());
        }
        // Signature with one byte dropped / one byte added.
        let (msg, sig) = good.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw.pop();
        corpus.push(format!("{msg}.{}", URL_SAFE_NO_PAD.encode(&raw)));
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw.insert(0, 0);
        corpus.push(format!("{msg}.{}", URL_SAFE_NO_PAD.encode(&raw)));

        let mut accepted = 0;
        for t in &corpus {
            let theirs = decode::<Value>(t, &dk, &val).is_ok();
            let ours = v(t).is_ok();
            assert_eq!(ours, theirs, "{t}");
            accepted += ours as usize;
        }
        assert_eq!(accepted, 1, "only the untouched token verifies");
    }

    /// Not a timed assertion: prints the cost of one native RS256 verify (this module,
    /// jsonwebtoken's `decode` for comparison, and a cache hit), interleaved rounds, best of 5.
    /// `cargo test --release --lib auth::rules::tests::bench_verify -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_verify() {
        use jsonwebtoken::{decode, DecodingKey, Validation};
        let t = sign(&rails_claims());
        let k = keys();
        let cfg = AuthConfig::default();
        let jwks: Value = serde_json::from_str(JWKS).unwrap();
        let dk = DecodingKey::from_rsa_components(
            jwks["keys"][0]["n"].as_str().unwrap(),
            jwks["keys"][0]["e"].as_str().unwrap(),
        )
        .unwrap();
        let mut val = Validation::new(Algorithm::RS256);
        val.validate_exp = false;
        val.validate_aud = false;
        let mut cache = super::super::cache::TokenCache::default();
        let key = super::super::cache::TokenKey::of(&t);
        cache.insert(key, verify(&t, &k, &cfg, NOW).unwrap(), NOW);
        let n = 200u32;
        let (mut ours, mut theirs, mut hit) = (u128::MAX, u128::MAX, u128::MAX);
        for _ in 0..5 {
            let s = std::time::Instant::now();
            for _ in 0..n {
                verify(&t, &k, &cfg, NOW).unwrap();
            }
            ours = ours.min(s.elapsed().as_nanos() / n as u128);
            let s = std::time::Instant::now();
            for _ in 0..n {
                decode::<Value>(&t, &dk, &val).unwrap();
            }
            theirs = theirs.min(s.elapsed().as_nanos() / n as u128);
            let s = std::time::Instant::now();
            for _ in 0..n {
                cache
                    .get(&super::super::cache::TokenKey::of(&t), NOW)
                    .unwrap();
            }
            hit = hit.min(s.elapsed().as_nanos() / n as u128);
        }
        eprintln!(
            "native, 2048-bit RS256: verify {} us, jsonwebtoken::decode {} us, cache hit {} us",
            ours / 1000,
            theirs / 1000,
            hit / 1000
        );
    }
}
