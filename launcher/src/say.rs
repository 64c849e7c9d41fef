//! The launcher's own lines on stdout/stderr: plain text, or with `AIGW_LOGGING__FORMAT_JSON`
//! one JSON object per line in the shape Envoy writes with the same setting
//! (`timestamp`, `level`, `logger`, `message`; see [`ENVOY_JSON_LOG_FORMAT`]), so that every
//! line a log shipper reads from the container parses as JSON.

use crate::pyish::to_json_ascii;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static JSON: AtomicBool = AtomicBool::new(false);

/// Envoy's `--log-format` for JSON lines: Envoy escapes the message itself (`%j`). The filter's
/// lines then carry their own JSON object (request record, `request_id`) inside `message`
/// (docs/envoy-proxy-wasm.md#logs).
pub const ENVOY_JSON_LOG_FORMAT: &str =
    r#"{"timestamp":"%Y-%m-%dT%T.%e%z","level":"%l","logger":"%n","message":"%j"}"#;

pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// An informational line on stdout.
pub fn info(text: &str) {
    println!("{}", line("info", text));
}

/// A warning or error line on stderr.
pub fn error(level: &str, text: &str) {
    eprintln!("{}", line(level, text));
}

fn line(level: &str, text: &str) -> String {
    if !JSON.load(Ordering::Relaxed) {
        return text.to_string();
    }
    format!(
        r#"{{"timestamp":{},"level":{},"logger":"duo-bedrock","message":{}}}"#,
        to_json_ascii(&timestamp()),
        to_json_ascii(level),
        to_json_ascii(text)
    )
}

/// Now as `2026-12-03T16:58:01.123+00:00` (UTC), the format of [`ENVOY_JSON_LOG_FORMAT`].
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_to_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_425), (2025, 12, 3));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn json_lines_parse() {
        set_json(true);
        let l = line("info", "Envoy on \"0.0.0.0\":5052\nnext");
        set_json(false);
        assert!(l.starts_with(r#"{"timestamp":""#), "{l}");
        assert!(l.ends_with(r#","level":"info","logger":"duo-bedrock","message":"Envoy on \"0.0.0.0\":5052\nnext"}"#), "{l}");
        assert_eq!(line("info", "plain"), "plain");
    }
}
