//! The answers of the public routes (no token needed): the monitoring probes and `/docs`.
//!
//! * `GET /monitoring/healthz`, `GET /monitoring/ready`: 200 `{}` (`application/json`), as
//!   the gateway's probes answer.
//! * `GET /docs` (and `HEAD`): a small HTML page naming the service, its version and the
//!   endpoints it serves. GitLab's install documentation tells admins to open
//!   `http://<gateway>:5052/docs` to check that the gateway runs; the self-hosted image enables
//!   FastAPI's Swagger page there (ai-gateway `docker/self_hosted/Dockerfile`,
//!   `AIGW_FASTAPI__DOCS_URL="/docs"`). **Decision:** the gateway's authentication middleware
//!   does not skip `/docs` (ai-gateway `ai_gateway/api/server.py` `_SKIP_ENDPOINTS` lists only
//!   the probes, `/metrics` and `/v1/models/definitions`), so a browser gets a 401 there; this
//!   page is public, and static: it holds nothing but the crate version and the route list.

use super::response::GitlabResponse;
use super::routes::Route;

/// Content type of the `/docs` page.
pub const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The service's name on the page.
pub const SERVICE_NAME: &str = "duo-bedrock";

/// `(method, path, what it does)` of every endpoint the filter serves, in the page's order.
pub const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("GET", "/monitoring/healthz", "liveness probe, no token"),
    ("GET", "/monitoring/ready", "readiness probe, no token"),
    ("GET", "/docs", "this page, no token"),
    (
        "POST",
        "/v2/code/completions",
        "code completions (also /v2/completions)",
    ),
    ("POST", "/v2/code/generations", "code generations"),
    ("POST", "/v3/code/completions", "code suggestions (v3)"),
    ("POST", "/v4/code/suggestions", "code suggestions (v4)"),
    (
        "POST",
        "/v1/prompts/{prompt_id}",
        "named prompts, Test connection (model_configuration/check)",
    ),
    (
        "POST",
        "/v2/prompts/{prompt_id}",
        "named prompts with usage",
    ),
    ("POST", "/v2/chat/agent", "Duo Chat ReAct step (NDJSON)"),
    ("POST", "/v1/chat/{invokable}", "legacy chat"),
    (
        "POST",
        "/v1/code/user_access_token",
        "direct-connection tokens: not issued by this gateway (500), GitLab falls back to indirect connections",
    ),
];

/// What the sidecar still lacks before it can serve a Duo request, in words an admin can act
/// on; empty when ready.
pub type Missing = Vec<String>;

/// The answer of a public route: `None` for the others. `missing` is asked only for the
/// readiness probe: `/monitoring/healthz` is liveness (the process serves) and stays 200;
/// `/monitoring/ready` is 503 with what is missing until GitLab's keys are loaded and AWS
/// credentials are usable, so Kubernetes sends no traffic to a sidecar that would refuse it.
pub fn public_answer(route: &Route, missing: &dyn Fn() -> Missing) -> Option<GitlabResponse> {
    match route {
        Route::Healthz => Some(GitlabResponse::json(b"{}".to_vec())),
        Route::Ready => {
            let missing = missing();
            if missing.is_empty() {
                return Some(GitlabResponse::json(b"{}".to_vec()));
            }
            let body = serde_json::json!({
                "detail": format!("not ready: {}", missing.join("; ")),
                "missing": missing,
            });
            Some(GitlabResponse {
                status: 503,
                headers: vec![("content-type".to_string(), "application/json".to_string())],
                body: body.to_string().into_bytes(),
            })
        }
        Route::Docs => Some(GitlabResponse {
            status: 200,
            headers: vec![
                ("content-type".to_string(), HTML_CONTENT_TYPE.to_string()),
                ("cache-control".to_string(), "no-store".to_string()),
                ("x-content-type-options".to_string(), "nosniff".to_string()),
            ],
            body: docs_page().into_bytes(),
        }),
        _ => None,
    }
}

/// The `/docs` page (static text: no request data is ever written into it).
pub fn docs_page() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut rows = String::new();
    for (method, path, what) in ENDPOINTS {
        rows.push_str(&format!(
            "<tr><td>{method}</td><td><code>{}</code></td><td>{}</td></tr>\n",
            escape(path),
            escape(what)
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{SERVICE_NAME} {version}</title></head>\n<body>\n\
<h1>{SERVICE_NAME} {version}</h1>\n\
<p>GitLab Duo AI Gateway for Amazon Bedrock (Envoy + proxy-wasm filter). It is running.</p>\n\
<p>Every endpoint except the probes and this page needs a GitLab-issued token.</p>\n\
<table>\n<tr><th>method</th><th>path</th><th>what</th></tr>\n{rows}</table>\n</body>\n</html>\n"
    )
}

/// HTML text escaping (`&`, `<`, `>`, `"`).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::routes::classify;

    fn ready() -> Missing {
        Vec::new()
    }

    #[test]
    fn probes_answer_empty_json() {
        for route in [Route::Healthz, Route::Ready] {
            let r = public_answer(&route, &ready).unwrap();
            assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
            assert_eq!(r.header("content-type"), Some("application/json"));
        }
        assert!(public_answer(&Route::ChatAgent, &ready).is_none());
        assert!(public_answer(&Route::Unknown, &ready).is_none());
    }

    #[test]
    fn readiness_says_what_is_missing_liveness_does_not_care() {
        let missing = || vec!["GitLab's keys".to_string(), "AWS credentials".to_string()];
        let r = public_answer(&Route::Ready, &missing).unwrap();
        assert_eq!(r.status, 503);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["detail"], "not ready: GitLab's keys; AWS credentials");
        assert_eq!(v["missing"][1], "AWS credentials");
        let r = public_answer(&Route::Healthz, &missing).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
    }

    #[test]
    fn docs_page_names_service_version_and_endpoints() {
        let r = public_answer(&Route::Docs, &ready).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(HTML_CONTENT_TYPE));
        let page = String::from_utf8(r.body).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains(&format!(
            "<h1>duo-bedrock {}</h1>",
            env!("CARGO_PKG_VERSION")
        )));
        for (method, path, _) in ENDPOINTS {
            assert!(
                page.contains(&format!("<td>{method}</td><td><code>{path}</code>")),
                "{path}"
            );
        }
    }

    /// The page lists exactly what the router knows.
    #[test]
    fn every_listed_endpoint_is_routed() {
        for (method, path, _) in ENDPOINTS {
            let concrete = path
                .replace("{prompt_id}", "model_configuration%2Fcheck")
                .replace("{invokable}", "explain_code");
            assert_ne!(classify(method, &concrete), Route::Unknown, "{path}");
        }
    }
}
