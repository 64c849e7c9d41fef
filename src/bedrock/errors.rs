//! Bedrock error responses: HTTP errors from InvokeModel(WithResponseStream) and exceptions
//! delivered inside the event stream.
//!
//! Contract: `docs/bedrock-contract.md#errors` (the `x-amzn-errortype` header, botocore's `:`/`#`
//! stripping, `message`/`Message` bodies, and the status table) and `#invoke-with-response-stream`
//! (`ResponseStream` exception members). [`reason_phrase`] gives the standard HTTP reason phrases
//! used in GitLab's `"<code>: <reason>"` error details.

use std::fmt;

use serde_json::Value;

/// A Bedrock error, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockError {
    pub status: u16,
    /// Exception name, e.g. `ThrottlingException`.
    pub kind: String,
    pub message: String,
}

impl fmt::Display for BedrockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.kind, self.status, self.message)
    }
}

/// Longest message kept (bytes, cut on a character boundary).
pub const MAX_MESSAGE_LEN: usize = 4096;
const MAX_KIND_LEN: usize = 128;

impl BedrockError {
    /// `ThrottlingException`, `ModelNotReadyException` (retried by the AWS SDKs) or HTTP 429.
    pub fn is_throttle(&self) -> bool {
        self.status == 429
            || self.kind.eq_ignore_ascii_case("ThrottlingException")
            || self.kind.eq_ignore_ascii_case("ModelNotReadyException")
    }

    /// Maps an in-stream exception (`:exception-type` such as `throttlingException`, or an
    /// `:error-code`) to the status and exception name the same error has as an HTTP response.
    pub fn from_stream_exception(kind: &str, message: &str) -> BedrockError {
        let name = clean_kind(kind).unwrap_or_else(|| "InternalServerException".to_string());
        let mut chars = name.chars();
        let name: String = match chars.next() {
            Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
            None => name,
        };
        let status = status_for_kind(&name).unwrap_or(500);
        BedrockError {
            status,
            kind: name,
            message: truncate(message),
        }
    }
}

/// Builds a [`BedrockError`] from a non-2xx response.
///
/// `kind`: the `x-amzn-errortype` header (everything from the first `:` on, and anything up to
/// a `#`, removed), else the body's `__type`/`code`/`Code`, else a name derived from `status`.
/// `message`: the body's `message`/`Message`, else the reason phrase.
pub fn parse_error(status: u16, errortype_header: Option<&str>, body: &[u8]) -> BedrockError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let obj = json.as_ref().filter(|v| v.is_object());
    let body_str = |key: &str| obj.and_then(|v| v.get(key)).and_then(Value::as_str);
    let kind = errortype_header
        .and_then(clean_kind)
        .or_else(|| {
            ["__type", "code", "Code"]
                .iter()
                .find_map(|k| body_str(k).and_then(clean_kind))
        })
        .unwrap_or_else(|| kind_for_status(status).to_string());
    let message = ["message", "Message"]
        .iter()
        .find_map(|k| body_str(k))
        .map(truncate)
        .unwrap_or_else(|| reason_phrase(status).to_string());
    BedrockError {
        status,
        kind,
        message,
    }
}

/// botocore's rule: drop everything from the first `:`, then anything up to the last `#`.
/// Names that are empty, too long or contain odd characters are ignored.
fn clean_kind(raw: &str) -> Option<String> {
    let s = raw.split(':').next().unwrap_or("");
    let s = s.rsplit('#').next().unwrap_or("").trim();
    let ok = !s.is_empty()
        && s.len() <= MAX_KIND_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    ok.then(|| s.to_string())
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_MESSAGE_LEN {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE_LEN;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("").to_string()
}

/// The status table of docs/bedrock-contract.md#errors (for 400 and 429, the more common
/// exception).
fn kind_for_status(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        401 | 403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        500 => "InternalServerException",
        503 => "ServiceUnavailableException",
        _ => "UnknownError",
    }
}

fn status_for_kind(kind: &str) -> Option<u16> {
    const TABLE: [(&str, u16); 12] = [
        ("ValidationException", 400),
        ("ServiceQuotaExceededException", 400),
        ("AccessDeniedException", 403),
        ("ResourceNotFoundException", 404),
        ("ModelTimeoutException", 408),
        ("ModelErrorException", 424),
        ("ModelStreamErrorException", 424),
        ("ThrottlingException", 429),
        ("ModelNotReadyException", 429),
        ("InternalServerException", 500),
        ("InternalFailure", 500),
        ("ServiceUnavailableException", 503),
    ];
    TABLE
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(kind))
        .map(|(_, s)| *s)
}

/// Standard HTTP reason phrase, worded exactly as Python's `http.HTTPStatus(code).phrase`
/// (3.11/3.12, what the Python AI Gateway prints in `"<code>: <reason>"`); `"Unknown Status"`
/// for codes Python does not know.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a Teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "Unknown Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_kind_is_stripped_like_botocore() {
        let e = parse_error(
            400,
            Some("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            br#"{"message":"Malformed input request: extraneous key [model] is not permitted"}"#,
        );
        assert_eq!(e.kind, "ValidationException");
        assert_eq!(
            e.message,
            "Malformed input request: extraneous key [model] is not permitted"
        );
        assert_eq!(e.status, 400);
        assert!(!e.is_throttle());
        assert_eq!(
            parse_error(400, Some("aws.protocoltests#FooError:http://x"), b"").kind,
            "FooError"
        );
        assert_eq!(
            parse_error(400, Some("com.amazon.coral#ValidationException"), b"").kind,
            "ValidationException"
        );
        assert_eq!(
            parse_error(429, Some(" ThrottlingException "), b"").kind,
            "ThrottlingException"
        );
    }

    #[test]
    fn body_type_and_code_fallbacks() {
        let e = parse_error(
            403,
            None,
            br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","Message":"The security token included in the request is invalid."}"#,
        );
        assert_eq!(e.kind, "UnrecognizedClientException");
        assert_eq!(
            e.message,
            "The security token included in the request is invalid."
        );
        let e = parse_error(
            404,
            None,
            br#"{"code":"ResourceNotFoundException","message":"m"}"#,
        );
        assert_eq!(e.kind, "ResourceNotFoundException");
        let e = parse_error(404, None, br#"{"Code":"X"}"#);
        assert_eq!(e.kind, "X");
        assert_eq!(e.message, "Not Found");
        // Header wins over body.
        let e = parse_error(400, Some("A"), br#"{"__type":"B"}"#);
        assert_eq!(e.kind, "A");
        // An empty or junk header falls back to the body, then to the status.
        let e = parse_error(400, Some(":xyz"), br#"{"__type":"B"}"#);
        assert_eq!(e.kind, "B");
        let e = parse_error(400, Some("bad kind\r\n"), b"");
        assert_eq!(e.kind, "ValidationException");
    }

    #[test]
    fn status_table_and_reason_phrase_fallback() {
        let cases = [
            (400, "ValidationException", "Bad Request"),
            (403, "AccessDeniedException", "Forbidden"),
            (404, "ResourceNotFoundException", "Not Found"),
            (408, "ModelTimeoutException", "Request Timeout"),
            (424, "ModelErrorException", "Failed Dependency"),
            (429, "ThrottlingException", "Too Many Requests"),
            (500, "InternalServerException", "Internal Server Error"),
            (503, "ServiceUnavailableException", "Service Unavailable"),
            (502, "UnknownError", "Bad Gateway"),
            (599, "UnknownError", "Unknown Status"),
        ];
        for (status, kind, reason) in cases {
            for body in [
                &b""[..],
                b"<html>oops</html>",
                b"[1]",
                br#"{"message":7}"#,
                b"null",
            ] {
                let e = parse_error(status, None, body);
                assert_eq!(
                    (e.status, e.kind.as_str(), e.message.as_str()),
                    (status, kind, reason)
                );
            }
        }
        assert!(parse_error(429, None, b"").is_throttle());
    }

    #[test]
    fn throttle_detection() {
        assert!(parse_error(400, Some("ThrottlingException"), b"").is_throttle());
        assert!(parse_error(503, Some("ModelNotReadyException"), b"").is_throttle());
        assert!(parse_error(429, Some("ServiceQuotaExceededException"), b"").is_throttle());
        assert!(!parse_error(400, Some("ServiceQuotaExceededException"), b"").is_throttle());
        assert!(!parse_error(500, None, b"").is_throttle());
    }

    #[test]
    fn stream_exceptions_map_to_http_shape() {
        let e = BedrockError::from_stream_exception("throttlingException", "slow down");
        assert_eq!(
            (e.status, e.kind.as_str(), e.message.as_str()),
            (429, "ThrottlingException", "slow down")
        );
        assert!(e.is_throttle());
        for (k, s, name) in [
            (
                "modelStreamErrorException",
                424,
                "ModelStreamErrorException",
            ),
            ("validationException", 400, "ValidationException"),
            ("internalServerException", 500, "InternalServerException"),
            ("modelTimeoutException", 408, "ModelTimeoutException"),
            (
                "serviceUnavailableException",
                503,
                "ServiceUnavailableException",
            ),
            ("InternalFailure", 500, "InternalFailure"),
            ("somethingNew", 500, "SomethingNew"),
            ("", 500, "InternalServerException"),
            ("bad kind!", 500, "InternalServerException"),
        ] {
            let e = BedrockError::from_stream_exception(k, "");
            assert_eq!((e.status, e.kind.as_str()), (s, name), "{k}");
        }
    }

    #[test]
    fn long_messages_are_cut_on_char_boundaries() {
        let long = "é".repeat(5000);
        let body = serde_json::json!({ "message": long }).to_string();
        let e = parse_error(400, None, body.as_bytes());
        assert!(e.message.len() <= MAX_MESSAGE_LEN);
        assert!(e.message.len() >= MAX_MESSAGE_LEN - 1);
        assert!(e.message.chars().all(|c| c == 'é'));
        let e = BedrockError::from_stream_exception("x", &"a".repeat(10_000));
        assert_eq!(e.message.len(), MAX_MESSAGE_LEN);
        assert_eq!(
            parse_error(400, Some(&"K".repeat(500)), b"").kind,
            "ValidationException"
        );
    }

    #[test]
    fn display() {
        let e = parse_error(
            429,
            Some("ThrottlingException"),
            br#"{"message":"Too many tokens"}"#,
        );
        assert_eq!(e.to_string(), "ThrottlingException (429): Too many tokens");
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(401), "Unauthorized");
        assert_eq!(reason_phrase(413), "Request Entity Too Large");
        assert_eq!(reason_phrase(504), "Gateway Timeout");
        assert_eq!(reason_phrase(0), "Unknown Status");
        assert_eq!(reason_phrase(u16::MAX), "Unknown Status");
    }
}
