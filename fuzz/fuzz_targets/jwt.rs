//! The JWT path of `src/auth/rules.rs`: `extract_token`, then `verify_with` with
//! `SignatureCheck::Verify` (the in-wasm RS256 check) and with
//! `SignatureCheck::VerifiedByEnvoy { jti }` (Envoy's jwt_authn vouched for a token), then the
//! claim/header bindings and the verified-token cache.
//!
//! Tokens are minted here with the PEM fixtures of `src/auth/testdata` (the harness's RS256
//! signer, checked against jsonwebtoken in its unit test), over the fuzzed header and payload,
//! so most inputs carry a genuinely valid signature.
//!
//! Input: NUL-separated fields `control \0 header \0 payload \0 jti \0 auth-type \0 headers`.
//! `control` (hex text) byte 0 bits: 0 header/payload are the base64url segments as sent (else JSON,
//! encoded here), 1 sign with key 2 (else key 1), 2 corrupt the signature, 3 the token is the
//! `header` field verbatim (no signing), 4 jwt_authn's jti is the payload's own `jti`,
//! 5 empty key set, 6 audience `other-service`; byte 1 the leeway; bytes 2..6 the clock offset
//! (signed); byte 6 the size limit. `headers`: extra `name: value` lines, before the
//! Authorization and auth-type headers built from the token.
//!
//! Properties:
//! * every failure is a 401 with GitLab's `{"error": "<message>"}` body;
//! * `extract_token` returns the text after the first space of the first Authorization header,
//!   only with `Bearer` and auth type `oidc`;
//! * whenever the signature is valid for the key the token names (or some key, without `kid`),
//!   both paths give the same verdict: the same claims or the same error;
//! * the Envoy path accepts only tokens whose `jti` is jwt_authn's and whose `kid` is in the
//!   key set; when it falls back to the filter it agrees with `Verify` exactly;
//! * `Verify` never accepts a corrupted signature; accepted claims are time-valid and carry the
//!   audience; bindings hold for the headers when `check_bindings` accepts them;
//! * a verified token is a cache hit right after insertion.

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use duo_bedrock_filter::auth::cache::{TokenCache, TokenKey};
use duo_bedrock_filter::auth::rules::{
    check_bindings, extract_token, seat_count_warning, verify, verify_with, AuthConfig, Claims,
    SignatureCheck, VerifiedBy, GLOBAL_USER_ID, INSTANCE_ID, REALM,
};
use duo_bedrock_filter::auth::{AuthError, Headers, KeySet, GATEWAY_ISSUER};
use duo_bedrock_filter_fuzz::{
    assert_auth_error_body, b64url, bit, field, fields, hex, number, rs256_sign, text, JWKS,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

const NOW: u64 = 1_739_952_000;

fn keys() -> &'static KeySet {
    static K: OnceLock<KeySet> = OnceLock::new();
    K.get_or_init(|| KeySet::from_jwks(&[JWKS.as_bytes()]).expect("fixture JWKS"))
}

fn check_error(e: &AuthError) {
    assert_eq!(e.status(), 401);
    assert_auth_error_body(&e.body());
    assert!(!e.reason().is_empty());
    if let AuthError::UnknownKid(kid) = e {
        assert!(kid.len() <= 128);
    }
}

/// The `kid` member of the token's header, as the verifier reads it (`None`: absent or null).
fn header_kid(header_segment: &str) -> Option<Option<String>> {
    let json = URL_SAFE_NO_PAD.decode(header_segment).ok()?;
    let v: Value = serde_json::from_slice(&json).ok()?;
    match v.get("kid") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fields(data, 6);
    let control = &hex(field(&f, 0))[..];
    let raw_segments = bit(control, 0);
    let second_key = bit(control, 1);
    let corrupt = bit(control, 2);
    let verbatim = bit(control, 3);
    let own_jti = bit(control, 4);
    let empty_keys = bit(control, 5);
    let leeway = number(control, 1, 1);
    let offset = number(control, 2, 4) as u32 as i32;
    let now = NOW.saturating_add_signed(i64::from(offset));

    // The token.
    let (token, signed_kid_ok) = if verbatim {
        (text(field(&f, 1)), None)
    } else {
        let (h, p) = if raw_segments {
            (text(field(&f, 1)), text(field(&f, 2)))
        } else {
            (b64url(field(&f, 1)), b64url(field(&f, 2)))
        };
        let signing_input = format!("{h}.{p}");
        let mut sig = rs256_sign(signing_input.as_bytes(), second_key);
        if corrupt {
            let mut raw = URL_SAFE_NO_PAD.decode(&sig).expect("own signature");
            let i = usize::from(control.get(7).copied().unwrap_or(0)) % raw.len();
            raw[i] ^= control.get(8).copied().unwrap_or(0).max(1);
            sig = b64url(&raw);
        }
        // Valid for the key the filter will use: the named one, or any without a kid.
        let used = if second_key {
            "test-key-2"
        } else {
            "test-key-1"
        };
        let valid = !corrupt
            && match header_kid(&h) {
                Some(Some(kid)) => kid == used,
                Some(None) => true,
                None => true, // the header cannot be read: both paths stop before the key
            };
        (format!("{signing_input}.{sig}"), Some(valid))
    };

    let cfg = AuthConfig {
        audience: if bit(control, 6) {
            "other-service"
        } else {
            GATEWAY_ISSUER
        }
        .to_string(),
        leeway_secs: leeway,
        max_token_bytes: match control.get(6).copied().unwrap_or(0) % 5 {
            1 => token.len(),
            2 => token.len().saturating_sub(1),
            3 => 1024,
            _ => 8192,
        },
    };
    let empty = KeySet::empty();
    let keys = if empty_keys { &empty } else { keys() };

    // Headers: fuzzed extras first (first occurrence wins), then the ones the token needs.
    let mut headers: Vec<(String, String)> = text(field(&f, 5))
        .split('\n')
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    headers.push(("authorization".into(), format!("Bearer {token}")));
    headers.push(("x-gitlab-authentication-type".into(), text(field(&f, 4))));

    match extract_token(headers.as_slice()) {
        Ok(t) => {
            let auth = Headers::get(headers.as_slice(), "authorization").expect("present");
            let (scheme, rest) = auth.split_once(' ').expect("a space");
            assert!(scheme.eq_ignore_ascii_case("bearer"));
            assert_eq!(t, rest);
            assert!(!t.is_empty());
            assert_eq!(
                Headers::get(headers.as_slice(), "x-gitlab-authentication-type"),
                Some("oidc")
            );
        }
        Err(e) => check_error(&e),
    }

    let by_filter = verify_with(&token, keys, &cfg, now, SignatureCheck::Verify);
    assert_eq!(
        verify(&token, keys, &cfg, now),
        by_filter.clone().map(|(c, _)| c)
    );
    let jti = if own_jti {
        let p = if raw_segments || verbatim {
            token
                .split('.')
                .nth(1)
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        } else {
            Some(field(&f, 2).to_vec())
        };
        p.and_then(|p| serde_json::from_slice::<Value>(&p).ok())
            .and_then(|v| v.get("jti").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default()
    } else {
        text(field(&f, 3))
    };
    let by_envoy = verify_with(
        &token,
        keys,
        &cfg,
        now,
        SignatureCheck::VerifiedByEnvoy { jti: &jti },
    );

    for r in [&by_filter, &by_envoy] {
        match r {
            Ok((c, _)) => {
                assert!(c.aud.contains(&cfg.audience));
                assert!(c.time_valid(now, cfg.leeway_secs));
            }
            Err(e) => check_error(e),
        }
    }
    if let Ok((_, by)) = &by_filter {
        assert_eq!(*by, VerifiedBy::Filter);
        assert_ne!(
            signed_kid_ok,
            Some(false),
            "a bad signature was accepted: {token}"
        );
    }
    match &by_envoy {
        Ok((c, VerifiedBy::Envoy)) => {
            assert_eq!(c.jti.as_deref(), Some(jti.as_str()));
            let seg = token.split('.').next().unwrap_or("");
            let kid = header_kid(seg)
                .flatten()
                .expect("the Envoy path needs a kid");
            assert!(keys.get(&kid).is_some());
        }
        Ok((c, VerifiedBy::Filter)) => {
            assert_eq!(by_filter, Ok((c.clone(), VerifiedBy::Filter)));
        }
        Err(_) => {}
    }
    if signed_kid_ok == Some(true) {
        assert_eq!(
            by_filter.clone().map(|(c, _)| c),
            by_envoy.clone().map(|(c, _)| c),
            "the two signature paths disagree on {token} (jti {jti:?})"
        );
    }

    let Ok((claims, _)) = by_filter else {
        return;
    };
    match check_bindings(&claims, headers.as_slice()) {
        Ok(()) => {
            let sub_header = if claims.iss.as_deref() == Some(GATEWAY_ISSUER) {
                GLOBAL_USER_ID
            } else {
                INSTANCE_ID
            };
            for (claim, header) in [
                (&claims.gitlab_realm, REALM),
                (&claims.gitlab_instance_id, INSTANCE_ID),
                (&claims.sub, sub_header),
            ] {
                if let Some(v) = claim.as_deref().filter(|v| !v.is_empty()) {
                    assert_eq!(Headers::get(headers.as_slice(), header), Some(v));
                }
            }
        }
        Err(e) => {
            assert!(matches!(e, AuthError::HeaderMismatch(_)));
            check_error(&e);
        }
    }
    let _ = seat_count_warning(&claims, headers.as_slice());
    let mut cache = TokenCache::new(4, cfg.leeway_secs);
    let key = TokenKey::of(&token);
    cache.insert(key.clone(), claims.clone(), now);
    assert_eq!(cache.get(&key, now), Some(claims.clone()));
    let _: Claims = claims;
});
