//! Refreshing AWS credentials fetched by the filter itself (issue 6): where they come from, the
//! HTTP calls that fetch them, and when to refresh. Host-independent: the host dispatches the
//! [`HttpCall`]s with `dispatch_http_call` on the cluster each call names ([`CallTo`]), feeds the
//! answers back, passes the time in, and shares the result across worker VMs with
//! [`serialize_shared`] / [`deserialize_shared`].
//!
//! Contract: the AWS SDKs' default credential chain, restricted to what a wasm VM can do (no
//! processes, no files: token files are read by the launcher and served to the VM over the
//! token-files cluster, docs/bedrock-contract.md#token-files): environment keys, then a web
//! identity token (IRSA), then the container endpoint, then EC2 IMDSv2.
//!
//! * **Environment** (`AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY`, optional
//!   `AWS_SESSION_TOKEN`) → [`Source::Static`]; the plugin configuration keeps handling those.
//! * **Web identity** (EKS IRSA; docs/bedrock-contract.md#web-identity):
//!   `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (an IAM role ARN; required once the file is
//!   set, as in the SDKs), optional `AWS_ROLE_SESSION_NAME` (default `duo-bedrock-<unix time>`
//!   per fetch, the SDKs' `<prefix>-<time>` convention), STS at `AWS_ENDPOINT_URL_STS` or
//!   `https://sts.<region>.amazonaws.com`. Each fetch GETs the token from the launcher
//!   (`/web-identity-token`), then POSTs an unsigned STS `AssumeRoleWithWebIdentity` (form body)
//!   and reads the XML answer ([`parse_sts_credentials`], [`parse_sts_error`]).
//! * **Container** (ECS task roles, EKS Pod Identity): `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`
//!   (→ `http://169.254.170.2<relative>`, wins as in the SDKs) or
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI`. A full URI must be `https://` (any host) or
//!   `http://` to a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`) or to the ECS/EKS agent
//!   addresses `169.254.170.2`, `169.254.170.23`, `[fd00:ec2::23]` — the rule of the AWS SDKs
//!   (Rust `aws-config` ecs provider, JS `@aws-sdk/credential-provider-http` `checkUrl`).
//!   The `Authorization` header is `AWS_CONTAINER_AUTHORIZATION_TOKEN`, or, when
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` is set (it wins, as in the SDKs), the file's
//!   content, fetched from the launcher (`/container-authorization-token`) at the start of every
//!   fetch: EKS rotates the file, so it is never cached beyond one fetch (botocore
//!   `ContainerProvider._build_headers` reads it on every refresh too).
//!   The token must be a single line of printable ASCII (as the SDKs require).
//! * **IMDSv2** (EC2 instance profile), unless `AWS_EC2_METADATA_DISABLED=true`:
//!   `PUT /latest/api/token` (`x-aws-ec2-metadata-token-ttl-seconds`), then
//!   `GET /latest/meta-data/iam/security-credentials/` (first line = role name), then
//!   `GET /latest/meta-data/iam/security-credentials/<role>`, both with
//!   `x-aws-ec2-metadata-token`. Endpoint `http://169.254.169.254`, or `http://[fd00:ec2::254]`
//!   with `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`, or `AWS_EC2_METADATA_SERVICE_ENDPOINT`
//!   (any http(s) URL: the SDKs do not restrict this override). No IMDSv1 fallback.
//!   As in the SDKs, IMDS is the last resort whenever nothing else is configured, so
//!   [`source_from_env`] answers `None` only when IMDS is disabled too.
//!
//! Container and IMDS answers are the JSON both endpoints share (`AccessKeyId`,
//! `SecretAccessKey`, `Token`, `Expiration` in RFC 3339, IMDS adds `Code: "Success"`). Bodies are
//! bounded ([`MAX_BODY_BYTES`]); nothing here panics on hostile input. Secrets (secret key,
//! session token, container authorization token, web identity token, IMDS token) never appear
//! in `Debug` output or in error strings: errors name fields and statuses, never values.

use super::sigv4::Credentials;
use crate::civil::{civil_from_days, days_from_civil};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Link-local address of the ECS agent for `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
pub const CONTAINER_RELATIVE_HOST: &str = "169.254.170.2";
/// IMDS endpoint (IPv4 mode).
pub const IMDS_ENDPOINT_IPV4: &str = "http://169.254.169.254";
/// IMDS endpoint (IPv6 mode).
pub const IMDS_ENDPOINT_IPV6: &str = "http://[fd00:ec2::254]";
/// Lifetime asked for an IMDSv2 session token (the SDKs' 6 hours; one token per fetch here).
pub const IMDS_TOKEN_TTL_SECS: u32 = 21_600;
/// `:authority` of the calls to the launcher's token-file server (any name: the cluster is a
/// Unix socket).
pub const TOKEN_FILES_AUTHORITY: &str = "duo-bedrock-token-files";
/// The launcher's path serving `AWS_WEB_IDENTITY_TOKEN_FILE`.
pub const WEB_IDENTITY_TOKEN_PATH: &str = "/web-identity-token";
/// The launcher's path serving `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
pub const CONTAINER_TOKEN_PATH: &str = "/container-authorization-token";
/// Default `RoleSessionName` prefix (`duo-bedrock-<unix seconds>`).
pub const SESSION_NAME_PREFIX: &str = "duo-bedrock";
/// Largest credentials / token / role-list / STS body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Suggested per-call timeout for the host (the endpoints are local; the SDKs use 1–5 s).
pub const CALL_TIMEOUT_SECS: u64 = 5;
/// Refresh schedule when the answer carries no `Expiration`.
pub const DEFAULT_REFRESH_SECS: u64 = 3600;
/// Largest token read from a token file (the launcher serves at most 16 KiB).
pub const MAX_TOKEN_FILE_BYTES: usize = 16 * 1024;

const MAX_AUTH_TOKEN_BYTES: usize = 16 * 1024;
const MAX_SESSION_TOKEN_BYTES: usize = 16 * 1024;
const MAX_IMDS_TOKEN_BYTES: usize = 4096;
const MAX_KEY_BYTES: usize = 256;
const IMDS_TOKEN_PATH: &str = "/latest/api/token";
const IMDS_CREDS_PATH: &str = "/latest/meta-data/iam/security-credentials/";
const STS_ACTION: &str = "AssumeRoleWithWebIdentity";
const STS_VERSION: &str = "2011-06-15";

/// The `Authorization` header of the container endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum ContainerAuth {
    /// No header.
    None,
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`, validated.
    Token(String),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`: read by the launcher at every fetch.
    File,
}

impl fmt::Debug for ContainerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContainerAuth::None => "none",
            ContainerAuth::Token(_) => "token (redacted)",
            ContainerAuth::File => "token file",
        })
    }
}

/// Where SigV4 credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (handled by the plugin configuration).
    Static,
    /// STS `AssumeRoleWithWebIdentity` with the token of `AWS_WEB_IDENTITY_TOKEN_FILE` (IRSA).
    WebIdentity {
        /// `AWS_ROLE_ARN`, validated.
        role_arn: String,
        /// `AWS_ROLE_SESSION_NAME`; `None`: `duo-bedrock-<unix seconds>` per fetch.
        session_name: Option<String>,
        /// STS URL, `http(s)://authority/path`, validated.
        sts_url: String,
    },
    /// ECS / EKS Pod Identity container endpoint.
    Container {
        /// Full URL, `http(s)://authority/path[?query]`, validated.
        url: String,
        auth: ContainerAuth,
    },
    /// EC2 instance metadata service, IMDSv2.
    Imds {
        /// `http(s)://authority[/prefix]`, no trailing slash.
        base_url: String,
    },
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Static => f.write_str("Static"),
            Source::WebIdentity {
                role_arn,
                session_name,
                sts_url,
            } => f
                .debug_struct("WebIdentity")
                .field("role_arn", role_arn)
                .field("session_name", session_name)
                .field("sts_url", sts_url)
                .finish(),
            Source::Container { url, auth } => f
                .debug_struct("Container")
                .field("url", url)
                .field("auth", auth)
                .finish(),
            Source::Imds { base_url } => {
                f.debug_struct("Imds").field("base_url", base_url).finish()
            }
        }
    }
}

impl Source {
    /// Short name for logs and metric labels: `static`, `web_identity`, `container`, `imds`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::WebIdentity { .. } => "web_identity",
            Source::Container { .. } => "container",
            Source::Imds { .. } => "imds",
        }
    }

    /// `(https, authority)` the credentials come from (STS, the container endpoint, IMDS;
    /// `None` for `Static`): the host needs one Envoy cluster for it.
    pub fn endpoint(&self) -> Option<(bool, String)> {
        let url = match self {
            Source::Static => return None,
            Source::WebIdentity { sts_url, .. } => sts_url,
            Source::Container { url, .. } => url,
            Source::Imds { base_url } => base_url,
        };
        split_url(url).ok().map(|u| (u.https, u.authority))
    }

    /// True when a fetch first asks the launcher for a token file (the token-files cluster
    /// must exist).
    pub fn reads_token_file(&self) -> bool {
        matches!(
            self,
            Source::WebIdentity { .. }
                | Source::Container {
                    auth: ContainerAuth::File,
                    ..
                }
        )
    }
}

/// The default STS endpoint of `region` (regional, as the SDKs use by default; China regions
/// are in the `amazonaws.com.cn` partition).
pub fn default_sts_url(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://sts.{region}.{suffix}/")
}

/// Reads the credential chain from the (VM) environment. Empty values count as unset.
/// `region` (the signing region) picks the default STS endpoint.
///
/// `Ok(None)`: no credentials at all (no keys, no container endpoint, IMDS disabled).
/// `AWS_BEARER_TOKEN_BEDROCK` is not looked at: the configuration decides Bearer first.
/// Errors name the variable and never contain a token.
pub fn source_from_env(
    env: impl Fn(&str) -> Option<String>,
    region: &str,
) -> Result<Option<Source>, String> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());

    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(_), Some(_)) => return Ok(Some(Source::Static)),
        (Some(_), None) => {
            return Err("AWS_SECRET_ACCESS_KEY is not set (AWS_ACCESS_KEY_ID is)".into())
        }
        (None, Some(_)) => {
            return Err("AWS_ACCESS_KEY_ID is not set (AWS_SECRET_ACCESS_KEY is)".into())
        }
        (None, None) => {}
    }

    if env("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
        return web_identity(&env, region).map(Some);
    }

    let relative = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    let full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if relative.is_some() || full.is_some() {
        let url = match (relative, full) {
            (Some(rel), _) => {
                let rel = rel.trim();
                if !rel.starts_with('/') || !is_path(rel) {
                    return Err(format!(
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI='{}': expected a path starting \
                         with '/' (it is appended to http://{CONTAINER_RELATIVE_HOST})",
                        shown_url(rel)
                    ));
                }
                format!("http://{CONTAINER_RELATIVE_HOST}{rel}")
            }
            (None, Some(full)) => {
                let var = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
                let full = full.trim();
                let u = split_url(full).map_err(|e| format!("{var}='{}': {e}", shown_url(full)))?;
                if !u.https && !allowed_container_http_host(&u.host) {
                    return Err(format!(
                        "{var}='{}': a plain http:// URL must point at a loopback host \
                         (127.0.0.0/8, [::1], localhost) or at the ECS/EKS agent \
                         (169.254.170.2, 169.254.170.23, [fd00:ec2::23]); use https:// otherwise",
                        shown_url(full)
                    ));
                }
                u.to_url()
            }
            (None, None) => return Ok(None), // unreachable: one of them is set
        };
        let auth = container_auth(&env)?;
        return Ok(Some(Source::Container { url, auth }));
    }

    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let base_url = if let Some(endpoint) = env("AWS_EC2_METADATA_SERVICE_ENDPOINT") {
        let var = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
        let endpoint = endpoint.trim();
        let u = split_url(endpoint).map_err(|e| format!("{var}='{}': {e}", shown_url(endpoint)))?;
        if u.path.contains('?') {
            return Err(format!(
                "{var}='{}': expected http(s)://host[:port] without a query",
                shown_url(endpoint)
            ));
        }
        u.to_url().trim_end_matches('/').to_string()
    } else {
        match env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
            None => IMDS_ENDPOINT_IPV4.to_string(),
            Some(m) if m.trim().eq_ignore_ascii_case("ipv4") => IMDS_ENDPOINT_IPV4.to_string(),
            Some(m) if m.trim().eq_ignore_ascii_case("ipv6") => IMDS_ENDPOINT_IPV6.to_string(),
            Some(m) => {
                return Err(format!(
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE='{}': expected IPv4 or IPv6",
                    shorten(&m)
                ))
            }
        }
    };
    Ok(Some(Source::Imds { base_url }))
}

/// The web identity source: `AWS_ROLE_ARN` required with the token file (the SDKs refuse the
/// same), `AWS_ROLE_SESSION_NAME` optional, `AWS_ENDPOINT_URL_STS` optional.
fn web_identity(env: &impl Fn(&str) -> Option<String>, region: &str) -> Result<Source, String> {
    let Some(role_arn) = env("AWS_ROLE_ARN") else {
        return Err(
            "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not: web identity (IRSA) \
             needs the IAM role to assume (EKS sets both from the ServiceAccount annotation \
             eks.amazonaws.com/role-arn)"
                .into(),
        );
    };
    let role_arn = role_arn.trim().to_string();
    if !is_role_arn(&role_arn) {
        return Err(format!(
            "AWS_ROLE_ARN='{}': expected an IAM role ARN, arn:<partition>:iam::<12-digit \
             account>:role/<name>",
            shorten(&role_arn)
        ));
    }
    let session_name = match env("AWS_ROLE_SESSION_NAME") {
        None => None,
        Some(s) => {
            let s = s.trim();
            if !is_session_name(s) {
                return Err(format!(
                    "AWS_ROLE_SESSION_NAME='{}': expected 2 to 64 characters of \
                     [A-Za-z0-9_+=,.@-] (STS RoleSessionName)",
                    shorten(s)
                ));
            }
            Some(s.to_string())
        }
    };
    let sts_url = match env("AWS_ENDPOINT_URL_STS") {
        None => default_sts_url(region),
        Some(u) => {
            let var = "AWS_ENDPOINT_URL_STS";
            let u = u.trim();
            let parsed = split_url(u).map_err(|e| format!("{var}='{}': {e}", shown_url(u)))?;
            if parsed.path.contains('?') {
                return Err(format!(
                    "{var}='{}': expected http(s)://host[:port][/path] without a query",
                    shown_url(u)
                ));
            }
            parsed.to_url()
        }
    };
    Ok(Source::WebIdentity {
        role_arn,
        session_name,
        sts_url,
    })
}

/// An IAM role ARN: `arn:<partition>:iam::<12 digits>:role/<path/><name>`, at most 2048
/// characters (STS `arnType`), the name 1–64 of `[A-Za-z0-9+=,.@_-]` and the path of the same
/// characters plus `/` (IAM `roleNameType`, `pathType`).
pub fn is_role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b);
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return false;
    };
    let name = path_and_name.rsplit('/').next().unwrap_or("");
    arn.len() <= 2048
        && partition.starts_with("aws")
        && partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=64).contains(&name.len())
        && path_and_name.bytes().all(|b| name_char(b) || b == b'/')
}

/// STS `roleSessionNameType`: 2–64 of `[\w+=,.@-]`.
fn is_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// The container `Authorization`: the token file (served by the launcher) wins over the
/// literal token, as in the SDKs.
fn container_auth(env: &impl Fn(&str) -> Option<String>) -> Result<ContainerAuth, String> {
    if env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").is_some() {
        return Ok(ContainerAuth::File);
    }
    let var = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
    let Some(token) = env(var) else {
        return Ok(ContainerAuth::None);
    };
    match header_token(token.as_bytes(), MAX_AUTH_TOKEN_BYTES) {
        Ok(t) => Ok(ContainerAuth::Token(t)),
        Err(e) => Err(format!("{var} {e}")),
    }
}

/// A token read from a variable or a file, for a header or a form field: surrounding ASCII
/// whitespace trimmed (a file usually ends with a newline), then non-empty, at most `max`
/// bytes, one line of printable ASCII. Errors never contain the token.
fn header_token(raw: &[u8], max: usize) -> Result<String, String> {
    let token = raw.trim_ascii();
    if token.is_empty() {
        return Err("is empty".into());
    }
    if token.len() > max {
        return Err(format!("is longer than {max} bytes"));
    }
    if !token
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(
            "must be one line of printable ASCII (it is sent as the Authorization header)".into(),
        );
    }
    Ok(String::from_utf8_lossy(token).into_owned())
}

/// Which Envoy cluster a call goes to; the host maps it to the configured cluster name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallTo {
    /// The source's endpoint: container endpoint or IMDS (`credentials_cluster`).
    Endpoint,
    /// The launcher's token-file server (`token_files_cluster`).
    TokenFiles,
    /// STS (`sts_cluster`).
    Sts,
}

/// One HTTP call the host must dispatch. The host sends it on the cluster `to` names with
/// `:method`, `:path`, `:authority`, `headers` and `body` (empty: none). `Debug` redacts
/// `authorization`, `x-aws-ec2-metadata-token` and the body (the STS form carries the web
/// identity token).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub to: CallTo,
    pub method: &'static str,
    pub scheme_https: bool,
    pub authority: String,
    /// Wire path, may carry a `?query`.
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

const SECRET_HEADERS: [&str; 2] = ["authorization", "x-aws-ec2-metadata-token"];

impl fmt::Debug for HttpCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                if SECRET_HEADERS.iter().any(|s| n.eq_ignore_ascii_case(s)) {
                    (n.as_str(), "** redacted **")
                } else {
                    (n.as_str(), v.as_str())
                }
            })
            .collect();
        f.debug_struct("HttpCall")
            .field("to", &self.to)
            .field("method", &self.method)
            .field("scheme_https", &self.scheme_https)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("headers", &headers)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// Credentials obtained by a fetch. `Debug` redacts the secrets (see [`Credentials`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub creds: Credentials,
    /// `Expiration` as Unix seconds; `None` when the endpoint gave none.
    pub expires_at: Option<u64>,
}

impl Fetched {
    /// True once `now` reaches the expiration (never for credentials without one).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }
}

/// What to do next in a [`Fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Dispatch this call and give its answer to [`Fetch::on_response`].
    Call(HttpCall),
    /// New credentials.
    Done(Fetched),
    /// The fetch failed; the message names the step and the status, never a secret.
    Failed(String),
}

/// One refresh in progress: a small state machine driven by the host.
pub struct Fetch {
    state: State,
}

enum State {
    /// Waiting for the launcher's token file; then `next` uses it.
    TokenFile {
        next: AfterToken,
    },
    /// Waiting for STS; `token` only to keep it out of an echoed error message.
    Sts {
        token: String,
    },
    Container {
        authority: String,
    },
    ImdsToken {
        base: Base,
    },
    ImdsRole {
        base: Base,
        token: String,
    },
    ImdsCreds,
    Finished,
}

/// What the token read from the launcher is for.
enum AfterToken {
    Sts {
        base: Base,
        role_arn: String,
        session_name: String,
    },
    Container {
        base: Base,
        path: String,
    },
}

impl AfterToken {
    fn variable(&self) -> &'static str {
        match self {
            AfterToken::Sts { .. } => "AWS_WEB_IDENTITY_TOKEN_FILE",
            AfterToken::Container { .. } => "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        }
    }
}

struct Base {
    https: bool,
    authority: String,
    /// Path prefix without trailing slash (usually empty).
    prefix: String,
}

impl fmt::Debug for Fetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match &self.state {
            State::TokenFile {
                next: AfterToken::Sts { .. },
            } => "web-identity-token-file",
            State::TokenFile {
                next: AfterToken::Container { .. },
            } => "container-token-file",
            State::Sts { .. } => "sts",
            State::Container { .. } => "container",
            State::ImdsToken { .. } => "imds-token",
            State::ImdsRole { .. } => "imds-role",
            State::ImdsCreds => "imds-credentials",
            State::Finished => "finished",
        };
        f.debug_struct("Fetch").field("stage", &stage).finish()
    }
}

fn call(
    to: CallTo,
    method: &'static str,
    base: &Base,
    path: String,
    headers: Vec<(String, String)>,
) -> Step {
    Step::Call(HttpCall {
        to,
        method,
        scheme_https: base.https,
        authority: base.authority.clone(),
        path,
        headers,
        body: Vec::new(),
    })
}

fn token_file_call(path: &str) -> Step {
    Step::Call(HttpCall {
        to: CallTo::TokenFiles,
        method: "GET",
        scheme_https: false,
        authority: TOKEN_FILES_AUTHORITY.to_string(),
        path: path.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    })
}

fn status_text(status: u16) -> String {
    if status == 0 {
        "no answer (timeout or connection failure)".to_string()
    } else {
        format!("HTTP {status}")
    }
}

/// `application/x-www-form-urlencoded` value: everything but `A-Za-z0-9-_.~` percent-encoded
/// (as botocore's query serializer does).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The STS `AssumeRoleWithWebIdentity` form body.
fn sts_form(role_arn: &str, session_name: &str, token: &str) -> Vec<u8> {
    format!(
        "Action={STS_ACTION}&Version={STS_VERSION}&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
        form_encode(role_arn),
        form_encode(session_name),
        form_encode(token)
    )
    .into_bytes()
}

impl Fetch {
    /// Starts a refresh at `now` (Unix seconds): the launcher's token file first (web identity,
    /// container with a token file), or the container GET, or the IMDS token PUT. `Static`
    /// fails at once.
    pub fn start(source: &Source, now: u64) -> (Fetch, Step) {
        let finished = |msg: &str| {
            (
                Fetch {
                    state: State::Finished,
                },
                Step::Failed(msg.to_string()),
            )
        };
        match source {
            Source::Static => finished("static credentials are not fetched"),
            Source::WebIdentity {
                role_arn,
                session_name,
                sts_url,
            } => {
                let Ok(u) = split_url(sts_url) else {
                    return finished("the STS endpoint URL is invalid");
                };
                let next = AfterToken::Sts {
                    base: Base {
                        https: u.https,
                        authority: u.authority,
                        prefix: u.path,
                    },
                    role_arn: role_arn.clone(),
                    session_name: session_name
                        .clone()
                        .unwrap_or_else(|| format!("{SESSION_NAME_PREFIX}-{now}")),
                };
                (
                    Fetch {
                        state: State::TokenFile { next },
                    },
                    token_file_call(WEB_IDENTITY_TOKEN_PATH),
                )
            }
            Source::Container { url, auth } => {
                let Ok(u) = split_url(url) else {
                    return finished("the container credentials URL is invalid");
                };
                let base = Base {
                    https: u.https,
                    authority: u.authority.clone(),
                    prefix: String::new(),
                };
                match auth {
                    ContainerAuth::File => (
                        Fetch {
                            state: State::TokenFile {
                                next: AfterToken::Container { base, path: u.path },
                            },
                        },
                        token_file_call(CONTAINER_TOKEN_PATH),
                    ),
                    ContainerAuth::None => Fetch::container(base, u.path, None),
                    ContainerAuth::Token(t) => Fetch::container(base, u.path, Some(t)),
                }
            }
            Source::Imds { base_url } => {
                let Ok(u) = split_url(base_url) else {
                    return finished("the IMDS endpoint URL is invalid");
                };
                let base = Base {
                    https: u.https,
                    authority: u.authority,
                    prefix: u.path.trim_end_matches('/').to_string(),
                };
                let step = call(
                    CallTo::Endpoint,
                    "PUT",
                    &base,
                    format!("{}{IMDS_TOKEN_PATH}", base.prefix),
                    vec![(
                        "x-aws-ec2-metadata-token-ttl-seconds".to_string(),
                        IMDS_TOKEN_TTL_SECS.to_string(),
                    )],
                );
                (
                    Fetch {
                        state: State::ImdsToken { base },
                    },
                    step,
                )
            }
        }
    }

    /// The container endpoint GET, with `Authorization: token` when there is one.
    fn container(base: Base, path: String, token: Option<&str>) -> (Fetch, Step) {
        let mut headers = vec![("accept".to_string(), "application/json".to_string())];
        if let Some(t) = token {
            headers.push(("authorization".to_string(), t.to_string()));
        }
        let step = call(CallTo::Endpoint, "GET", &base, path, headers);
        (
            Fetch {
                state: State::Container {
                    authority: base.authority,
                },
            },
            step,
        )
    }

    /// Feeds the answer to the last [`Step::Call`] (`status` 0 = no answer) and returns the
    /// next step. `now` (Unix seconds) rejects credentials that are already expired.
    pub fn on_response(&mut self, status: u16, body: &[u8], now: u64) -> Step {
        let state = std::mem::replace(&mut self.state, State::Finished);
        match state {
            State::Finished => Step::Failed("the credentials fetch is already finished".into()),
            State::TokenFile { next } => {
                let var = next.variable();
                let token = match token_file_answer(var, status, body) {
                    Ok(t) => t,
                    Err(e) => return Step::Failed(e),
                };
                match next {
                    AfterToken::Sts {
                        base,
                        role_arn,
                        session_name,
                    } => {
                        let step = Step::Call(HttpCall {
                            to: CallTo::Sts,
                            method: "POST",
                            scheme_https: base.https,
                            authority: base.authority,
                            path: base.prefix,
                            headers: vec![(
                                "content-type".to_string(),
                                "application/x-www-form-urlencoded; charset=utf-8".to_string(),
                            )],
                            body: sts_form(&role_arn, &session_name, &token),
                        });
                        self.state = State::Sts { token };
                        step
                    }
                    AfterToken::Container { base, path } => {
                        let (fetch, step) = Fetch::container(base, path, Some(&token));
                        *self = fetch;
                        step
                    }
                }
            }
            State::Sts { token } => {
                if status != 200 {
                    let cause = match parse_sts_error(body, &token) {
                        Some((code, message)) => {
                            if message.is_empty() {
                                format!(": {code}")
                            } else {
                                format!(": {code}: {message}")
                            }
                        }
                        None => String::new(),
                    };
                    return Step::Failed(format!(
                        "STS {STS_ACTION} answered {}{cause}",
                        status_text(status)
                    ));
                }
                finish(parse_sts_credentials(body), now, "STS")
            }
            State::Container { authority } => {
                if status != 200 {
                    return Step::Failed(format!(
                        "container credentials endpoint {authority} answered {}",
                        status_text(status)
                    ));
                }
                finish(
                    parse_credentials_json(body),
                    now,
                    "container credentials endpoint",
                )
            }
            State::ImdsToken { base } => {
                if status != 200 {
                    let hint = match status {
                        403 => ": IMDS is disabled on this instance, or the request came through a proxy",
                        404 | 405 => ": IMDSv2 is not available",
                        _ => "",
                    };
                    return Step::Failed(format!(
                        "IMDS: PUT {IMDS_TOKEN_PATH} answered {}{hint}",
                        status_text(status)
                    ));
                }
                let token = match body_line(body, MAX_IMDS_TOKEN_BYTES) {
                    Some(t) => t,
                    None => {
                        return Step::Failed(format!(
                            "IMDS: PUT {IMDS_TOKEN_PATH} returned an empty, oversized or \
                             non-printable token"
                        ))
                    }
                };
                let step = call(
                    CallTo::Endpoint,
                    "GET",
                    &base,
                    format!("{}{IMDS_CREDS_PATH}", base.prefix),
                    vec![("x-aws-ec2-metadata-token".to_string(), token.clone())],
                );
                self.state = State::ImdsRole { base, token };
                step
            }
            State::ImdsRole { base, token } => {
                if status != 200 {
                    let hint = match status {
                        404 => ": no IAM role is attached to this instance",
                        401 => ": the IMDS token was rejected",
                        _ => "",
                    };
                    return Step::Failed(format!(
                        "IMDS: GET {IMDS_CREDS_PATH} answered {}{hint}",
                        status_text(status)
                    ));
                }
                if body.len() > MAX_BODY_BYTES {
                    return Step::Failed("IMDS: the role list is too large".into());
                }
                let first = body
                    .split(|&b| b == b'\n')
                    .map(|l| l.trim_ascii())
                    .find(|l| !l.is_empty());
                let role = match first {
                    None => return Step::Failed(
                        "IMDS: the role list is empty: no IAM role is attached to this instance"
                            .into(),
                    ),
                    Some(r) if is_role_name(r) => String::from_utf8_lossy(r).into_owned(),
                    Some(_) => return Step::Failed("IMDS: the role name is not valid".into()),
                };
                let step = call(
                    CallTo::Endpoint,
                    "GET",
                    &base,
                    format!("{}{IMDS_CREDS_PATH}{role}", base.prefix),
                    vec![("x-aws-ec2-metadata-token".to_string(), token)],
                );
                self.state = State::ImdsCreds;
                step
            }
            State::ImdsCreds => {
                if status != 200 {
                    return Step::Failed(format!(
                        "IMDS: GET {IMDS_CREDS_PATH}<role> answered {}",
                        status_text(status)
                    ));
                }
                finish(parse_credentials_json(body), now, "IMDS")
            }
        }
    }

    /// True once the fetch answered `Done` or `Failed`.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }
}

/// The launcher's answer for a token file (docs/bedrock-contract.md#token-files): 200 and the
/// token; 404 when the launcher has no such variable; 503 with a text cause when it cannot read
/// the file. The cause is the launcher's own text (a path and an OS error, never file content);
/// it is still cut and reduced to printable ASCII.
fn token_file_answer(var: &str, status: u16, body: &[u8]) -> Result<String, String> {
    match status {
        200 => header_token(body, MAX_TOKEN_FILE_BYTES)
            .map_err(|e| format!("the token of {var} (served by the launcher) {e}")),
        0 => Err(format!(
            "the launcher's token-file server did not answer for {var} (is the sidecar started \
             by the launcher?)"
        )),
        404 => Err(format!(
            "the launcher does not serve {var} (404): the variable is not set in the \
             launcher's environment"
        )),
        _ => {
            let cause: String = body
                .iter()
                .take(200)
                .map(|&b| {
                    if (b' '..=b'~').contains(&b) {
                        char::from(b)
                    } else {
                        ' '
                    }
                })
                .collect();
            let cause = cause.trim();
            // 503 with the launcher's cause, or Envoy's own 503 when nothing listens.
            Err(format!(
                "the launcher's token-file server answered HTTP {status} for {var}{}{cause}",
                if cause.is_empty() { "" } else { ": " }
            ))
        }
    }
}

/// `message` with every occurrence of `secret` replaced (STS error messages do not echo the
/// token, but nothing relies on it).
fn redact(message: &str, secret: &str) -> String {
    if secret.len() >= 4 {
        message.replace(secret, "***")
    } else {
        message.to_string()
    }
}

fn finish(parsed: Result<Fetched, String>, now: u64, what: &str) -> Step {
    match parsed {
        Ok(f) if f.is_expired(now) => Step::Failed(format!(
            "{what}: the credentials expired at {} already (now {})",
            f.expires_at.map(format_rfc3339).unwrap_or_default(),
            format_rfc3339(now)
        )),
        Ok(f) => Step::Done(f),
        Err(e) => Step::Failed(format!("{what}: {e}")),
    }
}

/// The first line of `body`, trimmed: printable ASCII, non-empty, at most `max` bytes.
fn body_line(body: &[u8], max: usize) -> Option<String> {
    let line = body.trim_ascii();
    if line.is_empty() || line.len() > max || !line.iter().all(|b| (b'!'..=b'~').contains(b)) {
        return None;
    }
    String::from_utf8(line.to_vec()).ok()
}

/// IAM role names: 1–64 of `[A-Za-z0-9+=,.@_-]`.
fn is_role_name(r: &[u8]) -> bool {
    (1..=64).contains(&r.len())
        && r.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(b))
        && r != b"."
        && r != b".."
}

/// Checks a credential field: `None` when absent or (if not `required`) empty; otherwise at
/// most `max` bytes of printable ASCII without spaces. Errors name the field, never its value.
fn credential_field(
    name: &str,
    value: Option<&str>,
    max: usize,
    required: bool,
) -> Result<Option<String>, String> {
    match value {
        None if required => Err(format!("the credentials answer has no {name}")),
        None => Ok(None),
        Some("") if !required => Ok(None),
        Some("") => Err(format!("{name} is empty")),
        Some(s) if s.len() > max => Err(format!("{name} is longer than {max} bytes")),
        Some(s) if !s.bytes().all(|b| (b'!'..=b'~').contains(&b)) => {
            Err(format!("{name} is not printable ASCII without spaces"))
        }
        Some(s) => Ok(Some(s.to_string())),
    }
}

/// Builds [`Fetched`] from the four credential fields (JSON or STS XML names passed by the
/// caller as `token_name`), checked alike.
fn fetched_from(
    access_key_id: Option<&str>,
    secret_access_key: Option<&str>,
    (token_name, session_token): (&str, Option<&str>),
    expiration: Option<&str>,
) -> Result<Fetched, String> {
    let access_key_id =
        credential_field("AccessKeyId", access_key_id, MAX_KEY_BYTES, true)?.unwrap_or_default();
    if !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("AccessKeyId is not alphanumeric".into());
    }
    let secret_access_key =
        credential_field("SecretAccessKey", secret_access_key, MAX_KEY_BYTES, true)?
            .unwrap_or_default();
    let session_token =
        credential_field(token_name, session_token, MAX_SESSION_TOKEN_BYTES, false)?;
    let expires_at =
        match expiration {
            None => None,
            Some(s) => Some(parse_rfc3339(s).ok_or_else(|| {
                format!("Expiration '{}' is not an RFC 3339 timestamp", shorten(s))
            })?),
        };
    Ok(Fetched {
        creds: Credentials {
            access_key_id,
            secret_access_key,
            session_token,
        },
        expires_at,
    })
}

/// Parses the credentials JSON of the container endpoint and IMDS:
/// `AccessKeyId`, `SecretAccessKey`, optional `Token` and `Expiration` (RFC 3339), and, when
/// present, `Code` which must be `Success`. Errors name the field, never its value.
pub fn parse_credentials_json(body: &[u8]) -> Result<Fetched, String> {
    if body.len() > MAX_BODY_BYTES {
        return Err(format!(
            "the credentials answer is too large ({} bytes, at most {MAX_BODY_BYTES})",
            body.len()
        ));
    }
    // Parse to a Value first: serde_json's syntax errors carry positions only, never content.
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the credentials answer is not JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let obj = v
        .as_object()
        .ok_or("the credentials answer is not a JSON object")?;
    if let Some(code) = obj.get("Code") {
        if code.as_str() != Some("Success") {
            let shown = code
                .as_str()
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric()))
                .unwrap_or("(not shown)");
            return Err(format!(
                "the credentials answer has Code {shown}, not Success"
            ));
        }
    }
    let string = |name: &str| -> Result<Option<&str>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    fetched_from(
        string("AccessKeyId")?,
        string("SecretAccessKey")?,
        ("Token", string("Token")?),
        string("Expiration")?,
    )
}

// ---------------------------------------------------------------------------------------------
// STS answers (query protocol, XML; docs/bedrock-contract.md#web-identity)

const STS_RESULT: &str = "AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult";

/// Parses a successful `AssumeRoleWithWebIdentity` answer:
/// `AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials/`
/// `{AccessKeyId, SecretAccessKey, SessionToken, Expiration}` (all four required by the STS
/// model). Errors name the element, never its value.
pub fn parse_sts_credentials(body: &[u8]) -> Result<Fetched, String> {
    let leaves = xml_leaves(body).map_err(|e| format!("the STS answer is not valid XML: {e}"))?;
    let get = |name: &str| {
        let path = format!("{STS_RESULT}/Credentials/{name}");
        leaves
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, v)| v.trim())
    };
    if get("AccessKeyId").is_none() {
        return Err(format!(
            "the STS answer has no {STS_RESULT}/Credentials/AccessKeyId"
        ));
    }
    if get("SessionToken").is_none_or(str::is_empty) {
        return Err("the STS answer has no SessionToken".into());
    }
    let Some(expiration) = get("Expiration") else {
        return Err("the STS answer has no Expiration".into());
    };
    fetched_from(
        get("AccessKeyId"),
        get("SecretAccessKey"),
        ("SessionToken", get("SessionToken")),
        Some(expiration),
    )
}

/// The `Code` and `Message` of an STS error answer (`ErrorResponse/Error/{Code,Message}`), for a
/// log line: the code when it is a plain identifier (else `None`), the message with every
/// occurrence of `secret` (the web identity token sent) replaced by `***`, then reduced to
/// printable ASCII and cut to 300 characters. `None` when the body is not such an answer.
pub fn parse_sts_error(body: &[u8], secret: &str) -> Option<(String, String)> {
    let leaves = xml_leaves(body).ok()?;
    let get = |name: &str| {
        let path = format!("ErrorResponse/Error/{name}");
        leaves
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, v)| v.trim().to_string())
    };
    let code = get("Code").filter(|c| {
        (1..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
    })?;
    let message: String = redact(&get("Message").unwrap_or_default(), secret)
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { ' ' })
        .take(300)
        .collect();
    Some((code, message.trim().to_string()))
}

/// Most elements (open tags) an XML answer may have.
const MAX_XML_ELEMENTS: usize = 512;
/// Deepest element nesting accepted.
const MAX_XML_DEPTH: usize = 16;

/// A small, bounded XML reader for AWS query-protocol answers: the text of every element that
/// has no child element, with its path of local names (namespace prefixes dropped) joined by
/// `/`. Handles the XML declaration and processing instructions, comments, attributes (skipped),
/// self-closing tags, CDATA sections and the five predefined entities plus numeric character
/// references. Refuses DOCTYPE (no entity expansion), mismatched or unclosed tags, more than
/// [`MAX_XML_DEPTH`] levels, more than [`MAX_XML_ELEMENTS`] elements and bodies over
/// [`MAX_BODY_BYTES`]. Errors never contain document text.
pub fn xml_leaves(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    if body.len() > MAX_BODY_BYTES {
        return Err(format!("more than {MAX_BODY_BYTES} bytes"));
    }
    let doc = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_string())?;
    let mut stack: Vec<(&str, String, bool)> = Vec::new(); // (local name, text, has children)
    let mut leaves = Vec::new();
    let mut elements = 0usize;
    let mut seen_root = false;
    let mut rest = doc;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            let text = decode_entities(rest)?;
            push_text(&mut stack, &text)?;
            break;
        };
        let (text, tag) = rest.split_at(lt);
        if !text.is_empty() {
            let text = decode_entities(text)?;
            push_text(&mut stack, &text)?;
        }
        if let Some(after) = tag.strip_prefix("<?") {
            let end = after
                .find("?>")
                .ok_or("unterminated processing instruction")?;
            rest = &after[end + 2..];
        } else if let Some(after) = tag.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            rest = &after[end + 3..];
        } else if let Some(after) = tag.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").ok_or("unterminated CDATA section")?;
            push_text(&mut stack, &after[..end])?;
            rest = &after[end + 3..];
        } else if tag.starts_with("<!") {
            return Err("DOCTYPE and other declarations are not accepted".into());
        } else if let Some(after) = tag.strip_prefix("</") {
            let end = after.find('>').ok_or("unterminated end tag")?;
            let name = local_name(after[..end].trim_end())?;
            let (open, text, has_children) = stack.pop().ok_or("end tag without a start tag")?;
            if open != name {
                return Err("mismatched end tag".into());
            }
            if !has_children {
                leaves.push((path_of(&stack, name), text));
            }
            rest = &after[end + 1..];
        } else {
            let after = &tag[1..];
            let end = tag_end(after).ok_or("unterminated start tag")?;
            let inner = &after[..end];
            let self_closing = inner.ends_with('/');
            let inner = inner.strip_suffix('/').unwrap_or(inner);
            let name_end = inner
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(inner.len());
            let name = local_name(&inner[..name_end])?;
            if stack.is_empty() && seen_root {
                return Err("more than one root element".into());
            }
            seen_root = true;
            elements += 1;
            if elements > MAX_XML_ELEMENTS {
                return Err(format!("more than {MAX_XML_ELEMENTS} elements"));
            }
            if let Some(parent) = stack.last_mut() {
                parent.2 = true;
            }
            if self_closing {
                leaves.push((path_of(&stack, name), String::new()));
            } else {
                if stack.len() >= MAX_XML_DEPTH {
                    return Err(format!("nested deeper than {MAX_XML_DEPTH} elements"));
                }
                stack.push((name, String::new(), false));
            }
            rest = &after[end + 1..];
        }
    }
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    if !seen_root {
        return Err("no element".into());
    }
    Ok(leaves)
}

/// Appends text to the open element; outside the root only whitespace is allowed.
fn push_text(stack: &mut [(&str, String, bool)], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(top) => {
            top.1.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".into()),
    }
}

/// The `>` ending a start tag, skipping quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

/// A tag's local name (after any `prefix:`): a non-empty XML name.
fn local_name(qualified: &str) -> Result<&str, String> {
    let local = qualified.rsplit(':').next().unwrap_or("");
    let valid = !local.is_empty()
        && local.len() <= 128
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(local)
    } else {
        Err("invalid element name".into())
    }
}

fn path_of(stack: &[(&str, String, bool)], name: &str) -> String {
    let mut path = String::new();
    for (n, _, _) in stack {
        path.push_str(n);
        path.push('/');
    }
    path.push_str(name);
    path
}

/// Decodes `&amp; &lt; &gt; &quot; &apos;` and `&#N;` / `&#xH;` (a valid, non-NUL character).
fn decode_entities(s: &str) -> Result<String, String> {
    if !s.contains('&') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .bytes()
            .take(12)
            .position(|b| b == b';')
            .ok_or("unterminated entity reference")?;
        let name = &after[..semi];
        let c = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    None
                };
                code.filter(|&n| n != 0)
                    .and_then(char::from_u32)
                    .ok_or("unknown entity reference")?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// When to refresh credentials fetched at `fetched_at` (Unix seconds): 5 minutes before
/// expiry, or at 80 % of the lifetime when that is earlier (short-lived credentials), never
/// earlier than 1 s after the fetch; one hour after the fetch when there is no expiration.
///
/// (A 60 s floor would refresh credentials living under 75 s only after they expired; the
/// endpoints issue at least 15 minutes, so in practice the first refresh comes ≥ 12 min after
/// a fetch.)
pub fn refresh_at(fetched_at: u64, expires_at: Option<u64>) -> u64 {
    let Some(expires_at) = expires_at else {
        return fetched_at.saturating_add(DEFAULT_REFRESH_SECS);
    };
    let lifetime = expires_at.saturating_sub(fetched_at);
    // A fifth of the lifetime, rounded up, so that even 2 s credentials refresh before expiry.
    let margin = lifetime.div_ceil(5).min(300);
    expires_at
        .saturating_sub(margin)
        .max(fetched_at.saturating_add(1))
}

/// When to retry after `failures` failed refreshes in a row: 5, 10, 20, 40, then 60 s.
pub fn retry_at(now: u64, failures: u32) -> u64 {
    let delay = match failures {
        0 | 1 => 5,
        2 => 10,
        3 => 20,
        4 => 40,
        _ => 60,
    };
    now.saturating_add(delay)
}

/// Shared-data record (proxy-wasm shared memory only; never logged).
#[derive(Serialize, Deserialize)]
struct SharedRecord {
    v: u32,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    expires_at: Option<u64>,
}

const SHARED_VERSION: u32 = 1;

/// JSON for proxy-wasm shared data:
/// `{"v":1,"access_key_id":…,"secret_access_key":…,"session_token":…|null,"expires_at":…|null}`.
pub fn serialize_shared(f: &Fetched) -> Vec<u8> {
    let record = SharedRecord {
        v: SHARED_VERSION,
        access_key_id: f.creds.access_key_id.clone(),
        secret_access_key: f.creds.secret_access_key.clone(),
        session_token: f.creds.session_token.clone(),
        expires_at: f.expires_at,
    };
    serde_json::to_vec(&record).unwrap_or_default()
}

/// Reads a [`serialize_shared`] record; `None` when absent, of another version or invalid.
pub fn deserialize_shared(b: &[u8]) -> Option<Fetched> {
    if b.is_empty() || b.len() > MAX_BODY_BYTES {
        return None;
    }
    let r: SharedRecord = serde_json::from_slice(b).ok()?;
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|c| (b'!'..=b'~').contains(&c));
    if r.v != SHARED_VERSION
        || !printable(&r.access_key_id)
        || !printable(&r.secret_access_key)
        || r.session_token.as_deref().is_some_and(|t| !printable(t))
    {
        return None;
    }
    Some(Fetched {
        creds: Credentials {
            access_key_id: r.access_key_id,
            secret_access_key: r.secret_access_key,
            session_token: r.session_token,
        },
        expires_at: r.expires_at,
    })
}

// ---------------------------------------------------------------------------------------------
// RFC 3339

/// Parses an RFC 3339 date-time (`2026-11-27T13:00:00Z`, `…T13:00:00.123456Z`,
/// `…T15:00:00+02:00`; `t`/`z` and a space separator accepted) into Unix seconds, fractional
/// seconds dropped. `None` for anything else or a time before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 64 {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && sep(i + 3, b":") => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let t =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(t).ok()
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (for logs).
pub fn format_rfc3339(t: u64) -> String {
    let t = i64::try_from(t).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// ---------------------------------------------------------------------------------------------
// URLs

struct Url {
    https: bool,
    /// `host[:port]` as sent in `:authority` (host lower-cased).
    authority: String,
    /// Host without port or brackets, lower-case.
    host: String,
    /// `/…[?query]`, at least `/`; fragment dropped.
    path: String,
}

impl Url {
    fn to_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

/// Visible ASCII without `#`: a wire path (and query).
fn is_path(p: &str) -> bool {
    p.len() <= 2048 && p.bytes().all(|b| (b'!'..=b'~').contains(&b) && b != b'#')
}

/// Splits an absolute `http(s)://host[:port][/path][?query][#fragment]` URL.
fn split_url(url: &str) -> Result<Url, String> {
    let lower_prefix = |p: &str| {
        url.get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
            .then(|| url.get(p.len()..).unwrap_or(""))
    };
    let (https, rest) = match (lower_prefix("https://"), lower_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err("expected an http:// or https:// URL".into()),
    };
    let rest = rest.split('#').next().unwrap_or("");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    if authority.contains('@') {
        return Err("user information in the URL is not supported".into());
    }
    let (host, port) = if let Some(after) = authority.strip_prefix('[') {
        let (inside, tail) = after.split_once(']').ok_or("unclosed '[' in the host")?;
        inside
            .parse::<Ipv6Addr>()
            .map_err(|_| "the bracketed host is not an IPv6 address")?;
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':').ok_or("unexpected text after ']'")?),
        };
        (inside, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
    {
        return Err("the host is not a valid host name or address".into());
    }
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the port is not a number".into());
        }
        if !p.parse::<u32>().is_ok_and(|n| (1..=65_535).contains(&n)) {
            return Err("the port is out of range".into());
        }
    }
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if !is_path(&path) {
        return Err("the path is not percent-encoded visible ASCII".into());
    }
    Ok(Url {
        https,
        authority: authority.to_ascii_lowercase(),
        host: host.to_ascii_lowercase(),
        path,
    })
}

/// The AWS SDK rule for plain-http container endpoints.
fn allowed_container_http_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return ip.is_loopback()
            || ip == Ipv4Addr::new(169, 254, 170, 2)
            || ip == Ipv4Addr::new(169, 254, 170, 23);
    }
    if let Ok(ip) = host.parse::<Ipv6Addr>() {
        return ip.is_loopback() || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23);
    }
    false
}

/// A URL for an error message: user information and query replaced by `***` (they may hold
/// credentials), then [`shorten`]ed.
fn shown_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(q) = out.find('?') {
        out.truncate(q);
        out.push_str("?***");
    }
    if let Some(at) = out.find('@') {
        let start = out.find("://").map_or(0, |i| i + 3);
        if start <= at {
            out.replace_range(start..at, "***");
        }
    }
    shorten(&out)
}

/// A value for an error message: escaped and cut to 200 characters.
fn shorten(s: &str) -> String {
    let escaped: String = s.escape_default().collect();
    match escaped.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", escaped.get(..i).unwrap_or("")),
        None => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn src(vars: &[(&str, &str)]) -> Result<Option<Source>, String> {
        source_from_env(env_of(vars), "us-east-1")
    }

    const NOW: u64 = 1_790_000_000; // 2026-09-21T...
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzSECRETzz";
    const SESSION: &str = "IQoJb3JpZ2luX2VjEPz//////////SESSIONTOKEN==";
    const AUTH: &str = "eyJhbGciOiJSUzI1NiJ9.AUTHTOKEN.sig";
    const IMDS_TOKEN: &str = "AQAEAIMDSTOKENxyz==";

    fn creds_json(expiration: &str) -> String {
        format!(
            r#"{{"Code":"Success","LastUpdated":"2026-09-21T10:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAEMU000001","SecretAccessKey":"{SECRET}","Token":"{SESSION}","Expiration":"{expiration}"}}"#
        )
    }

    fn later() -> String {
        format_rfc3339(NOW + 900)
    }

    fn no_secret(s: &str) {
        for secret in [SECRET, SESSION, AUTH, IMDS_TOKEN] {
            assert!(!s.contains(secret), "secret leaked in {s:?}");
        }
    }

    // ----- environment chain -----

    #[test]
    fn static_keys_come_first() {
        let all = [
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "S"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/creds"),
        ];
        assert_eq!(src(&all), Ok(Some(Source::Static)));
        assert!(src(&[("AWS_ACCESS_KEY_ID", "A")])
            .unwrap_err()
            .contains("AWS_SECRET_ACCESS_KEY"));
        assert!(src(&[("AWS_SECRET_ACCESS_KEY", "S")])
            .unwrap_err()
            .contains("AWS_ACCESS_KEY_ID"));
        // Empty values count as unset.
        assert_eq!(
            src(&[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")]),
            Ok(Some(Source::Imds {
                base_url: IMDS_ENDPOINT_IPV4.into()
            }))
        );
    }

    #[test]
    fn container_relative_wins_over_full() {
        let s = src(&[
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/abc?x=1",
            ),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1:9/creds",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            s,
            Source::Container {
                url: "http://169.254.170.2/v2/credentials/abc?x=1".into(),
                auth: ContainerAuth::None
            }
        );
        assert_eq!(s.endpoint(), Some((false, "169.254.170.2".into())));
        assert_eq!(s.kind(), "container");
        assert!(
            src(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "v2/creds")])
                .unwrap_err()
                .contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        );
        assert!(src(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/a b")]).is_err());
    }

    #[test]
    fn container_full_uri_follows_the_sdk_host_rule() {
        let ok = |u: &str| match src(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", u)]) {
            Ok(Some(Source::Container { url, .. })) => url,
            other => panic!("{u}: {other:?}"),
        };
        assert_eq!(
            ok("http://127.0.0.1:8080/creds"),
            "http://127.0.0.1:8080/creds"
        );
        assert_eq!(ok("http://127.1.2.3/c"), "http://127.1.2.3/c");
        assert_eq!(ok("http://localhost:51679"), "http://localhost:51679/");
        assert_eq!(ok("http://[::1]:80/x"), "http://[::1]:80/x");
        assert_eq!(
            ok("http://169.254.170.23/v1/credentials"),
            "http://169.254.170.23/v1/credentials"
        );
        assert_eq!(ok("http://169.254.170.2/get"), "http://169.254.170.2/get");
        assert_eq!(
            ok("http://[fd00:ec2::23]/v1/credentials"),
            "http://[fd00:ec2::23]/v1/credentials"
        );
        assert_eq!(
            ok("http://[FD00:0EC2:0:0:0:0:0:23]/v1"),
            "http://[fd00:0ec2:0:0:0:0:0:23]/v1"
        );
        assert_eq!(
            ok("https://creds.example.com/x?y=1#frag"),
            "https://creds.example.com/x?y=1"
        );
        assert_eq!(
            ok("HTTPS://Creds.Example.com"),
            "https://creds.example.com/"
        );
        let err = |u: &str| {
            let e = src(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", u)]).unwrap_err();
            assert!(e.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"), "{e}");
            e
        };
        assert!(err("http://creds.example.com/x").contains("loopback"));
        assert!(err("http://169.254.169.254/x").contains("loopback"));
        assert!(err("http://10.0.0.1/x").contains("loopback"));
        assert!(err("http://[fd00:ec2::24]/x").contains("loopback"));
        err("/creds");
        err("ftp://127.0.0.1/");
        assert!(!err("http://user:pw@127.0.0.1/").contains("pw"));
        assert!(!err("http://creds.example.com/c?sig=SECRETSIG").contains("SECRETSIG"));
        assert!(
            !src(&[("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "x?k=SECRETSIG")])
                .unwrap_err()
                .contains("SECRETSIG")
        );
        err("http://127.0.0.1:0/");
        err("http://127.0.0.1:99999/");
        err("http://127.0.0.1:abc/");
        err("http://[::1/");
        err("http://[nope]/");
        err("http:///x");
        err("http://bad host/");
        err("http://127.0.0.1/a\u{7f}b");
    }

    #[test]
    fn container_authorization_token_and_file() {
        let base = (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/v1/credentials",
        );
        let auth = |vars: &[(&str, &str)]| match src(vars) {
            Ok(Some(Source::Container { auth, .. })) => Ok(auth),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(auth(&[base]), Ok(ContainerAuth::None));
        assert_eq!(
            auth(&[base, ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH)]),
            Ok(ContainerAuth::Token(AUTH.into()))
        );
        // The file wins (read by the launcher at every fetch).
        let s = src(&[
            base,
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "literal"),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
            ),
        ])
        .unwrap()
        .unwrap();
        assert!(matches!(
            s,
            Source::Container {
                auth: ContainerAuth::File,
                ..
            }
        ));
        assert!(s.reads_token_file());
        assert!(format!("{s:?}").contains("token file"));
        // Header injection is refused and the token is not echoed.
        let bad = format!("{AUTH}\r\nx-evil: 1");
        let e = auth(&[base, ("AWS_CONTAINER_AUTHORIZATION_TOKEN", &bad)]).unwrap_err();
        assert!(e.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
        no_secret(&e);
        let huge = "a".repeat(MAX_AUTH_TOKEN_BYTES + 1);
        assert!(auth(&[base, ("AWS_CONTAINER_AUTHORIZATION_TOKEN", &huge)]).is_err());
        // Debug of the source redacts the token.
        let s = src(&[base, ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH)])
            .unwrap()
            .unwrap();
        no_secret(&format!("{s:?}"));
        assert!(format!("{s:?}").contains("redacted"));
        assert!(!s.reads_token_file());
    }

    const ROLE: &str = "arn:aws:iam::123456789012:role/duo-bedrock";
    const WEB_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.WEBIDENTITY+/=.sig";

    fn irsa(extra: &[(&str, &str)]) -> Result<Option<Source>, String> {
        let mut vars = vec![
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            ),
            ("AWS_ROLE_ARN", ROLE),
        ];
        for (k, v) in extra {
            vars.retain(|(key, _)| key != k);
            vars.push((k, v));
        }
        src(&vars)
    }

    #[test]
    fn web_identity_comes_after_static_keys_and_before_the_container() {
        let s = irsa(&[]).unwrap().unwrap();
        assert_eq!(
            s,
            Source::WebIdentity {
                role_arn: ROLE.into(),
                session_name: None,
                sts_url: "https://sts.us-east-1.amazonaws.com/".into(),
            }
        );
        assert_eq!(s.kind(), "web_identity");
        assert_eq!(
            s.endpoint(),
            Some((true, "sts.us-east-1.amazonaws.com".into()))
        );
        assert!(s.reads_token_file());
        // Static keys first; web identity before the container endpoint and IMDS.
        assert_eq!(
            irsa(&[("AWS_ACCESS_KEY_ID", "A"), ("AWS_SECRET_ACCESS_KEY", "S")]),
            Ok(Some(Source::Static))
        );
        assert!(matches!(
            irsa(&[(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials"
            )]),
            Ok(Some(Source::WebIdentity { .. }))
        ));
        // AWS_ROLE_ARN alone is not a web identity configuration.
        assert!(matches!(
            src(&[("AWS_ROLE_ARN", ROLE)]),
            Ok(Some(Source::Imds { .. }))
        ));
        assert_eq!(
            default_sts_url("cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
        let s = source_from_env(
            env_of(&[
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
                ("AWS_ROLE_ARN", "arn:aws-cn:iam::123456789012:role/r"),
                ("AWS_ROLE_SESSION_NAME", "gitlab-duo@host.1"),
                ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9000"),
            ]),
            "cn-north-1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            s,
            Source::WebIdentity {
                role_arn: "arn:aws-cn:iam::123456789012:role/r".into(),
                session_name: Some("gitlab-duo@host.1".into()),
                sts_url: "http://127.0.0.1:9000/".into(),
            }
        );
    }

    #[test]
    fn web_identity_configuration_errors_name_the_variable() {
        let err = |extra: &[(&str, &str)], var: &str| {
            let e = irsa(extra).unwrap_err();
            assert!(e.contains(var), "{e}");
            e
        };
        let e = src(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")]).unwrap_err();
        assert!(e.contains("AWS_ROLE_ARN") && e.contains("AWS_WEB_IDENTITY_TOKEN_FILE"));
        for bad in [
            "duo-bedrock",
            "arn:aws:iam::123456789012:user/duo",
            "arn:aws:iam::12345678901:role/duo",
            "arn:aws:iam:us-east-1:123456789012:role/duo",
            "arn:aws:sts::123456789012:role/duo",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a b",
            "arn:evil:iam::123456789012:role/duo",
            "arn:aws:iam::123456789012:role/\u{e9}",
        ] {
            err(&[("AWS_ROLE_ARN", bad)], "AWS_ROLE_ARN");
        }
        assert!(is_role_arn(
            "arn:aws-us-gov:iam::123456789012:role/path/to/my+role=,.@_-"
        ));
        assert!(!is_role_arn(&format!(
            "arn:aws:iam::123456789012:role/{}",
            "r".repeat(65)
        )));
        for bad in ["a", "has space", "slash/no", &"s".repeat(65)] {
            err(&[("AWS_ROLE_SESSION_NAME", bad)], "AWS_ROLE_SESSION_NAME");
        }
        err(
            &[("AWS_ENDPOINT_URL_STS", "sts.amazonaws.com")],
            "AWS_ENDPOINT_URL_STS",
        );
        err(
            &[("AWS_ENDPOINT_URL_STS", "https://sts/?x=1")],
            "AWS_ENDPOINT_URL_STS",
        );
    }

    #[test]
    fn imds_is_the_last_resort_unless_disabled() {
        assert_eq!(
            src(&[]),
            Ok(Some(Source::Imds {
                base_url: "http://169.254.169.254".into()
            }))
        );
        assert_eq!(src(&[("AWS_EC2_METADATA_DISABLED", "true")]), Ok(None));
        assert_eq!(src(&[("AWS_EC2_METADATA_DISABLED", "TRUE")]), Ok(None));
        assert!(matches!(
            src(&[("AWS_EC2_METADATA_DISABLED", "false")]),
            Ok(Some(Source::Imds { .. }))
        ));
        // The container endpoint comes before IMDS, even when IMDS is disabled.
        assert!(matches!(
            src(&[
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/c")
            ]),
            Ok(Some(Source::Container { .. }))
        ));
        assert_eq!(
            src(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")]),
            Ok(Some(Source::Imds {
                base_url: "http://[fd00:ec2::254]".into()
            }))
        );
        assert!(src(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv5")])
            .unwrap_err()
            .contains("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"));
        let s = src(&[
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                "http://127.0.0.1:1338/",
            ),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            s,
            Source::Imds {
                base_url: "http://127.0.0.1:1338".into()
            }
        );
        assert_eq!(s.endpoint(), Some((false, "127.0.0.1:1338".into())));
        assert_eq!(s.kind(), "imds");
        assert!(
            src(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "169.254.169.254")])
                .unwrap_err()
                .contains("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        );
        assert!(src(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://h/?q")]).is_err());
        assert_eq!(Source::Static.endpoint(), None);
    }

    // ----- container fetch -----

    #[test]
    fn container_fetch_with_and_without_token() {
        for token in [None, Some(AUTH.to_string())] {
            let source = Source::Container {
                url: "http://127.0.0.1:8080/_creds/container?x=1".into(),
                auth: token
                    .clone()
                    .map_or(ContainerAuth::None, ContainerAuth::Token),
            };
            let (mut f, step) = Fetch::start(&source, NOW);
            let Step::Call(c) = step else {
                panic!("{step:?}")
            };
            assert_eq!(c.method, "GET");
            assert!(!c.scheme_https);
            assert_eq!(c.authority, "127.0.0.1:8080");
            assert_eq!(c.path, "/_creds/container?x=1");
            let auth = c.headers.iter().find(|(n, _)| n == "authorization");
            assert_eq!(auth.map(|(_, v)| v.clone()), token);
            no_secret(&format!("{c:?} {f:?}"));
            let step = f.on_response(200, creds_json(&later()).as_bytes(), NOW);
            let Step::Done(got) = step else {
                panic!("{step:?}")
            };
            assert_eq!(got.creds.access_key_id, "ASIAEMU000001");
            assert_eq!(got.creds.secret_access_key, SECRET);
            assert_eq!(got.creds.session_token.as_deref(), Some(SESSION));
            assert_eq!(got.expires_at, Some(NOW + 900));
            assert!(f.is_finished());
            no_secret(&format!("{got:?}"));
            assert!(matches!(f.on_response(200, b"{}", NOW), Step::Failed(_)));
        }
    }

    #[test]
    fn container_fetch_failures() {
        let source = Source::Container {
            url: "https://creds.example.com/c".into(),
            auth: ContainerAuth::Token(AUTH.into()),
        };
        let run = |status: u16, body: &[u8]| {
            let (mut f, step) = Fetch::start(&source, NOW);
            assert!(matches!(step, Step::Call(ref c) if c.scheme_https));
            match f.on_response(status, body, NOW) {
                Step::Failed(e) => {
                    no_secret(&e);
                    e
                }
                other => panic!("{status}: {other:?}"),
            }
        };
        let good = creds_json(&later());
        assert!(run(401, good.as_bytes()).contains("HTTP 401"));
        assert!(run(404, b"").contains("HTTP 404"));
        assert!(run(500, good.as_bytes()).contains("HTTP 500"));
        assert!(run(0, b"").contains("no answer"));
        assert!(run(200, b"<html>").contains("not JSON"));
        assert!(run(200, b"[]").contains("not a JSON object"));
        assert!(run(200, b"").contains("not JSON"));
        assert!(run(200, br#"{"SecretAccessKey":"x"}"#).contains("AccessKeyId"));
        assert!(run(200, br#"{"AccessKeyId":"A"}"#).contains("SecretAccessKey"));
        // Expired already.
        let expired = creds_json(&format_rfc3339(NOW - 1));
        assert!(run(200, expired.as_bytes()).contains("expired"));
        let at_now = creds_json(&format_rfc3339(NOW));
        assert!(run(200, at_now.as_bytes()).contains("expired"));
        assert!(matches!(
            Fetch::start(&Source::Static, NOW).1,
            Step::Failed(_)
        ));
    }

    // ----- IMDS fetch -----

    fn imds_start() -> (Fetch, HttpCall) {
        let (f, step) = Fetch::start(
            &Source::Imds {
                base_url: "http://127.0.0.1:1338".into(),
            },
            NOW,
        );
        let Step::Call(c) = step else {
            panic!("{step:?}")
        };
        (f, c)
    }

    fn header<'c>(c: &'c HttpCall, name: &str) -> Option<&'c str> {
        c.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn imds_token_role_credentials() {
        let (mut f, c) = imds_start();
        assert_eq!(c.method, "PUT");
        assert_eq!(c.authority, "127.0.0.1:1338");
        assert_eq!(c.path, "/latest/api/token");
        assert_eq!(
            header(&c, "x-aws-ec2-metadata-token-ttl-seconds"),
            Some("21600")
        );
        let Step::Call(c) = f.on_response(200, format!("{IMDS_TOKEN}\n").as_bytes(), NOW) else {
            panic!()
        };
        assert_eq!(c.method, "GET");
        assert_eq!(c.path, "/latest/meta-data/iam/security-credentials/");
        assert_eq!(header(&c, "x-aws-ec2-metadata-token"), Some(IMDS_TOKEN));
        no_secret(&format!("{c:?} {f:?}"));
        let Step::Call(c) = f.on_response(200, b"emulator-role\nsecond-role\n", NOW) else {
            panic!()
        };
        assert_eq!(
            c.path,
            "/latest/meta-data/iam/security-credentials/emulator-role"
        );
        assert_eq!(header(&c, "x-aws-ec2-metadata-token"), Some(IMDS_TOKEN));
        let Step::Done(got) = f.on_response(200, creds_json(&later()).as_bytes(), NOW) else {
            panic!()
        };
        assert_eq!(got.creds.access_key_id, "ASIAEMU000001");
        assert_eq!(got.expires_at, Some(NOW + 900));
        assert!(f.is_finished());
    }

    #[test]
    fn imds_path_prefix_and_ipv6() {
        let (mut f, step) = Fetch::start(
            &Source::Imds {
                base_url: "http://[fd00:ec2::254]/prefix".into(),
            },
            NOW,
        );
        let Step::Call(c) = step else { panic!() };
        assert_eq!(c.authority, "[fd00:ec2::254]");
        assert_eq!(c.path, "/prefix/latest/api/token");
        let Step::Call(c) = f.on_response(200, b"t", NOW) else {
            panic!()
        };
        assert_eq!(c.path, "/prefix/latest/meta-data/iam/security-credentials/");
    }

    #[test]
    fn imds_failures_at_each_step() {
        // Token step.
        for (status, body, want) in [
            (401, &b"tok"[..], "HTTP 401"),
            (403, b"tok", "disabled"),
            (404, b"tok", "IMDSv2"),
            (405, b"", "IMDSv2"),
            (500, b"tok", "HTTP 500"),
            (0, b"", "no answer"),
            (200, b"", "empty"),
            (200, b"  \n", "empty"),
            (200, b"two words", "non-printable"),
            (200, b"\xff\xfe", "non-printable"),
        ] {
            let (mut f, _) = imds_start();
            match f.on_response(status, body, NOW) {
                Step::Failed(e) => assert!(e.contains(want), "{status}: {e}"),
                other => panic!("{status}: {other:?}"),
            }
            assert!(f.is_finished());
        }
        let long = vec![b'a'; MAX_IMDS_TOKEN_BYTES + 1];
        let (mut f, _) = imds_start();
        assert!(matches!(f.on_response(200, &long, NOW), Step::Failed(_)));

        // Role step.
        let at_role = || {
            let (mut f, _) = imds_start();
            assert!(matches!(
                f.on_response(200, IMDS_TOKEN.as_bytes(), NOW),
                Step::Call(_)
            ));
            f
        };
        for (status, body, want) in [
            (401, &b"role"[..], "rejected"),
            (404, b"", "no IAM role"),
            (500, b"role", "HTTP 500"),
            (200, b"", "empty"),
            (200, b"\n \n", "empty"),
            (200, b"../../evil", "not valid"),
            (200, b"role/with/slash", "not valid"),
            (200, b"..", "not valid"),
            (200, b"\xff", "not valid"),
        ] {
            let mut f = at_role();
            match f.on_response(status, body, NOW) {
                Step::Failed(e) => {
                    assert!(e.contains(want), "{status}: {e}");
                    no_secret(&e);
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        let mut f = at_role();
        let long_role = "r".repeat(65);
        assert!(matches!(
            f.on_response(200, long_role.as_bytes(), NOW),
            Step::Failed(_)
        ));
        let mut f = at_role();
        let big = vec![b'r'; MAX_BODY_BYTES + 1];
        assert!(matches!(f.on_response(200, &big, NOW), Step::Failed(_)));

        // Credentials step.
        let at_creds = || {
            let mut f = at_role();
            assert!(matches!(f.on_response(200, b"role", NOW), Step::Call(_)));
            f
        };
        let good = creds_json(&later());
        for (status, body, want) in [
            (401, good.as_bytes(), "HTTP 401"),
            (404, b"".as_slice(), "HTTP 404"),
            (500, good.as_bytes(), "HTTP 500"),
            (200, b"garbage".as_slice(), "not JSON"),
            (
                200,
                br#"{"Code":"Failure","Message":"x"}"#.as_slice(),
                "Code Failure",
            ),
            (
                200,
                br#"{"Code":"AssumeRoleUnauthorizedAccess"}"#.as_slice(),
                "Code",
            ),
            (200, br#"{"Code":"Success"}"#.as_slice(), "AccessKeyId"),
        ] {
            let mut f = at_creds();
            match f.on_response(status, body, NOW) {
                Step::Failed(e) => {
                    assert!(e.contains(want), "{status}: {e}");
                    assert!(e.starts_with("IMDS"), "{e}");
                    no_secret(&e);
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        let mut f = at_creds();
        let expired = creds_json(&format_rfc3339(NOW - 10));
        assert!(
            matches!(f.on_response(200, expired.as_bytes(), NOW), Step::Failed(e) if e.contains("expired"))
        );
    }

    // ----- web identity (IRSA) fetch -----

    fn sts_xml(expiration: &str) -> String {
        format!(
            r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:gitlab:duo-bedrock</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/duo-bedrock/duo-bedrock-1</Arn>
      <AssumedRoleId>AROACLKWSDQRAOEXAMPLE:duo-bedrock-1</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{SESSION}</SessionToken>
      <SecretAccessKey>{SECRET}</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>ASIAEMU000009</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/X</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"#
        )
    }

    fn sts_error(code: &str, message: &str) -> String {
        format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>{code}</Code>
    <Message>{message}</Message>
  </Error>
  <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
</ErrorResponse>"#
        )
    }

    fn web_identity_source() -> Source {
        Source::WebIdentity {
            role_arn: ROLE.into(),
            session_name: None,
            sts_url: "http://127.0.0.1:9000/".into(),
        }
    }

    /// Starts a web identity fetch and answers the token-file call with `token`.
    fn at_sts(token: &str) -> (Fetch, HttpCall) {
        let (mut f, step) = Fetch::start(&web_identity_source(), NOW);
        let Step::Call(c) = step else {
            panic!("{step:?}")
        };
        assert_eq!(
            (c.to, c.method, c.path.as_str(), c.authority.as_str()),
            (
                CallTo::TokenFiles,
                "GET",
                WEB_IDENTITY_TOKEN_PATH,
                TOKEN_FILES_AUTHORITY
            )
        );
        assert!(c.body.is_empty() && c.headers.is_empty());
        assert_eq!(
            format!("{f:?}"),
            r#"Fetch { stage: "web-identity-token-file" }"#
        );
        let Step::Call(c) = f.on_response(200, token.as_bytes(), NOW) else {
            panic!()
        };
        (f, c)
    }

    #[test]
    fn web_identity_reads_the_token_then_calls_sts() {
        let (mut f, c) = at_sts(&format!("{WEB_TOKEN}\n"));
        assert_eq!(c.to, CallTo::Sts);
        assert_eq!(c.method, "POST");
        assert!(!c.scheme_https);
        assert_eq!(c.authority, "127.0.0.1:9000");
        assert_eq!(c.path, "/");
        assert_eq!(
            header(&c, "content-type"),
            Some("application/x-www-form-urlencoded; charset=utf-8")
        );
        assert!(
            header(&c, "authorization").is_none(),
            "STS call is unsigned"
        );
        let body = String::from_utf8(c.body.clone()).unwrap();
        assert_eq!(
            body,
            format!(
                "Action=AssumeRoleWithWebIdentity&Version=2011-06-15\
                 &RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fduo-bedrock\
                 &RoleSessionName=duo-bedrock-{NOW}\
                 &WebIdentityToken=eyJhbGciOiJSUzI1NiJ9.WEBIDENTITY%2B%2F%3D.sig"
            )
        );
        let shown = format!("{c:?} {f:?}");
        assert!(!shown.contains("WEBIDENTITY"), "{shown}");
        assert!(shown.contains("body_bytes"));
        let Step::Done(got) = f.on_response(200, sts_xml(&later()).as_bytes(), NOW) else {
            panic!()
        };
        assert_eq!(got.creds.access_key_id, "ASIAEMU000009");
        assert_eq!(got.creds.secret_access_key, SECRET);
        assert_eq!(got.creds.session_token.as_deref(), Some(SESSION));
        assert_eq!(got.expires_at, Some(NOW + 900));
        assert!(f.is_finished());
        // A configured session name is sent as it is; the STS path of an override is kept.
        let source = Source::WebIdentity {
            role_arn: ROLE.into(),
            session_name: Some("gitlab@duo".into()),
            sts_url: "https://sts.example.com/prefix".into(),
        };
        let (mut f, _) = Fetch::start(&source, NOW);
        let Step::Call(c) = f.on_response(200, b"tok1", NOW) else {
            panic!()
        };
        assert!(c.scheme_https);
        assert_eq!(c.path, "/prefix");
        assert!(String::from_utf8(c.body)
            .unwrap()
            .contains("&RoleSessionName=gitlab%40duo&"));
    }

    #[test]
    fn each_fetch_sends_the_token_of_that_fetch() {
        // The token is never kept between fetches: the second fetch sends what the launcher
        // serves then.
        for token in ["first-token", "second-token"] {
            let (_, c) = at_sts(token);
            let body = String::from_utf8(c.body).unwrap();
            assert!(
                body.ends_with(&format!("&WebIdentityToken={token}")),
                "{body}"
            );
        }
    }

    #[test]
    fn token_file_failures() {
        for (status, body, want) in [
            (404, &b""[..], "not set in the launcher"),
            (0, b"", "did not answer"),
            (
                503,
                b"open /var/run/token: permission denied\n",
                "permission denied",
            ),
            (503, b"", "HTTP 503"),
            (500, b"\x1b[31mred\xff", "HTTP 500"),
            (200, b"", "empty"),
            (200, b" \n", "empty"),
            (200, b"two\nlines", "printable"),
            (200, b"\xff\xfe", "printable"),
        ] {
            let (mut f, _) = Fetch::start(&web_identity_source(), NOW);
            match f.on_response(status, body, NOW) {
                Step::Failed(e) => {
                    assert!(e.contains(want), "{status}: {e}");
                    assert!(e.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{e}");
                    assert!(!e.contains('\x1b'), "{e}");
                }
                other => panic!("{status}: {other:?}"),
            }
            assert!(f.is_finished());
        }
        let (mut f, _) = Fetch::start(&web_identity_source(), NOW);
        let huge = vec![b't'; MAX_TOKEN_FILE_BYTES + 1];
        assert!(matches!(f.on_response(200, &huge, NOW), Step::Failed(e) if e.contains("longer")));
        // A long cause is cut.
        let (mut f, _) = Fetch::start(&web_identity_source(), NOW);
        let Step::Failed(e) = f.on_response(503, &vec![b'x'; 10_000], NOW) else {
            panic!()
        };
        assert!(e.len() < 400, "{e}");
    }

    #[test]
    fn sts_errors_are_logged_by_code_and_message_never_the_token() {
        for (status, body, want) in [
            (
                400,
                sts_error(
                    "InvalidIdentityToken",
                    &format!("Token {WEB_TOKEN} &amp; no OpenIDConnect provider found"),
                ),
                "STS AssumeRoleWithWebIdentity answered HTTP 400: InvalidIdentityToken: Token *** & no OpenIDConnect provider found",
            ),
            (
                400,
                sts_error("ExpiredTokenException", "Token expired: current date/time 1 must be before the expiration date/time 0"),
                "HTTP 400: ExpiredTokenException: Token expired",
            ),
            (
                403,
                sts_error("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"),
                "HTTP 403: AccessDenied: Not authorized",
            ),
            (403, sts_error("IDPRejectedClaim", ""), "HTTP 403: IDPRejectedClaim"),
            (400, sts_error("Bad Code!", "x"), "answered HTTP 400"),
            (500, "<html>oops</html>".to_string(), "answered HTTP 500"),
            (0, String::new(), "no answer"),
            (200, "not xml".to_string(), "not valid XML"),
            (200, sts_error("InvalidIdentityToken", "m"), "no AssumeRoleWithWebIdentityResponse"),
        ] {
            let (mut f, _) = at_sts(WEB_TOKEN);
            match f.on_response(status, body.as_bytes(), NOW) {
                Step::Failed(e) => {
                    assert!(e.contains(want), "{status}: {e}");
                    assert!(!e.contains("WEBIDENTITY"), "{e}");
                    no_secret(&e);
                }
                other => panic!("{status}: {other:?}"),
            }
        }
        // Expired already.
        let (mut f, _) = at_sts(WEB_TOKEN);
        let expired = sts_xml(&format_rfc3339(NOW - 1));
        assert!(
            matches!(f.on_response(200, expired.as_bytes(), NOW), Step::Failed(e) if e.contains("expired"))
        );
    }

    // ----- Pod Identity: container endpoint with a token file -----

    #[test]
    fn container_token_file_is_read_at_every_fetch() {
        let source = Source::Container {
            url: "http://169.254.170.23/v1/credentials".into(),
            auth: ContainerAuth::File,
        };
        for token in ["pod-token-1", "pod-token-2"] {
            let (mut f, step) = Fetch::start(&source, NOW);
            let Step::Call(c) = step else { panic!() };
            assert_eq!(
                (c.to, c.path.as_str()),
                (CallTo::TokenFiles, CONTAINER_TOKEN_PATH)
            );
            assert_eq!(
                format!("{f:?}"),
                r#"Fetch { stage: "container-token-file" }"#
            );
            let Step::Call(c) = f.on_response(200, format!("{token}\n").as_bytes(), NOW) else {
                panic!()
            };
            assert_eq!(c.to, CallTo::Endpoint);
            assert_eq!(c.method, "GET");
            assert_eq!(c.authority, "169.254.170.23");
            assert_eq!(c.path, "/v1/credentials");
            assert_eq!(header(&c, "authorization"), Some(token));
            assert!(!format!("{c:?}").contains(token));
            let Step::Done(got) = f.on_response(200, creds_json(&later()).as_bytes(), NOW) else {
                panic!()
            };
            assert_eq!(got.creds.access_key_id, "ASIAEMU000001");
        }
        let (mut f, _) = Fetch::start(&source, NOW);
        let Step::Failed(e) = f.on_response(404, b"", NOW) else {
            panic!()
        };
        assert!(e.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"), "{e}");
        let (mut f, _) = Fetch::start(&source, NOW);
        assert!(matches!(
            f.on_response(200, b"a\r\nx-evil: 1", NOW),
            Step::Failed(_)
        ));
        let (mut f, _) = Fetch::start(&source, NOW);
        assert!(matches!(
            f.on_response(200, AUTH.as_bytes(), NOW),
            Step::Call(_)
        ));
        let Step::Failed(e) = f.on_response(401, b"", NOW) else {
            panic!()
        };
        assert!(e.contains("HTTP 401"));
        no_secret(&e);
    }

    // ----- STS XML -----

    #[test]
    fn sts_credentials_xml() {
        let f = parse_sts_credentials(sts_xml(&later()).as_bytes()).unwrap();
        assert_eq!(f.expires_at, Some(NOW + 900));
        // Declaration, comments, prefixes, CDATA, entities, fractional seconds.
        let doc = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- answer -->
<sts:AssumeRoleWithWebIdentityResponse xmlns:sts="https://sts.amazonaws.com/doc/2011-06-15/">
 <sts:AssumeRoleWithWebIdentityResult><sts:Credentials a='x>y'>
  <sts:AccessKeyId>ASIA1</sts:AccessKeyId>
  <sts:SecretAccessKey><![CDATA[{SECRET}]]></sts:SecretAccessKey>
  <sts:SessionToken>a&amp;b&#x2F;&#61;&lt;&gt;&quot;&apos;</sts:SessionToken>
  <sts:Expiration>{}.123Z</sts:Expiration>
 </sts:Credentials><Empty/></sts:AssumeRoleWithWebIdentityResult>
</sts:AssumeRoleWithWebIdentityResponse>"#,
            format_rfc3339(NOW + 60).trim_end_matches('Z')
        );
        let f = parse_sts_credentials(doc.as_bytes()).unwrap();
        assert_eq!(f.creds.access_key_id, "ASIA1");
        assert_eq!(f.creds.secret_access_key, SECRET);
        assert_eq!(f.creds.session_token.as_deref(), Some("a&b/=<>\"'"));
        assert_eq!(f.expires_at, Some(NOW + 60));
        no_secret(&format!("{f:?}"));
        let bad = |doc: String, want: &str| {
            let e = parse_sts_credentials(doc.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{e}");
            no_secret(&e);
        };
        let xml = sts_xml(&later());
        bad(
            xml.replace("<SessionToken>", "<Token>")
                .replace("</SessionToken>", "</Token>"),
            "SessionToken",
        );
        bad(xml.replace("2026", "20x6"), "Expiration");
        bad(xml.replace(&later(), ""), "Expiration");
        bad(xml.replace("ASIAEMU000009", "ASIA/1"), "AccessKeyId");
        bad(
            xml.replace(SECRET, &format!("{SECRET} x")),
            "SecretAccessKey",
        );
        bad(xml.replace("</Credentials>", ""), "XML");
        bad(
            xml.replace("<Credentials>", "<Credentials><!DOCTYPE x>"),
            "DOCTYPE",
        );
        bad(xml.replace(SECRET, &format!("{SECRET}&bogus;")), "entity");
        bad(
            xml.replace("AssumeRoleWithWebIdentityResult", "Other"),
            "no AssumeRoleWithWebIdentityResponse",
        );
    }

    #[test]
    fn xml_reader_is_bounded_and_total() {
        let ok = |doc: &str| xml_leaves(doc.as_bytes()).unwrap();
        assert_eq!(ok("<a>x</a>"), [("a".to_string(), "x".to_string())]);
        assert_eq!(
            ok("<a><b>1</b><c/><d>&#65;&#x42;</d></a>"),
            [
                ("a/b".to_string(), "1".to_string()),
                ("a/c".to_string(), String::new()),
                ("a/d".to_string(), "AB".to_string())
            ]
        );
        for bad in [
            "",
            "   ",
            "text",
            "<a>",
            "<a></b>",
            "</a>",
            "<a></a><b></b>",
            "<a></a>trailing",
            "<a>&amp</a>",
            "<a>&#0;</a>",
            "<a>&#xD800;</a>",
            "<a>&#99999999999;</a>",
            "<a>&unknown;</a>",
            "<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>",
            "<a b='1></a>",
            "<a><!-- x </a>",
            "<a><![CDATA[x</a>",
            "<?xml",
            "<>x</>",
            "<a b<c>x</a>",
            "<\u{e9}\u{301}:>x</\u{e9}\u{301}:>",
        ] {
            assert!(xml_leaves(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(xml_leaves(b"<a>\xff</a>").is_err());
        // Depth, element count and size limits.
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_XML_DEPTH + 1),
            "</a>".repeat(MAX_XML_DEPTH + 1)
        );
        assert!(xml_leaves(deep.as_bytes()).unwrap_err().contains("deeper"));
        let fits = format!(
            "{}{}",
            "<a>".repeat(MAX_XML_DEPTH),
            "</a>".repeat(MAX_XML_DEPTH)
        );
        assert!(xml_leaves(fits.as_bytes()).is_ok());
        let many = format!("<r>{}</r>", "<e/>".repeat(MAX_XML_ELEMENTS));
        assert!(xml_leaves(many.as_bytes())
            .unwrap_err()
            .contains("elements"));
        let huge = format!("<r>{}</r>", "x".repeat(MAX_BODY_BYTES));
        assert!(xml_leaves(huge.as_bytes()).is_err());
        // Multi-byte text next to entities.
        assert_eq!(
            ok("<a>\u{e9}&amp;\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}</a>")[0].1,
            "\u{e9}&\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}"
        );
        // Errors never carry document text.
        let e = xml_leaves(format!("<a>{SECRET}</b>").as_bytes()).unwrap_err();
        no_secret(&e);
    }

    #[test]
    fn sts_error_xml() {
        assert_eq!(
            parse_sts_error(
                sts_error("InvalidIdentityToken", "bad\u{7}  token").as_bytes(),
                ""
            ),
            Some((
                "InvalidIdentityToken".to_string(),
                "bad   token".to_string()
            ))
        );
        assert_eq!(parse_sts_error(b"<ErrorResponse/>", ""), None);
        assert_eq!(parse_sts_error(b"garbage", ""), None);
        let long = sts_error("Throttling", &"m".repeat(5000));
        assert_eq!(parse_sts_error(long.as_bytes(), "").unwrap().1.len(), 300);
        // The token is redacted before the message is cut: no prefix of it survives.
        let msg = format!("{}{WEB_TOKEN}", "m".repeat(290));
        let (_, shown) = parse_sts_error(sts_error("X", &msg).as_bytes(), WEB_TOKEN).unwrap();
        assert!(shown.ends_with("m***"), "{shown}");
    }

    // ----- parsing -----

    #[test]
    fn credentials_json_fields() {
        let f = parse_credentials_json(
            br#"{"AccessKeyId":"AKIA1","SecretAccessKey":"s/k+1","Token":"","Expiration":null,"RoleArn":"arn:aws:iam::1:role/r"}"#,
        )
        .unwrap();
        assert_eq!(f.creds.session_token, None);
        assert_eq!(f.expires_at, None);
        assert!(!f.is_expired(u64::MAX));
        let f =
            parse_credentials_json(br#"{"AccessKeyId":"AKIA1","SecretAccessKey":"s"}"#).unwrap();
        assert_eq!(f.creds.session_token, None);
        let bad = |body: String, want: &str| {
            let e = parse_credentials_json(body.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{e}");
            no_secret(&e);
        };
        bad(
            format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"{SECRET} x"}}"#),
            "SecretAccessKey",
        );
        bad(
            format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"","Token":"{SESSION}"}}"#),
            "SecretAccessKey is empty",
        );
        bad(
            format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"{SECRET}","Token":5}}"#),
            "Token is not a string",
        );
        bad(
            format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"{SECRET}","Token":"{SESSION}\n"}}"#),
            "Token",
        );
        bad(
            format!(r#"{{"AccessKeyId":"A/B","SecretAccessKey":"{SECRET}"}}"#),
            "AccessKeyId",
        );
        bad(
            format!(r#"{{"AccessKeyId":7,"SecretAccessKey":"{SECRET}"}}"#),
            "AccessKeyId",
        );
        bad(
            format!(
                r#"{{"AccessKeyId":"A","SecretAccessKey":"{SECRET}","Expiration":"tomorrow"}}"#
            ),
            "Expiration",
        );
        bad(
            format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"{SECRET}","Expiration":17}}"#),
            "Expiration",
        );
        bad(
            format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"{SECRET}","Code":"{SECRET}"}}"#),
            "not shown",
        );
        // Malformed JSON around a secret: the parser error carries no content.
        bad(
            format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"{SECRET}" "#),
            "not JSON",
        );
        bad(
            format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"{SECRET}",}}"#),
            "not JSON",
        );
        let huge = format!(
            r#"{{"AccessKeyId":"A","SecretAccessKey":"s","Token":"{}"}}"#,
            "t".repeat(MAX_BODY_BYTES)
        );
        bad(huge, "too large");
        let long_token = format!(
            r#"{{"AccessKeyId":"A","SecretAccessKey":"s","Token":"{}"}}"#,
            "t".repeat(MAX_SESSION_TOKEN_BYTES + 1)
        );
        bad(long_token, "longer");
        // Deep nesting does not blow the stack.
        let deep = "[".repeat(100_000);
        assert!(parse_credentials_json(deep.as_bytes()).is_err());
    }

    #[test]
    fn rfc3339_parsing() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-27T13:00:00Z"), Some(1_795_784_400));
        assert_eq!(parse_rfc3339("2026-11-27t13:00:00z"), Some(1_795_784_400));
        assert_eq!(parse_rfc3339("2026-11-27 13:00:00Z"), Some(1_795_784_400));
        assert_eq!(
            parse_rfc3339("2026-11-27T13:00:00.999999Z"),
            Some(1_795_784_400)
        );
        assert_eq!(
            parse_rfc3339("2026-11-27T13:00:00.5+00:00"),
            Some(1_795_784_400)
        );
        assert_eq!(
            parse_rfc3339("2026-11-27T15:30:00+02:30"),
            Some(1_795_784_400)
        );
        assert_eq!(
            parse_rfc3339("2026-11-27T08:00:00-05:00"),
            Some(1_795_784_400)
        );
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("9999-12-31T23:59:59Z"), Some(253_402_300_799));
        for bad in [
            "",
            "2026-11-27",
            "2026-11-27T13:00:00",
            "2026-11-27T13:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T13:60:00Z",
            "2026-11-27T13:00:61Z",
            "2026-11-27T13:00:00.Z",
            "2026-11-27T13:00:00+0200",
            "2026-11-27T13:00:00+24:00",
            "2026-11-27T13:00:00Zjunk",
            "2026/11/27T13:00:00Z",
            "+026-11-27T13:00:00Z",
            "2026-11-27T13:00:00\u{e9}",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(
            parse_rfc3339(&format!("2026-11-27T13:00:00.{}Z", "1".repeat(100))),
            None
        );
        assert_eq!(format_rfc3339(1_795_784_400), "2026-11-27T13:00:00Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        for t in [0, 1, 951_782_400, 1_795_784_399, 253_402_300_799] {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
        let _ = format_rfc3339(u64::MAX); // no panic
    }

    // ----- timing -----

    #[test]
    fn refresh_timing() {
        let t = 1_000_000;
        // Long-lived: 5 minutes before expiry.
        assert_eq!(refresh_at(t, Some(t + 6 * 3600)), t + 6 * 3600 - 300);
        assert_eq!(refresh_at(t, Some(t + 1500)), t + 1200);
        // Shorter: at 80 % of the lifetime.
        assert_eq!(refresh_at(t, Some(t + 900)), t + 720);
        assert_eq!(refresh_at(t, Some(t + 20)), t + 16);
        assert_eq!(refresh_at(t, Some(t + 10)), t + 8);
        assert_eq!(refresh_at(t, Some(t + 2)), t + 1);
        assert_eq!(refresh_at(t, Some(t + 3)), t + 2);
        // Never sooner than 1 s after the fetch, even for odd expirations.
        assert_eq!(refresh_at(t, Some(t + 1)), t + 1);
        assert_eq!(refresh_at(t, Some(t)), t + 1);
        assert_eq!(refresh_at(t, Some(t - 100)), t + 1);
        // Always before expiry when the lifetime allows it.
        for life in 2..4000 {
            let r = refresh_at(t, Some(t + life));
            assert!(r > t && r < t + life, "{life}");
        }
        assert_eq!(refresh_at(t, None), t + 3600);
        assert_eq!(refresh_at(u64::MAX, None), u64::MAX);
        assert_eq!(refresh_at(u64::MAX - 1, Some(u64::MAX)), u64::MAX);
    }

    #[test]
    fn retry_backoff() {
        let got: Vec<u64> = (0..8).map(|n| retry_at(100, n) - 100).collect();
        assert_eq!(got, [5, 5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(retry_at(u64::MAX, 3), u64::MAX);
        assert_eq!(retry_at(7, u32::MAX), 67);
    }

    // ----- shared data -----

    #[test]
    fn shared_round_trip() {
        let f = Fetched {
            creds: Credentials {
                access_key_id: "ASIAEMU000007".into(),
                secret_access_key: SECRET.into(),
                session_token: Some(SESSION.into()),
            },
            expires_at: Some(NOW + 60),
        };
        let b = serialize_shared(&f);
        assert_eq!(deserialize_shared(&b), Some(f.clone()));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["v"], 1);
        assert_eq!(v["expires_at"], NOW + 60);
        let mut g = f.clone();
        g.creds.session_token = None;
        g.expires_at = None;
        assert_eq!(deserialize_shared(&serialize_shared(&g)), Some(g));
        no_secret(&format!("{f:?}"));
        assert!(f.is_expired(NOW + 60) && !f.is_expired(NOW + 59));
        for bad in [
            &b""[..],
            b"null",
            b"{}",
            b"garbage",
            br#"{"v":2,"access_key_id":"A","secret_access_key":"S"}"#,
            br#"{"v":1,"access_key_id":"","secret_access_key":"S"}"#,
            br#"{"v":1,"access_key_id":"A","secret_access_key":"S S"}"#,
            br#"{"v":1,"access_key_id":"A","secret_access_key":"S","session_token":"a\nb"}"#,
            br#"{"v":1,"access_key_id":"A","secret_access_key":"S","expires_at":-1}"#,
        ] {
            assert_eq!(
                deserialize_shared(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
