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
        #[derive(Serialize)]
        struct DetailList<'a> {
            detail: &'a [ValidationIssue],
        }
        // Serialised from structs (not `json!`) so the keys keep FastAPI's order.
        let body = serde_json::to_string(&DetailList { detail: &errors })
            .unwrap_or_else(|_| r#"{"detail":"Validation error"}"#.to_string());
        Self {
            status: 422,
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

    /// 503 for an Envoy-side failure reaching Bedrock (connect failure, reset, overflow...).
    /// `reason` should be a short Envoy reason such as `connection_failure`.
    pub fn upstream_unavailable(reason: &str) -> Self {
        let reason = sanitize(reason, 120);
        if reason.is_empty() {
            Self::detail(503, "Inference failed: Amazon Bedrock is unreachable")
        } else {
            Self::detail(
                503,
                &format!("Inference failed: Amazon Bedrock is unreachable ({reason})"),
            )
        }
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
/// * 429, `ThrottlingException` or `ModelNotReadyException` → 429
///   `{"detail":"Too many requests. Please try again later."}` with `retry-after` copied
///   from Bedrock when it is a short printable value, else `"1"` (AIGW copies the upstream
///   header; Bedrock seldom sends one, and Rails backs off on its own).
/// * [`Family::Prompts`] → 421 `{"detail":"<status>: <reason phrase>"}` (e.g. `"403: Forbidden"`),
///   which is what Rails' "Test connection" expects.
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
    if family == Family::Prompts {
        return GitlabError::detail(421, &format!("{status}: {}", reason_phrase(status)));
    }
    let mut detail = format!("Inference failed: Amazon Bedrock returned {status}");
    if !kind.is_empty() {
        detail.push(' ');
        detail.push_str(&sanitize(kind, 80));
    }
    if is_credential_error(status, kind, message) {
        detail.push_str(
            ": the request was not authorized (check the gateway's AWS credentials, region and IAM permissions for bedrock:InvokeModel)",
        );
    } else {
        let msg = sanitize(message, 300);
        if !msg.is_empty() {
            detail.push_str(": ");
            detail.push_str(&msg);
        }
    }
    GitlabError::detail(503, &detail)
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
        let e = from_bedrock(
            Family::Prompts,
            429,
            "ThrottlingException",
            "",
            Some(" 17 "),
        );
        assert_eq!((e.status, e.header("retry-after")), (429, Some("17")));
        let e = from_bedrock(Family::Chat, 429, "", "", Some("bad\nvalue"));
        assert_eq!(e.header("retry-after"), Some("1"));
        let long = "9".repeat(65);
        let e = from_bedrock(Family::Chat, 429, "", "", Some(&long));
        assert_eq!(e.header("retry-after"), Some("1"));
    }

    #[test]
    fn prompts_family_maps_to_421() {
        let e = from_bedrock(
            Family::Prompts,
            403,
            "AccessDeniedException",
            "secret",
            None,
        );
        assert_eq!(
            (e.status, e.body.as_str()),
            (421, r#"{"detail":"403: Forbidden"}"#)
        );
        let e = from_bedrock(Family::Prompts, 400, "ValidationException", "x", None);
        assert_eq!(e.body, r#"{"detail":"400: Bad Request"}"#);
        let e = from_bedrock(Family::Prompts, 424, "ModelErrorException", "x", None);
        assert_eq!(e.body, r#"{"detail":"424: Failed Dependency"}"#);
        let e = from_bedrock(Family::Prompts, 599, "", "", None);
        assert_eq!(e.body, r#"{"detail":"599: Error"}"#);
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
        let e = GitlabError::upstream_unavailable("connection_failure");
        assert_eq!(e.status, 503);
        assert_eq!(
            body(&e)["detail"],
            "Inference failed: Amazon Bedrock is unreachable (connection_failure)"
        );
        assert_eq!(
            body(&GitlabError::upstream_unavailable(""))["detail"],
            "Inference failed: Amazon Bedrock is unreachable"
        );
    }
}
