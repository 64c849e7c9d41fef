//! GitLab JWT authentication through the real Envoy (issue 3;
//! docs/gitlab-contract.md#authentication, #errors). An accepted token on an unknown path gets the
//! post-auth 404; a rejected one gets the 401 body.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const FORBIDDEN: &str = r#"{"error":"Forbidden by auth provider"}"#;

fn probe(sidecar: &Sidecar, token: &str) -> Response {
    sidecar.request(
        "POST",
        "/v9/probe",
        &as_refs(&gitlab_headers(token)),
        Some(b"{}"),
    )
}

fn accepted(r: &Response) -> bool {
    r.status == 404
}

/// The sidecar as `make run` starts it (Envoy's jwt_authn checks signatures in front of the
/// filter), or with the filter alone verifying (`DUO_BEDROCK_ENVOY_JWT_AUTHN=false`).
fn sidecar(emu: &Emulator, envoy_jwt_authn: bool) -> Sidecar {
    let flag = if envoy_jwt_authn { "true" } else { "false" };
    Sidecar::start_with(emu, &[("DUO_BEDROCK_ENVOY_JWT_AUTHN", flag)])
}

/// `duo_bedrock_jwt_signature_checks_total{source=...}` from Envoy's Prometheus page.
fn signature_checks(sidecar: &Sidecar, source: &str) -> u64 {
    let prom = sidecar.prometheus();
    let prefix = format!("duo_bedrock_jwt_signature_checks_total{{source=\"{source}\"}} ");
    prom.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn header_rules_and_exact_bodies() {
    for native in [true, false] {
        header_rules_and_exact_bodies_with(native);
    }
}

fn header_rules_and_exact_bodies_with(native: bool) {
    let emu = Emulator::start();
    let sidecar = sidecar(&emu, native);
    let token = emu.token();
    assert!(
        accepted(&probe(&sidecar, &token)),
        "a valid token is accepted"
    );

    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![
                ("authorization", format!("Basic {token}")),
                ("x-gitlab-authentication-type", "oidc".into()),
            ],
            r#"{"error":"Invalid authorization header"}"#,
        ),
        // The gateway partitions at the first space: no token is an empty token, which fails verification.
        (
            vec![
                ("authorization", "Bearer".into()),
                ("x-gitlab-authentication-type", "oidc".into()),
            ],
            FORBIDDEN,
        ),
        (
            vec![
                ("authorization", "Token abc".into()),
                ("x-gitlab-authentication-type", "oidc".into()),
            ],
            r#"{"error":"Invalid authorization header"}"#,
        ),
        (
            vec![("authorization", format!("Bearer {token}"))],
            r#"{"error":"Invalid authentication token type - only OIDC is supported"}"#,
        ),
        (
            vec![
                ("authorization", format!("Bearer {token}")),
                ("x-gitlab-authentication-type", "OIDC".into()),
            ],
            r#"{"error":"Invalid authentication token type - only OIDC is supported"}"#,
        ),
        (
            vec![
                ("authorization", "Bearer not.a.jwt".into()),
                ("x-gitlab-authentication-type", "oidc".into()),
            ],
            FORBIDDEN,
        ),
        (
            vec![
                ("AUTHORIZATION", format!("bearer {token}")),
                ("X-GITLAB-AUTHENTICATION-TYPE", "oidc".into()),
                ("X-Gitlab-Realm", "saas".into()),
                ("x-gitlab-instance-id", INSTANCE_ID.into()),
            ],
            r#"{"error":"Header mismatch 'X-Gitlab-Realm'"}"#,
        ),
        (
            vec![
                ("authorization", format!("Bearer {token}")),
                ("x-gitlab-authentication-type", "oidc".into()),
                ("x-gitlab-realm", "self-managed".into()),
                ("x-gitlab-instance-id", "other".into()),
            ],
            r#"{"error":"Header mismatch 'X-Gitlab-Instance-Id'"}"#,
        ),
    ];
    for (headers, body) in cases {
        let r = sidecar.request(
            "POST",
            "/v2/code/completions",
            &as_refs(&headers),
            Some(b"{}"),
        );
        assert_eq!((r.status, r.text().as_str()), (401, body), "{headers:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert!(
        emu.requests().is_empty(),
        "no rejected request reaches Bedrock"
    );
}

#[test]
fn hostile_tokens_are_forbidden() {
    for native in [true, false] {
        hostile_tokens_are_forbidden_with(native);
    }
}

fn hostile_tokens_are_forbidden_with(native: bool) {
    let emu = Emulator::start();
    let sidecar = sidecar(&emu, native);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = emu.token();
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    parts[2] = format!("{}A", &parts[2][..parts[2].len() - 1].replace('A', "B"));
    let tampered = parts.join(".");
    let hostile = [
        (
            "expired",
            emu.mint(json!({"iat": now - 7200, "exp": now - 10})),
        ),
        ("future nbf", emu.mint(json!({"nbf": now + 600}))),
        ("wrong aud", emu.mint(json!({"aud": ["someone-else"]}))),
        ("tampered signature", tampered),
        ("truncated", good[..good.len() / 2].to_string()),
        ("64 KiB", "a".repeat(64 * 1024)),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                good.split('.').nth(1).unwrap()
            ),
        ),
    ];
    for (what, token) in hostile {
        let r = probe(&sidecar, &token);
        assert_eq!((r.status, r.text().as_str()), (401, FORBIDDEN), "{what}");
    }
    assert!(accepted(&probe(&sidecar, &good)), "the VM still serves");
    assert!(
        !sidecar.logs().contains(&good),
        "tokens never reach the log"
    );
}

#[test]
fn envoy_jwt_authn_checks_signatures_of_fresh_tokens() {
    let emu = Emulator::start();
    let sidecar = sidecar(&emu, true);
    for _ in 0..5 {
        assert!(accepted(&probe(&sidecar, &emu.token())));
    }
    assert_eq!(signature_checks(&sidecar, "envoy_jwt_authn"), 5);
    assert_eq!(signature_checks(&sidecar, "filter"), 0);

    // A key jwt_authn has not fetched yet (GitLab rotated): the filter verifies the signature
    // itself, so the rotation is accepted at once.
    emu.oidc(json!({"active_keys": ["demo-1", "demo-2"]}));
    let rotated = emu.mint(json!({"key": "demo-2"}));
    assert!(accepted(&probe(&sidecar, &rotated)));
    assert_eq!(signature_checks(&sidecar, "filter"), 1);

    // Two Authorization headers reach both filters joined into one value (Envoy folds this
    // header), which is no token: refused, whatever jwt_authn made of it.
    let token = emu.token();
    let forged = {
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[1] = b64(r#"{"scopes":["everything"]}"#);
        parts.join(".")
    };
    for (first, second) in [(&token, &forged), (&forged, &token), (&token, &token)] {
        let mut headers = gitlab_headers(first);
        headers.push(("authorization", format!("Bearer {second}")));
        let r = sidecar.request("POST", "/v9/probe", &as_refs(&headers), Some(b"{}"));
        assert_eq!((r.status, r.text().as_str()), (401, FORBIDDEN));
    }
    assert_eq!(signature_checks(&sidecar, "envoy_jwt_authn"), 5);

    // Without jwt_authn every signature is checked in the filter.
    let sidecar = self::sidecar(&emu, false);
    assert!(accepted(&probe(&sidecar, &emu.token())));
    assert_eq!(signature_checks(&sidecar, "filter"), 1);
    assert_eq!(signature_checks(&sidecar, "envoy_jwt_authn"), 0);
}

fn b64(s: &str) -> String {
    use std::fmt::Write;
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            let _ = out.write_char(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn key_rotation_is_picked_up_without_restart() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    assert!(accepted(&probe(&sidecar, &emu.token())));
    let fetches_before = emu.stats()["filter_jwks_fetches"].as_u64().unwrap();
    // GitLab rotates: the new key is published, tokens are signed with it.
    emu.oidc(json!({"active_keys": ["demo-1", "demo-2"]}));
    let rotated = emu.mint(json!({"key": "demo-2"}));
    let start = Instant::now();
    let r = probe(&sidecar, &rotated);
    assert!(accepted(&r), "{} {}", r.status, r.text());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "accepted within seconds: {:?}",
        start.elapsed()
    );
    assert!(emu.stats()["filter_jwks_fetches"].as_u64().unwrap() > fetches_before);
}

#[test]
fn unknown_kid_flood_costs_few_fetches() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    assert!(accepted(&probe(&sidecar, &emu.token())));
    // The filter's own fetches only: jwt_authn in front fetches once per worker, on its own
    // schedule (on a loaded machine after the first request), and never for an unknown kid.
    let before = emu.stats()["filter_jwks_fetches"].as_u64().unwrap();
    // demo-2 is not published: every token has an unknown kid.
    let stranger = emu.mint(json!({"key": "demo-2"}));
    let start = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let port = sidecar.port;
            let token = stranger.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|_| {
                        request(
                            port,
                            "POST",
                            "/v9/probe",
                            &as_refs(&gitlab_headers(&token)),
                            Some(b"{}"),
                        )
                        .status
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap().iter().all(|s| *s == 401));
    }
    let fetches = emu.stats()["filter_jwks_fetches"].as_u64().unwrap() - before;
    let allowed = 1 + start.elapsed().as_secs() / 15;
    assert!(
        fetches <= allowed,
        "{fetches} JWKS fetches for 100 unknown-kid requests in {:?}",
        start.elapsed()
    );
}

#[test]
fn jwks_down_at_start_then_recovers() {
    let emu = Emulator::start();
    emu.oidc(json!({"down": true}));
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let r = probe(&sidecar, &token);
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, FORBIDDEN),
        "no keys: 401 after a bounded wait"
    );
    assert!(
        sidecar.logs().contains("no GitLab keys"),
        "the log says why"
    );
    emu.oidc(json!({"down": false}));
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if accepted(&probe(&sidecar, &token)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keys never loaded after the issuer came back"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn slow_jwks_at_start_makes_requests_wait_not_fail() {
    let emu = Emulator::start();
    emu.oidc(json!({"delay_ms": 1500}));
    let sidecar = Sidecar::start(&emu);
    let r = probe(&sidecar, &emu.token());
    assert!(accepted(&r), "{} {}", r.status, r.text());
}

#[test]
fn bypass_disables_auth_loudly() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start_with(&emu, &[("AIGW_AUTH__BYPASS_EXTERNAL", "true")]);
    let r = sidecar.request("POST", "/v9/probe", &[], Some(b"{}"));
    assert_eq!(r.status, 404);
    assert!(sidecar.logs().contains("AUTHENTICATION IS DISABLED"));
}
