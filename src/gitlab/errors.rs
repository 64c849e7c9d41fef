//! GitLab-facing error answers, shaped like the FastAPI bodies the AI Gateway returns.
//!
//! Contract: `docs/gitlab-contract.md#errors` (error shapes) and `#validation-errors` (422 bodies),
//! plus `docs/bedrock-contract.md#errors` (Bedrock error kinds).
//!
//! Every [`GitlabError`] is a complete HTTP answer: status, JSON body and headers.
//! **Decision:** the `content-type: application/json` header is always included in
//! [`GitlabError::headers`], so the host copies the headers as they are and adds nothing.
//!
//! Bodies never echo request input (prompts and code are secret unless verbose logging is on):
//! validation issues carry `type`, `loc`, `msg` and sometimes `ctx` (limits only), never `input`.

use serde::Serialize;
use serde_json::{json, Value};

/// The one content-type of every error body built here.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Detail text GitLab's gateway sends for a model 429.
pub const TOO_MANY_REQUESTS_DETAIL: &str = "Too many requests. Please try again later.";

/// A complete error answer for GitLab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitlabError {
    pub status: u16,
    /// JSON text (always a `{"detail": ...}` object).
    pub body: String,
    /// Response headers, lower-case names; always contains `content-type: application/json`.
    pub headers: Vec<(String, String)>,
}

/// One element of a FastAPI `loc` array: an object key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum LocPart {
    Key(String),
    Index(usize),
}

impl From<&str> for LocPart {
    fn from(s: &str) -> Self {
        LocPart::Key(s.to_string())
    }
}

impl From<usize> for LocPart {
    fn from(i: usize) -> Self {
        LocPart::Index(i)
    }
}

/// One pydantic/FastAPI validation error (`{"type","loc","msg","ctx"?}`), without `input`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationIssue {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub loc: Vec<LocPart>,
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

impl ValidationIssue {
    pub fn new(kind: &'static str, loc: Vec<LocPart>, msg: impl Into<String>) -> Self {
        Self {
            kind,
            loc,
            msg: msg.into(),
            ctx: None,
        }
    }

    pub fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }
}

/// Which GitLab endpoint family a Bedrock failure belongs to (decides the error shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/v2/code/*`, `/v3/code/completions`, `/v4/code/suggestions`.
    CodeSuggestions,
    /// `/v1/prompts/*`, `/v2/prompts/*` (model errors become 421 `"<status>: <reason>"`).
    Prompts,
    /// `/v2/chat/agent`, `/v1/chat/*`.
    Chat,
}

fn json_headers() -> Vec<(String, String)> {
    vec![("content-type".to_string(), JSON_CONTENT_TYPE.to_string())]
}

impl GitlabError {
    /// `{"detail": "<msg>"}` with the given status (the text is JSON-escaped).
    pub fn detail(status: u16, msg: &str) -> Self {
        Self {
            status,
            body: json!({ "detail": msg }).to_string(),
            headers: json_headers(),
        }
    }

    /// FastAPI's answer for an unknown route: 404 `{"detail":"Not Found"}`.
    pub fn not_found() -> Self {
        Self::detail(404, "Not Found")
    }

    /// 422 with FastAPI's list shape `{"detail":[{"type","loc","msg"}...]}`.
    pub fn validation(errors: Vec<ValidationIssue>) -> Self {
        Self::issues(422, errors)
    }

    /// FastAPI's list shape `{"detail":[{"type","loc","msg"}...]}` with any status. Rails
    /// shows `detail[0].msg` of a non-200, non-421 answer to the admin ("AI Gateway returned
    /// code <status>: <msg>", `ee/lib/gitlab/llm/ai_gateway/code_suggestions_client.rb`
    /// `test_model_connection`); a string `detail` becomes "Unknown error" there.
    pub fn issues(status: u16, errors: Vec<ValidationIssue>) -> Self {
        #[derive(Serialize)]
        struct DetailList<'a> {
            detail: &'a [ValidationIssue],
        }
        // Serialised from structs (not `json!`) so the keys keep FastAPI's order.
        let body = serde_json::to_string(&DetailList { detail: &errors })
            .unwrap_or_else(|_| r#"{"detail":"Validation error"}"#.to_string());
        Self {
            status,
            body,
            headers: json_headers(),
        }
    }

    /// 422 for a body that is not JSON, without position (see [`Self::malformed_json_at`]).
    pub fn malformed_json() -> Self {
        Self::malformed_json_at(0)
    }

    /// 422 for a body that is not JSON: FastAPI's `json_invalid` issue at character `pos`.
    pub fn malformed_json_at(pos: usize) -> Self {
        Self::validation(vec![ValidationIssue::new(
            "json_invalid",
            vec![LocPart::from("body"), LocPart::Index(pos)],
            "JSON decode error",
        )])
    }

    /// 504 for an Envoy-side timeout waiting for Bedrock.
    pub fn upstream_timeout() -> Self {
        Self::detail(
            504,
            "Inference failed: Amazon Bedrock did not answer in time",
        )
    }

    /// Adds (or replaces) a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.to_string()));
        self
    }

    /// The value of a header (names are lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Bedrock error kinds whose message may quote the canonical request (with the session
/// token) or otherwise concern credentials: their message is never forwarded.
const CREDENTIAL_KINDS: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "MissingAuthenticationTokenException",
    "MissingAuthenticationToken",
];

/// Normalises an `x-amzn-errortype` value the way botocore does: drop everything after
/// `:` and keep what follows the last `#` (`aws.protocoltests#ThrottlingException:http://…`).
pub fn normalize_error_kind(kind: &str) -> &str {
    let head = kind.split(':').next().unwrap_or("");
    let tail = match head.rfind('#') {
        Some(i) => head.get(i + 1..).unwrap_or(""),
        None => head,
    };
    tail.trim()
}

/// Maps a Bedrock HTTP error to GitLab's answer.
///
/// * [`Family::Prompts`] (every `/v1|v2/prompts/{id}`, "Test connection" included) → 421
///   `{"detail":"<status>: <reason phrase> - <Kind>: <text>"}` for **every** error, 429
///   included: see [`prompt_failure`].
/// * otherwise, 429, `ThrottlingException` or `ModelNotReadyException` → 429
///   `{"detail":"Too many requests. Please try again later."}` with `retry-after` copied
///   from Bedrock when it is a short printable value, else `"1"` (AIGW copies the upstream
///   header; Bedrock seldom sends one, and Rails backs off on its own).
/// * otherwise → 503 `{"detail":"Inference failed: Amazon Bedrock returned <status> <kind>: <message>"}`.
///   **Decision:** the Bedrock message is forwarded (truncated to 300 characters, control
///   characters removed) because it is what an admin needs ("on-demand throughput isn't
///   supported", "model identifier is invalid"...), *except* for 401/403 and credential/
///   signature kinds, or messages mentioning the canonical request or string-to-sign:
///   Bedrock's signature-mismatch text quotes the canonical request, which can contain the
///   `x-amz-security-token`. Those get a fixed hint instead.
pub fn from_bedrock(
    family: Family,
    status: u16,
    kind: &str,
    message: &str,
    retry_after: Option<&str>,
) -> GitlabError {
    let kind = normalize_error_kind(kind);
    if family == Family::Prompts {
        return prompt_failure(status, &explain(status, kind, message));
    }
    if status == 429 || kind == "ThrottlingException" || kind == "ModelNotReadyException" {
        let retry = retry_after
            .map(str::trim)
            .filter(|v| {
                !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| (0x20..0x7f).contains(&b))
            })
            .unwrap_or("1");
        return GitlabError::detail(429, TOO_MANY_REQUESTS_DETAIL)
            .with_header("retry-after", retry);
    }
    let mut detail = format!("Inference failed: Amazon Bedrock returned {status}");
    if !kind.is_empty() {
        detail.push(' ');
        detail.push_str(&sanitize(kind, 80));
    }
    if kind == "AccessDeniedException" {
        detail.push_str(": ");
        detail.push_str(ACCESS_DENIED_HINT);
    } else if is_credential_error(status, kind, message) {
        detail.push_str(": ");
        detail.push_str(CREDENTIALS_HINT);
    } else {
        let msg = sanitize(message, 300);
        if !msg.is_empty() {
            detail.push_str(": ");
            detail.push_str(&msg);
        }
    }
    GitlabError::detail(503, &detail)
}

/// The named-prompt answer to a model failure, exactly the gateway's shape: 421
/// `{"detail":"<status>: <reason phrase>"}`, plus ` - <explanation>` when there is one.
///
/// ai-gateway `ai_gateway/api/v1/prompts/invoke.py` (`self-hosted-v18.5.0-ee` and `main`,
/// shared by `/v2/prompts`): any exception carrying a `status_code` around
/// `prompt.ainvoke` becomes `HTTPException(421, detail=f"{status_code}: {responses[status_code]}")`
/// "to signal to the client the model has produced an error and not the AI Gateway". For the
/// self-hosted `bedrock/...` models the exception is LiteLLM's, whose `status_code` is
/// Bedrock's HTTP status (`RateLimitError` 429 included: it is caught here before the app's
/// 429 handler could see it), `Timeout` 408 when the model did not answer in time and
/// `APIConnectionError` 500 when it could not be reached (BerriAI/litellm
/// `litellm/litellm_core_utils/exception_mapping_utils.py`, `_map_bedrock_exception`).
/// **Decision:** the detail keeps Bedrock's own status where LiteLLM renumbers a few classes
/// (a Bedrock 500 becomes LiteLLM's 503, a 424 `ModelErrorException` its 500): the real status
/// tells the admin more.
///
/// Rails shows the detail verbatim: `ee/lib/gitlab/llm/ai_gateway/code_suggestions_client.rb`
/// `test_model_connection` (and the newer `self_hosted_models/connection_tester.rb`) answer a
/// 421 with "The self-hosted model server returned code <detail>"; the newer one also looks
/// for a leading `404` (identifier suggestions for `custom_openai/` models only), so the
/// status stays first. **Decision:** the gateway stops after the reason phrase; this filter
/// appends the Bedrock exception name and what to do about it (see [`explain`]).
pub fn prompt_failure(status: u16, explanation: &str) -> GitlabError {
    let mut detail = format!("{status}: {}", reason_phrase(status));
    if !explanation.is_empty() {
        detail.push_str(" - ");
        detail.push_str(explanation);
    }
    GitlabError::detail(421, &detail)
}

/// What an admin should read about a Bedrock error: `<Kind>: <Bedrock's message>`, or
/// `<Kind>: <hint>` for credential errors, whose message is never repeated (it can quote the
/// canonical request with the session token). The kind is bounded to 80 characters, the
/// message to 300, control characters removed.
fn explain(status: u16, kind: &str, message: &str) -> String {
    let mut out = sanitize(kind, 80);
    let text = if kind == "AccessDeniedException" {
        ACCESS_DENIED_HINT.to_string()
    } else if is_credential_error(status, kind, message) {
        CREDENTIALS_HINT.to_string()
    } else {
        sanitize(message, 300)
    };
    if !text.is_empty() {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The advice for Bedrock's `AccessDeniedException` (403): Bedrock answers it both when the
/// account has no access to the model ("You don't have access to the model with the specified
/// model ID.") and when IAM denies `bedrock:InvokeModel`.
pub const ACCESS_DENIED_HINT: &str = "enable access to this model in the Amazon Bedrock console (Model access) in the region the gateway uses (AWS_REGION_NAME; for an inference profile, in every region it routes to), and allow bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream for the gateway's AWS identity";

/// The advice for the other credential and signature errors.
pub const CREDENTIALS_HINT: &str = "the request was not authorized (check the gateway's AWS credentials, region and IAM permissions for bedrock:InvokeModel)";

/// The answer when Envoy got no answer from Bedrock: `details` is Envoy's response code
/// details (`upstream_response_timeout`, `upstream_reset_before_response_started{...}`, ...).
///
/// Named prompts answer like the gateway does for LiteLLM's own failures (see
/// [`prompt_failure`]): a timeout is `Timeout` (408), an unreachable endpoint
/// `APIConnectionError` (500). Other families: 504 [`GitlabError::upstream_timeout`] or
/// a 503 naming the endpoint and the cause ([`EnvoyFailure`]).
pub fn from_envoy(family: Family, failure: &EnvoyFailure, endpoint: &str) -> GitlabError {
    match (family, failure) {
        (Family::Prompts, EnvoyFailure::Timeout) => {
            prompt_failure(408, "Amazon Bedrock did not answer in time")
        }
        (Family::Prompts, EnvoyFailure::Overflow) => prompt_failure(503, OVERFLOW_TEXT),
        (Family::Prompts, f) => prompt_failure(500, &f.unreachable_text(endpoint)),
        (_, EnvoyFailure::Timeout) => GitlabError::upstream_timeout(),
        (_, EnvoyFailure::Overflow) => {
            GitlabError::detail(503, &format!("Inference failed: {OVERFLOW_TEXT}"))
        }
        (_, f) => GitlabError::detail(
            503,
            &format!("Inference failed: {}", f.unreachable_text(endpoint)),
        ),
    }
}

const OVERFLOW_TEXT: &str = "this AI gateway is at its concurrency limit for Amazon Bedrock \
     requests (DUO_BEDROCK_MAX_CONCURRENT_REQUESTS); retry shortly";

/// Why Envoy answered instead of Bedrock, from its response code details (Envoy's
/// `StreamInfo::ResponseCodeDetails`: `upstream_response_timeout`, `no_healthy_upstream`,
/// `upstream_reset_before_response_started{<reset reason>[,<transport failure>]}`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvoyFailure {
    /// The route's (or the prompt's own) timeout.
    Timeout,
    /// The `bedrock` cluster's circuit breakers refused the request (too many at once).
    Overflow,
    /// No address for the endpoint: with Envoy's DNS clusters, the name did not resolve.
    NoAddress,
    /// Connection refused by the endpoint.
    Refused,
    /// The TCP connection failed without a more precise reason (refused or unreachable).
    ConnectFailed,
    /// Anything else (TLS failure, reset, ...), Envoy's own words kept.
    Other(String),
}

impl EnvoyFailure {
    /// Envoy's own answer to a callout (`dispatch_http_call`) it could not deliver: a 503 whose
    /// body is Envoy's local-reply text (`no healthy upstream`, `upstream connect error or
    /// disconnect/reset before headers. reset reason: ..., transport failure reason: ...`),
    /// not an answer of the remote server. `None` when the server itself answered.
    pub fn from_callout_answer(status: &str, body: &[u8]) -> Option<EnvoyFailure> {
        if status != "503" {
            return None;
        }
        let text = String::from_utf8_lossy(body.get(..400).unwrap_or(body));
        let text = text.trim();
        if text == "no healthy upstream" {
            Some(EnvoyFailure::NoAddress)
        } else if let Some(rest) =
            text.strip_prefix("upstream connect error or disconnect/reset before headers.")
        {
            let rest = rest.trim();
            if rest.contains("Connection refused") {
                Some(EnvoyFailure::Refused)
            } else if rest.contains("remote connection failure") {
                Some(EnvoyFailure::ConnectFailed)
            } else if rest.contains("timeout") {
                Some(EnvoyFailure::Timeout)
            } else {
                Some(EnvoyFailure::Other(sanitize(rest, 160)))
            }
        } else {
            None
        }
    }

    /// What went wrong reaching `url`, for a log line.
    pub fn describe(&self, url: &str) -> String {
        match self {
            EnvoyFailure::Timeout => format!("{url} did not answer in time"),
            EnvoyFailure::Overflow => format!("too many requests in flight to {url}"),
            EnvoyFailure::NoAddress => {
                format!("{url}: DNS lookup failed or gave no address (nothing answered)")
            }
            EnvoyFailure::Refused => format!("{url} refused the connection (nothing answered)"),
            EnvoyFailure::ConnectFailed => format!(
                "could not connect to {url}: connection refused or host unreachable (nothing answered)"
            ),
            EnvoyFailure::Other(why) => format!("could not reach {url} ({why})"),
        }
    }

    pub fn classify(details: &str) -> EnvoyFailure {
        let d = details.to_ascii_lowercase();
        if d.contains("timeout") {
            EnvoyFailure::Timeout
        } else if d.contains("overflow") {
            EnvoyFailure::Overflow
        } else if d.contains("no_healthy_upstream") {
            EnvoyFailure::NoAddress
        } else if d.contains("refused_stream") {
            // An HTTP/2 stream refused by the endpoint (REFUSED_STREAM): it answered, so
            // not "connection refused".
            EnvoyFailure::Other("the endpoint refused the HTTP/2 stream (refused_stream)".into())
        } else if d.contains("refused") || d.contains("_111") {
            EnvoyFailure::Refused
        } else if d.contains("remote_connection_failure") {
            EnvoyFailure::ConnectFailed
        } else {
            EnvoyFailure::Other(sanitize(details, 120))
        }
    }

    /// The `error_type` label of `duo_bedrock_upstream_errors_total` and the request log.
    pub fn error_type(&self) -> &'static str {
        match self {
            EnvoyFailure::Timeout => "upstream_timeout",
            EnvoyFailure::Overflow => "concurrency_limit",
            EnvoyFailure::NoAddress => "dns_failure",
            EnvoyFailure::Refused => "connection_refused",
            EnvoyFailure::ConnectFailed => "connection_failed",
            EnvoyFailure::Other(_) => "upstream_unavailable",
        }
    }

    /// What an admin reads: which endpoint, and what went wrong reaching it.
    fn unreachable_text(&self, endpoint: &str) -> String {
        self.unreachable_text_for(&BedrockEndpoint::RUNTIME, endpoint)
    }

    /// [`EnvoyFailure::unreachable_text`] for any of the filter's AWS endpoints: `which` names
    /// the service and the variable that overrides its address.
    pub fn unreachable_text_for(&self, which: &BedrockEndpoint, endpoint: &str) -> String {
        let BedrockEndpoint { service, variable } = which;
        match self {
            EnvoyFailure::NoAddress => format!(
                "the {service} endpoint {endpoint} could not be resolved (DNS lookup \
                 failed or gave no address; check AWS_REGION_NAME / {variable})"
            ),
            EnvoyFailure::Refused => {
                format!("the {service} endpoint {endpoint} refused the connection")
            }
            EnvoyFailure::ConnectFailed => format!(
                "could not connect to the {service} endpoint {endpoint} (connection refused \
                 or host unreachable)"
            ),
            EnvoyFailure::Timeout => format!("{service} ({endpoint}) did not answer in time"),
            EnvoyFailure::Overflow => format!("{service} ({endpoint}): {OVERFLOW_TEXT}"),
            EnvoyFailure::Other(reason) if !reason.is_empty() => {
                format!("{service} ({endpoint}) is unreachable ({reason})")
            }
            EnvoyFailure::Other(_) => format!("{service} ({endpoint}) is unreachable"),
        }
    }
}

/// One of the AWS endpoints the filter calls, as an admin knows it: the service's name and the
/// variable that overrides its address.
pub struct BedrockEndpoint {
    pub service: &'static str,
    pub variable: &'static str,
}

impl BedrockEndpoint {
    /// Bedrock runtime (InvokeModel, InvokeModelWithResponseStream).
    pub const RUNTIME: BedrockEndpoint = BedrockEndpoint {
        service: "Amazon Bedrock",
        variable: "AWS_BEDROCK_RUNTIME_ENDPOINT",
    };
    /// Bedrock agent runtime (knowledge base Retrieve).
    pub const AGENT_RUNTIME: BedrockEndpoint = BedrockEndpoint {
        service: "Amazon Bedrock agent runtime",
        variable: "AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT",
    };
}

/// True for Bedrock errors whose message must not be forwarded (see [`from_bedrock`]).
pub fn is_credential_error(status: u16, kind: &str, message: &str) -> bool {
    if status == 401 || status == 403 || CREDENTIAL_KINDS.contains(&kind) {
        return true;
    }
    let lower = message.to_ascii_lowercase();
    [
        "canonical",
        "string-to-sign",
        "string to sign",
        "security-token",
        "signature",
    ]
    .iter()
    .any(|m| lower.contains(m))
}

/// Untrusted text made safe for an error text: control characters dropped, at most
/// `max_chars` characters kept, `…` appended when something was cut.
pub fn bounded_text(s: &str, max_chars: usize) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect();
    if s.chars()
        .filter(|c| !c.is_control())
        .nth(max_chars)
        .is_some()
    {
        out.push('…');
    }
    out
}

/// Bedrock's error message for the sidecar log: [`bounded_text`] to 300 characters, with the
/// value of any `x-amz-security-token` / `X-Amz-Security-Token=` it quotes (signature-mismatch
/// messages can quote the canonical request) replaced by `[redacted]`.
pub fn log_text(message: &str) -> String {
    const MARKER: &str = "x-amz-security-token";
    let lower = message.to_ascii_lowercase();
    let mut out = String::with_capacity(message.len());
    let mut from = 0;
    while let Some(i) = lower.get(from..).and_then(|l| l.find(MARKER)) {
        let value_start = from + i + MARKER.len();
        let rest = message.get(value_start..).unwrap_or("");
        let sep = rest
            .char_indices()
            .take_while(|(_, c)| matches!(c, ':' | '=' | ' '))
            .last()
            .map_or(0, |(j, c)| j + c.len_utf8());
        let value_len = rest
            .get(sep..)
            .unwrap_or("")
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '&' | ',' | ';'))
            .unwrap_or(rest.len().saturating_sub(sep));
        out.push_str(message.get(from..value_start + sep).unwrap_or(""));
        if value_len > 0 {
            out.push_str("[redacted]");
        }
        from = value_start + sep + value_len;
    }
    out.push_str(message.get(from..).unwrap_or(""));
    bounded_text(&out, 300)
}

/// [`bounded_text`], trimmed.
pub fn sanitize(s: &str, max_chars: usize) -> String {
    bounded_text(s, max_chars).trim().to_string()
}

/// The statuses a 421 detail names by their reason phrase; any other is `"<status>: Error"`.
const NAMED_STATUSES: &[u16] = &[
    400, 401, 402, 403, 404, 405, 408, 409, 413, 415, 421, 422, 424, 429, 500, 501, 502, 503, 504,
];

/// The reason phrase of a 421 `"<status>: <reason>"` detail: Python's `http.HTTPStatus`
/// spelling (what AIGW prints, from [`crate::bedrock::errors::reason_phrase`]) for the
/// statuses in [`NAMED_STATUSES`], `"Error"` for any other.
pub fn reason_phrase(status: u16) -> &'static str {
    if NAMED_STATUSES.contains(&status) {
        crate::bedrock::errors::reason_phrase(status)
    } else {
        "Error"
    }
}

/// Test helpers shared by the GitLab-side test modules: reading error bodies.
#[cfg(test)]
pub(crate) mod testing {
    use super::GitlabError;
    use serde_json::Value;

    /// The `detail` of an error body.
    pub fn detail(e: &GitlabError) -> Value {
        serde_json::from_str::<Value>(&e.body).unwrap()["detail"].clone()
    }

    /// The issues of a 422 validation error (asserts the status and that there is a list).
    pub fn validation_issues(e: &GitlabError) -> Vec<Value> {
        assert_eq!(e.status, 422, "{}", e.body);
        detail(e).as_array().cloned().unwrap()
    }

    /// The `type` of every issue of a validation error, in order.
    pub fn issue_types(e: &GitlabError) -> Vec<String> {
        validation_issues(e)
            .iter()
            .map(|i| i["type"].as_str().unwrap().to_string())
            .collect()
    }

    /// `(type, loc)` of the only issue of a validation error (asserts there is exactly one).
    pub fn only_issue(e: &GitlabError) -> (String, Value) {
        let list = validation_issues(e);
        assert_eq!(list.len(), 1, "{list:?}");
        (
            list[0]["type"].as_str().unwrap().to_string(),
            list[0]["loc"].clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: &GitlabError) -> Value {
        serde_json::from_str(&e.body).unwrap()
    }

    #[test]
    fn detail_is_escaped_json() {
        let e = GitlabError::detail(403, "say \"hi\"\n\\");
        assert_eq!(e.status, 403);
        assert_eq!(e.body, r#"{"detail":"say \"hi\"\n\\"}"#);
        assert_eq!(e.header("content-type"), Some("application/json"));
    }

    #[test]
    fn not_found_is_fastapi_text() {
        let e = GitlabError::not_found();
        assert_eq!(
            (e.status, e.body.as_str()),
            (404, r#"{"detail":"Not Found"}"#)
        );
    }

    #[test]
    fn validation_list_shape() {
        let e = GitlabError::validation(vec![
            ValidationIssue::new(
                "missing",
                vec!["body".into(), "current_file".into(), "file_name".into()],
                "Field required",
            ),
            ValidationIssue::new(
                "string_too_long",
                vec![
                    "body".into(),
                    "context".into(),
                    3usize.into(),
                    "name".into(),
                ],
                "String should have at most 1024 characters",
            )
            .with_ctx(json!({"max_length": 1024})),
        ]);
        assert_eq!(e.status, 422);
        assert_eq!(
            e.body,
            r#"{"detail":[{"type":"missing","loc":["body","current_file","file_name"],"msg":"Field required"},{"type":"string_too_long","loc":["body","context",3,"name"],"msg":"String should have at most 1024 characters","ctx":{"max_length":1024}}]}"#
        );
    }

    #[test]
    fn malformed_json_shape() {
        let e = GitlabError::malformed_json_at(7);
        assert_eq!(
            e.body,
            r#"{"detail":[{"type":"json_invalid","loc":["body",7],"msg":"JSON decode error"}]}"#
        );
        assert_eq!(GitlabError::malformed_json().status, 422);
    }

    #[test]
    fn throttling_maps_to_429_with_retry_after() {
        for (status, kind) in [
            (429, ""),
            (400, "ThrottlingException"),
            (429, "ModelNotReadyException"),
            (503, "ThrottlingException:http://internal.amazon.com/coral/"),
        ] {
            let e = from_bedrock(Family::CodeSuggestions, status, kind, "slow down", None);
            assert_eq!(e.status, 429, "{status} {kind}");
            assert_eq!(body(&e)["detail"], TOO_MANY_REQUESTS_DETAIL);
            assert_eq!(e.header("retry-after"), Some("1"));
            assert_eq!(e.header("content-type"), Some("application/json"));
        }
        let e = from_bedrock(Family::Chat, 429, "ThrottlingException", "", Some(" 17 "));
        assert_eq!((e.status, e.header("retry-after")), (429, Some("17")));
        let e = from_bedrock(Family::Chat, 429, "", "", Some("bad\nvalue"));
        assert_eq!(e.header("retry-after"), Some("1"));
        let long = "9".repeat(65);
        let e = from_bedrock(Family::Chat, 429, "", "", Some(&long));
        assert_eq!(e.header("retry-after"), Some("1"));
    }

    /// Every Bedrock error class of the emulator's fault table, as "Test connection" gets it.
    #[test]
    fn prompts_family_maps_every_error_to_421() {
        let cases = [
            (429, "ThrottlingException", "Too many requests, please wait before trying again.",
             "429: Too Many Requests - ThrottlingException: Too many requests, please wait before trying again."),
            (429, "ModelNotReadyException", "Model is not ready.",
             "429: Too Many Requests - ModelNotReadyException: Model is not ready."),
            (400, "ValidationException", "Invocation of model ID x with on-demand throughput isn't supported.",
             "400: Bad Request - ValidationException: Invocation of model ID x with on-demand throughput isn't supported."),
            (404, "ResourceNotFoundException", "The provided model identifier is invalid.",
             "404: Not Found - ResourceNotFoundException: The provided model identifier is invalid."),
            (408, "ModelTimeoutException", "Model has timed out.",
             "408: Request Timeout - ModelTimeoutException: Model has timed out."),
            (424, "ModelErrorException", "Received server error (500) from model.",
             "424: Failed Dependency - ModelErrorException: Received server error (500) from model."),
            (500, "InternalServerException", "The system encountered an unexpected error.",
             "500: Internal Server Error - InternalServerException: The system encountered an unexpected error."),
            (503, "ServiceUnavailableException", "Bedrock is unable to process your request.",
             "503: Service Unavailable - ServiceUnavailableException: Bedrock is unable to process your request."),
            (599, "", "", "599: Error"),
        ];
        for (status, kind, message, detail) in cases {
            let e = from_bedrock(Family::Prompts, status, kind, message, Some("3"));
            assert_eq!(e.status, 421, "{status} {kind}");
            assert_eq!(body(&e), json!({ "detail": detail }), "{status} {kind}");
            assert_eq!(e.header("retry-after"), None);
            assert_eq!(e.header("content-type"), Some("application/json"));
        }
    }

    #[test]
    fn prompt_421_for_access_denied_says_what_to_enable_and_never_echoes_credentials() {
        let e = from_bedrock(
            Family::Prompts,
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
            None,
        );
        assert_eq!(e.status, 421);
        assert_eq!(
            body(&e)["detail"],
            format!("403: Forbidden - AccessDeniedException: {ACCESS_DENIED_HINT}")
        );
        assert!(ACCESS_DENIED_HINT.contains("Amazon Bedrock console"));
        let leaky = "The request signature we calculated does not match. The Canonical String for this request should have been 'x-amz-security-token:SECRET'";
        for (status, kind) in [
            (403, "InvalidSignatureException"),
            (403, "UnrecognizedClientException"),
            (400, "ValidationException"),
            (400, "ExpiredTokenException"),
        ] {
            let e = from_bedrock(Family::Prompts, status, kind, leaky, None);
            assert_eq!(e.status, 421);
            assert!(!e.body.contains("SECRET"), "{}", e.body);
            assert!(
                e.body.starts_with(&format!(r#"{{"detail":"{status}: "#)),
                "{}",
                e.body
            );
            assert!(e.body.contains(CREDENTIALS_HINT), "{}", e.body);
        }
        // the kind is bounded, control characters go
        let e = from_bedrock(Family::Prompts, 400, &"K".repeat(200), "a\nb", None);
        assert!(e.body.len() < 450, "{}", e.body);
    }

    #[test]
    fn envoy_answers_to_callouts_are_told_from_the_servers() {
        let f = EnvoyFailure::from_callout_answer;
        assert_eq!(
            f("503", b"no healthy upstream"),
            Some(EnvoyFailure::NoAddress)
        );
        assert_eq!(
            f("503", b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused"),
            Some(EnvoyFailure::Refused)
        );
        assert_eq!(
            f("503", b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"),
            Some(EnvoyFailure::ConnectFailed)
        );
        assert!(matches!(
            f("503", b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"),
            Some(EnvoyFailure::Other(w)) if w.contains("connection termination")
        ));
        // GitLab's own 503 (maintenance page, ...) is an answer.
        assert_eq!(f("503", b"<html>GitLab is not responding</html>"), None);
        assert_eq!(f("200", b"no healthy upstream"), None);
        assert_eq!(
            EnvoyFailure::Refused.describe("http://gitlab.example:8181"),
            "http://gitlab.example:8181 refused the connection (nothing answered)"
        );
    }

    #[test]
    fn envoy_failures() {
        let f = |d: &str| EnvoyFailure::classify(d);
        const EP: &str = "bedrock-runtime.us-east-1.amazonaws.com";
        // HTTP/2 REFUSED_STREAM: the endpoint answered; not a refused connection.
        let refused = f("upstream_reset_before_response_started{remote_refused_stream_reset}");
        assert_eq!(refused.error_type(), "upstream_unavailable");
        assert!(
            body(&from_envoy(Family::CodeSuggestions, &refused, EP))["detail"]
                .as_str()
                .unwrap()
                .contains("refused the HTTP/2 stream")
        );
        let e = from_envoy(Family::Prompts, &f("upstream_response_timeout"), EP);
        assert_eq!(
            (e.status, body(&e)["detail"].as_str().unwrap()),
            (
                421,
                "408: Request Timeout - Amazon Bedrock did not answer in time"
            )
        );
        let e = from_envoy(
            Family::Prompts,
            &f("upstream_reset_before_response_started{connection_failure}"),
            EP,
        );
        assert_eq!(
            (e.status, body(&e)["detail"].as_str().unwrap()),
            (421, "500: Internal Server Error - Amazon Bedrock (bedrock-runtime.us-east-1.amazonaws.com) is unreachable (upstream_reset_before_response_started{connection_failure})")
        );
        assert_eq!(
            body(&from_envoy(Family::Prompts, &f(""), EP))["detail"],
            "500: Internal Server Error - Amazon Bedrock (bedrock-runtime.us-east-1.amazonaws.com) is unreachable"
        );
        let e = from_envoy(
            Family::Prompts,
            &f("upstream_reset_before_response_started{overflow}"),
            EP,
        );
        assert_eq!(e.status, 421);
        assert!(body(&e)["detail"]
            .as_str()
            .unwrap()
            .starts_with("503: Service Unavailable - this AI gateway is at its concurrency limit"));
        for family in [Family::Chat, Family::CodeSuggestions] {
            assert_eq!(
                from_envoy(family, &f("upstream_response_timeout"), EP),
                GitlabError::upstream_timeout()
            );
            let detail = |d: &str| {
                let e = from_envoy(family, &f(d), EP);
                assert_eq!(e.status, 503);
                body(&e)["detail"].as_str().unwrap().to_string()
            };
            assert_eq!(
                detail("connection_failure"),
                "Inference failed: Amazon Bedrock (bedrock-runtime.us-east-1.amazonaws.com) is unreachable (connection_failure)"
            );
            assert!(detail("no_healthy_upstream").contains(
                "the Amazon Bedrock endpoint bedrock-runtime.us-east-1.amazonaws.com could not be resolved"
            ));
            assert_eq!(
                detail("upstream_reset_before_response_started{remote_connection_failure,delayed_connect_error:_Connection_refused}"),
                "Inference failed: the Amazon Bedrock endpoint bedrock-runtime.us-east-1.amazonaws.com refused the connection"
            );
            assert!(detail("upstream_reset_before_response_started{overflow}")
                .contains("concurrency limit"));
        }
        for (d, t) in [
            ("upstream_response_timeout", "upstream_timeout"),
            ("upstream_reset_before_response_started{overflow}", "concurrency_limit"),
            ("no_healthy_upstream", "dns_failure"),
            ("upstream_reset_before_response_started{remote_connection_failure,delayed_connect_error:_111}", "connection_refused"),
            ("upstream_reset_before_response_started{connection_termination}", "upstream_unavailable"),
        ] {
            assert_eq!(f(d).error_type(), t, "{d}");
        }
    }

    #[test]
    fn access_denied_hint_outside_prompts_too() {
        let e = from_bedrock(Family::Chat, 403, "AccessDeniedException", "secret", None);
        assert_eq!(e.status, 503);
        assert_eq!(
            body(&e)["detail"],
            format!("Inference failed: Amazon Bedrock returned 403 AccessDeniedException: {ACCESS_DENIED_HINT}")
        );
        assert!(!e.body.contains("secret"));
    }

    #[test]
    fn log_text_redacts_session_tokens() {
        let m = "The Canonical String for this request should have been 'POST\n/model/x/invoke\n\nhost:h\nx-amz-security-token:FQoGSECRET\nx-amz-date:2024' and X-Amz-Security-Token=ANOTHER&x=1";
        let l = log_text(m);
        assert!(!l.contains("SECRET") && !l.contains("ANOTHER"), "{l}");
        assert!(l.contains("x-amz-security-token:[redacted]"), "{l}");
        assert!(l.contains("X-Amz-Security-Token=[redacted]&x=1"), "{l}");
        assert_eq!(log_text("plain message"), "plain message");
        assert_eq!(log_text("x-amz-security-token"), "x-amz-security-token");
        assert_eq!(log_text(&"é".repeat(400)).chars().count(), 301);
    }

    #[test]
    fn bounded_and_sanitized_text() {
        assert_eq!(bounded_text(" a\u{0}b\r\n ", 10), " ab ");
        assert_eq!(bounded_text("abc", 3), "abc");
        assert_eq!(bounded_text("abcd", 3), "abc…");
        assert_eq!(bounded_text("ab\ncd", 3), "abc…");
        assert_eq!(bounded_text("", 0), "");
        assert_eq!(sanitize(" a\u{0}b\r\n ", 10), "ab");
        assert_eq!(sanitize(" éé é ", 3), "éé…");
    }

    #[test]
    fn reason_phrases_of_421_details() {
        let expected = [
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (402, "Payment Required"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (408, "Request Timeout"),
            (409, "Conflict"),
            (413, "Request Entity Too Large"),
            (415, "Unsupported Media Type"),
            (421, "Misdirected Request"),
            (422, "Unprocessable Entity"),
            (424, "Failed Dependency"),
            (429, "Too Many Requests"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
            (504, "Gateway Timeout"),
        ];
        for (status, phrase) in expected {
            assert_eq!(reason_phrase(status), phrase, "{status}");
        }
        for status in [0, 200, 406, 599, u16::MAX] {
            assert_eq!(reason_phrase(status), "Error", "{status}");
        }
    }

    #[test]
    fn other_errors_map_to_503_with_kind_and_safe_message() {
        let e = from_bedrock(
            Family::CodeSuggestions,
            400,
            "ValidationException",
            "Invocation of model ID x with on-demand throughput isn't supported.",
            None,
        );
        assert_eq!(e.status, 503);
        assert_eq!(
            body(&e)["detail"],
            "Inference failed: Amazon Bedrock returned 400 ValidationException: Invocation of model ID x with on-demand throughput isn't supported."
        );
        let e = from_bedrock(Family::Chat, 500, "", "", None);
        assert_eq!(
            body(&e)["detail"],
            "Inference failed: Amazon Bedrock returned 500"
        );
        assert!(e.header("retry-after").is_none());
    }

    #[test]
    fn credential_messages_are_withheld() {
        let leaky = "The request signature we calculated does not match. The Canonical String for this request should have been 'x-amz-security-token:SECRET'";
        for (status, kind) in [
            (403, "InvalidSignatureException"),
            (400, "ValidationException"),
            (401, ""),
            (400, "ExpiredTokenException"),
        ] {
            let e = from_bedrock(Family::CodeSuggestions, status, kind, leaky, None);
            assert_eq!(e.status, 503);
            assert!(!e.body.contains("SECRET"), "{}", e.body);
            assert!(e.body.contains("not authorized"));
        }
    }

    #[test]
    fn long_messages_are_truncated_and_control_chars_dropped() {
        let msg = format!("a\u{0}b\r\n{}", "é".repeat(1000));
        let e = from_bedrock(
            Family::CodeSuggestions,
            500,
            "InternalServerException",
            &msg,
            None,
        );
        let d = body(&e)["detail"].as_str().unwrap().to_string();
        assert!(d.contains(": ab"));
        assert!(d.ends_with('…'));
        assert!(d.chars().count() < 400);
    }

    #[test]
    fn error_kind_normalisation() {
        assert_eq!(
            normalize_error_kind("ThrottlingException"),
            "ThrottlingException"
        );
        assert_eq!(
            normalize_error_kind("com.amazon#ValidationException:http://x"),
            "ValidationException"
        );
        assert_eq!(normalize_error_kind(""), "");
        assert_eq!(normalize_error_kind("#"), "");
    }

    #[test]
    fn upstream_failures() {
        let e = GitlabError::upstream_timeout();
        assert_eq!(e.status, 504);
        assert!(body(&e)["detail"]
            .as_str()
            .unwrap()
            .starts_with("Inference failed"));
    }
}
