//! Independent AWS Signature Version 4 *verifier* (server side), written from
//! the AWS SigV4 specification, not from the `aws-sigv4` crate the filter uses,
//! so the two implementations check each other.
//!
//! Contract (see `docs/bedrock-contract.md#errors`, `#sigv4`, `#sigv4-test-vectors`):
//! - canonical request = method, canonical URI, canonical query string,
//!   canonical headers (exactly the `SignedHeaders`, lower-cased names, values
//!   trimmed with runs of spaces collapsed, repeated headers joined by `,`),
//!   the signed-headers line and the hex SHA-256 of the body;
//! - canonical URI for non-S3 services = every path segment *as received on the
//!   wire* URI-encoded again (`%3A` on the wire becomes `%253A`), optionally
//!   after RFC 3986 dot-segment removal and empty-segment collapsing
//!   (`normalize`, which is what Bedrock does);
//! - canonical query = names and values percent-decoded once, re-encoded with
//!   the unreserved set, sorted by name then value;
//! - string to sign = `AWS4-HMAC-SHA256\n<x-amz-date>\n<scope>\n<hex sha256(creq)>`;
//! - key = HMAC chain `"AWS4"+secret` → date → region → service → `aws4_request`.
//!
//! [`Verifier::verify`] adds the policy checks Bedrock applies (known access key,
//! service `bedrock`, region, 15 minute clock window, `host` signed, session
//! token signed) and reports failures as [`SigError`] carrying the Bedrock error
//! type and message. [`Verifier::verify_with`] also knows temporary credentials
//! ([`KeyLookup::Temporary`]): the session token must match (else
//! `UnrecognizedClientException`) and be unexpired (else `ExpiredTokenException`).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm SigV4 header signing uses.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Bedrock's text for a signature mismatch (403 `InvalidSignatureException`).
pub const MISMATCH_MESSAGE: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// Bedrock's text for an unknown access key (403 `UnrecognizedClientException`).
pub const UNRECOGNIZED_MESSAGE: &str = "The security token included in the request is invalid.";

/// Bedrock's text for expired temporary credentials (403 `ExpiredTokenException`).
pub const EXPIRED_TOKEN_MESSAGE: &str = "The security token included in the request is expired";

/// What the server knows about an access key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLookup {
    /// Not issued: `UnrecognizedClientException`.
    Unknown,
    /// A long-term key: any (or no) `X-Amz-Security-Token` is ignored, like AWS.
    Static { secret: String },
    /// Temporary credentials (STS / container endpoint / IMDS): the request must carry exactly
    /// `session_token` in `X-Amz-Security-Token`, before `expires_at` (Unix seconds).
    Temporary {
        secret: String,
        session_token: String,
        expires_at: i64,
    },
}

/// One request as seen on the wire, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct SigningInput<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// Path exactly as on the wire (still percent-encoded), without the query.
    pub raw_path: &'a str,
    /// Query exactly as on the wire, without the leading `?` (may be empty).
    pub raw_query: &'a str,
    /// Headers in arrival order; names in any case, values raw.
    pub headers: &'a [(String, String)],
    /// The request body.
    pub body: &'a [u8],
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    /// `date/region/service/terminator`.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.date, self.region, self.service, self.terminator
        )
    }
}

/// Error classes Bedrock (Coral) returns for authentication problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigErrorKind {
    /// No `Authorization` header at all.
    MissingAuthenticationToken,
    /// Malformed `Authorization` header or missing `X-Amz-Date`.
    IncompleteSignature,
    /// Unknown access key id, or a temporary key with a missing or wrong session token.
    UnrecognizedClient,
    /// Temporary credentials past their expiration.
    ExpiredToken,
    /// Bad scope, clock skew, unsigned mandatory header or signature mismatch.
    InvalidSignature,
}

impl SigErrorKind {
    /// Value for the `x-amzn-errortype` prefix and for logs.
    pub fn error_type(self) -> &'static str {
        match self {
            SigErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            SigErrorKind::IncompleteSignature => "IncompleteSignatureException",
            SigErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            SigErrorKind::ExpiredToken => "ExpiredTokenException",
            SigErrorKind::InvalidSignature => "InvalidSignatureException",
        }
    }

    /// HTTP status Bedrock uses (all authentication failures are 403).
    pub fn status(self) -> u16 {
        403
    }
}

/// A verification failure, with what the server computed (for debugging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigError {
    pub kind: SigErrorKind,
    pub message: String,
    /// The canonical request the server computed, when it got that far.
    pub canonical_request: Option<String>,
    /// The string to sign the server computed, when it got that far.
    pub string_to_sign: Option<String>,
}

impl SigError {
    fn new(kind: SigErrorKind, message: impl Into<String>) -> Self {
        SigError {
            kind,
            message: message.into(),
            canonical_request: None,
            string_to_sign: None,
        }
    }
}

/// A successful verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub region: String,
    pub signed_headers: Vec<String>,
    pub canonical_request: String,
}

/// Server-side verification policy and credentials.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// access key id → secret access key.
    pub credentials: HashMap<String, String>,
    /// Required scope region; `None` accepts any region.
    pub region: Option<String>,
    /// Required scope service (`bedrock` for Bedrock runtime).
    pub service: String,
    /// Allowed distance between `X-Amz-Date` and the server clock.
    pub max_skew_secs: i64,
    /// Apply dot-segment removal / empty-segment collapsing to the path.
    pub normalize: bool,
    /// Reject requests whose `X-Amz-Security-Token` is present but unsigned.
    pub require_signed_token: bool,
}

impl Verifier {
    /// Bedrock policy: service `bedrock`, 15 minute window, normalised paths,
    /// session token must be signed.
    pub fn bedrock(credentials: HashMap<String, String>, region: Option<String>) -> Self {
        Verifier {
            credentials,
            region,
            service: "bedrock".to_string(),
            max_skew_secs: 15 * 60,
            normalize: true,
            require_signed_token: true,
        }
    }

    /// Verify `input` at server time `now` (seconds since the Unix epoch) against the static
    /// `credentials` map.
    pub fn verify(&self, input: &SigningInput<'_>, now: i64) -> Result<Verified, SigError> {
        self.verify_with(input, now, &|akid| match self.credentials.get(akid) {
            Some(secret) => KeyLookup::Static {
                secret: secret.clone(),
            },
            None => KeyLookup::Unknown,
        })
    }

    /// Like [`Verifier::verify`], with the access key looked up by `lookup` (which may know
    /// temporary credentials; `self.credentials` is not consulted).
    pub fn verify_with(
        &self,
        input: &SigningInput<'_>,
        now: i64,
        lookup: &dyn Fn(&str) -> KeyLookup,
    ) -> Result<Verified, SigError> {
        let auth_value = header_values(input.headers, "authorization");
        let auth_value = match auth_value.first() {
            Some(v) => v.trim(),
            None => {
                return Err(SigError::new(
                    SigErrorKind::MissingAuthenticationToken,
                    "Missing Authentication Token",
                ))
            }
        };
        let auth = parse_authorization(auth_value)?;

        let amz_date = header_values(input.headers, "x-amz-date");
        let amz_date = match amz_date.first() {
            Some(v) => v.trim().to_string(),
            None => {
                return Err(SigError::new(
                    SigErrorKind::IncompleteSignature,
                    format!("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={auth_value}"),
                ))
            }
        };

        let secret = match lookup(&auth.access_key_id) {
            KeyLookup::Static { secret } => secret,
            KeyLookup::Temporary {
                secret,
                session_token,
                expires_at,
            } => {
                let sent = header_values(input.headers, "x-amz-security-token");
                let matches = sent.len() == 1
                    && constant_time_eq(sent[0].trim().as_bytes(), session_token.as_bytes());
                if !matches {
                    return Err(SigError::new(
                        SigErrorKind::UnrecognizedClient,
                        UNRECOGNIZED_MESSAGE,
                    ));
                }
                if now >= expires_at {
                    return Err(SigError::new(
                        SigErrorKind::ExpiredToken,
                        EXPIRED_TOKEN_MESSAGE,
                    ));
                }
                secret
            }
            KeyLookup::Unknown => {
                return Err(SigError::new(
                    SigErrorKind::UnrecognizedClient,
                    UNRECOGNIZED_MESSAGE,
                ))
            }
        };

        if auth.service != self.service {
            return Err(SigError::new(
                SigErrorKind::InvalidSignature,
                format!(
                    "Credential should be scoped to correct service: '{}'. ",
                    self.service
                ),
            ));
        }
        if let Some(region) = &self.region {
            if &auth.region != region {
                return Err(SigError::new(
                    SigErrorKind::InvalidSignature,
                    format!(
                        "Credential should be scoped to a valid region, not '{}'. ",
                        auth.region
                    ),
                ));
            }
        }
        if auth.terminator != "aws4_request" {
            return Err(SigError::new(
                SigErrorKind::InvalidSignature,
                format!(
                    "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
                    auth.terminator
                ),
            ));
        }

        let request_time = match parse_amz_date(&amz_date) {
            Some(t) => t,
            None => {
                return Err(SigError::new(
                    SigErrorKind::IncompleteSignature,
                    format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"),
                ))
            }
        };
        let date_part = amz_date.get(..8).unwrap_or("");
        if auth.date != date_part {
            return Err(SigError::new(
                SigErrorKind::InvalidSignature,
                format!(
                    "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
                    auth.date, date_part, amz_date
                ),
            ));
        }
        let minutes = self.max_skew_secs / 60;
        if request_time < now - self.max_skew_secs {
            return Err(SigError::new(
                SigErrorKind::InvalidSignature,
                format!(
                    "Signature expired: {} is now earlier than {} ({} - {} min.)",
                    amz_date,
                    format_amz_date(now - self.max_skew_secs),
                    format_amz_date(now),
                    minutes
                ),
            ));
        }
        if request_time > now + self.max_skew_secs {
            return Err(SigError::new(
                SigErrorKind::InvalidSignature,
                format!(
                    "Signature not yet current: {} is still later than {} ({} + {} min.)",
                    amz_date,
                    format_amz_date(now + self.max_skew_secs),
                    format_amz_date(now),
                    minutes
                ),
            ));
        }

        if !auth.signed_headers.iter().any(|h| h == "host") {
            return Err(SigError::new(
                SigErrorKind::InvalidSignature,
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }
        if self.require_signed_token
            && !header_values(input.headers, "x-amz-security-token").is_empty()
            && !auth
                .signed_headers
                .iter()
                .any(|h| h == "x-amz-security-token")
        {
            return Err(SigError::new(
                SigErrorKind::InvalidSignature,
                "'X-Amz-Security-Token' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }

        let payload_hash = hex_sha256(input.body);
        let creq = canonical_request(input, &auth.signed_headers, self.normalize, &payload_hash);
        let sts = string_to_sign(&amz_date, &auth.scope(), &creq);
        let key = signing_key(&secret, &auth.date, &auth.region, &auth.service);
        let expected = signature(&key, &sts);
        if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
            return Err(SigError {
                kind: SigErrorKind::InvalidSignature,
                message: MISMATCH_MESSAGE.to_string(),
                canonical_request: Some(creq),
                string_to_sign: Some(sts),
            });
        }
        Ok(Verified {
            access_key_id: auth.access_key_id,
            region: auth.region,
            signed_headers: auth.signed_headers,
            canonical_request: creq,
        })
    }
}

/// Parse `AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigError> {
    let incomplete = |what: &str| {
        SigError::new(
            SigErrorKind::IncompleteSignature,
            format!("Authorization header requires '{what}' parameter. Authorization={value}"),
        )
    };
    let (algorithm, rest) = match value.trim().split_once(' ') {
        Some(x) => x,
        None => return Err(incomplete("Credential")),
    };
    if algorithm != ALGORITHM {
        return Err(SigError::new(
            SigErrorKind::IncompleteSignature,
            format!("Unsupported AWS 'algorithm': '{algorithm}'"),
        ));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = match part.split_once('=') {
            Some(x) => x,
            None => {
                return Err(SigError::new(
                    SigErrorKind::IncompleteSignature,
                    format!("Authorization header requires each component to be of the form key=value. Authorization={value}"),
                ))
            }
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed_headers = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;

    // The access key id itself never contains '/', so split from the left.
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts.iter().any(|p| p.is_empty()) {
        return Err(SigError::new(
            SigErrorKind::IncompleteSignature,
            format!("Credential should be scoped to a valid region, service and date: '{credential}'. Authorization={value}"),
        ));
    }
    let signed: Vec<String> = signed_headers
        .split(';')
        .filter(|s| !s.is_empty())
        .map(|s| s.to_string())
        .collect();
    if signed.is_empty() {
        return Err(incomplete("SignedHeaders"));
    }
    Ok(Authorization {
        access_key_id: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
        terminator: parts[4].to_string(),
        signed_headers: signed,
        signature: signature.to_string(),
    })
}

/// Build the canonical request for `signed_headers` (lower-case names in the
/// order they appear in the `Authorization` header).
pub fn canonical_request(
    input: &SigningInput<'_>,
    signed_headers: &[String],
    normalize: bool,
    payload_hash: &str,
) -> String {
    let mut out = String::with_capacity(256 + input.raw_path.len());
    out.push_str(input.method);
    out.push('\n');
    out.push_str(&canonical_uri(input.raw_path, normalize));
    out.push('\n');
    out.push_str(&canonical_query(input.raw_query));
    out.push('\n');
    for name in signed_headers {
        out.push_str(name);
        out.push(':');
        let values = header_values(input.headers, name);
        let joined: Vec<String> = values.iter().map(|v| canonical_header_value(v)).collect();
        out.push_str(&joined.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    out
}

/// `AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(canonical_request)>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request.as_bytes())
    )
}

/// Derive the signing key with the HMAC chain.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Hex HMAC-SHA256 of the string to sign.
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac(signing_key, string_to_sign.as_bytes()))
}

/// Convenience for clients (tests, tools): the full `Authorization` value.
pub fn authorization_header(
    access_key_id: &str,
    secret: &str,
    amz_date: &str,
    region: &str,
    service: &str,
    signed_headers: &[String],
    canonical_request: &str,
) -> String {
    let date = amz_date.get(..8).unwrap_or("");
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = string_to_sign(amz_date, &scope, canonical_request);
    let sig = signature(&signing_key(secret, date, region, service), &sts);
    format!(
        "{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={sig}",
        signed_headers.join(";")
    )
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex SHA-256.
pub fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compare without early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// All values of header `name` (case-insensitive), in arrival order.
pub fn header_values<'h>(headers: &'h [(String, String)], name: &str) -> Vec<&'h str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Trim and collapse runs of spaces/tabs (and folded line breaks) to one space.
pub fn canonical_header_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut pending_space = false;
    for c in v
        .trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n')
        .chars()
    {
        if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
            pending_space = true;
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// Canonical URI: optional normalisation, then every segment URI-encoded
/// (so existing `%XX` escapes are encoded again).
pub fn canonical_uri(raw_path: &str, normalize: bool) -> String {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let path = if normalize {
        normalize_path(path)
    } else {
        path.to_string()
    };
    path.split('/')
        .map(|seg| uri_encode(seg.as_bytes()))
        .collect::<Vec<_>>()
        .join("/")
}

/// RFC 3986 dot-segment removal plus collapsing of empty segments, keeping a
/// trailing slash.
pub fn normalize_path(path: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.last().copied().unwrap_or("");
    for seg in &segments {
        match *seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let trailing = path.len() > 1 && (last.is_empty() || last == "." || last == "..");
    let mut out = String::from("/");
    out.push_str(&stack.join("/"));
    if trailing && !stack.is_empty() {
        out.push('/');
    }
    out
}

/// Canonical query string: decode once, encode with the unreserved set, sort.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encode everything except the RFC 3986 unreserved set, upper-case hex.
pub fn uri_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        }
    }
    out
}

/// Decode `%XX` escapes once; malformed escapes are kept literally.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parse `YYYYMMDDTHHMMSSZ` into seconds since the Unix epoch.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// Format seconds since the Unix epoch as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parse RFC 3339 `YYYY-MM-DDTHH:MM:SSZ` (the test-suite timestamp format).
pub fn parse_rfc3339_utc(s: &str) -> Option<i64> {
    let compact: String = s.chars().filter(|c| *c != '-' && *c != ':').collect();
    parse_amz_date(&compact)
}

// Howard Hinnant's civil date algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[path = "sigv4_tests.rs"]
mod tests;
