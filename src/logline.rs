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

use serde_json::{Map, Value};

pub use crate::config::LogFormat;

/// A message as the filter logs it: the text as is, or in JSON `{"message":..}` with the
/// request's id when it concerns a request.
pub fn message(format: LogFormat, text: &str, request_id: Option<&str>) -> String {
    match format {
        LogFormat::Text => text.to_string(),
        LogFormat::Json => {
            let mut m = Map::new();
            // The JSON text is at most 6 bytes per byte of `text` (`\u00XX`), which the caller
            // already holds: no new unbounded input.
            m.insert("message".into(), Value::from(text));
            if let Some(id) = request_id.filter(|id| !id.is_empty()) {
                m.insert("request_id".into(), Value::from(id));
            }
            Value::Object(m).to_string()
        }
    }
}

/// The one record of a request (`fields`: a JSON object with `request_id`, ...): `request
/// {fields}` as text, or the fields beside `"message":"request"` as JSON.
pub fn record(format: LogFormat, fields: Value) -> String {
    match (format, fields) {
        (LogFormat::Json, Value::Object(mut m)) => {
            m.insert("message".into(), Value::from("request"));
            Value::Object(m).to_string()
        }
        (_, fields) => format!("request {fields}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_unchanged() {
        assert_eq!(message(LogFormat::Text, "a \"b\"", Some("r1")), "a \"b\"");
        assert_eq!(
            record(LogFormat::Text, json!({"request_id": "r1", "status": 200})),
            r#"request {"request_id":"r1","status":200}"#
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
        let r = record(LogFormat::Json, json!({"request_id": "r1", "status": 401}));
        let v: Value = serde_json::from_str(&r).unwrap();
        assert_eq!(
            v,
            json!({"message": "request", "request_id": "r1", "status": 401})
        );
        assert!(!r.contains('\n'));
    }
}
