//! The Envoy config from the AI Gateway's environment variables (envoy/envoy.yaml.tmpl, embedded).
//!
//! Pure: everything comes from an [`Env`] snapshot, nothing is written anywhere. Every error
//! names the variable that is wrong. The output for a given environment is byte-for-byte what the
//! former `envoy/launch.py render` printed (launcher/tests/golden/ keeps that evidence).

use crate::env::err;
use crate::env::{ConfigError, Env};
use crate::pyish::{is_ip, py_repr, split_url, to_json_ascii};

/// The Envoy config template; `${NAME}` placeholders, `$$` for a literal `$`.
pub const TEMPLATE: &str = include_str!("../../envoy/envoy.yaml.tmpl");

pub const DEFAULT_CA: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Demo credentials shared with the emulator (the AWS documentation's example key pair).
pub const DEMO_ACCESS_KEY: &str = "AKIDEXAMPLE";
pub const DEMO_SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const DEMO_REGION: &str = "us-east-1";
pub const DEMO_MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
/// The emulator's demo knowledge base (a small corpus of docs-like pages, emulator/src/kb.rs).
pub const DEMO_KNOWLEDGE_BASE: &str = "EMUDOCS001";

/// Concurrent Bedrock requests (open streams included) per sidecar, all workers together. Sized
/// for long LLM streams; README.md ("Concurrency") gives the memory per open stream.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: i128 = 10000;

/// Must match `config::JWT_AUTHN_PAYLOAD_KEY` in the filter.
pub const JWT_AUTHN_PAYLOAD_KEY: &str = "duo_bedrock_verified";

/// The Envoy cluster that reaches the launcher's token-file server (see [`crate::tokens`]).
pub const TOKEN_FILES_CLUSTER: &str = "duo_bedrock_token_files";
/// The variables whose files the token-file server serves, with their paths on it.
pub const TOKEN_FILE_VARS: [(&str, &str); 2] = [
    ("AWS_WEB_IDENTITY_TOKEN_FILE", "/web-identity-token"),
    (
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "/container-authorization-token",
    ),
];

/// `(scheme, host, port)` of an `http(s)://host[:port][/path]` URL.
pub type Base = (String, String, u16);

/// `(scheme, host, port)` of an http(s)://host[:port][/path] URL, or an error naming `name`.
/// `url` as an error message may show it: without user info (`user:password@`), query and
/// fragment, which may carry secrets.
fn shown_url(url: &str) -> String {
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..cut];
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..start], &url[start + at + 1..]),
        None => url.to_string(),
    }
}

pub fn parse_base_url(name: &str, url: &str) -> Result<Base, ConfigError> {
    let bad = |why: &str| ConfigError(format!("{name}={}: {why}", py_repr(&shown_url(url))));
    let parts = split_url(url).map_err(|e| bad(&e))?;
    let host = match parts.hostname {
        Some(h) if parts.scheme == "http" || parts.scheme == "https" => h,
        _ => return Err(bad("expected http(s)://host[:port]")),
    };
    // A host Envoy's YAML cannot carry (quotes, spaces...) is no host name either.
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-_:%".contains(c))
    {
        return Err(bad("expected http(s)://host[:port]"));
    }
    let port = match parts.port.map_err(|e| bad(&e))? {
        Some(p) if p != 0 => p,
        _ if parts.scheme == "https" => 443,
        _ => 80,
    };
    Ok((parts.scheme, host, port))
}

pub fn tls_block(env: &Env, scheme: &str, host: &str) -> String {
    if scheme != "https" {
        return String::new();
    }
    let ca = env
        .first(&["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
        .unwrap_or_else(|| DEFAULT_CA.to_string());
    format!(
        r#"    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: "{host}"
        common_tls_context:
          validation_context:
            trusted_ca: {{ filename: "{ca}" }}
            match_typed_subject_alt_names: [{{ san_type: DNS, matcher: {{ exact: "{host}" }} }}]"#
    )
}

/// Prometheus on its own port, as the gateway serves it (`GET /metrics` on
/// AIGW_FASTAPI__METRICS_HOST:AIGW_FASTAPI__METRICS_PORT, default 0.0.0.0:8082): only that path,
/// only GET, proxied to the admin's /stats/prometheus on loopback; the admin interface itself
/// stays on 127.0.0.1. Port 0 (or an admin on port 0) renders no metrics listener.
/// Returns (listener, cluster).
pub fn metrics_listener(host: &str, port: i128, admin_port: i128) -> (String, String) {
    if port == 0 || admin_port == 0 {
        return (String::new(), String::new());
    }
    let listener = format!(
        r#"  - name: metrics
    address: {{ socket_address: {{ address: "{host}", port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: metrics
          route_config:
            virtual_hosts:
            - name: metrics
              domains: ["*"]
              routes:
              - match: {{ path: "/metrics", headers: [{{ name: ":method", string_match: {{ exact: GET }} }}] }}
                route: {{ cluster: envoy_admin, prefix_rewrite: "/stats/prometheus" }}
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 404 }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    );
    let cluster = format!(
        r#"  - name: envoy_admin
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: envoy_admin
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }} }} }}] }}]
"#
    );
    (listener, cluster)
}

/// One upstream cluster. `max_requests`: its circuit breakers, sized for long LLM streams
/// (Envoy's default of 1,024 connections / pending / active requests would refuse the rest);
/// the bedrock cluster speaks HTTP/1.1, one connection per open stream, so all three are the
/// same number (with `DUO_BEDROCK_UPSTREAM_HTTP2`, streams share connections and `max_requests`
/// is the bound). The filter answers an overflow in GitLab's format (concurrency_limit).
pub fn cluster_block(
    env: &Env,
    name: &str,
    base: &Base,
    max_requests: Option<i128>,
    http2: bool,
) -> String {
    let (scheme, host, port) = base;
    let dns = if is_ip(host) { "STATIC" } else { "LOGICAL_DNS" };
    let breakers = match max_requests {
        Some(m) if m != 0 => format!(
            "    circuit_breakers:\n      thresholds:\n      - {{ priority: DEFAULT, max_connections: {m}, max_pending_requests: {m}, max_requests: {m}, max_retries: 3 }}\n"
        ),
        _ => String::new(),
    };
    let tls = tls_block(env, scheme, host);
    let protocol = upstream_protocol(scheme, http2);
    format!(
        r#"  - name: {name}
    type: {dns}
    dns_lookup_family: V4_PREFERRED
    connect_timeout: 5s
    per_connection_buffer_limit_bytes: 16777216
{protocol}{breakers}    load_assignment:
      cluster_name: {name}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: "{host}", port_value: {port} }} }} }} }}] }}]
{tls}"#
    )
}

/// The protocol options of a Bedrock cluster with `DUO_BEDROCK_UPSTREAM_HTTP2`: over TLS Envoy
/// offers `h2` and `http/1.1` by ALPN and uses what the endpoint picks (the Bedrock runtime picks
/// `h2`: the AWS SDK for JavaScript has used HTTP/2 for it by default since v3.798.0); over plain
/// `http://` (an emulator, a local proxy) it is HTTP/2 with prior knowledge. Many streams then
/// share few connections (README "Concurrency"). At most 100 streams per connection: Envoy opens
/// another connection beyond that, rather than sending a burst of streams the server refuses
/// (`REFUSED_STREAM`) before its own SETTINGS limit has arrived. Empty without `http2` (HTTP/1.1:
/// one connection per request in flight).
fn upstream_protocol(scheme: &str, http2: bool) -> String {
    if !http2 {
        return String::new();
    }
    let h2 = "http2_protocol_options: { max_concurrent_streams: 100 }";
    let protocol = if scheme == "https" {
        format!("auto_config: {{ http_protocol_options: {{}}, {h2} }}")
    } else {
        format!("explicit_http_config: {{ {h2} }}")
    };
    format!(
        "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        {protocol}\n"
    )
}

/// The cluster that reaches the launcher's token-file server on the abstract Unix socket
/// `@<socket>` (Envoy's `pipe` address: a leading `@` is the abstract namespace).
pub fn token_files_cluster(socket: &str) -> String {
    format!(
        r#"  - name: {TOKEN_FILES_CLUSTER}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {TOKEN_FILES_CLUSTER}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ pipe: {{ path: "@{socket}" }} }} }} }}] }}]
"#
    )
}

/// Envoy's native jwt_authn in front of the filter: it checks RS256 signatures (BoringSSL)
/// against the same OIDC keys and records the verified payload in dynamic metadata; it never
/// answers itself (allow_missing_or_failed). The filter applies every GitLab rule and error body,
/// and verifies the signature itself whenever jwt_authn did not vouch for the exact token
/// (unknown key yet, CustomersDot or self-signed keys, JWKS unreachable...). GitLab serves its
/// JWKS at /oauth/discovery/keys (its discovery document's jwks_uri). While GitLab is unreachable
/// jwt_authn retries every 30 s (one warning each time); the filter's own fetcher backs off
/// 5..60 s and serves requests meanwhile.
///
/// providers: (name, base URL, Envoy cluster) of each OIDC issuer; header: where the bearer
/// token is read.
pub fn jwt_authn_filter(providers: &[(&str, &str, &str)], header: &str) -> String {
    let blocks: Vec<String> = providers
        .iter()
        .map(|(name, base, cluster)| {
            let uri = format!("{}/oauth/discovery/keys", base.trim_end_matches('/'));
            format!(
                r#"                {name}:
                  from_headers: [{{ name: {header}, value_prefix: "Bearer " }}]
                  forward: true
                  payload_in_metadata: {JWT_AUTHN_PAYLOAD_KEY}
                  remote_jwks:
                    http_uri: {{ uri: "{uri}", cluster: {cluster}, timeout: 5s }}
                    cache_duration: 300s
                    async_fetch: {{ fast_listener: true, failed_refetch_duration: 30s }}"#
            )
        })
        .collect();
    format!(
        r#"          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
{}
              rules:
              - match: {{ prefix: "/" }}
                requires: {{ allow_missing_or_failed: {{}} }}
"#,
        blocks.join("\n")
    )
}

/// The Bedrock runtime endpoint (AWS_BEDROCK_RUNTIME_ENDPOINT or the regional one) and the
/// configured region.
pub fn bedrock_endpoint(env: &Env) -> Result<(String, Option<String>), ConfigError> {
    let region = env.first(&["AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION"]);
    if let Some(url) = env.get("AWS_BEDROCK_RUNTIME_ENDPOINT") {
        return Ok((url.trim_end_matches('/').to_string(), region));
    }
    match region {
        Some(r) => Ok((
            format!("https://bedrock-runtime.{r}.amazonaws.com"),
            Some(r),
        )),
        None => err("no Bedrock region: set AWS_REGION_NAME (or AWS_REGION / AWS_DEFAULT_REGION)"),
    }
}

/// The region a bedrock-runtime[-fips].<region>.(amazonaws.com|vpce.amazonaws.com|api.aws)
/// host names (the filter's `region_from_host`), or None.
pub fn runtime_region(url: &str) -> Option<String> {
    let host = split_url(url)
        .ok()?
        .hostname
        .unwrap_or_default()
        .to_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let suffixes: [&[&str]; 3] = [
        &["vpce", "amazonaws", "com"],
        &["amazonaws", "com"],
        &["api", "aws"],
    ];
    (0..labels.len()).find_map(|i| {
        let rest = &labels[i..];
        let (service, region, suffix) = (rest.first()?, rest.get(1)?, rest.get(2..)?);
        let region_ok = !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        (matches!(*service, "bedrock-runtime" | "bedrock-runtime-fips")
            && region_ok
            && suffixes.contains(&suffix))
        .then(|| region.to_string())
    })
}

/// The region of the deployment: the configured one, else the runtime endpoint's.
fn region_or_runtime(env: &Env) -> Result<Option<String>, ConfigError> {
    let (runtime, region) = bedrock_endpoint(env)?;
    Ok(region.or_else(|| runtime_region(&runtime)))
}

/// (knowledge base id, agent runtime endpoint URL, whether it was overridden), or None.
///
/// Documentation search (POST /v1/search/gitlab-docs) retrieves from this Amazon Bedrock knowledge
/// base through the `bedrock_agent` cluster. The filter validates the id and names the variable;
/// the endpoint follows its rule: AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT, else
/// bedrock-agent-runtime.<region> with the configured region or the runtime endpoint's.
pub fn knowledge_base(env: &Env) -> Result<Option<(String, String, bool)>, ConfigError> {
    let Some(kb_id) = env.get("AIGW_BEDROCK_KNOWLEDGE_BASE_ID") else {
        return Ok(None);
    };
    let kb_id = kb_id.trim().to_string();
    if kb_id.is_empty() {
        return Ok(None);
    }
    if let Some(url) = env.get("AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT") {
        return Ok(Some((kb_id, url.trim_end_matches('/').to_string(), true)));
    }
    match region_or_runtime(env)? {
        Some(r) => Ok(Some((
            kb_id,
            format!("https://bedrock-agent-runtime.{r}.amazonaws.com"),
            false,
        ))),
        None => err(
            "AIGW_BEDROCK_KNOWLEDGE_BASE_ID: no region for the agent runtime endpoint: \
                     set AWS_REGION_NAME or AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT",
        ),
    }
}

/// The STS endpoint for IRSA (`AssumeRoleWithWebIdentity`), when AWS_WEB_IDENTITY_TOKEN_FILE is
/// set: AWS_ENDPOINT_URL_STS (the AWS SDKs' variable), else sts.<region>.amazonaws.com with the
/// configured region or the runtime endpoint's.
pub fn sts_endpoint(env: &Env) -> Result<Option<String>, ConfigError> {
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE").is_none() {
        return Ok(None);
    }
    if let Some(url) = env.get("AWS_ENDPOINT_URL_STS") {
        return Ok(Some(url.trim_end_matches('/').to_string()));
    }
    match region_or_runtime(env)? {
        // As the filter's default (src/bedrock/credentials.rs): `.com.cn` in the China regions.
        Some(r) if r.starts_with("cn-") => Ok(Some(format!("https://sts.{r}.amazonaws.com.cn"))),
        Some(r) => Ok(Some(format!("https://sts.{r}.amazonaws.com"))),
        None => err(
            "AWS_WEB_IDENTITY_TOKEN_FILE: no region for the STS endpoint: \
                     set AWS_REGION_NAME or AWS_ENDPOINT_URL_STS",
        ),
    }
}

/// The route for the filter's signed Retrieve calls (filter state "bedrock_agent"); like the
/// bedrock route, only requests the filter built and marked can take it.
pub fn agent_route(timeout_secs: i128) -> String {
    format!(
        r#"              - match:
                  prefix: "/"
                  filter_state:
                  - key: wasm.duo_bedrock_upstream
                    string_match: {{ exact: bedrock_agent }}
                route:
                  cluster: bedrock_agent
                  timeout: {timeout_secs}s
"#
    )
}

/// (scheme, host, port) of the refreshing credential source the filter will use, or None.
///
/// Mirrors `bedrock::credentials::source_from_env` (the AWS SDKs' default chain): an API key or
/// static keys need no endpoint; then the ECS/EKS container endpoint; then EC2 IMDSv2 unless
/// AWS_EC2_METADATA_DISABLED=true. The filter validates the details and names the variable.
pub fn credentials_endpoint(env: &Env) -> Result<Option<Base>, ConfigError> {
    let fixed = |h: &str| Ok(Some(("http".to_string(), h.to_string(), 80)));
    if env
        .first(&[
            "AWS_BEARER_TOKEN_BEDROCK",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            // Web identity comes before the container endpoint and IMDS in the chain.
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ])
        .is_some()
    {
        return Ok(None);
    }
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some() {
        return fixed("169.254.170.2");
    }
    if let Some(url) = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        return parse_base_url("AWS_CONTAINER_CREDENTIALS_FULL_URI", &url).map(Some);
    }
    if env
        .get_or("AWS_EC2_METADATA_DISABLED", "false")
        .trim()
        .to_lowercase()
        == "true"
    {
        return Ok(None);
    }
    if let Some(url) = env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
        return parse_base_url("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url).map(Some);
    }
    if env
        .get_or("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4")
        .trim()
        .to_lowercase()
        == "ipv6"
    {
        return fixed("fd00:ec2::254");
    }
    fixed("169.254.169.254")
}

/// Whether any token-file variable is set (then the token-file server runs and Envoy gets the
/// [`TOKEN_FILES_CLUSTER`]).
pub fn serves_token_files(env: &Env) -> bool {
    TOKEN_FILE_VARS
        .iter()
        .any(|(var, _)| env.get(var).is_some())
}

/// One JSON value of the plugin configuration.
pub enum Json {
    Str(String),
    Bool(bool),
    Int(i128),
}

/// The rendered Envoy YAML for `env`. `wasm_path`: the module Envoy loads; `token_socket`: the
/// abstract socket name (without `@`) the token-file server listens on.
pub fn render(env: &Env, wasm_path: &str, token_socket: &str) -> Result<String, ConfigError> {
    let Some(gitlab_url) = env.get("AIGW_GITLAB_URL") else {
        return err(
            "AIGW_GITLAB_URL is not set (the GitLab instance whose OIDC keys sign Duo tokens)",
        );
    };
    let gitlab = parse_base_url("AIGW_GITLAB_URL", &gitlab_url)?;
    let (endpoint, region) = bedrock_endpoint(env)?;
    let bedrock = parse_base_url("AWS_BEDROCK_RUNTIME_ENDPOINT", &endpoint)?;

    let max_requests = env.int(
        "DUO_BEDROCK_MAX_CONCURRENT_REQUESTS",
        DEFAULT_MAX_CONCURRENT_REQUESTS,
        1,
        1_000_000,
    )?;
    let http2 = env.bool("DUO_BEDROCK_UPSTREAM_HTTP2", false)?;
    let mut clusters = vec![
        cluster_block(env, "bedrock", &bedrock, Some(max_requests), http2),
        cluster_block(env, "gitlab", &gitlab, None, false),
    ];
    if let Some(creds) = credentials_endpoint(env)? {
        clusters.push(cluster_block(env, "aws_credentials", &creds, None, false));
    }
    let portal = env.get("AIGW_CUSTOMER_PORTAL_URL");
    if let Some(p) = &portal {
        let base = parse_base_url("AIGW_CUSTOMER_PORTAL_URL", p)?;
        clusters.push(cluster_block(env, "customers", &base, None, false));
    }
    let kb = knowledge_base(env)?;
    if let Some((_, url, _)) = &kb {
        let base = parse_base_url("AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT", url)?;
        clusters.push(cluster_block(env, "bedrock_agent", &base, None, http2));
    }
    let sts = sts_endpoint(env)?;
    if let Some(url) = &sts {
        let base = parse_base_url("AWS_ENDPOINT_URL_STS", url)?;
        clusters.push(cluster_block(env, "sts", &base, None, false));
    }
    let token_files = serves_token_files(env);
    if token_files {
        clusters.push(token_files_cluster(token_socket));
    }

    let mut issuers = vec![("gitlab", gitlab_url.as_str(), "gitlab")];
    if let Some(p) = &portal {
        issuers.push(("customers", p.as_str(), "customers"));
    }
    let auth_bypass = env.bool("AIGW_AUTH__BYPASS_EXTERNAL", false)?;
    let native_jwt = env.bool("DUO_BEDROCK_ENVOY_JWT_AUTHN", true)? && !auth_bypass;
    let jwt_leeway = env.int("AIGW_JWT_LEEWAY_SECONDS", 0, 0, 300)?;
    let timeout = env.int("AIGW_MODEL_TIMEOUT_SECONDS", 60, 1, 600)?;
    let cache = env.int("AIGW_TOKEN_CACHE_SIZE", 1024, 0, 100000)?;
    let s = |v: &str| Some(Json::Str(v.to_string()));
    let plugin: Vec<(&str, Option<Json>)> = vec![
        ("gitlab_url", s(&gitlab_url)),
        ("gitlab_cluster", s("gitlab")),
        ("customer_portal_url", portal.as_deref().and_then(s)),
        (
            "customer_portal_cluster",
            portal.as_ref().and_then(|_| s("customers")),
        ),
        (
            "audience",
            s(&env.get_or("AIGW_CLOUD_CONNECTOR_SERVICE_NAME", "gitlab-ai-gateway")),
        ),
        ("bedrock_endpoint", s(&endpoint)),
        ("region", region.as_deref().and_then(s)),
        (
            "default_model",
            env.get("AIGW_DEFAULT_MODEL").as_deref().and_then(s),
        ),
        ("knowledge_base_id", kb.as_ref().and_then(|k| s(&k.0))),
        (
            "bedrock_agent_endpoint",
            kb.as_ref().filter(|k| k.2).and_then(|k| s(&k.1)),
        ),
        ("auth_bypass", Some(Json::Bool(auth_bypass))),
        ("jwt_leeway_secs", Some(Json::Int(jwt_leeway))),
        ("upstream_timeout_secs", Some(Json::Int(timeout))),
        ("token_cache_size", Some(Json::Int(cache))),
        ("envoy_jwt_authn", native_jwt.then_some(Json::Bool(true))),
        (
            "log_format",
            env.pydantic_bool("AIGW_LOGGING__FORMAT_JSON", false)?
                .then(|| Json::Str("json".into())),
        ),
        ("sts_cluster", sts.as_ref().and_then(|_| s("sts"))),
        (
            "token_files_cluster",
            token_files.then(|| Json::Str(TOKEN_FILES_CLUSTER.into())),
        ),
    ];
    let plugin_json = plugin_json(&plugin);

    let admin_port = env.int("ENVOY_ADMIN_PORT", 9901, 0, 65535)?;
    let metrics_port = env.int("AIGW_FASTAPI__METRICS_PORT", 8082, 0, 65535)?;
    let (metrics, admin_cluster) = metrics_listener(
        &env.get_or("AIGW_FASTAPI__METRICS_HOST", "0.0.0.0"),
        metrics_port,
        admin_port,
    );
    if !admin_cluster.is_empty() {
        clusters.push(admin_cluster);
    }
    let listen_host = env.get_or("AIGW_FASTAPI__API_HOST", "0.0.0.0");
    let listen_port = env.int("AIGW_FASTAPI__API_PORT", 5052, 0, 65535)?;
    let values = [
        ("METRICS_LISTENER", metrics),
        ("ADMIN_PORT", admin_port.to_string()),
        ("LISTEN_HOST", listen_host),
        ("LISTEN_PORT", listen_port.to_string()),
        ("UPSTREAM_TIMEOUT", format!("{timeout}s")),
        ("WASM_PATH", wasm_path.to_string()),
        // A YAML single-quoted scalar.
        ("PLUGIN_CONFIG", plugin_json.replace('\'', "''")),
        (
            "JWT_AUTHN_FILTER",
            if native_jwt {
                jwt_authn_filter(&issuers, "Authorization")
            } else {
                String::new()
            },
        ),
        (
            "AGENT_ROUTE",
            if kb.is_some() {
                agent_route(timeout)
            } else {
                String::new()
            },
        ),
        ("CLUSTERS", clusters.join("\n")),
    ];
    substitute(TEMPLATE, &values)
}

/// The plugin configuration as compact JSON, absent values left out, non-ASCII escaped.
fn plugin_json(fields: &[(&str, Option<Json>)]) -> String {
    let members: Vec<String> = fields
        .iter()
        .filter_map(|(k, v)| {
            let v = match v.as_ref()? {
                Json::Str(s) => to_json_ascii(s),
                Json::Bool(b) => b.to_string(),
                Json::Int(i) => i.to_string(),
            };
            Some(format!("{}:{v}", to_json_ascii(k)))
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

/// `${NAME}` / `$NAME` placeholders filled from `values`; `$$` is a literal `$`.
pub fn substitute(template: &str, values: &[(&str, String)]) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let ident_len = |s: &str| {
            s.char_indices()
                .find(|(j, c)| {
                    !(c.is_ascii_alphanumeric() || *c == '_') || (*j == 0 && c.is_ascii_digit())
                })
                .map_or(s.len(), |(j, _)| j)
        };
        let (name, next) = if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
            continue;
        } else if let Some(a) = after.strip_prefix('{') {
            match a.find('}') {
                Some(end) if end > 0 && ident_len(&a[..end]) == end => (&a[..end], &a[end + 1..]),
                _ => return err("envoy.yaml.tmpl: invalid placeholder"),
            }
        } else {
            let n = ident_len(after);
            if n == 0 {
                return err("envoy.yaml.tmpl: invalid placeholder");
            }
            (&after[..n], &after[n..])
        };
        match values.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => out.push_str(v),
            None => return err(format!("envoy.yaml.tmpl: no value for ${{{name}}}")),
        }
        rest = next;
    }
    out.push_str(rest);
    Ok(out)
}
