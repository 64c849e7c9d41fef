//! Duo Chat and named prompts through the real Envoy (issue 5;
//! docs/gitlab-contract.md#named-prompts, #chat-agent, #legacy-chat, #scopes, #errors).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn metadata(model: &str) -> Value {
    json!({"provider": "openai", "name": "claude_3", "endpoint": "https://bedrock-runtime.us-east-1.amazonaws.com",
           "api_key": null, "identifier": format!("bedrock/{model}")})
}

#[test]
fn test_connection_succeeds_fast_and_reports_bedrock_refusals_as_421() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    // Rails' "Test connection": a token for complete_code, 3-second timeout.
    let token = emu.mint(json!({"scopes": ["complete_code"]}));
    let body = json!({"inputs": {}, "stream": false, "model_metadata": metadata(MODEL)});
    let _ = sidecar.post_json(&token, "/v1/prompts/model_configuration%2Fcheck", &body); // keys warm
    let start = Instant::now();
    let r = sidecar.post_json(&token, "/v1/prompts/model_configuration%2Fcheck", &body);
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json().is_string(),
        "v1 answers a JSON string: {}",
        r.text()
    );
    let sent: Value =
        serde_json::from_str(emu.requests().last().unwrap()["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["max_tokens"], 12);

    // Every Bedrock error class: 421 "<status>: <reason> - <Kind>: ..." (Rails shows "The
    // self-hosted model server returned code <detail>"), throttling included, no retry-after.
    for (fault, prefix) in [
        ("fault-throttle", "429: Too Many Requests - ThrottlingException: Too many requests"),
        ("fault-notready", "429: Too Many Requests - ModelNotReadyException: Model is not ready"),
        ("fault-400", "400: Bad Request - ValidationException: Malformed input request"),
        ("fault-403", "403: Forbidden - AccessDeniedException: enable access to this model in the Amazon Bedrock console"),
        ("fault-404", "404: Not Found - ResourceNotFoundException: The provided model identifier is invalid."),
        ("fault-408", "408: Request Timeout - ModelTimeoutException: Model has timed out"),
        ("fault-424", "424: Failed Dependency - ModelErrorException: Received server error (500) from model."),
        ("fault-500", "500: Internal Server Error - InternalServerException: The system encountered an unexpected error"),
        ("fault-503", "503: Service Unavailable - ServiceUnavailableException: Bedrock is unable to process your request."),
        ("fault-reset", "500: Internal Server Error - Amazon Bedrock (127.0.0.1:"),
    ] {
        let body = json!({"inputs": {}, "stream": false, "model_metadata": metadata(&format!("anthropic.claude-{fault}-v1:0"))});
        let r = sidecar.post_json(&token,
            "/v1/prompts/model_configuration%2Fcheck",
            &body,
        );
        assert_eq!(r.status, 421, "{fault}: {}", r.text());
        let detail = r.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.starts_with(prefix), "{fault}: {detail}");
        assert_eq!(r.header("retry-after"), None, "{fault}");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // Bedrock's own message is in the log (never a secret).
    assert!(
        sidecar
            .logs()
            .contains("You don't have access to the model with the specified model ID."),
        "AccessDenied message logged"
    );
    // Other named prompts answer model failures the same way (the gateway's invoke.py).
    let r = sidecar.post_json(&emu.token(),
        "/v2/prompts/generate_commit_message",
        &json!({"inputs": {"diff": "+x"}, "model_metadata": metadata("anthropic.claude-fault-throttle-v1:0")}),
    );
    assert_eq!(r.status, 421, "{}", r.text());

    // A Bedrock model this gateway cannot drive: a 400 whose detail[0].msg Rails shows
    // ("AI Gateway returned code 400: <msg>"), and nothing reaches Bedrock.
    let sent_before = emu.requests().len();
    for model in [
        "meta.llama3-70b-instruct-v1:0",
        "us.meta.llama3-2-90b-instruct-v1:0",
        "amazon.titan-text-express-v1",
        "mistral.mistral-large-2402-v1:0",
        "cohere.command-r-plus-v1:0",
    ] {
        let body = json!({"inputs": {}, "stream": false, "model_metadata": metadata(model)});
        let r = sidecar.post_json(&token, "/v1/prompts/model_configuration%2Fcheck", &body);
        assert_eq!(r.status, 400, "{model}: {}", r.text());
        let msg = r.json()["detail"][0]["msg"].as_str().unwrap().to_string();
        assert!(
            msg.starts_with(&format!(
                "Model identifier 'bedrock/{model}' is not supported by this gateway"
            )),
            "{msg}"
        );
    }
    assert_eq!(emu.requests().len(), sent_before);
    let r = sidecar.post_json(
        &emu.mint(json!({"scopes": ["duo_chat"]})),
        "/v1/prompts/model_configuration%2Fcheck",
        &json!({"inputs": {}, "model_metadata": metadata(MODEL)}),
    );
    assert_eq!(
        (r.status, r.json()["detail"].as_str().unwrap()),
        (403, "Unauthorized to access 'model_configuration/check'")
    );
}

#[test]
fn named_prompts_v1_v2_stream_and_errors() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let inputs = json!({"code": "def f(): pass", "file_path": "a.py", "language": "python", "selected_text": "def f(): pass",
                        "file_content": "def f(): pass", "input": "explain", "content_above_cursor": "", "content_below_cursor": ""});
    let body = json!({"inputs": inputs, "prompt_version": "^1.0.0", "stream": false, "model_metadata": metadata(MODEL)});
    let r = sidecar.post_json(&token, "/v2/prompts/chat%2Fexplain_code", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["content"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    assert!(
        v["usage"][MODEL]["output_tokens"].as_u64().unwrap() > 0,
        "{v}"
    );

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let r = sidecar.post_json(&token, "/v1/prompts/chat/explain_code", &stream);
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(!r.text().is_empty());
    let r = sidecar.post_json(&token, "/v2/prompts/chat%2Fexplain_code", &stream);
    assert_eq!(r.status, 200);
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.len() >= 2 && lines.iter().all(|l| l["content"].is_string()),
        "{}",
        r.text()
    );

    let r = sidecar.post_json(&token, "/v1/prompts/no%2Fsuch_prompt", &body);
    assert_eq!(
        (r.status, r.json()["detail"].as_str().unwrap()),
        (404, "Prompt 'no/such_prompt' not found")
    );
    let mut v2 = body.clone();
    v2["prompt_version"] = json!("^2.0.0");
    assert_eq!(
        sidecar
            .post_json(&token, "/v1/prompts/chat%2Fexplain_code", &v2)
            .status,
        400
    );
    v2["prompt_version"] = json!("not a constraint!");
    assert_eq!(
        sidecar
            .post_json(&token, "/v1/prompts/chat%2Fexplain_code", &v2)
            .status,
        422
    );
    let r = sidecar.post_json(
        &emu.mint(json!({"scopes": ["complete_code"]})),
        "/v1/prompts/chat%2Fexplain_code",
        &body,
    );
    assert_eq!(
        (r.status, r.json()["detail"].as_str().unwrap()),
        (403, "Unauthorized to access 'chat/explain_code'")
    );
    assert!(emu.requests().iter().all(|q| q["signature_valid"] == true));
}

#[test]
fn chat_agent_streams_ndjson_events() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let body = json!({
        "messages": [{"role": "user", "content": "How do I revert a commit?", "context": null, "current_file": null, "additional_context": []}],
        "model_metadata": metadata(MODEL), "unavailable_resources": ["Pipelines", "Vulnerabilities"]
    });
    emu.set_reply(
        "Thought: I know this.\nFinal Answer: Use `git revert <sha>` to undo a commit safely.",
    );
    let r = sidecar.post_json(&token, "/v2/chat/agent", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/x-ndjson; charset=utf-8")
    );
    let events: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().all(|e| e["type"] == "final_answer_delta"),
        "{}",
        r.text()
    );
    // ai-gateway main: finish_reason null on every delta, then an empty delta with LiteLLM's
    // finish reason (Bedrock's end_turn → "stop"); older Rails reads only "text".
    let (last, deltas) = events.split_last().unwrap();
    assert_eq!(
        last,
        &json!({"type": "final_answer_delta", "data": {"text": "", "finish_reason": "stop"}})
    );
    assert!(
        deltas.iter().all(|e| e["data"]["finish_reason"].is_null()),
        "{}",
        r.text()
    );
    let answer: String = events
        .iter()
        .map(|e| e["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        answer.trim(),
        "Use `git revert <sha>` to undo a commit safely."
    );
    let sent: Value =
        serde_json::from_str(emu.requests().last().unwrap()["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["stop_sequences"], json!(["Observation:"]));
    assert!(emu.requests().last().unwrap()["path"]
        .as_str()
        .unwrap()
        .ends_with("/invoke-with-response-stream"));

    emu.set_reply("Thought: I should search the docs.\nAction: gitlab_documentation\nAction Input: revert commit\n");
    let r = sidecar.post_json(&token, "/v2/chat/agent", &body);
    let events: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{}", r.text());
    assert_eq!(events[0]["type"], "action");
    assert_eq!(events[0]["data"]["tool"], "gitlab_documentation");
    assert_eq!(events[0]["data"]["tool_input"], "revert commit");

    // A mid-stream failure becomes an NDJSON error event.
    let mut faulty = body.clone();
    faulty["model_metadata"] = metadata("anthropic.claude-fault-midstream-v1:0");
    let r = sidecar.post_json(&token, "/v2/chat/agent", &faulty);
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .lines()
            .any(|l| serde_json::from_str::<Value>(l).unwrap()["type"] == "error"),
        "{}",
        r.text()
    );

    // Only the tools the token's unit primitives allow are offered to the model (as the gateway does).
    emu.set_reply("Thought: done.\nFinal Answer: ok");
    let limited = emu.mint(json!({"scopes": ["duo_chat", "ask_issue"]}));
    assert_eq!(
        sidecar.post_json(&limited, "/v2/chat/agent", &body).status,
        200
    );
    let sent: Value =
        serde_json::from_str(emu.requests().last().unwrap()["body"].as_str().unwrap()).unwrap();
    let system = sent["system"].as_str().unwrap();
    assert!(
        system.contains("<name>issue_reader</name>")
            && !system.contains("<name>epic_reader</name>"),
        "{system}"
    );

    // Duo Classic Chat (ai-gateway main): duo_classic_chat when the token has it; a Duo Core
    // token (duo_chat only) from GitLab 18.9 on only for @GitLabDuo mentions; older GitLab
    // (no duo_classic_chat in its tokens) keeps chatting on duo_chat.
    emu.set_reply("Thought: done.\nFinal Answer: ok");
    let duo_core = emu.mint(json!({"scopes": ["duo_chat"]}));
    let with_version = |token: &str, version: &str, body: &Value| {
        let mut h = gitlab_headers(token);
        h.push(("x-gitlab-version", version.to_string()));
        sidecar.request(
            "POST",
            "/v2/chat/agent",
            &as_refs(&h),
            Some(body.to_string().as_bytes()),
        )
    };
    let r = with_version(&duo_core, "18.9.0", &body);
    assert_eq!(
        (r.status, r.json()["detail"].as_str().unwrap()),
        (
            403,
            "Duo Core no longer authorized to access Duo Classic Chat"
        )
    );
    let mut review = body.clone();
    review["messages"][0]["content"] = json!("@GitLabDuo review this merge request");
    assert_eq!(with_version(&duo_core, "18.10.0", &review).status, 200);
    let classic = emu.mint(json!({"scopes": ["duo_classic_chat"]}));
    assert_eq!(with_version(&classic, "18.10.0", &body).status, 200);
    assert_eq!(with_version(&duo_core, "18.5.1", &body).status, 200);
    assert_eq!(
        sidecar.post_json(&duo_core, "/v2/chat/agent", &body).status,
        200
    );

    // Scopes: duo_chat, then include_<category>_context.
    let r = sidecar.post_json(
        &emu.mint(json!({"scopes": ["complete_code"]})),
        "/v2/chat/agent",
        &body,
    );
    assert_eq!(
        (r.status, r.json()["detail"].as_str().unwrap()),
        (403, "Unauthorized to access duo chat")
    );
    let mut with_file = body.clone();
    with_file["messages"][0]["additional_context"] =
        json!([{"category": "file", "id": "a.py", "content": "x = 1", "metadata": {}}]);
    let r = sidecar.post_json(
        &emu.mint(json!({"scopes": ["duo_chat"]})),
        "/v2/chat/agent",
        &with_file,
    );
    assert_eq!(
        (r.status, r.json()["detail"].as_str().unwrap()),
        (403, "Unauthorized to access include_file_context")
    );
}

#[test]
fn legacy_chat_passthrough() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu);
    let token = emu.token();
    let body = json!({"prompt_components": [{"type": "prompt", "metadata": {"source": "GitLab EE", "version": "17.9.0"},
        "payload": {"content": [{"role": "user", "content": "Hello"}], "provider": "litellm", "model": "claude_3",
                    "model_endpoint": "https://x", "model_api_key": null, "model_identifier": format!("bedrock/{MODEL}"),
                    "params": {"stop_sequences": ["\n\nHuman", "Observation:"], "temperature": 0.1, "max_tokens_to_sample": 4096}}}],
        "stream": false});
    let r = sidecar.post_json(&token, "/v1/chat/explain_code", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["response"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(v["metadata"]["provider"], "litellm");
    assert_eq!(v["metadata"]["model"], "claude_3");
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let r = sidecar.post_json(&token, "/v1/chat/agent", &stream);
    assert_eq!(r.status, 200);
    assert!(!r.text().is_empty() && !r.text().starts_with('{'));
    let r = sidecar.post_json(&token, "/v1/chat/unknown_thing", &body);
    assert_eq!(
        (r.status, r.json()["detail"].as_str().unwrap()),
        (404, "Not found")
    );
}

#[test]
fn a_prompts_own_timeout_bounds_the_model_call() {
    let emu = Emulator::start();
    let sidecar = Sidecar::start(&emu); // upstream timeout 60 s
    let token = emu.mint(json!({"scopes": ["complete_code"]}));
    // model_configuration/check declares `timeout_secs: 10`; the model takes 20 s.
    let body = json!({"inputs": {}, "stream": false, "model_metadata": metadata("anthropic.claude-fault-slow-20000-v1:0")});
    let start = Instant::now();
    let r = sidecar.post_json(&token, "/v1/prompts/model_configuration%2Fcheck", &body);
    let took = start.elapsed();
    // LiteLLM's Timeout (408) through the gateway's 421
    assert_eq!(
        (r.status, r.json()["detail"].as_str().unwrap()),
        (
            421,
            "408: Request Timeout - Amazon Bedrock did not answer in time"
        ),
        "{}",
        r.text()
    );
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert!(emu.requests().iter().all(|q| q
        .get("headers")
        .and_then(|h| h.get("x-envoy-upstream-rq-timeout-ms"))
        .is_none()));
}
