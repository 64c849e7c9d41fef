//! A stand-in for an Amazon Bedrock knowledge base behind the Agents for Amazon Bedrock Runtime
//! `Retrieve` operation: request validation, a small corpus of GitLab-documentation-like pages
//! (written for this emulator, not copied from GitLab), a keyword score, and the answer shape.
//!
//! Contract: `docs/bedrock-contract.md#retrieve` (from the AWS API reference
//! https://docs.aws.amazon.com/bedrock/latest/APIReference/API_agent-runtime_Retrieve.html and
//! botocore's `bedrock-agent-runtime/2023-07-26/service-2.json`): `POST
//! /knowledgebases/{knowledgeBaseId}/retrieve` with `{"retrievalQuery":{"text"},
//! "retrievalConfiguration":{"vectorSearchConfiguration":{"numberOfResults"}}}`, answered with
//! `{"retrievalResults":[{"content":{"text","type"},"location":{...},"metadata":{...},"score"}]}`.
//!
//! Knowledge bases (the id is the path label, percent-decoded once):
//! - an id starting with `EMU` (the demo uses `EMUDOCS001`) serves the corpus;
//! - `FAULT<status>…` answers that error instead (`FAULT400`, `FAULT403`, `FAULT429`,
//!   `FAULT500`, `FAULT502`; `FAULT404` like any unknown id), `FAULTHANG…` never answers;
//! - any other id is a 404 `ResourceNotFoundException`.
//!
//! Half the pages come from a web crawler data source (`WEB` locations on docs.gitlab.com), half
//! from an S3 data source holding GitLab's `doc/` folder (`S3` locations with a `title`
//! attribute, as an S3 document's `.metadata.json` would give it).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The knowledge base the offline demo configures.
pub const DEMO_KNOWLEDGE_BASE: &str = "EMUDOCS001";
/// `numberOfResults` when the request has none (the API reference's default).
pub const DEFAULT_RESULTS: u64 = 5;
/// `KnowledgeBaseQueryTextString` max length.
pub const MAX_QUERY_CHARS: usize = 20_000;
/// The S3 bucket of the emulated S3 data source.
pub const S3_BUCKET: &str = "emulator-gitlab-docs";

/// Where a page comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Web crawler: `https://docs.gitlab.com/<path>/`.
    Web,
    /// S3: `s3://<bucket>/doc/<path>.md`, title in the metadata.
    S3,
}

/// One page of the corpus.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub title: &'static str,
    /// Path under docs.gitlab.com (and under `doc/` in the repository, for S3 pages).
    pub path: &'static str,
    pub source: Source,
    /// The page's chunks, as a knowledge base would have split it.
    pub chunks: &'static [&'static str],
}

/// The corpus: short pages written for the emulator about common GitLab tasks.
pub const CORPUS: &[Page] = &[
    Page {
        title: "Protected branches",
        path: "user/project/repository/branches/protected",
        source: Source::Web,
        chunks: &[
            "Protected branches. A protected branch controls who can push to it, who can merge into it, and whether it can be force pushed or deleted. The default branch is protected when a project is created.",
            "To protect a branch: on the left sidebar, select Settings > Repository, expand Protected branches, select Add protected branch, choose the branch or a wildcard such as release/*, set Allowed to merge and Allowed to push and merge (for example Maintainers), then select Protect.",
        ],
    },
    Page {
        title: "CI/CD variables",
        path: "ci/variables/_index",
        source: Source::S3,
        chunks: &[
            "CI/CD variables store values such as tokens and settings for pipelines. Define project variables in Settings > CI/CD > Variables; select Mask variable to hide the value in job logs and Protect variable to expose it only to pipelines on protected branches and tags.",
            "Variables can also be set in the .gitlab-ci.yml file with the variables keyword, globally or per job. A variable defined in the project settings overrides one with the same name in .gitlab-ci.yml.",
        ],
    },
    Page {
        title: "Merge request approval rules",
        path: "user/project/merge_requests/approvals/rules",
        source: Source::Web,
        chunks: &[
            "Approval rules define how many approvals a merge request needs before it can merge, and which users or groups can approve. To add a rule: select Settings > Merge requests, go to Merge request approvals, select Add approval rule, and set the rule name, the number of approvals required and the approvers.",
        ],
    },
    Page {
        title: "Protected tags",
        path: "user/project/protected_tags",
        source: Source::S3,
        chunks: &[
            "Protected tags control who can create tags and prevent them from being updated or deleted. To protect a tag: select Settings > Repository, expand Protected tags, enter a tag name or a wildcard such as v*, choose who is Allowed to create, then select Protect.",
        ],
    },
    Page {
        title: "Create a project",
        path: "user/project/working_with_projects",
        source: Source::Web,
        chunks: &[
            "To create a project: on the left sidebar, select Create new (+) > New project/repository, choose Create blank project, enter the project name and slug, pick the group or namespace and the visibility level, then select Create project.",
        ],
    },
    Page {
        title: "Scheduled pipelines",
        path: "ci/pipelines/schedules",
        source: Source::Web,
        chunks: &[
            "Pipeline schedules run CI/CD pipelines at regular intervals. To add a schedule: select Build > Pipeline schedules, select New schedule, enter a description, an interval pattern in cron syntax such as 0 3 * * *, the target branch or tag, and optional variables, then select Create pipeline schedule.",
        ],
    },
    Page {
        title: "Personal access tokens",
        path: "user/profile/personal_access_tokens",
        source: Source::S3,
        chunks: &[
            "Personal access tokens authenticate with the GitLab API and with Git over HTTPS. To create one: select your avatar > Edit profile > Access tokens, select Add new token, enter a name and an expiry date, select the scopes such as read_api or write_repository, then select Create token and copy it: it is shown only once.",
        ],
    },
    Page {
        title: "Revert changes",
        path: "user/project/merge_requests/revert_changes",
        source: Source::Web,
        chunks: &[
            "To revert a merged merge request, open it and select Revert, choose the target branch, and optionally start a new merge request with the changes. To revert a single commit, open the commit and select Options > Revert, or run git revert <commit-sha> locally and push the new commit.",
        ],
    },
];

/// The `Retrieve` request members the emulator reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetrieveBody {
    retrieval_query: Option<QueryBody>,
    #[serde(default)]
    retrieval_configuration: Option<ConfigurationBody>,
}

#[derive(Debug, Deserialize)]
struct QueryBody {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigurationBody {
    #[serde(default)]
    vector_search_configuration: Option<VectorSearchBody>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VectorSearchBody {
    #[serde(default)]
    number_of_results: Option<i64>,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub text: String,
    pub number_of_results: u64,
}

/// Validates a `Retrieve` body; the error is the `message` of a 400 `ValidationException`.
pub fn validate(body: &[u8]) -> Result<Query, String> {
    let parsed: RetrieveBody = serde_json::from_slice(body).map_err(|e| {
        format!("Malformed input request: {e}, please reformat your input and try again.")
    })?;
    let text = parsed
        .retrieval_query
        .and_then(|q| q.text)
        .ok_or("1 validation error detected: Value null at 'retrievalQuery.text' failed to satisfy constraint: Member must not be null")?;
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(format!(
            "1 validation error detected: Value at 'retrievalQuery.text' failed to satisfy constraint: Member must have length less than or equal to {MAX_QUERY_CHARS}"
        ));
    }
    let n = parsed
        .retrieval_configuration
        .and_then(|c| c.vector_search_configuration)
        .and_then(|v| v.number_of_results);
    let number_of_results = match n {
        None => DEFAULT_RESULTS,
        Some(n) if (1..=100).contains(&n) => n as u64,
        Some(n) => {
            return Err(format!(
                "1 validation error detected: Value '{n}' at 'retrievalConfiguration.vectorSearchConfiguration.numberOfResults' failed to satisfy constraint: Member must have value between 1 and 100"
            ))
        }
    };
    Ok(Query {
        text,
        number_of_results,
    })
}

/// What a knowledge base id stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knowledge {
    /// Serves the corpus.
    Corpus,
    /// Answers this error (status, `x-amzn-errortype`, message).
    Error(u16, &'static str, &'static str),
    /// Never answers.
    Hang,
}

/// The knowledge base behind `id` (see the module documentation).
pub fn lookup(id: &str) -> Knowledge {
    if id.starts_with("EMU") {
        return Knowledge::Corpus;
    }
    if let Some(fault) = id.strip_prefix("FAULT") {
        if fault.starts_with("HANG") {
            return Knowledge::Hang;
        }
        let error = match fault.get(..3) {
            Some("400") => Some((400, "ValidationException", "The input fails to satisfy the constraints specified by the service (emulator FAULT400).")),
            Some("403") => Some((403, "AccessDeniedException", "User: arn:aws:iam::123456789012:user/duo-bedrock is not authorized to perform: bedrock:Retrieve on resource: arn:aws:bedrock:us-east-1:123456789012:knowledge-base/FAULT40300 because no identity-based policy allows the bedrock:Retrieve action")),
            Some("404") => None,
            Some("429") => Some((429, "ThrottlingException", "Your request rate is too high. Reduce the frequency of requests (emulator FAULT429).")),
            Some("500") => Some((500, "InternalServerException", "An internal server error occurred. Retry your request (emulator FAULT500).")),
            Some("502") => Some((502, "BadGatewayException", "There was an issue with a dependency due to a server issue (emulator FAULT502).")),
            _ => None,
        };
        if let Some((status, kind, message)) = error {
            return Knowledge::Error(status, kind, message);
        }
    }
    Knowledge::Error(
        404,
        "ResourceNotFoundException",
        "The specified knowledge base does not exist (emulator: only ids starting with EMU exist).",
    )
}

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "i", "in", "is", "it", "me", "my", "of", "on", "or", "the", "to", "what", "where", "which",
    "with", "you", "your",
];

/// Lower-case words of `text` without stop words, plurals reduced (`branches` → `branch`,
/// `tags` → `tag`).
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.to_lowercase();
            if ["ches", "shes", "sses", "xes"]
                .iter()
                .any(|e| w.ends_with(e))
            {
                w[..w.len() - 2].to_string()
            } else if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
                w[..w.len() - 1].to_string()
            } else {
                w
            }
        })
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// A query term matches a word when they are equal, or when the shorter (at least 4 letters)
/// starts the longer (`protect` ~ `protected`, `schedule` ~ `scheduled`).
fn matches(term: &str, word: &str) -> bool {
    let (short, long) = if term.len() <= word.len() {
        (term, word)
    } else {
        (word, term)
    };
    short == long || (short.len() >= 4 && long.starts_with(short))
}

/// `raw / (raw + 4)`, where `raw` counts the words of the chunk matching a distinct query term,
/// title words three times; 0.0 when none matches.
pub fn score(query_terms: &[String], title: &str, chunk: &str) -> f64 {
    let title_terms = terms(title);
    let chunk_terms = terms(chunk);
    let mut distinct: Vec<&String> = query_terms.iter().collect();
    distinct.sort();
    distinct.dedup();
    let raw: usize = distinct
        .iter()
        .map(|t| {
            3 * title_terms.iter().filter(|w| matches(t, w)).count()
                + chunk_terms.iter().filter(|w| matches(t, w)).count()
        })
        .sum();
    let raw = raw as f64;
    if raw == 0.0 {
        0.0
    } else {
        (raw / (raw + 4.0) * 1000.0).round() / 1000.0
    }
}

/// One result of the answer.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub page: usize,
    pub chunk: usize,
    pub score: f64,
}

/// The best chunks for `query`, best first (ties in corpus order).
pub fn search(query: &Query) -> Vec<Hit> {
    let q = terms(&query.text);
    let mut hits: Vec<Hit> = CORPUS
        .iter()
        .enumerate()
        .flat_map(|(p, page)| {
            let q = &q;
            page.chunks.iter().enumerate().map(move |(c, text)| Hit {
                page: p,
                chunk: c,
                score: score(q, page.title, text),
            })
        })
        .filter(|h| h.score > 0.0)
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(usize::try_from(query.number_of_results).unwrap_or(usize::MAX));
    hits
}

impl Page {
    /// The page's public URL.
    pub fn url(&self) -> String {
        let path = self.path.strip_suffix("/_index").unwrap_or(self.path);
        format!("https://docs.gitlab.com/{path}/")
    }

    /// Where the knowledge base says the page comes from.
    pub fn source_uri(&self) -> String {
        match self.source {
            Source::Web => self.url(),
            Source::S3 => format!("s3://{S3_BUCKET}/doc/{}.md", self.path),
        }
    }
}

/// The `Retrieve` answer for `hits`.
pub fn answer(hits: &[Hit]) -> Value {
    let results: Vec<Value> = hits
        .iter()
        .filter_map(|h| {
            let page = CORPUS.get(h.page)?;
            let text = page.chunks.get(h.chunk)?;
            let uri = page.source_uri();
            let (location, data_source) = match page.source {
                Source::Web => (
                    json!({"type": "WEB", "webLocation": {"url": uri}}),
                    "EMUWEBDS01",
                ),
                Source::S3 => (
                    json!({"type": "S3", "s3Location": {"uri": uri}}),
                    "EMUS3DS001",
                ),
            };
            let mut metadata = json!({
                "x-amz-bedrock-kb-source-uri": uri,
                "x-amz-bedrock-kb-chunk-id": format!("1%3A0%3Aemu-{}-{}", h.page, h.chunk),
                "x-amz-bedrock-kb-data-source-id": data_source,
            });
            if page.source == Source::S3 {
                metadata["title"] = json!(page.title);
            }
            Some(json!({
                "content": {"text": text, "type": "TEXT"},
                "location": location,
                "metadata": metadata,
                "score": h.score,
            }))
        })
        .collect();
    json!({ "retrievalResults": results })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str, n: u64) -> Query {
        Query {
            text: text.into(),
            number_of_results: n,
        }
    }

    #[test]
    fn the_documentation_question_finds_its_page_first() {
        let hits = search(&q("How do I protect a branch?", 4));
        let first = &CORPUS[hits[0].page];
        assert_eq!(first.title, "Protected branches");
        assert!(CORPUS[hits[0].page].chunks[hits[0].chunk].contains("Settings > Repository"));
        assert!(hits.len() <= 4 && hits.windows(2).all(|w| w[0].score >= w[1].score));
        for (question, title) in [
            ("How do I mask a CI/CD variable?", "CI/CD variables"),
            (
                "merge request approvals required",
                "Merge request approval rules",
            ),
            ("schedule a pipeline with cron", "Scheduled pipelines"),
            ("create a personal access token", "Personal access tokens"),
            ("revert a commit", "Revert changes"),
        ] {
            let hits = search(&q(question, 3));
            assert_eq!(CORPUS[hits[0].page].title, title, "{question}");
        }
        assert!(search(&q("zebra quantum", 5)).is_empty());
        assert!(search(&q("", 5)).is_empty());
        assert_eq!(search(&q("project", 1)).len(), 1);
    }

    #[test]
    fn answers_have_the_retrieve_shape() {
        let v = answer(&search(&q("protected tags and branches", 10)));
        let results = v["retrievalResults"].as_array().unwrap();
        assert!(results.len() >= 3);
        let web = results
            .iter()
            .find(|r| r["location"]["type"] == "WEB")
            .unwrap();
        assert!(web["location"]["webLocation"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://docs.gitlab.com/"));
        assert!(web["metadata"].get("title").is_none());
        let s3 = results
            .iter()
            .find(|r| r["location"]["type"] == "S3")
            .unwrap();
        assert_eq!(
            s3["location"]["s3Location"]["uri"],
            "s3://emulator-gitlab-docs/doc/user/project/protected_tags.md"
        );
        assert_eq!(s3["metadata"]["title"], "Protected tags");
        assert_eq!(s3["content"]["type"], "TEXT");
        assert!(results.iter().all(|r| r["score"].as_f64().unwrap() > 0.0));
        assert_eq!(CORPUS[1].url(), "https://docs.gitlab.com/ci/variables/");
    }

    #[test]
    fn validation_like_the_service() {
        let ok = validate(br#"{"retrievalQuery":{"text":"q"},"retrievalConfiguration":{"vectorSearchConfiguration":{"numberOfResults":7}}}"#).unwrap();
        assert_eq!(ok, q("q", 7));
        assert_eq!(
            validate(br#"{"retrievalQuery":{"text":"q"}}"#).unwrap(),
            q("q", DEFAULT_RESULTS)
        );
        for bad in [
            &br#"{"retrievalQuery":{}}"#[..],
            br#"{}"#,
            br#"not json"#,
            br#"{"retrievalQuery":{"text":"q"},"retrievalConfiguration":{"vectorSearchConfiguration":{"numberOfResults":0}}}"#,
            br#"{"retrievalQuery":{"text":"q"},"retrievalConfiguration":{"vectorSearchConfiguration":{"numberOfResults":101}}}"#,
        ] {
            assert!(validate(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let long = format!(
            r#"{{"retrievalQuery":{{"text":"{}"}}}}"#,
            "a".repeat(MAX_QUERY_CHARS + 1)
        );
        assert!(validate(long.as_bytes()).unwrap_err().contains("20000"));
    }

    #[test]
    fn knowledge_base_ids() {
        assert_eq!(lookup(DEMO_KNOWLEDGE_BASE), Knowledge::Corpus);
        assert!(matches!(
            lookup("FAULT40300"),
            Knowledge::Error(403, "AccessDeniedException", _)
        ));
        assert!(matches!(
            lookup("FAULT42900"),
            Knowledge::Error(429, "ThrottlingException", _)
        ));
        assert!(matches!(
            lookup("FAULT40400"),
            Knowledge::Error(404, "ResourceNotFoundException", _)
        ));
        assert!(matches!(lookup("ABCDE12345"), Knowledge::Error(404, _, _)));
        assert_eq!(lookup("FAULTHANG0"), Knowledge::Hang);
        assert_eq!(
            terms("Protected Branches, the CI/CD tags!"),
            ["protected", "branch", "ci", "cd", "tag"]
        );
        assert!(matches("protect", "protected") && !matches("tag", "tagline"));
    }
}
