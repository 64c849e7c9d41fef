//! Which GitLab AI Gateway endpoint a request is for (docs/gitlab-contract.md#endpoints).
//!
//! The gateway is FastAPI with no path prefix; its auth middleware runs before routing,
//! so only the monitoring endpoints are reachable without a token
//! (docs/gitlab-contract.md#monitoring). Everything else is authenticated first and only then
//! routed; an unknown path is a 404 after auth.

/// An endpoint the filter knows, or [`Route::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /monitoring/healthz`: liveness, no auth.
    Healthz,
    /// `GET /monitoring/ready`: readiness, no auth.
    Ready,
    /// `GET` (or `HEAD`) `/docs`: the service page, no auth ([`super::service_page`]).
    Docs,
    /// `POST /v1/code/user_access_token`: answered locally ([`super::user_access_token`]).
    UserAccessToken,
    /// `POST /v2/code/completions` and its alias `POST /v2/completions`.
    V2CodeCompletions,
    /// `POST /v2/code/generations`.
    V2CodeGenerations,
    /// `POST /v3/code/completions`.
    V3CodeCompletions,
    /// `POST /v4/code/suggestions`.
    V4CodeSuggestions,
    /// `POST /v1/prompts/{id}` (`version` 1) or `/v2/prompts/{id}` (`version` 2); id percent-decoded.
    Prompt { version: u8, prompt_id: String },
    /// `POST /v2/chat/agent`.
    ChatAgent,
    /// `POST /v1/chat/{invokable}`.
    LegacyChat { invokable: String },
    /// `POST /v1/search/gitlab-docs`: documentation search (`gitlab::docs_search`).
    DocsSearch,
    /// Anything else: 401 without a token, 404 (or 405) with one.
    Unknown,
}

impl Route {
    /// True for the endpoints FastAPI serves without authentication.
    pub fn is_public(&self) -> bool {
        matches!(self, Route::Healthz | Route::Ready | Route::Docs)
    }

    /// A stable, low-cardinality name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Healthz => "healthz",
            Route::Ready => "ready",
            Route::Docs => "docs",
            Route::UserAccessToken => "v1_code_user_access_token",
            Route::V2CodeCompletions => "v2_code_completions",
            Route::V2CodeGenerations => "v2_code_generations",
            Route::V3CodeCompletions => "v3_code_completions",
            Route::V4CodeSuggestions => "v4_code_suggestions",
            Route::Prompt { version: 1, .. } => "v1_prompts",
            Route::Prompt { .. } => "v2_prompts",
            Route::ChatAgent => "v2_chat_agent",
            Route::LegacyChat { .. } => "v1_chat",
            Route::DocsSearch => "v1_search_gitlab_docs",
            Route::Unknown => "unknown",
        }
    }
}

/// Classifies a request by method and `:path` (query string ignored, as FastAPI routes on the path).
pub fn classify(method: &str, path: &str) -> Route {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let get = method.eq_ignore_ascii_case("GET");
    let post = method.eq_ignore_ascii_case("POST");
    match path {
        "/monitoring/healthz" if get => return Route::Healthz,
        "/monitoring/ready" if get => return Route::Ready,
        "/docs" if get || method.eq_ignore_ascii_case("HEAD") => return Route::Docs,
        _ => {}
    }
    if !post {
        return Route::Unknown;
    }
    match path {
        "/v2/code/completions" | "/v2/completions" => Route::V2CodeCompletions,
        "/v2/code/generations" => Route::V2CodeGenerations,
        "/v3/code/completions" => Route::V3CodeCompletions,
        "/v4/code/suggestions" => Route::V4CodeSuggestions,
        "/v2/chat/agent" => Route::ChatAgent,
        "/v1/code/user_access_token" => Route::UserAccessToken,
        "/v1/search/gitlab-docs" => Route::DocsSearch,
        _ => classify_parametrised(path),
    }
}

fn classify_parametrised(path: &str) -> Route {
    for (prefix, version) in [("/v1/prompts/", 1u8), ("/v2/prompts/", 2u8)] {
        if let Some(raw) = path.strip_prefix(prefix) {
            return match percent_decode(raw) {
                Some(prompt_id) if !prompt_id.is_empty() => Route::Prompt { version, prompt_id },
                _ => Route::Unknown,
            };
        }
    }
    if let Some(raw) = path.strip_prefix("/v1/chat/") {
        if !raw.is_empty() && !raw.contains('/') {
            if let Some(invokable) = percent_decode(raw) {
                return Route::LegacyChat { invokable };
            }
        }
    }
    Route::Unknown
}

/// Decodes `%XX` escapes (Rails sends `model_configuration%2Fcheck`). `None` for bad escapes or non-UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitoring_is_public_get_only() {
        assert_eq!(classify("GET", "/monitoring/healthz"), Route::Healthz);
        assert_eq!(classify("GET", "/monitoring/ready?x=1"), Route::Ready);
        assert!(Route::Healthz.is_public());
        assert_eq!(classify("POST", "/monitoring/healthz"), Route::Unknown);
        assert_eq!(classify("HEAD", "/"), Route::Unknown);
    }

    #[test]
    fn docs_is_public_for_get_and_head() {
        assert_eq!(classify("GET", "/docs"), Route::Docs);
        assert_eq!(classify("HEAD", "/docs/"), Route::Docs);
        assert_eq!(classify("GET", "/docs?x"), Route::Docs);
        assert!(Route::Docs.is_public());
        assert_eq!(classify("POST", "/docs"), Route::Unknown);
        assert_eq!(classify("GET", "/docs/oauth2-redirect"), Route::Unknown);
    }

    #[test]
    fn user_access_token_is_post_only_and_not_public() {
        let r = classify("POST", "/v1/code/user_access_token");
        assert_eq!(r, Route::UserAccessToken);
        assert!(!r.is_public());
        assert_eq!(r.name(), "v1_code_user_access_token");
        assert_eq!(
            classify("GET", "/v1/code/user_access_token"),
            Route::Unknown
        );
    }

    #[test]
    fn code_suggestion_paths() {
        assert_eq!(
            classify("POST", "/v2/code/completions"),
            Route::V2CodeCompletions
        );
        assert_eq!(
            classify("POST", "/v2/completions"),
            Route::V2CodeCompletions
        );
        assert_eq!(
            classify("post", "/v2/code/generations"),
            Route::V2CodeGenerations
        );
        assert_eq!(
            classify("POST", "/v3/code/completions/"),
            Route::V3CodeCompletions
        );
        assert_eq!(
            classify("POST", "/v4/code/suggestions"),
            Route::V4CodeSuggestions
        );
        assert_eq!(classify("GET", "/v2/code/completions"), Route::Unknown);
    }

    #[test]
    fn prompt_ids_are_decoded() {
        assert_eq!(
            classify("POST", "/v1/prompts/model_configuration%2Fcheck"),
            Route::Prompt {
                version: 1,
                prompt_id: "model_configuration/check".into()
            }
        );
        assert_eq!(
            classify("POST", "/v2/prompts/chat/explain_code"),
            Route::Prompt {
                version: 2,
                prompt_id: "chat/explain_code".into()
            }
        );
        assert_eq!(classify("POST", "/v1/prompts/"), Route::Unknown);
        assert_eq!(classify("POST", "/v1/prompts/bad%zz"), Route::Unknown);
        assert_eq!(classify("POST", "/v1/prompts/%ff"), Route::Unknown);
        assert_eq!(classify("POST", "/v1/prompts/%4"), Route::Unknown);
    }

    #[test]
    fn chat_paths() {
        assert_eq!(classify("POST", "/v2/chat/agent"), Route::ChatAgent);
        assert_eq!(
            classify("POST", "/v1/chat/explain_code"),
            Route::LegacyChat {
                invokable: "explain_code".into()
            }
        );
        assert_eq!(classify("POST", "/v1/chat/a/b"), Route::Unknown);
    }

    #[test]
    fn docs_search_path() {
        assert_eq!(
            classify("POST", "/v1/search/gitlab-docs"),
            Route::DocsSearch
        );
        assert_eq!(
            classify("POST", "/v1/search/gitlab-docs/?x=1"),
            Route::DocsSearch
        );
        assert_eq!(Route::DocsSearch.name(), "v1_search_gitlab_docs");
        assert_eq!(classify("GET", "/v1/search/gitlab-docs"), Route::Unknown);
        assert_eq!(classify("POST", "/v1/search/other"), Route::Unknown);
    }
}
