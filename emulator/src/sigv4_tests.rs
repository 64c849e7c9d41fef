//! Tests for the SigV4 verifier: every case of the AWS v4 signing test suite
//! (`tests/fixtures/aws-sigv4-test-suite`, header signing) and every Bedrock
//! vector (`tests/fixtures/bedrock-sigv4.json`), plus hostile inputs.

use super::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A raw request parsed from a test-suite `.txt` file.
struct RawRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawRequest {
    fn input(&self) -> SigningInput<'_> {
        SigningInput {
            method: &self.method,
            raw_path: &self.path,
            raw_query: &self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

/// Parse `METHOD TARGET HTTP/1.1`, headers (with obs-fold continuation
/// lines), blank line, body. The target may contain raw spaces and UTF-8.
fn parse_raw(text: &str) -> RawRequest {
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b),
        None => (text.trim_end_matches('\n'), ""),
    };
    let mut lines = head.split('\n');
    let first = lines.next().unwrap();
    let (method, rest) = first.split_once(' ').unwrap();
    let (target, _version) = rest.rsplit_once(' ').unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            let last = headers.last_mut().unwrap();
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (n, v) = line.split_once(':').unwrap();
        headers.push((n.to_string(), v.to_string()));
    }
    RawRequest {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{dir:?}/{name}: {e}"))
}

#[test]
fn aws_test_suite_every_case() {
    let root = fixtures().join("aws-sigv4-test-suite");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("context.json").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 35, "found only {} cases", dirs.len());
    let mut checked = 0;
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let ctx: Value = serde_json::from_str(&read(dir, "context.json")).unwrap();
        let normalize = ctx["normalize"].as_bool().unwrap();
        let sign_body = ctx["sign_body"].as_bool().unwrap_or(false);
        let omit_token = ctx["omit_session_token"].as_bool().unwrap_or(false);
        let akid = ctx["credentials"]["access_key_id"].as_str().unwrap();
        let secret = ctx["credentials"]["secret_access_key"].as_str().unwrap();
        let token = ctx["credentials"]["token"].as_str();
        let region = ctx["region"].as_str().unwrap();
        let service = ctx["service"].as_str().unwrap();
        let now = parse_rfc3339_utc(ctx["timestamp"].as_str().unwrap()).unwrap();
        let amz_date = format_amz_date(now);

        // 1. Build the request from request.txt the way a signer does.
        let mut req = parse_raw(&read(dir, "request.txt"));
        req.headers.push(("X-Amz-Date".into(), amz_date.clone()));
        if sign_body {
            req.headers
                .push(("x-amz-content-sha256".into(), hex_sha256(&req.body)));
        }
        let mut signed: Vec<String> = req.headers.iter().map(|(n, _)| n.to_lowercase()).collect();
        if let (Some(tok), false) = (token, omit_token) {
            req.headers
                .push(("X-Amz-Security-Token".into(), tok.to_string()));
            signed.push("x-amz-security-token".into());
        }
        signed.sort();
        signed.dedup();
        let creq = canonical_request(&req.input(), &signed, normalize, &hex_sha256(&req.body));
        assert_eq!(
            creq,
            read(dir, "header-canonical-request.txt"),
            "{name}: canonical request"
        );
        let scope = format!("{}/{region}/{service}/aws4_request", &amz_date[..8]);
        let sts = string_to_sign(&amz_date, &scope, &creq);
        assert_eq!(
            sts,
            read(dir, "header-string-to-sign.txt"),
            "{name}: string to sign"
        );
        let sig = signature(&signing_key(secret, &amz_date[..8], region, service), &sts);
        assert_eq!(
            sig,
            read(dir, "header-signature.txt").trim(),
            "{name}: signature"
        );

        // 2. Verify the signed request exactly as published.
        let signed_req = parse_raw(&read(dir, "header-signed-request.txt"));
        let mut verifier = Verifier {
            credentials: [(akid.to_string(), secret.to_string())].into(),
            region: Some(region.to_string()),
            service: service.to_string(),
            max_skew_secs: 900,
            normalize,
            require_signed_token: true,
        };
        let result = verifier.verify(&signed_req.input(), now);
        if omit_token {
            // Token present but unsigned: Bedrock policy rejects, the plain
            // SigV4 maths accepts.
            let err = result.unwrap_err();
            assert_eq!(err.kind, SigErrorKind::InvalidSignature, "{name}");
            verifier.require_signed_token = false;
            let ok = verifier.verify(&signed_req.input(), now).unwrap();
            assert_eq!(ok.canonical_request, creq, "{name}");
        } else {
            let ok = result.unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(ok.canonical_request, creq, "{name}");
        }
        // Using the opposite normalisation flag must still behave per flag.
        let other = canonical_request(&req.input(), &signed, !normalize, &hex_sha256(&req.body));
        let path_is_plain = normalize_path(&req.path) == req.path;
        assert_eq!(
            other == creq,
            path_is_plain,
            "{name}: normalize flag effect"
        );
        checked += 1;
    }
    assert_eq!(checked, dirs.len());
}

fn bedrock_cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("bedrock-sigv4.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

/// Build the wire request of one Bedrock vector.
fn bedrock_request(case: &Value) -> RawRequest {
    let r = &case["request"];
    let mut headers: Vec<(String, String)> =
        vec![("Host".into(), r["host"].as_str().unwrap().to_string())];
    for (k, v) in r["headers"].as_object().unwrap() {
        headers.push((k.clone(), v.as_str().unwrap().to_string()));
    }
    for (k, v) in case["signed_headers"].as_object().unwrap() {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)) {
            headers.push((k.clone(), v.as_str().unwrap().to_string()));
        }
    }
    if let Some(tok) = case["credentials"]["session_token"].as_str() {
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("x-amz-security-token"))
        {
            headers.push(("X-Amz-Security-Token".into(), tok.to_string()));
        }
    }
    let path = r["path"].as_str().unwrap();
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    RawRequest {
        method: r["method"].as_str().unwrap().to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: r["body"].as_str().unwrap().as_bytes().to_vec(),
    }
}

#[test]
fn bedrock_vectors_every_case() {
    let cases = bedrock_cases();
    assert!(cases.len() >= 8);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let req = bedrock_request(case);
        let auth = parse_authorization(case["authorization"].as_str().unwrap()).unwrap();
        let body_hash = hex_sha256(&req.body);
        assert_eq!(body_hash, case["body_sha256"].as_str().unwrap(), "{name}");
        let creq = canonical_request(&req.input(), &auth.signed_headers, true, &body_hash);
        assert_eq!(
            creq,
            case["canonical_request"].as_str().unwrap(),
            "{name}: canonical request"
        );
        let now = parse_rfc3339_utc(case["timestamp"].as_str().unwrap()).unwrap();
        let amz_date = format_amz_date(now);
        let sts = string_to_sign(&amz_date, &auth.scope(), &creq);
        assert_eq!(
            sts,
            case["string_to_sign"].as_str().unwrap(),
            "{name}: string to sign"
        );
        let akid = case["credentials"]["access_key_id"].as_str().unwrap();
        let secret = case["credentials"]["secret_access_key"].as_str().unwrap();
        let region = case["region"].as_str().unwrap();
        assert_eq!(
            authorization_header(
                akid,
                secret,
                &amz_date,
                region,
                "bedrock",
                &auth.signed_headers,
                &creq
            ),
            case["authorization"].as_str().unwrap(),
            "{name}: authorization"
        );
        let verifier = Verifier::bedrock(
            [(akid.to_string(), secret.to_string())].into(),
            Some(region.to_string()),
        );
        let ok = verifier
            .verify(&req.input(), now + 60)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(ok.access_key_id, akid);
        // The model id label is double-encoded in the canonical URI.
        if req.path.contains("%3A") {
            assert!(creq.contains("%253A"), "{name}");
        }
    }
}

/// The first Bedrock vector as a mutable request, plus its verifier and time.
fn base_case() -> (RawRequest, Verifier, i64) {
    let case = bedrock_cases().remove(0);
    let req = bedrock_request(&case);
    let now = parse_rfc3339_utc(case["timestamp"].as_str().unwrap()).unwrap();
    let verifier = Verifier::bedrock(
        [(
            "AKIDEXAMPLE".to_string(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
        )]
        .into(),
        Some(case["region"].as_str().unwrap().to_string()),
    );
    (req, verifier, now)
}

fn set_header(req: &mut RawRequest, name: &str, value: &str) {
    req.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    req.headers.push((name.to_string(), value.to_string()));
}

fn auth_of(req: &RawRequest) -> String {
    header_values(&req.headers, "authorization")[0].to_string()
}

#[test]
fn tampered_body_is_a_mismatch_with_canonical_request() {
    let (mut req, v, now) = base_case();
    req.body.push(b' ');
    let err = v.verify(&req.input(), now).unwrap_err();
    assert_eq!(err.kind, SigErrorKind::InvalidSignature);
    assert_eq!(err.message, MISMATCH_MESSAGE);
    assert!(err.canonical_request.unwrap().contains("%253A0/invoke"));
    assert!(err.string_to_sign.unwrap().starts_with(ALGORITHM));
}

#[test]
fn raw_colon_on_the_wire_is_not_the_same_path() {
    let (mut req, v, now) = base_case();
    req.path = req.path.replace("%3A", ":");
    let err = v.verify(&req.input(), now).unwrap_err();
    assert_eq!(err.message, MISMATCH_MESSAGE);
    assert!(err.canonical_request.unwrap().contains("v1%3A0/invoke"));
}

#[test]
fn tampered_signed_header_is_a_mismatch() {
    let (mut req, v, now) = base_case();
    set_header(&mut req, "Accept", "text/plain");
    assert_eq!(
        v.verify(&req.input(), now).unwrap_err().kind,
        SigErrorKind::InvalidSignature
    );
    // Unsigned headers may change freely.
    let (mut req, v, now) = base_case();
    set_header(&mut req, "X-Forwarded-For", "10.0.0.1");
    assert!(v.verify(&req.input(), now).is_ok());
}

#[test]
fn unknown_access_key() {
    let (mut req, v, now) = base_case();
    let a = auth_of(&req).replace("AKIDEXAMPLE", "AKIDOTHER");
    set_header(&mut req, "Authorization", &a);
    let err = v.verify(&req.input(), now).unwrap_err();
    assert_eq!(err.kind, SigErrorKind::UnrecognizedClient);
    assert_eq!(err.message, UNRECOGNIZED_MESSAGE);
}

#[test]
fn wrong_secret_is_a_mismatch() {
    let (req, mut v, now) = base_case();
    v.credentials
        .insert("AKIDEXAMPLE".into(), "another-secret".into());
    assert_eq!(
        v.verify(&req.input(), now).unwrap_err().message,
        MISMATCH_MESSAGE
    );
}

#[test]
fn clock_window_is_15_minutes() {
    let (req, v, now) = base_case();
    assert!(v.verify(&req.input(), now + 899).is_ok());
    assert!(v.verify(&req.input(), now - 899).is_ok());
    let err = v.verify(&req.input(), now + 901).unwrap_err();
    assert_eq!(err.kind, SigErrorKind::InvalidSignature);
    assert!(
        err.message
            .starts_with("Signature expired: 20261127T104918Z is now earlier than"),
        "{}",
        err.message
    );
    let err = v.verify(&req.input(), now - 901).unwrap_err();
    assert!(
        err.message.starts_with("Signature not yet current"),
        "{}",
        err.message
    );
}

#[test]
fn scope_checks() {
    let (mut req, v, now) = base_case();
    let a = auth_of(&req).replace("/bedrock/", "/bedrock-runtime/");
    set_header(&mut req, "Authorization", &a);
    let err = v.verify(&req.input(), now).unwrap_err();
    assert_eq!(
        err.message,
        "Credential should be scoped to correct service: 'bedrock'. "
    );

    let (mut req, v, now) = base_case();
    let a = auth_of(&req).replace("/ap-northeast-1/", "/us-east-1/");
    set_header(&mut req, "Authorization", &a);
    let err = v.verify(&req.input(), now).unwrap_err();
    assert!(err.message.contains("valid region"), "{}", err.message);

    // Without a configured region any region is accepted (signature still checked).
    let (mut req, mut v, now) = base_case();
    v.region = None;
    let a = auth_of(&req).replace("/ap-northeast-1/", "/us-east-1/");
    set_header(&mut req, "Authorization", &a);
    assert_eq!(
        v.verify(&req.input(), now).unwrap_err().message,
        MISMATCH_MESSAGE
    );

    let (mut req, v, now) = base_case();
    let a = auth_of(&req).replace("/20261127/", "/20261126/");
    set_header(&mut req, "Authorization", &a);
    let err = v.verify(&req.input(), now).unwrap_err();
    assert!(err
        .message
        .starts_with("Date in Credential scope does not match"));

    let (mut req, v, now) = base_case();
    let a = auth_of(&req).replace("aws4_request", "aws5_request");
    set_header(&mut req, "Authorization", &a);
    assert!(v
        .verify(&req.input(), now)
        .unwrap_err()
        .message
        .contains("terminator"));
}

#[test]
fn host_must_be_signed() {
    let (mut req, v, now) = base_case();
    let a = auth_of(&req).replace("content-type;host;x-amz-date", "content-type;x-amz-date");
    set_header(&mut req, "Authorization", &a);
    let err = v.verify(&req.input(), now).unwrap_err();
    assert_eq!(err.kind, SigErrorKind::InvalidSignature);
    assert!(err.message.contains("'Host'"));
}

#[test]
fn session_token_must_be_signed_if_present() {
    let (mut req, v, now) = base_case();
    set_header(&mut req, "X-Amz-Security-Token", "FwoGZXIvYXdzEXAMPLE");
    let err = v.verify(&req.input(), now).unwrap_err();
    assert!(err.message.contains("X-Amz-Security-Token"));
}

#[test]
fn missing_or_malformed_authorization() {
    let (mut req, v, now) = base_case();
    req.headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
    assert_eq!(
        v.verify(&req.input(), now).unwrap_err().kind,
        SigErrorKind::MissingAuthenticationToken
    );
    for bad in [
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/ap-northeast-1/bedrock/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/bedrock/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE//ap-northeast-1/bedrock/aws4_request, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=A/B/C/D/E, SignedHeaders=, Signature=00",
        "AWS4-HMAC-SHA256 garbage",
        "AWS4-HMAC-SHA1 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00",
        "",
        "\u{0}\u{0}",
    ] {
        let (mut req, v, now) = base_case();
        set_header(&mut req, "Authorization", bad);
        let err = v.verify(&req.input(), now).unwrap_err();
        assert_eq!(err.kind, SigErrorKind::IncompleteSignature, "{bad:?}: {err:?}");
    }
}

#[test]
fn missing_or_bad_amz_date() {
    let (mut req, v, now) = base_case();
    req.headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("x-amz-date"));
    assert_eq!(
        v.verify(&req.input(), now).unwrap_err().kind,
        SigErrorKind::IncompleteSignature
    );
    for bad in [
        "2026-11-27T10:49:18Z",
        "20261327T104918Z",
        "20261127T104918",
        "２０２６",
    ] {
        let (mut req, v, now) = base_case();
        set_header(&mut req, "X-Amz-Date", bad);
        assert!(v.verify(&req.input(), now).is_err(), "{bad}");
    }
}

#[test]
fn canonical_pieces() {
    assert_eq!(canonical_uri("", true), "/");
    assert_eq!(
        canonical_uri("/model/a%3Ab/invoke", true),
        "/model/a%253Ab/invoke"
    );
    assert_eq!(
        canonical_uri("/model/a:b/invoke", true),
        "/model/a%3Ab/invoke"
    );
    assert_eq!(canonical_uri("/a b/ü", false), "/a%20b/%C3%BC");
    assert_eq!(normalize_path("/a/./b/../c//"), "/a/c/");
    assert_eq!(normalize_path("/../../"), "/");
    assert_eq!(normalize_path("/a/b/.."), "/a/");
    assert_eq!(canonical_query("b=2&a=1&a=0&c"), "a=0&a=1&b=2&c=");
    assert_eq!(canonical_query("x=%zz&y=%2"), "x=%25zz&y=%252");
    assert_eq!(canonical_query("k=a+b%20c"), "k=a%2Bb%20c");
    assert_eq!(canonical_header_value("  a \t  b  "), "a b");
    assert_eq!(percent_decode("%41%4a%"), b"AJ%".to_vec());
}

#[test]
fn dates_round_trip() {
    for t in [0i64, 951782400, 1440938160, 1795776558, 4102444799] {
        assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t));
    }
    assert_eq!(format_amz_date(1440938160), "20150830T123600Z");
    assert_eq!(parse_rfc3339_utc("2015-08-30T12:36:00Z"), Some(1440938160));
}

#[test]
fn constant_time_compare() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}

/// The Bedrock vector signed with a session token, and what it was signed with.
fn session_case() -> (RawRequest, Verifier, i64, String, String, String) {
    let case = bedrock_cases()
        .into_iter()
        .find(|c| c["credentials"]["session_token"].is_string())
        .unwrap();
    let req = bedrock_request(&case);
    let now = parse_rfc3339_utc(case["timestamp"].as_str().unwrap()).unwrap();
    let c = &case["credentials"];
    let s = |k: &str| c[k].as_str().unwrap().to_string();
    let verifier = Verifier::bedrock(HashMap::new(), None);
    (
        req,
        verifier,
        now,
        s("access_key_id"),
        s("secret_access_key"),
        s("session_token"),
    )
}

#[test]
fn temporary_credentials_need_their_token_and_expire() {
    let (req, v, now, akid, secret, token) = session_case();
    let temp = |expires_at: i64, token: &str| {
        let (akid, secret, token) = (akid.clone(), secret.clone(), token.to_string());
        move |k: &str| {
            if k == akid {
                KeyLookup::Temporary {
                    secret: secret.clone(),
                    session_token: token.clone(),
                    expires_at,
                }
            } else {
                KeyLookup::Unknown
            }
        }
    };
    // Valid until the expiration second.
    let ok = v
        .verify_with(&req.input(), now, &temp(now + 1, &token))
        .unwrap();
    assert_eq!(ok.access_key_id, akid);
    let err = v
        .verify_with(&req.input(), now, &temp(now, &token))
        .unwrap_err();
    assert_eq!(err.kind, SigErrorKind::ExpiredToken);
    assert_eq!(err.kind.error_type(), "ExpiredTokenException");
    assert_eq!(err.kind.status(), 403);
    assert_eq!(err.message, EXPIRED_TOKEN_MESSAGE);
    // A different issued token (or none) is not recognized, expired or not.
    let err = v
        .verify_with(&req.input(), now, &temp(now + 60, "other-token"))
        .unwrap_err();
    assert_eq!(err.kind, SigErrorKind::UnrecognizedClient);
    let err = v
        .verify_with(&req.input(), now, &temp(now - 60, "other-token"))
        .unwrap_err();
    assert_eq!(err.kind, SigErrorKind::UnrecognizedClient);
    let (mut no_token, ..) = session_case();
    no_token
        .headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("x-amz-security-token"));
    let err = v
        .verify_with(&no_token.input(), now, &temp(now + 60, &token))
        .unwrap_err();
    assert_eq!(err.kind, SigErrorKind::UnrecognizedClient);
    // Still a real signature check: the wrong secret is a mismatch.
    let wrong = |_: &str| KeyLookup::Temporary {
        secret: "wrong".into(),
        session_token: token.clone(),
        expires_at: now + 60,
    };
    assert_eq!(
        v.verify_with(&req.input(), now, &wrong)
            .unwrap_err()
            .message,
        MISMATCH_MESSAGE
    );
    // A static key ignores the session token, as before.
    let stat = |_: &str| KeyLookup::Static {
        secret: secret.clone(),
    };
    assert!(v.verify_with(&req.input(), now, &stat).is_ok());
    assert_eq!(
        v.verify(&req.input(), now).unwrap_err().kind,
        SigErrorKind::UnrecognizedClient
    );
}
