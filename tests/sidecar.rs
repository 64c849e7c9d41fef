//! The sidecar contract (issue 2; docs/gitlab-contract.md#monitoring, #headers, #errors,
//! #gateway-behaviour) through the real Envoy + .wasm.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

#[test]
fn no_authorization_is_401_with_the_gateways_exact_body() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/v2/code/completions"),
        ("GET", "/nope"),
        ("POST", "/v1/prompts/x"),
    ] {
        let r = sidecar.request(method, path, &[], Some(b"{}"));
        assert_eq!(r.status, 401, "{method} {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), r#"{"error":"No authorization header presented"}"#);
    }
    assert!(emu.requests().is_empty(), "nothing reaches Bedrock");
}

#[test]
fn monitoring_endpoints_answer_without_auth() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let r = sidecar.request("GET", "/monitoring/healthz", &[], None);
    assert_eq!((r.status, r.json()), (200, serde_json::json!({})));
    // Ready once GitLab's keys are loaded (the first tick fetches them).
    let r = wait_ready(sidecar.port, std::time::Duration::from_secs(10));
    assert_eq!((r.status, r.json()), (200, serde_json::json!({})));
    // "Run health check" only needs an HTTP answer to HEAD <ai_gateway_url>.
    let r = sidecar.request("HEAD", "/", &[], None);
    assert!(
        r.status >= 200 && r.status < 500,
        "HEAD / answered {}",
        r.status
    );
}

#[test]
fn request_id_is_echoed_or_generated() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let r = sidecar.request(
        "GET",
        "/",
        &[("x-request-id", "01JABCDEF-correlation")],
        None,
    );
    assert_eq!(r.header("x-request-id"), Some("01JABCDEF-correlation"));
    let r = sidecar.request("GET", "/monitoring/healthz", &[], None);
    assert!(
        r.header("x-request-id").is_some_and(|id| id.len() >= 16),
        "generated id: {:?}",
        r.headers
    );
    assert!(
        r.header("x-process-time").is_some(),
        "X-Process-Time like the gateway"
    );
}

#[test]
fn authenticated_unknown_paths_are_404_and_never_reach_bedrock() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let headers = gitlab_headers(&token);
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/v9/nothing"),
        ("GET", "/v2/code/completions"),
        ("POST", "/model/x/invoke"),
    ] {
        let r = sidecar.request(method, path, &as_refs(&headers), Some(b"{}"));
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["detail"], "Not Found");
    }
    assert!(emu.requests().is_empty(), "nothing reaches Bedrock");
}

#[test]
fn invalid_configuration_refuses_to_start() {
    let emu = Emulator::start();
    // No AWS credentials at all (and IMDS disabled): the plugin must refuse to start rather
    // than fail open.
    let env = vec![
        ("AIGW_GITLAB_URL", emu.url.clone()),
        ("AWS_BEDROCK_RUNTIME_ENDPOINT", emu.url.clone()),
        ("AWS_REGION_NAME", REGION.to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    let err = Sidecar::boot(env)
        .err()
        .expect("envoy must not serve with an invalid configuration");
    assert!(
        err.contains("AWS_ACCESS_KEY_ID"),
        "the log names the missing variable:\n{err}"
    );
}

#[test]
fn launcher_rejects_bad_environment_with_a_clear_message() {
    let dir = TempDir::new();
    let out = dir.0.join("e.yaml");
    let err = render_config(&[("AWS_REGION_NAME", "us-east-1".into())], &out).unwrap_err();
    assert!(err.contains("AIGW_GITLAB_URL"), "{err}");
    let err = render_config(
        &[
            ("AIGW_GITLAB_URL", "gitlab.example.com".into()),
            ("AWS_REGION_NAME", "us-east-1".into()),
        ],
        &out,
    )
    .unwrap_err();
    assert!(err.contains("AIGW_GITLAB_URL"), "{err}");
    let err = render_config(
        &[("AIGW_GITLAB_URL", "https://gitlab.example.com".into())],
        &out,
    )
    .unwrap_err();
    assert!(err.contains("AWS_REGION_NAME"), "{err}");
    // Real Bedrock: TLS with SNI to the regional endpoint, system CA bundle.
    let env = [
        ("AIGW_GITLAB_URL", "https://gitlab.example.com".to_string()),
        ("AWS_REGION_NAME", "eu-west-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDRENDERTEST".into()),
        ("AWS_SECRET_ACCESS_KEY", "render-test-secret".into()),
    ];
    render_config(&env, &out).unwrap();
    let yaml = std::fs::read_to_string(&out).unwrap();
    assert!(
        yaml.contains(r#"sni: "bedrock-runtime.eu-west-1.amazonaws.com""#),
        "{yaml}"
    );
    assert!(
        !yaml.contains("AKIDRENDERTEST") && !yaml.contains("render-test-secret"),
        "no secret in the rendered file"
    );
    let status = std::process::Command::new(envoy_bin())
        .args(["--mode", "validate", "-c"])
        .arg(&out)
        // `--mode validate` also runs the plugin's configuration check, which reads the secrets.
        .env("AWS_ACCESS_KEY_ID", "AKIDRENDERTEST")
        .env("AWS_SECRET_ACCESS_KEY", "render-test-secret")
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn docs_page_answers_without_a_token() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let r = sidecar.request("GET", "/docs", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    assert!(
        page.contains(&format!(
            "<h1>duo-bedrock {}</h1>",
            env!("CARGO_PKG_VERSION")
        )),
        "{page}"
    );
    for path in [
        "/v2/code/completions",
        "/v1/prompts/{prompt_id}",
        "/v2/chat/agent",
        "/v1/code/user_access_token",
    ] {
        assert!(page.contains(&format!("<code>{path}</code>")), "{path}");
    }
    assert!(r.header("x-process-time").is_some());
    // HEAD: same status and type, no body
    let r = sidecar.request("HEAD", "/docs", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.body.is_empty());
    // anything else under /docs still needs a token
    assert_eq!(
        sidecar
            .request("GET", "/docs/oauth2-redirect", &[], None)
            .status,
        401
    );
    assert!(emu.requests().is_empty(), "nothing reaches Bedrock");
}

#[test]
fn user_access_token_answers_like_a_gateway_without_signing_key() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let path = "/v1/code/user_access_token";
    // Authentication first, as for every endpoint.
    let r = sidecar.request("POST", path, &[], None);
    assert_eq!(r.status, 401);

    // What Rails sends (`direct_access_token`: no body): the gateway cannot sign a token.
    let token = emu.mint(serde_json::json!({"scopes": ["complete_code", "duo_chat"]}));
    let headers = gitlab_headers(&token);
    let r = sidecar.request("POST", path, &as_refs(&headers), None);
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, r#"{"detail":"Failed to generate JWT"}"#)
    );
    assert_eq!(r.header("content-type"), Some("application/json"));

    // complete_code or ai_gateway_model_provider_proxy is required...
    let other = emu.mint(serde_json::json!({"scopes": ["duo_chat"]}));
    let r = sidecar.request("POST", path, &as_refs(&gitlab_headers(&other)), None);
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            403,
            r#"{"detail":"Unauthorized to create user access token"}"#
        )
    );
    // ...from a token the gateway did not issue itself (refused here, or already by the
    // authentication step when its bindings do not hold)
    let own = emu.mint(serde_json::json!({"scopes": ["complete_code"], "iss": "gitlab-ai-gateway", "sub": "user-hash"}));
    let r = sidecar.request("POST", path, &as_refs(&gitlab_headers(&own)), None);
    assert!(r.status == 401 || r.status == 403, "{}", r.text());

    // then the GitLab headers (realm and instance id are already bound to the token's claims)
    let without_user: Vec<(&str, &str)> = as_refs(&headers)
        .into_iter()
        .filter(|(k, _)| *k != "x-gitlab-global-user-id")
        .collect();
    let r = sidecar.request("POST", path, &without_user, Some(b""));
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            400,
            r#"{"detail":"Missing X-Gitlab-Global-User-Id header"}"#
        )
    );
    assert!(emu.requests().is_empty(), "nothing reaches Bedrock");
}

/// Bodies over the limit get GitLab's JSON 413 from the filter, whatever their size, framing
/// or protocol; never Envoy's plain-text "Payload Too Large".
#[test]
fn oversized_bodies_get_the_json_413() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let headers = gitlab_headers(&token);
    for size in [9 * 1024 * 1024, 20 * 1024 * 1024] {
        let body = vec![b'a'; size];
        let r = try_request(
            sidecar.port,
            "POST",
            "/v2/code/completions",
            &as_refs(&headers),
            Some(&body),
        );
        // The filter may answer before the whole body is sent: the write can fail after that.
        if let Ok(r) = r {
            assert_eq!(r.status, 413, "{size}: {}", r.text());
            assert_eq!(r.header("content-type"), Some("application/json"), "{size}");
            assert!(
                r.json()["detail"].as_str().unwrap().contains("too large"),
                "{size}"
            );
        }
        let r = common::h2::request(
            sidecar.port,
            "POST",
            "/v2/code/completions",
            &as_refs(&headers),
            &body,
            &[],
        );
        if let Ok(r) = r {
            assert_eq!(r.status, 413, "h2 {size}: {}", r.text());
            let v: serde_json::Value = serde_json::from_slice(&r.body)
                .unwrap_or_else(|_| panic!("h2 {size}: {}", r.text()));
            assert!(v["detail"].is_string());
        }
    }
}

/// Readiness tells Kubernetes what is missing; liveness stays 200 meanwhile.
#[test]
fn readiness_is_503_with_what_is_missing_until_keys_and_credentials_are_usable() {
    let emu = Emulator::start();
    // GitLab unreachable: no keys can load.
    let closed = free_port();
    let url = format!("http://127.0.0.1:{closed}");
    let sidecar = Sidecar::start_with(&emu, &[("AIGW_GITLAB_URL", url.as_str())]);
    let r = wait_ready(sidecar.port, std::time::Duration::from_secs(2));
    assert_eq!(r.status, 503, "{}", r.text());
    let v = r.json();
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with("not ready: GitLab's token signing keys"),
        "{v}"
    );
    assert!(v["missing"][0].as_str().unwrap().contains(&url), "{v}");
    let r = sidecar.request("GET", "/monitoring/healthz", &[], None);
    assert_eq!(r.status, 200);
    drop(sidecar);

    // Refreshing credentials from a container endpoint that does not answer.
    let sidecar = Sidecar::start_with(
        &emu,
        &[
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                &format!("http://127.0.0.1:{closed}/creds"),
            ),
        ],
    );
    let r = wait_ready(sidecar.port, std::time::Duration::from_secs(3));
    assert_eq!(r.status, 503, "{}", r.text());
    let missing = r.json()["missing"].to_string();
    assert!(
        missing.contains("no usable AWS credentials yet from the container credential source"),
        "{missing}"
    );
    assert!(
        !missing.contains("GitLab"),
        "keys load from the emulator: {missing}"
    );
}
