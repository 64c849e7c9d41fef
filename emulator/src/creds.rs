//! Stand-ins for the two credential services the filter fetches from itself:
//! the ECS / EKS Pod Identity **container credentials endpoint** and **EC2 IMDSv2**.
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
//!   "Token","Expiration"}`; 401 without a valid token.

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
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            container_token: None,
            ttl_secs: DEFAULT_TTL_SECS,
            fail: false,
            role: DEFAULT_ROLE.to_string(),
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
        Ok(())
    }

    /// Knobs plus the number of credential sets issued so far.
    pub fn state_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.knobs).unwrap_or(Value::Null);
        v["issued"] = json!(self.seq);
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
