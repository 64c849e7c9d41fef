//! End-to-end tests of the `bedrock-emulator` binary over real TCP with a
//! tiny std-only HTTP/1.1 client. Requests are signed with `aws-sigv4` (the
//! signer the filter uses), so the emulator's independent verifier is checked
//! against it; streams are decoded with `aws-smithy-eventstream`.

#![allow(clippy::unwrap_used)]

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::event_stream::{HeaderValue, Message};
use base64::Engine as _;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const AKID: &str = "AKIDTEST";
const SECRET: &str = "test/secret/key";
const REGION: &str = "us-east-1";
const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1%3A0";

struct Emulator {
    child: Child,
    addr: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Emulator {
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--access-key-id",
        AKID,
        "--secret-access-key",
        SECRET,
        "--region",
        REGION,
        "--api-key",
        "bedrock-api-key-123",
    ];
    args.extend_from_slice(extra);
    let mut child = Command::new(env!("CARGO_BIN_EXE_bedrock-emulator"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn emulator");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("bedrock-emulator listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Emulator { child, addr }
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Transfer-encoding chunks, when chunked.
    chunks: Vec<Vec<u8>>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Send one HTTP/1.1 request with `Connection: close`; the open stream.
fn send_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: {addr}\r\n"));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s
}

/// Send one HTTP/1.1 request with `Connection: close` and read the answer.
/// `Err` when the server closed without answering.
fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Resp, String> {
    let mut s = send_request(addr, method, path, headers, body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

/// Parse a whole HTTP/1.1 answer (chunked or not).
fn parse_response(raw: &[u8]) -> Result<Resp, String> {
    if raw.is_empty() {
        return Err("connection closed without an answer".into());
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_lowercase(), v.trim().to_string())
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let mut chunks = Vec::new();
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or("bad chunk")?;
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .map_err(|e| e.to_string())?;
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            chunks.push(rest[..size].to_vec());
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body
    } else {
        rest.to_vec()
    };
    Ok(Resp {
        status,
        headers,
        body,
        chunks,
    })
}

fn get(addr: &str, path: &str) -> Resp {
    raw_request(addr, "GET", path, &[], b"").unwrap()
}

fn post_json(addr: &str, path: &str, v: &Value) -> Resp {
    raw_request(
        addr,
        "POST",
        path,
        &[("content-type".into(), "application/json".into())],
        v.to_string().as_bytes(),
    )
    .unwrap()
}

/// Sign with aws-sigv4 (service `bedrock`) and return all headers to send.
fn signed_headers(addr: &str, path: &str, body: &[u8], secret: &str) -> Vec<(String, String)> {
    signed_headers_as(addr, path, body, AKID, secret, None)
}

/// Like [`signed_headers`] with any credentials, optionally temporary (session token).
fn signed_headers_as(
    addr: &str,
    path: &str,
    body: &[u8],
    akid: &str,
    secret: &str,
    token: Option<&str>,
) -> Vec<(String, String)> {
    let url = format!("http://{addr}{path}");
    let base = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("accept".to_string(), "application/json".to_string()),
    ];
    let identity: Identity =
        Credentials::new(akid, secret, token.map(str::to_string), None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("bedrock")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        url.as_str(),
        base.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _sig) = sign(signable, &params).unwrap().into_parts();
    let mut out = base.clone();
    for (n, v) in instructions.headers() {
        out.push((n.to_string(), v.to_string()));
    }
    out
}

fn invoke_body() -> Vec<u8> {
    json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 128,
           "system": "Complete the code.",
           "messages": [{"role": "user", "content": "<prefix>def add(a, b):\n    </prefix>"}]})
    .to_string()
    .into_bytes()
}

fn bedrock(addr: &str, model: &str, op: &str, body: &[u8]) -> Result<Resp, String> {
    let path = format!("/model/{model}/{op}");
    let headers = signed_headers(addr, &path, body, SECRET);
    raw_request(addr, "POST", &path, &headers, body)
}

fn header_str<'m>(m: &'m Message, name: &str) -> Option<&'m str> {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// Decode an event-stream body with an independent decoder, feeding it the
/// HTTP chunks one by one. Returns messages, or the decoder error.
fn decode_stream(chunks: &[Vec<u8>]) -> Result<Vec<Message>, String> {
    let mut dec = MessageFrameDecoder::new();
    let mut buf = bytes::BytesMut::new();
    let mut out = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        while let DecodedFrame::Complete(m) =
            dec.decode_frame(&mut buf).map_err(|e| e.to_string())?
        {
            out.push(m);
        }
    }
    if !buf.is_empty() {
        return Err(format!("{} trailing bytes", buf.len()));
    }
    Ok(out)
}

fn anthropic_events(msgs: &[Message]) -> Vec<Value> {
    msgs.iter()
        .filter(|m| header_str(m, ":message-type") == Some("event"))
        .map(|m| {
            let p: Value = serde_json::from_slice(m.payload()).unwrap();
            let b = base64::engine::general_purpose::STANDARD
                .decode(p["bytes"].as_str().unwrap())
                .unwrap();
            assert!(p["p"].is_string());
            serde_json::from_slice(&b).unwrap()
        })
        .collect()
}

#[test]
fn signed_invoke_stream_records_and_oidc() {
    let emu = start(&[]);
    let a = emu.addr.as_str();
    assert_eq!(get(a, "/healthz").status, 200);

    // InvokeModel, signed by aws-sigv4 with %3A in the path.
    let r = bedrock(a, MODEL, "invoke", &invoke_body()).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-amzn-requestid").unwrap().len(), 36);
    assert!(r.header("x-amzn-bedrock-invocation-latency").is_some());
    assert_eq!(r.header("x-amzn-bedrock-output-token-count"), Some("3"));
    let m = r.json();
    assert!(m["id"].as_str().unwrap().starts_with("msg_bdrk_"));
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "anthropic.claude-3-5-sonnet-20240620-v1:0");
    assert_eq!(m["content"][0]["text"], "return a + b");
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(
        r.header("x-amzn-bedrock-input-token-count").unwrap(),
        m["usage"]["input_tokens"].to_string()
    );

    // InvokeModelWithResponseStream.
    let r = bedrock(a, MODEL, "invoke-with-response-stream", &invoke_body()).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    assert_eq!(
        r.header("x-amzn-bedrock-content-type"),
        Some("application/json")
    );
    assert!(r.header("x-amzn-requestid").is_some());
    let msgs = decode_stream(&r.chunks).unwrap();
    assert_eq!(r.chunks.len(), msgs.len(), "one HTTP chunk per frame");
    for m in &msgs {
        assert_eq!(header_str(m, ":event-type"), Some("chunk"));
        assert_eq!(header_str(m, ":content-type"), Some("application/json"));
    }
    let events = anthropic_events(&msgs);
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"message_start"));
    assert_eq!(types.last(), Some(&"message_stop"));
    assert!(
        types
            .iter()
            .filter(|t| **t == "content_block_delta")
            .count()
            >= 3
    );
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "return a + b");
    let stop = events.last().unwrap();
    assert_eq!(
        stop["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
        3
    );

    // Recorder.
    let recs = get(a, "/_emulator/requests").json();
    let recs = recs.as_array().unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["path"], format!("/model/{MODEL}/invoke"));
    assert_eq!(recs[0]["method"], "POST");
    assert_eq!(recs[0]["signature_valid"], true);
    assert_eq!(recs[0]["error"], Value::Null);
    assert_eq!(
        recs[0]["model_id"],
        "anthropic.claude-3-5-sonnet-20240620-v1:0"
    );
    assert!(recs[0]["headers"]["authorization"]
        .as_str()
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"));
    assert!(recs[0]["body"]
        .as_str()
        .unwrap()
        .contains("bedrock-2023-05-31"));
    assert!(recs[1]["canonical_request"]
        .as_str()
        .unwrap()
        .contains("v1%253A0/invoke-with-response-stream"));
    assert_eq!(
        raw_request(a, "DELETE", "/_emulator/requests", &[], b"")
            .unwrap()
            .status,
        200
    );
    assert_eq!(get(a, "/_emulator/requests").json(), json!([]));

    // OIDC discovery + JWKS.
    let issuer = format!("http://{a}");
    let d = get(a, "/.well-known/openid-configuration");
    assert_eq!(d.status, 200);
    let dj = d.json();
    assert_eq!(dj["issuer"], issuer);
    assert_eq!(dj["jwks_uri"], format!("{issuer}/oauth/discovery/keys"));
    let k = get(a, "/oauth/discovery/keys");
    assert_eq!(k.status, 200);
    assert_eq!(k.header("content-type"), Some("application/json"));
    assert_eq!(
        k.header("cache-control"),
        Some("max-age=86400, public, must-revalidate, no-transform")
    );
    let jwks = k.json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);

    // Mint over HTTP and verify with the served JWKS.
    let t = post_json(a, "/_emulator/mint", &json!({"scopes": ["complete_code"]}));
    assert_eq!(t.status, 200);
    let token = t.json()["token"].as_str().unwrap().to_string();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["gitlab-ai-gateway"]);
    let data = jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap();
    assert_eq!(data.claims["iss"], issuer);
    assert_eq!(data.claims["scopes"], json!(["complete_code"]));

    // Rotate to demo-2, shorten max-age, then go down.
    let s = post_json(
        a,
        "/_emulator/oidc",
        &json!({"active_keys": ["demo-2"], "max_age": 60}),
    );
    assert_eq!(s.status, 200);
    let k2 = get(a, "/oauth/discovery/keys");
    assert_eq!(
        k2.header("cache-control"),
        Some("max-age=60, public, must-revalidate, no-transform")
    );
    assert_ne!(k2.json()["keys"][0]["kid"], jwks["keys"][0]["kid"]);
    assert_eq!(
        post_json(a, "/_emulator/oidc", &json!({"active_keys": ["nope"]})).status,
        400
    );
    post_json(a, "/_emulator/oidc", &json!({"down": true}));
    assert_eq!(get(a, "/oauth/discovery/keys").status, 503);
    assert_eq!(get(a, "/.well-known/openid-configuration").status, 503);
    post_json(
        a,
        "/_emulator/oidc",
        &json!({"down": false, "delay_ms": 300}),
    );
    let t0 = Instant::now();
    assert_eq!(get(a, "/oauth/discovery/keys").status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));

    let stats = get(a, "/_emulator/stats").json();
    assert_eq!(
        stats,
        json!({"discovery_fetches": 2, "jwks_fetches": 4, "filter_jwks_fetches": 0, "invocations": 2, "signature_failures": 0,
               "retrievals": 0, "container_fetches": 0, "sts_calls": 0, "imds_token_fetches": 0,
               "imds_role_fetches": 0, "imds_credential_fetches": 0, "unknown_paths": 0})
    );

    let nf = get(a, "/nope");
    assert_eq!(nf.status, 404);
    assert_eq!(nf.json(), json!({"message": "not found"}));
}

#[test]
fn authentication_failures() {
    let emu = start(&[]);
    let a = emu.addr.as_str();
    let path = format!("/model/{MODEL}/invoke");
    let body = invoke_body();

    // Tampered body after signing.
    let headers = signed_headers(a, &path, &body, SECRET);
    let mut tampered = body.clone();
    tampered.push(b' ');
    let r = raw_request(a, "POST", &path, &headers, &tampered).unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some(
            "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"
        )
    );
    assert_eq!(
        r.json(),
        json!({"message": "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."})
    );

    // Wrong secret.
    let headers = signed_headers(a, &path, &body, "wrong");
    let r = raw_request(a, "POST", &path, &headers, &body).unwrap();
    assert_eq!(r.status, 403);

    // Unknown access key.
    let headers: Vec<(String, String)> = signed_headers(a, &path, &body, SECRET)
        .into_iter()
        .map(|(n, v)| (n, v.replace("AKIDTEST", "AKIDOTHER")))
        .collect();
    let r = raw_request(a, "POST", &path, &headers, &body).unwrap();
    assert_eq!(r.status, 403);
    assert!(r
        .header("x-amzn-errortype")
        .unwrap()
        .starts_with("UnrecognizedClientException:"));
    assert_eq!(
        r.json()["message"],
        "The security token included in the request is invalid."
    );

    // Signed for a raw ':' but sent with %3A (or vice versa) must fail.
    let raw_colon = path.replace("%3A", ":");
    let headers = signed_headers(a, &raw_colon, &body, SECRET);
    let r = raw_request(a, "POST", &path, &headers, &body).unwrap();
    assert_eq!(r.status, 403);

    // No Authorization at all.
    let r = raw_request(a, "POST", &path, &[], &body).unwrap();
    assert_eq!(r.status, 403);

    // Bedrock API key.
    let ok = raw_request(
        a,
        "POST",
        &path,
        &[("authorization".into(), "Bearer bedrock-api-key-123".into())],
        &body,
    )
    .unwrap();
    assert_eq!(ok.status, 200);
    let bad = raw_request(
        a,
        "POST",
        &path,
        &[("authorization".into(), "Bearer nope".into())],
        &body,
    )
    .unwrap();
    assert_eq!(bad.status, 403);

    let stats = get(a, "/_emulator/stats").json();
    assert_eq!(stats["signature_failures"], 6);
    assert_eq!(stats["invocations"], 7);
    let recs = get(a, "/_emulator/requests").json();
    let recs = recs.as_array().unwrap();
    assert_eq!(recs.len(), 7);
    assert_eq!(recs[0]["signature_valid"], false);
    assert!(recs[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("InvalidSignatureException"));
    assert!(recs[0]["canonical_request"].is_string());
    assert_eq!(recs[5]["auth"], "bearer");
    assert_eq!(recs[5]["signature_valid"], true);
}

#[test]
fn validation_and_faults() {
    let emu = start(&[]);
    let a = emu.addr.as_str();

    // Extraneous key.
    let mut b: Value = serde_json::from_slice(&invoke_body()).unwrap();
    b["model"] = json!("x");
    let r = bedrock(a, MODEL, "invoke", b.to_string().as_bytes()).unwrap();
    assert_eq!(r.status, 400);
    assert!(r
        .header("x-amzn-errortype")
        .unwrap()
        .starts_with("ValidationException:"));
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("extraneous key [model] is not permitted"));

    // Status knobs.
    for (knob, status, ty) in [
        ("throttle", 429, "ThrottlingException"),
        ("notready", 429, "ModelNotReadyException"),
        ("403", 403, "AccessDeniedException"),
        ("503", 503, "ServiceUnavailableException"),
        ("424", 424, "ModelErrorException"),
    ] {
        let model = format!("anthropic.claude-fault-{knob}-v1%3A0");
        let r = bedrock(a, &model, "invoke", &invoke_body()).unwrap();
        assert_eq!(r.status, status, "{knob}");
        assert!(r
            .header("x-amzn-errortype")
            .unwrap()
            .starts_with(&format!("{ty}:")));
        assert!(r.json()["message"].is_string());
    }
    let r = bedrock(a, "m-fault-throttle", "invoke", &invoke_body()).unwrap();
    assert_eq!(
        r.json(),
        json!({"message": "Too many requests, please wait before trying again."})
    );

    // Mid-stream exception.
    let r = bedrock(
        a,
        "m-fault-midstream",
        "invoke-with-response-stream",
        &invoke_body(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let msgs = decode_stream(&r.chunks).unwrap();
    let last = msgs.last().unwrap();
    assert_eq!(header_str(last, ":message-type"), Some("exception"));
    assert_eq!(
        header_str(last, ":exception-type"),
        Some("modelStreamErrorException")
    );
    let events = anthropic_events(&msgs);
    assert_eq!(events[0]["type"], "message_start");
    assert!(events.iter().any(|e| e["type"] == "content_block_delta"));
    assert!(!events.iter().any(|e| e["type"] == "message_stop"));

    // Split frames still decode to the same events; more chunks than frames.
    let r = bedrock(
        a,
        "m-fault-split",
        "invoke-with-response-stream",
        &invoke_body(),
    )
    .unwrap();
    let msgs = decode_stream(&r.chunks).unwrap();
    assert!(r.chunks.len() > msgs.len());
    assert_eq!(anthropic_events(&msgs).len(), 8);

    // Bad CRC is caught by an independent decoder.
    let r = bedrock(
        a,
        "m-fault-badcrc",
        "invoke-with-response-stream",
        &invoke_body(),
    )
    .unwrap();
    assert!(decode_stream(&r.chunks).is_err());

    // Drip and slow.
    let t0 = Instant::now();
    let r = bedrock(
        a,
        "m-fault-drip-30",
        "invoke-with-response-stream",
        &invoke_body(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(30 * 7));
    let t0 = Instant::now();
    let r = bedrock(a, "m-fault-slow-250", "invoke", &invoke_body()).unwrap();
    assert_eq!(r.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(250));

    // Reset: connection closed without an answer.
    assert!(bedrock(a, "m-fault-reset", "invoke", &invoke_body()).is_err());

    // Generation prefill + stop sequence.
    let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 2048,
        "stop_sequences": ["</new_code>"],
        "messages": [{"role": "user", "content": "add"}, {"role": "assistant", "content": "<new_code>"}]});
    let r = bedrock(a, MODEL, "invoke", body.to_string().as_bytes()).unwrap();
    let m = r.json();
    assert_eq!(m["content"][0]["text"], "\nreturn a + b\n");
    assert_eq!(m["stop_reason"], "stop_sequence");
    assert_eq!(m["stop_sequence"], "</new_code>");

    // Unknown operation.
    assert_eq!(
        bedrock(a, MODEL, "converse", &invoke_body())
            .unwrap()
            .status,
        404
    );
}

#[test]
fn reply_override_and_sigterm() {
    let emu = start(&["--reply", "print('hi')", "--latency-ms", "5"]);
    let a = emu.addr.clone();
    let r = bedrock(&a, MODEL, "invoke", &invoke_body()).unwrap();
    assert_eq!(r.json()["content"][0]["text"], "print('hi')");
    post_json(&a, "/_emulator/reply", &json!({"reply": "x = 1"}));
    let r = bedrock(&a, MODEL, "invoke", &invoke_body()).unwrap();
    assert_eq!(r.json()["content"][0]["text"], "x = 1");

    let mut emu = emu;
    let status = Command::new("kill")
        .args(["-TERM", &emu.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(st) = emu.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "emulator did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ----- credential services -----

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sleep_until(t: u64) {
    while unix_now() < t {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Invoke signed with temporary credentials taken from a credentials JSON answer.
fn invoke_as(addr: &str, creds: &Value, token: Option<&str>) -> Resp {
    let path = format!("/model/{MODEL}/invoke");
    let body = invoke_body();
    let headers = signed_headers_as(
        addr,
        &path,
        &body,
        creds["AccessKeyId"].as_str().unwrap(),
        creds["SecretAccessKey"].as_str().unwrap(),
        token,
    );
    raw_request(addr, "POST", &path, &headers, &body).unwrap()
}

fn assert_expired(r: &Resp) {
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("ExpiredTokenException:http://internal.amazon.com/coral/com.amazon.coral.service/")
    );
    assert_eq!(
        r.json(),
        json!({"message": "The security token included in the request is expired"})
    );
}

#[test]
fn container_endpoint_issues_new_expiring_credentials() {
    let emu = start(&[]);
    let a = emu.addr.as_str();
    let knobs = post_json(
        a,
        "/_emulator/creds",
        &json!({"container_token": "pod-identity-token", "ttl_secs": 2}),
    );
    assert_eq!(knobs.status, 200);
    assert_eq!(knobs.json()["ttl_secs"], 2);
    assert_eq!(
        post_json(a, "/_emulator/creds", &json!({"ttl_secs": 0})).status,
        400
    );

    assert_eq!(get(a, "/_creds/container").status, 401);
    let with = |token: &str| {
        raw_request(
            a,
            "GET",
            "/_creds/container",
            &[("authorization".into(), token.into())],
            b"",
        )
        .unwrap()
    };
    assert_eq!(with("wrong").status, 401);
    let before = unix_now();
    let r1 = with("pod-identity-token");
    assert_eq!(r1.status, 200);
    let c1 = r1.json();
    let c2 = with("pod-identity-token").json();
    assert!(c1["AccessKeyId"].as_str().unwrap().starts_with("ASIAEMU"));
    assert_ne!(c1["AccessKeyId"], c2["AccessKeyId"]);
    assert_ne!(c1["SecretAccessKey"], c2["SecretAccessKey"]);
    assert_ne!(c1["Token"], c2["Token"]);
    assert!(c1["RoleArn"].as_str().unwrap().starts_with("arn:aws:iam::"));
    let exp = bedrock_emulator::sigv4::parse_rfc3339_utc(c1["Expiration"].as_str().unwrap())
        .unwrap() as u64;
    assert!((before + 2..=unix_now() + 2).contains(&exp));

    // Accepted with their own session token only.
    let t1 = c1["Token"].as_str();
    assert_eq!(invoke_as(a, &c1, t1).status, 200);
    assert_eq!(invoke_as(a, &c2, c2["Token"].as_str()).status, 200);
    let r = invoke_as(a, &c1, c2["Token"].as_str());
    assert_eq!(r.status, 403);
    assert!(r
        .header("x-amzn-errortype")
        .unwrap()
        .starts_with("UnrecognizedClientException:"));
    assert_eq!(invoke_as(a, &c1, None).status, 403);

    // Rejected once expired.
    sleep_until(exp);
    assert_expired(&invoke_as(a, &c1, t1));
    // The static key keeps working.
    assert_eq!(
        bedrock(a, MODEL, "invoke", &invoke_body()).unwrap().status,
        200
    );

    // fail → 500.
    post_json(a, "/_emulator/creds", &json!({"fail": true}));
    assert_eq!(with("pod-identity-token").status, 500);
    let stats = get(a, "/_emulator/stats").json();
    assert_eq!(stats["container_fetches"], 5);
    assert_eq!(stats["imds_token_fetches"], 0);
    assert_eq!(stats["signature_failures"], 3);
    let reset = raw_request(a, "DELETE", "/_emulator/stats", &[], b"").unwrap();
    assert_eq!(reset.json()["container_fetches"], 0);
    assert_eq!(get(a, "/_emulator/creds").json()["issued"], 2);
}

#[test]
fn imds_v2_paths() {
    let emu = start(&[]);
    let a = emu.addr.as_str();
    post_json(a, "/_emulator/creds", &json!({"ttl_secs": 2}));
    let put = |headers: &[(String, String)]| {
        raw_request(a, "PUT", "/latest/api/token", headers, b"").unwrap()
    };
    let ttl = (
        "x-aws-ec2-metadata-token-ttl-seconds".to_string(),
        "21600".to_string(),
    );
    assert_eq!(put(&[]).status, 400);
    assert_eq!(
        put(&[ttl.clone(), ("x-forwarded-for".into(), "10.0.0.1".into())]).status,
        403
    );
    let t = put(std::slice::from_ref(&ttl));
    assert_eq!(t.status, 200);
    assert_eq!(
        t.header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    let token = String::from_utf8(t.body.clone()).unwrap();
    let meta = |path: &str, token: Option<&str>| {
        let h: Vec<(String, String)> = token
            .map(|t| vec![("x-aws-ec2-metadata-token".to_string(), t.to_string())])
            .unwrap_or_default();
        raw_request(a, "GET", path, &h, b"").unwrap()
    };
    let list = "/latest/meta-data/iam/security-credentials/";
    assert_eq!(meta(list, None).status, 401);
    assert_eq!(meta(list, Some("bogus")).status, 401);
    let roles = meta(list, Some(&token));
    assert_eq!(roles.status, 200);
    assert_eq!(roles.body, b"emulator-role");
    assert_eq!(meta(&format!("{list}emulator-role"), None).status, 401);
    assert_eq!(meta(&format!("{list}other-role"), Some(&token)).status, 404);
    let r = meta(&format!("{list}emulator-role"), Some(&token));
    assert_eq!(r.status, 200);
    let c = r.json();
    assert_eq!(c["Code"], "Success");
    assert_eq!(c["Type"], "AWS-HMAC");
    assert!(c["LastUpdated"].is_string());
    let exp = bedrock_emulator::sigv4::parse_rfc3339_utc(c["Expiration"].as_str().unwrap()).unwrap()
        as u64;
    assert_eq!(invoke_as(a, &c, c["Token"].as_str()).status, 200);
    sleep_until(exp);
    assert_expired(&invoke_as(a, &c, c["Token"].as_str()));

    // No instance profile, then a failing service.
    post_json(a, "/_emulator/creds", &json!({"role": ""}));
    assert_eq!(meta(list, Some(&token)).status, 404);
    post_json(a, "/_emulator/creds", &json!({"role": "r2", "fail": true}));
    assert_eq!(put(std::slice::from_ref(&ttl)).status, 500);
    assert_eq!(meta(list, Some(&token)).status, 500);
    assert_eq!(meta(&format!("{list}r2"), Some(&token)).status, 500);
    post_json(a, "/_emulator/creds", &json!({"fail": false}));
    assert_eq!(meta(list, Some(&token)).body, b"r2");

    let stats = get(a, "/_emulator/stats").json();
    assert_eq!(stats["imds_token_fetches"], 4);
    assert_eq!(stats["imds_role_fetches"], 6);
    assert_eq!(stats["imds_credential_fetches"], 4);
    assert_eq!(stats["container_fetches"], 0);
}

#[test]
fn credential_knobs_from_the_command_line() {
    let emu = start(&[
        "--container-token",
        "cli-token",
        "--creds-ttl",
        "7",
        "--imds-role",
        "cli-role",
    ]);
    let a = emu.addr.as_str();
    let k = get(a, "/_emulator/creds").json();
    assert_eq!(
        k,
        json!({"container_token": "cli-token", "ttl_secs": 7, "fail": false,
               "role": "cli-role", "web_identity_token": null, "role_arn": null,
               "sts_error": null, "issued": 0, "container_tokens_seen": [],
               "web_identity_tokens_seen": []})
    );
    assert_eq!(
        post_json(a, "/_emulator/creds", &json!({"role": "a/b"})).status,
        400
    );
    assert_eq!(
        post_json(a, "/_emulator/creds", &json!({"nope": 1})).status,
        400
    );
}

// ----- the filter's credential core against the emulator -----

mod filter_core {
    use super::*;
    use duo_bedrock_filter::bedrock::credentials::{
        refresh_at, retry_at, source_from_env, CallTo, Fetch, Fetched, Source, Step,
    };
    use std::cell::RefCell;

    thread_local! {
        /// What the launcher's token-file server would answer now, per test thread (the tests
        /// change it between fetches, as EKS rotates the files).
        static TOKEN_FILE: RefCell<Option<String>> = const { RefCell::new(None) };
    }

    fn set_token_file(token: Option<&str>) {
        TOKEN_FILE.with(|t| *t.borrow_mut() = token.map(str::to_string));
    }
    use duo_bedrock_filter::bedrock::sigv4;

    /// Runs one refresh like the host: token-file calls answered from [`TOKEN_FILE`] (as the
    /// launcher would), every other `HttpCall` dispatched to the emulator.
    fn fetch(addr: &str, source: &Source) -> Step {
        let (mut f, mut step) = Fetch::start(source, unix_now());
        for _ in 0..5 {
            let Step::Call(call) = step else {
                return step;
            };
            let r = if call.to == CallTo::TokenFiles {
                match TOKEN_FILE.with(|t| t.borrow().clone()) {
                    Some(t) => (200, t.into_bytes()),
                    None => (404, vec![]),
                }
            } else {
                assert!(!call.scheme_https);
                assert_eq!(call.authority, addr);
                raw_request(addr, call.method, &call.path, &call.headers, &call.body)
                    .map(|r| (r.status, r.body))
                    .unwrap_or((0, vec![]))
            };
            step = f.on_response(r.0, &r.1, unix_now());
        }
        panic!("too many calls")
    }

    fn done(step: Step) -> Fetched {
        match step {
            Step::Done(f) => f,
            other => panic!("{other:?}"),
        }
    }

    /// Invoke signed by the filter's signer with fetched credentials.
    fn invoke(addr: &str, f: &Fetched) -> Resp {
        let path = format!("/model/{MODEL}/invoke");
        let body = invoke_body();
        let input = sigv4::SignInput {
            method: "POST",
            authority: addr,
            path: &path,
            headers: &[
                ("content-type", "application/json"),
                ("accept", "application/json"),
            ],
            body: &body,
        };
        let mut headers: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            ("accept".into(), "application/json".into()),
        ];
        headers.extend(sigv4::sign(&input, &f.creds, REGION, SystemTime::now()).unwrap());
        raw_request(addr, "POST", &path, &headers, &body).unwrap()
    }

    fn source(vars: &[(&str, String)]) -> Source {
        source_from_env(
            |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            },
            REGION,
        )
        .unwrap()
        .unwrap()
    }

    /// Refresh before expiry: the old set serves until it expires, the new one after.
    fn refresh_cycle(a: &str, src: &Source) {
        let t0 = unix_now();
        let first = done(fetch(a, src));
        let exp1 = first.expires_at.unwrap();
        assert!((t0 + 3..=unix_now() + 3).contains(&exp1));
        assert_eq!(invoke(a, &first).status, 200);
        let due = refresh_at(t0, first.expires_at);
        assert!(due < exp1);
        sleep_until(due);
        let second = done(fetch(a, src));
        assert_ne!(second.creds.access_key_id, first.creds.access_key_id);
        assert_eq!(
            invoke(a, &first).status,
            200,
            "old set still valid before expiry"
        );
        assert_eq!(invoke(a, &second).status, 200);
        sleep_until(exp1);
        assert!(first.is_expired(unix_now()));
        assert_expired(&invoke(a, &first));
        assert_eq!(invoke(a, &second).status, 200);

        // A failing refresh keeps the current set until it expires.
        post_json(a, "/_emulator/creds", &json!({"fail": true}));
        let Step::Failed(why) = fetch(a, src) else {
            panic!("expected a failure")
        };
        assert!(why.contains("HTTP 500"), "{why}");
        assert!(retry_at(unix_now(), 1) > unix_now());
        assert_eq!(invoke(a, &second).status, 200);
        post_json(a, "/_emulator/creds", &json!({"fail": false}));
    }

    #[test]
    fn container_source_with_token() {
        let emu = start(&[]);
        let a = emu.addr.as_str();
        post_json(
            a,
            "/_emulator/creds",
            &json!({"container_token": "eks-pod-identity", "ttl_secs": 3}),
        );
        let url = format!("http://{a}/_creds/container");
        // Without the token: refused, and the message does not echo anything secret.
        let bare = source(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", url.clone())]);
        let Step::Failed(why) = fetch(a, &bare) else {
            panic!()
        };
        assert!(why.contains("HTTP 401"), "{why}");
        // Token from a file, served by the launcher.
        let src = source(&[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", url),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/token".into(),
            ),
        ]);
        set_token_file(Some("eks-pod-identity\n"));
        refresh_cycle(a, &src);
        assert_eq!(get(a, "/_emulator/stats").json()["container_fetches"], 4);
        // The file rotates: the next fetch sends the new token.
        post_json(
            a,
            "/_emulator/creds",
            &json!({"container_token": "rotated"}),
        );
        set_token_file(Some("rotated"));
        done(fetch(a, &src));
        let seen = get(a, "/_emulator/creds").json()["container_tokens_seen"].clone();
        assert_eq!(
            seen.as_array().unwrap().last().unwrap(),
            "rotated",
            "{seen}"
        );
        set_token_file(None);
    }

    #[test]
    fn web_identity_source() {
        let emu = start(&[]);
        let a = emu.addr.as_str();
        let role = "arn:aws:iam::123456789012:role/duo-bedrock";
        post_json(
            a,
            "/_emulator/creds",
            &json!({"ttl_secs": 3, "web_identity_token": "irsa-1", "role_arn": role}),
        );
        let src = source(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/irsa".into()),
            ("AWS_ROLE_ARN", role.into()),
            ("AWS_ENDPOINT_URL_STS", format!("http://{a}")),
        ]);
        set_token_file(Some("irsa-1\n"));
        refresh_cycle(a, &src);
        // A rotated token the emulator does not accept: STS's InvalidIdentityToken, by code.
        set_token_file(Some("irsa-2"));
        let Step::Failed(why) = fetch(a, &src) else {
            panic!()
        };
        assert!(why.contains("HTTP 400: InvalidIdentityToken"), "{why}");
        assert!(!why.contains("irsa-2"));
        post_json(
            a,
            "/_emulator/creds",
            &json!({"web_identity_token": "irsa-2"}),
        );
        done(fetch(a, &src));
        let seen = get(a, "/_emulator/creds").json()["web_identity_tokens_seen"].clone();
        let seen: Vec<&str> = seen
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(seen.last(), Some(&"irsa-2"));
        assert!(seen.contains(&"irsa-1"));
        assert!(
            get(a, "/_emulator/stats").json()["sts_calls"]
                .as_u64()
                .unwrap()
                >= 5
        );
        set_token_file(None);
    }

    #[test]
    fn imds_source() {
        let emu = start(&[]);
        let a = emu.addr.as_str();
        post_json(a, "/_emulator/creds", &json!({"ttl_secs": 3}));
        let src = source(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", format!("http://{a}/"))]);
        assert!(matches!(src, Source::Imds { .. }));
        refresh_cycle(a, &src);
        // No role attached.
        post_json(a, "/_emulator/creds", &json!({"role": ""}));
        let Step::Failed(why) = fetch(a, &src) else {
            panic!()
        };
        assert!(why.contains("no IAM role"), "{why}");
        let stats = get(a, "/_emulator/stats").json();
        assert_eq!(stats["imds_token_fetches"], 4);
        assert_eq!(stats["imds_role_fetches"], 3);
        assert_eq!(stats["imds_credential_fetches"], 2);
    }
}

/// `fault-first-<ms>`, `fault-drip-<ms>` and `fault-deltas-<n>` together: the long-stream shape
/// `make bench` uses (headers at once, the first frames after `first`, then one delta per drip).
#[test]
fn long_stream_timing_and_delta_count() {
    let emu = start(&[]);
    let a = emu.addr.as_str();
    let path = "/model/m-fault-first-300-fault-drip-20-fault-deltas-12/invoke-with-response-stream";
    let body = invoke_body();
    let headers = signed_headers(a, path, &body, SECRET);
    let t0 = Instant::now();
    let mut s = send_request(a, "POST", path, &headers, &body);
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let (mut t_headers, mut t_body) = (None, None);
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            t_headers.get_or_insert_with(|| t0.elapsed());
            if raw.len() > end + 4 && t_body.is_none() {
                t_body = Some(t0.elapsed());
            }
        }
    }
    let total = t0.elapsed();
    let (t_headers, t_body) = (t_headers.unwrap(), t_body.unwrap());
    assert!(t_headers < Duration::from_millis(250), "{t_headers:?}");
    assert!(t_body >= Duration::from_millis(300), "{t_body:?}");
    // 12 deltas + 3 closing events, the drip after each frame but the last, none before the
    // first delta: 300 + 20 * (12 + 2) ms at least.
    assert!(total >= Duration::from_millis(300 + 20 * 14), "{total:?}");
    let r = parse_response(&raw).unwrap();
    assert_eq!(r.status, 200);
    let events = anthropic_events(&decode_stream(&r.chunks).unwrap());
    assert_eq!(events.len(), 12 + 5);
    let deltas: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| e["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, vec!["return a + b"; 12]);
    assert_eq!(events[16]["type"], "message_stop");
    let metrics = &events[16]["amazon-bedrock-invocationMetrics"];
    assert!(metrics["firstByteLatency"].as_u64().unwrap() >= 300);
}

fn retrieve(addr: &str, kb: &str, body: &Value, secret: &str) -> Resp {
    let path = format!("/knowledgebases/{kb}/retrieve");
    let body = body.to_string().into_bytes();
    let headers = signed_headers(addr, &path, &body, secret);
    raw_request(addr, "POST", &path, &headers, &body).unwrap()
}

/// Knowledge base `Retrieve` (docs/bedrock-contract.md#retrieve): SigV4 for service `bedrock`
/// like the runtime, the corpus ranked by keyword score, the documented answer shape, errors
/// by knowledge base id, and the recorder.
#[test]
fn knowledge_base_retrieve() {
    let emu = start(&[]);
    let a = emu.addr.as_str();
    let q = |text: &str, n: u64| {
        json!({"retrievalQuery": {"text": text},
               "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": n}}})
    };
    let r = retrieve(a, "EMUDOCS001", &q("How do I protect a branch?", 3), SECRET);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-amzn-requestid").unwrap().len(), 36);
    let v = r.json();
    let results = v["retrievalResults"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 3, "{v}");
    let first = &results[0];
    assert_eq!(first["location"]["type"], "WEB");
    assert_eq!(
        first["location"]["webLocation"]["url"],
        "https://docs.gitlab.com/user/project/repository/branches/protected/"
    );
    assert!(first["content"]["text"]
        .as_str()
        .unwrap()
        .contains("Protected branches"));
    assert_eq!(
        first["metadata"]["x-amz-bedrock-kb-source-uri"],
        first["location"]["webLocation"]["url"]
    );
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");

    // Recorded like a model call, with the knowledge base id and operation.
    let recs = get(a, "/_emulator/requests").json();
    let last = recs.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["operation"], "retrieve");
    assert_eq!(last["model_id"], "EMUDOCS001");
    assert_eq!(last["signature_valid"], true);
    assert_eq!(last["path"], "/knowledgebases/EMUDOCS001/retrieve");
    assert!(last["body"].as_str().unwrap().contains("protect a branch"));

    // Wrong secret: the runtime's SigV4 errors.
    let r = retrieve(a, "EMUDOCS001", &q("x", 1), "wrong");
    assert_eq!(r.status, 403);
    assert!(r
        .header("x-amzn-errortype")
        .unwrap()
        .starts_with("InvalidSignatureException:"));
    // Unsigned.
    let r = raw_request(
        a,
        "POST",
        "/knowledgebases/EMUDOCS001/retrieve",
        &[("content-type".into(), "application/json".into())],
        b"{}",
    )
    .unwrap();
    assert_eq!(r.status, 403);

    // Errors by knowledge base id; validation.
    for (kb, status, kind) in [
        ("ABCDE12345", 404, "ResourceNotFoundException"),
        ("FAULT40300", 403, "AccessDeniedException"),
        ("FAULT42900", 429, "ThrottlingException"),
        ("FAULT50000", 500, "InternalServerException"),
    ] {
        let r = retrieve(a, kb, &q("protect", 1), SECRET);
        assert_eq!(r.status, status, "{kb}");
        assert!(
            r.header("x-amzn-errortype").unwrap().starts_with(kind),
            "{kb}"
        );
        assert!(r.json()["message"].is_string());
    }
    let r = retrieve(a, "EMUDOCS001", &json!({"retrievalQuery": {}}), SECRET);
    assert_eq!(r.status, 400);
    let r = retrieve(a, "EMUDOCS001", &q("protect", 0), SECRET);
    assert_eq!(r.status, 400);
    // Nothing matches: an empty list, not an error.
    let r = retrieve(a, "EMUDOCS001", &q("zebra quantum", 5), SECRET);
    assert_eq!(r.json()["retrievalResults"], json!([]));
    assert_eq!(get(a, "/_emulator/stats").json()["retrievals"], 10);
    assert_eq!(get(a, "/_emulator/stats").json()["unknown_paths"], 0);
}
