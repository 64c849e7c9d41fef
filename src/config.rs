//! Plugin configuration: validated once at plugin start, refusing to start when invalid.
//!
//! Two sources, like the gateway container it replaces:
//! - the Envoy plugin `configuration` (JSON, rendered by the launcher, `duo-bedrock render`, from the
//!   gateway's `AIGW_*` variables; no secrets in it), and
//! - the VM environment (`vm_config.environment_variables.host_env_keys`) for secrets:
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_BEARER_TOKEN_BEDROCK`,
//!   and the credential chain's variables (`bedrock::credentials::source_from_env`; token files
//!   need the launcher's `token_files_cluster`, IRSA also `sts_cluster`).
//!
//! Every error names the field (or variable) that is wrong.
//!
//! Documentation search (`POST /v1/search/gitlab-docs`, docs/gitlab-contract.md#documentation-search)
//! is served from an Amazon Bedrock knowledge base when `knowledge_base_id`
//! (`AIGW_BEDROCK_KNOWLEDGE_BASE_ID`) is set, through the agent runtime endpoint
//! (`bedrock_agent_endpoint`, `AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT`); without it the search answers
//! an empty result list.

use crate::auth::AuthConfig;
use crate::bedrock::credentials::{source_from_env, CallTo, Source};
use crate::bedrock::endpoint::Endpoint;
use crate::bedrock::invoke::UpstreamAuth;
use crate::bedrock::sigv4::Credentials;
use serde::Deserialize;

/// The plugin configuration JSON, as written by the launcher (`launcher/src/render.rs`; all optional
/// except `gitlab_url`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    gitlab_url: Option<String>,
    #[serde(default = "default_gitlab_cluster")]
    gitlab_cluster: String,
    customer_portal_url: Option<String>,
    customer_portal_cluster: Option<String>,
    #[serde(default = "default_audience")]
    audience: String,
    bedrock_endpoint: Option<String>,
    region: Option<String>,
    /// `AIGW_BEDROCK_KNOWLEDGE_BASE_ID`: the knowledge base documentation search retrieves from.
    knowledge_base_id: Option<String>,
    /// `AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT`: agent runtime endpoint override.
    bedrock_agent_endpoint: Option<String>,
    default_model: Option<String>,
    #[serde(default)]
    auth_bypass: bool,
    #[serde(default)]
    jwt_leeway_secs: u64,
    #[serde(default = "default_upstream_timeout")]
    upstream_timeout_secs: u64,
    #[serde(default = "default_key_wait_ms")]
    key_wait_ms: u64,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "default_token_cache_size")]
    token_cache_size: usize,
    #[serde(default = "default_credentials_cluster")]
    credentials_cluster: String,
    /// The launcher's token-file server (`duo_bedrock_token_files`): the VM cannot read files,
    /// so `AWS_WEB_IDENTITY_TOKEN_FILE` / `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` are served
    /// by the launcher (docs/bedrock-contract.md#token-files).
    token_files_cluster: Option<String>,
    /// The Envoy cluster to STS (`AWS_ENDPOINT_URL_STS` or `sts.<region>.amazonaws.com`) for
    /// web identity credentials.
    sts_cluster: Option<String>,
    /// Envoy's `jwt_authn` runs before the filter and stores verified payloads in dynamic
    /// metadata under `envoy.filters.http.jwt_authn` / [`JWT_AUTHN_PAYLOAD_KEY`].
    #[serde(default)]
    envoy_jwt_authn: bool,
    /// `AIGW_LOGGING__FORMAT_JSON`: `"json"` or `"text"` (default); any other value is refused
    /// with the variable's name (hence not typed `String` here).
    log_format: Option<serde_json::Value>,
}

/// The `payload_in_metadata` name the launcher gives jwt_authn's providers: the verified
/// payload is at `metadata.filter_metadata["envoy.filters.http.jwt_authn"][JWT_AUTHN_PAYLOAD_KEY]`.
pub const JWT_AUTHN_PAYLOAD_KEY: &str = "duo_bedrock_verified";

/// The request property the filter sets on every request it built and signed, and only on
/// those. Envoy keeps it as filter state `wasm.duo_bedrock_upstream` (clients cannot set filter
/// state), and the Envoy routes forward only requests whose value names their cluster
/// ([`UPSTREAM_BEDROCK`]); anything else gets a local 401 from Envoy itself. So a callback path
/// that forgets to plan a request cannot forward it unchecked. See docs/security.md.
pub const UPSTREAM_MARKER_PROPERTY: &str = "duo_bedrock_upstream";
/// The marker's value for the Bedrock runtime route.
pub const UPSTREAM_BEDROCK: &str = "bedrock";
/// The marker's value for the agent runtime route (knowledge base `Retrieve`, cluster
/// `bedrock_agent`).
pub const UPSTREAM_BEDROCK_AGENT: &str = "bedrock_agent";

fn default_gitlab_cluster() -> String {
    "gitlab".into()
}
fn default_audience() -> String {
    "gitlab-ai-gateway".into()
}
fn default_upstream_timeout() -> u64 {
    60
}
fn default_key_wait_ms() -> u64 {
    5000
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_credentials_cluster() -> String {
    "aws_credentials".into()
}
fn default_token_cache_size() -> usize {
    1024
}

/// One OIDC provider whose JWKS signs GitLab tokens (docs/gitlab-contract.md#key-sources: "Gitlab"
/// and optionally "CustomersDot").
#[derive(Debug, Clone, PartialEq)]
pub struct OidcProvider {
    /// Short stable name, used in shared-data keys and logs.
    pub name: &'static str,
    /// Base URL, e.g. `https://gitlab.example.com`.
    pub base_url: String,
    /// The Envoy cluster that reaches it.
    pub cluster: String,
    /// `host[:port]` as sent in `:authority`.
    pub authority: String,
}

/// Where Bedrock credentials come from.
#[derive(Debug)]
pub enum Upstream {
    /// Static keys (`AWS_ACCESS_KEY_ID`...) or a Bedrock API key: fixed for the VM's life.
    Fixed(UpstreamAuth),
    /// Fetched and refreshed by the filter (web identity through STS, ECS/EKS container
    /// endpoint, EC2 IMDSv2) through the Envoy clusters `clusters`, shared by every worker (see
    /// `host::credentials`).
    Refreshing { source: Source, clusters: Clusters },
}

/// The Envoy clusters a credential fetch uses, by [`CallTo`]; `None` when the source does not
/// need it (checked at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clusters {
    /// Container endpoint or IMDS (`credentials_cluster`, default `aws_credentials`).
    pub endpoint: String,
    /// The launcher's token-file server (`token_files_cluster`).
    pub token_files: Option<String>,
    /// STS (`sts_cluster`).
    pub sts: Option<String>,
}

impl Clusters {
    /// The cluster name for a call.
    pub fn name(&self, to: CallTo) -> Option<&str> {
        match to {
            CallTo::Endpoint => Some(self.endpoint.as_str()),
            CallTo::TokenFiles => self.token_files.as_deref(),
            CallTo::Sts => self.sts.as_deref(),
        }
    }
}

/// The knowledge base documentation search retrieves from (docs/bedrock-contract.md#retrieve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnowledgeBase {
    /// The knowledge base id: 10 upper-case letters and digits.
    pub id: String,
    /// The agent runtime endpoint (`bedrock-agent-runtime.<region>` or the override).
    pub endpoint: Endpoint,
}

/// A knowledge base id as the Bedrock console shows it: 10 upper-case letters and digits (the
/// service model's `KnowledgeBaseIdentifier` pattern `[0-9a-zA-Z]{10}`, as AWS issues them).
pub fn is_knowledge_base_id(id: &str) -> bool {
    id.len() == 10
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// Validated configuration shared by every request of a VM.
#[derive(Debug)]
pub struct Config {
    pub providers: Vec<OidcProvider>,
    pub auth: AuthConfig,
    pub auth_bypass: bool,
    pub endpoint: Endpoint,
    /// How requests to Bedrock are authenticated.
    pub upstream: Upstream,
    pub default_model: Option<String>,
    /// Documentation search's knowledge base; `None`: the search answers no results.
    pub knowledge_base: Option<KnowledgeBase>,
    pub upstream_timeout_secs: u64,
    /// How long a request may wait for a key set (first load or unknown-kid refresh).
    pub key_wait_ms: u64,
    /// Verified tokens remembered per VM (0 disables the cache).
    pub token_cache_size: usize,
    /// The gateway's own keys (`AIGW_SELF_SIGNED_JWT__SIGNING_KEY` / `__VALIDATION_KEY`) as a
    /// JWKS document, trusted beside the OIDC providers' keys
    /// (docs/gitlab-contract.md#key-sources).
    pub local_jwks: Option<String>,
    /// Envoy's native `jwt_authn` filter checks token signatures in front of the filter (see
    /// [`crate::auth::rules::SignatureCheck`]); the filter still applies every other rule and
    /// verifies the signature itself whenever jwt_authn did not vouch for the exact token.
    pub envoy_jwt_authn: bool,
    /// `DUO_BEDROCK_FAULT_INJECTION=crash`: a request carrying `x-duo-bedrock-crash: now`
    /// panics the VM, and one carrying `x-duo-bedrock-crash: pass` is passed on without being
    /// planned or signed. Test-only (they prove the reload policy and that Envoy's routes refuse
    /// what the filter did not build); never set it in production.
    pub crash_injection: bool,
    /// How the filter writes its log messages (`AIGW_LOGGING__FORMAT_JSON`).
    pub log_format: LogFormat,
}

/// The filter's log messages: the gateway's `AIGW_LOGGING__FORMAT_JSON` (`ConfigLogging.format_json`
/// in ai_gateway/config.py). Envoy writes the line around each message (its `--log-format`);
/// see [`crate::logline`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Plain text messages; the request record as `request {json}`.
    #[default]
    Text,
    /// Every message a JSON object: `{"message":..,"request_id":..}`, the request record with
    /// its fields beside `"message":"request"`.
    Json,
}

impl Config {
    /// Parses and validates the plugin configuration and the secrets from the environment.
    pub fn load(
        plugin_json: &[u8],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let raw: Raw = if plugin_json.iter().all(u8::is_ascii_whitespace) {
            return Err(
                "plugin configuration is empty: expected a JSON object with at least gitlab_url"
                    .into(),
            );
        } else {
            serde_json::from_slice(plugin_json).map_err(|e| format!("plugin configuration: {e}"))?
        };
        let env = |name: &str| env(name).filter(|v| !v.is_empty());

        let mut providers = Vec::new();
        let gitlab_url = raw
            .gitlab_url
            .ok_or("gitlab_url (AIGW_GITLAB_URL) is required: the GitLab instance whose OIDC keys sign Duo tokens")?;
        providers.push(provider(
            "Gitlab",
            "gitlab_url",
            &gitlab_url,
            &raw.gitlab_cluster,
        )?);
        if let Some(url) = raw.customer_portal_url {
            let cluster = raw
                .customer_portal_cluster
                .ok_or("customer_portal_cluster is required with customer_portal_url")?;
            providers.push(provider(
                "CustomersDot",
                "customer_portal_url",
                &url,
                &cluster,
            )?);
        }

        if raw.audience.trim().is_empty() {
            return Err("audience (AIGW_CLOUD_CONNECTOR_SERVICE_NAME) must not be empty".into());
        }
        in_range("jwt_leeway_secs", raw.jwt_leeway_secs, 0, 300)?;
        in_range("upstream_timeout_secs", raw.upstream_timeout_secs, 1, 600)?;
        in_range("key_wait_ms", raw.key_wait_ms, 100, 30_000)?;
        in_range("token_cache_size", raw.token_cache_size as u64, 0, 100_000)?;
        in_range("max_token_bytes", raw.max_token_bytes as u64, 1024, 65_536)?;
        let endpoint = Endpoint::resolve(raw.bedrock_endpoint.as_deref(), raw.region.as_deref())
            .map_err(|e| format!("bedrock_endpoint/region: {e}"))?;

        // The AWS SDKs' default chain: API key, static keys, web identity, container endpoint,
        // IMDS.
        let upstream = if let Some(key) = env("AWS_BEARER_TOKEN_BEDROCK") {
            Upstream::Fixed(UpstreamAuth::Bearer(key))
        } else {
            match source_from_env(env, &endpoint.region)? {
                Some(Source::Static) => {
                    let (Some(access_key_id), Some(secret_access_key)) =
                        (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
                    else {
                        return Err(
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together"
                                .into(),
                        );
                    };
                    Upstream::Fixed(UpstreamAuth::SigV4 {
                        creds: Credentials {
                            access_key_id,
                            secret_access_key,
                            session_token: env("AWS_SESSION_TOKEN"),
                        },
                        region: endpoint.region.clone(),
                    })
                }
                Some(source) => {
                    let clusters = refreshing_clusters(
                        &source,
                        &raw.credentials_cluster,
                        raw.token_files_cluster.as_deref(),
                        raw.sts_cluster.as_deref(),
                    )?;
                    Upstream::Refreshing { source, clusters }
                }
                None => {
                    return Err(
                        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                                AWS_BEARER_TOKEN_BEDROCK, AWS_WEB_IDENTITY_TOKEN_FILE with \
                                AWS_ROLE_ARN, or a container credentials endpoint (IMDS is \
                                disabled by AWS_EC2_METADATA_DISABLED)"
                            .into(),
                    )
                }
            }
        };

        if let Upstream::Fixed(auth) = &upstream {
            let vars = match auth {
                UpstreamAuth::Bearer(_) => "AWS_BEARER_TOKEN_BEDROCK",
                UpstreamAuth::SigV4 { .. } => {
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN"
                }
            };
            auth.check().map_err(|e| format!("{vars}: {e}"))?;
        }
        let knowledge_base = knowledge_base(
            raw.knowledge_base_id.as_deref(),
            raw.bedrock_agent_endpoint.as_deref(),
            raw.region.as_deref(),
            &endpoint,
            &upstream,
        )?;

        let local_jwks = crate::auth::keys::self_signed_jwks(
            &raw.audience,
            env("AIGW_SELF_SIGNED_JWT__SIGNING_KEY").as_deref(),
            env("AIGW_SELF_SIGNED_JWT__VALIDATION_KEY").as_deref(),
        )
        .map_err(|e| format!("AIGW_SELF_SIGNED_JWT__SIGNING_KEY/__VALIDATION_KEY: {e}"))?;
        let crash_injection = match env("DUO_BEDROCK_FAULT_INJECTION").as_deref() {
            None => false,
            Some("crash") => true,
            Some(other) => {
                return Err(format!(
                    "DUO_BEDROCK_FAULT_INJECTION={other:?}: only \"crash\" is known"
                ))
            }
        };
        let log_format = match raw.log_format.as_ref().map(|v| (v.as_str(), v)) {
            None | Some((Some("text"), _)) => LogFormat::Text,
            Some((Some("json"), _)) => LogFormat::Json,
            Some((_, other)) => {
                return Err(format!(
                    "log_format (AIGW_LOGGING__FORMAT_JSON)={other}: expected \"json\" or \"text\""
                ))
            }
        };
        let default_model = raw.default_model.filter(|m| !m.trim().is_empty());
        Ok(Config {
            providers,
            auth: AuthConfig {
                audience: raw.audience,
                leeway_secs: raw.jwt_leeway_secs,
                max_token_bytes: raw.max_token_bytes,
            },
            auth_bypass: raw.auth_bypass,
            endpoint,
            upstream,
            default_model,
            knowledge_base,
            upstream_timeout_secs: raw.upstream_timeout_secs,
            key_wait_ms: raw.key_wait_ms,
            token_cache_size: raw.token_cache_size,
            local_jwks,
            envoy_jwt_authn: raw.envoy_jwt_authn && !raw.auth_bypass,
            crash_injection,
            log_format,
        })
    }
}

/// The validated knowledge base, `None` when `knowledge_base_id` is unset or blank. The agent
/// endpoint override is validated even then, so a typo is reported at start.
fn knowledge_base(
    id: Option<&str>,
    agent_endpoint: Option<&str>,
    configured_region: Option<&str>,
    runtime: &Endpoint,
    upstream: &Upstream,
) -> Result<Option<KnowledgeBase>, String> {
    let endpoint =
        Endpoint::resolve_agent_runtime(agent_endpoint, configured_region, &runtime.region)
            .map_err(|e| format!("bedrock_agent_endpoint: {e}"))?;
    let Some(id) = id.map(str::trim).filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    if !is_knowledge_base_id(id) {
        return Err(format!(
            "knowledge_base_id (AIGW_BEDROCK_KNOWLEDGE_BASE_ID)={id:?}: expected the knowledge \
             base's 10-character id (upper-case letters and digits, as the Bedrock console \
             shows it, e.g. ABCDE12345)"
        ));
    }
    // https://docs.aws.amazon.com/bedrock/latest/userguide/api-keys.html: API keys do not
    // authorize Agents for Amazon Bedrock Runtime operations.
    if let Upstream::Fixed(UpstreamAuth::Bearer(_)) = upstream {
        return Err(
            "knowledge_base_id (AIGW_BEDROCK_KNOWLEDGE_BASE_ID) needs SigV4 credentials: a \
             Bedrock API key (AWS_BEARER_TOKEN_BEDROCK) cannot call the knowledge base Retrieve \
             API; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a role, or unset \
             AIGW_BEDROCK_KNOWLEDGE_BASE_ID"
                .into(),
        );
    }
    Ok(Some(KnowledgeBase {
        id: id.to_string(),
        endpoint,
    }))
}

/// The clusters a refreshing source needs, refusing to start without them: the VM cannot read
/// token files, so without the launcher's `token_files_cluster` (e.g. an Istio or Envoy Gateway
/// deployment, where nothing serves the file) the file variables cannot work.
fn refreshing_clusters(
    source: &Source,
    credentials_cluster: &str,
    token_files_cluster: Option<&str>,
    sts_cluster: Option<&str>,
) -> Result<Clusters, String> {
    let cluster = |name: Option<&str>| {
        name.map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
    };
    let token_files = cluster(token_files_cluster);
    let sts = cluster(sts_cluster);
    if source.reads_token_file() && token_files.is_none() {
        let var = match source {
            Source::WebIdentity { .. } => "AWS_WEB_IDENTITY_TOKEN_FILE",
            _ => "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        };
        return Err(format!(
            "{var} is set, but the plugin configuration has no token_files_cluster: the wasm VM \
             cannot read files, the launcher must serve the file (it renders the cluster \
             duo_bedrock_token_files); deployments without the launcher (Istio, Envoy Gateway) \
             cannot use token files"
        ));
    }
    if matches!(source, Source::WebIdentity { .. }) && sts.is_none() {
        return Err(
            "AWS_WEB_IDENTITY_TOKEN_FILE is set, but the plugin configuration has no \
             sts_cluster: web identity credentials come from STS AssumeRoleWithWebIdentity \
             through an Envoy cluster to AWS_ENDPOINT_URL_STS or sts.<region>.amazonaws.com \
             (rendered by the launcher)"
                .into(),
        );
    }
    if matches!(source, Source::Container { .. } | Source::Imds { .. })
        && credentials_cluster.trim().is_empty()
    {
        return Err("credentials_cluster: the Envoy cluster name must not be empty".into());
    }
    Ok(Clusters {
        endpoint: credentials_cluster.to_string(),
        token_files,
        sts,
    })
}

/// `field` within `min..=max`, or the error naming it ("at most max" when `min` is 0).
fn in_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else if min == 0 {
        Err(format!("{field}={value}: at most {max}"))
    } else {
        Err(format!("{field}={value}: expected {min}..{max}"))
    }
}

fn provider(
    name: &'static str,
    field: &str,
    url: &str,
    cluster: &str,
) -> Result<OidcProvider, String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{field}={url:?}: expected http(s)://host[:port]"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || authority.contains(['?', '#', ' ']) {
        return Err(format!("{field}={url:?}: expected http(s)://host[:port]"));
    }
    if cluster.is_empty() {
        return Err(format!("{field}: the Envoy cluster name must not be empty"));
    }
    Ok(OidcProvider {
        name,
        base_url: url.trim_end_matches('/').to_string(),
        cluster: cluster.to_string(),
        authority: authority.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }
    #[test]
    fn numeric_fields_name_their_bounds() {
        for (json, err) in [
            (
                r#""jwt_leeway_secs":301"#,
                "jwt_leeway_secs=301: at most 300",
            ),
            (
                r#""upstream_timeout_secs":0"#,
                "upstream_timeout_secs=0: expected 1..600",
            ),
            (r#""key_wait_ms":99"#, "key_wait_ms=99: expected 100..30000"),
            (
                r#""token_cache_size":100001"#,
                "token_cache_size=100001: at most 100000",
            ),
            (
                r#""max_token_bytes":65537"#,
                "max_token_bytes=65537: expected 1024..65536",
            ),
        ] {
            let plugin = format!(r#"{{"gitlab_url":"https://gitlab.example.com",{json}}}"#);
            let e = Config::load(plugin.as_bytes(), env_with(KEYS)).unwrap_err();
            assert!(e.contains(err), "{e}");
        }
    }

    const KEYS: &[(&str, &str)] = &[
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "SECRET"),
    ];

    #[test]
    fn log_format_is_validated() {
        let load = |v: &str| {
            let plugin =
                format!(r#"{{"gitlab_url":"https://gitlab.example.com","region":"eu-west-1"{v}}}"#);
            Config::load(plugin.as_bytes(), env_with(KEYS)).map(|c| c.log_format)
        };
        assert_eq!(load(""), Ok(LogFormat::Text));
        assert_eq!(load(r#","log_format":"text""#), Ok(LogFormat::Text));
        assert_eq!(load(r#","log_format":"json""#), Ok(LogFormat::Json));
        let e = load(r#","log_format":"JSON""#).unwrap_err();
        assert!(
            e.contains("AIGW_LOGGING__FORMAT_JSON") && e.contains("JSON"),
            "{e}"
        );
        let e = load(r#","log_format":true"#).unwrap_err();
        assert!(e.contains("(AIGW_LOGGING__FORMAT_JSON)=true"), "{e}");
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::load(
            br#"{"gitlab_url":"https://gitlab.example.com","region":"eu-west-1"}"#,
            env_with(KEYS),
        )
        .unwrap();
        assert_eq!(c.auth.audience, "gitlab-ai-gateway");
        assert_eq!(c.auth.leeway_secs, 0);
        assert_eq!(c.providers[0].authority, "gitlab.example.com");
        assert_eq!(
            c.endpoint.authority(),
            "bedrock-runtime.eu-west-1.amazonaws.com"
        );
        assert!(matches!(
            c.upstream,
            Upstream::Fixed(UpstreamAuth::SigV4 { .. })
        ));
        assert_eq!(c.upstream_timeout_secs, 60);
    }

    #[test]
    fn errors_name_the_field() {
        let e = |json: &str, env: &'static [(&'static str, &'static str)]| {
            Config::load(json.as_bytes(), env_with(env)).unwrap_err()
        };
        assert!(e("", KEYS).contains("empty"));
        assert!(e("{", KEYS).contains("plugin configuration"));
        assert!(e(r#"{"region":"us-east-1"}"#, KEYS).contains("gitlab_url"));
        assert!(e(r#"{"gitlab_url":"ftp://x","region":"us-east-1"}"#, KEYS).contains("gitlab_url"));
        assert!(e(r#"{"gitlab_url":"https://g"}"#, KEYS).contains("region"));
        assert!(e(
            r#"{"gitlab_url":"https://g","region":"us-east-1","typo":1}"#,
            KEYS
        )
        .contains("typo"));
        assert!(e(
            r#"{"gitlab_url":"https://g","region":"us-east-1"}"#,
            &[("AWS_EC2_METADATA_DISABLED", "true")]
        )
        .contains("AWS_ACCESS_KEY_ID"));
        assert!(e(
            r#"{"gitlab_url":"https://g","region":"us-east-1"}"#,
            &[("AWS_ACCESS_KEY_ID", "A")]
        )
        .contains("AWS_SECRET_ACCESS_KEY"));
        assert!(e(
            r#"{"gitlab_url":"https://g","region":"us-east-1","upstream_timeout_secs":0}"#,
            KEYS
        )
        .contains("upstream_timeout_secs"));
        assert!(e(
            r#"{"gitlab_url":"https://g","region":"us-east-1","audience":" "}"#,
            KEYS
        )
        .contains("audience"));
    }

    #[test]
    fn knowledge_base_is_optional_and_validated() {
        let c = Config::load(
            br#"{"gitlab_url":"https://g","region":"eu-west-1"}"#,
            env_with(KEYS),
        )
        .unwrap();
        assert_eq!(c.knowledge_base, None);
        let c = Config::load(
            br#"{"gitlab_url":"https://g","region":"eu-west-1","knowledge_base_id":" "}"#,
            env_with(KEYS),
        )
        .unwrap();
        assert_eq!(c.knowledge_base, None, "blank means unset");
        let c = Config::load(
            br#"{"gitlab_url":"https://g","region":"eu-west-1","knowledge_base_id":"ABCDE12345"}"#,
            env_with(KEYS),
        )
        .unwrap();
        let kb = c.knowledge_base.unwrap();
        assert_eq!(kb.id, "ABCDE12345");
        assert_eq!(
            kb.endpoint.authority(),
            "bedrock-agent-runtime.eu-west-1.amazonaws.com"
        );
        assert_eq!(kb.endpoint.region, "eu-west-1");
        // Both endpoints overridden (the emulator), the region from the configuration.
        let c = Config::load(
            br#"{"gitlab_url":"https://g","bedrock_endpoint":"http://127.0.0.1:9000","bedrock_agent_endpoint":"http://127.0.0.1:9000","region":"us-east-1","knowledge_base_id":"EMUDOCS001"}"#,
            env_with(KEYS),
        )
        .unwrap();
        let kb = c.knowledge_base.unwrap();
        assert_eq!(
            (
                kb.endpoint.authority().as_str(),
                kb.endpoint.region.as_str()
            ),
            ("127.0.0.1:9000", "us-east-1")
        );
        for bad in [
            "abcde12345",
            "ABCDE1234",
            "ABCDE123456",
            "ABCDE-1234",
            "ABCDE 1234",
            "../../x/y",
        ] {
            let json = format!(
                r#"{{"gitlab_url":"https://g","region":"us-east-1","knowledge_base_id":"{bad}"}}"#
            );
            let e = Config::load(json.as_bytes(), env_with(KEYS)).unwrap_err();
            assert!(e.contains("AIGW_BEDROCK_KNOWLEDGE_BASE_ID"), "{bad}: {e}");
        }
        let e = Config::load(
            br#"{"gitlab_url":"https://g","region":"us-east-1","bedrock_agent_endpoint":"ftp://x"}"#,
            env_with(KEYS),
        )
        .unwrap_err();
        assert!(e.contains("AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT"), "{e}");
        let e = Config::load(
            br#"{"gitlab_url":"https://g","region":"us-east-1","knowledge_base_id":"ABCDE12345"}"#,
            env_with(&[("AWS_BEARER_TOKEN_BEDROCK", "br-key")]),
        )
        .unwrap_err();
        assert!(
            e.contains("AIGW_BEDROCK_KNOWLEDGE_BASE_ID") && e.contains("AWS_BEARER_TOKEN_BEDROCK"),
            "{e}"
        );
        assert!(!e.contains("br-key"), "no secret in the message");
        assert!(is_knowledge_base_id("ABCDE12345") && !is_knowledge_base_id("ABCDE1234é"));
    }

    #[test]
    fn refreshing_sources_follow_the_sdk_chain() {
        let json = br#"{"gitlab_url":"https://g","region":"us-east-1"}"#;
        let c = Config::load(json, env_with(&[])).unwrap();
        assert!(
            matches!(c.upstream, Upstream::Refreshing { source: Source::Imds { .. }, ref clusters } if clusters.endpoint == "aws_credentials")
        );
        let c = Config::load(
            json,
            env_with(&[
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://127.0.0.1:9/creds",
                ),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "t"),
            ]),
        )
        .unwrap();
        assert!(matches!(
            c.upstream,
            Upstream::Refreshing {
                source: Source::Container { .. },
                ..
            }
        ));
        let c = Config::load(
            json,
            env_with(&[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9/c"),
                ("AWS_ACCESS_KEY_ID", "A"),
                ("AWS_SECRET_ACCESS_KEY", "S"),
            ]),
        )
        .unwrap();
        assert!(
            matches!(c.upstream, Upstream::Fixed(_)),
            "static keys come first"
        );
        let e = Config::load(
            json,
            env_with(&[(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://10.0.0.1/creds",
            )]),
        )
        .unwrap_err();
        assert!(e.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"), "{e}");
    }

    #[test]
    fn token_files_and_sts_need_their_clusters() {
        let irsa: &[(&str, &str)] = &[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/duo"),
        ];
        let pod_identity: &[(&str, &str)] = &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
            ),
        ];
        let load = |extra: &str, env: &[(&str, &str)]| {
            let json = format!(r#"{{"gitlab_url":"https://g","region":"eu-west-1"{extra}}}"#);
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Config::load(json.as_bytes(), |name| {
                env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        };
        let both = r#","token_files_cluster":"duo_bedrock_token_files","sts_cluster":"sts""#;
        let c = load(both, irsa).unwrap();
        let Upstream::Refreshing { source, clusters } = &c.upstream else {
            panic!()
        };
        assert_eq!(source.kind(), "web_identity");
        assert_eq!(
            source.endpoint(),
            Some((true, "sts.eu-west-1.amazonaws.com".into()))
        );
        assert_eq!(clusters.name(CallTo::Sts), Some("sts"));
        assert_eq!(
            clusters.name(CallTo::TokenFiles),
            Some("duo_bedrock_token_files")
        );
        assert_eq!(clusters.name(CallTo::Endpoint), Some("aws_credentials"));
        let e = load(r#","sts_cluster":"sts""#, irsa).unwrap_err();
        assert!(
            e.contains("AWS_WEB_IDENTITY_TOKEN_FILE")
                && e.contains("token_files_cluster")
                && e.contains("launcher"),
            "{e}"
        );
        let e = load(r#","token_files_cluster":"duo_bedrock_token_files""#, irsa).unwrap_err();
        assert!(e.contains("sts_cluster"), "{e}");
        let e = load(both, &[irsa[0]]).unwrap_err();
        assert!(e.contains("AWS_ROLE_ARN"), "{e}");
        let e = load(both, &[irsa[0], ("AWS_ROLE_ARN", "duo")]).unwrap_err();
        assert!(e.contains("AWS_ROLE_ARN"), "{e}");

        let c = load(
            r#","token_files_cluster":"duo_bedrock_token_files""#,
            pod_identity,
        )
        .unwrap();
        assert!(
            matches!(c.upstream, Upstream::Refreshing { ref source, .. } if source.reads_token_file())
        );
        let e = load("", pod_identity).unwrap_err();
        assert!(
            e.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") && e.contains("launcher"),
            "{e}"
        );
        // The literal token needs no launcher.
        let c = load(
            "",
            &[
                pod_identity[0],
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "literal"),
            ],
        );
        assert!(c.is_ok(), "{c:?}");
    }

    /// Credentials that could never sign a request are refused at start, naming the variable
    /// and not the value (they used to pass and fail every request with a 500). Found by the
    /// `config` fuzz target.
    #[test]
    fn credentials_that_cannot_sign_are_refused() {
        let json = br#"{"gitlab_url":"https://g","region":"us-east-1"}"#;
        for (env, var) in [
            (
                &[
                    ("AWS_ACCESS_KEY_ID", "AK ID"),
                    ("AWS_SECRET_ACCESS_KEY", "S3cr3t"),
                ][..],
                "AWS_ACCESS_KEY_ID",
            ),
            (
                &[
                    ("AWS_ACCESS_KEY_ID", "AKID/x"),
                    ("AWS_SECRET_ACCESS_KEY", "S3cr3t"),
                ][..],
                "AWS_ACCESS_KEY_ID",
            ),
            (
                &[
                    ("AWS_ACCESS_KEY_ID", "AKID"),
                    ("AWS_SECRET_ACCESS_KEY", "S3cr3t"),
                    ("AWS_SESSION_TOKEN", "T0k\nen\r\n"),
                ][..],
                "AWS_SESSION_TOKEN",
            ),
            (
                &[("AWS_BEARER_TOKEN_BEDROCK", "br key S3cr3t")][..],
                "AWS_BEARER_TOKEN_BEDROCK",
            ),
        ] {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let e = Config::load(json, |name| {
                env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
            .unwrap_err();
            assert!(e.contains(var), "{e}");
            assert!(!e.contains("S3cr3t") && !e.contains("T0k"), "{e}");
        }
        // Surrounding whitespace of an API key is trimmed when signing: still fine.
        let c = Config::load(json, env_with(&[("AWS_BEARER_TOKEN_BEDROCK", " br-key\n")]));
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn bearer_key_wins_and_session_token_is_kept() {
        let c = Config::load(
            br#"{"gitlab_url":"http://127.0.0.1:8080","bedrock_endpoint":"http://127.0.0.1:9000","region":"us-east-1"}"#,
            env_with(&[("AWS_BEARER_TOKEN_BEDROCK", "br-key"), ("AWS_ACCESS_KEY_ID", "A")]),
        )
        .unwrap();
        assert!(
            matches!(c.upstream, Upstream::Fixed(UpstreamAuth::Bearer(ref k)) if k == "br-key")
        );
        let c = Config::load(
            br#"{"gitlab_url":"http://127.0.0.1:8080","region":"us-east-1"}"#,
            env_with(&[
                ("AWS_ACCESS_KEY_ID", "A"),
                ("AWS_SECRET_ACCESS_KEY", "S"),
                ("AWS_SESSION_TOKEN", "T"),
            ]),
        )
        .unwrap();
        match c.upstream {
            Upstream::Fixed(UpstreamAuth::SigV4 { creds, region }) => {
                assert_eq!(creds.session_token.as_deref(), Some("T"));
                assert_eq!(region, "us-east-1");
            }
            _ => panic!("expected SigV4"),
        }
        assert_eq!(c.providers[0].authority, "127.0.0.1:8080");
    }
}
