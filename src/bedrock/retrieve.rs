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

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

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

/// `KnowledgeBaseRetrievalResult`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetrievalResult {
    #[serde(default)]
    pub content: Option<ResultContent>,
    #[serde(default)]
    pub location: Option<ResultLocation>,
    /// `RetrievalResultMetadata`: attribute name → JSON document (the data source's attributes,
    /// `x-amz-bedrock-kb-*` keys, an S3 document's `.metadata.json` attributes).
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, MetadataValue>>,
    #[serde(default)]
    pub score: Option<f64>,
}

/// `RetrievalResultContent`: `text` for text chunks (`type` `TEXT`, or absent in older answers).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResultContent {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `RetrievalResultLocation`: `type` and one member per data source kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultLocation {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub web_location: Option<UrlLocation>,
    #[serde(default)]
    pub s3_location: Option<UriLocation>,
    #[serde(default)]
    pub confluence_location: Option<UrlLocation>,
    #[serde(default)]
    pub salesforce_location: Option<UrlLocation>,
    #[serde(default)]
    pub share_point_location: Option<UrlLocation>,
    #[serde(default)]
    pub kendra_document_location: Option<UriLocation>,
}

/// A location with a `url` (web, Confluence, Salesforce, SharePoint).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UrlLocation {
    #[serde(default)]
    pub url: Option<String>,
}

/// A location with a `uri` (S3 `s3://bucket/key`, Kendra).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UriLocation {
    #[serde(default)]
    pub uri: Option<String>,
}

/// A metadata value: only strings are read; anything else is skipped.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MetadataValue {
    Text(String),
    Other(IgnoredAny),
}

/// Metadata key Bedrock sets to the source document's URI.
pub const SOURCE_URI_KEY: &str = "x-amz-bedrock-kb-source-uri";

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl RetrievalResult {
    /// The chunk's text, when it is a non-blank text chunk.
    pub fn text(&self) -> Option<&str> {
        let c = self.content.as_ref()?;
        if c.kind.as_deref().is_some_and(|k| k != "TEXT") {
            return None;
        }
        c.text.as_deref().filter(|t| !t.trim().is_empty())
    }

    /// A string metadata attribute (blank values count as absent).
    pub fn metadata_text(&self, key: &str) -> Option<&str> {
        match self.metadata.as_ref()?.get(key)? {
            MetadataValue::Text(s) => Some(s.trim()).filter(|s| !s.is_empty()),
            MetadataValue::Other(_) => None,
        }
    }

    /// Where the chunk comes from: the location's URL or URI, else the `x-amz-bedrock-kb-source-uri`
    /// attribute.
    pub fn source_uri(&self) -> Option<&str> {
        let l = self.location.as_ref();
        l.and_then(|l| {
            [
                &l.web_location,
                &l.confluence_location,
                &l.salesforce_location,
                &l.share_point_location,
            ]
            .into_iter()
            .find_map(|u| u.as_ref().and_then(|u| non_empty(&u.url)))
            .or_else(|| {
                [&l.s3_location, &l.kendra_document_location]
                    .into_iter()
                    .find_map(|u| u.as_ref().and_then(|u| non_empty(&u.uri)))
            })
        })
        .or_else(|| self.metadata_text(SOURCE_URI_KEY))
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
                          "title": " Protected branches ", "year": 2024, "tags": ["a"], "empty": "  "},
             "score": 0.61},
            {"content": {"text": "CI/CD variables"},
             "location": {"type": "S3", "s3Location": {"uri": "s3://docs/doc/ci/variables/_index.md"}},
             "score": 0.5},
            {"content": {"type": "IMAGE", "byteContent": "data:image/png;base64,AAAA"},
             "location": {"type": "S3", "s3Location": {"uri": "s3://docs/a.png"}}},
            {"content": {"text": "   "}, "location": {"type": "CONFLUENCE", "confluenceLocation": {"url": "https://wiki/x"}}},
            {"content": {"text": "only metadata"}, "metadata": {"x-amz-bedrock-kb-source-uri": "s3://b/k.md"}, "documentId": "d", "futureField": {}},
            {"content": {"text": "nothing"}, "location": {"type": "CUSTOM", "customDocumentLocation": {"id": "c"}}, "metadata": null}
        ], "nextToken": "n", "guardrailAction": "NONE"});
        let r: RetrieveResponse = serde_json::from_value(doc).unwrap();
        let rs = &r.retrieval_results;
        assert_eq!(rs.len(), 6);
        assert_eq!(
            rs[0].text(),
            Some("Protect a branch: Settings > Repository.")
        );
        assert_eq!(
            rs[0].source_uri(),
            Some("https://docs.gitlab.com/user/project/repository/branches/protected/")
        );
        assert_eq!(rs[0].metadata_text("title"), Some("Protected branches"));
        assert_eq!(rs[0].metadata_text("year"), None);
        assert_eq!(rs[0].metadata_text("empty"), None);
        assert_eq!(rs[0].score, Some(0.61));
        assert_eq!(
            rs[1].source_uri(),
            Some("s3://docs/doc/ci/variables/_index.md")
        );
        assert_eq!(rs[1].text(), Some("CI/CD variables"));
        assert_eq!(rs[2].text(), None, "not a text chunk");
        assert_eq!(rs[3].text(), None, "blank");
        assert_eq!(rs[3].source_uri(), Some("https://wiki/x"));
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
