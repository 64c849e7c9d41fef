//! The text of the filter's log messages, in the two formats of `AIGW_LOGGING__FORMAT_JSON`
//! ([`LogFormat`]). Host-independent: `host::logging` hands the result to Envoy.
//!
//! Envoy writes every application log line itself, the filter's messages included: the filter
//! chooses only the message. With `AIGW_LOGGING__FORMAT_JSON=true` the launcher starts Envoy
//! with a JSON `--log-format` whose `message` is Envoy's JSON-escaped message (`%j`), so every
//! line, Envoy's own too, is one JSON object; the filter's messages are then JSON objects
//! themselves (`{"message":..,"request_id":..}`, the request record with its fields), inside
//! that string after Envoy's `wasm log <plugin> <root id>: ` prefix. Envoy 1.40 cannot splice a
//! message into the line as fields (README.md#logs, docs/envoy-proxy-wasm.md#logs).

use serde::Serialize;

pub use crate::config::LogFormat;

/// A message as the filter logs it: the text as is, or in JSON `{"message":..}` with the
/// request's id when it concerns a request.
pub fn message(format: LogFormat, text: &str, request_id: Option<&str>) -> String {
    match format {
        LogFormat::Text => text.to_string(),
        LogFormat::Json => {
            // The JSON text is at most 6 bytes per byte of `text` (`\u00XX`), which the caller
            // already holds: no new unbounded input.
            let mut o = Object::after("", text.len().saturating_add(64));
            o.field("message", text);
            if let Some(id) = request_id.filter(|id| !id.is_empty()) {
                o.field("request_id", id);
            }
            o.finish()
        }
    }
}

/// The facts of a request's one record (src/host/request/report.rs gathers them). `None` is
/// logged as `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestRecord<'a> {
    pub request_id: &'a str,
    pub endpoint: &'a str,
    pub feature: &'a str,
    pub model: &'a str,
    pub status: u16,
    pub bedrock_request_id: &'a str,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub duration_ms: u64,
    pub upstream_headers_ms: Option<u64>,
    pub time_to_first_token_ms: Option<u64>,
    pub auth_failure: Option<&'a str>,
    pub error_type: Option<&'a str>,
}

/// The one record of a request: `request {fields}` as text (`fields` a JSON object with
/// `request_id`, ...), or the fields beside `"message":"request"` as JSON.
///
/// The fields keep the order the line has always had: sorted by name, as in the
/// `serde_json::Map` it was built as before (the tests below keep that rendering as oracle).
pub fn record(format: LogFormat, r: &RequestRecord<'_>) -> String {
    let prefix = match format {
        LogFormat::Text => "request ",
        LogFormat::Json => "",
    };
    // A request record is about 400 bytes: one allocation, no regrowth.
    let mut o = Object::after(prefix, 512);
    o.field("auth_failure", &r.auth_failure);
    o.field("bedrock_request_id", r.bedrock_request_id);
    o.field("duration_ms", &r.duration_ms);
    o.field("endpoint", r.endpoint);
    o.field("error_type", &r.error_type);
    o.field("feature", r.feature);
    o.field("input_tokens", &r.input_tokens);
    if format == LogFormat::Json {
        o.field("message", "request");
    }
    o.field("model", r.model);
    o.field("output_tokens", &r.output_tokens);
    o.field("request_id", r.request_id);
    o.field("status", &r.status);
    o.field("time_to_first_token_ms", &r.time_to_first_token_ms);
    o.field("upstream_headers_ms", &r.upstream_headers_ms);
    o.finish()
}

/// A log line ending in a JSON object, written in place: compact, each value through
/// serde_json's serializer (its string escaping), the field names as they are (this module's
/// plain ASCII names: nothing to escape).
struct Object {
    line: Vec<u8>,
    first: bool,
}

impl Object {
    fn after(prefix: &str, capacity: usize) -> Object {
        let mut line = Vec::with_capacity(capacity);
        line.extend_from_slice(prefix.as_bytes());
        line.push(b'{');
        Object { line, first: true }
    }

    fn field(&mut self, name: &'static str, value: &(impl Serialize + ?Sized)) {
        if !self.first {
            self.line.push(b',');
        }
        self.first = false;
        self.line.push(b'"');
        self.line.extend_from_slice(name.as_bytes());
        self.line.extend_from_slice(b"\":");
        // Writing to a `Vec` does not fail, and these values have no map keys that could.
        let _ = value.serialize(&mut serde_json::Serializer::new(&mut self.line));
    }

    fn finish(mut self) -> String {
        self.line.push(b'}');
        // serde_json writes UTF-8, and the rest is the caller's `&str` and ASCII.
        String::from_utf8(self.line).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    /// The rendering this module replaced: a `json!` tree (src/host/request/report.rs) written
    /// by `Value`'s `Display`. The oracle of the differential tests.
    mod oracle {
        use super::*;

        pub fn message(format: LogFormat, text: &str, request_id: Option<&str>) -> String {
            match format {
                LogFormat::Text => text.to_string(),
                LogFormat::Json => {
                    let mut m = Map::new();
                    m.insert("message".into(), Value::from(text));
                    if let Some(id) = request_id.filter(|id| !id.is_empty()) {
                        m.insert("request_id".into(), Value::from(id));
                    }
                    Value::Object(m).to_string()
                }
            }
        }

        pub fn record(format: LogFormat, r: &RequestRecord<'_>) -> String {
            let fields = json!({
                "request_id": r.request_id,
                "endpoint": r.endpoint,
                "feature": r.feature,
                "model": r.model,
                "status": r.status,
                "bedrock_request_id": r.bedrock_request_id,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "duration_ms": r.duration_ms,
                "upstream_headers_ms": r.upstream_headers_ms,
                "time_to_first_token_ms": r.time_to_first_token_ms,
                "auth_failure": r.auth_failure,
                "error_type": r.error_type,
            });
            match (format, fields) {
                (LogFormat::Json, Value::Object(mut m)) => {
                    m.insert("message".into(), Value::from("request"));
                    Value::Object(m).to_string()
                }
                (_, fields) => format!("request {fields}"),
            }
        }
    }

    const FORMATS: [LogFormat; 2] = [LogFormat::Text, LogFormat::Json];

    /// Texts that need every kind of JSON escape, and none.
    const TEXTS: &[&str] = &[
        "",
        "r1",
        "0e0f3c5a-6a7b-4d6c-9b1f-6c6a2b7d9e11",
        "a \"b\" \\c/ d",
        "\n\r\t\u{8}\u{c}\u{0}\u{1}\u{1f}\u{7f}",
        "é ü 日本 😀 \u{2028}\u{2029}",
        "</script><!--",
        "Header mismatch 'X-Gitlab-Realm'",
    ];

    fn records() -> Vec<RequestRecord<'static>> {
        let base = RequestRecord {
            request_id: "0e0f3c5a-6a7b-4d6c-9b1f-6c6a2b7d9e11",
            endpoint: "code_completions",
            feature: "code_completions",
            model: "anthropic.claude-3-5-sonnet-20240620-v1:0",
            status: 200,
            bedrock_request_id: "9f1c2d3e-0000-4000-8000-00000000abcd",
            input_tokens: 120,
            output_tokens: 42,
            duration_ms: 3,
            upstream_headers_ms: Some(2),
            time_to_first_token_ms: None,
            auth_failure: None,
            error_type: None,
        };
        let mut all = vec![RequestRecord::default(), base];
        for &t in TEXTS {
            all.push(RequestRecord {
                request_id: t,
                auth_failure: Some(t),
                ..base
            });
            all.push(RequestRecord {
                endpoint: t,
                feature: t,
                error_type: Some(t),
                ..base
            });
            all.push(RequestRecord {
                model: t,
                bedrock_request_id: t,
                ..base
            });
        }
        for n in [0, 1, u64::MAX] {
            all.push(RequestRecord {
                status: if n == 0 { 0 } else { u16::MAX },
                input_tokens: n,
                output_tokens: n,
                duration_ms: n,
                upstream_headers_ms: Some(n),
                time_to_first_token_ms: Some(n),
                ..base
            });
        }
        all
    }

    #[test]
    fn records_are_byte_identical_to_the_json_tree() {
        for r in records() {
            for format in FORMATS {
                assert_eq!(record(format, &r), oracle::record(format, &r), "{r:?}");
            }
        }
    }

    #[test]
    fn messages_are_byte_identical_to_the_json_tree() {
        for format in FORMATS {
            for &text in TEXTS {
                for id in [None, Some(""), Some("r1"), Some("a\"\n")] {
                    assert_eq!(
                        message(format, text, id),
                        oracle::message(format, text, id),
                        "{text:?} {id:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn text_is_unchanged() {
        assert_eq!(message(LogFormat::Text, "a \"b\"", Some("r1")), "a \"b\"");
        let r = RequestRecord {
            request_id: "r1",
            status: 200,
            ..RequestRecord::default()
        };
        assert_eq!(
            record(LogFormat::Text, &r),
            r#"request {"auth_failure":null,"bedrock_request_id":"","duration_ms":0,"endpoint":"","error_type":null,"feature":"","input_tokens":0,"model":"","output_tokens":0,"request_id":"r1","status":200,"time_to_first_token_ms":null,"upstream_headers_ms":null}"#
        );
    }

    #[test]
    fn json_messages_are_objects() {
        let m = message(LogFormat::Json, "cut: \"x\"\n\u{7}", Some("r1"));
        let v: Value = serde_json::from_str(&m).unwrap();
        assert_eq!(
            v,
            json!({"message": "cut: \"x\"\n\u{7}", "request_id": "r1"})
        );
        let v: Value = serde_json::from_str(&message(LogFormat::Json, "m", None)).unwrap();
        assert_eq!(v, json!({"message": "m"}));
        let v: Value = serde_json::from_str(&message(LogFormat::Json, "m", Some(""))).unwrap();
        assert_eq!(v, json!({"message": "m"}));
        let r = RequestRecord {
            request_id: "r1",
            status: 401,
            auth_failure: Some("bad_signature"),
            ..RequestRecord::default()
        };
        let line = record(LogFormat::Json, &r);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["message"], "request");
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["status"], 401);
        assert_eq!(v["auth_failure"], "bad_signature");
        assert_eq!(v["time_to_first_token_ms"], Value::Null);
        assert_eq!(v.as_object().map(Map::len), Some(14));
        assert!(!line.contains('\n'));
    }
}
