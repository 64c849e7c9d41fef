//! GitLab-style OIDC issuer pieces: the two bundled demo RSA keys, their JWKs
//! (kid = RFC 7638 thumbprint), the discovery document, and minting of
//! Cloud Connector tokens the way GitLab Rails self-signs them.
//!
//! Contract: `docs/gitlab-contract.md#key-sources` (JWKS shape and
//! `Cache-Control`) and `#rails-tokens` (token header and claims: `jti`, `aud` list,
//! `sub`, `iss`, `iat`, `nbf = iat - 5`, `exp = iat + ttl`, `gitlab_realm`,
//! `scopes`, `skip_usage_cutoff`).
//!
//! The keys in `emulator/keys/` are demo-only: never trust them anywhere.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// Demo instance id used as default `sub`.
pub const DEMO_INSTANCE_ID: &str = "00000000-0000-4000-8000-000000000001";

/// Default audience (AIGW's Cloud Connector service name).
pub const DEFAULT_AUDIENCE: &str = "gitlab-ai-gateway";

/// Default realm.
pub const DEFAULT_REALM: &str = "self-managed";

/// Default issuer for the `mint` subcommand when none is given.
pub const DEFAULT_CLI_ISSUER: &str = "http://127.0.0.1:8080";

/// Generous default scope list (unit primitives).
pub const DEFAULT_SCOPES: &[&str] = &[
    "complete_code",
    "generate_code",
    "duo_chat",
    "documentation_search",
    "explain_code",
    "write_tests",
    "refactor_code",
    "fix_code",
    "troubleshoot_job",
    "summarize_comments",
    "explain_vulnerability",
    "resolve_vulnerability",
    "generate_commit_message",
    "generate_description",
    "summarize_review",
    "review_merge_request",
    "include_file_context",
    "include_snippet_context",
    "include_merge_request_context",
    "include_issue_context",
    "include_dependency_context",
    "include_local_git_context",
    "include_terminal_context",
    "include_repository_context",
    "include_directory_context",
    "ai_gateway_model_provider_proxy",
    "self_hosted_models",
];

const DEMO_1_PEM: &str = include_str!("../keys/demo-1.pem");
const DEMO_2_PEM: &str = include_str!("../keys/demo-2.pem");

/// One bundled demo key with its precomputed public parts.
pub struct DemoKey {
    pub name: &'static str,
    signing: SigningKey<Sha256>,
    /// Public key as SPKI PEM (used by the `hs256-pubkey` hostile mode).
    pub public_pem: String,
    /// base64url modulus.
    pub n: String,
    /// base64url exponent.
    pub e: String,
    /// RFC 7638 thumbprint.
    pub kid: String,
}

impl DemoKey {
    fn load(name: &'static str, pem: &str) -> Result<Self, String> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| format!("key {name}: {e}"))?;
        let public = private.to_public_key();
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        let kid = rfc7638_thumbprint(&n, &e);
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| format!("key {name}: {e}"))?;
        Ok(DemoKey {
            name,
            signing: SigningKey::<Sha256>::new(private),
            public_pem,
            n,
            e,
            kid,
        })
    }

    /// The public JWK as GitLab serves it.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "e": self.e,
            "n": self.n,
            "use": "sig",
            "alg": "RS256",
        })
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `data`.
    pub fn sign_rs256(&self, data: &[u8]) -> Vec<u8> {
        self.signing.sign(data).to_vec()
    }
}

/// RFC 7638 JWK thumbprint of an RSA key: base64url(SHA-256 of
/// `{"e":..,"kty":"RSA","n":..}` with members in lexicographic order).
pub fn rfc7638_thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Both bundled keys, parsed once.
pub fn demo_keys() -> &'static [DemoKey] {
    static KEYS: OnceLock<Vec<DemoKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [("demo-1", DEMO_1_PEM), ("demo-2", DEMO_2_PEM)]
            .into_iter()
            .filter_map(|(n, p)| match DemoKey::load(n, p) {
                Ok(k) => Some(k),
                Err(e) => {
                    eprintln!("bedrock-emulator: cannot load demo key: {e}");
                    None
                }
            })
            .collect()
    })
}

/// Look up a demo key by name (`demo-1`, `demo-2`).
pub fn demo_key(name: &str) -> Option<&'static DemoKey> {
    demo_keys().iter().find(|k| k.name == name)
}

/// JWKS document for the given active key names (unknown names skipped).
pub fn jwks(active: &[String]) -> Value {
    let keys: Vec<Value> = active
        .iter()
        .filter_map(|n| demo_key(n))
        .map(DemoKey::jwk)
        .collect();
    json!({ "keys": keys })
}

/// OpenID discovery document in GitLab's shape.
pub fn discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
        "jwks_uri": format!("{issuer}/oauth/discovery/keys"),
        "scopes_supported": ["api", "read_api", "read_user", "openid", "profile", "email"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": ["authorization_code", "password", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claim_types_supported": ["normal"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "sub_legacy", "name", "nickname", "preferred_username", "email", "email_verified", "website", "profile", "picture", "groups", "groups_direct", "https://gitlab.org/claims/groups/owner", "https://gitlab.org/claims/groups/maintainer", "https://gitlab.org/claims/groups/developer"],
        "code_challenge_methods_supported": ["plain", "S256"],
    })
}

/// `aud` may be given as one string or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Everything a token can be minted with. All fields optional (JSON body of
/// `POST /_emulator/mint`; the `mint` subcommand fills the same struct).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// Demo key name (`demo-1` default).
    pub key: Option<String>,
    /// Scopes list (default: [`DEFAULT_SCOPES`]).
    pub scopes: Option<Vec<String>>,
    /// Seconds until `exp` (default 3600).
    pub ttl: Option<i64>,
    pub aud: Option<Audience>,
    pub sub: Option<String>,
    pub realm: Option<String>,
    /// Adds a `gitlab_instance_id` claim (self-issued tokens have none).
    pub instance_id: Option<String>,
    pub iss: Option<String>,
    pub iat: Option<i64>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub skip_usage_cutoff: Option<bool>,
    /// Merged over the claims; `null` removes a claim.
    pub extra_claims: Option<Map<String, Value>>,
    /// Merged over the header (`alg`, `kid`, `typ`, ...); `null` removes.
    pub header_overrides: Option<Map<String, Value>>,
    /// `rs256` (default), `none` (empty signature), `hs256-pubkey` (HMAC keyed
    /// with the public PEM: the algorithm-confusion attack), `garbage`.
    pub signature: Option<String>,
}

/// Mint a token. `default_iss` is used when the request has no `iss`; `now`
/// is seconds since the Unix epoch.
pub fn mint(req: &MintRequest, default_iss: &str, now: i64) -> Result<String, String> {
    let key_name = req.key.as_deref().unwrap_or("demo-1");
    let key =
        demo_key(key_name).ok_or_else(|| format!("unknown key {key_name:?} (demo-1, demo-2)"))?;
    let iat = req.iat.unwrap_or(now);
    let ttl = req.ttl.unwrap_or(3600);
    let aud: Vec<String> = match &req.aud {
        None => vec![DEFAULT_AUDIENCE.to_string()],
        Some(Audience::One(a)) => vec![a.clone()],
        Some(Audience::Many(v)) => v.clone(),
    };
    let scopes: Vec<String> = req
        .scopes
        .clone()
        .unwrap_or_else(|| DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect());
    let sub = req
        .sub
        .clone()
        .or_else(|| req.instance_id.clone())
        .unwrap_or_else(|| DEMO_INSTANCE_ID.to_string());

    let mut claims = Map::new();
    claims.insert("jti".into(), json!(crate::ids::uuid_v4()));
    claims.insert("aud".into(), json!(aud));
    claims.insert("sub".into(), json!(sub));
    claims.insert(
        "iss".into(),
        json!(req.iss.as_deref().unwrap_or(default_iss)),
    );
    claims.insert("iat".into(), json!(iat));
    claims.insert("nbf".into(), json!(req.nbf.unwrap_or(iat - 5)));
    claims.insert("exp".into(), json!(req.exp.unwrap_or(iat + ttl)));
    claims.insert(
        "gitlab_realm".into(),
        json!(req.realm.as_deref().unwrap_or(DEFAULT_REALM)),
    );
    claims.insert("scopes".into(), json!(scopes));
    claims.insert(
        "skip_usage_cutoff".into(),
        json!(req.skip_usage_cutoff.unwrap_or(false)),
    );
    if let Some(id) = &req.instance_id {
        claims.insert("gitlab_instance_id".into(), json!(id));
    }
    merge(&mut claims, req.extra_claims.as_ref());

    let mut header = Map::new();
    header.insert("alg".into(), json!("RS256"));
    header.insert("typ".into(), json!("JWT"));
    header.insert("kid".into(), json!(key.kid));
    merge(&mut header, req.header_overrides.as_ref());

    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(|e| e.to_string())?);
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).map_err(|e| e.to_string())?);
    let signing_input = format!("{h}.{c}");
    let sig: Vec<u8> = match req.signature.as_deref().unwrap_or("rs256") {
        "rs256" => key.sign_rs256(signing_input.as_bytes()),
        "none" => Vec::new(),
        "garbage" => {
            let mut s = key.sign_rs256(signing_input.as_bytes());
            if let Some(b) = s.get_mut(10) {
                *b ^= 0xff;
            }
            s
        }
        "hs256-pubkey" => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.public_pem.as_bytes())
                .map_err(|e| e.to_string())?;
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        other => return Err(format!("unknown signature mode {other:?}")),
    };
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

fn merge(target: &mut Map<String, Value>, over: Option<&Map<String, Value>>) {
    if let Some(over) = over {
        for (k, v) in over {
            if v.is_null() {
                target.remove(k);
            } else {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};

    fn now() -> i64 {
        crate::ids::unix_now()
    }

    fn validation() -> Validation {
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[DEFAULT_AUDIENCE]);
        v.leeway = 0;
        v
    }

    fn decoding_key_from_jwks(jwks: &Value, kid: &str) -> Option<DecodingKey> {
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
        set.find(kid).map(|k| DecodingKey::from_jwk(k).unwrap())
    }

    #[test]
    fn keys_load_and_kids_are_rfc7638_thumbprints() {
        let keys = demo_keys();
        assert_eq!(keys.len(), 2);
        assert_ne!(keys[0].kid, keys[1].kid);
        for k in keys {
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.jwk()).unwrap();
            assert_eq!(
                jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256),
                k.kid,
                "kid of {}",
                k.name
            );
            assert_eq!(k.e, "AQAB");
            assert_eq!(URL_SAFE_NO_PAD.decode(&k.n).unwrap().len(), 256);
        }
    }

    #[test]
    fn rfc7638_known_answer() {
        // RFC 7638 §3.1 example.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            rfc7638_thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn minted_token_verifies_with_served_jwks() {
        let token = mint(&MintRequest::default(), "http://issuer.test", now()).unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let kid = header.kid.unwrap();
        assert_eq!(kid, demo_keys()[0].kid);
        let set = jwks(&["demo-1".to_string()]);
        let key = decoding_key_from_jwks(&set, &kid).unwrap();
        let data = decode::<Value>(&token, &key, &validation()).unwrap();
        let c = data.claims;
        assert_eq!(c["iss"], "http://issuer.test");
        assert_eq!(c["aud"], json!(["gitlab-ai-gateway"]));
        assert_eq!(c["sub"], DEMO_INSTANCE_ID);
        assert_eq!(c["gitlab_realm"], "self-managed");
        assert_eq!(c["skip_usage_cutoff"], false);
        assert_eq!(c["nbf"].as_i64().unwrap(), c["iat"].as_i64().unwrap() - 5);
        assert_eq!(
            c["exp"].as_i64().unwrap(),
            c["iat"].as_i64().unwrap() + 3600
        );
        assert!(c["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("complete_code")));
        assert_eq!(c["jti"].as_str().unwrap().len(), 36);
        assert!(c.get("gitlab_instance_id").is_none());
        // Not verifiable with the other key's JWKS.
        let other = jwks(&["demo-2".to_string()]);
        assert!(decoding_key_from_jwks(&other, &kid).is_none());
    }

    #[test]
    fn knobs_are_applied() {
        let req: MintRequest = serde_json::from_value(json!({
            "key": "demo-2",
            "scopes": ["complete_code"],
            "ttl": 60,
            "aud": "other-aud",
            "realm": "saas",
            "instance_id": "inst-1",
            "iss": "https://gitlab.example.com",
            "iat": 1000,
            "extra_claims": {"duo_seat_count": "5", "skip_usage_cutoff": null},
            "header_overrides": {"kid": "forged"}
        }))
        .unwrap();
        let token = mint(&req, "unused", now()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["kid"], "forged");
        assert_eq!(claims["aud"], json!(["other-aud"]));
        assert_eq!(claims["sub"], "inst-1");
        assert_eq!(claims["gitlab_instance_id"], "inst-1");
        assert_eq!(claims["gitlab_realm"], "saas");
        assert_eq!(claims["iat"], 1000);
        assert_eq!(claims["nbf"], 995);
        assert_eq!(claims["exp"], 1060);
        assert_eq!(claims["duo_seat_count"], "5");
        assert!(claims.get("skip_usage_cutoff").is_none());
        assert_eq!(claims["scopes"], json!(["complete_code"]));
        // The signature itself is still a valid demo-2 RS256 signature.
        let key = DecodingKey::from_rsa_components(&demo_keys()[1].n, &demo_keys()[1].e).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.set_audience(&["other-aud"]);
        assert!(decode::<Value>(&token, &key, &v).is_ok());
    }

    #[test]
    fn hostile_signature_modes() {
        let key = DecodingKey::from_rsa_components(&demo_keys()[0].n, &demo_keys()[0].e).unwrap();
        for mode in ["none", "garbage", "hs256-pubkey"] {
            let req = MintRequest {
                signature: Some(mode.into()),
                ..Default::default()
            };
            let token = mint(&req, "iss", now()).unwrap();
            assert!(
                decode::<Value>(&token, &key, &validation()).is_err(),
                "{mode}"
            );
        }
        let none = mint(
            &MintRequest {
                signature: Some("none".into()),
                ..Default::default()
            },
            "iss",
            now(),
        )
        .unwrap();
        assert!(none.ends_with('.'));
        assert!(mint(
            &MintRequest {
                key: Some("nope".into()),
                ..Default::default()
            },
            "iss",
            now()
        )
        .is_err());
        assert!(serde_json::from_value::<MintRequest>(json!({"bogus": 1})).is_err());
    }

    #[test]
    fn expired_token_is_rejected_by_a_verifier() {
        let req = MintRequest {
            iat: Some(now() - 7200),
            ..Default::default()
        };
        let token = mint(&req, "iss", now()).unwrap();
        let key = DecodingKey::from_rsa_components(&demo_keys()[0].n, &demo_keys()[0].e).unwrap();
        assert!(decode::<Value>(&token, &key, &validation()).is_err());
    }

    #[test]
    fn discovery_and_jwks_shapes() {
        let d = discovery("http://127.0.0.1:1234");
        assert_eq!(d["issuer"], "http://127.0.0.1:1234");
        assert_eq!(d["jwks_uri"], "http://127.0.0.1:1234/oauth/discovery/keys");
        assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));
        let j = jwks(&["demo-1".into(), "demo-2".into(), "nope".into()]);
        assert_eq!(j["keys"].as_array().unwrap().len(), 2);
        assert_eq!(j["keys"][0]["alg"], "RS256");
        assert_eq!(j["keys"][0]["use"], "sig");
        assert_eq!(j["keys"][0]["kty"], "RSA");
    }
}
