//! `duo-bedrock render` for fixed environments: the output is byte-for-byte the golden file
//! (tests/golden/<case>.yaml for <case>.env), and every configuration error names its variable
//! and exits 2. The goldens without token files were rendered by the former `envoy/launch.py`,
//! which the launcher replaces: the same environment renders the same bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WASM: &str = "/usr/local/lib/duo-bedrock/duo_bedrock_filter.wasm";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// `KEY=VALUE` lines (the value is the rest of the line, spaces included).
fn read_env(file: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Runs `program args` with only `env` (and PATH, and the module path).
fn run_with(program: &str, args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DUO_FILTER_WASM", WASM)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

fn render(env: &[(String, String)]) -> Output {
    run_with(env!("CARGO_BIN_EXE_duo-bedrock"), &["render"], env)
}

/// The process id in the token-file socket name, which differs on every run.
fn without_pid(yaml: &str) -> String {
    let mut out = String::new();
    let mut rest = yaml;
    while let Some(i) = rest.find("duo-bedrock-tokens-") {
        let (head, tail) = rest.split_at(i + "duo-bedrock-tokens-".len());
        out.push_str(head);
        out.push_str("PID");
        rest = tail.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c == '-');
    }
    out.push_str(rest);
    out
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "env"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 9, "{cases:?}");
    cases
}

#[test]
fn renders_the_golden_config_for_each_environment() {
    for case in cases() {
        let out = render(&read_env(&case));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", case.display());
        let want = std::fs::read_to_string(case.with_extension("yaml")).unwrap();
        let got = without_pid(&String::from_utf8(out.stdout).unwrap());
        if got != want {
            let line = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{}: differs from the golden file at line {}:\n got: {:?}\nwant: {:?}",
                case.display(),
                line + 1,
                got.lines().nth(line),
                want.lines().nth(line)
            );
        }
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// (environment, the exact message) of configuration errors.
fn error_cases() -> Vec<(Vec<(String, String)>, &'static str)> {
    let ok = [
        ("AIGW_GITLAB_URL", "https://g"),
        ("AWS_REGION_NAME", "us-east-1"),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut e = pairs(&ok);
        e.extend(pairs(extra));
        e
    };
    vec![
        (pairs(&[("AWS_REGION_NAME", "us-east-1")]),
         "AIGW_GITLAB_URL is not set (the GitLab instance whose OIDC keys sign Duo tokens)"),
        (pairs(&[("AIGW_GITLAB_URL", "gitlab.example.com"), ("AWS_REGION_NAME", "us-east-1")]),
         "AIGW_GITLAB_URL='gitlab.example.com': expected http(s)://host[:port]"),
        (pairs(&[("AIGW_GITLAB_URL", "https://gitlab.example.com")]),
         "no Bedrock region: set AWS_REGION_NAME (or AWS_REGION / AWS_DEFAULT_REGION)"),
        (pairs(&[("AIGW_GITLAB_URL", "https://g:99999"), ("AWS_REGION_NAME", "r")]),
         "AIGW_GITLAB_URL='https://g:99999': Port out of range 0-65535"),
        (pairs(&[("AIGW_GITLAB_URL", "https://g:8x"), ("AWS_REGION_NAME", "r")]),
         "AIGW_GITLAB_URL='https://g:8x': Port could not be cast to integer value as '8x'"),
        (with(&[("AWS_BEDROCK_RUNTIME_ENDPOINT", "ftp://bedrock")]),
         "AWS_BEDROCK_RUNTIME_ENDPOINT='ftp://bedrock': expected http(s)://host[:port]"),
        (with(&[("AIGW_CUSTOMER_PORTAL_URL", "customers")]),
         "AIGW_CUSTOMER_PORTAL_URL='customers': expected http(s)://host[:port]"),
        (with(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", "ftp://x")]),
         "AWS_CONTAINER_CREDENTIALS_FULL_URI='ftp://x': expected http(s)://host[:port]"),
        (with(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "imds")]),
         "AWS_EC2_METADATA_SERVICE_ENDPOINT='imds': expected http(s)://host[:port]"),
        (with(&[("AIGW_BEDROCK_KNOWLEDGE_BASE_ID", "ABCDEFGHIJ"), ("AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT", "agent")]),
         "AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT='agent': expected http(s)://host[:port]"),
        (pairs(&[("AIGW_GITLAB_URL", "https://g"), ("AWS_BEDROCK_RUNTIME_ENDPOINT", "https://example.com"), ("AIGW_BEDROCK_KNOWLEDGE_BASE_ID", "ABCDEFGHIJ")]),
         "AIGW_BEDROCK_KNOWLEDGE_BASE_ID: no region for the agent runtime endpoint: set AWS_REGION_NAME or AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT"),
        (with(&[("AIGW_AUTH__BYPASS_EXTERNAL", " Maybe ")]),
         "AIGW_AUTH__BYPASS_EXTERNAL='maybe': expected true or false"),
        (with(&[("DUO_BEDROCK_ENVOY_JWT_AUTHN", "on")]),
         "DUO_BEDROCK_ENVOY_JWT_AUTHN='on': expected true or false"),
        (with(&[("DUO_BEDROCK_UPSTREAM_HTTP2", "h2")]),
         "DUO_BEDROCK_UPSTREAM_HTTP2='h2': expected true or false"),
        (with(&[("DUO_BEDROCK_MAX_CONCURRENT_REQUESTS", "0")]),
         "DUO_BEDROCK_MAX_CONCURRENT_REQUESTS=0: expected 1..1000000"),
        (with(&[("AIGW_JWT_LEEWAY_SECONDS", "301")]), "AIGW_JWT_LEEWAY_SECONDS=301: expected 0..300"),
        (with(&[("AIGW_MODEL_TIMEOUT_SECONDS", "sixty")]),
         "AIGW_MODEL_TIMEOUT_SECONDS='sixty': expected an integer"),
        (with(&[("AIGW_TOKEN_CACHE_SIZE", "-1")]), "AIGW_TOKEN_CACHE_SIZE=-1: expected 0..100000"),
        (with(&[("ENVOY_ADMIN_PORT", "65536")]), "ENVOY_ADMIN_PORT=65536: expected 0..65535"),
        (with(&[("AIGW_FASTAPI__METRICS_PORT", "x")]), "AIGW_FASTAPI__METRICS_PORT='x': expected an integer"),
        (with(&[("AIGW_FASTAPI__API_PORT", "70000")]), "AIGW_FASTAPI__API_PORT=70000: expected 0..65535"),
    ]
}

#[test]
fn every_configuration_error_names_its_variable_and_exits_2() {
    let mut cases = error_cases();
    // Token files (IRSA): the STS endpoint needs a region or AWS_ENDPOINT_URL_STS.
    cases.push((
        pairs(&[
            ("AIGW_GITLAB_URL", "https://g"),
            ("AWS_BEDROCK_RUNTIME_ENDPOINT", "https://example.com"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/token"),
        ]),
        "AWS_WEB_IDENTITY_TOKEN_FILE: no region for the STS endpoint: set AWS_REGION_NAME or AWS_ENDPOINT_URL_STS",
    ));
    cases.push((
        pairs(&[
            ("AIGW_GITLAB_URL", "https://g"),
            ("AWS_REGION_NAME", "us-east-1"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/token"),
            ("AWS_ENDPOINT_URL_STS", "sts.example.com"),
        ]),
        "AWS_ENDPOINT_URL_STS='sts.example.com': expected http(s)://host[:port]",
    ));
    for (env, want) in cases {
        let out = render(&env);
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        assert!(out.stdout.is_empty(), "{env:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("configuration error: {want}\n"),
            "{env:?}"
        );
    }
}

#[test]
fn render_out_writes_the_file_and_usage_errors_exit_2() {
    let dir = std::env::temp_dir().join(format!("duo-bedrock-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("envoy.yaml");
    let env = read_env(&golden_dir().join("static-keys-tls.env"));
    let out = run_with(
        env!("CARGO_BIN_EXE_duo-bedrock"),
        &["render", "--out", file.to_str().unwrap()],
        &env,
    );
    assert!(out.status.success() && out.stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        std::fs::read_to_string(golden_dir().join("static-keys-tls.yaml")).unwrap()
    );
    let out = run_with(env!("CARGO_BIN_EXE_duo-bedrock"), &["frobnicate"], &env);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("duo-bedrock render [--out FILE]"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `DUO_BEDROCK_UPSTREAM_HTTP2=true`: the Bedrock clusters offer h2 by ALPN over TLS (and fall
/// back to HTTP/1.1); the other clusters are untouched.
#[test]
fn http2_to_bedrock_is_alpn_over_tls() {
    let env = pairs(&[
        ("AIGW_GITLAB_URL", "https://gitlab.example.com"),
        ("AWS_REGION_NAME", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AIGW_BEDROCK_KNOWLEDGE_BASE_ID", "ABCDEFGHIJ"),
        ("DUO_BEDROCK_UPSTREAM_HTTP2", "true"),
    ]);
    let out = render(&env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout).to_string();
    let alpn = "auto_config: { http_protocol_options: {}, http2_protocol_options: { max_concurrent_streams: 100 } }";
    assert_eq!(yaml.matches(alpn).count(), 2, "bedrock and bedrock_agent");
    let bedrock = &yaml[yaml.find("  - name: bedrock\n").unwrap()..];
    let bedrock = &bedrock[..bedrock.find("  - name: gitlab\n").unwrap()];
    assert!(
        bedrock.contains(alpn)
            && bedrock.contains("sni: \"bedrock-runtime.eu-west-1.amazonaws.com\"")
    );
    let without = render(&env[..5]);
    assert!(!String::from_utf8_lossy(&without.stdout).contains("http2_protocol_options"));
}
