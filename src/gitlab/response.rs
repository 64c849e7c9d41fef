//! A complete, host-independent HTTP answer for GitLab (status, headers, body bytes).
//!
//! Built by the GitLab-side responders (e.g. `code_suggestions::Responder::complete`) and by
//! [`GitlabError`] (via `From`). The host sends it as it is: header names are lower-case and
//! `content-type` is always present.

use super::errors::GitlabError;

/// Content type of the `text/event-stream` answers (code suggestions, prompts, legacy chat),
/// with the charset Starlette adds to `text/*` types.
pub const STREAM_CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";

/// The `x-process-time` value the gateway's middleware adds (seconds with six decimals) for
/// `elapsed_ms`, written from integers: the same text as `format!("{:.6}", ms as f64 / 1000.0)`
/// without float formatting on every answer.
pub fn process_time(elapsed_ms: u64) -> String {
    format!("{}.{:03}000", elapsed_ms / 1000, elapsed_ms % 1000)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitlabResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl GitlabResponse {
    /// A 200 `application/json` answer.
    pub fn json(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".to_string(), "application/json".to_string())],
            body,
        }
    }

    /// The value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl From<GitlabError> for GitlabResponse {
    fn from(e: GitlabError) -> Self {
        Self {
            status: e.status,
            headers: e.headers,
            body: e.body.into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_time_reads_like_the_float_format() {
        for ms in (0..20_000).chain([59_999, 60_000, 3_600_123, 86_400_000, 999_999_999]) {
            assert_eq!(
                process_time(ms),
                format!("{:.6}", ms as f64 / 1000.0),
                "{ms}"
            );
        }
    }

    #[test]
    fn from_error_keeps_everything() {
        let r = GitlabResponse::from(GitlabError::not_found());
        assert_eq!(r.status, 404);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.body, br#"{"detail":"Not Found"}"#);
        let ok = GitlabResponse::json(b"{}".to_vec());
        assert_eq!(
            (ok.status, ok.header("content-type")),
            (200, Some("application/json"))
        );
    }
}
