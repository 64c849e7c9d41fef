//! The launcher (`duo-bedrock run`) as a supervisor, through the real Envoy: it exits with
//! Envoy's status as soon as Envoy exits and leaves no process behind, refuses unreadable token
//! files naming the variable, and serves the token files on its abstract socket to Envoy only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `duo-bedrock run` with only `env` (plus PATH and the build outputs); Envoy binds its listener
/// and admin on port 0 ([`launched_ports`] finds them). Its stderr is piped, stdout dropped.
fn launch(env: &[(&str, String)]) -> Child {
    launch_with(env, Stdio::null())
}

/// [`launch`] with the launcher's stdout going to `stdout`.
fn launch_with(env: &[(&str, String)], stdout: Stdio) -> Child {
    Command::new(launcher_bin())
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIGW_FASTAPI__API_HOST", "127.0.0.1")
        .env("AIGW_FASTAPI__API_PORT", "0")
        .env("AIGW_FASTAPI__METRICS_PORT", "0")
        .env("ENVOY_ADMIN_PORT", "0")
        .env("ENVOY_CONCURRENCY", "1")
        .env("DUO_FILTER_WASM", wasm_path())
        .env("DUO_EMULATOR_BIN", emulator_bin())
        .env("ENVOY_BIN", envoy_bin())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stops the launcher (SIGTERM: it stops its children and removes its directory) at the end.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purpose only once reaped; /proc/<pid>/stat says Z until then.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Envoy dies (SIGKILL): the launcher exits at once with 128 + 9 and stops the demo emulator.
#[test]
fn envoy_exiting_ends_the_launcher_at_once_with_its_status_and_no_orphan() {
    // The offline demo: the launcher starts the emulator too.
    let mut guard = Guard(launch(&[]));
    let (port, _) = launched_ports(&mut guard.0, Duration::from_secs(40));
    let r = wait_ready(port, Duration::from_secs(40));
    assert_eq!(r.status, 200, "{}", r.text());
    let kids = children(guard.0.id());
    let envoy = *kids
        .iter()
        .find(|p| comm(**p) == "envoy")
        .expect("an envoy child");
    let emulator = *kids
        .iter()
        .find(|p| comm(**p).starts_with("bedrock-emu"))
        .expect("an emulator child");
    let t0 = Instant::now();
    Command::new("kill")
        .args(["-KILL", &envoy.to_string()])
        .status()
        .unwrap();
    let status = wait_exit(&mut guard.0, Duration::from_secs(10)).expect("the launcher exits");
    let took = t0.elapsed();
    eprintln!("launcher exited {took:?} after Envoy was killed");
    assert_eq!(status.code(), Some(137), "{status}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(!alive(emulator), "the emulator outlived the launcher");
}

/// A token file that is set but cannot be read: no start, exit 2, the variable and the path named.
#[test]
fn an_unreadable_token_file_is_refused_naming_the_variable() {
    let dir = TempDir::new();
    let missing = dir.0.join("token");
    let env = [
        ("AIGW_GITLAB_URL", "https://gitlab.example.com".to_string()),
        ("AWS_REGION_NAME", REGION.into()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", missing.display().to_string()),
    ];
    let mut child = launch(&env);
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exits");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "AWS_WEB_IDENTITY_TOKEN_FILE={}",
            missing.display()
        )),
        "{err}"
    );
}

/// IRSA: Envoy gets the `sts` and `duo_bedrock_token_files` clusters, the launcher serves the
/// token file on `@duo-bedrock-tokens-<pid>-<random>`, and only to its Envoy.
#[test]
fn token_files_are_served_on_the_launchers_socket_to_envoy_only() {
    let emu = Emulator::start();
    let dir = TempDir::new();
    let token = dir.0.join("token");
    std::fs::write(&token, "web-identity-token-content").unwrap();
    let env = [
        ("AIGW_GITLAB_URL", emu.url.clone()),
        ("AWS_BEDROCK_RUNTIME_ENDPOINT", emu.url.clone()),
        ("AWS_REGION_NAME", REGION.into()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/duo".into()),
        ("AWS_ENDPOINT_URL_STS", emu.url.clone()),
    ];
    let mut guard = Guard(launch(&env));
    let (port, _) = launched_ports(&mut guard.0, Duration::from_secs(40));
    let r = wait_ready(port, Duration::from_secs(40));
    assert_eq!(r.status, 200, "{}", r.text());
    // Envoy's view: both clusters, the token files one on the launcher's socket.
    let envoy = *children(guard.0.id())
        .iter()
        .find(|p| comm(**p) == "envoy")
        .unwrap();
    // The launcher gave Envoy --admin-address-path under $TMPDIR (ENVOY_ADMIN_PORT=0).
    let cmdline = std::fs::read(format!("/proc/{envoy}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let i = args
        .iter()
        .position(|a| a == "--admin-address-path")
        .unwrap();
    let admin_file = std::path::PathBuf::from(&args[i + 1]);
    let text = std::fs::read_to_string(&admin_file).unwrap();
    let admin: u16 = text.trim().rsplit(':').next().unwrap().parse().unwrap();
    let clusters = request(admin, "GET", "/clusters", &[], None).text();
    // The socket: `@duo-bedrock-tokens-<launcher pid>-<random>`.
    let socket = clusters
        .lines()
        .find_map(|l| l.strip_prefix("duo_bedrock_token_files::@"))
        .and_then(|l| l.split("::").next())
        .unwrap_or_else(|| panic!("{clusters}"))
        .to_string();
    assert!(
        socket.starts_with(&format!("duo-bedrock-tokens-{}-", guard.0.id())),
        "{socket}"
    );
    // Another process than the launcher's Envoy: 403, nothing served.
    let addr = SocketAddr::from_abstract_name(&socket).unwrap();
    let mut s = UnixStream::connect_addr(&addr).expect("the launcher listens");
    let _ = write!(
        s,
        "GET /web-identity-token HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    );
    // 403 and closed without reading the request (a reset when it was still unread).
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 403"),
        "{answer}"
    );
    assert!(!answer.contains("web-identity-token-content"), "{answer}");
    assert!(clusters.contains("sts::127.0.0.1"), "{clusters}");
    // SIGTERM: drained through the admin port Envoy picked, exit 0, the directory removed.
    let mut guard = guard;
    Command::new("kill")
        .arg(guard.0.id().to_string())
        .status()
        .unwrap();
    let status = wait_exit(&mut guard.0, Duration::from_secs(10)).expect("the launcher exits");
    assert!(status.success(), "{status}");
    assert!(!alive(envoy));
    assert!(
        !admin_file.parent().unwrap().exists(),
        "{}",
        admin_file.display()
    );
}

/// `AIGW_LOGGING__FORMAT_JSON=true`: every line the container writes (the launcher's own, then
/// Envoy's with the filter's) is one JSON object, from the first line to the last.
#[test]
fn json_mode_writes_only_json_lines() {
    let emu = Emulator::start();
    let env = [
        ("AIGW_GITLAB_URL", emu.url.clone()),
        ("AWS_BEDROCK_RUNTIME_ENDPOINT", emu.url.clone()),
        ("AWS_REGION_NAME", REGION.into()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AIGW_LOGGING__FORMAT_JSON", "True".into()),
        ("DUO_BEDROCK_DRAIN_SECONDS", "0".into()),
    ];
    let mut child = launch_with(&env, Stdio::piped());
    let (port, _) = launched_ports(&mut child, Duration::from_secs(40));
    let r = wait_ready(port, Duration::from_secs(40));
    assert_eq!(r.status, 200, "{}", r.text());
    // One request without a token: the filter's request record is among the lines.
    let r = request(port, "POST", "/v2/code/completions", &[], Some(b"{}"));
    assert_eq!(r.status, 401);
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(20)).expect("stops");
    assert!(status.success(), "{status}");
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let lines: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(lines.len() > 20, "{out}{err}");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.is_object() && v["message"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""logger":"duo-bedrock""#) && l.contains("Envoy on 127.0.0.1")),
        "the launcher's own line"
    );
    assert!(
        lines.iter().any(|l| l.contains(r#"\"status\":401"#)),
        "the filter's request record: {err}"
    );
}

/// IRSA end to end through `duo-bedrock run` (no test stand-in): the launcher serves the token
/// file, the filter exchanges it at the emulator's STS, Bedrock requests are signed with the
/// temporary credentials, and after the file is rotated the next refresh sends the new token.
#[test]
fn irsa_through_the_launcher_follows_the_rotated_token_file() {
    let emu = Emulator::start();
    let role = "arn:aws:iam::111122223333:role/gitlab-duo";
    emu.creds(serde_json::json!({"web_identity_token": "irsa-1", "role_arn": role, "ttl_secs": 6}));
    let dir = TempDir::new();
    let file = dir.0.join("token");
    std::fs::write(&file, "irsa-1\n").unwrap();
    let env = [
        ("AIGW_GITLAB_URL", emu.url.clone()),
        ("AWS_BEDROCK_RUNTIME_ENDPOINT", emu.url.clone()),
        ("AWS_REGION_NAME", REGION.into()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", file.display().to_string()),
        ("AWS_ROLE_ARN", role.into()),
        ("AWS_ENDPOINT_URL_STS", emu.url.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ];
    let mut guard = Guard(launch(&env));
    let (port, _) = launched_ports(&mut guard.0, Duration::from_secs(40));
    let r = wait_ready(port, Duration::from_secs(40));
    assert_eq!(r.status, 200, "{}", r.text());
    let token = emu.token();
    let complete = || {
        let body = serde_json::json!({"current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n    ", "content_below_cursor": ""},
            "prompt_version": 2, "model_identifier": format!("bedrock/{MODEL}"), "stream": false});
        let r = request(
            port,
            "POST",
            "/v2/code/completions",
            &as_refs(&gitlab_headers(&token)),
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    complete();
    let last = emu.requests().pop().unwrap();
    assert_eq!(last["signature_valid"], true, "{last:#}");
    assert!(
        last["headers"]["x-amz-security-token"].is_string(),
        "{last:#}"
    );
    // The kubelet rotates the projected token (a new file renamed over the old one).
    let tmp = dir.0.join("token.new");
    std::fs::write(&tmp, "irsa-2\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    emu.creds(serde_json::json!({"web_identity_token": "irsa-2"}));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = emu.creds_state();
        let seen = state["web_identity_tokens_seen"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if seen.iter().any(|t| t == "irsa-2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated token never reached STS: {state:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Requests keep being signed, now with credentials issued for the new token.
    std::thread::sleep(Duration::from_millis(500));
    complete();
    assert_eq!(emu.requests().pop().unwrap()["signature_valid"], true);
}
