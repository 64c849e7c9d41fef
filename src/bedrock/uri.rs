//! The InvokeModel / InvokeModelWithResponseStream wire path (and the knowledge base
//! `Retrieve` path, [`retrieve_path`]).
//!
//! Contract: `docs/bedrock-contract.md#invoke-model` / `#invoke-with-response-stream` (paths) and
//! `#model-ids` (model id forms and encoding). Like botocore (`percent_encode`, safe chars `-._~`),
//! every byte of the model id except `A-Za-z0-9-._~` is percent-encoded, so `:` becomes `%3A` and
//! `/` becomes `%2F`. A model id can therefore never add a path segment, a query, a fragment or a
//! dot segment to the upstream path (a bare `.` or `..` id, which `-._~` would leave as a dot
//! segment, is written as `%2E`/`%2E%2E`). The SigV4 signer later encodes this wire path once more
//! (`%253A`).

use std::fmt::Write;

/// `/model/{model_id percent-encoded}/invoke` (or `/invoke-with-response-stream` when `stream`).
pub fn invoke_path(model_id: &str, stream: bool) -> String {
    let op = if stream {
        "invoke-with-response-stream"
    } else {
        "invoke"
    };
    let mut out = String::with_capacity(model_id.len() * 3 + 8 + op.len());
    out.push_str("/model/");
    if model_id == "." || model_id == ".." {
        // A bare dot segment would be removed by path normalization (here or upstream).
        for _ in 0..model_id.len() {
            out.push_str("%2E");
        }
    } else {
        percent_encode_into(model_id, &mut out);
    }
    out.push('/');
    out.push_str(op);
    out
}

/// `/knowledgebases/{knowledge_base_id percent-encoded}/retrieve`: the Agents for Amazon Bedrock
/// Runtime `Retrieve` path (docs/bedrock-contract.md#retrieve). The id is a URI label like a
/// model id, encoded the same way, so it can never add a segment, a query or a dot segment.
pub fn retrieve_path(knowledge_base_id: &str) -> String {
    let mut out = String::with_capacity(knowledge_base_id.len() * 3 + 26);
    out.push_str("/knowledgebases/");
    if knowledge_base_id == "." || knowledge_base_id == ".." {
        for _ in 0..knowledge_base_id.len() {
            out.push_str("%2E");
        }
    } else {
        percent_encode_into(knowledge_base_id, &mut out);
    }
    out.push_str("/retrieve");
    out
}

/// Percent-encodes every byte except the RFC 3986 unreserved set `A-Za-z0-9-._~`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    percent_encode_into(s, &mut out);
    out
}

fn percent_encode_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foundation_model_ids() {
        assert_eq!(
            invoke_path("anthropic.claude-3-5-sonnet-20240620-v1:0", false),
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/invoke"
        );
        assert_eq!(
            invoke_path("anthropic.claude-3-haiku-20240307-v1:0", true),
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream"
        );
        assert_eq!(
            invoke_path("anthropic.claude-v2", false),
            "/model/anthropic.claude-v2/invoke"
        );
    }

    #[test]
    fn cross_region_profiles() {
        for prefix in ["us", "eu", "apac", "global"] {
            let id = format!("{prefix}.anthropic.claude-sonnet-4-20250514-v1:0");
            assert_eq!(
                invoke_path(&id, true),
                format!(
                    "/model/{prefix}.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream"
                )
            );
        }
    }

    #[test]
    fn arns() {
        assert_eq!(
            invoke_path(
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
                false
            ),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4e5f6/invoke"
        );
        assert_eq!(
            invoke_path(
                "arn:aws:bedrock:us-west-2:123456789012:provisioned-model/abc123xyz",
                true
            ),
            "/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Aprovisioned-model%2Fabc123xyz/invoke-with-response-stream"
        );
        assert_eq!(
            invoke_path(
                "arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
                false
            ),
            "/model/arn%3Aaws-us-gov%3Abedrock%3Aus-gov-west-1%3A%3Afoundation-model%2Fanthropic.claude-3-haiku-20240307-v1%3A0/invoke"
        );
    }

    #[test]
    fn hostile_ids_stay_inside_one_segment() {
        let p = invoke_path("../x?y#z", false);
        assert_eq!(p, "/model/..%2Fx%3Fy%23z/invoke");
        for id in [
            "../../admin",
            "a/../../b",
            "x?y=1",
            "x#y",
            "%2e%2e",
            "a b",
            "a\r\nHost: evil",
            "a\0b",
            "http://evil.example/",
            "@evil",
            "a+b&c=d;e,f",
        ] {
            let p = invoke_path(id, false);
            let seg = p
                .strip_prefix("/model/")
                .and_then(|r| r.strip_suffix("/invoke"))
                .unwrap();
            assert!(
                seg.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                "{id:?} -> {p}"
            );
            assert!(!seg.contains('/'), "{p}");
        }
        assert_eq!(invoke_path("%2e%2e", false), "/model/%252e%252e/invoke");
        assert_eq!(invoke_path("..", false), "/model/%2E%2E/invoke");
        assert_eq!(
            invoke_path(".", true),
            "/model/%2E/invoke-with-response-stream"
        );
        assert_eq!(invoke_path("...", false), "/model/.../invoke");
        assert_eq!(invoke_path("", false), "/model//invoke");
    }

    #[test]
    fn retrieve_paths() {
        assert_eq!(
            retrieve_path("ABCDEFGHIJ"),
            "/knowledgebases/ABCDEFGHIJ/retrieve"
        );
        assert_eq!(
            retrieve_path("arn:aws:bedrock:us-east-1:123456789012:knowledge-base/ABCDEFGHIJ"),
            "/knowledgebases/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aknowledge-base%2FABCDEFGHIJ/retrieve"
        );
        assert_eq!(
            retrieve_path("../x?y"),
            "/knowledgebases/..%2Fx%3Fy/retrieve"
        );
        assert_eq!(retrieve_path(".."), "/knowledgebases/%2E%2E/retrieve");
    }

    #[test]
    fn unicode_is_encoded_bytewise() {
        assert_eq!(
            invoke_path("モデル", false),
            "/model/%E3%83%A2%E3%83%87%E3%83%AB/invoke"
        );
        assert_eq!(percent_encode("é~_.-aZ9"), "%C3%A9~_.-aZ9");
    }
}
