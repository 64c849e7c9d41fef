//! Refreshing AWS credentials through the real Envoy (issue 6): the ECS/EKS container endpoint
//! and EC2 IMDSv2 served by the emulator, expiry and refresh, a failing refresh, API keys.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn completion() -> Vec<u8> {
    json!({"current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n    ", "content_below_cursor": ""},
           "prompt_version": 2, "model_identifier": format!("bedrock/{MODEL}")})
    .to_string()
    .into_bytes()
}

fn creds_knobs(emu: &Emulator, knobs: Value) {
    let r = request(
        emu.port,
        "POST",
        "/_emulator/creds",
        &[("content-type", "application/json")],
        Some(knobs.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn access_key(req: &Value) -> String {
    let auth = req["headers"]["authorization"].as_str().unwrap();
    auth.split("Credential=")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn container_credentials_are_fetched_refreshed_and_survive_a_failing_refresh() {
    let emu = Emulator::start();
    creds_knobs(
        &emu,
        json!({"container_token": "pod-identity-token", "ttl_secs": 6}),
    );
    let full_uri = format!("{}/_creds/container", emu.url);
    let sidecar = Sidecar::start_with(
        &emu,
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token"),
        ],
    );
    let token = emu.token();
    let headers = gitlab_headers(&token);
    let call = || {
        sidecar.request(
            "POST",
            "/v2/code/completions",
            &as_refs(&headers),
            Some(&completion()),
        )
    };
    // The first request waits for the first fetch instead of failing.
    let r = call();
    assert_eq!(r.status, 200, "{}", r.text());
    let first = emu.requests().last().cloned().unwrap();
    assert_eq!(first["signature_valid"], true, "{first:#}");
    assert!(
        access_key(&first).starts_with("ASIA"),
        "temporary credentials"
    );
    assert!(first["headers"]["x-amz-security-token"].is_string());
    // Refreshed before expiry (6 s lifetime → refresh at 80 %): a new key id, no failed request.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = call();
        assert_eq!(r.status, 200, "{}", r.text());
        if access_key(emu.requests().last().unwrap()) != access_key(&first) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "credentials never refreshed:\n{}",
            sidecar.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // The credential source fails: the current credentials keep signing until they expire.
    creds_knobs(&emu, json!({"fail": true}));
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(
            call().status,
            200,
            "still serving with the current credentials"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        sidecar
            .logs()
            .contains("still signing with the current credentials"),
        "{}",
        sidecar.logs()
    );
    let prom = sidecar.prometheus();
    assert!(
        prom.contains(
            r#"duo_bedrock_credential_refreshes_total{result="failed",source="container"}"#
        ),
        "{prom}"
    );
    assert!(emu.requests().iter().all(|r| r["signature_valid"] == true));
    assert!(
        !sidecar.logs().contains("pod-identity-token"),
        "the container token never reaches the log"
    );
    assert!(emu.stats()["container_fetches"].as_u64().unwrap() >= 2);
}

#[test]
fn imds_v2_credentials() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start_with(
        &emu,
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &emu.url.clone()),
        ],
    );
    let token = emu.token();
    let r = sidecar.request(
        "POST",
        "/v2/code/completions",
        &as_refs(&gitlab_headers(&token)),
        Some(&completion()),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), sidecar.logs());
    let req = emu.requests().last().cloned().unwrap();
    assert_eq!(req["signature_valid"], true);
    assert!(access_key(&req).starts_with("ASIA"));
    let stats = emu.stats();
    assert!(
        stats["imds_token_fetches"].as_u64().unwrap() >= 1
            && stats["imds_credential_fetches"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

#[test]
fn bedrock_api_key_is_sent_as_bearer() {
    let emu = Emulator::start_with(&["--api-key", "bedrock-api-key-123"]);
    let sidecar = Sidecar::start_with(
        &emu,
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-123"),
        ],
    );
    let token = emu.token();
    let r = sidecar.request(
        "POST",
        "/v2/code/completions",
        &as_refs(&gitlab_headers(&token)),
        Some(&completion()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let req = emu.requests().last().cloned().unwrap();
    assert_eq!(
        req["headers"]["authorization"],
        "Bearer bedrock-api-key-123"
    );
    assert!(!sidecar.logs().contains("bedrock-api-key-123"));
}
