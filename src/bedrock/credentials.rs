//! Refreshing AWS credentials fetched by the filter itself (issue 6): where they come from, the
//! HTTP calls that fetch them, and when to refresh. Host-independent: the host dispatches the
//! [`HttpCall`]s with `dispatch_http_call`, feeds the answers back, passes the time in, and
//! shares the result across worker VMs with [`serialize_shared`] / [`deserialize_shared`].
//!
//! Contract: the AWS SDKs' default credential chain, restricted to what a wasm VM can do
//! (no files, no processes): environment keys, then the container endpoint, then EC2 IMDSv2.
//!
//! * **Environment** (`AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY`, optional
//!   `AWS_SESSION_TOKEN`) → [`Source::Static`]; the plugin configuration keeps handling those.
//! * **Container** (ECS task roles, EKS Pod Identity): `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`
//!   (→ `http://169.254.170.2<relative>`, wins as in the SDKs) or
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI`. A full URI must be `https://` (any host) or
//!   `http://` to a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`) or to the ECS/EKS agent
//!   addresses `169.254.170.2`, `169.254.170.23`, `[fd00:ec2::23]` — the rule of the AWS SDKs
//!   (Rust `aws-config` ecs provider, JS `@aws-sdk/credential-provider-http` `checkUrl`).
//!   The `Authorization` header is `AWS_CONTAINER_AUTHORIZATION_TOKEN`, or, when
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` is set (it wins, as in the SDKs), the file's
//!   content. The wasm VM cannot read files, so the launcher reads the file and passes its
//!   content in [`TOKEN_FILE_CONTENT_VAR`]; a `_FILE` without that content is a configuration
//!   error. (EKS rotates that file; the content is read at VM start, so the launcher restarts
//!   Envoy when the file changes — the previous token stays valid until its own expiry.)
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
//! Answers are the JSON both endpoints share (`AccessKeyId`, `SecretAccessKey`, `Token`,
//! `Expiration` in RFC 3339, IMDS adds `Code: "Success"`). Bodies are bounded
//! ([`MAX_BODY_BYTES`]); nothing here panics on hostile input. Secrets (secret key, session
//! token, container authorization token, IMDS token) never appear in `Debug` output or in error
//! strings: errors name fields and statuses, never values.

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
/// Where the launcher puts the content of `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
pub const TOKEN_FILE_CONTENT_VAR: &str = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE_CONTENT";
/// Largest credentials / token / role-list body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Suggested per-call timeout for the host (the endpoints are local; the SDKs use 1–5 s).
pub const CALL_TIMEOUT_SECS: u64 = 5;
/// Refresh schedule when the answer carries no `Expiration`.
pub const DEFAULT_REFRESH_SECS: u64 = 3600;

const MAX_AUTH_TOKEN_BYTES: usize = 16 * 1024;
const MAX_SESSION_TOKEN_BYTES: usize = 16 * 1024;
const MAX_IMDS_TOKEN_BYTES: usize = 4096;
const MAX_KEY_BYTES: usize = 256;
const IMDS_TOKEN_PATH: &str = "/latest/api/token";
const IMDS_CREDS_PATH: &str = "/latest/meta-data/iam/security-credentials/";

/// Where SigV4 credentials come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (handled by the plugin configuration).
    Static,
    /// ECS / EKS Pod Identity container endpoint.
    Container {
        /// Full URL, `http(s)://authority/path[?query]`, validated.
        url: String,
        /// Sent verbatim as `Authorization` when set.
        auth_token: Option<String>,
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
            Source::Container { url, auth_token } => f
                .debug_struct("Container")
                .field("url", url)
                .field("auth_token", &auth_token.as_ref().map(|_| "** redacted **"))
                .finish(),
            Source::Imds { base_url } => {
                f.debug_struct("Imds").field("base_url", base_url).finish()
            }
        }
    }
}

impl Source {
    /// Short name for logs and metric labels: `static`, `container`, `imds`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Container { .. } => "container",
            Source::Imds { .. } => "imds",
        }
    }

    /// `(https, authority)` every call of this source goes to (`None` for `Static`): the host
    /// needs one Envoy cluster for it.
    pub fn endpoint(&self) -> Option<(bool, String)> {
        let url = match self {
            Source::Static => return None,
            Source::Container { url, .. } => url,
            Source::Imds { base_url } => base_url,
        };
        split_url(url).ok().map(|u| (u.https, u.authority))
    }
}

/// Reads the credential chain from the (VM) environment. Empty values count as unset.
///
/// `Ok(None)`: no credentials at all (no keys, no container endpoint, IMDS disabled).
/// `AWS_BEARER_TOKEN_BEDROCK` is not looked at: the configuration decides Bearer first.
/// Errors name the variable and never contain a token.
pub fn source_from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Source>, String> {
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
        let auth_token = container_token(&env)?;
        return Ok(Some(Source::Container { url, auth_token }));
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

/// The container `Authorization` token: the file's content (passed by the launcher) wins over
/// the literal token, as in the SDKs.
fn container_token(env: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    let (var, token) = if env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").is_some() {
        match env(TOKEN_FILE_CONTENT_VAR) {
            Some(t) => (TOKEN_FILE_CONTENT_VAR, t),
            None => {
                return Err(format!(
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE is set, but the wasm VM cannot read \
                     files: the launcher must pass the file's content in {TOKEN_FILE_CONTENT_VAR}"
                ))
            }
        }
    } else {
        match env("AWS_CONTAINER_AUTHORIZATION_TOKEN") {
            Some(t) => ("AWS_CONTAINER_AUTHORIZATION_TOKEN", t),
            None => return Ok(None),
        }
    };
    // A file usually ends with a newline; anything else must be one printable line.
    let token = token.trim_matches(|c: char| c.is_ascii_whitespace());
    if token.len() > MAX_AUTH_TOKEN_BYTES {
        return Err(format!("{var} is longer than {MAX_AUTH_TOKEN_BYTES} bytes"));
    }
    if !token
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err(format!(
            "{var} must be one line of printable ASCII (it is sent as the Authorization header)"
        ));
    }
    Ok(Some(token.to_string()))
}

/// One HTTP call the host must dispatch (no body). The host maps `authority` to the Envoy
/// cluster it configured for the source and sends `:method`, `:path`, `:authority` and
/// `headers`. `Debug` redacts `authorization` and `x-aws-ec2-metadata-token`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub method: &'static str,
    pub scheme_https: bool,
    pub authority: String,
    /// Wire path, may carry a `?query`.
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
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
            .field("method", &self.method)
            .field("scheme_https", &self.scheme_https)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("headers", &headers)
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
    Container { authority: String },
    ImdsToken { base: Base },
    ImdsRole { base: Base, token: String },
    ImdsCreds,
    Finished,
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
            State::Container { .. } => "container",
            State::ImdsToken { .. } => "imds-token",
            State::ImdsRole { .. } => "imds-role",
            State::ImdsCreds => "imds-credentials",
            State::Finished => "finished",
        };
        f.debug_struct("Fetch").field("stage", &stage).finish()
    }
}

fn call(method: &'static str, base: &Base, path: String, headers: Vec<(String, String)>) -> Step {
    Step::Call(HttpCall {
        method,
        scheme_https: base.https,
        authority: base.authority.clone(),
        path,
        headers,
    })
}

fn status_text(status: u16) -> String {
    if status == 0 {
        "no answer (timeout or connection failure)".to_string()
    } else {
        format!("HTTP {status}")
    }
}

impl Fetch {
    /// Starts a refresh: the container GET, or the IMDS token PUT. `Static` fails at once.
    pub fn start(source: &Source) -> (Fetch, Step) {
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
            Source::Container { url, auth_token } => {
                let Ok(u) = split_url(url) else {
                    return finished("the container credentials URL is invalid");
                };
                let mut headers = vec![("accept".to_string(), "application/json".to_string())];
                if let Some(t) = auth_token {
                    headers.push(("authorization".to_string(), t.clone()));
                }
                let base = Base {
                    https: u.https,
                    authority: u.authority.clone(),
                    prefix: String::new(),
                };
                let step = call("GET", &base, u.path, headers);
                (
                    Fetch {
                        state: State::Container {
                            authority: u.authority,
                        },
                    },
                    step,
                )
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

    /// Feeds the answer to the last [`Step::Call`] (`status` 0 = no answer) and returns the
    /// next step. `now` (Unix seconds) rejects credentials that are already expired.
    pub fn on_response(&mut self, status: u16, body: &[u8], now: u64) -> Step {
        let state = std::mem::replace(&mut self.state, State::Finished);
        match state {
            State::Finished => Step::Failed("the credentials fetch is already finished".into()),
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
    let field = |name: &str, max: usize, required: bool| -> Result<Option<String>, String> {
        match obj.get(name) {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(format!("the credentials answer has no {name}")),
            Some(Value::String(s)) if s.is_empty() && !required => Ok(None),
            Some(Value::String(s)) => {
                if s.is_empty() {
                    Err(format!("{name} is empty"))
                } else if s.len() > max {
                    Err(format!("{name} is longer than {max} bytes"))
                } else if !s.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
                    Err(format!("{name} is not printable ASCII without spaces"))
                } else {
                    Ok(Some(s.clone()))
                }
            }
            Some(_) => Err(format!("{name} is not a string")),
        }
    };
    let access_key_id = field("AccessKeyId", MAX_KEY_BYTES, true)?.unwrap_or_default();
    if !access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("AccessKeyId is not alphanumeric".into());
    }
    let secret_access_key = field("SecretAccessKey", MAX_KEY_BYTES, true)?.unwrap_or_default();
    let session_token = field("Token", MAX_SESSION_TOKEN_BYTES, false)?;
    let expires_at =
        match obj.get("Expiration") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(parse_rfc3339(s).ok_or_else(|| {
                format!("Expiration '{}' is not an RFC 3339 timestamp", shorten(s))
            })?),
            Some(_) => return Err("Expiration is not a string".into()),
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
        source_from_env(env_of(vars))
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
                auth_token: None
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
    fn container_authorization_token_and_file_content() {
        let base = (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/v1/credentials",
        );
        let token = |vars: &[(&str, &str)]| match src(vars) {
            Ok(Some(Source::Container { auth_token, .. })) => Ok(auth_token),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(token(&[base]), Ok(None));
        assert_eq!(
            token(&[base, ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH)]),
            Ok(Some(AUTH.into()))
        );
        // The file wins; its content arrives through the launcher, trailing newline trimmed.
        let content = format!("{AUTH}\n");
        assert_eq!(
            token(&[
                base,
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "literal"),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    "/var/run/secrets/token"
                ),
                (TOKEN_FILE_CONTENT_VAR, &content),
            ]),
            Ok(Some(AUTH.into()))
        );
        let e = token(&[
            base,
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/secrets/token",
            ),
        ])
        .unwrap_err();
        assert!(
            e.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
                && e.contains(TOKEN_FILE_CONTENT_VAR)
        );
        no_secret(&e);
        // Header injection is refused and the token is not echoed.
        let bad = format!("{AUTH}\r\nx-evil: 1");
        let e = token(&[base, ("AWS_CONTAINER_AUTHORIZATION_TOKEN", &bad)]).unwrap_err();
        assert!(e.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
        no_secret(&e);
        let huge = "a".repeat(MAX_AUTH_TOKEN_BYTES + 1);
        assert!(token(&[base, ("AWS_CONTAINER_AUTHORIZATION_TOKEN", &huge)]).is_err());
        // Debug of the source redacts the token.
        let s = src(&[base, ("AWS_CONTAINER_AUTHORIZATION_TOKEN", AUTH)])
            .unwrap()
            .unwrap();
        no_secret(&format!("{s:?}"));
        assert!(format!("{s:?}").contains("redacted"));
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
                auth_token: token.clone(),
            };
            let (mut f, step) = Fetch::start(&source);
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
            auth_token: Some(AUTH.into()),
        };
        let run = |status: u16, body: &[u8]| {
            let (mut f, step) = Fetch::start(&source);
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
        assert!(matches!(Fetch::start(&Source::Static).1, Step::Failed(_)));
    }

    // ----- IMDS fetch -----

    fn imds_start() -> (Fetch, HttpCall) {
        let (f, step) = Fetch::start(&Source::Imds {
            base_url: "http://127.0.0.1:1338".into(),
        });
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
        let (mut f, step) = Fetch::start(&Source::Imds {
            base_url: "http://[fd00:ec2::254]/prefix".into(),
        });
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
