//! A token's payload read into [`Claims`] under the type rules of [`super::rules`] (its module
//! doc, docs/gitlab-contract.md#jwt-rules): time claims are JSON numbers (fractions truncated),
//! `exp` and `aud` are required, `aud` is a string or a list of strings, `sub`, `iss`, `jti`,
//! `gitlab_realm` and `gitlab_instance_id` are strings and `scopes` a list of strings when
//! present, `null` counts as absent, other claims are ignored.
//!
//! The payload is read in one pass into borrowed, typed slots rather than into a
//! `serde_json::Map<String, Value>` (docs/performance.md), with the very verdicts of that
//! reading, which the differential tests below keep as their oracle:
//! - every member value goes through `deserialize_any`, as a `Value` does, so nesting depth
//!   (128), number range, string escapes and UTF-8 are checked as before (serde's `IgnoredAny`
//!   skips values in serde_json without any of these checks);
//! - a claim of the wrong type is read to its end and remembered, never an early error: a syntax
//!   error anywhere in the payload still makes it `malformed`, and the claim errors come once the
//!   whole object is read, in the old order (`exp`, `nbf`, `iat`, `aud`, `scopes`, the strings);
//! - of a repeated member the last one counts, as with `Map::insert`.

use std::borrow::Cow;
use std::fmt;

use crate::json_skip::Skip;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use super::error::AuthError;
use super::rules::Claims;

const MALFORMED: AuthError = AuthError::Forbidden("malformed");
const BAD_CLAIMS: AuthError = AuthError::Forbidden("bad_claims");

/// The claims of a payload the rules look at, as read (nothing checked yet but JSON syntax).
#[derive(Default)]
pub(super) struct Payload<'a> {
    exp: Slot<'a>,
    nbf: Slot<'a>,
    iat: Slot<'a>,
    aud: Slot<'a>,
    scopes: Slot<'a>,
    iss: Slot<'a>,
    sub: Slot<'a>,
    jti: Slot<'a>,
    gitlab_realm: Slot<'a>,
    gitlab_instance_id: Slot<'a>,
    duo_seat_count: Slot<'a>,
}

impl<'a> Payload<'a> {
    /// Reads a decoded payload: any JSON error (syntax, not an object, not UTF-8, nesting
    /// deeper than 128, a number out of `f64` range) is `malformed`.
    pub(super) fn parse(json: &'a [u8]) -> Result<Self, AuthError> {
        let text = std::str::from_utf8(json).map_err(|_| MALFORMED)?;
        serde_json::from_str(text).map_err(|_| MALFORMED)
    }

    /// `jti` when it is a string.
    pub(super) fn jti(&self) -> Option<&str> {
        match &self.jti {
            Slot::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The claims, or the first rule they break: `missing_exp`, `missing_aud` or `bad_claims`.
    /// Times and audience are checked by the caller.
    pub(super) fn into_claims(self) -> Result<Claims, AuthError> {
        let exp = date(self.exp)?.ok_or(AuthError::Forbidden("missing_exp"))?;
        let nbf = date(self.nbf)?;
        let iat = date(self.iat)?;
        let aud = match self.aud {
            Slot::Null => return Err(AuthError::Forbidden("missing_aud")),
            Slot::Str(s) => vec![s.into_owned()],
            other => strings(other)?,
        };
        let scopes = match self.scopes {
            Slot::Null => Vec::new(),
            other => strings(other)?,
        };
        let duo_seat_count = match self.duo_seat_count {
            Slot::Str(s) => Some(s.into_owned()),
            Slot::Number(n) => Some(n.to_string()),
            _ => None,
        };
        Ok(Claims {
            iss: string(self.iss)?,
            sub: string(self.sub)?,
            jti: string(self.jti)?,
            gitlab_realm: string(self.gitlab_realm)?,
            gitlab_instance_id: string(self.gitlab_instance_id)?,
            aud,
            exp,
            nbf,
            iat,
            scopes,
            duo_seat_count,
        })
    }
}

/// A NumericDate: a non-negative JSON number (fractions truncated, like Python's `int()`).
fn date(slot: Slot<'_>) -> Result<Option<u64>, AuthError> {
    match slot {
        Slot::Null => Ok(None),
        Slot::Number(n) => numeric_date(&n).map(Some).ok_or(BAD_CLAIMS),
        _ => Err(BAD_CLAIMS),
    }
}

fn numeric_date(n: &Number) -> Option<u64> {
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    let f = n.as_f64()?;
    if n.is_i64() || !(0.0..18_446_744_073_709_551_615.0).contains(&f) {
        return None;
    }
    // In range and finite: the cast truncates toward zero.
    Some(f as u64)
}

fn string(slot: Slot<'_>) -> Result<Option<String>, AuthError> {
    match slot {
        Slot::Null => Ok(None),
        Slot::Str(s) => Ok(Some(s.into_owned())),
        _ => Err(BAD_CLAIMS),
    }
}

fn strings(slot: Slot<'_>) -> Result<Vec<String>, AuthError> {
    match slot {
        Slot::Strings(Some(list)) => Ok(list.into_iter().map(Cow::into_owned).collect()),
        _ => Err(BAD_CLAIMS),
    }
}

/// A claim's value, as far as the rules look at it.
#[derive(Default)]
enum Slot<'a> {
    /// Absent or `null`.
    #[default]
    Null,
    /// Borrowed from the payload unless it had escapes.
    Str(Cow<'a, str>),
    Number(Number),
    /// An array: its members, or `None` when one of them is not a string.
    Strings(Option<Vec<Cow<'a, str>>>),
    /// `true`, `false`, an object.
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Slot<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SlotVisitor)
    }
}

struct SlotVisitor;

impl<'de> Visitor<'de> for SlotVisitor {
    type Value = Slot<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Slot::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Slot::Other)
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Slot::Number(v.into()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Slot::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As `Value` does (serde_json refuses non-finite numbers before this point).
        Ok(Number::from_f64(v).map_or(Slot::Null, Slot::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Slot::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Some(Vec::new());
        // Read to the end even once a member is not a string (see the module doc).
        while let Some(member) = seq.next_element::<Slot<'de>>()? {
            match (member, &mut list) {
                (Slot::Str(s), Some(list)) => list.push(s),
                _ => list = None,
            }
        }
        Ok(Slot::Strings(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Slot::Other)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Payload<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PayloadVisitor)
    }
}

/// The members the rules read; the rest is [`Skip`]ped.
#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Member {
    Exp,
    Nbf,
    Iat,
    Aud,
    Scopes,
    Iss,
    Sub,
    Jti,
    GitlabRealm,
    GitlabInstanceId,
    DuoSeatCount,
    #[serde(other)]
    Other,
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut p = Payload::default();
        while let Some(member) = map.next_key::<Member>()? {
            // A repeated member replaces the earlier one.
            let slot = match member {
                Member::Exp => &mut p.exp,
                Member::Nbf => &mut p.nbf,
                Member::Iat => &mut p.iat,
                Member::Aud => &mut p.aud,
                Member::Scopes => &mut p.scopes,
                Member::Iss => &mut p.iss,
                Member::Sub => &mut p.sub,
                Member::Jti => &mut p.jti,
                Member::GitlabRealm => &mut p.gitlab_realm,
                Member::GitlabInstanceId => &mut p.gitlab_instance_id,
                Member::DuoSeatCount => &mut p.duo_seat_count,
                Member::Other => {
                    map.next_value::<Skip>()?;
                    continue;
                }
            };
            *slot = map.next_value()?;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The reading this module replaced: the payload as a `Map<String, Value>`, then each claim
    /// taken from it (main before issue 12's cut). The oracle of the differential tests.
    mod oracle {
        use super::super::Claims;
        use crate::auth::AuthError;
        use serde_json::{Map, Value};

        fn numeric_date(v: &Value) -> Option<u64> {
            if let Some(u) = v.as_u64() {
                return Some(u);
            }
            let f = v.as_f64()?;
            if v.is_i64() || !(0.0..18_446_744_073_709_551_615.0).contains(&f) {
                return None;
            }
            Some(f as u64)
        }

        fn opt_string(m: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
            match m.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(AuthError::Forbidden("bad_claims")),
            }
        }

        fn opt_date(m: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
            match m.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => numeric_date(v)
                    .map(Some)
                    .ok_or(AuthError::Forbidden("bad_claims")),
            }
        }

        fn string_list(v: &Value) -> Option<Vec<String>> {
            v.as_array()?
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect()
        }

        pub fn parse(json: &[u8]) -> Result<Map<String, Value>, AuthError> {
            serde_json::from_slice(json).map_err(|_| AuthError::Forbidden("malformed"))
        }

        pub fn claims(m: Map<String, Value>) -> Result<Claims, AuthError> {
            let exp = opt_date(&m, "exp")?.ok_or(AuthError::Forbidden("missing_exp"))?;
            let nbf = opt_date(&m, "nbf")?;
            let iat = opt_date(&m, "iat")?;
            let aud = match m.get("aud") {
                None | Some(Value::Null) => return Err(AuthError::Forbidden("missing_aud")),
                Some(Value::String(s)) => vec![s.clone()],
                Some(v) => string_list(v).ok_or(AuthError::Forbidden("bad_claims"))?,
            };
            let scopes = match m.get("scopes") {
                None | Some(Value::Null) => Vec::new(),
                Some(v) => string_list(v).ok_or(AuthError::Forbidden("bad_claims"))?,
            };
            let duo_seat_count = match m.get("duo_seat_count") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            Ok(Claims {
                iss: opt_string(&m, "iss")?,
                sub: opt_string(&m, "sub")?,
                jti: opt_string(&m, "jti")?,
                gitlab_realm: opt_string(&m, "gitlab_realm")?,
                gitlab_instance_id: opt_string(&m, "gitlab_instance_id")?,
                aud,
                exp,
                nbf,
                iat,
                scopes,
                duo_seat_count,
            })
        }
    }

    /// Both readings of `json`: the claims (or error) and the `jti` the Envoy path compares.
    fn both(json: &[u8]) -> [(Result<Claims, AuthError>, Option<String>); 2] {
        let new = match Payload::parse(json) {
            Ok(p) => {
                let jti = p.jti().map(str::to_string);
                (p.into_claims(), jti)
            }
            Err(e) => (Err(e), None),
        };
        let old = match oracle::parse(json) {
            Ok(m) => {
                let jti = m.get("jti").and_then(Value::as_str).map(str::to_string);
                (oracle::claims(m), jti)
            }
            Err(e) => (Err(e), None),
        };
        [new, old]
    }

    /// Asserts that both readings agree on `json`; returns the verdict.
    fn agree(json: &[u8]) -> Result<Claims, AuthError> {
        let [new, old] = both(json);
        assert_eq!(new, old, "{}", String::from_utf8_lossy(json));
        new.0
    }

    const BASE: &str = r#"{"jti":"8b1e6c5e-2d4a-4f0e-9a7b-000000000001","aud":["gitlab-ai-gateway","other-service"],"sub":"instance-uuid-1","iss":"https://gitlab.example.com","iat":1739952000,"nbf":1739951995,"exp":1739955600,"gitlab_realm":"self-managed","gitlab_instance_id":"iid","scopes":["complete_code","generate_code"],"duo_seat_count":"10","skip_usage_cutoff":false,"extra":{"a":[1,{"b":null}]}}"#;

    const CLAIMS: [&str; 12] = [
        "exp",
        "nbf",
        "iat",
        "aud",
        "scopes",
        "iss",
        "sub",
        "jti",
        "gitlab_realm",
        "gitlab_instance_id",
        "duo_seat_count",
        "unknown",
    ];

    /// Member values of every JSON type and the numbers at the edges of the date rules.
    const VALUES: &[&str] = &[
        "null",
        "true",
        "false",
        "0",
        "-0",
        "-0.0",
        "1",
        "-1",
        "0.5",
        "-0.5",
        "1.9",
        "1739955600",
        "1739955600.9",
        "1e3",
        "1E+3",
        "1e-400",
        "1e300",
        "18446744073709551615",
        "18446744073709551616",
        "18446744073709551615.0",
        "1.8446744073709550e19",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        r#""""#,
        r#""gitlab-ai-gateway""#,
        r#""gitlab\u002dai-gateway""#,
        r#""\ud83d\ude00""#,
        r#""1739955600""#,
        "[]",
        r#"["gitlab-ai-gateway"]"#,
        r#"["gitlab-ai-gateway","x"]"#,
        r#"["gitlab-ai-gateway",1]"#,
        r#"["gitlab-ai-gateway",null]"#,
        r#"[null]"#,
        r#"[["gitlab-ai-gateway"]]"#,
        r#"[{"a":"b"}]"#,
        "[1739955600]",
        "{}",
        r#"{"gitlab-ai-gateway":true}"#,
        r#"{"a":[1,2,{"b":["c"]}]}"#,
    ];

    fn with_member(name: &str, values: &[&str]) -> String {
        let mut json = BASE[..BASE.len() - 1].to_string();
        for v in values {
            json.push_str(&format!(r#","{name}":{v}"#));
        }
        json.push('}');
        json
    }

    #[test]
    fn base_payload() {
        let c = agree(BASE.as_bytes()).unwrap();
        assert_eq!(c.aud, ["gitlab-ai-gateway", "other-service"]);
        assert_eq!(c.exp, 1_739_955_600);
        assert_eq!(c.duo_seat_count.as_deref(), Some("10"));
    }

    /// Every claim with every value, once and as the last of a repeated member (the last one
    /// counts), and without the base's member.
    #[test]
    fn every_claim_every_value_and_repeats() {
        let mut verdicts = std::collections::BTreeSet::new();
        for name in CLAIMS {
            for v in VALUES {
                verdicts.insert(format!("{:?}", agree(with_member(name, &[v]).as_bytes())));
                for first in VALUES {
                    let _ = agree(with_member(name, &[first, v]).as_bytes());
                }
            }
            let only = format!(r#"{{"{name}":1}}"#);
            let _ = agree(only.as_bytes());
        }
        // The corpus reaches every outcome.
        for reason in ["bad_claims", "missing_exp", "missing_aud"] {
            assert!(verdicts.iter().any(|v| v.contains(reason)), "{reason}");
        }
        assert!(verdicts.iter().any(|v| v.starts_with("Ok")));
    }

    #[test]
    fn edge_payloads() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let mut cases: Vec<Vec<u8>> = [
            "",
            " ",
            "{}",
            "[]",
            "null",
            "\"x\"",
            "1",
            r#"{"exp":1,"aud":"gitlab-ai-gateway"}"#,
            r#" {"exp" : 1 , "aud" : "gitlab-ai-gateway"} "#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway"} x"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway"}{}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway",}"#,
            r#"{"exp":1,,"aud":"gitlab-ai-gateway"}"#,
            r#"{"exp":1 "aud":"gitlab-ai-gateway"}"#,
            r#"{"exp":01,"aud":"gitlab-ai-gateway"}"#,
            r#"{"exp":1.,"aud":"gitlab-ai-gateway"}"#,
            r#"{"exp":+1,"aud":"gitlab-ai-gateway"}"#,
            r#"{"exp":1e400,"aud":"gitlab-ai-gateway"}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":1e400}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":-1e400}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":[1e400]}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":{"y":1e400}}"#,
            r#"{"exp":1,"aud":["gitlab-ai-gateway",1e400]}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":NaN}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":Infinity}"#,
            r#"{"\u0065xp":1,"aud":"gitlab-ai-gateway"}"#,
            r#"{"exp":1,"a\u0075d":"gitlab-ai-gateway"}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":"\ud800"}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":"\udc00\ud800"}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","\ud800":1}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","sub":"\ud800"}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":"\x"}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":"\u12"}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":{"y":"\q"}}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":{1:2}}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":{"y"}}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":[1,]}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":tru}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","x":nul}"#,
            r#"{"exp":"1","aud":"gitlab-ai-gateway","x":nul}"#,
            r#"{"exp":1,"aud":5,"x":[}"#,
            r#"{"aud":"gitlab-ai-gateway","exp":null,"exp":1}"#,
            r#"{"aud":"gitlab-ai-gateway","exp":1,"exp":null}"#,
            r#"{"aud":"gitlab-ai-gateway","exp":[],"exp":1}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","duo_seat_count":1.50}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","duo_seat_count":1e2}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","duo_seat_count":-3}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","duo_seat_count":-0}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","duo_seat_count":12345678901234567890123}"#,
            r#"{"exp":1,"aud":"gitlab-ai-gateway","duo_seat_count":"7","duo_seat_count":[7]}"#,
            "{\"exp\":1,\"aud\":\"gitlab-ai-gateway\",\"x\":\"\u{1}\"}",
            "{\"exp\":1,\"aud\":\"gitlab-ai-gateway\",\"x\":\"\t\"}",
            "{\"exp\":1,\"aud\":\"gitlab-ai-gateway\",\"x\":\"\u{7f}é😀\"}",
            "\u{feff}{\"exp\":1,\"aud\":\"gitlab-ai-gateway\"}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        // Nesting up to serde_json's limit of 128, in an ignored member and in a claim.
        for n in [126, 127, 128, 129, 300] {
            for name in ["x", "aud", "scopes", "exp"] {
                cases.push(
                    format!(
                        r#"{{"exp":1,"aud":"gitlab-ai-gateway","{name}":{}}}"#,
                        deep(n)
                    )
                    .into_bytes(),
                );
            }
            cases.push(
                format!(
                    r#"{{"exp":1,"aud":"gitlab-ai-gateway","x":{}1{}}}"#,
                    r#"{"a":"#.repeat(n),
                    "}".repeat(n)
                )
                .into_bytes(),
            );
        }
        // Bytes that are not UTF-8, in an ignored member, a claim, a key and outside strings.
        for (at, bytes) in [
            (r#""x":"#, &b"\"\xff\""[..]),
            (r#""x":"#, &b"[\"a\",\"\xc3\x28\"]"[..]),
            (r#""sub":"#, &b"\"\xed\xa0\x80\""[..]),
            (r#""x":"#, &b"\"\xf4\x90\x80\x80\""[..]),
            ("", &b"\"\xff\":1,"[..]),
            (r#""x":"#, &b"\xff"[..]),
        ] {
            let mut json = format!(r#"{{"exp":1,"aud":"gitlab-ai-gateway",{at}"#).into_bytes();
            json.extend_from_slice(bytes);
            if !at.is_empty() {
                json.push(b'}');
            } else {
                json.extend_from_slice(br#""y":2}"#);
            }
            cases.push(json);
        }
        let mut ok = 0;
        for c in &cases {
            ok += agree(c).is_ok() as usize;
        }
        assert!(ok > 10, "{ok}");
    }

    /// Every single-byte deletion and substitution (by JSON's structural characters and a few
    /// others) of the base payload.
    #[test]
    fn mutations_of_a_payload() {
        let base = with_member("duo_seat_count", &["1.5", r#""a\"\\b\u00e9""#]).into_bytes();
        let subst = b"\"\\,:[]{}0-+.eE nt\x00\x7f\xff\xc3";
        for i in 0..base.len() {
            let mut cut = base.clone();
            cut.remove(i);
            let _ = agree(&cut);
            for &b in subst {
                let mut m = base.clone();
                m[i] = b;
                let _ = agree(&m);
                let mut m = base.clone();
                m.insert(i, b);
                let _ = agree(&m);
            }
        }
    }
}
