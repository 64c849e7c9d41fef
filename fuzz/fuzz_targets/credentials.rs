//! AWS credentials fetched by the filter (`src/bedrock/credentials.rs`): the credential chain
//! from the environment, the web identity / container-endpoint / IMDSv2 fetch state machine fed
//! fuzzed answers, the credentials JSON, the STS XML reader, the shared-data record and RFC 3339
//! times.
//!
//! Input: NUL-separated `control \0 env \0 answer1 \0 answer2 \0 answer3`. `env`: `NAME=VALUE`
//! lines. `control` (hex text) bytes 1..4 pick the status of each answer (mostly 200); bytes 4..12 a time.
//! The answers are, in order, what the fetch asks for: the credentials JSON (container), or the
//! token file and the credentials JSON (container with `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`),
//! or the token file and the STS XML (web identity), or the IMDS token, role list and
//! credentials JSON.
//!
//! Properties:
//! * no secret (secret key, session token, container authorization token, web identity token,
//!   IMDS token) appears in any error, step or `Debug` output: the same run with every secret
//!   replaced by another of the same shape (`rotate`) prints exactly the same (for STS answers
//!   that quote the token itself, only the absence of a panic is checked: the token is redacted
//!   in one run and, being another token, not in the other);
//! * every HTTP call has a method, an authority, a visible-ASCII path starting with `/`, and
//!   header values without control characters; a fetch ends (`Done`/`Failed`) and stays ended;
//!   `Done` credentials are not expired and satisfy the parser's rules;
//! * parsed credentials survive the shared-data record unchanged;
//! * `parse_rfc3339` accepts its own `format_rfc3339` output and gives the same time back;
//!   refresh times fall between the fetch and the expiry.

#![no_main]

use duo_bedrock_filter::bedrock::credentials::{
    deserialize_shared, format_rfc3339, parse_credentials_json, parse_rfc3339,
    parse_sts_credentials, parse_sts_error, refresh_at, retry_at, serialize_shared,
    source_from_env, xml_leaves, ContainerAuth, Fetch, Fetched, Source, Step,
};
use duo_bedrock_filter_fuzz::{env_fn, env_lines, field, fields, hex, number, rotate, text};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const NOW: u64 = 1_790_000_000;
const STATUSES: [u16; 8] = [200, 200, 200, 200, 404, 500, 0, 403];
const SECRET_VARS: [&str; 4] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
];

/// An STS XML answer, and the same with the content of its secret elements rotated.
fn sts_pair(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let a = text(body);
    let mut b = a.clone();
    for tag in ["SecretAccessKey", "SessionToken"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut from = 0;
        while let Some(start) = b[from..].find(&open).map(|i| from + i + open.len()) {
            let Some(end) = b[start..].find(&close).map(|i| start + i) else {
                break;
            };
            // Text only: rotating letters inside markup would change tag or entity names.
            if !b[start..end].contains(['<', '&']) {
                let rotated = rotate(&b[start..end]);
                b.replace_range(start..end, &rotated);
            }
            from = end;
        }
    }
    (a.into_bytes(), b.into_bytes())
}

/// A credentials JSON answer normalized, and the same with its secrets rotated.
fn creds_pair(body: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(body) else {
        return (body.to_vec(), body.to_vec());
    };
    let a = serde_json::to_vec(&m).expect("serializable");
    for k in ["SecretAccessKey", "Token"] {
        if let Some(Value::String(s)) = m.get_mut(k) {
            *s = rotate(s);
        }
    }
    (a, serde_json::to_vec(&m).expect("serializable"))
}

fn check_fetched(f: &Fetched) {
    let c = &f.creds;
    assert!(!c.access_key_id.is_empty() && c.access_key_id.len() <= 256);
    assert!(c.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric()));
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| (b'!'..=b'~').contains(&b));
    assert!(printable(&c.secret_access_key) && c.secret_access_key.len() <= 256);
    assert!(c.session_token.as_deref().is_none_or(printable));
    assert_eq!(deserialize_shared(&serialize_shared(f)).as_ref(), Some(f));
}

fn check_step(step: &Step) {
    match step {
        Step::Call(c) => {
            assert!(c.method == "GET" || c.method == "PUT" || c.method == "POST");
            assert_eq!(c.body.is_empty(), c.method != "POST");
            assert!(c.body.iter().all(|b| (b'!'..=b'~').contains(b)), "{c:?}");
            assert!(!c.authority.is_empty());
            assert!(c.path.starts_with('/'), "{c:?}");
            assert!(c.path.bytes().all(|b| (b'!'..=b'~').contains(&b)), "{c:?}");
            for (k, v) in &c.headers {
                assert!(
                    v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)),
                    "{k}"
                );
            }
        }
        Step::Done(f) => {
            check_fetched(f);
            assert!(!f.is_expired(NOW));
        }
        Step::Failed(_) => {}
    }
}

/// Runs a whole fetch; returns the `Debug` of everything it produced.
fn run(source: &Source, answers: &[(u16, Vec<u8>)]) -> Vec<String> {
    let (mut fetch, mut step) = Fetch::start(source, NOW);
    let mut log = vec![format!("{fetch:?}"), format!("{step:?}")];
    check_step(&step);
    for (status, body) in answers {
        if !matches!(step, Step::Call(_)) {
            assert!(fetch.is_finished());
            assert!(matches!(
                fetch.on_response(*status, body, NOW),
                Step::Failed(_)
            ));
            break;
        }
        step = fetch.on_response(*status, body, NOW);
        check_step(&step);
        log.push(format!("{fetch:?} {step:?}"));
    }
    log
}

fuzz_target!(|data: &[u8]| {
    let f = fields(data, 5);
    let control = &hex(field(&f, 0))[..];
    let env = env_lines(field(&f, 1));
    let status = |i: usize| STATUSES[usize::from(control.get(1 + i).copied().unwrap_or(0)) % 8];

    // The credentials JSON on its own.
    let (a, b) = creds_pair(field(&f, 2));
    let (ra, rb) = (parse_credentials_json(&a), parse_credentials_json(&b));
    assert_eq!(format!("{ra:?}"), format!("{rb:?}"), "a secret shows");
    if let Ok(fetched) = &ra {
        check_fetched(fetched);
    }
    let _ = parse_credentials_json(field(&f, 2));
    let _ = deserialize_shared(field(&f, 2));

    // The STS XML on its own.
    let _ = xml_leaves(field(&f, 2));
    let _ = parse_sts_error(field(&f, 2), "tok");
    let (a, b) = sts_pair(field(&f, 2));
    let (ra, rb) = (parse_sts_credentials(&a), parse_sts_credentials(&b));
    assert_eq!(format!("{ra:?}"), format!("{rb:?}"), "a secret shows");
    if let Ok(fetched) = &ra {
        check_fetched(fetched);
    }

    // The chain from the environment, then a whole fetch with the answers.
    let rotated: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| {
            let v = if SECRET_VARS.contains(&k.as_str()) {
                rotate(v)
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    let sa = source_from_env(env_fn(&env), "us-east-1");
    let sb = source_from_env(env_fn(&rotated), "us-east-1");
    assert_eq!(format!("{sa:?}"), format!("{sb:?}"), "a secret shows");
    if let (Ok(Some(sa)), Ok(Some(sb))) = (sa, sb) {
        let _ = (sa.kind(), sa.endpoint());
        let imds = matches!(sa, Source::Imds { .. });
        let web_identity = matches!(sa, Source::WebIdentity { .. });
        let token_file = matches!(
            sa,
            Source::Container {
                auth: ContainerAuth::File,
                ..
            }
        );
        let mut answers_a = Vec::new();
        let mut answers_b = Vec::new();
        let mut comparable = true;
        for i in 0..3 {
            let body = field(&f, 2 + i);
            let (x, y) = match (imds || web_identity || token_file, i) {
                // A token file the launcher could not serve: the body is its cause (a path and
                // an OS error, shown on purpose), not a token.
                (true, 0) if !imds && status(0) != 200 => (body.to_vec(), body.to_vec()),
                (true, 0) => {
                    let t = text(body);
                    (t.clone().into_bytes(), rotate(&t).into_bytes())
                }
                (true, 1) if imds => (body.to_vec(), body.to_vec()),
                (true, 1) if web_identity => {
                    let token = text(field(&f, 2));
                    let token = token.trim_ascii();
                    if token.len() >= 4 && text(body).contains(token) {
                        comparable = false;
                    }
                    sts_pair(body)
                }
                _ => creds_pair(body),
            };
            answers_a.push((status(i), x));
            answers_b.push((status(i), y));
        }
        let (la, lb) = (run(&sa, &answers_a), run(&sb, &answers_b));
        if comparable {
            assert_eq!(la, lb, "a secret shows");
        }
    }

    // Times.
    let t = number(control, 4, 8);
    if let Some(p) = parse_rfc3339(&text(field(&f, 3))) {
        if p <= 253_402_300_799 {
            assert_eq!(parse_rfc3339(&format_rfc3339(p)), Some(p));
        }
    }
    let bounded = t % 253_402_300_800;
    assert_eq!(
        parse_rfc3339(&format_rfc3339(bounded)),
        Some(bounded),
        "{}",
        format_rfc3339(bounded)
    );
    let _ = format_rfc3339(t);
    let fetched_at = NOW;
    let r = refresh_at(fetched_at, Some(t));
    assert!(r > fetched_at);
    if t > fetched_at + 1 {
        assert!(r <= t, "refresh at {r} after expiry {t}");
    }
    assert_eq!(refresh_at(fetched_at, None), fetched_at + 3600);
    let failures = u32::from(control.get(12).copied().unwrap_or(0));
    assert!((5..=60).contains(&(retry_at(NOW, failures) - NOW)));
});
