//! JWKS and OIDC discovery parsing (`src/auth/keys.rs`): what the filter reads from GitLab's
//! `/.well-known/openid-configuration` and `jwks_uri`, the self-signed key PEMs, `Cache-Control`
//! and the refresh schedule.
//!
//! Input: `mode` byte, then, by `mode % 4`:
//! 0. up to four JWKS documents separated by NUL;
//! 1. a discovery document;
//! 2. a PEM private key (the gateway's `AIGW_SELF_SIGNED_JWT__*`);
//! 3. `base-url \0 cache-control \0 refresh-ops` (ops: 9-byte records `op, time(8)`).
//!
//! Properties:
//! * `KeySet::from_jwks` keeps 1..=64 keys with distinct kids, each found by `get`, or fails;
//!   `merge_jwks_json` fails exactly then, and its canonical JSON (only `kty, kid, n, e, alg,
//!   use`) parses back to the same kids, nothing skipped, and is a fixed point of merging;
//! * tokens pre-signed with the fixture keys get the same verdict from the parsed set and from
//!   the set rebuilt from the canonical JSON (same key material, same kids);
//! * a `jwks_uri` is trimmed and http(s); `http_target` splits it into a non-empty authority
//!   without userinfo and a path starting with `/`, without fragment;
//! * `discovery_url` always ends in `/.well-known/openid-configuration` on the base's origin;
//! * a usable PEM gives a one-key JWKS with the requested kid; errors never quote the key;
//! * `max_age` only reads a `max-age` directive; the refresh policy allows an unknown-kid
//!   refresh at most once per 15 s and backs off 5..=60 s after failures.

#![no_main]

use duo_bedrock_filter::auth::keys::{
    discovery_url, http_target, jwk_from_private_pem, jwks_uri_from_discovery, max_age,
    merge_jwks_json, self_signed_jwks, KeySet, RefreshPolicy, MAX_KEYS,
};
use duo_bedrock_filter::auth::rules::{verify, AuthConfig};
use duo_bedrock_filter_fuzz::{b64url, fields, number, rs256_sign, text};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::OnceLock;

const NOW: u64 = 1_739_952_000;

/// Tokens signed with key 1 (kid test-key-1), key 2 (kid test-key-2), key 1 without a kid,
/// and key 2 under key 1's kid.
fn tokens() -> &'static [String; 4] {
    static T: OnceLock<[String; 4]> = OnceLock::new();
    T.get_or_init(|| {
        let payload = b64url(
            format!(
                r#"{{"aud":"gitlab-ai-gateway","exp":{},"jti":"j"}}"#,
                NOW + 3600
            )
            .as_bytes(),
        );
        let tok = |header: &str, second: bool| {
            let input = format!("{}.{payload}", b64url(header.as_bytes()));
            let sig = rs256_sign(input.as_bytes(), second);
            format!("{input}.{sig}")
        };
        [
            tok(r#"{"alg":"RS256","kid":"test-key-1"}"#, false),
            tok(r#"{"alg":"RS256","kid":"test-key-2"}"#, true),
            tok(r#"{"alg":"RS256"}"#, false),
            tok(r#"{"alg":"RS256","kid":"test-key-1"}"#, true),
        ]
    })
}

fn jwks_docs(docs: &[&[u8]]) {
    let parsed = KeySet::from_jwks(docs);
    let merged = merge_jwks_json(docs);
    let set = match parsed {
        Err(e) => {
            assert!(merged.is_err(), "merge succeeded where parsing failed: {e}");
            return;
        }
        Ok(set) => set,
    };
    assert!((1..=MAX_KEYS).contains(&set.len()));
    assert!(set.bad_documents() <= docs.len());
    let kids = set.kids();
    for (i, kid) in kids.iter().enumerate() {
        assert!(!kids[..i].contains(kid), "duplicate kid {kid:?}");
        assert!(set.get(kid).is_some());
    }
    assert_eq!(set.single().is_some(), set.len() == 1);
    let _ = format!("{set:?}");

    let merged = merged.expect("merge succeeds when parsing does");
    assert_eq!(merged, set.to_jwks_json());
    let v: Value = serde_json::from_str(&merged).expect("canonical JWKS is JSON");
    let list = v["keys"].as_array().expect("keys array");
    assert_eq!(list.len(), set.len());
    for k in list {
        let names: Vec<&str> = k
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        for n in &names {
            assert!(["kty", "kid", "n", "e", "alg", "use"].contains(n), "{k}");
        }
        assert_eq!(
            (k["kty"].as_str(), k["alg"].as_str(), k["use"].as_str()),
            (Some("RSA"), Some("RS256"), Some("sig"))
        );
    }
    let again = KeySet::from_jwks(&[merged.as_bytes()]).expect("canonical JWKS parses");
    assert_eq!(again.kids(), kids);
    assert_eq!(again.len(), set.len());
    assert_eq!((again.skipped(), again.bad_documents()), (0, 0));
    assert_eq!(
        merge_jwks_json(&[merged.as_bytes()]).as_deref(),
        Ok(merged.as_str())
    );

    let cfg = AuthConfig::default();
    for t in tokens() {
        assert_eq!(
            verify(t, &set, &cfg, NOW),
            verify(t, &again, &cfg, NOW),
            "{merged}"
        );
    }
}

fn discovery(body: &[u8]) {
    let Ok(uri) = jwks_uri_from_discovery(body) else {
        return;
    };
    assert_eq!(uri.trim(), uri);
    let lower = uri.to_ascii_lowercase();
    assert!(
        lower.starts_with("https://") || lower.starts_with("http://"),
        "{uri}"
    );
    if let Ok(t) = http_target(&uri) {
        assert_eq!(t.https, lower.starts_with("https://"));
        assert!(!t.authority.is_empty());
        assert!(!t.authority.contains(['@', '/', '?', '#']), "{t:?}");
        assert!(t.path.starts_with('/') && !t.path.contains('#'), "{t:?}");
    }
}

fn pem(pem: &str) {
    // A private key must never be quoted back in an error.
    // (Only when the BEGIN line is whole: otherwise the "label" may run into the body.)
    let first = pem.trim().lines().next().unwrap_or("").trim();
    let whole_begin = first.starts_with("-----BEGIN ")
        && first.ends_with("-----")
        && !first["-----BEGIN ".len()..first.len().saturating_sub(5).max("-----BEGIN ".len())]
            .contains("-----");
    let key_lines: Vec<&str> = pem
        .lines()
        .filter(|_| whole_begin)
        .map(str::trim)
        // Key material: long runs of the base64 alphabet, which no error text contains.
        .filter(|l| {
            l.len() >= 16
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        })
        .collect();
    let no_key = |e: &str| {
        for l in &key_lines {
            assert!(!e.contains(l), "error quotes the key: {e}");
        }
    };
    match jwk_from_private_pem(pem, "fuzz-kid") {
        Ok(j) => {
            let doc = format!(r#"{{"keys":[{j}]}}"#);
            let set = KeySet::from_jwks(&[doc.as_bytes()]).expect("a JWK from a PEM is usable");
            assert_eq!(set.kids(), vec!["fuzz-kid"]);
        }
        Err(e) => no_key(&e),
    }
    match self_signed_jwks("svc", Some(pem), None) {
        Ok(Some(doc)) => {
            let set = KeySet::from_jwks(&[doc.as_bytes()]).expect("self-signed JWKS is usable");
            assert_eq!(set.kids(), vec!["svc_signing_key"]);
        }
        Ok(None) => assert!(pem.trim().is_empty()),
        Err(e) => no_key(&e),
    }
}

fn misc(f: &[&[u8]]) {
    let base = text(f.first().copied().unwrap_or_default());
    let url = discovery_url(&base);
    assert!(url.ends_with("/.well-known/openid-configuration"), "{url}");
    if let Some(i) = base.trim().find("://") {
        let origin = &url[..url.len() - "/.well-known/openid-configuration".len()];
        assert!(base.trim().starts_with(origin), "{base:?} -> {url}");
        assert!(origin.len() >= i + 3);
    } else {
        assert_eq!(url, "/.well-known/openid-configuration");
    }
    let _ = http_target(&base);

    let cc = text(f.get(1).copied().unwrap_or_default());
    if max_age(Some(&cc)).is_some() {
        assert!(cc.to_ascii_lowercase().contains("max-age"), "{cc:?}");
    }

    let ops = f.get(2).copied().unwrap_or_default();
    let mut p = RefreshPolicy::default();
    let mut last_allowed: Option<u64> = None;
    let mut last_attempt: Option<u64> = None;
    for rec in ops.chunks_exact(9) {
        let t = number(rec, 1, 8) % 100_000;
        match rec[0] % 3 {
            0 => {
                let next = p.on_success(t, max_age(Some(&cc)));
                assert!(next >= t.saturating_add(15) && next <= t.saturating_add(3600));
                last_attempt = Some(t);
            }
            1 => {
                let next = p.on_failure(t);
                assert!((t + 5..=t + 60).contains(&next), "{t} -> {next}");
                last_attempt = Some(t);
            }
            _ => {
                if p.allow_unknown_kid_refresh(t) {
                    if let Some(prev) = last_attempt {
                        assert!(t >= prev.saturating_add(15) || t < prev, "{prev} then {t}");
                    }
                    last_allowed = Some(t);
                    last_attempt = Some(t);
                }
            }
        }
    }
    let _ = last_allowed;
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => jwks_docs(&fields(rest, 4)),
        1 => discovery(rest),
        2 => pem(&text(rest)),
        _ => misc(&fields(rest, 3)),
    }
});
