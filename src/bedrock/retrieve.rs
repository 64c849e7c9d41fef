//! Knowledge base `Retrieve` (Agents for Amazon Bedrock Runtime): the request body, the wire path,
//! the signed request and the typed answer.
//!
//! Contract: `docs/bedrock-contract.md#retrieve`, from the AWS API reference
//! (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent-runtime_Retrieve.html) and
//! the service model (`boto/botocore`,
//! `botocore/data/bedrock-agent-runtime/2023-07-26/service-2.json`, operation `Retrieve`):
//! `POST /knowledgebases/{knowledgeBaseId}/retrieve`, protocol `rest-json`, signing name
//! `bedrock` (like the runtime), SigV4 only: Bedrock API keys do not authorize the agent runtime
//! (https://docs.aws.amazon.com/bedrock/latest/userguide/api-keys.html). Errors have the runtime's
//! shape (`x-amzn-errortype`, `{"message"}`) and go through [`super::errors::parse_error`].
//!
//! Only the members the filter uses are modelled; unknown members are ignored, so new AWS
//! fields never break an answer.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::endpoint::Endpoint;
use super::invoke::{post, UpstreamAuth, UpstreamRequest};
use super::sigv4::SignError;
use super::uri::retrieve_path;

/// `KnowledgeBaseQueryTextString` max length (service model): longer queries are cut.
pub const MAX_QUERY_CHARS: usize = 20_000;
/// `numberOfResults` range (service model: 1..100).
pub const MAX_RESULTS: u32 = 100;
/// `KnowledgeBaseIdentifier` max length (service model).
pub const MAX_KNOWLEDGE_BASE_ID_LEN: usize = 2048;

/// One `Retrieve` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrieveRequest {
    /// The knowledge base id (not yet encoded).
    pub knowledge_base_id: String,
    /// The user's question (secret: never logged unless verbose AI logs are on).
    pub query: String,
    /// Top-K results, clamped to `1..=MAX_RESULTS`.
    pub number_of_results: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    retrieval_query: Query<'a>,
    retrieval_configuration: RetrievalConfiguration,
}

#[derive(Serialize)]
struct Query<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RetrievalConfiguration {
    vector_search_configuration: VectorSearchConfiguration,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VectorSearchConfiguration {
    number_of_results: u32,
}

/// The first `max` characters of `s`.
fn cut_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// `{"retrievalQuery":{"text":…},"retrievalConfiguration":{"vectorSearchConfiguration":{"numberOfResults":N}}}`.
pub fn body(req: &RetrieveRequest) -> Result<Vec<u8>, SignError> {
    let body = Body {
        retrieval_query: Query {
            text: cut_chars(&req.query, MAX_QUERY_CHARS),
        },
        retrieval_configuration: RetrievalConfiguration {
            vector_search_configuration: VectorSearchConfiguration {
                number_of_results: req.number_of_results.clamp(1, MAX_RESULTS),
            },
        },
    };
    serde_json::to_vec(&body)
        .map_err(|e| SignError::new(format!("cannot serialize the Retrieve body: {e}")))
}

/// The signed `Retrieve` request for `endpoint` (the agent runtime's).
pub fn build(
    req: &RetrieveRequest,
    endpoint: &Endpoint,
    auth: &UpstreamAuth,
    time: SystemTime,
) -> Result<UpstreamRequest, SignError> {
    if matches!(auth, UpstreamAuth::Bearer(_)) {
        return Err(SignError::new(
            "Bedrock API keys cannot call the Agents for Amazon Bedrock Runtime (Retrieve needs SigV4 credentials)",
        ));
    }
    let id = &req.knowledge_base_id;
    if id.is_empty() || id.len() > MAX_KNOWLEDGE_BASE_ID_LEN {
        return Err(SignError::new(format!(
            "the knowledge base id must be 1 to {MAX_KNOWLEDGE_BASE_ID_LEN} bytes long"
        )));
    }
    let base = [
        ("content-type", "application/json"),
        ("accept", "application/json"),
    ];
    post(
        retrieve_path(id),
        endpoint.authority(),
        &base,
        body(req)?,
        auth,
        time,
    )
}

/// `RetrieveResponse`: `retrievalResults` (required), best first.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetrieveResponse {
    pub retrieval_results: Vec<RetrievalResult>,
}

/// `KnowledgeBaseRetrievalResult`. AWS's JSON protocols omit absent members (never `null`), so
/// absent structures default to empty ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetrievalResult {
    #[serde(default)]
    pub content: ResultContent,
    #[serde(default)]
    pub location: ResultLocation,
    #[serde(default)]
    pub metadata: ResultMetadata,
}

/// `RetrievalResultContent`: `text` for text chunks (`type` `TEXT`, or absent in older answers).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResultContent {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `RetrievalResultLocation`: one member per data source kind; the filter reads the two a
/// documentation knowledge base has (web crawler, S3). For the others (Confluence, SharePoint,
/// ...) Bedrock's `x-amz-bedrock-kb-source-uri` attribute names the document.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultLocation {
    #[serde(default)]
    pub web_location: Place,
    #[serde(default)]
    pub s3_location: Place,
}

/// A location's address: `url` (`RetrievalResultWebLocation`) or `uri`
/// (`RetrievalResultS3Location`, `s3://bucket/key`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Place {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
}

/// `RetrievalResultMetadata`: a map of attribute names to JSON documents (the data source's
/// attributes, Bedrock's `x-amz-bedrock-kb-*` keys, an S3 document's `.metadata.json`
/// attributes); its values are any JSON document in the service model, hence [`Value`]. The
/// filter reads the string values of [`SOURCE_URI`], [`TITLE`] and [`SOURCE_URL`].
pub type ResultMetadata = Map<String, Value>;

/// Set by Bedrock to the source document's URI.
pub const SOURCE_URI: &str = "x-amz-bedrock-kb-source-uri";
/// An S3 document's own `title` attribute (`.metadata.json`).
pub const TITLE: &str = "title";
/// An S3 document's own `source_url` attribute (`.metadata.json`).
pub const SOURCE_URL: &str = "source_url";

impl RetrievalResult {
    /// A non-blank string attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.metadata
            .get(name)?
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl RetrievalResult {
    /// The chunk's text, when it is a non-blank text chunk.
    pub fn text(&self) -> Option<&str> {
        if self.content.kind.as_deref().is_some_and(|k| k != "TEXT") {
            return None;
        }
        non_empty(&self.content.text).map(|_| self.content.text.as_deref().unwrap_or_default())
    }

    /// The document's own `title` attribute.
    pub fn title(&self) -> Option<&str> {
        self.attribute(TITLE)
    }

    /// The document's own `source_url` attribute.
    pub fn source_url_attribute(&self) -> Option<&str> {
        self.attribute(SOURCE_URL)
    }

    /// Where the chunk comes from: the web location's URL or the S3 location's URI, else the
    /// `x-amz-bedrock-kb-source-uri` attribute.
    pub fn source_uri(&self) -> Option<&str> {
        non_empty(&self.location.web_location.url)
            .or_else(|| non_empty(&self.location.s3_location.uri))
            .or_else(|| self.attribute(SOURCE_URI))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bedrock::sigv4::test_support::parse_time;
    use crate::bedrock::sigv4::{self, Credentials, SignInput};
    use serde_json::{json, Value};

    fn req() -> RetrieveRequest {
        RetrieveRequest {
            knowledge_base_id: "ABCDEFGHIJ".into(),
            query: "How do I protect a branch?".into(),
            number_of_results: 4,
        }
    }

    fn sigv4() -> UpstreamAuth {
        UpstreamAuth::SigV4 {
            creds: Credentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
                session_token: Some("TOKEN".into()),
            },
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn body_has_the_documented_shape() {
        let b: Value = serde_json::from_slice(&body(&req()).unwrap()).unwrap();
        assert_eq!(
            b,
            json!({"retrievalQuery": {"text": "How do I protect a branch?"},
                   "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 4}}})
        );
        let mut r = req();
        r.number_of_results = 0;
        r.query = "é".repeat(MAX_QUERY_CHARS + 5);
        let b: Value = serde_json::from_slice(&body(&r).unwrap()).unwrap();
        assert_eq!(
            b["retrievalConfiguration"]["vectorSearchConfiguration"]["numberOfResults"],
            1
        );
        assert_eq!(
            b["retrievalQuery"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            MAX_QUERY_CHARS
        );
        r.number_of_results = 1000;
        let b: Value = serde_json::from_slice(&body(&r).unwrap()).unwrap();
        assert_eq!(
            b["retrievalConfiguration"]["vectorSearchConfiguration"]["numberOfResults"],
            100
        );
    }

    #[test]
    fn build_signs_for_service_bedrock_on_the_agent_runtime_host() {
        let ep = Endpoint::resolve_agent_runtime(None, None, "us-east-1").unwrap();
        let t = parse_time("2026-11-27T10:49:18Z");
        let out = build(&req(), &ep, &sigv4(), t).unwrap();
        assert_eq!(out.method, "POST");
        assert_eq!(out.path, "/knowledgebases/ABCDEFGHIJ/retrieve");
        assert_eq!(
            out.authority,
            "bedrock-agent-runtime.us-east-1.amazonaws.com"
        );
        assert_eq!(out.body, body(&req()).unwrap());
        let names: Vec<&str> = out.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "accept",
                "x-amz-date",
                "authorization",
                "x-amz-security-token"
            ]
        );
        let auth = &out.headers[3].1;
        assert!(
            auth.contains("/us-east-1/bedrock/aws4_request")
                && auth.contains(
                    "SignedHeaders=accept;content-type;host;x-amz-date;x-amz-security-token,"
                ),
            "{auth}"
        );
        // The same signature as signing the pieces directly.
        let UpstreamAuth::SigV4 { creds, .. } = sigv4() else {
            unreachable!()
        };
        let direct = sigv4::sign(
            &SignInput {
                method: "POST",
                authority: &out.authority,
                path: &out.path,
                headers: &[
                    ("content-type", "application/json"),
                    ("accept", "application/json"),
                ],
                body: &out.body,
            },
            &creds,
            "us-east-1",
            t,
        )
        .unwrap();
        assert_eq!(&out.headers[2..], &direct[..]);
        // Secrets stay out of Debug.
        let d = format!("{out:?}");
        assert!(!d.contains("TOKEN") && !d.contains("Signature="), "{d}");
    }

    #[test]
    fn api_keys_and_bad_ids_are_refused() {
        let ep = Endpoint::resolve_agent_runtime(None, None, "us-east-1").unwrap();
        let t = parse_time("2026-11-27T10:49:18Z");
        let e = build(&req(), &ep, &UpstreamAuth::Bearer("k".into()), t).unwrap_err();
        assert!(e.to_string().contains("API keys"), "{e}");
        let mut r = req();
        r.knowledge_base_id = String::new();
        assert!(build(&r, &ep, &sigv4(), t).is_err());
        r.knowledge_base_id = "../../model/x/invoke".into();
        let out = build(&r, &ep, &sigv4(), t).unwrap();
        assert_eq!(
            out.path,
            "/knowledgebases/..%2F..%2Fmodel%2Fx%2Finvoke/retrieve"
        );
    }

    #[test]
    fn answers_parse_with_every_location_kind() {
        let doc = json!({"retrievalResults": [
            {"content": {"text": "Protect a branch: Settings > Repository.", "type": "TEXT"},
             "location": {"type": "WEB", "webLocation": {"url": "https://docs.gitlab.com/user/project/repository/branches/protected/"}},
             "metadata": {"x-amz-bedrock-kb-source-uri": "https://docs.gitlab.com/x", "x-amz-bedrock-kb-chunk-id": "1%3A0%3Aabc",
                          "title": " Protected branches ", "year": 2024, "tags": ["a"], "source_url": "  "},
             "score": 0.61},
            {"content": {"text": "CI/CD variables"},
             "location": {"type": "S3", "s3Location": {"uri": "s3://docs/doc/ci/variables/_index.md"}},
             "score": 0.5},
            {"content": {"type": "IMAGE", "byteContent": "data:image/png;base64,AAAA"},
             "location": {"type": "S3", "s3Location": {"uri": "s3://docs/a.png"}}},
            {"content": {"text": "   "}, "location": {"type": "CONFLUENCE", "confluenceLocation": {"url": "https://wiki/x"}}},
            {"content": {"text": "only metadata"}, "metadata": {"x-amz-bedrock-kb-source-uri": "s3://b/k.md"}, "documentId": "d", "futureField": {}},
            {"content": {"text": "nothing"}, "location": {"type": "CUSTOM", "customDocumentLocation": {"id": "c"}}},
            {"content": {"text": "typed"}, "metadata": {"title": 7, "source_url": "https://x/y"}}
        ], "nextToken": "n", "guardrailAction": "NONE"});
        let r: RetrieveResponse = serde_json::from_value(doc).unwrap();
        let rs = &r.retrieval_results;
        assert_eq!(rs.len(), 7);
        assert_eq!(rs[6].title(), None, "a non-string title is skipped");
        assert_eq!(rs[6].source_url_attribute(), Some("https://x/y"));
        assert_eq!(
            rs[0].text(),
            Some("Protect a branch: Settings > Repository.")
        );
        assert_eq!(
            rs[0].source_uri(),
            Some("https://docs.gitlab.com/user/project/repository/branches/protected/")
        );
        assert_eq!(rs[0].title(), Some("Protected branches"));
        assert_eq!(rs[0].source_url_attribute(), None);
        assert_eq!(rs[1].title(), None);
        assert_eq!(
            rs[1].source_uri(),
            Some("s3://docs/doc/ci/variables/_index.md")
        );
        assert_eq!(rs[1].text(), Some("CI/CD variables"));
        assert_eq!(rs[2].text(), None, "not a text chunk");
        assert_eq!(rs[3].text(), None, "blank");
        assert_eq!(
            rs[3].source_uri(),
            None,
            "Confluence locations are not read"
        );
        assert_eq!(rs[4].source_uri(), Some("s3://b/k.md"));
        assert_eq!(rs[5].source_uri(), None);
        let empty: RetrieveResponse = serde_json::from_str(r#"{"retrievalResults": []}"#).unwrap();
        assert!(empty.retrieval_results.is_empty());
        for bad in ["{}", "[]", "null", r#"{"retrievalResults": {}}"#] {
            assert!(
                serde_json::from_str::<RetrieveResponse>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
