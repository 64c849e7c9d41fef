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

/// `duo-bedrock run` on `port` with only `env` (plus PATH and the build outputs).
fn launch(port: u16, env: &[(&str, String)]) -> Child {
    Command::new(launcher_bin())
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIGW_FASTAPI__API_HOST", "127.0.0.1")
        .env("AIGW_FASTAPI__API_PORT", port.to_string())
        .env("AIGW_FASTAPI__METRICS_PORT", "0")
        .env("ENVOY_ADMIN_PORT", "0")
        .env("ENVOY_CONCURRENCY", "1")
        .env("DUO_FILTER_WASM", wasm_path())
        .env("DUO_EMULATOR_BIN", emulator_bin())
        .env("ENVOY_BIN", envoy_bin())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
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
    let port = free_port();
    // The offline demo: the launcher starts the emulator too.
    let mut guard = Guard(launch(port, &[]));
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
    let mut child = launch(free_port(), &env);
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
/// token file on `@duo-bedrock-tokens-<pid>`, and only to its Envoy.
#[test]
fn token_files_are_served_on_the_launchers_socket_to_envoy_only() {
    let emu = Emulator::start();
    let dir = TempDir::new();
    let token = dir.0.join("token");
    std::fs::write(&token, "web-identity-token-content").unwrap();
    let port = free_port();
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
    let guard = Guard(launch(port, &env));
    let r = wait_ready(port, Duration::from_secs(40));
    assert_eq!(r.status, 200, "{}", r.text());
    let socket = format!("duo-bedrock-tokens-{}", guard.0.id());
    let addr = SocketAddr::from_abstract_name(&socket).unwrap();
    let mut s = UnixStream::connect_addr(&addr).expect("the launcher listens");
    write!(
        s,
        "GET /web-identity-token HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("web-identity-token-content"), "{answer}");
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
    assert!(
        clusters.contains(&format!("duo_bedrock_token_files::@{socket}")),
        "{clusters}"
    );
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
