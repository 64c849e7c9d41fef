//! Refreshing AWS credentials through the real Envoy (issue 6): the ECS/EKS container endpoint
//! and EC2 IMDSv2 served by the emulator, expiry and refresh, a failing refresh, API keys; EKS
//! IRSA (STS `AssumeRoleWithWebIdentity`) and Pod Identity with token files that change on disk
//! and are re-read at every refresh without a restart.
//!
//! The launcher serves the token files to Envoy (cluster `duo_bedrock_token_files` on an
//! abstract Unix socket, docs/bedrock-contract.md#token-files); here the test process plays
//! that part ([`TokenFiles`]) and the rendered Envoy config gets the clusters and variables the
//! launcher adds ([`with_token_files`]).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn completion() -> Vec<u8> {
    json!({"current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n    ", "content_below_cursor": ""},
           "prompt_version": 2, "model_identifier": format!("bedrock/{MODEL}")})
    .to_string()
    .into_bytes()
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
    emu.creds(json!({"container_token": "pod-identity-token", "ttl_secs": 6}));
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
    emu.creds(json!({"fail": true}));
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

// ----- EKS: token files served by the launcher -----

const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/duo-bedrock";

/// The launcher's token-file server, played by the test: `GET /web-identity-token` and
/// `GET /container-authorization-token` answer the current content of their file (read at every
/// request), 404 when the file is not configured, 503 when it cannot be read. Listens on an
/// abstract Unix socket that stays bound for the test's life.
struct TokenFiles {
    name: String,
}

impl TokenFiles {
    fn start(web_identity: Option<PathBuf>, container: Option<PathBuf>) -> TokenFiles {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "duo-bedrock-test-token-files-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixListener::bind_addr(&addr).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // Drain the request headers.
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let file = match path {
                    "/web-identity-token" => web_identity.as_deref(),
                    "/container-authorization-token" => container.as_deref(),
                    _ => None,
                };
                let (status, body) = match file.map(std::fs::read) {
                    None => ("404 Not Found", b"not configured".to_vec()),
                    Some(Ok(b)) => ("200 OK", b),
                    Some(Err(e)) => ("503 Service Unavailable", e.to_string().into_bytes()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&body);
            }
        });
        TokenFiles { name }
    }
}

/// The launcher's rendering (clusters `duo_bedrock_token_files` and `sts`, the plugin fields
/// `token_files_cluster` / `sts_cluster`, the variables in `host_env_keys`) with the token-file
/// cluster pointed at this test's server instead of the launcher's own socket (only
/// `duo-bedrock run` serves that one, to the Envoy it started: tests/launcher.rs). `_sts_port`:
/// STS is the emulator already (`AWS_ENDPOINT_URL_STS`).
fn with_token_files(config: String, files: &TokenFiles, _sts_port: u16) -> String {
    assert!(
        config.contains(r#""token_files_cluster":"duo_bedrock_token_files""#),
        "the launcher renders the token-file cluster"
    );
    let start = config
        .find("pipe: { path: \"@duo-bedrock-tokens-")
        .expect("the token-file cluster's socket");
    let end = start + config[start..].find('"').unwrap() + 1;
    let end = end + config[end..].find('"').unwrap() + 1;
    format!(
        "{}pipe: {{ path: \"@{}\"{}",
        &config[..start],
        files.name,
        &config[end..]
    )
}

/// Replaces a token file as the kubelet does (a new file renamed over the old one).
fn write_token(path: &Path, token: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("{token}\n")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn last_seen(emu: &Emulator, list: &str) -> Option<String> {
    emu.creds_state()[list]
        .as_array()
        .and_then(|a| a.last())
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Secrets that must never reach Envoy's log: the tokens the test wrote, and the emulator's
/// session tokens (they all start with this prefix).
fn assert_no_secret_in_log(sidecar: &Sidecar, tokens: &[&str]) {
    let logs = sidecar.logs();
    for t in tokens.iter().chain(&["IQoJemulator"]) {
        assert!(!logs.contains(t), "{t} leaked into the log:\n{logs}");
    }
}

/// The sequence number of an emulator-issued key (`ASIAEMU000042` → 42).
fn key_seq(key: &str) -> u64 {
    key.trim_start_matches("ASIAEMU").parse().unwrap_or(0)
}

/// Calls until the emulator saw `token` on `list` and a completion was signed with credentials
/// issued after `issued_before` (so with the new token: the emulator accepts only that one by
/// then); every call in between succeeds.
fn until_rotated(
    emu: &Emulator,
    sidecar: &Sidecar,
    call: &dyn Fn() -> Response,
    list: &str,
    token: &str,
    issued_before: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = call();
        assert_eq!(r.status, 200, "{}\n{}", r.text(), sidecar.logs());
        let req = emu.requests().last().cloned().unwrap();
        assert_eq!(req["signature_valid"], true, "{req:#}");
        if last_seen(emu, list).as_deref() == Some(token)
            && key_seq(&access_key(&req)) > issued_before
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the new token was never sent ({:#}):\n{}",
            emu.creds_state(),
            sidecar.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn eks_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    env.extend_from_slice(extra);
    env
}

#[test]
fn irsa_credentials_from_sts_follow_the_token_file_without_restart() {
    let emu = Emulator::start();
    emu.creds(json!({"web_identity_token": "irsa-token-1", "role_arn": ROLE_ARN, "ttl_secs": 6}));
    let dir = TempDir::new();
    let token_file = dir.0.join("token");
    write_token(&token_file, "irsa-token-1");
    let files = TokenFiles::start(Some(token_file.clone()), None);
    let token_path = token_file.to_string_lossy().into_owned();
    let sidecar = Sidecar::start_patched(
        &emu,
        &eks_env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_path),
            ("AWS_ROLE_ARN", ROLE_ARN),
            ("AWS_ROLE_SESSION_NAME", "gitlab-duo"),
            ("AWS_ENDPOINT_URL_STS", &emu.url),
        ]),
        &|c| with_token_files(c, &files, emu.port),
    );
    assert_eq!(
        wait_ready(sidecar.port, Duration::from_secs(20)).status,
        200,
        "{}",
        sidecar.logs()
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
    let r = call();
    assert_eq!(r.status, 200, "{}", r.text());
    let first = emu.requests().last().cloned().unwrap();
    assert_eq!(first["signature_valid"], true, "{first:#}");
    assert!(access_key(&first).starts_with("ASIA"));
    assert!(first["headers"]["x-amz-security-token"].is_string());
    assert_eq!(
        last_seen(&emu, "web_identity_tokens_seen").as_deref(),
        Some("irsa-token-1")
    );

    // EKS rotates the projected token: only the new one is valid from now on, and the next
    // refresh (6 s credentials) sends it, without a restart.
    write_token(&token_file, "irsa-token-2");
    emu.creds(json!({"web_identity_token": "irsa-token-2"}));
    let issued = emu.creds_state()["issued"].as_u64().unwrap();
    until_rotated(
        &emu,
        &sidecar,
        &call,
        "web_identity_tokens_seen",
        "irsa-token-2",
        issued,
    );
    assert!(
        !emu.creds_state()["web_identity_tokens_seen"]
            .as_array()
            .unwrap()
            .iter()
            .skip_while(|t| *t != "irsa-token-2")
            .any(|t| t == "irsa-token-1"),
        "the old token is never sent again"
    );
    let prom = sidecar.prometheus();
    assert!(
        prom.contains(
            r#"duo_bedrock_credential_refreshes_total{result="ok",source="web_identity"}"#
        ),
        "{prom}"
    );
    assert!(sidecar
        .logs()
        .contains("from the web_identity source loaded"));
    assert_no_secret_in_log(&sidecar, &["irsa-token-1", "irsa-token-2"]);
}

#[test]
fn pod_identity_token_file_is_reread_at_every_refresh() {
    let emu = Emulator::start();
    emu.creds(json!({"container_token": "pod-token-1", "ttl_secs": 6}));
    let dir = TempDir::new();
    let token_file = dir.0.join("eks-pod-identity-token");
    write_token(&token_file, "pod-token-1");
    let files = TokenFiles::start(None, Some(token_file.clone()));
    let token_path = token_file.to_string_lossy().into_owned();
    let full_uri = format!("{}/_creds/container", emu.url);
    let sidecar = Sidecar::start_patched(
        &emu,
        &eks_env(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full_uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_path),
        ]),
        &|c| with_token_files(c, &files, emu.port),
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
    let r = call();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), sidecar.logs());
    let first = emu.requests().last().cloned().unwrap();
    assert_eq!(first["signature_valid"], true);
    assert_eq!(
        last_seen(&emu, "container_tokens_seen").as_deref(),
        Some("pod-token-1")
    );
    write_token(&token_file, "pod-token-2");
    emu.creds(json!({"container_token": "pod-token-2"}));
    let issued = emu.creds_state()["issued"].as_u64().unwrap();
    until_rotated(
        &emu,
        &sidecar,
        &call,
        "container_tokens_seen",
        "pod-token-2",
        issued,
    );
    assert_no_secret_in_log(&sidecar, &["pod-token-1", "pod-token-2"]);
}

#[test]
fn sts_invalid_identity_token_keeps_the_sidecar_unready() {
    let emu = Emulator::start();
    emu.creds(json!({"web_identity_token": "the-valid-token"}));
    let dir = TempDir::new();
    let token_file = dir.0.join("token");
    write_token(&token_file, "a-rejected-token");
    let files = TokenFiles::start(Some(token_file), None);
    let token_path = dir.0.join("token").to_string_lossy().into_owned();
    let sidecar = Sidecar::start_patched(
        &emu,
        &eks_env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_path),
            ("AWS_ROLE_ARN", ROLE_ARN),
            ("AWS_ENDPOINT_URL_STS", &emu.url),
        ]),
        &|c| with_token_files(c, &files, emu.port),
    );
    // The log names STS's error code once the first refresh failed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sidecar.logs().contains("InvalidIdentityToken") {
        assert!(Instant::now() < deadline, "{}", sidecar.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = sidecar.logs();
    assert!(
        logs.contains(
            "AWS credential refresh from the web_identity source failed (1 in a row): STS \
             AssumeRoleWithWebIdentity answered HTTP 400: InvalidIdentityToken"
        ),
        "{logs}"
    );
    let r = sidecar.request("GET", "/monitoring/ready", &[], None);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("no usable AWS credentials yet from the web_identity credential source"),
        "{}",
        r.text()
    );
    let prom = sidecar.prometheus();
    assert!(
        prom.contains(
            r#"duo_bedrock_credential_refreshes_total{result="failed",source="web_identity"}"#
        ),
        "{prom}"
    );
    assert_eq!(
        last_seen(&emu, "web_identity_tokens_seen").as_deref(),
        Some("a-rejected-token")
    );
    assert_no_secret_in_log(&sidecar, &["a-rejected-token", "the-valid-token"]);
}
