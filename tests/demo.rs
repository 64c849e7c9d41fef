//! `make run` with no AWS credentials: the offline demo through the whole path (JWT check,
//! rewrite, SigV4, emulator, response rewrite), driven exactly as a newcomer would: the printed
//! completion and documentation-search commands both answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn make_run_without_credentials_is_an_honest_working_demo() {
    let mut launcher = Command::new(launcher_bin())
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIGW_FASTAPI__API_HOST", "127.0.0.1")
        .env("AIGW_FASTAPI__API_PORT", "0")
        .env("ENVOY_ADMIN_PORT", "0")
        .env("AIGW_FASTAPI__METRICS_PORT", "0")
        .env("ENVOY_CONCURRENCY", "1")
        .env("DUO_FILTER_WASM", wasm_path())
        .env("DUO_EMULATOR_BIN", emulator_bin())
        .env("ENVOY_BIN", envoy_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SIGTERM: the launcher stops Envoy and the emulator it started.
            let _ = Command::new("kill").arg(self.0.id().to_string()).status();
            let _ = self.0.wait();
        }
    }
    let stdout = launcher.stdout.take().unwrap();
    let (port, _) = launched_ports(&mut launcher, Duration::from_secs(40));
    let _guard = Kill(launcher);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && banner.matches("-d '").count() < 2 {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            banner.push_str(&line);
            banner.push('\n');
        }
    }
    assert!(
        banner.contains("OFFLINE DEMO"),
        "the demo says so:\n{banner}"
    );
    let token = banner
        .split("Authorization: Bearer ")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap()
        .to_string();
    let pasted = |n: usize| {
        banner
            .split("-d '")
            .nth(n)
            .and_then(|s| s.split('\'').next())
            .unwrap()
            .to_string()
    };
    let body = pasted(1);
    let search = pasted(2);
    assert!(
        banner.contains("/v1/search/gitlab-docs"),
        "the banner shows documentation search:\n{banner}"
    );

    // Wait for Envoy, then paste the printed commands.
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_request(port, "GET", "/monitoring/healthz", &[], None)
        .map(|r| r.status)
        .unwrap_or(0)
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "the sidecar did not come up:\n{banner}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = request(port, "GET", "/", &[], None);
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, r#"{"error":"No authorization header presented"}"#)
    );
    let headers = gitlab_headers(&token);
    let r = request(
        port,
        "POST",
        "/v2/code/completions",
        &as_refs(&headers),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["choices"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{}",
        r.text()
    );
    // Duo Chat's documentation search, answered from the emulator's demo knowledge base.
    let r = request(
        port,
        "POST",
        "/v1/search/gitlab-docs",
        &as_refs(&headers),
        Some(search.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["response"]["results"][0]["metadata"]["source_url"],
        "https://docs.gitlab.com/user/project/repository/branches/protected/",
        "{v}"
    );
    assert_eq!(v["metadata"]["provider"], "bedrock-knowledge-base");
}

/// `make run`'s launcher against the emulator (as Bedrock and GitLab), Envoy's listener and
/// admin on ports it picks ([`launched_ports`]), without the metrics listener.
fn make_run(emu: &Emulator, stdout: Stdio) -> std::process::Child {
    Command::new(launcher_bin())
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIGW_GITLAB_URL", &emu.url)
        .env("AWS_BEDROCK_RUNTIME_ENDPOINT", &emu.url)
        .env("AWS_REGION_NAME", REGION)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AIGW_FASTAPI__API_HOST", "127.0.0.1")
        .env("AIGW_FASTAPI__API_PORT", "0")
        .env("AIGW_FASTAPI__METRICS_PORT", "0")
        .env("ENVOY_ADMIN_PORT", "0")
        .env("ENVOY_CONCURRENCY", "1")
        .env("DUO_FILTER_WASM", wasm_path())
        .env("ENVOY_BIN", envoy_bin())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Two sidecars started the way `make run` starts them, on one host: both serve (Envoy's
/// shared-memory base id would otherwise collide).
#[test]
fn two_sidecars_on_one_host_do_not_collide() {
    let emu = Emulator::start();
    let launch = || make_run(&emu, Stdio::null());
    struct Stop(Vec<std::process::Child>);
    impl Drop for Stop {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = Command::new("kill").arg(c.id().to_string()).status();
                let _ = c.wait();
            }
        }
    }
    let mut running = Stop(vec![launch(), launch()]);
    let ports: Vec<u16> = running
        .0
        .iter_mut()
        .map(|c| launched_ports(c, Duration::from_secs(40)).0)
        .collect();
    let token = emu.token();
    for port in ports {
        let r = wait_ready(port, Duration::from_secs(40));
        assert_eq!(r.status, 200, "{port}: {}", r.text());
        let body = serde_json::json!({"current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n    ", "content_below_cursor": ""},
                                      "prompt_version": 2, "model_identifier": format!("bedrock/{MODEL}")})
        .to_string();
        let headers = gitlab_headers(&token);
        let r = request(
            port,
            "POST",
            "/v2/code/completions",
            &as_refs(&headers),
            Some(body.as_bytes()),
        );
        assert_eq!(r.status, 200, "{port}: {}", r.text());
    }
}

/// SIGTERM (Kubernetes stopping the pod) drains: a stream in flight finishes whole, new
/// connections are no longer served, and the launcher exits once the stream is done.
#[test]
fn sigterm_drains_streams_in_flight_then_stops() {
    let emu = Emulator::start();
    let mut launcher = make_run(&emu, Stdio::piped());
    let (port, _admin) = launched_ports(&mut launcher, Duration::from_secs(40));
    let stdout = launcher.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let r = wait_ready(port, Duration::from_secs(40));
    assert_eq!(r.status, 200, "{}", r.text());
    let token = emu.token();
    // A stream of about 2 s (20 frames, 100 ms apart).
    let body = serde_json::json!({"current_file": {"file_name": "a.py", "content_above_cursor": "def f():\n    ", "content_below_cursor": ""},
                                  "prompt_version": 2, "stream": true,
                                  "model_identifier": "bedrock/anthropic.claude-fault-drip-100-fault-deltas-20-v1:0"})
    .to_string();
    let stream = std::thread::spawn(move || {
        let headers = gitlab_headers(&token);
        try_request(
            port,
            "POST",
            "/v2/code/completions",
            &as_refs(&headers),
            Some(body.as_bytes()),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let _ = Command::new("kill").arg(launcher.id().to_string()).status();
    // The stream in flight completes.
    let r = stream
        .join()
        .unwrap()
        .expect("the stream in flight was cut");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.chunk_times.len() >= 10,
        "{} chunks: {:?}",
        r.chunk_times.len(),
        r.text()
    );
    let finished = t0.elapsed();
    // New requests are not served any more once Envoy stopped; the launcher exits.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = launcher.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the launcher did not exit after the drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stopped = t0.elapsed();
    assert!(status.success(), "{status}");
    assert!(try_request(port, "GET", "/monitoring/healthz", &[], None).is_err());
    let said: Vec<String> = rx.try_iter().collect();
    assert!(said.iter().any(|l| l.contains("draining")), "{said:?}");
    eprintln!(
        "drain: stream finished {finished:?} after SIGTERM, launcher exited after {stopped:?}"
    );
    assert!(
        stopped < finished + Duration::from_secs(3),
        "{stopped:?} vs {finished:?}"
    );
}
