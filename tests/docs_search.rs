//! Duo Chat's documentation search through the real Envoy (GitLab issue 10, item 1;
//! docs/gitlab-contract.md#documentation-search, docs/bedrock-contract.md#retrieve): a ReAct step
//! that picks the documentation tool, `POST /v1/search/gitlab-docs` answered from a Bedrock
//! knowledge base (the emulator's), then the `chat/documentation_search` prompt with what was
//! found, as Rails chains them (`ee/lib/gitlab/llm/chain/tools/gitlab_documentation/executor.rb`,
//! `embeddings_completion.rb`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{json, Value};

const KB: &str = "EMUDOCS001";
const QUESTION: &str = "How do I protect a branch?";
const UNCONFIGURED_WARNING: &str = "AIGW_BEDROCK_KNOWLEDGE_BASE_ID is not set";

fn metadata(model: &str) -> Value {
    json!({"provider": "openai", "name": "claude_3", "endpoint": "https://bedrock-runtime.us-east-1.amazonaws.com",
           "api_key": null, "identifier": format!("bedrock/{model}")})
}

/// What Rails' `DocsClient#request_body` sends.
fn search_body(query: &str) -> Value {
    json!({"type": "search-docs", "metadata": {"source": "GitLab EE", "version": "18.9.0"},
           "payload": {"query": query}})
}

fn with_knowledge_base<'a>(emu: &'a Emulator, kb: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AIGW_BEDROCK_KNOWLEDGE_BASE_ID", kb),
        ("AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT", emu.url.as_str()),
    ]
}

fn retrievals(emu: &Emulator) -> Vec<Value> {
    emu.requests()
        .into_iter()
        .filter(|r| r["operation"] == "retrieve")
        .collect()
}

fn prometheus_has(sidecar: &Sidecar, line: &str) -> bool {
    std::thread::sleep(std::time::Duration::from_millis(200));
    sidecar.prometheus().lines().any(|l| l.starts_with(line))
}

fn metric_lines(sidecar: &Sidecar) -> String {
    sidecar
        .prometheus()
        .lines()
        .filter(|l| l.contains("duo_bedrock"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_documentation_question_end_to_end() {
    let emu = Emulator::start();
    let kb = with_knowledge_base(&emu, KB);
    let sidecar = Sidecar::start_with(&emu, &kb);
    let token = emu.token();

    // 1. The ReAct step: the model picks the documentation tool.
    emu.set_reply(&format!("Thought: This is about GitLab itself.\nAction: gitlab_documentation\nAction Input: {QUESTION}\n"),
    );
    let step = json!({
        "messages": [{"role": "user", "content": QUESTION, "context": null, "current_file": null, "additional_context": []}],
        "model_metadata": metadata(MODEL), "unavailable_resources": ["Pipelines", "Vulnerabilities"]
    });
    let r = sidecar.post_json(&token, "/v2/chat/agent", &step);
    assert_eq!(r.status, 200, "{}", r.text());
    let events: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "action", "{}", r.text());
    assert_eq!(events[0]["data"]["tool"], "gitlab_documentation");
    let tool_input = events[0]["data"]["tool_input"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(tool_input, QUESTION);

    // 2. Rails' DocsClient: the search, answered from the knowledge base.
    emu.clear_requests();
    let r = sidecar.post_json(&token, "/v1/search/gitlab-docs", &search_body(&tool_input));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("x-process-time").is_some());
    let answer = r.json();
    assert_eq!(answer["metadata"]["provider"], "bedrock-knowledge-base");
    assert!(answer["metadata"]["timestamp"].as_u64().unwrap() > 1_700_000_000);
    let results = answer["response"]["results"].as_array().unwrap().clone();
    assert!(!results.is_empty() && results.len() <= 4, "{answer}");
    for res in &results {
        let id = res["id"].as_str().unwrap();
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "Rails matches CNT-IDX-[0-9a-z]+: {id}"
        );
        assert!(res["content"].as_str().is_some_and(|c| !c.is_empty()));
        let meta = &res["metadata"];
        for key in ["title", "md5sum", "source", "source_type", "source_url"] {
            assert!(
                meta[key].as_str().is_some_and(|v| !v.is_empty()),
                "{key}: {res}"
            );
        }
        assert_eq!(meta["source_type"], "doc");
        assert!(meta["source_url"]
            .as_str()
            .unwrap()
            .starts_with("https://docs.gitlab.com/"));
    }
    let best = &results[0];
    assert_eq!(
        best["metadata"]["source_url"],
        "https://docs.gitlab.com/user/project/repository/branches/protected/"
    );
    let found = best["content"].as_str().unwrap().to_string();

    // The Retrieve call reached the emulator signed, for the configured knowledge base.
    let calls = retrievals(&emu);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call["path"], format!("/knowledgebases/{KB}/retrieve"));
    assert_eq!(call["model_id"], KB);
    assert_eq!(call["signature_valid"], true, "{call}");
    assert_eq!(call["status"], 200);
    let auth = call["headers"]["authorization"].as_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
            && auth.contains(&format!("/{REGION}/bedrock/aws4_request")),
        "{auth}"
    );
    assert_eq!(
        call["headers"]["host"],
        emu.url.trim_start_matches("http://")
    );
    assert!(
        call["headers"].get("x-gitlab-instance-id").is_none(),
        "no client header leaks"
    );
    let sent: Value = serde_json::from_str(call["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        sent,
        json!({"retrievalQuery": {"text": QUESTION},
               "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 4}}})
    );

    // 3. EmbeddingsCompletion: the documentation_search prompt with the results, as Rails
    // posts it (Gitlab::Llm::Chain::Requests::AiGateway#request_body_agent, stream: true).
    let id = best["id"].as_str().unwrap();
    emu.set_reply(&format!("Go to Settings > Repository > Protected branches and select Add protected branch.\n\nATTRS:\nCNT-IDX-{id}"),
    );
    let prompt = json!({"stream": true, "inputs": {"question": QUESTION, "content_id": "ATTRS", "documents": results},
                        "model_metadata": metadata(MODEL), "prompt_version": "^1.0.0"});
    let r = sidecar.post_json(&token, "/v1/prompts/chat/documentation_search", &prompt);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains("Protected branches") && text.ends_with(&format!("CNT-IDX-{id}")),
        "{text}"
    );
    let invoke = emu.requests().last().unwrap().clone();
    assert_eq!(invoke["operation"], "invoke-with-response-stream");
    assert_eq!(invoke["signature_valid"], true);
    let sent: Value = serde_json::from_str(invoke["body"].as_str().unwrap()).unwrap();
    let prompt_text = sent["messages"].to_string();
    let excerpt: String = found.chars().skip(20).take(60).collect();
    assert!(
        prompt_text.contains(&excerpt) && prompt_text.contains(id),
        "the found passage and its id are in the prompt: {prompt_text}"
    );

    assert!(
        prometheus_has(
            &sidecar,
            r#"duo_bedrock_requests_total{endpoint="v1_search_gitlab_docs",status="200"} 1"#
        ),
        "{}",
        metric_lines(&sidecar)
    );
    let logs = sidecar.logs();
    assert!(!logs.contains(UNCONFIGURED_WARNING));
    assert!(logs.contains(&format!("documentation search: knowledge base {KB}")));
    assert!(
        !logs.contains(QUESTION) && !logs.contains(&token),
        "neither the question nor the token is logged"
    );
}

#[test]
fn refusals_come_before_the_knowledge_base() {
    let emu = Emulator::start();
    let kb = with_knowledge_base(&emu, KB);
    let sidecar = Sidecar::start_with(&emu, &kb);

    // No token: the gateway's 401.
    let r = sidecar.request(
        "POST",
        "/v1/search/gitlab-docs",
        &[("content-type", "application/json")],
        Some(search_body(QUESTION).to_string().as_bytes()),
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (401, r#"{"error":"No authorization header presented"}"#)
    );
    // A Duo Chat token without documentation_search: the gateway's 403.
    let chat_only = emu.mint(json!({"scopes": ["duo_chat"]}));
    let r = sidecar.post_json(&chat_only, "/v1/search/gitlab-docs", &search_body(QUESTION));
    assert_eq!(
        (r.status, r.json()),
        (
            403,
            json!({"detail": "Unauthorized to search documentations"})
        )
    );

    // FastAPI's 422s, with pydantic's issues (and never the input).
    let token = emu.token();
    let r = sidecar.post_json(
        &token,
        "/v1/search/gitlab-docs",
        &json!({"type": "search-docs", "payload": {"query": 7, "page_size": 50}}),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let issues = r.json()["detail"].as_array().unwrap().clone();
    let kinds: Vec<(&str, Value)> = issues
        .iter()
        .map(|i| (i["type"].as_str().unwrap(), i["loc"].clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("missing", json!(["body", "metadata"])),
            ("string_type", json!(["body", "payload", "query"])),
            ("less_than_equal", json!(["body", "payload", "page_size"])),
        ]
    );
    let r = sidecar.request(
        "POST",
        "/v1/search/gitlab-docs",
        &as_refs(&gitlab_headers(&token)),
        Some(b"{not json"),
    );
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["detail"][0]["type"], "json_invalid");
    // 422 comes before 403, as in the gateway (validation runs before the handler).
    let r = sidecar.post_json(&chat_only, "/v1/search/gitlab-docs", &json!({}));
    assert_eq!(r.status, 422);
    // A blank query is answered without Bedrock.
    let r = sidecar.post_json(&token, "/v1/search/gitlab-docs", &search_body("   "));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["response"]["results"], json!([]));
    // GET is not the endpoint.
    let r = sidecar.request(
        "GET",
        "/v1/search/gitlab-docs",
        &as_refs(&gitlab_headers(&token)),
        None,
    );
    assert_eq!(r.status, 404);

    assert!(
        retrievals(&emu).is_empty(),
        "nothing reached the knowledge base"
    );
    assert_eq!(emu.stats()["unknown_paths"], 0);
}

#[test]
fn knowledge_base_errors_map_like_model_errors() {
    let emu = Emulator::start();
    let token = emu.token();
    let cases = [
        (
            "FAULT40300",
            503,
            "Documentation search failed: Amazon Bedrock returned 403 AccessDeniedException: the request was not authorized (check the gateway's AWS credentials, region and IAM permission bedrock:Retrieve on the knowledge base)",
            "accessdeniedexception",
        ),
        (
            "ABCDE12345",
            503,
            "Documentation search failed: Amazon Bedrock returned 404 ResourceNotFoundException: The specified knowledge base does not exist (emulator: only ids starting with EMU exist). (check AIGW_BEDROCK_KNOWLEDGE_BASE_ID and the region)",
            "resourcenotfoundexception",
        ),
        (
            "FAULT42900",
            429,
            "Too many requests. Please try again later.",
            "throttlingexception",
        ),
    ];
    for (kb_id, status, detail, error_type) in cases {
        let kb = with_knowledge_base(&emu, kb_id);
        let sidecar = Sidecar::start_with(&emu, &kb);
        let r = sidecar.post_json(&token, "/v1/search/gitlab-docs", &search_body(QUESTION));
        assert_eq!(
            (r.status, r.json()["detail"].as_str().unwrap()),
            (status, detail),
            "{kb_id}"
        );
        if status == 429 {
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        let model = format!("knowledge_base_{}", kb_id.to_ascii_lowercase());
        let line = format!(
            r#"duo_bedrock_upstream_errors_total{{model="{model}",error_type="{error_type}"}} 1"#
        );
        assert!(
            prometheus_has(&sidecar, &line),
            "{kb_id}: {}",
            metric_lines(&sidecar)
        );
        assert!(prometheus_has(
            &sidecar,
            &format!(
                r#"duo_bedrock_requests_total{{endpoint="v1_search_gitlab_docs",status="{status}"}} 1"#
            )
        ));
        let last = retrievals(&emu).last().cloned().unwrap();
        assert_eq!(last["model_id"], kb_id);
        assert_eq!(last["signature_valid"], true);
    }

    // A knowledge base that never answers: the route timeout (AIGW_MODEL_TIMEOUT_SECONDS).
    let mut kb = with_knowledge_base(&emu, "FAULTHANG0");
    kb.push(("AIGW_MODEL_TIMEOUT_SECONDS", "1"));
    let sidecar = Sidecar::start_with(&emu, &kb);
    let r = sidecar.post_json(&token, "/v1/search/gitlab-docs", &search_body(QUESTION));
    assert_eq!(
        (r.status, r.json()["detail"].as_str().unwrap()),
        (
            504,
            "Documentation search failed: Amazon Bedrock did not answer in time"
        )
    );

    // An agent runtime endpoint where nothing listens (port 1): the answer names the endpoint
    // and says the connection was refused, not "unreachable" in Envoy's words.
    let kb = [
        ("AIGW_BEDROCK_KNOWLEDGE_BASE_ID", "EMUDOCS001"),
        ("AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT", "http://127.0.0.1:1"),
    ];
    let sidecar = Sidecar::start_with(&emu, &kb);
    let r = sidecar.post_json(&token, "/v1/search/gitlab-docs", &search_body(QUESTION));
    let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
    assert_eq!(r.status, 503, "{detail}");
    assert!(
        detail.contains("Amazon Bedrock agent runtime endpoint 127.0.0.1:1")
            && (detail.contains("refused") || detail.contains("could not connect")),
        "{detail}"
    );
}

#[test]
fn without_a_knowledge_base_the_search_finds_nothing() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    for _ in 0..2 {
        let r = sidecar.post_json(&token, "/v1/search/gitlab-docs", &search_body(QUESTION));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["response"], json!({"results": []}));
        assert_eq!(v["metadata"]["provider"], "none");
        assert!(v["metadata"]["timestamp"].is_u64());
    }
    // The scope still applies.
    let r = sidecar.post_json(
        &emu.mint(json!({"scopes": ["duo_chat"]})),
        "/v1/search/gitlab-docs",
        &search_body(QUESTION),
    );
    assert_eq!(r.status, 403);
    assert!(
        prometheus_has(&sidecar, "duo_bedrock_docs_search_unconfigured_total{} 2"),
        "{}",
        metric_lines(&sidecar)
    );
    assert!(prometheus_has(
        &sidecar,
        r#"duo_bedrock_requests_total{endpoint="v1_search_gitlab_docs",status="200"} 2"#
    ));
    assert!(emu.requests().is_empty(), "nothing reached Bedrock");
    let logs = sidecar.logs();
    assert_eq!(
        logs.matches(UNCONFIGURED_WARNING).count(),
        1,
        "one warning per process, not per VM:\n{logs}"
    );
    assert!(logs.contains("[warning]"), "logged as a warning");
}

#[test]
fn a_bad_knowledge_base_id_refuses_to_start() {
    let emu = Emulator::start();
    let env = vec![
        ("AIGW_GITLAB_URL", emu.url.clone()),
        ("AWS_BEDROCK_RUNTIME_ENDPOINT", emu.url.clone()),
        ("AWS_REGION_NAME", REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ("AIGW_BEDROCK_KNOWLEDGE_BASE_ID", "not-a-kb-id".to_string()),
    ];
    let err = Sidecar::boot(env)
        .err()
        .expect("envoy must not serve with an invalid knowledge base id");
    assert!(
        err.contains("AIGW_BEDROCK_KNOWLEDGE_BASE_ID"),
        "the log names the variable:\n{err}"
    );
}

#[test]
fn envoy_refuses_a_retrieve_the_filter_did_not_build() {
    let emu = Emulator::start();
    let mut env = with_knowledge_base(&emu, KB);
    env.push(("DUO_BEDROCK_FAULT_INJECTION", "crash"));
    let sidecar = Sidecar::start_with(&emu, &env);
    let token = emu.token();
    // Passed on unplanned and unmarked (a forgotten callback path, simulated): neither the
    // bedrock nor the bedrock_agent route takes it; Envoy answers its own 401.
    for (path, body) in [
        (
            format!("/knowledgebases/{KB}/retrieve"),
            json!({"retrievalQuery": {"text": QUESTION}}),
        ),
        ("/v1/search/gitlab-docs".to_string(), search_body(QUESTION)),
    ] {
        let mut headers = gitlab_headers(&token);
        headers.push(("x-duo-bedrock-crash", "pass".into()));
        let r = sidecar.request(
            "POST",
            &path,
            &as_refs(&headers),
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(
            (r.status, r.text().as_str()),
            (401, r#"{"error":"Forbidden by auth provider"}"#),
            "{path}"
        );
    }
    assert!(emu.requests().is_empty());
    assert_eq!(emu.stats()["retrievals"], 0);
    // What the filter built and marked still goes through.
    let r = sidecar.post_json(&token, "/v1/search/gitlab-docs", &search_body(QUESTION));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(retrievals(&emu).len(), 1);
}
