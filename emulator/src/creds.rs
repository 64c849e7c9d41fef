//! Stand-ins for the credential services the filter fetches from itself:
//! the ECS / EKS Pod Identity **container credentials endpoint**, **EC2 IMDSv2** and **STS
//! `AssumeRoleWithWebIdentity`** (EKS IRSA).
//!
//! Every credential set handed out is new (`ASIAEMU000001`, `ASIAEMU000002`, …, with its own
//! secret and session token) and expires `ttl_secs` after issue. The SigV4 verifier accepts
//! them through [`Issuer::lookup`] while unexpired, with exactly the issued
//! `X-Amz-Security-Token` ([`crate::sigv4::KeyLookup::Temporary`]).
//!
//! Wire shapes follow the AWS documentation:
//! - container endpoint (`GET`, `Authorization: <token>` when configured): `{"AccessKeyId",
//!   "SecretAccessKey", "Token", "Expiration", "RoleArn"}`;
//! - IMDSv2: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1–21600;
//!   refused with `X-Forwarded-For`, as IMDS does) → token; `GET
//!   /latest/meta-data/iam/security-credentials/` → role name; `GET …/<role>` →
//!   `{"Code":"Success","LastUpdated","Type":"AWS-HMAC","AccessKeyId","SecretAccessKey",
//!   "Token","Expiration"}`; 401 without a valid token;
//! - STS `AssumeRoleWithWebIdentity` (query protocol: `POST /`, form body `Action`, `Version`,
//!   `RoleArn`, `RoleSessionName`, `WebIdentityToken`; unsigned): the XML answer
//!   `AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/{Credentials/
//!   {AccessKeyId,SecretAccessKey,SessionToken,Expiration}, SubjectFromWebIdentityToken,
//!   AssumedRoleUser, Provider, Audience}` + `ResponseMetadata/RequestId`, errors as
//!   `ErrorResponse/Error/{Type,Code,Message}` + `RequestId` (AWS STS API reference,
//!   AssumeRoleWithWebIdentity; botocore `sts/2011-06-15/service-2.json`). A token other than
//!   the `web_identity_token` knob is `InvalidIdentityToken` (400), a role other than the
//!   `role_arn` knob `AccessDenied` (403).
//!
//! The tokens the container endpoint and STS received are recorded (the last
//! [`MAX_SEEN_TOKENS`], `GET /_emulator/creds`), so tests can see a token file re-read.

use crate::ids;
use crate::sigv4::{self, KeyLookup};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Default lifetime of issued credentials (the minimum AWS hands out).
pub const DEFAULT_TTL_SECS: u64 = 900;
/// Role name IMDS reports by default.
pub const DEFAULT_ROLE: &str = "emulator-role";
/// Largest IMDS session-token lifetime (6 hours).
pub const MAX_IMDS_TOKEN_TTL: u64 = 21_600;
/// Issued credential sets remembered (oldest dropped first).
const MAX_ISSUED: usize = 10_000;
/// Tokens remembered per service for `GET /_emulator/creds`.
pub const MAX_SEEN_TOKENS: usize = 50;
/// The STS API version of the query protocol.
pub const STS_VERSION: &str = "2011-06-15";
const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The account the emulator's roles belong to.
pub const ACCOUNT: &str = "123456789012";

/// Knobs (`GET`/`POST /_emulator/creds`).
#[derive(Debug, Clone, Serialize)]
pub struct Knobs {
    /// Required `Authorization` value on the container endpoint (`None`: not checked).
    pub container_token: Option<String>,
    /// Lifetime of each issued credential set, ≥ 1.
    pub ttl_secs: u64,
    /// `true`: 500 on the container endpoint and every IMDS path.
    pub fail: bool,
    /// Role name IMDS lists; empty = no instance profile (404).
    pub role: String,
    /// Web identity token STS accepts (`None`: any token of 4..20000 characters).
    pub web_identity_token: Option<String>,
    /// Role ARN STS lets assume (`None`: any IAM role ARN).
    pub role_arn: Option<String>,
    /// Error code every STS call answers (`InvalidIdentityToken`, `ExpiredTokenException`,
    /// `AccessDenied`, `IDPCommunicationError`, `IDPRejectedClaim`, `RegionDisabledException`).
    pub sts_error: Option<String>,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            container_token: None,
            ttl_secs: DEFAULT_TTL_SECS,
            fail: false,
            role: DEFAULT_ROLE.to_string(),
            web_identity_token: None,
            role_arn: None,
            sts_error: None,
        }
    }
}

/// `POST /_emulator/creds` body: any subset; `"container_token": null` (or `""`) clears it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobsUpdate {
    #[serde(default, deserialize_with = "nullable")]
    pub container_token: Option<Option<String>>,
    pub ttl_secs: Option<u64>,
    pub fail: Option<bool>,
    pub role: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub web_identity_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub role_arn: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub sts_error: Option<Option<String>>,
}

fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::<String>::deserialize(d)?))
}

/// IAM role names: up to 64 of `[A-Za-z0-9+=,.@_-]` (empty = no instance profile).
pub fn valid_role(r: &str) -> bool {
    r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        && r != "."
        && r != ".."
}

/// One issued credential set.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// The credential services' state.
#[derive(Debug, Default)]
pub struct Issuer {
    pub knobs: Knobs,
    seq: u64,
    issued: HashMap<String, Issued>,
    order: std::collections::VecDeque<String>,
    /// IMDS session token → expiry.
    imds_tokens: HashMap<String, i64>,
    /// `Authorization` values the container endpoint received, oldest first.
    container_tokens_seen: std::collections::VecDeque<String>,
    /// `WebIdentityToken`s STS received, oldest first.
    web_identity_tokens_seen: std::collections::VecDeque<String>,
}

/// An HTTP answer from a credential endpoint: status, content type, body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, v: &Value) -> Self {
        Answer {
            status,
            content_type: "application/json",
            body: v.to_string(),
            headers: vec![],
        }
    }
    fn text(status: u16, body: impl Into<String>) -> Self {
        Answer {
            status,
            content_type: "text/plain",
            body: body.into(),
            headers: vec![],
        }
    }
    fn failing() -> Self {
        Answer::json(
            500,
            &json!({"message": "emulator fault: the credentials service is failing"}),
        )
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: i64) -> String {
    let b = sigv4::format_amz_date(t); // YYYYMMDDTHHMMSSZ
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        b.get(0..4).unwrap_or(""),
        b.get(4..6).unwrap_or(""),
        b.get(6..8).unwrap_or(""),
        b.get(9..11).unwrap_or(""),
        b.get(11..13).unwrap_or(""),
        b.get(13..15).unwrap_or("")
    )
}

fn random_text(len: usize, alphabet: &[u8]) -> String {
    let mut out = String::with_capacity(len);
    let mut r = ids::next_u64();
    let mut left = 10;
    for _ in 0..len {
        if left == 0 {
            r = ids::next_u64();
            left = 10;
        }
        out.push(char::from(alphabet[(r % alphabet.len() as u64) as usize]));
        r /= alphabet.len() as u64;
        left -= 1;
    }
    out
}

const BASE64ISH: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl Issuer {
    /// An issuer with these knobs (`ttl_secs` 0 counts as 1).
    pub fn new(mut knobs: Knobs) -> Self {
        knobs.ttl_secs = knobs.ttl_secs.max(1);
        Issuer {
            knobs,
            ..Issuer::default()
        }
    }

    /// Applies a knob update; `Err` for `ttl_secs` 0.
    pub fn update(&mut self, u: KnobsUpdate) -> Result<(), String> {
        if u.ttl_secs == Some(0) {
            return Err("ttl_secs must be at least 1".into());
        }
        if let Some(t) = u.container_token {
            self.knobs.container_token = t.filter(|t| !t.is_empty());
        }
        if let Some(t) = u.ttl_secs {
            self.knobs.ttl_secs = t;
        }
        if let Some(f) = u.fail {
            self.knobs.fail = f;
        }
        if let Some(r) = u.role {
            if !r
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
            {
                return Err("role: IAM role names use [A-Za-z0-9+=,.@_-]".into());
            }
            self.knobs.role = r;
        }
        if let Some(t) = u.web_identity_token {
            self.knobs.web_identity_token = t.filter(|t| !t.is_empty());
        }
        if let Some(a) = u.role_arn {
            self.knobs.role_arn = a.filter(|a| !a.is_empty());
        }
        if let Some(e) = u.sts_error {
            let e = e.filter(|e| !e.is_empty());
            if let Some(code) = &e {
                if sts_error_status(code).is_none() {
                    return Err(format!("sts_error: unknown STS error code {code:?}"));
                }
            }
            self.knobs.sts_error = e;
        }
        Ok(())
    }

    /// Knobs plus the number of credential sets issued so far.
    pub fn state_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.knobs).unwrap_or(Value::Null);
        v["issued"] = json!(self.seq);
        v["container_tokens_seen"] = json!(self.container_tokens_seen);
        v["web_identity_tokens_seen"] = json!(self.web_identity_tokens_seen);
        v
    }

    /// Issues a brand-new credential set valid for `ttl_secs` from `now`.
    pub fn issue(&mut self, now: i64) -> Issued {
        self.seq += 1;
        let ttl = i64::try_from(self.knobs.ttl_secs).unwrap_or(i64::MAX / 4);
        let issued = Issued {
            access_key_id: format!("ASIAEMU{:06}", self.seq),
            secret_access_key: random_text(40, BASE64ISH),
            session_token: format!("IQoJemulator{}", random_text(300, BASE64ISH)),
            issued_at: now,
            expires_at: now.saturating_add(ttl),
        };
        if self.order.len() >= MAX_ISSUED {
            if let Some(old) = self.order.pop_front() {
                self.issued.remove(&old);
            }
        }
        self.order.push_back(issued.access_key_id.clone());
        self.issued
            .insert(issued.access_key_id.clone(), issued.clone());
        issued
    }

    /// What the verifier should know about `access_key_id`.
    pub fn lookup(&self, access_key_id: &str) -> KeyLookup {
        match self.issued.get(access_key_id) {
            Some(i) => KeyLookup::Temporary {
                secret: i.secret_access_key.clone(),
                session_token: i.session_token.clone(),
                expires_at: i.expires_at,
            },
            None => KeyLookup::Unknown,
        }
    }

    /// `GET /_creds/container` with the request's `Authorization` value.
    pub fn container(&mut self, authorization: Option<&str>, now: i64) -> Answer {
        if let Some(a) = authorization {
            remember(&mut self.container_tokens_seen, a);
        }
        if self.knobs.fail {
            return Answer::failing();
        }
        if let Some(want) = &self.knobs.container_token {
            let ok = authorization
                .is_some_and(|got| sigv4::constant_time_eq(got.as_bytes(), want.as_bytes()));
            if !ok {
                return Answer::json(
                    401,
                    &json!({"code": "AccessDeniedException", "message": "invalid or missing Authorization token"}),
                );
            }
        }
        let i = self.issue(now);
        Answer::json(
            200,
            &json!({
                "AccessKeyId": i.access_key_id,
                "SecretAccessKey": i.secret_access_key,
                "Token": i.session_token,
                "Expiration": rfc3339(i.expires_at),
                "RoleArn": format!("arn:aws:iam::123456789012:role/{}", self.knobs.role),
            }),
        )
    }

    /// `PUT /latest/api/token` with the TTL header and whether `X-Forwarded-For` was present.
    pub fn imds_token(&mut self, ttl_header: Option<&str>, forwarded: bool, now: i64) -> Answer {
        if self.knobs.fail {
            return Answer::failing();
        }
        if forwarded {
            return Answer::text(403, "Forbidden");
        }
        let ttl = match ttl_header.and_then(|v| v.trim().parse::<u64>().ok()) {
            Some(t) if (1..=MAX_IMDS_TOKEN_TTL).contains(&t) => t,
            _ => return Answer::text(400, "Bad Request"),
        };
        self.imds_tokens.retain(|_, exp| *exp > now);
        let token = format!("AQAEAEmu{}==", random_text(48, BASE64ISH));
        self.imds_tokens
            .insert(token.clone(), now.saturating_add(ttl as i64));
        let mut a = Answer::text(200, token);
        a.headers
            .push(("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string()));
        a
    }

    fn imds_token_valid(&self, token: Option<&str>, now: i64) -> bool {
        token
            .and_then(|t| self.imds_tokens.get(t.trim()))
            .is_some_and(|exp| *exp > now)
    }

    /// `GET /latest/meta-data/iam/security-credentials/` (`role` = `None`) or `…/<role>`.
    pub fn imds_credentials(
        &mut self,
        token: Option<&str>,
        role: Option<&str>,
        now: i64,
    ) -> Answer {
        if self.knobs.fail {
            return Answer::failing();
        }
        if !self.imds_token_valid(token, now) {
            return Answer::text(401, "Unauthorized");
        }
        let configured = self.knobs.role.clone();
        match role {
            _ if configured.is_empty() => Answer::text(404, "Not Found"),
            None => Answer::text(200, configured),
            Some(r) if r != configured => Answer::text(404, "Not Found"),
            Some(_) => {
                let i = self.issue(now);
                Answer::json(
                    200,
                    &json!({
                        "Code": "Success",
                        "LastUpdated": rfc3339(i.issued_at),
                        "Type": "AWS-HMAC",
                        "AccessKeyId": i.access_key_id,
                        "SecretAccessKey": i.secret_access_key,
                        "Token": i.session_token,
                        "Expiration": rfc3339(i.expires_at),
                    }),
                )
            }
        }
    }
}

fn remember(seen: &mut std::collections::VecDeque<String>, token: &str) {
    if seen.len() >= MAX_SEEN_TOKENS {
        seen.pop_front();
    }
    seen.push_back(token.to_string());
}

/// The HTTP status of the STS error codes the `sts_error` knob may force (botocore's STS
/// model: `InvalidIdentityTokenException` → `InvalidIdentityToken` 400, ...).
pub fn sts_error_status(code: &str) -> Option<u16> {
    match code {
        "InvalidIdentityToken"
        | "ExpiredTokenException"
        | "IDPCommunicationError"
        | "ValidationError"
        | "InvalidAction"
        | "MissingParameter" => Some(400),
        "AccessDenied" | "IDPRejectedClaim" | "RegionDisabledException" => Some(403),
        "InternalFailure" => Some(500),
        _ => None,
    }
}

fn sts_default_message(code: &str) -> &'static str {
    match code {
        "InvalidIdentityToken" => {
            "The web identity token that was passed could not be validated by Amazon Web \
             Services. Get a new identity token from the identity provider and then retry the \
             request."
        }
        "ExpiredTokenException" => {
            "The web identity token that was passed is expired or is not valid. Get a new \
             identity token from the identity provider and then retry the request."
        }
        "AccessDenied" => "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        "IDPCommunicationError" => {
            "The request could not be fulfilled because the identity provider (IDP) that was \
             asked to verify the incoming identity token could not be reached."
        }
        "IDPRejectedClaim" => "The identity provider (IdP) reported that authentication failed.",
        "RegionDisabledException" => {
            "STS is not activated in the requested region for the account that is being asked \
             to generate credentials."
        }
        _ => "emulator fault: STS is failing",
    }
}

/// Escapes text for XML element content.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Decodes an `application/x-www-form-urlencoded` body (`+` is a space); `None` for invalid
/// percent escapes or UTF-8.
pub fn parse_form(body: &str) -> Option<HashMap<String, String>> {
    fn decode(s: &str) -> Option<String> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    let mut map = HashMap::new();
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(decode(k)?, decode(v)?);
    }
    Some(map)
}

/// An IAM role ARN (`arn:<partition>:iam::<12 digits>:role/[path/]name`); returns the name.
fn role_name_of(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path = resource.strip_prefix("role/")?;
    let name = path.rsplit('/').next()?;
    let ok = partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && name.len() <= 64
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b));
    ok.then_some(name)
}

/// The `sub` claim of a JWT-shaped token, when it has one.
fn jwt_subject(token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["sub"].as_str().map(str::to_string)
}

impl Issuer {
    /// An STS error answer.
    fn sts_fault(code: &str, message: &str) -> Answer {
        let status = sts_error_status(code).unwrap_or(400);
        let kind = if status >= 500 { "Receiver" } else { "Sender" };
        let body = format!(
            "<ErrorResponse xmlns=\"{STS_NS}\">\n  <Error>\n    <Type>{kind}</Type>\n    \
             <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  \
             <RequestId>{}</RequestId>\n</ErrorResponse>\n",
            xml_escape(code),
            xml_escape(message),
            ids::uuid_v4()
        );
        Answer {
            status,
            content_type: "text/xml",
            body,
            headers: vec![],
        }
    }

    /// `POST /` with an STS query-protocol form body (only `AssumeRoleWithWebIdentity`).
    pub fn sts(&mut self, form: &str, now: i64) -> Answer {
        let Some(params) = parse_form(form) else {
            return Issuer::sts_fault("ValidationError", "The request body is not a valid form");
        };
        let get = |k: &str| params.get(k).map(String::as_str);
        match get("Action") {
            Some("AssumeRoleWithWebIdentity") => {}
            Some(other) => {
                return Issuer::sts_fault(
                    "InvalidAction",
                    &format!("Could not find operation {other} for version {STS_VERSION}"),
                )
            }
            None => {
                return Issuer::sts_fault(
                    "MissingParameter",
                    "The request must contain the parameter Action",
                )
            }
        }
        if get("Version") != Some(STS_VERSION) {
            return Issuer::sts_fault(
                "InvalidAction",
                "Could not find operation AssumeRoleWithWebIdentity for this version",
            );
        }
        let (Some(role_arn), Some(session), Some(token)) = (
            get("RoleArn"),
            get("RoleSessionName"),
            get("WebIdentityToken"),
        ) else {
            return Issuer::sts_fault(
                "ValidationError",
                "RoleArn, RoleSessionName and WebIdentityToken are required",
            );
        };
        let session_ok = (2..=64).contains(&session.len())
            && session
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
        if !session_ok {
            return Issuer::sts_fault(
                "ValidationError",
                "1 validation error detected: Value at 'roleSessionName' failed to satisfy \
                 constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            );
        }
        if !(4..=20_000).contains(&token.chars().count()) {
            return Issuer::sts_fault(
                "ValidationError",
                "1 validation error detected: Value at 'webIdentityToken' failed to satisfy \
                 constraint: Member must have length between 4 and 20000",
            );
        }
        remember(&mut self.web_identity_tokens_seen, token);
        if self.knobs.fail {
            return Issuer::sts_fault("InternalFailure", "emulator fault: STS is failing");
        }
        if let Some(code) = self.knobs.sts_error.clone() {
            return Issuer::sts_fault(&code, sts_default_message(&code));
        }
        let Some(role_name) = role_name_of(role_arn) else {
            return Issuer::sts_fault("ValidationError", "Request ARN is invalid");
        };
        if let Some(want) = &self.knobs.web_identity_token {
            if !sigv4::constant_time_eq(want.as_bytes(), token.as_bytes()) {
                return Issuer::sts_fault(
                    "InvalidIdentityToken",
                    sts_default_message("InvalidIdentityToken"),
                );
            }
        }
        if self
            .knobs
            .role_arn
            .as_deref()
            .is_some_and(|want| want != role_arn)
        {
            return Issuer::sts_fault("AccessDenied", sts_default_message("AccessDenied"));
        }
        let role_name = role_name.to_string();
        let subject = jwt_subject(token)
            .unwrap_or_else(|| "system:serviceaccount:default:emulator".to_string());
        let i = self.issue(now);
        let body = format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"{STS_NS}\">
  <AssumeRoleWithWebIdentityResult>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEMULATOR0000ROLE:{session}</AssumedRoleId>
      <Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}</Arn>
    </AssumedRoleUser>
    <Provider>arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EMULATOR</Provider>
    <Credentials>
      <AccessKeyId>{akid}</AccessKeyId>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <SessionToken>{token}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
    <SubjectFromWebIdentityToken>{subject}</SubjectFromWebIdentityToken>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>{request_id}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
",
            session = xml_escape(session),
            role = xml_escape(&role_name),
            akid = i.access_key_id,
            secret = xml_escape(&i.secret_access_key),
            token = xml_escape(&i.session_token),
            expiration = rfc3339(i.expires_at),
            subject = xml_escape(&subject),
            request_id = ids::uuid_v4(),
        );
        Answer {
            status: 200,
            content_type: "text/xml",
            body,
            headers: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    #[test]
    fn rfc3339_format() {
        assert_eq!(rfc3339(1_795_784_400), "2026-11-27T13:00:00Z");
        assert_eq!(sigv4::parse_rfc3339_utc(&rfc3339(NOW)), Some(NOW));
    }

    #[test]
    fn every_issue_is_new_and_expires() {
        let mut i = Issuer::default();
        i.update(KnobsUpdate {
            ttl_secs: Some(2),
            ..Default::default()
        })
        .unwrap();
        let a = i.issue(NOW);
        let b = i.issue(NOW);
        assert_eq!(a.access_key_id, "ASIAEMU000001");
        assert_eq!(b.access_key_id, "ASIAEMU000002");
        assert_ne!(a.secret_access_key, b.secret_access_key);
        assert_ne!(a.session_token, b.session_token);
        assert_eq!(a.secret_access_key.len(), 40);
        assert_eq!(a.expires_at, NOW + 2);
        assert_eq!(
            i.lookup("ASIAEMU000001"),
            KeyLookup::Temporary {
                secret: a.secret_access_key.clone(),
                session_token: a.session_token.clone(),
                expires_at: NOW + 2
            }
        );
        assert_eq!(i.lookup("ASIAEMU999999"), KeyLookup::Unknown);
        assert!(i
            .update(KnobsUpdate {
                ttl_secs: Some(0),
                ..Default::default()
            })
            .is_err());
        assert_eq!(i.state_json()["issued"], 2);
    }

    #[test]
    fn container_endpoint() {
        let mut i = Issuer::default();
        let a = i.container(None, NOW);
        assert_eq!(a.status, 200);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["AccessKeyId"], "ASIAEMU000001");
        assert_eq!(v["Expiration"], rfc3339(NOW + 900));
        assert!(v["Token"].as_str().unwrap().len() > 100);
        let upd: KnobsUpdate =
            serde_json::from_str(r#"{"container_token":"tok-1","fail":false}"#).unwrap();
        i.update(upd).unwrap();
        assert_eq!(i.container(None, NOW).status, 401);
        assert_eq!(i.container(Some("tok-2"), NOW).status, 401);
        assert_eq!(i.container(Some("tok-1"), NOW).status, 200);
        let upd: KnobsUpdate = serde_json::from_str(r#"{"container_token":null}"#).unwrap();
        i.update(upd).unwrap();
        assert_eq!(i.container(None, NOW).status, 200);
        i.knobs.fail = true;
        assert_eq!(i.container(None, NOW).status, 500);
        assert!(serde_json::from_str::<KnobsUpdate>(r#"{"typo":1}"#).is_err());
    }

    fn form(token: &str, role: &str) -> String {
        format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName=duo-bedrock-1&WebIdentityToken={}",
            role.replace(':', "%3A").replace('/', "%2F"),
            token
        )
    }

    const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/duo-bedrock";

    #[test]
    fn sts_assume_role_with_web_identity() {
        let mut i = Issuer::default();
        // A JWT-shaped token: the subject comes from its `sub`.
        let jwt =
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Z2l0bGFiOmR1byJ9.c2ln";
        let a = i.sts(&form(jwt, ROLE_ARN), NOW);
        assert_eq!((a.status, a.content_type), (200, "text/xml"), "{}", a.body);
        assert!(a.body.starts_with(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
        ));
        assert!(a.body.contains("<AccessKeyId>ASIAEMU000001</AccessKeyId>"));
        assert!(a
            .body
            .contains(&format!("<Expiration>{}</Expiration>", rfc3339(NOW + 900))));
        assert!(a.body.contains(
            "<Arn>arn:aws:sts::123456789012:assumed-role/duo-bedrock/duo-bedrock-1</Arn>"
        ));
        assert!(a.body.contains("<SubjectFromWebIdentityToken>system:serviceaccount:gitlab:duo</SubjectFromWebIdentityToken>"));
        assert!(matches!(
            i.lookup("ASIAEMU000001"),
            KeyLookup::Temporary { .. }
        ));
        assert_eq!(i.state_json()["web_identity_tokens_seen"], json!([jwt]));

        // The expected token and role.
        let upd: KnobsUpdate = serde_json::from_str(
            r#"{"web_identity_token":"tok-1","role_arn":"arn:aws:iam::123456789012:role/duo-bedrock"}"#,
        )
        .unwrap();
        i.update(upd).unwrap();
        let a = i.sts(&form("tok-2", ROLE_ARN), NOW);
        assert_eq!(a.status, 400);
        assert!(
            a.body.contains("<Code>InvalidIdentityToken</Code>"),
            "{}",
            a.body
        );
        assert!(a.body.contains("<Type>Sender</Type>"));
        assert!(a.body.starts_with("<ErrorResponse xmlns="));
        let a = i.sts(&form("tok-1", "arn:aws:iam::123456789012:role/other"), NOW);
        assert_eq!(a.status, 403);
        assert!(a.body.contains("<Code>AccessDenied</Code>"));
        assert_eq!(i.sts(&form("tok-1", ROLE_ARN), NOW).status, 200);
        assert_eq!(
            i.state_json()["web_identity_tokens_seen"],
            json!([jwt, "tok-2", "tok-1", "tok-1"])
        );
        // Forced errors.
        i.update(serde_json::from_str(r#"{"sts_error":"ExpiredTokenException"}"#).unwrap())
            .unwrap();
        let a = i.sts(&form("tok-1", ROLE_ARN), NOW);
        assert_eq!(a.status, 400);
        assert!(a.body.contains("<Code>ExpiredTokenException</Code>"));
        assert!(i
            .update(serde_json::from_str(r#"{"sts_error":"Nope"}"#).unwrap())
            .is_err());
        i.update(serde_json::from_str(r#"{"sts_error":null}"#).unwrap())
            .unwrap();
        // Malformed requests.
        for (body, code) in [
            (
                "Action=GetCallerIdentity&Version=2011-06-15".to_string(),
                "InvalidAction",
            ),
            ("Version=2011-06-15".to_string(), "MissingParameter"),
            (
                form("tok-1", ROLE_ARN).replace("2011-06-15", "2012-01-01"),
                "InvalidAction",
            ),
            (
                form("tok-1", ROLE_ARN).replace("duo-bedrock-1", "x"),
                "ValidationError",
            ),
            (form("abc", ROLE_ARN), "ValidationError"),
            (form("tok-1", "arn:aws:iam::1:role/x"), "ValidationError"),
            ("RoleArn=%zz".to_string(), "ValidationError"),
            (
                "Action=AssumeRoleWithWebIdentity&Version=2011-06-15".to_string(),
                "ValidationError",
            ),
        ] {
            let a = i.sts(&body, NOW);
            assert!(
                a.body.contains(&format!("<Code>{code}</Code>")),
                "{body}: {}",
                a.body
            );
            assert_eq!(a.status, 400);
        }
        i.knobs.fail = true;
        assert_eq!(i.sts(&form("tok-1", ROLE_ARN), NOW).status, 500);
    }

    #[test]
    fn container_records_the_tokens_it_saw() {
        let mut i = Issuer::default();
        i.container(Some("pod-1"), NOW);
        i.container(None, NOW);
        i.container(Some("pod-2"), NOW);
        assert_eq!(
            i.state_json()["container_tokens_seen"],
            json!(["pod-1", "pod-2"])
        );
        for n in 0..MAX_SEEN_TOKENS + 5 {
            i.container(Some(&format!("t{n}")), NOW);
        }
        assert_eq!(
            i.state_json()["container_tokens_seen"]
                .as_array()
                .unwrap()
                .len(),
            MAX_SEEN_TOKENS
        );
    }

    #[test]
    fn form_and_xml_helpers() {
        let f = parse_form("a=1+2&b=%2F%3a&c&=x").unwrap();
        assert_eq!(f["a"], "1 2");
        assert_eq!(f["b"], "/:");
        assert_eq!(f["c"], "");
        assert!(parse_form("a=%4").is_none());
        assert!(parse_form("a=%ff").is_none());
        assert_eq!(xml_escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }

    #[test]
    fn imds_flow() {
        let mut i = Issuer::default();
        assert_eq!(i.imds_token(None, false, NOW).status, 400);
        assert_eq!(i.imds_token(Some("0"), false, NOW).status, 400);
        assert_eq!(i.imds_token(Some("21601"), false, NOW).status, 400);
        assert_eq!(i.imds_token(Some("60"), true, NOW).status, 403);
        let t = i.imds_token(Some("60"), false, NOW);
        assert_eq!(t.status, 200);
        assert_eq!(
            t.headers,
            vec![("x-aws-ec2-metadata-token-ttl-seconds", "60".to_string())]
        );
        let tok = t.body.as_str();
        assert_eq!(i.imds_credentials(None, None, NOW).status, 401);
        assert_eq!(i.imds_credentials(Some("nope"), None, NOW).status, 401);
        let roles = i.imds_credentials(Some(tok), None, NOW);
        assert_eq!((roles.status, roles.body.as_str()), (200, DEFAULT_ROLE));
        assert_eq!(
            i.imds_credentials(Some(tok), Some("other"), NOW).status,
            404
        );
        let c = i.imds_credentials(Some(tok), Some(DEFAULT_ROLE), NOW);
        assert_eq!(c.status, 200);
        let v: Value = serde_json::from_str(&c.body).unwrap();
        assert_eq!(v["Code"], "Success");
        assert_eq!(v["Type"], "AWS-HMAC");
        assert_eq!(v["LastUpdated"], rfc3339(NOW));
        assert_eq!(v["Expiration"], rfc3339(NOW + 900));
        // The token expires.
        assert_eq!(i.imds_credentials(Some(tok), None, NOW + 60).status, 401);
        // No instance profile.
        i.knobs.role.clear();
        assert_eq!(i.imds_credentials(Some(tok), None, NOW).status, 404);
        i.knobs.fail = true;
        assert_eq!(i.imds_token(Some("60"), false, NOW).status, 500);
        assert_eq!(i.imds_credentials(Some(tok), None, NOW).status, 500);
        assert!(i
            .update(KnobsUpdate {
                role: Some("../x".into()),
                ..Default::default()
            })
            .is_err());
    }
}
