//! Verification keys: OIDC discovery, JWKS parsing and merging, refresh scheduling, and the
//! gateway's own self-signed key.
//!
//! Contract (docs/gitlab-contract.md#key-sources): the gateway trusts the union of
//! 1. the public halves of its own `AIGW_SELF_SIGNED_JWT__SIGNING_KEY` / `__VALIDATION_KEY`
//!    (PEM RSA private keys; kids `<service>_signing_key` / `<service>_validation_key`), and
//! 2. the JWKS of each OIDC provider, found by `GET urljoin(base, "/.well-known/openid-configuration")`
//!    then `GET <jwks_uri>` (GitLab answers `https://<gitlab>/oauth/discovery/keys`, with
//!    `Cache-Control: max-age=86400`).
//!
//! Nothing here does I/O. The host fetches documents (`dispatch_http_call`) and passes the
//! bodies in; [`merge_jwks_json`] turns them into one canonical JWKS string that the host
//! stores in proxy-wasm shared data, and every worker VM builds its [`KeySet`] from that
//! same string with [`KeySet::from_jwks`].
//!
//! Usable keys: `kty == "RSA"`, `use` absent or `"sig"`, `alg` absent or `"RS256"`, `n`/`e`
//! valid base64url, modulus 2048..=4096 bits, an odd exponent in 3..=2^33-1 (the rules of
//! [`Rs256Key::new`], which verifies the signatures). Anything else is skipped and counted, never fatal. At most [`MAX_KEYS`] keys
//! are kept; a repeated `kid` keeps the first occurrence.
//!
//! Differences from the gateway, on purpose: the gateway caches the merged JWKS for 24 h and
//! never refreshes on an unknown `kid`; [`RefreshPolicy`] refreshes at least hourly and, rate
//! limited, when a token names an unknown `kid`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::rs256::{self, Rs256Key};

/// Upper bound on the number of keys kept in a [`KeySet`].
pub const MAX_KEYS: usize = 64;
/// A JWKS or OIDC discovery document larger than this is refused unparsed (GitLab's are a
/// few KiB). The host refuses such answers before reading them, too.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Smallest accepted RSA modulus, in bits.
pub const MIN_RSA_BITS: usize = rs256::MIN_BITS as usize;

/// Kid of the gateway's self-signed signing key for service `gitlab-ai-gateway`.
pub const SELF_SIGNED_SIGNING_KID: &str = "gitlab-ai-gateway_signing_key";
/// Kid of the gateway's self-signed validation key for service `gitlab-ai-gateway`.
pub const SELF_SIGNED_VALIDATION_KID: &str = "gitlab-ai-gateway_validation_key";

/// `urljoin(base, "/.well-known/openid-configuration")`, as the gateway computes it: the
/// absolute path replaces any path, query and fragment of `base` (so a GitLab installed under
/// a relative URL root is looked up at the host root, exactly like the gateway).
/// A `base` without `scheme://` yields just the path, like Python's `urljoin`.
pub fn discovery_url(base: &str) -> String {
    const PATH: &str = "/.well-known/openid-configuration";
    let base = base.trim();
    match base.find("://") {
        Some(i) => {
            let after = i.saturating_add(3);
            let rest = base.get(after..).unwrap_or("");
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let origin = base.get(..after.saturating_add(end)).unwrap_or(base);
            format!("{origin}{PATH}")
        }
        None => PATH.to_string(),
    }
}

/// `jwks_uri` from an OpenID discovery document. It must be an `http://` or `https://` URL.
pub fn jwks_uri_from_discovery(body: &[u8]) -> Result<String, String> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "discovery document of {} bytes refused (at most {MAX_DOCUMENT_BYTES})",
            body.len()
        ));
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("discovery document is not JSON: {e}"))?;
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| "discovery document has no string jwks_uri".to_string())?
        .trim();
    let lower = uri.get(..8).unwrap_or(uri).to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err("jwks_uri is not an http(s) URL".to_string());
    }
    Ok(uri.to_string())
}

/// Where to send an HTTP call: what `dispatch_http_call` needs besides the cluster name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// `true` for `https://`.
    pub https: bool,
    /// The `:authority` (host and optional port; userinfo removed).
    pub authority: String,
    /// The `:path`, including the query, never empty (`/` at least). The fragment is dropped.
    pub path: String,
}

/// Split an absolute `http(s)://` URL into scheme, authority and path.
pub fn http_target(url: &str) -> Result<HttpTarget, String> {
    let url = url.trim();
    let (https, rest) = if let Some(r) = strip_prefix_ci(url, "https://") {
        (true, r)
    } else if let Some(r) = strip_prefix_ci(url, "http://") {
        (false, r)
    } else {
        return Err("not an http(s) URL".to_string());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() {
        return Err("URL has no host".to_string());
    }
    let tail = rest.get(end..).unwrap_or("");
    let tail = tail.split('#').next().unwrap_or("");
    let path = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    Ok(HttpTarget {
        https,
        authority: authority.to_string(),
        path,
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// One usable RSA verification key.
struct RsaKey {
    kid: Option<String>,
    /// Big-endian modulus without leading zero bytes.
    n: Vec<u8>,
    /// Big-endian public exponent without leading zero bytes.
    e: Vec<u8>,
    public: Rs256Key,
}

/// The RSA keys a token may be signed with, by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<RsaKey>,
    skipped: usize,
    bad_documents: usize,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids())
            .field("skipped", &self.skipped)
            .field("bad_documents", &self.bad_documents)
            .finish()
    }
}

impl KeySet {
    /// An empty key set: every verification fails with `NoKeys`.
    pub fn empty() -> KeySet {
        KeySet::default()
    }

    /// Parse and merge JWKS documents (`{"keys":[...]}`), in order.
    ///
    /// Lenient per key and per document: unusable keys are skipped ([`KeySet::skipped`]),
    /// documents that are not a JSON object with a `keys` array are ignored
    /// ([`KeySet::bad_documents`]), so one broken provider does not hide the others.
    /// Fails only when no usable key remains (the gateway also refuses to run with an empty
    /// key set).
    pub fn from_jwks(docs: &[&[u8]]) -> Result<KeySet, String> {
        let mut set = KeySet::default();
        for doc in docs {
            if doc.len() > MAX_DOCUMENT_BYTES {
                set.bad_documents = set.bad_documents.saturating_add(1);
                continue;
            }
            let parsed: Option<Vec<Value>> =
                serde_json::from_slice::<Value>(doc)
                    .ok()
                    .and_then(|v| match v {
                        Value::Object(mut m) => match m.remove("keys") {
                            Some(Value::Array(keys)) => Some(keys),
                            _ => None,
                        },
                        _ => None,
                    });
            let Some(keys) = parsed else {
                set.bad_documents = set.bad_documents.saturating_add(1);
                continue;
            };
            for jwk in &keys {
                set.add(jwk);
            }
        }
        if set.keys.is_empty() {
            return Err(format!(
                "no usable RSA signing key ({} keys skipped, {} documents not JWKS)",
                set.skipped, set.bad_documents
            ));
        }
        Ok(set)
    }

    /// Adds one JWK. The limit and the duplicate check come first: building a key (the
    /// verifier's precomputation) is the expensive part, and a hostile document must not make
    /// the filter build keys it then throws away.
    fn add(&mut self, jwk: &Value) {
        let kid = jwk.get("kid").and_then(Value::as_str);
        let duplicate =
            kid.is_some_and(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        if duplicate || self.keys.len() >= MAX_KEYS {
            self.skipped = self.skipped.saturating_add(1);
            return;
        }
        match parse_rsa_jwk(jwk) {
            Some(key) => self.keys.push(key),
            None => self.skipped = self.skipped.saturating_add(1),
        }
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Rs256Key> {
        self.keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .map(|k| &k.public)
    }

    /// The key of a set that holds exactly one (the only one a token without a `kid` is
    /// checked against; see `auth::rules`).
    pub fn single(&self) -> Option<&Rs256Key> {
        match self.keys.as_slice() {
            [only] => Some(&only.public),
            _ => None,
        }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// `true` when there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Kids of the usable keys, in order (keys without a kid are not listed).
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }

    /// Keys that were present in the documents but skipped (not RSA, not for signatures,
    /// another algorithm, bad encoding, too small/large, duplicate kid, over [`MAX_KEYS`]).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Documents that were not a JSON object with a `keys` array.
    pub fn bad_documents(&self) -> usize {
        self.bad_documents
    }

    /// The canonical JWKS JSON of this set: only `kty, kid, n, e, alg, use`, in order.
    pub fn to_jwks_json(&self) -> String {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| jwk_value(k.kid.as_deref(), &k.n, &k.e))
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }
}

/// Merge several JWKS documents into ONE canonical JWKS JSON string (see [`KeySet::from_jwks`]
/// for what is kept). Every worker that parses this string gets the same keys; comparing two
/// results tells whether the key set changed.
pub fn merge_jwks_json(docs: &[&[u8]]) -> Result<String, String> {
    KeySet::from_jwks(docs).map(|s| s.to_jwks_json())
}

fn jwk_value(kid: Option<&str>, n: &[u8], e: &[u8]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("kty".into(), Value::from("RSA"));
    if let Some(kid) = kid {
        m.insert("kid".into(), Value::from(kid));
    }
    m.insert("n".into(), Value::from(URL_SAFE_NO_PAD.encode(n)));
    m.insert("e".into(), Value::from(URL_SAFE_NO_PAD.encode(e)));
    m.insert("alg".into(), Value::from("RS256"));
    m.insert("use".into(), Value::from("sig"));
    Value::Object(m)
}

fn parse_rsa_jwk(jwk: &Value) -> Option<RsaKey> {
    let obj = jwk.as_object()?;
    if obj.get("kty")?.as_str()? != "RSA" {
        return None;
    }
    match obj.get("use") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_str() == Some("sig") => {}
        Some(_) => return None,
    }
    match obj.get("alg") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_str() == Some("RS256") => {}
        Some(_) => return None,
    }
    let kid = match obj.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return None,
    };
    let n = b64url_decode(obj.get("n")?.as_str()?)?;
    let e = b64url_decode(obj.get("e")?.as_str()?)?;
    rsa_key(kid, &n, &e)
}

/// Build a key from big-endian components, after the same checks the verifier will apply.
fn rsa_key(kid: Option<String>, n: &[u8], e: &[u8]) -> Option<RsaKey> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let public = Rs256Key::new(n, e)?;
    Some(RsaKey {
        kid,
        n: n.to_vec(),
        e: e.to_vec(),
        public,
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or(&[])
}

/// Base64url, padding optional (JWKS in the wild sometimes pads).
fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// The public JWK (`{"kty":"RSA","kid":..,"n":..,"e":..,"alg":"RS256","use":"sig"}`) of a PEM
/// RSA private key, PKCS#1 (`BEGIN RSA PRIVATE KEY`) or unencrypted PKCS#8
/// (`BEGIN PRIVATE KEY`). Literal `\n` sequences (a PEM squeezed into one env-var line) are
/// accepted. Encrypted keys are refused.
pub fn jwk_from_private_pem(pem: &str, kid: &str) -> Result<String, String> {
    let (n, e) = rsa_public_components_from_private_pem(pem)?;
    let key = rsa_key(Some(kid.to_string()), &n, &e)
        .ok_or_else(|| "not a usable RSA key (2048..=4096 bits, valid exponent)".to_string())?;
    Ok(jwk_value(key.kid.as_deref(), &key.n, &key.e).to_string())
}

/// A JWKS document for the gateway's own keys, the way the gateway's `LocalAuthProvider`
/// names them: kid `<service_name>_signing_key` and `<service_name>_validation_key`. Empty
/// or absent PEMs are left out (the gateway's defaults are `""`). `Ok(None)` when both are
/// absent.
pub fn self_signed_jwks(
    service_name: &str,
    signing_pem: Option<&str>,
    validation_pem: Option<&str>,
) -> Result<Option<String>, String> {
    let mut keys = Vec::new();
    for (pem, suffix) in [
        (signing_pem, "signing_key"),
        (validation_pem, "validation_key"),
    ] {
        let Some(pem) = pem.filter(|p| !p.trim().is_empty()) else {
            continue;
        };
        let jwk = jwk_from_private_pem(pem, &format!("{service_name}_{suffix}"))
            .map_err(|e| format!("{suffix}: {e}"))?;
        let v: Value = serde_json::from_str(&jwk).map_err(|e| e.to_string())?;
        keys.push(v);
    }
    if keys.is_empty() {
        return Ok(None);
    }
    Ok(Some(serde_json::json!({ "keys": keys }).to_string()))
}

fn rsa_public_components_from_private_pem(pem: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    let unescaped;
    let mut text = pem.trim();
    if !text.contains('\n') && text.contains("\\n") {
        unescaped = text.replace("\\n", "\n");
        text = unescaped.trim();
    }
    let (label, der) = pem_decode(text)?;
    let pkcs1: &[u8] = match label {
        "RSA PRIVATE KEY" => &der,
        "PRIVATE KEY" => pkcs8_rsa_private_key(&der).ok_or("bad PKCS#8 RSA private key")?,
        "ENCRYPTED PRIVATE KEY" => return Err("encrypted private keys are not supported".into()),
        other => return Err(format!("unsupported PEM label {other:?}")),
    };
    pkcs1_public_components(pkcs1)
        .map(|(n, e)| (n.to_vec(), e.to_vec()))
        .ok_or_else(|| "bad PKCS#1 RSA private key".to_string())
}

/// Minimal RFC 7468 PEM: `-----BEGIN <label>-----`, base64 lines, `-----END <label>-----`.
/// Encapsulated headers (legacy OpenSSL encryption, `Proc-Type: ...`) are refused.
fn pem_decode(text: &str) -> Result<(&str, Vec<u8>), String> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let rest = text.strip_prefix(BEGIN).ok_or("not a PEM document")?;
    let (label, rest) = rest.split_once(DASHES).ok_or("not a PEM document")?;
    let end_marker = format!("-----END {label}-----");
    let (body, _) = rest.split_once(&end_marker).ok_or("PEM end line missing")?;
    if body.contains(':') {
        return Err("encrypted private keys are not supported".into());
    }
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "PEM body is not base64".to_string())?;
    Ok((label, der))
}

/// One DER element at the start of `input`: (tag, contents, rest). Definite lengths only,
/// at most 4 length bytes; every slice is bounds-checked.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (len_bytes, rest) = rest.split_at_checked(count)?;
        let len = len_bytes.iter().try_fold(0usize, |acc, &b| {
            acc.checked_mul(256)?.checked_add(usize::from(b))
        })?;
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

const DER_INTEGER: u8 = 0x02;
const DER_OCTET_STRING: u8 = 0x04;
const DER_OID: u8 = 0x06;
const DER_SEQUENCE: u8 = 0x30;
/// DER contents of OID 1.2.840.113549.1.1.1 (rsaEncryption).
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// One DER element that must carry `tag`: (its content, what follows it).
fn der_expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, content, rest) = der_tlv(input)?;
    (found == tag).then_some((content, rest))
}

/// PKCS#1 `RSAPrivateKey ::= SEQUENCE { version INTEGER, modulus INTEGER,
/// publicExponent INTEGER, ... }` → (modulus, publicExponent), big-endian.
fn pkcs1_public_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (seq, _) = der_expect(der, DER_SEQUENCE)?;
    let (_version, rest) = der_expect(seq, DER_INTEGER)?;
    let (n, rest) = der_expect(rest, DER_INTEGER)?;
    let (e, _) = der_expect(rest, DER_INTEGER)?;
    Some((n, e))
}

/// PKCS#8 `PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm SEQUENCE { OID, params },
/// privateKey OCTET STRING, ... }` → the PKCS#1 key inside, if the algorithm is RSA.
fn pkcs8_rsa_private_key(der: &[u8]) -> Option<&[u8]> {
    let (seq, _) = der_expect(der, DER_SEQUENCE)?;
    let (_version, rest) = der_expect(seq, DER_INTEGER)?;
    let (alg, rest) = der_expect(rest, DER_SEQUENCE)?;
    let (oid, _) = der_expect(alg, DER_OID)?;
    if oid != RSA_ENCRYPTION_OID {
        return None;
    }
    let (key, _) = der_expect(rest, DER_OCTET_STRING)?;
    Some(key)
}

/// The `max-age` directive of a `Cache-Control` header (seconds), if any. Directive names
/// are case-insensitive; a quoted value is accepted; an out-of-range value saturates.
/// Other directives (`no-cache`, `s-maxage`, ...) are ignored.
pub fn max_age(cache_control: Option<&str>) -> Option<u64> {
    for directive in cache_control?.split(',') {
        let mut kv = directive.splitn(2, '=');
        let name = kv.next().unwrap_or("").trim();
        if !name.eq_ignore_ascii_case("max-age") {
            continue;
        }
        let value = kv.next()?.trim().trim_matches('"');
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return Some(value.parse::<u64>().unwrap_or(u64::MAX));
    }
    None
}

/// When to (re)fetch the JWKS. A pure state machine; times are host seconds.
///
/// - After a successful fetch the next one is due after the document's `max-age`, clamped to
///   `[min_interval, max_age_cap]` (no `max-age` → `max_age_cap`). GitLab sends
///   `max-age=86400`, so with the default cap of 3600 s keys are refreshed hourly.
/// - After a failure, retry with backoff 5, 10, 20, 40, 60, 60, ... seconds.
/// - A token with an unknown `kid` may trigger an early fetch, at most one per
///   `min_interval` (15 s by default, so ≤ 4 per minute however many such tokens arrive).
///   Any fetch (scheduled or not) counts: an unknown kid right after a fetch does not
///   trigger another.
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    min_interval: u64,
    max_age_cap: u64,
    /// Start of the last fetch attempt (any kind).
    last_attempt: Option<u64>,
    consecutive_failures: u32,
    next_at: u64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy::new(15, 3600)
    }
}

impl RefreshPolicy {
    /// First retry delay after a failure.
    pub const BACKOFF_START_SECS: u64 = 5;
    /// Largest retry delay after failures.
    pub const BACKOFF_MAX_SECS: u64 = 60;

    /// `min_interval_secs` (default 15) bounds unknown-kid refreshes and short `max-age`s;
    /// `max_age_cap_secs` (default 3600) is the longest time between two refreshes.
    pub fn new(min_interval_secs: u64, max_age_cap_secs: u64) -> Self {
        RefreshPolicy {
            min_interval: min_interval_secs,
            max_age_cap: max_age_cap_secs.max(min_interval_secs),
            last_attempt: None,
            consecutive_failures: 0,
            next_at: 0,
        }
    }

    /// When the next refresh is due for a document fetched at `fetched_at` with this
    /// `max-age`.
    pub fn next_refresh_at(&self, fetched_at: u64, max_age: Option<u64>) -> u64 {
        let ttl = max_age
            .unwrap_or(self.max_age_cap)
            .clamp(self.min_interval, self.max_age_cap);
        fetched_at.saturating_add(ttl)
    }

    /// Time at which the next scheduled fetch is due (0 before the first fetch).
    pub fn next_at(&self) -> u64 {
        self.next_at
    }

    /// `true` when a scheduled fetch is due.
    pub fn due(&self, now: u64) -> bool {
        now >= self.next_at
    }

    /// Record a successful fetch at `now`; returns when the next one is due.
    pub fn on_success(&mut self, now: u64, max_age: Option<u64>) -> u64 {
        self.last_attempt = Some(now);
        self.consecutive_failures = 0;
        self.next_at = self.next_refresh_at(now, max_age);
        self.next_at
    }

    /// Record a failed fetch at `now`; returns when to retry (5, 10, 20, 40, 60, 60 ... s).
    pub fn on_failure(&mut self, now: u64) -> u64 {
        self.last_attempt = Some(now);
        let shift = self.consecutive_failures.min(8);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let delay = Self::BACKOFF_START_SECS
            .saturating_mul(1u64 << shift)
            .min(Self::BACKOFF_MAX_SECS);
        self.next_at = now.saturating_add(delay);
        self.next_at
    }

    /// Number of failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// A token named an unknown `kid`: may the host fetch now? `true` at most once per
    /// `min_interval` (and not within `min_interval` of any other fetch). When `true`, the
    /// attempt is recorded; report its outcome with [`on_success`](Self::on_success) /
    /// [`on_failure`](Self::on_failure).
    pub fn allow_unknown_kid_refresh(&mut self, now: u64) -> bool {
        if let Some(last) = self.last_attempt {
            if now < last.saturating_add(self.min_interval) {
                return false;
            }
        }
        self.last_attempt = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const JWKS: &str = include_str!("testdata/jwks.json");
    const KEY1_PEM: &str = include_str!("testdata/key1_pkcs1.pem");
    const KEY2_PEM: &str = include_str!("testdata/key2_pkcs8.pem");

    #[test]
    fn discovery_url_like_urljoin() {
        assert_eq!(
            discovery_url("https://gitlab.example.com"),
            "https://gitlab.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://gitlab.example.com/"),
            "https://gitlab.example.com/.well-known/openid-configuration"
        );
        // Relative URL root is dropped, like Python's urljoin with an absolute path.
        assert_eq!(
            discovery_url("https://example.com/gitlab/"),
            "https://example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("http://gitlab:8080/x?y=1#z"),
            "http://gitlab:8080/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://gitlab.example.com?x"),
            "https://gitlab.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("gitlab.example.com"),
            "/.well-known/openid-configuration"
        );
        assert_eq!(discovery_url(""), "/.well-known/openid-configuration");
    }

    #[test]
    fn jwks_uri_parsing() {
        let body =
            br#"{"issuer":"https://gl","jwks_uri":"https://gl.example/oauth/discovery/keys"}"#;
        assert_eq!(
            jwks_uri_from_discovery(body).unwrap(),
            "https://gl.example/oauth/discovery/keys"
        );
        assert!(jwks_uri_from_discovery(b"{}").is_err());
        assert!(jwks_uri_from_discovery(b"not json").is_err());
        assert!(jwks_uri_from_discovery(br#"{"jwks_uri":5}"#).is_err());
        assert!(jwks_uri_from_discovery(br#"{"jwks_uri":"file:///etc/passwd"}"#).is_err());
        assert!(jwks_uri_from_discovery(br#"{"jwks_uri":""}"#).is_err());
        assert!(jwks_uri_from_discovery(br#"["jwks_uri"]"#).is_err());
        assert_eq!(
            jwks_uri_from_discovery(br#"{"jwks_uri":"HTTP://x/k"}"#).unwrap(),
            "HTTP://x/k"
        );
    }

    #[test]
    fn http_target_split() {
        let t = http_target("https://gl.example:8443/oauth/discovery/keys?a=1#frag").unwrap();
        assert_eq!(
            t,
            HttpTarget {
                https: true,
                authority: "gl.example:8443".into(),
                path: "/oauth/discovery/keys?a=1".into()
            }
        );
        let t = http_target("http://user:pw@gl").unwrap();
        assert_eq!(
            (t.https, t.authority.as_str(), t.path.as_str()),
            (false, "gl", "/")
        );
        let t = http_target("http://gl?x=1").unwrap();
        assert_eq!(t.path, "/?x=1");
        assert!(http_target("ftp://x/").is_err());
        assert!(http_target("https:///path").is_err());
        assert!(http_target("").is_err());
    }

    #[test]
    fn keyset_from_test_jwks() {
        let set = KeySet::from_jwks(&[JWKS.as_bytes()]).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.kids(), vec!["test-key-1", "test-key-2"]);
        assert_eq!(set.skipped(), 1); // the EC key
        assert!(set.get("test-key-1").is_some());
        assert!(set.get("test-ec").is_none());
        assert!(set.get("nope").is_none());
        assert_eq!(set.len(), 2);
        assert!(set.single().is_none());
        assert!(!set.is_empty());
        assert!(format!("{set:?}").contains("test-key-1"));
    }

    #[test]
    fn keyset_skips_unusable_keys() {
        let v: Value = serde_json::from_str(JWKS).unwrap();
        let good = v["keys"][0].clone();
        let mut variants = Vec::new();
        let mut push = |f: &dyn Fn(&mut Value)| {
            let mut k = good.clone();
            f(&mut k);
            variants.push(k);
        };
        push(&|k| k["use"] = "enc".into());
        push(&|k| k["alg"] = "RS512".into());
        push(&|k| k["alg"] = "HS256".into());
        push(&|k| k["kty"] = "oct".into());
        push(&|k| k["kid"] = 7.into());
        push(&|k| k["n"] = "!!!".into());
        push(&|k| k["n"] = "AQAB".into()); // tiny modulus
        push(&|k| k["e"] = "AQA".into()); // even exponent (256)
        push(&|k| k["e"] = "Aw".into()); // e = 3: allowed by rsa? (it is >= MIN_PUB_EXPONENT 2, odd)
        push(&|k| {
            k.as_object_mut().unwrap().remove("n");
        });
        // 1024-bit modulus (too small)
        push(&|k| k["n"] = URL_SAFE_NO_PAD.encode([0xc3u8; 128]).into());
        // 8192-bit modulus (over rs256::MAX_BITS)
        push(&|k| k["n"] = URL_SAFE_NO_PAD.encode([0xc3u8; 1024]).into());
        variants.push(Value::from("not an object"));
        let doc = serde_json::json!({ "keys": variants }).to_string();
        let err = KeySet::from_jwks(&[doc.as_bytes()]);
        // e = 3 is a valid RSA public exponent; everything else must be skipped.
        let set = err.unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.skipped(), 12);
    }

    #[test]
    fn keyset_accepts_missing_optional_fields_and_padding() {
        let v: Value = serde_json::from_str(JWKS).unwrap();
        let mut k = v["keys"][0].clone();
        let o = k.as_object_mut().unwrap();
        o.remove("use");
        o.remove("alg");
        o.remove("kid");
        let n = o["n"].as_str().unwrap().to_string();
        o.insert("n".into(), Value::from(format!("AA{n}"))); // leading zero byte after decode? keep valid b64
        let doc = serde_json::json!({ "keys": [k] }).to_string();
        // "AA" + n shifts the base64 alignment; it must simply be skipped or accepted, never panic.
        let _ = KeySet::from_jwks(&[doc.as_bytes()]);

        let mut k = v["keys"][1].clone();
        let o = k.as_object_mut().unwrap();
        o.remove("kid");
        o.insert("e".into(), Value::from("AQAB=="));
        let doc = serde_json::json!({ "keys": [k] }).to_string();
        let set = KeySet::from_jwks(&[doc.as_bytes()]).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.kids().is_empty());
        assert!(set.to_jwks_json().contains("\"e\":\"AQAB\""));
        assert!(!set.to_jwks_json().contains("kid"));
    }

    #[test]
    fn keyset_errors_and_lenient_merge() {
        assert!(KeySet::from_jwks(&[]).is_err());
        assert!(KeySet::from_jwks(&[b"{\"keys\":[]}"]).is_err());
        assert!(KeySet::from_jwks(&[b"<html>"]).is_err());
        assert!(KeySet::from_jwks(&[b"{\"keys\":{}}"]).is_err());
        // A broken second provider does not hide the first.
        let set = KeySet::from_jwks(&[JWKS.as_bytes(), b"<html>502</html>"]).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.bad_documents(), 1);
        assert!(KeySet::empty().is_empty());
        assert!(KeySet::empty().get("test-key-1").is_none());
    }

    #[test]
    fn duplicate_kids_keep_first_and_cap() {
        let set = KeySet::from_jwks(&[JWKS.as_bytes(), JWKS.as_bytes()]).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.skipped(), 4); // 2 EC + 2 duplicates

        let v: Value = serde_json::from_str(JWKS).unwrap();
        let keys: Vec<Value> = (0..100)
            .map(|i| {
                let mut k = v["keys"][0].clone();
                k["kid"] = format!("k{i}").into();
                k
            })
            .collect();
        let doc = serde_json::json!({ "keys": keys }).to_string();
        let set = KeySet::from_jwks(&[doc.as_bytes()]).unwrap();
        assert_eq!(set.len(), MAX_KEYS);
        assert_eq!(set.skipped(), 100 - MAX_KEYS);
    }

    #[test]
    fn merge_is_canonical_and_round_trips() {
        let local = self_signed_jwks("gitlab-ai-gateway", Some(KEY1_PEM), None)
            .unwrap()
            .unwrap();
        let merged = merge_jwks_json(&[JWKS.as_bytes(), local.as_bytes()]).unwrap();
        let v: Value = serde_json::from_str(&merged).unwrap();
        let keys = v["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        for k in keys {
            let fields: Vec<&String> = k.as_object().unwrap().keys().collect();
            assert_eq!(fields.len(), 6, "{k}");
            assert_eq!(k["kty"], "RSA");
            assert_eq!(k["alg"], "RS256");
            assert_eq!(k["use"], "sig");
        }
        // Parsing the canonical string gives the same set, and re-merging is a fixed point.
        let set = KeySet::from_jwks(&[merged.as_bytes()]).unwrap();
        assert_eq!(
            set.kids(),
            vec!["test-key-1", "test-key-2", SELF_SIGNED_SIGNING_KID]
        );
        assert_eq!(merge_jwks_json(&[merged.as_bytes()]).unwrap(), merged);
        // Same public key as the JWKS entry for key 1.
        assert_eq!(keys[2]["n"], keys[0]["n"]);
        assert!(merge_jwks_json(&[b"{}"]).is_err());
    }

    #[test]
    fn jwk_from_pem_pkcs1_and_pkcs8() {
        let v: Value = serde_json::from_str(JWKS).unwrap();
        let j1: Value =
            serde_json::from_str(&jwk_from_private_pem(KEY1_PEM, "a\"b").unwrap()).unwrap();
        assert_eq!(j1["n"], v["keys"][0]["n"]);
        assert_eq!(j1["e"], "AQAB");
        assert_eq!(j1["kid"], "a\"b");
        let j2: Value =
            serde_json::from_str(&jwk_from_private_pem(KEY2_PEM, "k2").unwrap()).unwrap();
        assert_eq!(j2["n"], v["keys"][1]["n"]);
        // One-line env var with literal \n.
        let squeezed = KEY2_PEM.trim().replace('\n', "\\n");
        let j3: Value =
            serde_json::from_str(&jwk_from_private_pem(&squeezed, "k2").unwrap()).unwrap();
        assert_eq!(j3["n"], j2["n"]);
    }

    #[test]
    fn jwk_from_pem_rejects_garbage() {
        assert!(jwk_from_private_pem("", "k").is_err());
        assert!(jwk_from_private_pem("hello", "k").is_err());
        let public = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(jwk_from_private_pem(public, "k").is_err());
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(jwk_from_private_pem(enc, "k")
            .unwrap_err()
            .contains("encrypted"));
        let bad_der = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(jwk_from_private_pem(bad_der, "k").is_err());
        let bad_pk8 = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(jwk_from_private_pem(bad_pk8, "k").is_err());
        // Truncated real key.
        let cut = &KEY1_PEM[..KEY1_PEM.len() / 2];
        assert!(jwk_from_private_pem(cut, "k").is_err());
    }

    #[test]
    fn der_reader_bounds() {
        assert_eq!(der_tlv(&[]), None);
        assert_eq!(der_tlv(&[0x02]), None);
        assert_eq!(der_tlv(&[0x02, 0x01]), None); // content missing
        assert_eq!(
            der_tlv(&[0x02, 0x01, 0x05, 0xff]),
            Some((0x02, &[5u8][..], &[0xffu8][..]))
        );
        assert_eq!(der_tlv(&[0x30, 0x80, 0x00, 0x00]), None); // indefinite length
        assert_eq!(der_tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]), None); // 5 length bytes
        assert_eq!(der_tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None); // longer than input
        assert_eq!(der_tlv(&[0x30, 0x82, 0x00]), None); // length bytes cut
        let long = [&[0x04u8, 0x81, 0x80][..], &[7u8; 0x80][..]].concat();
        assert_eq!(der_tlv(&long).map(|t| t.1.len()), Some(0x80));
        assert_eq!(pkcs1_public_components(&[0x30, 0x00]), None);
        assert_eq!(pkcs1_public_components(&[0x31, 0x00]), None);
        assert_eq!(pkcs8_rsa_private_key(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
        // A PKCS#8 EC key (OID 1.2.840.10045.2.1) is refused.
        let ec = [
            0x30, 0x13, 0x02, 0x01, 0x00, 0x30, 0x09, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
            0x02, 0x01, 0x04, 0x03, 0x30, 0x01, 0x00,
        ];
        assert_eq!(pkcs8_rsa_private_key(&ec), None);
        // Every prefix of a real key fails cleanly.
        let (_, der) = pem_decode(KEY1_PEM.trim()).unwrap();
        for cut in 0..64 {
            assert!(pkcs1_public_components(&der[..cut]).is_none());
        }
    }

    #[test]
    fn pem_decoding() {
        let (label, der) = pem_decode(KEY2_PEM.trim()).unwrap();
        assert_eq!(label, "PRIVATE KEY");
        assert!(pkcs8_rsa_private_key(&der).is_some());
        let crlf = KEY1_PEM.replace('\n', "\r\n");
        assert!(jwk_from_private_pem(&crlf, "k").is_ok());
        assert!(pem_decode("-----BEGIN X-----\nAAAA\n").is_err()); // no end line
        assert!(pem_decode("-----BEGIN X-----\n@@@@\n-----END X-----").is_err());
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----";
        assert!(jwk_from_private_pem(legacy, "k")
            .unwrap_err()
            .contains("encrypted"));
        // Mismatched END label.
        assert!(pem_decode("-----BEGIN A-----\nAAAA\n-----END B-----").is_err());
    }

    #[test]
    fn self_signed_jwks_kids() {
        let doc = self_signed_jwks("gitlab-ai-gateway", Some(KEY1_PEM), Some(KEY2_PEM))
            .unwrap()
            .unwrap();
        let set = KeySet::from_jwks(&[doc.as_bytes()]).unwrap();
        assert_eq!(
            set.kids(),
            vec![SELF_SIGNED_SIGNING_KID, SELF_SIGNED_VALIDATION_KID]
        );
        assert_eq!(self_signed_jwks("x", None, Some("  ")).unwrap(), None);
        assert!(self_signed_jwks("x", Some("junk"), None)
            .unwrap_err()
            .starts_with("signing_key"));
    }

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age(Some("max-age=86400, public, must-revalidate, no-transform")),
            Some(86400)
        );
        assert_eq!(max_age(Some("public, MAX-AGE = 60")), Some(60));
        assert_eq!(max_age(Some("max-age=\"30\"")), Some(30));
        assert_eq!(max_age(Some("s-maxage=10")), None);
        assert_eq!(max_age(Some("no-cache")), None);
        assert_eq!(max_age(Some("max-age=-1")), None);
        assert_eq!(max_age(Some("max-age=1e3")), None);
        assert_eq!(max_age(Some("max-age=")), None);
        assert_eq!(max_age(Some("max-age")), None);
        assert_eq!(
            max_age(Some("max-age=99999999999999999999999")),
            Some(u64::MAX)
        );
        assert_eq!(max_age(Some("")), None);
        assert_eq!(max_age(None), None);
    }

    #[test]
    fn refresh_schedule() {
        let mut p = RefreshPolicy::default();
        assert!(p.due(0));
        assert_eq!(p.next_refresh_at(1000, Some(86400)), 1000 + 3600);
        assert_eq!(p.next_refresh_at(1000, Some(600)), 1600);
        assert_eq!(p.next_refresh_at(1000, Some(0)), 1015);
        assert_eq!(p.next_refresh_at(1000, None), 4600);
        assert_eq!(p.next_refresh_at(u64::MAX - 1, None), u64::MAX);
        assert_eq!(p.on_success(1000, Some(86400)), 4600);
        assert!(!p.due(4599));
        assert!(p.due(4600));
        assert_eq!(p.next_at(), 4600);
        // Failures back off 5, 10, 20, 40, 60, 60.
        let mut t = 5000;
        let mut delays = Vec::new();
        for _ in 0..6 {
            let at = p.on_failure(t);
            delays.push(at - t);
            t = at;
        }
        assert_eq!(delays, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(p.consecutive_failures(), 6);
        for _ in 0..100 {
            p.on_failure(t);
        }
        assert_eq!(p.on_failure(t) - t, 60);
        p.on_success(t, None);
        assert_eq!(p.consecutive_failures(), 0);
        assert_eq!(p.on_failure(t) - t, 5);
        // Cap below min interval is raised to it.
        let p = RefreshPolicy::new(30, 10);
        assert_eq!(p.next_refresh_at(0, None), 30);
    }

    #[test]
    fn unknown_kid_flood_is_rate_limited() {
        let mut p = RefreshPolicy::default();
        p.on_success(0, Some(86400));
        // 1000 unknown-kid tokens per second for 10 minutes.
        let mut allowed = Vec::new();
        for sec in 1..=600u64 {
            for _ in 0..1000 {
                if p.allow_unknown_kid_refresh(sec) {
                    allowed.push(sec);
                }
            }
        }
        // At most one per 15 s: ≤ 4 per minute, 40 in 10 minutes.
        assert_eq!(allowed.len(), 40);
        for w in allowed.windows(2) {
            assert!(w[1] - w[0] >= 15);
        }
        for minute in 0..10u64 {
            let n = allowed.iter().filter(|&&s| s / 60 == minute).count();
            assert!(n <= 4, "minute {minute}: {n}");
        }
    }

    #[test]
    fn unknown_kid_refresh_respects_other_fetches() {
        let mut p = RefreshPolicy::default();
        assert!(p.allow_unknown_kid_refresh(100)); // nothing fetched yet
        assert!(!p.allow_unknown_kid_refresh(100));
        p.on_failure(101);
        assert!(!p.allow_unknown_kid_refresh(110));
        assert!(p.allow_unknown_kid_refresh(116));
        p.on_success(117, None);
        assert!(!p.allow_unknown_kid_refresh(131));
        assert!(p.allow_unknown_kid_refresh(132));
    }
}
