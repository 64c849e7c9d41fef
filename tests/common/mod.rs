//! Test harness: boots the bundled emulator and the real Envoy (from the project virtualenv)
//! with the built .wasm on free loopback ports, and tears both down on drop, even when a
//! test fails. A tiny HTTP/1.1 client keeps full control over what goes on the wire.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod h2;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn path_from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(default))
}

pub fn wasm_path() -> PathBuf {
    let p = path_from_env(
        "DUO_FILTER_WASM",
        "target/wasm32-wasip1/release/duo_bedrock_filter.wasm",
    );
    assert!(
        p.exists(),
        "{} missing: run `make build` (or `make test`)",
        p.display()
    );
    p
}

pub fn emulator_bin() -> PathBuf {
    let p = path_from_env("DUO_EMULATOR_BIN", "target/release/bedrock-emulator");
    assert!(p.exists(), "{} missing: run `make build`", p.display());
    p
}

/// The launcher, `duo-bedrock` (launcher/; `make build` builds it).
pub fn launcher_bin() -> PathBuf {
    let p = path_from_env("DUO_BEDROCK_LAUNCHER", "target/release/duo-bedrock");
    assert!(p.exists(), "{} missing: run `make build`", p.display());
    p
}

pub fn envoy_bin() -> PathBuf {
    let p = path_from_env("ENVOY_BIN", ".venv/bin/envoy");
    assert!(p.exists(), "{} missing: run `make envoy`", p.display());
    p
}

/// The ports Envoy bound itself (listener and admin configured with port 0, so no other test can
/// take them between a choice and Envoy's bind): the admin address Envoy writes to
/// `--admin-address-path`, then the first listener's address from the admin `/listeners`.
/// `None` until Envoy is that far.
pub fn envoy_bound_ports(admin_address_file: &Path) -> Option<(u16, u16)> {
    let admin = std::fs::read_to_string(admin_address_file).ok()?;
    let admin_port: u16 = admin.trim().rsplit(':').next()?.parse().ok()?;
    let r = try_request(admin_port, "GET", "/listeners?format=json", &[], None).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    // The serving listener (the metrics listener, when there is one, is not it).
    let port = v["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] != "metrics")?["local_address"]["socket_address"]["port_value"]
        .as_u64()?;
    Some((u16::try_from(port).ok()?, admin_port))
}

/// The (listener, admin) ports of the Envoy a launcher started (`duo-bedrock run` with
/// `AIGW_FASTAPI__API_PORT=0` and `ENVOY_ADMIN_PORT=0`: Envoy binds both itself, and the
/// launcher passes it `--admin-address-path`): found from the Envoy child's command line. Waits
/// up to `timeout`; a panic if the launcher exits or Envoy never gets that far.
pub fn launched_ports(launcher: &mut Child, timeout: Duration) -> (u16, u16) {
    let deadline = Instant::now() + timeout;
    let pid = launcher.id();
    loop {
        if let Ok(Some(status)) = launcher.try_wait() {
            panic!("the launcher exited: {status}");
        }
        let envoy = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "envoy")
            });
        let admin_file = envoy.and_then(|p| {
            let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let i = args.iter().position(|a| *a == b"--admin-address-path")?;
            Some(PathBuf::from(
                String::from_utf8_lossy(args.get(i + 1)?).into_owned(),
            ))
        });
        if let Some(ports) = admin_file.and_then(|f| envoy_bound_ports(&f)) {
            return ports;
        }
        assert!(
            Instant::now() < deadline,
            "the launcher's Envoy did not bind its ports"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `/monitoring/ready` until it answers 200 (Envoy listening, keys loaded, credentials
/// usable) or `timeout` passes; the last answer either way (a panic if nothing ever answered).
pub fn wait_ready(port: u16, timeout: Duration) -> Response {
    let deadline = Instant::now() + timeout;
    loop {
        let r = try_request(port, "GET", "/monitoring/ready", &[], None);
        match r {
            Ok(r) if r.status == 200 || Instant::now() >= deadline => return r,
            Err(e) if Instant::now() >= deadline => panic!("nothing answers on {port}: {e}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A free port for a peer that cannot report the port it bound (prefer port 0 and asking the
/// peer, as [`envoy_bound_ports`] does). Never the same port twice in one test process: the
/// kernel readily hands a just-released port out again, so two calls in a row could collide.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
pub const SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const REGION: &str = "us-east-1";
pub const INSTANCE_ID: &str = "00000000-0000-4000-8000-000000000001";
pub const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

pub struct Emulator {
    pub url: String,
    pub port: u16,
    child: Child,
}

impl Emulator {
    pub fn start() -> Emulator {
        Self::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> Emulator {
        let mut child = Command::new(emulator_bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--access-key-id",
                ACCESS_KEY,
                "--secret-access-key",
                SECRET_KEY,
            ])
            .args(["--region", REGION])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("bedrock-emulator listening on ")
            .unwrap_or_else(|| panic!("emulator said {line:?}"))
            .to_string();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Emulator { url, port, child }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let headers = [("content-type", "application/json")];
        request(self.port, method, path, &headers, body.map(str::as_bytes))
    }

    /// A GitLab-style token signed by the emulator's active demo key; `knobs` as `POST /_emulator/mint`.
    pub fn mint(&self, knobs: serde_json::Value) -> String {
        let r = self.call("POST", "/_emulator/mint", Some(&knobs.to_string()));
        assert_eq!(r.status, 200, "mint: {}", r.text());
        r.json()["token"].as_str().unwrap().to_string()
    }

    pub fn token(&self) -> String {
        self.mint(serde_json::json!({}))
    }

    pub fn oidc(&self, knobs: serde_json::Value) {
        let r = self.call("POST", "/_emulator/oidc", Some(&knobs.to_string()));
        assert_eq!(r.status, 200, "oidc: {}", r.text());
    }

    pub fn stats(&self) -> serde_json::Value {
        self.call("GET", "/_emulator/stats", None).json()
    }

    /// Sets the credential endpoints' knobs (`POST /_emulator/creds`: expected tokens, role,
    /// credential lifetime, forced errors; emulator/README.md).
    pub fn creds(&self, knobs: serde_json::Value) {
        let r = self.call("POST", "/_emulator/creds", Some(&knobs.to_string()));
        assert_eq!(r.status, 200, "creds: {}", r.text());
    }

    /// The credential endpoints' state (`GET /_emulator/creds`: issued credentials, the tokens
    /// STS and the container endpoint saw).
    pub fn creds_state(&self) -> serde_json::Value {
        self.call("GET", "/_emulator/creds", None).json()
    }

    /// The text the emulator's model answers with from now on (`POST /_emulator/reply`).
    pub fn set_reply(&self, reply: &str) {
        let body = serde_json::json!({ "reply": reply }).to_string();
        let r = self.call("POST", "/_emulator/reply", Some(&body));
        assert_eq!(r.status, 200, "reply: {}", r.text());
    }

    /// Bedrock requests the emulator received, oldest first.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.call("GET", "/_emulator/requests", None)
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn clear_requests(&self) {
        self.call("DELETE", "/_emulator/requests", None);
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Sidecar {
    pub port: u16,
    pub admin_port: u16,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

/// Renders the Envoy config with the launcher (`duo-bedrock render`) for `env`, as `make run` does.
pub fn render_config(env: &[(&str, String)], out: &Path) -> Result<(), String> {
    let mut cmd = Command::new(launcher_bin());
    cmd.arg("render").arg("--out").arg(out);
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION_NAME",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_BEDROCK_RUNTIME_ENDPOINT",
        "AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT",
        "AIGW_BEDROCK_KNOWLEDGE_BASE_ID",
        "AWS_BEARER_TOKEN_BEDROCK",
        "AIGW_GITLAB_URL",
        "AIGW_CUSTOMER_PORTAL_URL",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ENDPOINT_URL_STS",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AIGW_AUTH__BYPASS_EXTERNAL",
        "AIGW_DEFAULT_MODEL",
        "DUO_BEDROCK_ENVOY_JWT_AUTHN",
        "AIGW_FASTAPI__METRICS_HOST",
        "AIGW_FASTAPI__METRICS_PORT",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.env("DUO_FILTER_WASM", wasm_path());
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Sidecar {
    /// Envoy + filter in front of `emu` (as Bedrock and as the GitLab OIDC issuer).
    pub fn start(emu: &Emulator) -> Sidecar {
        Self::start_with(emu, &[])
    }

    pub fn start_with(emu: &Emulator, extra: &[(&str, &str)]) -> Sidecar {
        Self::start_patched(emu, extra, &|config| config)
    }

    /// As [`Sidecar::start_with`], with the rendered Envoy config rewritten by `patch`.
    pub fn start_patched(
        emu: &Emulator,
        extra: &[(&str, &str)],
        patch: &dyn Fn(String) -> String,
    ) -> Sidecar {
        let mut env: Vec<(&str, String)> = vec![
            ("AIGW_GITLAB_URL", emu.url.clone()),
            ("AWS_BEDROCK_RUNTIME_ENDPOINT", emu.url.clone()),
            ("AWS_REGION_NAME", REGION.into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            if !v.is_empty() {
                env.push((k, v.to_string()));
            }
        }
        Self::boot_patched(env, patch).unwrap_or_else(|e| panic!("sidecar did not start: {e}"))
    }

    /// Boots Envoy for `env`; Err(log) when it exits or does not become ready.
    pub fn boot(env: Vec<(&str, String)>) -> Result<Sidecar, String> {
        Self::boot_patched(env, &|config| config)
    }

    /// As [`Sidecar::boot`], with the rendered Envoy config rewritten by `patch` first (for
    /// tests of a deployment the launcher does not render, e.g. an HTTP/2 upstream).
    pub fn boot_patched(
        env: Vec<(&str, String)>,
        patch: &dyn Fn(String) -> String,
    ) -> Result<Sidecar, String> {
        Self::boot_with_args(env, patch, &[])
    }

    /// As [`Sidecar::boot_patched`], with more Envoy command-line arguments (e.g. the
    /// `--log-format` the launcher renders for `AIGW_LOGGING__FORMAT_JSON`).
    pub fn boot_with_args(
        mut env: Vec<(&str, String)>,
        patch: &dyn Fn(String) -> String,
        envoy_args: &[&str],
    ) -> Result<Sidecar, String> {
        let dir = TempDir::new();
        // Port 0 for both: Envoy binds free ports itself and reports them (no port race).
        env.push(("AIGW_FASTAPI__API_HOST", "127.0.0.1".into()));
        env.push(("AIGW_FASTAPI__API_PORT", "0".into()));
        // The admin on port 0 too, unless the test needs it fixed (the metrics listener proxies
        // to the admin and is rendered only when the admin port is known).
        if !env.iter().any(|(k, _)| *k == "ENVOY_ADMIN_PORT") {
            env.push(("ENVOY_ADMIN_PORT", "0".into()));
        }
        let admin_file = dir.0.join("admin.address");
        let config = dir.0.join("envoy.yaml");
        render_config(&env, &config)?;
        let rendered = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
        std::fs::write(&config, patch(rendered)).map_err(|e| e.to_string())?;
        let log = dir.0.join("envoy.log");
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&config)
            .args(["--concurrency", "2", "--log-level", "info"])
            .args(envoy_args);
        cmd.arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_file);
        // Secrets reach the VM through the process environment only (host_env_keys).
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in &env {
            if k.starts_with("AWS_")
                || k.starts_with("AIGW_SELF_SIGNED")
                || k.starts_with("DUO_BEDROCK_")
            {
                cmd.env(k, v);
            }
        }
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut sidecar = Sidecar {
            port: 0,
            admin_port: 0,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = sidecar.child.try_wait() {
                return Err(format!("envoy exited with {status}:\n{}", sidecar.logs()));
            }
            if sidecar.port == 0 {
                if let Some((port, admin_port)) = envoy_bound_ports(&admin_file) {
                    (sidecar.port, sidecar.admin_port) = (port, admin_port);
                }
            }
            if sidecar.port != 0 {
                if let Ok(r) = try_request(sidecar.port, "GET", "/monitoring/healthz", &[], None) {
                    if r.status == 200 {
                        return Ok(sidecar);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("envoy not ready after 30 s:\n{}", sidecar.logs()))
    }

    /// Resident memory of the Envoy process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until Envoy exits (for refusal tests); None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn stats(&self) -> String {
        request(self.admin_port, "GET", "/stats", &[], None).text()
    }

    /// Envoy's admin `/stats/prometheus` page (the filter's metrics with their labels).
    pub fn prometheus(&self) -> String {
        request(self.admin_port, "GET", "/stats/prometheus", &[], None).text()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        request(self.port, method, path, headers, body)
    }

    /// `POST path` with GitLab's headers for `token` and a JSON body.
    pub fn post_json(&self, token: &str, path: &str, body: &serde_json::Value) -> Response {
        self.request(
            "POST",
            path,
            &as_refs(&gitlab_headers(token)),
            Some(body.to_string().as_bytes()),
        )
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- envoy log ---\n{}", self.logs());
        }
    }
}

/// GitLab's request headers for a token (as Rails sends them, docs/gitlab-contract.md#headers).
pub fn gitlab_headers(token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {token}")),
        ("x-gitlab-authentication-type", "oidc".into()),
        ("x-gitlab-realm", "self-managed".into()),
        ("x-gitlab-instance-id", INSTANCE_ID.into()),
        ("x-gitlab-global-user-id", "user-hash".into()),
        ("content-type", "application/json".into()),
    ]
}

pub fn as_refs<'a>(h: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "duo-bedrock-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// For each body chunk (chunked encoding): when it arrived, since the request was sent.
    pub chunk_times: Vec<Duration>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    try_request(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(90)))?;
    s.set_nodelay(true)?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("content-length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let start = Instant::now();
    s.write_all(head.as_bytes())?;
    if let Some(b) = body {
        s.write_all(b)?;
    }
    read_response(s, method, start)
}

/// Writes `bytes` as they are (a whole HTTP/1.1 request, however malformed) and reads the answer.
pub fn raw_request(port: u16, bytes: &[u8]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let start = Instant::now();
    s.write_all(bytes)?;
    let method = if bytes.starts_with(b"HEAD ") {
        "HEAD"
    } else {
        ""
    };
    read_response(s, method, start)
}

fn read_response(s: TcpStream, method: &str, start: Instant) -> std::io::Result<Response> {
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v): &(String, String)| v.clone())
    };
    let mut body = Vec::new();
    let mut chunk_times = Vec::new();
    if method == "HEAD" || status == 204 || status == 304 {
    } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(std::io::Error::other)?;
            if n == 0 {
                break;
            }
            chunk_times.push(start.elapsed());
            let mut chunk = vec![0; n];
            r.read_exact(&mut chunk)?;
            body.extend(chunk);
            let mut crlf = [0; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; n];
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
        chunk_times,
    })
}
