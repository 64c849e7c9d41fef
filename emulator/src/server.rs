//! The HTTP server: one port serves the Bedrock runtime emulation, the GitLab
//! OIDC issuer endpoints, the `/_emulator/*` control API and `/healthz`.
//!
//! Bedrock side: `/model/{modelId}/invoke` and `/invoke-with-response-stream`
//! with independent SigV4 verification ([`crate::sigv4`]) or Bedrock API keys
//! (`Authorization: Bearer`), Bedrock body validation, error shapes
//! (`x-amzn-errortype` + `{"message"}`), the event-stream encoder
//! ([`crate::eventstream`]) and the fault knobs ([`crate::faults`]).
//! Contract: `docs/bedrock-contract.md`.
//!
//! OIDC side: discovery + JWKS in GitLab's shape, with knobs to rotate keys,
//! go down, slow down and change `Cache-Control`.
//! Contract: `docs/gitlab-contract.md#key-sources` and `#rails-tokens`.
//!
//! Credential services ([`crate::creds`]): the ECS/EKS container endpoint at
//! `/_creds/container`, IMDSv2 at its real paths and STS `AssumeRoleWithWebIdentity` at
//! `POST /` (the query protocol's path); the credentials they issue are accepted by the SigV4
//! verifier until they expire.

use crate::bedrock::{self, Generation, ParsedRequest};
use crate::creds::{self, Issuer, KnobsUpdate};
use crate::eventstream;
use crate::faults::{self, Faults};
use crate::ids;
use crate::kb;
use crate::oidc::{self, MintRequest};
use crate::sigv4::{self, KeyLookup, SigErrorKind, SigningInput, Verifier};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Bedrock's documented maximum body size.
pub const MAX_BODY: usize = 25_000_000;
/// How many Bedrock requests the recorder keeps.
pub const RECORD_LIMIT: usize = 200;
/// Recorded bodies are cut to this many bytes (`body_bytes` keeps the size).
pub const RECORD_BODY_LIMIT: usize = 1 << 20;

/// Everything `serve` can be configured with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Required SigV4 scope region (`None`: any).
    pub region: Option<String>,
    /// Base text the fake model answers with.
    pub reply: String,
    /// OIDC issuer URL (`None`: `http://<bound address>`).
    pub issuer: Option<String>,
    /// Accept `Authorization: Bearer <api_key>` (Bedrock API keys).
    pub api_key: Option<String>,
    /// Extra delay before every Bedrock response.
    pub latency_ms: u64,
    /// Log one line per request to stderr.
    pub verbose: bool,
    /// Initial credential-service knobs (`POST /_emulator/creds` changes them).
    pub creds: creds::Knobs,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            region: None,
            reply: bedrock::DEFAULT_REPLY.into(),
            issuer: None,
            api_key: None,
            latency_ms: 0,
            verbose: false,
            creds: creds::Knobs::default(),
        }
    }
}

/// OIDC issuer knobs (`POST /_emulator/oidc`).
#[derive(Debug, Clone, Serialize)]
struct OidcState {
    active_keys: Vec<String>,
    down: bool,
    delay_ms: u64,
    max_age: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OidcUpdate {
    active_keys: Option<Vec<String>>,
    down: Option<bool>,
    delay_ms: Option<u64>,
    max_age: Option<u64>,
}

/// One recorded Bedrock request (`GET /_emulator/requests`).
#[derive(Debug, Clone, Serialize)]
struct Record {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: String,
    body_bytes: usize,
    model_id: String,
    operation: String,
    auth: &'static str,
    signature_valid: bool,
    status: u16,
    error: Option<String>,
    canonical_request: Option<String>,
    string_to_sign: Option<String>,
    received_at_ms: u64,
    http_version: String,
}

#[derive(Default)]
struct Stats {
    discovery_fetches: AtomicU64,
    jwks_fetches: AtomicU64,
    filter_jwks_fetches: AtomicU64,
    invocations: AtomicU64,
    signature_failures: AtomicU64,
    /// Knowledge base `Retrieve` calls (any outcome).
    retrievals: AtomicU64,
    container_fetches: AtomicU64,
    sts_calls: AtomicU64,
    imds_token_fetches: AtomicU64,
    imds_role_fetches: AtomicU64,
    imds_credential_fetches: AtomicU64,
    /// Requests for paths the emulator does not serve (a proxy that forwarded something it
    /// should not have: the security tests expect 0).
    unknown_paths: AtomicU64,
}

struct State {
    verifier: Verifier,
    api_key: Option<String>,
    issuer: String,
    reply: RwLock<String>,
    latency_ms: u64,
    verbose: bool,
    records: Mutex<VecDeque<Record>>,
    stats: Stats,
    oidc: Mutex<OidcState>,
    creds: Mutex<Issuer>,
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub issuer: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop accepting connections and wait for the accept loop to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Bind and start serving in the background.
pub async fn start(config: Config) -> std::io::Result<Running> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let issuer = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_string();
    // Parse the demo keys now, not on the first request.
    let _ = oidc::demo_keys();
    let state = Arc::new(State {
        verifier: Verifier::bedrock(
            HashMap::from([(
                config.access_key_id.clone(),
                config.secret_access_key.clone(),
            )]),
            config.region.clone(),
        ),
        api_key: config.api_key.clone(),
        issuer: issuer.clone(),
        reply: RwLock::new(config.reply.clone()),
        latency_ms: config.latency_ms,
        verbose: config.verbose,
        records: Mutex::new(VecDeque::with_capacity(RECORD_LIMIT)),
        stats: Stats::default(),
        oidc: Mutex::new(OidcState {
            active_keys: vec!["demo-1".into()],
            down: false,
            delay_ms: 0,
            max_age: 86400,
        }),
        creds: Mutex::new(Issuer::new(config.creds.clone())),
    });
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let _ = stream.set_nodelay(true);
                        let state = state.clone();
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Err(e) => {
                        eprintln!("bedrock-emulator: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
    });
    Ok(Running {
        addr,
        issuer,
        shutdown: Some(tx),
        task,
    })
}

/// Response body: a full buffer or a channel of stream frames, optionally ended by trailers
/// (`fault-trailers`).
pub enum EmuBody {
    Full(Full<Bytes>),
    Channel(mpsc::Receiver<Bytes>, Option<hyper::HeaderMap>),
    Trailed(Option<Bytes>, Option<hyper::HeaderMap>),
}

/// The trailers `fault-trailers` ends an answer with.
fn fault_trailers() -> hyper::HeaderMap {
    let mut t = hyper::HeaderMap::new();
    t.insert(
        "x-emulator-trailer",
        hyper::header::HeaderValue::from_static("end"),
    );
    t
}

impl Body for EmuBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            EmuBody::Full(f) => Pin::new(f).poll_frame(cx),
            EmuBody::Channel(rx, trailers) => match rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(None) => Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t)))),
                Poll::Pending => Poll::Pending,
            },
            EmuBody::Trailed(data, trailers) => Poll::Ready(match data.take() {
                Some(b) => Some(Ok(Frame::data(b))),
                None => trailers.take().map(|t| Ok(Frame::trailers(t))),
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            EmuBody::Full(f) => f.is_end_stream(),
            EmuBody::Channel(..) => false,
            EmuBody::Trailed(data, trailers) => data.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            EmuBody::Full(f) => f.size_hint(),
            EmuBody::Channel(..) | EmuBody::Trailed(..) => SizeHint::default(),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Resp = Response<EmuBody>;

fn full(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(EmuBody::Full(Full::new(body.into())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn json_resp(status: u16, v: &Value) -> Resp {
    full(status, "application/json", v.to_string())
}

fn set_header(r: &mut Resp, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// A Bedrock/Coral error answer.
fn aws_error(
    status: u16,
    error_type: &str,
    namespace: &str,
    message: &str,
    request_id: &str,
) -> Resp {
    let mut r = json_resp(status, &json!({ "message": message }));
    set_header(
        &mut r,
        "x-amzn-errortype",
        &format!("{error_type}:http://internal.amazon.com/coral/{namespace}/"),
    );
    set_header(&mut r, "x-amzn-requestid", request_id);
    r
}

/// Records `rec` as refused with Bedrock's error `status` / `kind` and answers that error.
fn refuse(
    state: &State,
    mut rec: Record,
    (status, kind, namespace): (u16, &str, &str),
    message: &str,
    request_id: &str,
) -> Resp {
    rec.status = status;
    rec.error = Some(format!("{kind}: {message}"));
    record(state, rec);
    aws_error(status, kind, namespace, message, request_id)
}

const NS_CORAL: &str = "com.amazon.coral.service";
const NS_BEDROCK: &str = "com.amazon.bedrock";

fn not_found() -> Resp {
    json_resp(404, &json!({"message": "not found"}))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, BoxError> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match (&method, path.as_str()) {
        (_, p) if p.starts_with("/model/") => return bedrock_call(state, req, started).await,
        (_, p) if p.starts_with("/knowledgebases/") => return retrieve_call(state, req).await,
        (&Method::GET, "/healthz") => Ok(json_resp(200, &json!({"status": "ok"}))),
        (&Method::GET, "/_creds/container") => {
            state
                .stats
                .container_fetches
                .fetch_add(1, Ordering::Relaxed);
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok());
            let a = lock(&state.creds).container(auth, ids::unix_now());
            Ok(answer(a))
        }
        (&Method::POST, "/") => {
            state.stats.sts_calls.fetch_add(1, Ordering::Relaxed);
            let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => Bytes::new(),
            };
            let form = String::from_utf8_lossy(&body);
            let a = lock(&state.creds).sts(&form, ids::unix_now());
            Ok(answer(a))
        }
        (&Method::PUT, IMDS_TOKEN_PATH) => {
            state
                .stats
                .imds_token_fetches
                .fetch_add(1, Ordering::Relaxed);
            let h = req.headers();
            let ttl = h
                .get("x-aws-ec2-metadata-token-ttl-seconds")
                .and_then(|v| v.to_str().ok());
            let forwarded = h.contains_key("x-forwarded-for");
            let a = lock(&state.creds).imds_token(ttl, forwarded, ids::unix_now());
            Ok(answer(a))
        }
        (&Method::GET, p) if p.starts_with(IMDS_CREDS_PATH) => {
            let role = &p[IMDS_CREDS_PATH.len()..];
            let role = if role.is_empty() {
                state
                    .stats
                    .imds_role_fetches
                    .fetch_add(1, Ordering::Relaxed);
                None
            } else {
                state
                    .stats
                    .imds_credential_fetches
                    .fetch_add(1, Ordering::Relaxed);
                Some(role)
            };
            let token = req
                .headers()
                .get("x-aws-ec2-metadata-token")
                .and_then(|v| v.to_str().ok());
            let a = lock(&state.creds).imds_credentials(token, role, ids::unix_now());
            Ok(answer(a))
        }
        (&Method::GET, "/_emulator/creds") => Ok(json_resp(200, &lock(&state.creds).state_json())),
        (&Method::POST, "/_emulator/creds") => Ok(creds_update(&state, req).await),
        (&Method::GET, "/.well-known/openid-configuration") => {
            state
                .stats
                .discovery_fetches
                .fetch_add(1, Ordering::Relaxed);
            Ok(oidc_answer(&state, false).await)
        }
        (&Method::GET, "/oauth/discovery/keys") => {
            state.stats.jwks_fetches.fetch_add(1, Ordering::Relaxed);
            // The filter's own fetches (its user-agent), apart from Envoy's jwt_authn, which
            // fetches once per worker on its own schedule.
            if req
                .headers()
                .get("user-agent")
                .is_some_and(|v| v.as_bytes() == b"duo-bedrock-filter")
            {
                state
                    .stats
                    .filter_jwks_fetches
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(oidc_answer(&state, true).await)
        }
        (&Method::GET, "/_emulator/oidc") => Ok(json_resp(200, &oidc_state_json(&state))),
        (&Method::POST, "/_emulator/oidc") => Ok(oidc_update(&state, req).await),
        (&Method::POST, "/_emulator/mint") => Ok(mint_endpoint(&state, req).await),
        (&Method::POST, "/_emulator/reply") => Ok(reply_endpoint(&state, req).await),
        (&Method::GET, "/_emulator/stats") => Ok(json_resp(200, &stats_json(&state))),
        (&Method::DELETE, "/_emulator/stats") => {
            for c in [
                &state.stats.discovery_fetches,
                &state.stats.jwks_fetches,
                &state.stats.filter_jwks_fetches,
                &state.stats.invocations,
                &state.stats.signature_failures,
                &state.stats.retrievals,
                &state.stats.container_fetches,
                &state.stats.sts_calls,
                &state.stats.imds_token_fetches,
                &state.stats.imds_role_fetches,
                &state.stats.imds_credential_fetches,
                &state.stats.unknown_paths,
            ] {
                c.store(0, Ordering::Relaxed);
            }
            Ok(json_resp(200, &stats_json(&state)))
        }
        (&Method::GET, "/_emulator/requests") => {
            let records = lock(&state.records);
            let list: Vec<&Record> = records.iter().collect();
            Ok(json_resp(
                200,
                &serde_json::to_value(list).unwrap_or(Value::Null),
            ))
        }
        (&Method::DELETE, "/_emulator/requests") => {
            lock(&state.records).clear();
            Ok(json_resp(200, &json!({"cleared": true})))
        }
        _ => {
            state.stats.unknown_paths.fetch_add(1, Ordering::Relaxed);
            Ok(not_found())
        }
    };
    if state.verbose {
        if let Ok(r) = &resp {
            eprintln!(
                "bedrock-emulator: {method} {path} -> {}",
                r.status().as_u16()
            );
        }
    }
    resp
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn stats_json(state: &State) -> Value {
    let s = &state.stats;
    json!({
        "discovery_fetches": s.discovery_fetches.load(Ordering::Relaxed),
        "jwks_fetches": s.jwks_fetches.load(Ordering::Relaxed),
        "filter_jwks_fetches": s.filter_jwks_fetches.load(Ordering::Relaxed),
        "invocations": s.invocations.load(Ordering::Relaxed),
        "signature_failures": s.signature_failures.load(Ordering::Relaxed),
        "retrievals": s.retrievals.load(Ordering::Relaxed),
        "container_fetches": s.container_fetches.load(Ordering::Relaxed),
        "sts_calls": s.sts_calls.load(Ordering::Relaxed),
        "unknown_paths": s.unknown_paths.load(Ordering::Relaxed),
        "imds_token_fetches": s.imds_token_fetches.load(Ordering::Relaxed),
        "imds_role_fetches": s.imds_role_fetches.load(Ordering::Relaxed),
        "imds_credential_fetches": s.imds_credential_fetches.load(Ordering::Relaxed),
    })
}

const IMDS_TOKEN_PATH: &str = "/latest/api/token";
const IMDS_CREDS_PATH: &str = "/latest/meta-data/iam/security-credentials/";

fn answer(a: creds::Answer) -> Resp {
    let mut r = full(a.status, a.content_type, a.body);
    for (name, value) in &a.headers {
        set_header(&mut r, name, value);
    }
    r
}

async fn creds_update(state: &State, req: Request<Incoming>) -> Resp {
    let upd: KnobsUpdate = match read_json(req).await {
        Ok(u) => u,
        Err(e) => return json_resp(400, &json!({ "message": e })),
    };
    let mut issuer = lock(&state.creds);
    match issuer.update(upd) {
        Ok(()) => json_resp(200, &issuer.state_json()),
        Err(e) => json_resp(400, &json!({ "message": e })),
    }
}

fn oidc_state_json(state: &State) -> Value {
    let mut v = serde_json::to_value(&*lock(&state.oidc)).unwrap_or(Value::Null);
    v["issuer"] = json!(state.issuer);
    v["kids"] = json!(oidc::demo_keys()
        .iter()
        .map(|k| (k.name.to_string(), k.kid.clone()))
        .collect::<BTreeMap<_, _>>());
    v
}

async fn oidc_answer(state: &State, keys: bool) -> Resp {
    let snapshot = lock(&state.oidc).clone();
    if snapshot.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(snapshot.delay_ms)).await;
    }
    if snapshot.down {
        return json_resp(503, &json!({"message": "503 Service Unavailable"}));
    }
    if keys {
        let mut r = json_resp(200, &oidc::jwks(&snapshot.active_keys));
        set_header(
            &mut r,
            "cache-control",
            &format!(
                "max-age={}, public, must-revalidate, no-transform",
                snapshot.max_age
            ),
        );
        r
    } else {
        let mut r = json_resp(200, &oidc::discovery(&state.issuer));
        r.headers_mut().insert(
            CACHE_CONTROL,
            HeaderValue::from_static("max-age=0, private, must-revalidate"),
        );
        r
    }
}

async fn read_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, String> {
    let body = Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| format!("cannot read body: {e}"))?
        .to_bytes();
    let body: &[u8] = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))
}

async fn oidc_update(state: &State, req: Request<Incoming>) -> Resp {
    let upd: OidcUpdate = match read_json(req).await {
        Ok(u) => u,
        Err(e) => return json_resp(400, &json!({ "message": e })),
    };
    {
        let mut s = lock(&state.oidc);
        if let Some(keys) = upd.active_keys {
            if let Some(bad) = keys.iter().find(|k| oidc::demo_key(k).is_none()) {
                return json_resp(400, &json!({"message": format!("unknown key {bad:?}")}));
            }
            s.active_keys = keys;
        }
        if let Some(d) = upd.down {
            s.down = d;
        }
        if let Some(d) = upd.delay_ms {
            s.delay_ms = d;
        }
        if let Some(m) = upd.max_age {
            s.max_age = m;
        }
    }
    json_resp(200, &oidc_state_json(state))
}

async fn mint_endpoint(state: &State, req: Request<Incoming>) -> Resp {
    let m: MintRequest = match read_json(req).await {
        Ok(m) => m,
        Err(e) => return json_resp(400, &json!({ "message": e })),
    };
    match oidc::mint(&m, &state.issuer, ids::unix_now()) {
        Ok(token) => json_resp(200, &json!({ "token": token })),
        Err(e) => json_resp(400, &json!({ "message": e })),
    }
}

async fn reply_endpoint(state: &State, req: Request<Incoming>) -> Resp {
    #[derive(Deserialize)]
    struct ReplyUpdate {
        reply: String,
    }
    match read_json::<ReplyUpdate>(req).await {
        Ok(u) => {
            *state.reply.write().unwrap_or_else(|p| p.into_inner()) = u.reply.clone();
            json_resp(200, &json!({ "reply": u.reply }))
        }
        Err(e) => json_resp(400, &json!({ "message": e })),
    }
}

/// Result of authenticating one Bedrock call.
struct AuthOutcome {
    kind: &'static str,
    error: Option<(SigErrorKind, String)>,
    canonical_request: Option<String>,
    string_to_sign: Option<String>,
}

fn authenticate(state: &State, input: &SigningInput<'_>) -> AuthOutcome {
    let auth = sigv4::header_values(input.headers, "authorization")
        .first()
        .map(|s| s.trim().to_string());
    if let Some(a) = &auth {
        let is_bearer = a
            .split_once(' ')
            .map(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .unwrap_or(false);
        if is_bearer {
            let token = a.split_once(' ').map(|(_, t)| t.trim()).unwrap_or("");
            let ok = match &state.api_key {
                Some(k) => sigv4::constant_time_eq(k.as_bytes(), token.as_bytes()),
                None => false,
            };
            return AuthOutcome {
                kind: "bearer",
                error: if ok {
                    None
                } else {
                    Some((
                        SigErrorKind::UnrecognizedClient,
                        sigv4::UNRECOGNIZED_MESSAGE.to_string(),
                    ))
                },
                canonical_request: None,
                string_to_sign: None,
            };
        }
    }
    let lookup = |akid: &str| match state.verifier.credentials.get(akid) {
        Some(secret) => KeyLookup::Static {
            secret: secret.clone(),
        },
        None => lock(&state.creds).lookup(akid),
    };
    match state.verifier.verify_with(input, ids::unix_now(), &lookup) {
        Ok(v) => AuthOutcome {
            kind: "sigv4",
            error: None,
            canonical_request: Some(v.canonical_request),
            string_to_sign: None,
        },
        Err(e) => AuthOutcome {
            kind: if auth.is_some() { "sigv4" } else { "none" },
            error: Some((e.kind, e.message)),
            canonical_request: e.canonical_request,
            string_to_sign: e.string_to_sign,
        },
    }
}

fn record(state: &State, rec: Record) {
    if state.verbose {
        eprintln!(
            "bedrock-emulator: {} {} model={} auth={} -> {}{}",
            rec.method,
            rec.path,
            rec.model_id,
            rec.auth,
            rec.status,
            rec.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    let mut r = lock(&state.records);
    if r.len() >= RECORD_LIMIT {
        r.pop_front();
    }
    r.push_back(rec);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One request to an AWS-style endpoint, read whole.
struct Received {
    method: Method,
    raw_path: String,
    raw_query: String,
    /// Lower-case names, in order, `host` added from the URI when absent.
    headers: Vec<(String, String)>,
    /// The same, repeats joined by ", " (for the recorder).
    header_map: BTreeMap<String, String>,
    body: Bytes,
    request_id: String,
    /// `HTTP/1.1` or `HTTP/2.0` (the sidecar's `DUO_BEDROCK_UPSTREAM_HTTP2`).
    http_version: String,
}

/// Reads `req` (the body up to [`MAX_BODY`]); `Err` is the answer to send instead.
async fn receive(req: Request<Incoming>) -> Result<Received, Result<Resp, BoxError>> {
    let (parts, body) = req.into_parts();
    let request_id = ids::uuid_v4();
    let raw_path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if !headers.iter().any(|(n, _)| n == "host") {
        if let Some(a) = parts.uri.authority() {
            headers.push(("host".into(), a.as_str().to_string()));
        }
    }
    let mut header_map: BTreeMap<String, String> = BTreeMap::new();
    for (n, v) in &headers {
        header_map
            .entry(n.clone())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(v);
            })
            .or_insert_with(|| v.clone());
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                return Err(Ok(aws_error(
                    413,
                    "ValidationException",
                    NS_BEDROCK,
                    "Request body too large",
                    &request_id,
                )));
            }
            return Err(Err(e));
        }
    };
    Ok(Received {
        http_version: format!("{:?}", parts.version),
        method: parts.method,
        raw_path,
        raw_query,
        headers,
        header_map,
        body,
        request_id,
    })
}

impl Received {
    /// A record of this request for `model_id` (or knowledge base id) and `operation`.
    fn record(&self, model_id: &str, operation: &str) -> Record {
        Record {
            method: self.method.as_str().to_string(),
            path: self.raw_path.clone(),
            query: self.raw_query.clone(),
            headers: self.header_map.clone(),
            body: String::from_utf8_lossy(&self.body[..self.body.len().min(RECORD_BODY_LIMIT)])
                .into_owned(),
            body_bytes: self.body.len(),
            model_id: model_id.to_string(),
            operation: operation.to_string(),
            auth: "none",
            signature_valid: false,
            status: 200,
            error: None,
            canonical_request: None,
            string_to_sign: None,
            received_at_ms: now_ms(),
            http_version: self.http_version.clone(),
        }
    }

    /// Verifies the request's authentication; on failure records it and returns the AWS answer.
    fn authenticate(&self, state: &State, rec: &mut Record) -> Result<(), Box<Resp>> {
        let input = SigningInput {
            method: self.method.as_str(),
            raw_path: &self.raw_path,
            raw_query: &self.raw_query,
            headers: &self.headers,
            body: &self.body,
        };
        let auth = authenticate(state, &input);
        rec.auth = auth.kind;
        rec.canonical_request = auth.canonical_request;
        rec.string_to_sign = auth.string_to_sign;
        if let Some((kind, message)) = auth.error {
            state
                .stats
                .signature_failures
                .fetch_add(1, Ordering::Relaxed);
            return Err(Box::new(refuse(
                state,
                rec.clone(),
                (kind.status(), kind.error_type(), NS_CORAL),
                &message,
                &self.request_id,
            )));
        }
        rec.signature_valid = true;
        Ok(())
    }
}

/// `POST /knowledgebases/{knowledgeBaseId}/retrieve` (Agents for Amazon Bedrock Runtime): the
/// same SigV4 verification as the runtime (signing name `bedrock`), then [`kb`].
async fn retrieve_call(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, BoxError> {
    let r = match receive(req).await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let rest = &r.raw_path["/knowledgebases/".len()..];
    let label = match rest.split_once('/') {
        Some((l, "retrieve")) if !l.is_empty() => l,
        _ => return Ok(not_found()),
    };
    let kb_id = String::from_utf8_lossy(&sigv4::percent_decode(label)).into_owned();
    state.stats.retrievals.fetch_add(1, Ordering::Relaxed);
    let mut rec = r.record(&kb_id, "retrieve");
    if r.method != Method::POST {
        rec.status = 404;
        rec.error = Some("UnknownOperationException".into());
        record(&state, rec);
        return Ok(not_found());
    }
    if let Err(answer) = r.authenticate(&state, &mut rec) {
        return Ok(*answer);
    }
    match kb::lookup(&kb_id) {
        kb::Knowledge::Corpus => {}
        kb::Knowledge::Hang => {
            rec.status = 0;
            rec.error = Some("FAULTHANG".into());
            record(&state, rec);
            tokio::time::sleep(Duration::from_secs(600)).await;
            return Err("FAULTHANG: gave up".into());
        }
        kb::Knowledge::Error(status, kind, message) => {
            return Ok(refuse(
                &state,
                rec,
                (status, kind, NS_BEDROCK),
                message,
                &r.request_id,
            ));
        }
    }
    let query = match kb::validate(&r.body) {
        Ok(q) => q,
        Err(message) => {
            let kind = (400, "ValidationException", NS_BEDROCK);
            return Ok(refuse(&state, rec, kind, &message, &r.request_id));
        }
    };
    if state.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(state.latency_ms)).await;
    }
    record(&state, rec);
    let mut resp = json_resp(200, &kb::answer(&kb::search(&query)));
    set_header(&mut resp, "x-amzn-requestid", &r.request_id);
    Ok(resp)
}

async fn bedrock_call(
    state: Arc<State>,
    req: Request<Incoming>,
    started: Instant,
) -> Result<Resp, BoxError> {
    let r = match receive(req).await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let raw_path = &r.raw_path;
    let request_id = r.request_id.clone();
    // /model/{label}/{operation}
    let rest = &raw_path["/model/".len()..];
    let (label, operation) = match rest.split_once('/') {
        Some((l, op)) if !l.is_empty() && !op.contains('/') => (l, op),
        _ => return Ok(not_found()),
    };
    let stream = match operation {
        "invoke" => false,
        "invoke-with-response-stream" => true,
        _ => return Ok(not_found()),
    };
    let model_id = String::from_utf8_lossy(&sigv4::percent_decode(label)).into_owned();
    state.stats.invocations.fetch_add(1, Ordering::Relaxed);

    let mut rec = r.record(&model_id, operation);
    if r.method != Method::POST {
        rec.status = 404;
        rec.error = Some("UnknownOperationException".into());
        record(&state, rec);
        return Ok(not_found());
    }
    if let Err(answer) = r.authenticate(&state, &mut rec) {
        return Ok(*answer);
    }

    let f: Faults = faults::parse(&model_id);
    if f.reset {
        rec.status = 0;
        rec.error = Some("fault-reset".into());
        record(&state, rec);
        return Err("fault-reset: closing the connection".into());
    }
    if f.hang {
        rec.status = 0;
        rec.error = Some("fault-hang".into());
        record(&state, rec);
        tokio::time::sleep(Duration::from_secs(600)).await;
        return Err("fault-hang: gave up".into());
    }
    let delay = state.latency_ms.saturating_add(f.slow_ms);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(s) = f.status {
        let kind = (s.status, s.error_type, NS_BEDROCK);
        return Ok(refuse(&state, rec, kind, s.message, &request_id));
    }
    let parsed: ParsedRequest = match bedrock::validate(&r.body) {
        Ok(p) => p,
        Err(message) => {
            let kind = (400, "ValidationException", NS_BEDROCK);
            return Ok(refuse(&state, rec, kind, &message, &request_id));
        }
    };
    let reply = state
        .reply
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let reply = bedrock::repeated_reply(&reply, f.deltas);
    let generation = bedrock::generate(&reply, &parsed);
    let msg_id = ids::message_id();
    record(&state, rec);

    if !stream {
        let latency = started.elapsed().as_millis() as u64;
        let body = bedrock::message_json(&msg_id, &model_id, &generation);
        let mut r = if f.trailers {
            let mut r = full(200, "application/json", Bytes::new());
            *r.body_mut() = EmuBody::Trailed(Some(Bytes::from(body)), Some(fault_trailers()));
            r
        } else {
            full(200, "application/json", body)
        };
        set_header(&mut r, "x-amzn-requestid", &request_id);
        set_header(
            &mut r,
            "x-amzn-bedrock-invocation-latency",
            &latency.to_string(),
        );
        set_header(
            &mut r,
            "x-amzn-bedrock-output-token-count",
            &generation.output_tokens.to_string(),
        );
        set_header(
            &mut r,
            "x-amzn-bedrock-input-token-count",
            &generation.input_tokens.to_string(),
        );
        return Ok(r);
    }

    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let trailers = f.trailers.then(fault_trailers);
    tokio::spawn(stream_frames(tx, msg_id, model_id, generation, f, started));
    let mut r = Response::new(EmuBody::Channel(rx, trailers));
    set_header(&mut r, "content-type", "application/vnd.amazon.eventstream");
    set_header(&mut r, "x-amzn-bedrock-content-type", "application/json");
    set_header(&mut r, "x-amzn-requestid", &request_id);
    Ok(r)
}

/// Padding length for event `i`: varies between 1 and 40 letters.
fn pad_len(i: usize, json_len: usize) -> usize {
    (i * 7 + json_len * 3) % 40 + 1
}

/// Produce the stream frames for one generation into `tx`.
async fn stream_frames(
    tx: mpsc::Sender<Bytes>,
    msg_id: String,
    model_id: String,
    g: Generation,
    f: Faults,
    started: Instant,
) {
    if f.first_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.first_ms)).await;
    }
    let first_byte = started.elapsed().as_millis() as u64;
    let n_events = if f.deltas > 0 {
        bedrock::split_exact(&g.text, f.deltas).len()
    } else {
        bedrock::split_deltas(&g.text).len()
    } as u64
        + 5;
    let latency = first_byte + f.drip_ms.saturating_mul(n_events) + 1;
    let events = bedrock::stream_events(&msg_id, &model_id, &g, latency, first_byte, f.deltas);
    let last = events.len().saturating_sub(1);
    // Index of the first text delta (after message_start and content_block_start).
    const FIRST_DELTA: usize = 2;
    for (i, json) in events.iter().enumerate() {
        if f.midstream && i == 4 {
            let frame = eventstream::exception_frame(
                "modelStreamErrorException",
                "The model stream was interrupted by an internal error (emulator fault-midstream). Try your request again.",
            );
            let _ = send_frame(&tx, frame, f.split).await;
            return;
        }
        let mut frame = eventstream::chunk_frame(json.as_bytes(), pad_len(i, json.len()));
        if f.badcrc && i == 2 {
            eventstream::corrupt_message_crc(&mut frame);
        }
        if !send_frame(&tx, frame, f.split).await {
            return;
        }
        // fault-first: the first text delta comes with the first frame, not a drip later.
        let held = f.first_ms > 0 && i < FIRST_DELTA;
        if f.drip_ms > 0 && i < last && !held {
            tokio::time::sleep(Duration::from_millis(f.drip_ms)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// Send one frame, whole or in 2-3 pieces at odd offsets. False if the
/// client went away.
async fn send_frame(tx: &mpsc::Sender<Bytes>, frame: Vec<u8>, split: bool) -> bool {
    let frame = Bytes::from(frame);
    if !split || frame.len() < 8 {
        return tx.send(frame).await.is_ok();
    }
    let a = (frame.len() / 3) | 1;
    let b = ((frame.len() * 2 / 3) | 1).max(a + 1).min(frame.len() - 1);
    let pieces = if frame.len() % 2 == 0 {
        vec![frame.slice(..a), frame.slice(a..b), frame.slice(b..)]
    } else {
        vec![frame.slice(..7), frame.slice(7..)]
    };
    for p in pieces {
        if tx.send(p).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}
