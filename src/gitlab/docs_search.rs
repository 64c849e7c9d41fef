//! `POST /v1/search/gitlab-docs`: Duo Chat's documentation search, answered from an Amazon
//! Bedrock knowledge base.
//!
//! Contract: `docs/gitlab-contract.md#documentation-search` (request, answer, what Rails reads)
//! and `docs/bedrock-contract.md#retrieve` (the knowledge base call).
//!
//! * Request (AIGW 18.5 `ai_gateway/api/v1/search/typing.py`, `SearchRequest`): `type` (string
//!   ≤ 100), `metadata{source ≤ 100, version ≤ 100}`, `payload{query ≤ 400 000, page_size 1..20,
//!   default 4}`, all required but `page_size`; other keys are ignored. Rails sends
//!   `{type: "search-docs", metadata: {source: "GitLab EE", version}, payload: {query}}`
//!   (`ee/lib/gitlab/llm/ai_gateway/docs_client.rb`).
//! * Checks, in the gateway's order (`ai_gateway/api/v1/search/docs.py`): body validation (422),
//!   then the unit primitive `documentation_search` (403 `Unauthorized to search
//!   documentations`; the host checks [`SearchPlan::scope`]).
//! * Answer (`SearchResponse`): `{"response": {"results": [{"id", "content", "metadata"}]},
//!   "metadata": {"provider", "timestamp"}}`. Results are cut, in order, once their estimated
//!   tokens (1.4 × words) would pass 8 000, as the gateway does when custom models are enabled
//!   (always, for self-hosted models: `limit_search_results`).
//! * Rails (`ee/lib/gitlab/llm/chain/tools/gitlab_documentation/executor.rb`,
//!   `embeddings_completion.rb`, `ee/lib/gitlab/llm/anthropic/templates/tanuki_bot.rb`,
//!   `ee/lib/gitlab/llm/anthropic/response_modifiers/tanuki_bot.rb`) reads `response.results`,
//!   passes them to the `chat/documentation_search` prompt, which cites them as
//!   `CNT-IDX-<id>`, and turns the ids the answer lists back into sources with
//!   `{source_url: metadata["filename"]}.merge(metadata)`. Its id pattern is `[0-9a-z]+`, so ids
//!   here are 32 lower-case hex digits (SHA-256 of the source URL and the chunk); `metadata`
//!   carries GitLab's own documentation-index keys (`title`, `md5sum`, `source`, `source_type`,
//!   `source_url`; AIGW `scripts/ingest/gitlab-docs/steps/base_content_parser.rb`), which Duo
//!   Chat shows as the answer's source links.
//!
//! Mapping of a Bedrock `Retrieve` result: `content` = the chunk's text (non-text chunks are
//! skipped); `source_url` = the document's `source_url` attribute, else its location (an S3 key
//! under a `doc/` folder of GitLab's repository becomes its `https://docs.gitlab.com/...` page);
//! `title` = the `title` attribute, else one derived from the URL's last path segment.
//!
//! Without a knowledge base (`AIGW_BEDROCK_KNOWLEDGE_BASE_ID` unset) the answer is the same shape
//! with no results, like the self-hosted gateway whose documentation index is missing
//! (`ai_gateway/searches/sqlite_search.py`); Rails then answers from the model alone. A blank
//! query is answered the same way without calling Bedrock.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::auth::scopes::DOCUMENTATION_SEARCH;
use crate::bedrock::retrieve::{RetrievalResult, RetrieveRequest, RetrieveResponse};

use super::dispatch::ScopeCheck;
use super::errors::{
    self, is_credential_error, normalize_error_kind, GitlabError, ValidationIssue,
};
use super::response::GitlabResponse;
use super::validate::{at, body_loc, parse_object, Validator};

/// The unit primitive the gateway requires.
pub const UNIT_PRIMITIVE: &str = "documentation_search";
/// `SearchPayload.page_size` default and bounds.
pub const DEFAULT_PAGE_SIZE: i64 = 4;
pub const MAX_PAGE_SIZE: i64 = 20;
/// `SearchPayload.query` max length.
pub const MAX_QUERY_CHARS: usize = 400_000;
/// `SearchMetadata` fields and `type` max length.
pub const MAX_FIELD_CHARS: usize = 100;
/// The gateway's result budget for custom models, in estimated tokens.
pub const MAX_RESULT_TOKENS: usize = 8000;
/// `metadata.provider` of answers from a knowledge base, and without one.
pub const PROVIDER: &str = "bedrock-knowledge-base";
pub const PROVIDER_NONE: &str = "none";
/// Where GitLab publishes the pages of its repository's `doc/` folder.
pub const DOCS_SITE: &str = "https://docs.gitlab.com";

/// A validated search request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    pub query: String,
    pub page_size: u32,
}

/// Per-request facts from the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchContext<'a> {
    pub now_secs: u64,
    /// The configured knowledge base, `None` when documentation search is not configured.
    pub knowledge_base_id: Option<&'a str>,
}

/// What to do for one search.
#[derive(Debug)]
pub struct SearchPlan {
    /// Checked by the host before anything else happens (403 with its detail).
    pub scope: ScopeCheck,
    pub action: SearchAction,
}

#[derive(Debug)]
pub enum SearchAction {
    /// Answer at once, without Bedrock: no knowledge base (`unconfigured`), or a blank query.
    Local {
        response: GitlabResponse,
        unconfigured: bool,
    },
    /// Call `Retrieve`, then answer with the responder.
    Retrieve {
        request: RetrieveRequest,
        responder: SearchResponder,
    },
}

/// Validates `body` and decides the action.
pub fn plan(body: &[u8], ctx: &SearchContext<'_>) -> Result<SearchPlan, GitlabError> {
    let req = parse(body)?;
    let scope = ScopeCheck::new(UNIT_PRIMITIVE, DOCUMENTATION_SEARCH);
    let responder = SearchResponder {
        now_secs: ctx.now_secs,
    };
    let action = match ctx.knowledge_base_id {
        None => SearchAction::Local {
            response: answer(&[], PROVIDER_NONE, ctx.now_secs),
            unconfigured: true,
        },
        Some(_) if req.query.trim().is_empty() => SearchAction::Local {
            response: answer(&[], PROVIDER, ctx.now_secs),
            unconfigured: false,
        },
        Some(id) => SearchAction::Retrieve {
            request: RetrieveRequest {
                knowledge_base_id: id.to_string(),
                query: req.query,
                number_of_results: req.page_size,
            },
            responder,
        },
    };
    Ok(SearchPlan { scope, action })
}

fn bound_issue(loc: Vec<errors::LocPart>, ge: bool, bound: i64) -> ValidationIssue {
    let (kind, relation, key) = if ge {
        ("greater_than_equal", "greater than or equal to", "ge")
    } else {
        ("less_than_equal", "less than or equal to", "le")
    };
    ValidationIssue::new(kind, loc, format!("Input should be {relation} {bound}"))
        .with_ctx(serde_json::json!({ key: bound }))
}

/// pydantic's validation of `SearchRequest`, every issue collected, FastAPI `loc` paths.
pub fn parse(body: &[u8]) -> Result<SearchRequest, GitlabError> {
    let mut map = parse_object(body)?;
    let mut v = Validator::new();
    let base = body_loc();
    v.req_str(&mut map, "type", &base, Some(MAX_FIELD_CHARS), false);
    if let Some(mut m) = v.req_object(&mut map, "metadata", &base) {
        let loc = at(&base, "metadata");
        v.req_str(&mut m, "source", &loc, Some(MAX_FIELD_CHARS), false);
        v.req_str(&mut m, "version", &loc, Some(MAX_FIELD_CHARS), false);
    }
    let mut query = None;
    let mut page_size = DEFAULT_PAGE_SIZE;
    if let Some(mut p) = v.req_object(&mut map, "payload", &base) {
        let loc = at(&base, "payload");
        query = v.req_str(&mut p, "query", &loc, Some(MAX_QUERY_CHARS), false);
        if p.get("page_size").is_some_and(Value::is_null) {
            v.push(ValidationIssue::new(
                "int_type",
                at(&loc, "page_size"),
                "Input should be a valid integer",
            ));
        }
        match v.opt_int(&mut p, "page_size", &loc) {
            Some(n) if n < 1 => v.push(bound_issue(at(&loc, "page_size"), true, 1)),
            Some(n) if n > MAX_PAGE_SIZE => {
                v.push(bound_issue(at(&loc, "page_size"), false, MAX_PAGE_SIZE))
            }
            Some(n) => page_size = n,
            None => {}
        }
    }
    v.finish()?;
    Ok(SearchRequest {
        query: query.unwrap_or_default(),
        page_size: u32::try_from(page_size).unwrap_or(4),
    })
}

/// `SearchResponse`, with the gateway's field order.
#[derive(Serialize)]
struct Answer<'a> {
    response: Details<'a>,
    metadata: AnswerMetadata<'a>,
}

#[derive(Serialize)]
struct Details<'a> {
    results: &'a [SearchResult],
}

#[derive(Serialize)]
struct AnswerMetadata<'a> {
    provider: &'a str,
    timestamp: u64,
}

/// One `SearchResult`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SearchResult {
    pub id: String,
    pub content: String,
    pub metadata: ResultMetadata,
}

/// A result's `metadata`: the keys of GitLab's own documentation index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultMetadata {
    pub title: String,
    /// Hex SHA-256 of the content (GitLab's parser stores a SHA-256 under this name).
    pub md5sum: String,
    /// Where the knowledge base found the chunk (URL or `s3://` URI).
    pub source: String,
    pub source_type: &'static str,
    pub source_url: String,
}

fn answer(results: &[SearchResult], provider: &str, now_secs: u64) -> GitlabResponse {
    let body = serde_json::to_vec(&Answer {
        response: Details { results },
        metadata: AnswerMetadata {
            provider,
            timestamp: now_secs,
        },
    })
    .unwrap_or_else(|_| br#"{"response":{"results":[]}}"#.to_vec());
    GitlabResponse::json(body)
}

/// Turns the `Retrieve` answer into GitLab's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResponder {
    now_secs: u64,
}

impl SearchResponder {
    /// The answer for Bedrock's 200 body; a 502 when it is not a `RetrieveResponse`.
    pub fn complete(&self, body: &[u8]) -> Result<GitlabResponse, GitlabError> {
        let parsed: RetrieveResponse =
            serde_json::from_slice(body).map_err(|_| unreadable_answer())?;
        let results = results(&parsed.retrieval_results);
        Ok(answer(&results, PROVIDER, self.now_secs))
    }
}

/// GitLab results for Bedrock's, best first, within the token budget, duplicates dropped.
pub fn results(retrieved: &[RetrievalResult]) -> Vec<SearchResult> {
    let mut out: Vec<SearchResult> = Vec::new();
    let mut tokens = 0;
    for r in retrieved {
        let Some(result) = result(r) else { continue };
        if out.iter().any(|o| o.id == result.id) {
            continue;
        }
        let estimate = estimate_tokens(&result.content);
        if tokens + estimate > MAX_RESULT_TOKENS {
            break;
        }
        tokens += estimate;
        out.push(result);
    }
    out
}

/// The gateway's estimate: 1.4 tokens per whitespace-separated word, rounded down.
pub fn estimate_tokens(text: &str) -> usize {
    text.split_whitespace().count().saturating_mul(14) / 10
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// One GitLab result, `None` for a chunk without text.
pub fn result(r: &RetrievalResult) -> Option<SearchResult> {
    let content = r.text()?.to_string();
    let source = r.source_uri().unwrap_or_default().to_string();
    let source_url = r
        .source_url_attribute()
        .map(str::to_string)
        .or_else(|| docs_url(&source))
        .unwrap_or_else(|| source.clone());
    let title = r
        .title()
        .map(|t| errors::sanitize(t, 200))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| title_from_url(&source_url));
    let mut id_hash = Sha256::new();
    id_hash.update(source_url.as_bytes());
    id_hash.update(b"\n");
    id_hash.update(content.as_bytes());
    let id = hex(&id_hash.finalize()[..16]);
    let md5sum = hex(&Sha256::digest(content.as_bytes()));
    Some(SearchResult {
        id,
        content,
        metadata: ResultMetadata {
            title,
            md5sum,
            source,
            source_type: "doc",
            source_url,
        },
    })
}

/// `s3://<bucket>/[<prefix>/]doc/<page>.md` (GitLab's repository `doc/` folder) → its page on
/// docs.gitlab.com (`_index.md` and `index.md` are their folder's page). `None` otherwise.
pub fn docs_url(uri: &str) -> Option<String> {
    let key = uri.strip_prefix("s3://")?.split_once('/')?.1;
    let page = match key.strip_prefix("doc/") {
        Some(rest) => rest,
        None => key.split_once("/doc/")?.1,
    };
    let page = page.strip_suffix(".md")?;
    let page = page
        .strip_suffix("_index")
        .or_else(|| page.strip_suffix("index"))
        .filter(|p| p.is_empty() || p.ends_with('/'))
        .unwrap_or(page)
        .trim_end_matches('/');
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"-_./".contains(&b);
    if !page.bytes().all(safe) || page.split('/').any(|s| s == "." || s == "..") {
        return None;
    }
    let slash = if page.is_empty() { "" } else { "/" };
    Some(format!("{DOCS_SITE}/{page}{slash}"))
}

/// A title from a URL's last path segment: `.../branches/protected_branches.html` →
/// `Protected branches`; `GitLab documentation` when there is none.
pub fn title_from_url(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let path = path.split_once("://").map_or(path, |(_, rest)| {
        rest.split_once('/').map_or("", |(_, p)| p)
    });
    let segment = path
        .rsplit('/')
        .map(|s| {
            let s = s.strip_suffix(".md").unwrap_or(s);
            s.strip_suffix(".html").unwrap_or(s)
        })
        .find(|s| !s.is_empty() && *s != "_index" && *s != "index")
        .unwrap_or_default();
    let words = errors::sanitize(&segment.replace(['-', '_'], " "), 200);
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => "GitLab documentation".to_string(),
    }
}

/// The answer to a Bedrock error: 429 (throttling, with `retry-after`) like every model call;
/// otherwise 503 naming the status and kind, with Bedrock's message unless it concerns
/// credentials (then a hint on the IAM permission), and a hint on the id for a 404.
pub fn bedrock_error(
    status: u16,
    kind: &str,
    message: &str,
    retry_after: Option<&str>,
) -> GitlabError {
    let kind = normalize_error_kind(kind);
    if status == 429 || kind == "ThrottlingException" {
        return errors::from_bedrock(errors::Family::Chat, 429, kind, message, retry_after);
    }
    let mut detail = format!("Documentation search failed: Amazon Bedrock returned {status}");
    if !kind.is_empty() {
        detail.push(' ');
        detail.push_str(&errors::sanitize(kind, 80));
    }
    if is_credential_error(status, kind, message) {
        detail.push_str(
            ": the request was not authorized (check the gateway's AWS credentials, region and IAM permission bedrock:Retrieve on the knowledge base)",
        );
    } else {
        let msg = errors::sanitize(message, 300);
        if !msg.is_empty() {
            detail.push_str(": ");
            detail.push_str(&msg);
        }
        if status == 404 || kind == "ResourceNotFoundException" {
            detail.push_str(" (check AIGW_BEDROCK_KNOWLEDGE_BASE_ID and the region)");
        }
    }
    GitlabError::detail(503, &detail)
}

/// 504 when Envoy timed out waiting for Bedrock.
pub fn upstream_timeout() -> GitlabError {
    GitlabError::detail(
        504,
        "Documentation search failed: Amazon Bedrock did not answer in time",
    )
}

/// 503 when Envoy could not reach the agent runtime: names the endpoint and the cause (DNS,
/// refused, ...), as model requests do ([`errors::from_envoy`]).
pub fn upstream_unavailable(failure: &errors::EnvoyFailure, endpoint: &str) -> GitlabError {
    GitlabError::detail(
        503,
        &format!(
            "Documentation search failed: {}",
            failure.unreachable_text_for(&errors::BedrockEndpoint::AGENT_RUNTIME, endpoint)
        ),
    )
}

/// 502 for a 200 answer that is not a `RetrieveResponse`.
pub fn unreadable_answer() -> GitlabError {
    GitlabError::detail(
        502,
        "Documentation search failed: unreadable answer from Bedrock",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::errors::testing::{detail, issue_types, validation_issues};
    use serde_json::json;

    const RAILS_BODY: &str = r#"{"type":"search-docs","metadata":{"source":"GitLab EE","version":"18.9.0"},"payload":{"query":"How do I protect a branch?"}}"#;

    fn ctx(kb: Option<&str>) -> SearchContext<'_> {
        SearchContext {
            now_secs: 1_764_000_000,
            knowledge_base_id: kb,
        }
    }

    fn body(v: &GitlabResponse) -> Value {
        serde_json::from_slice(&v.body).unwrap()
    }

    #[test]
    fn rails_body_plans_a_retrieve_call() {
        let p = plan(RAILS_BODY.as_bytes(), &ctx(Some("ABCDE12345"))).unwrap();
        assert_eq!(
            p.scope,
            ScopeCheck::new(
                "documentation_search",
                "Unauthorized to search documentations"
            )
        );
        let SearchAction::Retrieve { request, .. } = p.action else {
            panic!("expected a Retrieve call")
        };
        assert_eq!(
            request,
            RetrieveRequest {
                knowledge_base_id: "ABCDE12345".into(),
                query: "How do I protect a branch?".into(),
                number_of_results: 4
            }
        );
    }

    #[test]
    fn without_a_knowledge_base_the_answer_is_empty() {
        let p = plan(RAILS_BODY.as_bytes(), &ctx(None)).unwrap();
        let SearchAction::Local {
            response,
            unconfigured,
        } = p.action
        else {
            panic!("expected a local answer")
        };
        assert!(unconfigured);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(
            String::from_utf8(response.body).unwrap(),
            r#"{"response":{"results":[]},"metadata":{"provider":"none","timestamp":1764000000}}"#
        );
        // A blank query never reaches Bedrock either.
        let blank = r#"{"type":"search-docs","metadata":{"source":"GitLab EE","version":"18.9.0"},"payload":{"query":"  "}}"#;
        let p = plan(blank.as_bytes(), &ctx(Some("ABCDE12345"))).unwrap();
        assert!(matches!(
            p.action,
            SearchAction::Local {
                unconfigured: false,
                ..
            }
        ));
    }

    #[test]
    fn validation_matches_pydantic() {
        let e = plan(b"{}", &ctx(None)).unwrap_err();
        assert_eq!(issue_types(&e), ["missing", "missing", "missing"]);
        let list = validation_issues(&e);
        assert_eq!(list[0]["loc"], json!(["body", "type"]));
        assert_eq!(list[1]["loc"], json!(["body", "metadata"]));
        assert_eq!(list[2]["loc"], json!(["body", "payload"]));

        let e = parse(
            json!({"type": 1, "metadata": {"source": "s".repeat(101)}, "payload": {"query": 5, "page_size": 21}})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(
            issue_types(&e),
            [
                "string_type",
                "string_too_long",
                "missing",
                "string_type",
                "less_than_equal"
            ]
        );
        let list = validation_issues(&e);
        assert_eq!(list[2]["loc"], json!(["body", "metadata", "version"]));
        assert_eq!(list[4]["msg"], "Input should be less than or equal to 20");
        assert_eq!(list[4]["ctx"], json!({"le": 20}));
        assert!(!e.body.contains("sssss"), "input is never echoed");

        for (page, kind) in [
            (json!(0), "greater_than_equal"),
            (json!(null), "int_type"),
            (json!("x"), "int_parsing"),
            (json!(2.5), "int_from_float"),
        ] {
            let b = json!({"type": "search-docs", "metadata": {"source": "a", "version": "b"}, "payload": {"query": "q", "page_size": page}});
            let e = parse(b.to_string().as_bytes()).unwrap_err();
            assert_eq!(issue_types(&e), [kind], "{page}");
        }
        let b = json!({"type": "search-docs", "metadata": {"source": "a", "version": "b"}, "payload": {"query": "q", "page_size": "20"}, "extra": 1});
        assert_eq!(parse(b.to_string().as_bytes()).unwrap().page_size, 20);
        for bad in [&b""[..], b"[]", b"{", b"null"] {
            assert_eq!(plan(bad, &ctx(None)).unwrap_err().status, 422);
        }
        let e = plan(br#"{"type":"x","metadata":[],"payload":"q"}"#, &ctx(None)).unwrap_err();
        assert_eq!(
            issue_types(&e),
            ["model_attributes_type", "model_attributes_type"]
        );
        assert!(detail(&e).is_array());
    }

    fn retrieved(v: Value) -> Vec<RetrievalResult> {
        serde_json::from_value::<RetrieveResponse>(json!({ "retrievalResults": v }))
            .unwrap()
            .retrieval_results
    }

    #[test]
    fn results_carry_rails_keys_and_stable_ids() {
        let rs = retrieved(json!([
            {"content": {"text": "Protect a branch from Settings > Repository > Protected branches.", "type": "TEXT"},
             "location": {"type": "WEB", "webLocation": {"url": "https://docs.gitlab.com/user/project/repository/branches/protected/"}},
             "score": 0.7},
            {"content": {"text": "Define CI/CD variables in Settings > CI/CD > Variables."},
             "location": {"type": "S3", "s3Location": {"uri": "s3://my-docs/gitlab/doc/ci/variables/_index.md"}},
             "metadata": {"title": "CI/CD variables"}, "score": 0.5},
            {"content": {"text": "Custom URL"},
             "location": {"type": "S3", "s3Location": {"uri": "s3://b/notes/x.txt"}},
             "metadata": {"source_url": "https://handbook.example.com/x", "title": "  "}},
            {"content": {"type": "IMAGE"}, "location": {"type": "S3", "s3Location": {"uri": "s3://b/doc/a.md"}}}
        ]));
        let out = results(&rs);
        assert_eq!(out.len(), 3, "the image chunk is skipped");
        let a = &out[0];
        assert_eq!(a.id.len(), 32);
        assert!(a
            .id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(
            a.metadata.source_url,
            "https://docs.gitlab.com/user/project/repository/branches/protected/"
        );
        assert_eq!(a.metadata.title, "Protected");
        assert_eq!(a.metadata.source_type, "doc");
        assert_eq!(a.metadata.source, a.metadata.source_url);
        assert_eq!(
            a.metadata.md5sum,
            hex(&Sha256::digest(a.content.as_bytes()))
        );
        assert_eq!(results(&rs)[0].id, a.id, "ids are stable");
        let b = &out[1];
        assert_eq!(
            b.metadata.source_url,
            "https://docs.gitlab.com/ci/variables/"
        );
        assert_eq!(
            b.metadata.source,
            "s3://my-docs/gitlab/doc/ci/variables/_index.md"
        );
        assert_eq!(b.metadata.title, "CI/CD variables");
        let c = &out[2];
        assert_eq!(c.metadata.source_url, "https://handbook.example.com/x");
        assert_eq!(c.metadata.title, "X");
        assert_ne!(a.id, b.id);

        // The gateway's serialisation order, and Rails' regex finds the id.
        let r = answer(&out[..1], PROVIDER, 7);
        let text = String::from_utf8(r.body.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"response":{"results":[{"id":""#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""metadata":{"provider":"bedrock-knowledge-base","timestamp":7}}"#)
        );
        let v = body(&r);
        let meta = &v["response"]["results"][0]["metadata"];
        for key in ["title", "md5sum", "source", "source_type", "source_url"] {
            assert!(meta[key].is_string(), "{key}");
        }
    }

    #[test]
    fn duplicates_are_dropped_and_the_token_budget_holds() {
        let chunk = json!({"content": {"text": "same"}, "location": {"type": "WEB", "webLocation": {"url": "https://d/x"}}});
        assert_eq!(results(&retrieved(json!([chunk.clone(), chunk]))).len(), 1);
        // 3000 words ≈ 4200 tokens: one fits, the second would pass 8000.
        let words = "word ".repeat(3000);
        let big = |u: &str| json!({"content": {"text": words}, "location": {"type": "WEB", "webLocation": {"url": u}}});
        let out = results(&retrieved(
            json!([big("https://d/a"), big("https://d/b"), {"content": {"text": "small"}, "location": {"type": "WEB", "webLocation": {"url": "https://d/c"}}}]),
        ));
        assert_eq!(
            out.len(),
            1,
            "cut at the first result over the budget, like the gateway"
        );
        assert_eq!(estimate_tokens("a b  c\nd"), 5);
    }

    #[test]
    fn responder_parses_or_refuses() {
        let r = SearchResponder { now_secs: 9 };
        let ok = r
            .complete(br#"{"retrievalResults":[{"content":{"text":"t"},"location":{"type":"WEB","webLocation":{"url":"https://docs.gitlab.com/a/b/"}},"score":1}]}"#)
            .unwrap();
        assert_eq!(
            body(&ok)["response"]["results"].as_array().unwrap().len(),
            1
        );
        assert_eq!(
            body(&ok)["response"]["results"][0]["metadata"]["title"],
            "B"
        );
        assert_eq!(body(&ok)["metadata"]["timestamp"], 9);
        for bad in [&b"not json"[..], b"{}", b"[]"] {
            assert_eq!(r.complete(bad).unwrap_err().status, 502);
        }
    }

    #[test]
    fn docs_urls_and_titles() {
        for (uri, url) in [
            (
                "s3://b/doc/user/project/repository/branches/protected.md",
                Some("https://docs.gitlab.com/user/project/repository/branches/protected/"),
            ),
            (
                "s3://b/gitlab-18.9/doc/ci/variables/_index.md",
                Some("https://docs.gitlab.com/ci/variables/"),
            ),
            ("s3://b/doc/index.md", Some("https://docs.gitlab.com/")),
            ("s3://b/doc/_index.md", Some("https://docs.gitlab.com/")),
            ("s3://b/docs/ci.md", None),
            ("s3://b/doc/ci.txt", None),
            ("s3://b/doc/../../evil.md", None),
            ("s3://b/doc/a b.md", None),
            ("https://docs.gitlab.com/x.md", None),
            ("s3://bucket-only", None),
        ] {
            assert_eq!(docs_url(uri).as_deref(), url, "{uri}");
        }
        for (url, title) in [
            (
                "https://docs.gitlab.com/user/project/merge_requests/approvals/",
                "Approvals",
            ),
            ("https://docs.gitlab.com/ci/yaml/index.html?x=1#y", "Yaml"),
            (
                "https://docs.gitlab.com/topics/git/protected-tags.md",
                "Protected tags",
            ),
            (
                "https://docs.gitlab.com/ci/variables/_index.md",
                "Variables",
            ),
            ("https://docs.gitlab.com/", "GitLab documentation"),
            ("", "GitLab documentation"),
            ("https://x/%C3%A9t%C3%A9", "%C3%A9t%C3%A9"),
            ("https://x/été", "été"),
        ] {
            assert_eq!(title_from_url(url), title, "{url}");
        }
    }

    #[test]
    fn bedrock_errors_map_like_model_errors() {
        let e = bedrock_error(
            429,
            "ThrottlingException:http://internal",
            "slow down",
            Some("3"),
        );
        assert_eq!((e.status, e.header("retry-after")), (429, Some("3")));
        assert_eq!(detail(&e), "Too many requests. Please try again later.");
        let e = bedrock_error(
            403,
            "AccessDeniedException",
            "User: arn:aws:iam::1:user/x is not authorized to perform: bedrock:Retrieve",
            None,
        );
        assert_eq!(e.status, 503);
        let d = detail(&e).as_str().unwrap().to_string();
        assert!(
            d.contains("403 AccessDeniedException")
                && d.contains("bedrock:Retrieve on the knowledge base"),
            "{d}"
        );
        assert!(!d.contains("arn:aws:iam"), "{d}");
        let e = bedrock_error(
            404,
            "ResourceNotFoundException",
            "Knowledge base ABCDE12345 not found",
            None,
        );
        let d = detail(&e).as_str().unwrap().to_string();
        assert!(
            d.contains("404 ResourceNotFoundException: Knowledge base ABCDE12345 not found")
                && d.contains("AIGW_BEDROCK_KNOWLEDGE_BASE_ID"),
            "{d}"
        );
        let e = bedrock_error(400, "ValidationException", "bad\nthing", None);
        assert_eq!(detail(&e), "Documentation search failed: Amazon Bedrock returned 400 ValidationException: badthing");
        let e = bedrock_error(
            400,
            "InvalidSignatureException",
            "The canonical request was ...",
            None,
        );
        assert!(!detail(&e).as_str().unwrap().contains("canonical"));
        assert_eq!(upstream_timeout().status, 504);
        assert_eq!(
            detail(&upstream_unavailable(
                &errors::EnvoyFailure::NoAddress,
                "bedrock-agent-runtime.us-east-1.amazonaws.com"
            )),
            "Documentation search failed: the Amazon Bedrock agent runtime endpoint \
             bedrock-agent-runtime.us-east-1.amazonaws.com could not be resolved (DNS lookup \
             failed or gave no address; check AWS_REGION_NAME / AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT)"
        );
        assert_eq!(unreadable_answer().status, 502);
    }

    #[test]
    fn hostile_bodies_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for n in 0..300 {
            let mut b = Vec::new();
            for _ in 0..(n % 80) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let alphabet = b"{}[]\":,0123456789abcdefnrtul \\eE+-.typeqrsz";
                b.push(alphabet[(x as usize) % alphabet.len()]);
            }
            match plan(&b, &ctx(Some("ABCDE12345"))) {
                Ok(_) => {}
                Err(e) => assert!(serde_json::from_str::<Value>(&e.body).is_ok()),
            }
        }
    }
}
