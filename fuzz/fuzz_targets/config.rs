//! The plugin configuration (`config::Config::load`): Envoy's plugin JSON plus the VM
//! environment (secrets, AWS credential chain, self-signed key PEMs).
//!
//! Input: NUL-separated `plugin-json \0 env` (`NAME=VALUE` lines).
//!
//! Properties:
//! * loading never panics; with every secret variable replaced by another of the same shape
//!   (`rotate`), the result prints exactly the same (`Debug` of the config or the error text):
//!   no secret reaches an error or a log line;
//! * an accepted configuration is usable: providers with a non-empty authority (no userinfo,
//!   query, fragment or space) and cluster, numeric fields in their documented ranges, a
//!   non-blank audience and default model, jwt_authn off under auth bypass, a self-signed JWKS
//!   that parses, an endpoint whose authority and region can be signed, and fixed credentials
//!   that can sign a request (a configuration that can never sign is refused at start).

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use duo_bedrock_filter::auth::KeySet;
use duo_bedrock_filter::bedrock::invoke::build;
use duo_bedrock_filter::bedrock::messages::{Message, MessagesRequest};
use duo_bedrock_filter::bedrock::credentials::{CallTo, Source};
use duo_bedrock_filter::bedrock::InvokeRequest;
use duo_bedrock_filter::config::{Config, Upstream};
use duo_bedrock_filter_fuzz::{env_fn, env_lines, field, fields, rotate};
use libfuzzer_sys::fuzz_target;

const SECRET_VARS: [&str; 4] = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

fn check(c: &Config) {
    assert!(!c.providers.is_empty());
    assert_eq!(c.providers[0].name, "Gitlab");
    for p in &c.providers {
        assert!(!p.authority.is_empty() && !p.cluster.is_empty(), "{p:?}");
        assert!(!p.authority.contains(['@', '?', '#', ' ', '/']), "{p:?}");
        assert!(!p.base_url.ends_with('/'), "{p:?}");
    }
    assert!(!c.auth.audience.trim().is_empty());
    assert!(c.auth.leeway_secs <= 300);
    assert!((1024..=65_536).contains(&c.auth.max_token_bytes));
    assert!((1..=600).contains(&c.upstream_timeout_secs));
    assert!((100..=30_000).contains(&c.key_wait_ms));
    assert!(c.token_cache_size <= 100_000);
    assert!(c
        .default_model
        .as_deref()
        .is_none_or(|m| !m.trim().is_empty()));
    assert!(!(c.envoy_jwt_authn && c.auth_bypass));
    if let Some(j) = &c.local_jwks {
        assert!(KeySet::from_jwks(&[j.as_bytes()]).is_ok(), "{j}");
    }
    let authority = c.endpoint.authority();
    assert!(
        !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)),
        "{authority:?}"
    );
    match &c.upstream {
        Upstream::Fixed(auth) => {
            let req = InvokeRequest {
                model_id: "anthropic.claude-3-haiku-20240307-v1:0".into(),
                stream: false,
                body: MessagesRequest::new(16, vec![Message::user("hi")]),
            };
            let time = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
            if let Err(e) = build(&req, &c.endpoint, auth, time) {
                panic!("an accepted configuration cannot sign a request: {e} ({auth:?})");
            }
        }
        Upstream::Refreshing { source, clusters } => {
            assert!(!clusters.endpoint.is_empty());
            assert!(source.endpoint().is_some(), "{source:?}");
            // A source that reads a token file or calls STS was only accepted with its cluster.
            if source.reads_token_file() {
                assert!(clusters.name(CallTo::TokenFiles).is_some(), "{source:?}");
            }
            if matches!(source, Source::WebIdentity { .. }) {
                assert!(clusters.name(CallTo::Sts).is_some(), "{source:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fields(data, 2);
    let plugin = field(&f, 0);
    let env = env_lines(field(&f, 1));
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
    let a = Config::load(plugin, env_fn(&env));
    let b = Config::load(plugin, env_fn(&rotated));
    assert_eq!(format!("{a:?}"), format!("{b:?}"), "a secret shows");
    if let Ok(c) = &a {
        check(c);
    }
});
