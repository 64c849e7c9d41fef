//! The container image of `make image` (issue 11 §1), run as a user runs it: `podman load` of the
//! tarball, `podman run` with the gateway's variables, a completion from the emulator through
//! it, `podman stop`. Needs root (rootful podman, and a private network namespace for the test
//! thread) and podman + runc (`make test` installs them). Also: the image's files and config,
//! a second build giving the same digest, and the Dockerfile putting the same files at the same
//! paths.
//!
//! Networking: the test thread moves into a network namespace of its own before anything
//! starts, and the emulator, podman (`--network host`, i.e. that namespace) and the test's own
//! connections all live there. So the image listens on its real default ports, 5052 and 8082,
//! as with `docker run -p 5052:5052`, and no other test can take them: no port is ever guessed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const IMAGE_PATHS: [&str; 5] = [
    "/usr/local/bin/envoy",
    "/usr/local/bin/duo-bedrock",
    "/usr/local/bin/bedrock-emulator",
    "/usr/local/lib/duo-bedrock/duo_bedrock_filter.wasm",
    "/etc/ssl/certs/ca-certificates.crt",
];

/// What `make image` wrote (target/image/image.json, from deploy/image.py).
fn built() -> Value {
    let p = root().join("target/image/image.json");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}: run `make image` first", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn blob(digest: &str) -> PathBuf {
    root()
        .join("target/image/blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn json_blob(digest: &str) -> Value {
    serde_json::from_slice(&std::fs::read(blob(digest)).unwrap()).unwrap()
}

fn image_config() -> Value {
    json_blob(built()["config_digest"].as_str().unwrap())
}

/// Runs the thread's work in a network namespace of its own with `lo` up. Per thread: the
/// rest of the test binary keeps the host's network.
fn in_private_network<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: plain syscalls on this thread; the ifreq is zeroed and its name NUL-terminated.
        unsafe {
            assert_eq!(
                libc::unshare(libc::CLONE_NEWNET),
                0,
                "unshare(CLONE_NEWNET): {} (the image test needs root)",
                std::io::Error::last_os_error()
            );
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
            assert!(fd >= 0);
            let mut ifr: libc::ifreq = std::mem::zeroed();
            for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
                *d = *s as libc::c_char;
            }
            assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr), 0);
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            assert_eq!(
                libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr),
                0,
                "lo up: {}",
                std::io::Error::last_os_error()
            );
            libc::close(fd);
        }
        body()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Rootful podman on private storage (a temporary folder, removed afterwards): vfs (no overlay
/// mounts), runc and cgroupfs (crun refuses this host's hybrid cgroups), events to a file.
struct Podman {
    dir: TempDir,
    containers: Vec<String>,
}

impl Podman {
    fn new() -> Podman {
        let dir = TempDir::new();
        // The host's storage.conf stays out of it (it may name another driver or folder).
        let conf = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/run\"\n",
            dir.0.display()
        );
        std::fs::write(dir.0.join("storage.conf"), conf).unwrap();
        Podman {
            dir,
            containers: Vec::new(),
        }
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.0.join("root"))
            .arg("--runroot")
            .arg(self.dir.0.join("run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .env("CONTAINERS_STORAGE_CONF", self.dir.0.join("storage.conf"));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd().args(args).output().expect("podman");
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn text(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.run(args).stdout)
            .trim()
            .to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = self.cmd().args(["rm", "--force", name]).output();
        }
    }
}

/// The host pids of `pid` and of every process below it.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) && !tree.contains(&child) {
                tree.push(child);
            }
        }
        i += 1;
    }
    tree
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn completion() -> Value {
    json!({
        "current_file": {"file_name": "add.py", "language_identifier": "python",
                         "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": "\n"},
        "prompt_version": 2, "model_provider": "litellm",
        "model_identifier": format!("bedrock/{MODEL}"), "stream": false
    })
}

/// podman's `--ulimit` values. Its defaults raise both limits, which needs CAP_SYS_RESOURCE,
/// withheld in some sandboxes (this one): the open files this process may have, and 4096
/// processes for the container's user (runc was refused values above 65535 there).
fn ulimits() -> Vec<String> {
    let get = |resource| {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(resource, &mut l) }, 0);
        l.rlim_cur.min(1 << 20)
    };
    let nofile = get(libc::RLIMIT_NOFILE);
    let nproc = get(libc::RLIMIT_NPROC).min(4096);
    vec![
        format!("--ulimit=nofile={nofile}:{nofile}"),
        format!("--ulimit=nproc={nproc}:{nproc}"),
    ]
}

/// One `podman run` of the built image (loaded from the tarball with `podman load`), as
/// `docker run -p 5052:5052 -p 8082:8082 -e ... <image>`: the given variables and nothing else,
/// a root filesystem that is entirely read-only (no tmpfs either). Runs in the caller's network
/// namespace (`--network host`).
struct Container {
    podman: Podman,
    name: String,
    /// Host pids of the entry point and everything below it, once ready.
    tree: Vec<u32>,
}

impl Container {
    fn start(env: &[(&str, &str)]) -> Container {
        let built = built();
        let archive = built["archive"].as_str().unwrap();
        let image = format!("docker.io/library/{}", built["image"].as_str().unwrap());
        let mut podman = Podman::new();
        let loaded = podman.text(&["load", "--quiet", "--input", archive]);
        assert!(loaded.contains(&image), "podman load said {loaded:?}");
        let name = format!(
            "duo-bedrock-image-test-{}",
            podman.dir.0.file_name().unwrap().to_string_lossy()
        );
        podman.containers.push(name.clone());
        let mut args: Vec<String> = vec![
            "run".into(),
            "--detach".into(),
            "--pull=never".into(),
            format!("--name={name}"),
            "--network=host".into(),
            "--read-only".into(),
            "--read-only-tmpfs=false".into(),
            "--stop-timeout=60".into(),
        ];
        args.extend(ulimits());
        args.extend(env.iter().map(|(k, v)| format!("--env={k}={v}")));
        args.push(image);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        podman.run(&args);
        let ready = wait_ready(5052, Duration::from_secs(60));
        let to_ready = started.elapsed();
        let ready_at = std::time::SystemTime::now();
        let mut container = Container {
            podman,
            name,
            tree: Vec::new(),
        };
        assert_eq!(ready.status, 200, "{}\n{}", ready.text(), container.logs());
        let process_started: u128 = container
            .inspect("{{.State.StartedAt.UnixNano}}")
            .parse()
            .unwrap();
        let ready_ns = ready_at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        eprintln!(
            "image start: `podman run` -> /monitoring/ready 200 in {} ms; container process start -> ready in {} ms",
            to_ready.as_millis(),
            ready_ns.saturating_sub(process_started) / 1_000_000
        );
        // The process tree: the launcher as PID 1, every process as the image's user.
        let pid: u32 = container.inspect("{{.State.Pid}}").parse().unwrap();
        container.tree = process_tree(pid);
        assert_eq!(comm(pid), "duo-bedrock", "the entry point is PID 1");
        for p in &container.tree {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
            assert!(
                uid.split_whitespace().skip(1).all(|u| u == "65532"),
                "pid {p} ({}) runs as {uid}",
                comm(*p)
            );
        }
        container
    }

    fn inspect(&self, format: &str) -> String {
        self.podman
            .text(&["inspect", &format!("--format={format}"), &self.name])
    }

    fn names(&self) -> Vec<String> {
        self.tree.iter().map(|p| comm(*p)).collect()
    }

    fn logs(&self) -> String {
        let out = self
            .podman
            .cmd()
            .args(["logs", &self.name])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `docker stop`: SIGTERM (the image's StopSignal) to PID 1, which must stop on its own
    /// well before podman would SIGKILL it (exit status 137), leaving nothing of its tree.
    fn stop_cleanly(mut self) -> String {
        let stopping = Instant::now();
        self.podman.run(&["stop", "--time=60", &self.name]);
        let stop_time = stopping.elapsed();
        assert_eq!(
            self.inspect("{{.State.ExitCode}}"),
            "0",
            "exit status after SIGTERM"
        );
        assert!(stop_time < Duration::from_secs(55), "{stop_time:?}");
        for p in &self.tree {
            assert!(
                !Path::new(&format!("/proc/{p}")).exists(),
                "pid {p} left after the container stopped"
            );
        }
        eprintln!(
            "image stop: SIGTERM -> exited 0 in {} ms",
            stop_time.as_millis()
        );
        let logs = self.logs();
        self.podman.run(&["rm", &self.name]);
        self.podman.containers.clear();
        logs
    }
}

fn complete(token: &str) -> Response {
    let r = request(
        5052,
        "POST",
        "/v2/code/completions",
        &as_refs(&gitlab_headers(token)),
        Some(completion().to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["choices"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{}",
        r.text()
    );
    r
}

/// `docker run -e AIGW_GITLAB_URL=... -e AWS_ACCESS_KEY_ID=... -e AWS_SECRET_ACCESS_KEY=...
/// -e AWS_REGION_NAME=... <image>` with the emulator (on the host) as GitLab and Bedrock.
#[test]
fn image_serves_a_completion_and_stops_cleanly() {
    in_private_network(|| {
        let emu = Emulator::start();
        let container = Container::start(&[
            ("AIGW_GITLAB_URL", &emu.url),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION_NAME", REGION),
            ("AWS_BEDROCK_RUNTIME_ENDPOINT", &emu.url),
        ]);
        let names = container.names();
        assert!(names.iter().any(|n| n.starts_with("envoy")), "{names:?}");
        assert!(
            !names.iter().any(|n| n.starts_with("bedrock-emu")),
            "no demo: {names:?}"
        );

        complete(&emu.token());
        let reqs = emu.requests();
        assert_eq!(reqs.len(), 1, "{reqs:#?}");
        assert_eq!(reqs[0]["signature_valid"], true);
        // Prometheus on the gateway's metrics port, as the image exposes it.
        let m = request(8082, "GET", "/metrics", &[], None);
        assert_eq!(m.status, 200);
        assert!(
            m.text().contains("duo_bedrock_requests_total"),
            "{}",
            m.text()
        );

        let logs = container.stop_cleanly();
        assert!(!logs.contains(SECRET_KEY), "the secret key reached the log");
    });
}

/// `docker run -p 5052:5052 <image>` with no AWS variables at all: the offline demo, as
/// `make run` serves it (the image's own emulator as Bedrock and GitLab, a demo token printed).
#[test]
fn image_without_aws_variables_serves_the_offline_demo() {
    in_private_network(|| {
        let container = Container::start(&[]);
        let names = container.names();
        assert!(
            names.iter().any(|n| n.starts_with("bedrock-emu")),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n.starts_with("envoy")), "{names:?}");
        let logs = container.logs();
        assert!(logs.contains("OFFLINE DEMO"), "{logs}");
        let token = logs
            .split("Authorization: Bearer ")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap_or_else(|| panic!("no demo token in the log:\n{logs}"))
            .to_string();
        complete(&token);
        container.stop_cleanly();
    });
}

/// (type, mode, uid/gid, size) of every entry of every layer, by path, via GNU tar.
fn layer_entries() -> BTreeMap<String, String> {
    let manifest = json_blob(
        json_blob_index()["manifests"][0]["digest"]
            .as_str()
            .unwrap(),
    );
    let mut entries = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let out = Command::new("tar")
            .args(["--list", "--verbose", "--numeric-owner", "--gzip", "--file"])
            .arg(blob(layer["digest"].as_str().unwrap()))
            .output()
            .unwrap();
        assert!(out.status.success());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // -rwxr-xr-x 0/0 106905560 2026-12-03 15:29 usr/local/bin/envoy
            let f: Vec<&str> = line.split_whitespace().collect();
            let path = format!("/{}", f[5].trim_end_matches('/'));
            entries.insert(path, format!("{} {} {}", f[0], f[1], f[2]));
        }
    }
    entries
}

fn json_blob_index() -> Value {
    serde_json::from_slice(&std::fs::read(root().join("target/image/index.json")).unwrap()).unwrap()
}

#[test]
fn image_holds_what_it_should_and_nothing_else() {
    let config = image_config();
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["ExposedPorts"], json!({"5052/tcp": {}, "8082/tcp": {}}));
    assert_eq!(c["Entrypoint"], json!(["/usr/local/bin/duo-bedrock"]));
    assert_eq!(c["Cmd"], json!(["run"]));
    assert_eq!(config["architecture"], "amd64");
    let labels = c["Labels"].as_object().unwrap();
    for key in ["title", "version", "created", "licenses", "description"] {
        assert!(
            labels.contains_key(&format!("org.opencontainers.image.{key}")),
            "{key}"
        );
    }
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for var in [
        "ENVOY_BIN=/usr/local/bin/envoy",
        "DUO_FILTER_WASM=/usr/local/lib/duo-bedrock/duo_bedrock_filter.wasm",
        "DUO_EMULATOR_BIN=/usr/local/bin/bedrock-emulator",
    ] {
        assert!(env.contains(&var), "{env:?}");
    }
    assert!(
        !env.iter()
            .any(|e| e.starts_with("AWS_") || e.starts_with("AIGW_")),
        "no credentials or settings baked into the image: {env:?}"
    );

    let entries = layer_entries();
    for path in IMAGE_PATHS {
        assert!(entries.contains_key(path), "{path} missing");
    }
    for (path, entry) in &entries {
        let f: Vec<&str> = entry.split(' ').collect();
        assert_eq!(f[1], "0/0", "{path} is owned by root: {entry}");
        assert!(
            !f[0].contains('s') && !f[0].contains('S'),
            "{path}: no setuid/setgid: {entry}"
        );
        let others_write = f[0].as_bytes()[8] == b'w' && !f[0].starts_with('l');
        assert!(
            !others_write || path == "/tmp",
            "{path}: only /tmp is writable by all: {entry}"
        );
        for absent in ["/bin/sh", "/usr/bin/python3", "/bin/bash", "/usr/bin/apt"] {
            assert_ne!(
                path, absent,
                "the image has no shell, Python or package manager"
            );
        }
    }
    assert_eq!(entries["/tmp"].split(' ').next(), Some("drwxrwxrwt"));
    let passwd = Command::new("tar")
        .args(["--extract", "--to-stdout", "--gzip", "--file"])
        .arg(blob(
            json_blob(
                json_blob_index()["manifests"][0]["digest"]
                    .as_str()
                    .unwrap(),
            )["layers"][0]["digest"]
                .as_str()
                .unwrap(),
        ))
        .arg("etc/passwd")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&passwd.stdout).contains("nonroot:x:65532:65532:"),
        "the image's user is in /etc/passwd"
    );
}

#[test]
fn a_second_build_gives_the_same_digests() {
    let built = built();
    let dir = TempDir::new();
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("deploy/image.py"));
    for (key, value) in built["inputs"].as_object().unwrap() {
        if let Some(v) = value.as_str() {
            cmd.arg(format!("--{}", key.replace('_', "-"))).arg(v);
        }
    }
    let out = cmd
        .arg("--out")
        .arg(dir.0.join("image"))
        .arg("--archive")
        .arg(dir.0.join("image.tar"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: Value =
        serde_json::from_slice(&std::fs::read(dir.0.join("image/image.json")).unwrap()).unwrap();
    assert_eq!(again["manifest_digest"], built["manifest_digest"]);
    assert_eq!(again["layers"], built["layers"]);
    assert_eq!(
        again["archive_sha256"], built["archive_sha256"],
        "the load tarball too"
    );
}

/// The Dockerfile (FROM the official Envoy image, for Docker users and arm64) puts the same
/// files at the same paths and declares the same user, ports, variables and entry point.
#[test]
fn dockerfile_agrees_with_make_image() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    // Instructions with their continuation lines joined, comments dropped.
    let mut instructions: Vec<(String, String)> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        current.push_str(line.trim_end().trim_end_matches('\\'));
        current.push(' ');
        if !line.trim_end().ends_with('\\') {
            let joined = current.split_whitespace().collect::<Vec<_>>().join(" ");
            if let Some((op, rest)) = joined.split_once(' ') {
                instructions.push((op.to_string(), rest.to_string()));
            }
            current.clear();
        }
    }
    let all = |op: &str| -> Vec<String> {
        instructions
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, r)| r.clone())
            .collect()
    };
    // The final stage starts at the last FROM.
    let last_from = instructions.iter().rposition(|(o, _)| o == "FROM").unwrap();
    let final_stage = &instructions[last_from..];
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    let envoy_version = makefile
        .lines()
        .find_map(|l| l.strip_prefix("ENVOY_VERSION := "))
        .unwrap();
    assert!(
        all("ARG").contains(&format!("ENVOY_IMAGE=envoyproxy/envoy:v{envoy_version}")),
        "FROM the official Envoy {envoy_version} image"
    );

    let config = image_config();
    let c = &config["config"];
    let entries = layer_entries();
    let mut copied: Vec<String> = Vec::new();
    for (op, rest) in final_stage {
        match op.as_str() {
            "COPY" => {
                let dest = rest.split_whitespace().last().unwrap().to_string();
                assert!(
                    entries.contains_key(&dest),
                    "{dest}: not in `make image`'s image"
                );
                copied.push(dest);
            }
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let in_image = c["Env"].as_array().unwrap().iter().any(|e| e == pair);
                    assert!(in_image, "ENV {pair} is not in the image's Env");
                }
            }
            "USER" => assert_eq!(c["User"], *rest),
            "STOPSIGNAL" => assert_eq!(c["StopSignal"], *rest),
            "ENTRYPOINT" => assert_eq!(
                c["Entrypoint"],
                serde_json::from_str::<Value>(rest).unwrap()
            ),
            "CMD" => assert_eq!(c["Cmd"], serde_json::from_str::<Value>(rest).unwrap()),
            "EXPOSE" => {
                let ports: Vec<String> = rest.split(' ').map(|p| format!("{p}/tcp")).collect();
                let image_ports: Vec<String> = c["ExposedPorts"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                assert_eq!(ports, image_ports);
            }
            _ => {}
        }
    }
    // Every file of ours (Envoy comes with the base image, at the same path).
    for path in IMAGE_PATHS.iter().filter(|p| **p != "/usr/local/bin/envoy") {
        assert!(
            copied.iter().any(|d| d == path),
            "the Dockerfile does not COPY {path}"
        );
    }
    let env_count = c["Env"].as_array().unwrap().len();
    let docker_env: usize = final_stage
        .iter()
        .filter(|(o, _)| o == "ENV")
        .map(|(_, r)| r.split_whitespace().count())
        .sum();
    assert_eq!(
        docker_env + 1,
        env_count,
        "the same variables (PATH is the base image's)"
    );
    for op in ["USER", "EXPOSE", "STOPSIGNAL", "ENTRYPOINT", "CMD"] {
        assert!(final_stage.iter().any(|(o, _)| o == op), "{op} missing");
    }
}

/// The tarball is both a Docker archive (`manifest.json`, what `docker load` reads) and an OCI
/// archive (`index.json`): podman reads it either way, as the same image, with its tag.
#[test]
fn tarball_is_a_docker_archive_and_an_oci_archive() {
    let built = built();
    let archive = built["archive"].as_str().unwrap();
    let config = built["config_digest"].as_str().unwrap();
    for transport in ["docker-archive", "oci-archive"] {
        let podman = Podman::new();
        let out = podman.text(&["pull", "--quiet", &format!("{transport}:{archive}")]);
        assert_eq!(
            format!("sha256:{out}"),
            config,
            "{transport}: image id = config digest"
        );
        let tags = podman.text(&["images", "--format={{.Repository}}:{{.Tag}}"]);
        if transport == "docker-archive" {
            assert!(tags.contains(built["image"].as_str().unwrap()), "{tags}");
        }
    }
}
