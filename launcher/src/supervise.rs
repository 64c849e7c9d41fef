//! `duo-bedrock run`: Envoy as a supervised child.
//!
//! SIGTERM, SIGINT and SIGCHLD are blocked in every thread and taken with `sigwait` by the main
//! thread, so nothing happens in a signal handler. When Envoy exits, the launcher stops what else
//! it started (the demo emulator) and exits at once with Envoy's status (128 + the signal when a
//! signal ended it). SIGTERM or SIGINT first drains (the admin's `/drain_listeners?graceful`: no
//! new connections, the requests in flight finish, up to DUO_BEDROCK_DRAIN_SECONDS), then stops
//! Envoy (the admin's `/quitquitquit`, then the signal itself, then SIGKILL) and exits 0. Children
//! get SIGTERM if the launcher dies without stopping them (`PR_SET_PDEATHSIG`).

use crate::env::{ConfigError, Env};
use crate::render;
use crate::say;
use crate::{config_error, emulator_path, envoy_path, tokens, wasm_path};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts the sidecar and supervises it; the process exit status.
pub fn run() -> i32 {
    let signals = Signals::block();
    let mut children = Children::default();
    let code = match start(&mut children) {
        Ok(mut envoy) => supervise(&signals, &mut envoy),
        Err(e) => config_error(&e),
    };
    children.stop();
    code
}

/// Processes the launcher started besides Envoy, and the directory it made; stopped and removed
/// whatever happens.
#[derive(Default)]
struct Children {
    emulator: Option<Child>,
    dir: Option<PathBuf>,
}

impl Children {
    fn stop(&mut self) {
        if let Some(mut child) = self.emulator.take() {
            stop_child(&mut child, &[libc::SIGTERM, libc::SIGKILL]);
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Envoy {
    child: Child,
    admin_port: u16,
    drain_s: u64,
    /// Where Envoy writes its admin address (ENVOY_ADMIN_PORT=0 only).
    admin_file: Option<PathBuf>,
}

fn start(children: &mut Children) -> Result<Envoy, ConfigError> {
    let mut env = Env::from_process();
    // No credentials of any kind, no endpoint and no region: nothing real to talk to. Any AWS
    // credential setting (an IRSA or Pod Identity variable included) means a real deployment:
    // a missing piece is then a configuration error, never a silent demo.
    let demo = env
        .first(&[
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_BEARER_TOKEN_BEDROCK",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_BEDROCK_RUNTIME_ENDPOINT",
            "AWS_REGION_NAME",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
        ])
        .is_none();
    // EKS mounts the token files before the pod starts: one that cannot be read now is a
    // configuration error, not something to wait for.
    let token_files = tokens::TokenFiles::from_env(&env);
    token_files.check().map_err(ConfigError)?;
    let socket = tokens::socket_name(std::process::id());
    let peer = Arc::new(AtomicU32::new(0));
    if render::serves_token_files(&env) {
        tokens::serve(&socket, token_files, peer.clone())
            .map_err(|e| ConfigError(format!("cannot serve the token files on @{socket}: {e}")))?;
    }
    let mut banner = String::new();
    if demo {
        let (emulator, url) = start_emulator(&env)?;
        children.emulator = Some(emulator);
        env.set("AWS_ACCESS_KEY_ID", render::DEMO_ACCESS_KEY);
        env.set("AWS_SECRET_ACCESS_KEY", render::DEMO_SECRET_KEY);
        env.set("AWS_REGION_NAME", render::DEMO_REGION);
        env.set("AWS_BEDROCK_RUNTIME_ENDPOINT", &url);
        env.set("AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT", &url);
        env.set_default(
            "AIGW_BEDROCK_KNOWLEDGE_BASE_ID",
            render::DEMO_KNOWLEDGE_BASE,
        );
        env.remove("AWS_SESSION_TOKEN");
        env.set_default("AIGW_GITLAB_URL", &url);
        env.set_default("AIGW_DEFAULT_MODEL", render::DEMO_MODEL);
        let token = mint_demo_token(&env, &url)?;
        banner = demo_banner(&env.get_or("AIGW_FASTAPI__API_PORT", "5052"), &token);
    }
    let config = render::render(&env, &wasm_path(&env), &socket)?;
    let envoy = envoy_path(&env)?;
    // --disable-hot-restart: a sidecar is replaced, never hot-restarted, and without it every
    // Envoy on a host uses the same shared-memory base id (0): a second instance would fail
    // to start ("unable to bind domain socket with base_id=0").
    let mut cmd = Command::new(&envoy);
    cmd.arg("--config-yaml")
        .arg(&config)
        .args(["--log-level", &env.get_or("ENVOY_LOG_LEVEL", "info")])
        .args(["--disable-hot-restart", "--drain-strategy", "immediate"])
        .args(["--drain-time-s", "1"]);
    if env.pydantic_bool("AIGW_LOGGING__FORMAT_JSON", false)? {
        cmd.args(["--log-format", crate::say::ENVOY_JSON_LOG_FORMAT]);
    }
    if let Some(n) = env.get("ENVOY_CONCURRENCY") {
        cmd.args(["--concurrency", &n]);
    }
    // Kubernetes sends SIGTERM when it stops the pod: the requests in flight drain first
    // (DUO_BEDROCK_DRAIN_SECONDS, default the model timeout + 5 s; the pod's
    // terminationGracePeriodSeconds must be above it).
    let timeout = env.int("AIGW_MODEL_TIMEOUT_SECONDS", 60, 1, 600)?;
    let drain_s = env.int("DUO_BEDROCK_DRAIN_SECONDS", timeout + 5, 0, 3600)?;
    let admin_port = env.int("ENVOY_ADMIN_PORT", 9901, 0, 65535)?;
    let mut admin_file = None;
    if admin_port == 0 {
        // Envoy picks the admin port: it says which in a file, for the drain to find.
        let dir = std::env::temp_dir().join(format!("duo-bedrock-{}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                let file = dir.join("admin.address");
                cmd.arg("--admin-address-path").arg(&file);
                admin_file = Some(file);
                children.dir = Some(dir);
            }
            Err(e) => say::error(
                "warning",
                &format!(
                    "duo-bedrock: no drain on SIGTERM: cannot create {}: {e}",
                    dir.display()
                ),
            ),
        }
    }
    cmd.env_clear().envs(env.vars());
    let child = spawn_supervised(&mut cmd)
        .map_err(|e| ConfigError(format!("cannot start {}: {e}", envoy.display())))?;
    peer.store(child.id(), Ordering::SeqCst);
    say::info(&format!(
        "duo-bedrock sidecar: Envoy on {}:{} (admin 127.0.0.1:{}); Bedrock {}",
        env.get_or("AIGW_FASTAPI__API_HOST", "0.0.0.0"),
        env.get_or("AIGW_FASTAPI__API_PORT", "5052"),
        env.get_or("ENVOY_ADMIN_PORT", "9901"),
        env.get_or("AWS_BEDROCK_RUNTIME_ENDPOINT", "regional endpoint"),
    ));
    if !banner.is_empty() {
        say::info(&banner);
    }
    Ok(Envoy {
        child,
        admin_port: admin_port as u16,
        drain_s: drain_s as u64,
        admin_file,
    })
}

/// Waits for Envoy to exit or for SIGTERM / SIGINT; the exit status.
fn supervise(signals: &Signals, envoy: &mut Envoy) -> i32 {
    loop {
        match signals.wait() {
            sig @ (libc::SIGTERM | libc::SIGINT) => {
                let admin = match &envoy.admin_file {
                    Some(file) => read_admin_port(file),
                    None => Some(envoy.admin_port),
                };
                drain(signals, &mut envoy.child, admin, envoy.drain_s, sig);
                return 0;
            }
            _ => match envoy.child.try_wait() {
                Ok(Some(status)) => return exit_code(status),
                Ok(None) => {}
                Err(_) => return 1,
            },
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// The admin port Envoy wrote to `--admin-address-path` (`127.0.0.1:PORT`).
fn read_admin_port(file: &PathBuf) -> Option<u16> {
    let text = std::fs::read_to_string(file).ok()?;
    text.trim()
        .rsplit(':')
        .next()?
        .parse()
        .ok()
        .filter(|p| *p != 0)
}

/// Graceful shutdown: Envoy stops taking new connections and asks open ones to close
/// (`/drain_listeners?graceful`, with --drain-strategy immediate), the requests in flight (long
/// streams included) finish, up to `bound_s` seconds; then Envoy stops. Without an admin port
/// it just stops. A second SIGTERM / SIGINT ends the wait.
fn drain(signals: &Signals, envoy: &mut Child, admin: Option<u16>, bound_s: u64, sig: i32) {
    let running = |envoy: &mut Child| matches!(envoy.try_wait(), Ok(None));
    if !running(envoy) {
        return;
    }
    let started = Instant::now();
    let bound = Duration::from_secs(bound_s);
    if let Some(port) = admin {
        if admin_call(port, "POST", "/drain_listeners?graceful&inboundonly").is_ok() {
            say::info(&format!(
                "duo-bedrock sidecar: draining (at most {bound_s} s)"
            ));
            while started.elapsed() < bound && running(envoy) && signals.poll_stop().is_none() {
                match admin_stat(port, "http.ai_gateway.downstream_rq_active") {
                    Some(active) if active > 0 => std::thread::sleep(Duration::from_millis(100)),
                    _ => break,
                }
            }
        }
        if running(envoy) {
            // The admin's own exit is immediate; a signal would wait for Envoy's shutdown sequence.
            let _ = admin_call(port, "POST", "/quitquitquit");
        }
    }
    stop_child(envoy, &[0, sig, libc::SIGKILL]);
    say::info(&format!(
        "duo-bedrock sidecar: stopped after draining {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}

/// Sends each of `signals` in turn (0: none) while `child` runs, waiting up to 5 s after each.
fn stop_child(child: &mut Child, signals: &[i32]) {
    for &sig in signals {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        if sig != 0 {
            // SAFETY: kill(2) on our own child, not yet reaped (so its pid is still ours).
            unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Spawns `cmd` with no signal blocked (the launcher's mask is inherited through fork and exec)
/// and so that it gets SIGTERM when the launcher dies.
fn spawn_supervised(cmd: &mut Command) -> std::io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: sigemptyset, pthread_sigmask, prctl, getppid and _exit are async-signal-safe;
    // nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The launcher died before prctl: nobody would stop this child.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// One admin call: (status, body); an error for no answer or a status of 400 and above.
fn admin_call(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    let timeout = Duration::from_secs(2);
    let mut s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    if status >= 400 {
        return Err(std::io::Error::other(format!("admin {path}: {status}")));
    }
    Ok(text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string())
}

/// One counter or gauge from Envoy's admin (`/stats?filter=^name$`), None when unreadable.
fn admin_stat(port: u16, name: &str) -> Option<u64> {
    let pattern: String = name
        .chars()
        .map(|c| match c {
            '.' => "%5C.".to_string(),
            c => c.to_string(),
        })
        .collect();
    let body = admin_call(port, "GET", &format!("/stats?filter=%5E{pattern}%24")).ok()?;
    body.lines().find_map(|line| {
        let (key, value) = line.split_once(": ")?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Start the bundled emulator on a free loopback port; returns (process, base_url).
fn start_emulator(env: &Env) -> Result<(Child, String), ConfigError> {
    let binary = emulator_path(env);
    if !binary.exists() {
        return Err(ConfigError(format!(
            "{} is missing: run `make build` first",
            binary.display()
        )));
    }
    let mut cmd = Command::new(&binary);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--access-key-id", render::DEMO_ACCESS_KEY])
        .args(["--secret-access-key", render::DEMO_SECRET_KEY])
        .args(["--region", render::DEMO_REGION])
        .stdout(Stdio::piped());
    let mut child = spawn_supervised(&mut cmd)
        .map_err(|e| ConfigError(format!("cannot start {}: {e}", binary.display())))?;
    let mut out = BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| ConfigError("no pipe".into()))?,
    );
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    let prefix = "bedrock-emulator listening on ";
    match line.trim().strip_prefix(prefix) {
        Some(url) => {
            let url = url.to_string();
            // Whatever else it prints must not fill the pipe and block it.
            std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
            Ok((child, url))
        }
        None => {
            stop_child(&mut child, &[libc::SIGKILL]);
            Err(ConfigError(format!(
                "the emulator did not start (said {})",
                crate::pyish::py_repr(line.trim())
            )))
        }
    }
}

fn mint_demo_token(env: &Env, issuer: &str) -> Result<String, ConfigError> {
    let binary = emulator_path(env);
    let mut cmd = Command::new(&binary);
    cmd.args(["mint", "--issuer", issuer])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = spawn_supervised(&mut cmd)
        .and_then(Child::wait_with_output)
        .map_err(|e| ConfigError(format!("{}: {e}", binary.display())))?;
    if !out.status.success() {
        return Err(ConfigError(format!(
            "{} mint failed: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn demo_banner(port: &str, token: &str) -> String {
    let base = format!("http://127.0.0.1:{port}");
    let headers = format!(
        "-H 'Authorization: Bearer {token}' -H 'X-Gitlab-Authentication-Type: oidc' \
         -H 'X-Gitlab-Realm: self-managed' -H 'X-Gitlab-Instance-Id: 00000000-0000-4000-8000-000000000001' \
         -H 'Content-Type: application/json'"
    );
    let completion = format!(
        r#"{{"current_file": {{"file_name": "add.py", "language_identifier": "python", "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": "\n"}}, "prompt_version": 2, "model_provider": "litellm", "model_identifier": "bedrock/{}", "stream": false}}"#,
        render::DEMO_MODEL
    );
    let docs_search = r#"{"type": "search-docs", "metadata": {"source": "GitLab EE", "version": "18.9.0"}, "payload": {"query": "How do I protect a branch?"}}"#;
    format!(
        r#"
=====================================================================
 OFFLINE DEMO: no AWS credentials and no AWS_BEDROCK_RUNTIME_ENDPOINT.
 Bedrock and the GitLab OIDC issuer are the bundled emulator, a local
 stand-in. Set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 AWS_REGION_NAME and AIGW_GITLAB_URL to serve real traffic.
=====================================================================
Try (the token is a demo token, valid for one hour):

  curl -i {base}/monitoring/healthz
  curl -i {base}/            # 401 {{"error":"No authorization header presented"}}
  curl -i {base}/v2/code/completions {headers} \
       -d '{completion}'
  # Duo Chat's documentation search, from the emulator's demo knowledge base:
  curl -i {base}/v1/search/gitlab-docs {headers} \
       -d '{docs_search}'

"#
    )
}

/// SIGTERM, SIGINT and SIGCHLD, blocked in this thread and every thread it starts later (the
/// children get an empty mask: [`spawn_supervised`] resets it before exec).
pub struct Signals {
    all: libc::sigset_t,
    stop: libc::sigset_t,
}

impl Signals {
    fn block() -> Signals {
        // SAFETY: sigset_t is plain data, initialized by sigemptyset before use.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut stop: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut all);
            libc::sigemptyset(&mut stop);
            for sig in [libc::SIGTERM, libc::SIGINT] {
                libc::sigaddset(&mut all, sig);
                libc::sigaddset(&mut stop, sig);
            }
            libc::sigaddset(&mut all, libc::SIGCHLD);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
            Signals { all, stop }
        }
    }

    /// The next of the three signals.
    fn wait(&self) -> i32 {
        let mut sig = 0;
        // SAFETY: a valid set; sigwait only writes `sig`.
        loop {
            if unsafe { libc::sigwait(&self.all, &mut sig) } == 0 {
                return sig;
            }
        }
    }

    /// A pending SIGTERM or SIGINT, taken without waiting.
    fn poll_stop(&self) -> Option<i32> {
        let zero = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid set and timeout; no siginfo asked for.
        let sig = unsafe { libc::sigtimedwait(&self.stop, std::ptr::null_mut(), &zero) };
        (sig > 0).then_some(sig)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_demo_banner_has_the_commands_to_paste() {
        let b = demo_banner("5052", "TOKEN");
        assert!(b.contains("curl -i http://127.0.0.1:5052/            # 401 {\"error\":\"No authorization header presented\"}"));
        assert!(b.contains(r#"-d '{"current_file": {"file_name": "add.py", "language_identifier": "python", "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": "\n"}, "prompt_version": 2, "model_provider": "litellm", "model_identifier": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0", "stream": false}'"#));
        assert!(b.contains("-H 'Authorization: Bearer TOKEN' -H"));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}
