#!/usr/bin/env python3
"""Render the Envoy config from the AI Gateway's environment variables and run the sidecar.

    launch.py render [--out FILE]   write the rendered Envoy YAML (stdout by default)
    launch.py run                   run Envoy in the foreground (the `make run` entry point)

`run` is a drop-in for the gateway container: it reads the same variables as
`docker run ... model-gateway:self-hosted-...` (README.md has the table). With no AWS
credentials and no AWS_BEDROCK_RUNTIME_ENDPOINT it starts the bundled emulator as both
the Bedrock endpoint and the GitLab OIDC issuer, and says so (offline demo).

Secrets never touch the disk: AWS keys reach the wasm VM through Envoy's
`environment_variables.host_env_keys`, i.e. through this process's environment.
Standard library only.
"""
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "envoy" / "envoy.yaml.tmpl"
DEFAULT_WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "duo_bedrock_filter.wasm"
DEFAULT_EMULATOR = ROOT / "target" / "release" / "bedrock-emulator"
DEFAULT_ENVOY = ROOT / ".venv" / "bin" / "envoy"
DEFAULT_CA = "/etc/ssl/certs/ca-certificates.crt"
# Demo credentials shared with the emulator (the AWS documentation's example key pair).
DEMO_ACCESS_KEY = "AKIDEXAMPLE"
DEMO_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
DEMO_REGION = "us-east-1"
DEMO_MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
# The emulator's demo knowledge base (a small corpus of docs-like pages, emulator/src/kb.rs).
DEMO_KNOWLEDGE_BASE = "EMUDOCS001"


class ConfigError(Exception):
    pass


def env(name, default=None):
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def first_env(*names):
    for name in names:
        value = env(name)
        if value is not None:
            return value
    return None


def parse_base_url(name, url):
    """(scheme, host, port) of an http(s)://host[:port][/path] URL, or ConfigError naming the variable."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={url!r}: expected http(s)://host[:port]")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ConfigError(f"{name}={url!r}: {exc}") from None
    return parts.scheme, parts.hostname, port


def is_ip(host):
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def tls_block(scheme, host):
    if scheme != "https":
        return ""
    ca = first_env("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE") or DEFAULT_CA
    return f"""    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: "{host}"
        common_tls_context:
          validation_context:
            trusted_ca: {{ filename: "{ca}" }}
            match_typed_subject_alt_names: [{{ san_type: DNS, matcher: {{ exact: "{host}" }} }}]"""


# Concurrent Bedrock requests (open streams included) per sidecar, all workers together. Sized
# for long LLM streams; README.md ("Concurrency") gives the memory per open stream.
DEFAULT_MAX_CONCURRENT_REQUESTS = 10000


def metrics_listener(host, port, admin_port):
    """Prometheus on its own port, as the gateway serves it (`GET /metrics` on
    AIGW_FASTAPI__METRICS_HOST:AIGW_FASTAPI__METRICS_PORT, default 0.0.0.0:8082): only that path,
    only GET, proxied to the admin's /stats/prometheus on loopback; the admin interface itself
    stays on 127.0.0.1. Port 0 (or an admin on port 0) renders no metrics listener."""
    if not port or not admin_port:
        return "", ""
    listener = f"""  - name: metrics
    address: {{ socket_address: {{ address: "{host}", port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: metrics
          route_config:
            virtual_hosts:
            - name: metrics
              domains: ["*"]
              routes:
              - match: {{ path: "/metrics", headers: [{{ name: ":method", string_match: {{ exact: GET }} }}] }}
                route: {{ cluster: envoy_admin, prefix_rewrite: "/stats/prometheus" }}
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 404 }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""
    cluster = f"""  - name: envoy_admin
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: envoy_admin
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }} }} }} }}] }}]
"""
    return listener, cluster


def cluster_block(name, scheme, host, port, max_requests=None):
    """One upstream cluster. `max_requests`: its circuit breakers, sized for long LLM streams
    (Envoy's default of 1,024 connections / pending / active requests would refuse the rest);
    the bedrock cluster speaks HTTP/1.1, one connection per open stream, so all three are the
    same number. The filter answers an overflow in GitLab's format (concurrency_limit)."""
    dns = "STATIC" if is_ip(host) else "LOGICAL_DNS"
    breakers = ""
    if max_requests:
        breakers = (
            "    circuit_breakers:\n"
            "      thresholds:\n"
            f"      - {{ priority: DEFAULT, max_connections: {max_requests}, max_pending_requests: {max_requests},"
            f" max_requests: {max_requests}, max_retries: 3 }}\n"
        )
    return f"""  - name: {name}
    type: {dns}
    dns_lookup_family: V4_PREFERRED
    connect_timeout: 5s
    per_connection_buffer_limit_bytes: 16777216
{breakers}    load_assignment:
      cluster_name: {name}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: "{host}", port_value: {port} }} }} }} }}] }}]
{tls_block(scheme, host)}"""


def bool_env(name, default=False):
    value = env(name, "true" if default else "false").strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name}={value!r}: expected true or false")
    return value in ("true", "1", "yes")


def int_env(name, default, low, high):
    raw = env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value}: expected {low}..{high}")
    return value


# Must match `config::JWT_AUTHN_PAYLOAD_KEY` in the filter.
JWT_AUTHN_PAYLOAD_KEY = "duo_bedrock_verified"


def jwt_authn_filter(providers, header="Authorization"):
    """Envoy's native jwt_authn in front of the filter: it checks RS256 signatures (BoringSSL)
    against the same OIDC keys and records the verified payload in dynamic metadata; it never
    answers itself (allow_missing_or_failed). The filter applies every GitLab rule and error body,
    and verifies the signature itself whenever jwt_authn did not vouch for the exact token
    (unknown key yet, CustomersDot or self-signed keys, JWKS unreachable...). GitLab serves its
    JWKS at /oauth/discovery/keys (its discovery document's jwks_uri). While GitLab is unreachable
    jwt_authn retries every 30 s (one warning each time); the filter's own fetcher backs off
    5..60 s and serves requests meanwhile.

    providers: (name, base URL, Envoy cluster) of each OIDC issuer; header: where the bearer
    token is read (`make bench` measures jwt_authn alone with the token in its own header)."""
    blocks = []
    for name, base, cluster in providers:
        uri = base.rstrip("/") + "/oauth/discovery/keys"
        blocks.append(f"""                {name}:
                  from_headers: [{{ name: {header}, value_prefix: "Bearer " }}]
                  forward: true
                  payload_in_metadata: {JWT_AUTHN_PAYLOAD_KEY}
                  remote_jwks:
                    http_uri: {{ uri: "{uri}", cluster: {cluster}, timeout: 5s }}
                    cache_duration: 300s
                    async_fetch: {{ fast_listener: true, failed_refetch_duration: 30s }}""")
    return """          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
""" + "\n".join(blocks) + """
              rules:
              - match: { prefix: "/" }
                requires: { allow_missing_or_failed: {} }
"""


def bedrock_endpoint():
    override = env("AWS_BEDROCK_RUNTIME_ENDPOINT")
    region = first_env("AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION")
    if override:
        return override.rstrip("/"), region
    if not region:
        raise ConfigError("no Bedrock region: set AWS_REGION_NAME (or AWS_REGION / AWS_DEFAULT_REGION)")
    return f"https://bedrock-runtime.{region}.amazonaws.com", region


def runtime_region(url):
    """The region a bedrock-runtime[-fips].<region>.(amazonaws.com|vpce.amazonaws.com|api.aws)
    host names (the filter's `region_from_host`), or None."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    match = re.search(r"(?:^|\.)bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.(?:vpce\.amazonaws\.com|amazonaws\.com|api\.aws)$", host)
    return match.group(1) if match else None


def knowledge_base():
    """(knowledge base id, agent runtime endpoint URL, whether it was overridden), or None.

    Documentation search (POST /v1/search/gitlab-docs) retrieves from this Amazon Bedrock knowledge
    base through the `bedrock_agent` cluster. The filter validates the id and names the variable;
    the endpoint follows its rule: AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT, else
    bedrock-agent-runtime.<region> with the configured region or the runtime endpoint's."""
    kb_id = env("AIGW_BEDROCK_KNOWLEDGE_BASE_ID")
    if not kb_id or not kb_id.strip():
        return None
    override = env("AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT")
    if override:
        return kb_id.strip(), override.rstrip("/"), True
    runtime, region = bedrock_endpoint()
    region = region or runtime_region(runtime)
    if not region:
        raise ConfigError("AIGW_BEDROCK_KNOWLEDGE_BASE_ID: no region for the agent runtime endpoint: "
                          "set AWS_REGION_NAME or AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT")
    return kb_id.strip(), f"https://bedrock-agent-runtime.{region}.amazonaws.com", False


def agent_route(timeout_secs):
    """The route for the filter's signed Retrieve calls (filter state "bedrock_agent"); like the
    bedrock route, only requests the filter built and marked can take it."""
    return f"""              - match:
                  prefix: "/"
                  filter_state:
                  - key: wasm.duo_bedrock_upstream
                    string_match: {{ exact: bedrock_agent }}
                route:
                  cluster: bedrock_agent
                  timeout: {timeout_secs}s
"""


def credentials_endpoint():
    """(scheme, host, port) of the refreshing credential source the filter will use, or None.

    Mirrors `bedrock::credentials::source_from_env` (the AWS SDKs' default chain): an API key or
    static keys need no endpoint; then the ECS/EKS container endpoint; then EC2 IMDSv2 unless
    AWS_EC2_METADATA_DISABLED=true. The filter validates the details and names the variable.
    """
    if first_env("AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        return None
    if env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return "http", "169.254.170.2", 80
    if env("AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        return parse_base_url("AWS_CONTAINER_CREDENTIALS_FULL_URI", env("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
    if env("AWS_EC2_METADATA_DISABLED", "false").strip().lower() == "true":
        return None
    if env("AWS_EC2_METADATA_SERVICE_ENDPOINT"):
        return parse_base_url("AWS_EC2_METADATA_SERVICE_ENDPOINT", env("AWS_EC2_METADATA_SERVICE_ENDPOINT"))
    if env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv4").strip().lower() == "ipv6":
        return "http", "fd00:ec2::254", 80
    return "http", "169.254.169.254", 80


def render(wasm_path=None):
    """The rendered Envoy YAML for the current environment."""
    gitlab_url = env("AIGW_GITLAB_URL")
    if not gitlab_url:
        raise ConfigError("AIGW_GITLAB_URL is not set (the GitLab instance whose OIDC keys sign Duo tokens)")
    g_scheme, g_host, g_port = parse_base_url("AIGW_GITLAB_URL", gitlab_url)
    endpoint, region = bedrock_endpoint()
    b_scheme, b_host, b_port = parse_base_url("AWS_BEDROCK_RUNTIME_ENDPOINT", endpoint)

    max_requests = int_env("DUO_BEDROCK_MAX_CONCURRENT_REQUESTS", DEFAULT_MAX_CONCURRENT_REQUESTS, 1, 1_000_000)
    clusters = [
        cluster_block("bedrock", b_scheme, b_host, b_port, max_requests),
        cluster_block("gitlab", g_scheme, g_host, g_port),
    ]
    creds = credentials_endpoint()
    if creds:
        clusters.append(cluster_block("aws_credentials", *creds))
    portal = env("AIGW_CUSTOMER_PORTAL_URL")
    if portal:
        clusters.append(cluster_block("customers", *parse_base_url("AIGW_CUSTOMER_PORTAL_URL", portal)))
    kb = knowledge_base()
    if kb:
        clusters.append(cluster_block("bedrock_agent", *parse_base_url("AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT", kb[1])))

    issuers = [("gitlab", gitlab_url, "gitlab")] + ([("customers", portal, "customers")] if portal else [])
    auth_bypass = bool_env("AIGW_AUTH__BYPASS_EXTERNAL")
    native_jwt = bool_env("DUO_BEDROCK_ENVOY_JWT_AUTHN", default=True) and not auth_bypass
    plugin = {
        "gitlab_url": gitlab_url,
        "gitlab_cluster": "gitlab",
        "customer_portal_url": portal,
        "customer_portal_cluster": "customers" if portal else None,
        "audience": env("AIGW_CLOUD_CONNECTOR_SERVICE_NAME", "gitlab-ai-gateway"),
        "bedrock_endpoint": endpoint,
        "region": region,
        "default_model": env("AIGW_DEFAULT_MODEL"),
        "knowledge_base_id": kb[0] if kb else None,
        "bedrock_agent_endpoint": kb[1] if kb and kb[2] else None,
        "auth_bypass": auth_bypass,
        "jwt_leeway_secs": int_env("AIGW_JWT_LEEWAY_SECONDS", 0, 0, 300),
        "upstream_timeout_secs": int_env("AIGW_MODEL_TIMEOUT_SECONDS", 60, 1, 600),
        "token_cache_size": int_env("AIGW_TOKEN_CACHE_SIZE", 1024, 0, 100000),
        "envoy_jwt_authn": native_jwt or None,
    }
    plugin_json = json.dumps({k: v for k, v in plugin.items() if v is not None}, separators=(",", ":"))

    admin_port = int_env("ENVOY_ADMIN_PORT", 9901, 0, 65535)
    metrics, admin_cluster = metrics_listener(
        env("AIGW_FASTAPI__METRICS_HOST", "0.0.0.0"), int_env("AIGW_FASTAPI__METRICS_PORT", 8082, 0, 65535), admin_port
    )
    if admin_cluster:
        clusters.append(admin_cluster)
    values = {
        "METRICS_LISTENER": metrics,
        "ADMIN_PORT": admin_port,
        "LISTEN_HOST": env("AIGW_FASTAPI__API_HOST", "0.0.0.0"),
        "LISTEN_PORT": int_env("AIGW_FASTAPI__API_PORT", 5052, 0, 65535),
        "UPSTREAM_TIMEOUT": f"{plugin['upstream_timeout_secs']}s",
        "WASM_PATH": str(wasm_path or env("DUO_FILTER_WASM", str(DEFAULT_WASM))),
        "PLUGIN_CONFIG": plugin_json.replace("'", "''"),  # YAML single-quoted scalar
        "JWT_AUTHN_FILTER": jwt_authn_filter(issuers) if native_jwt else "",
        "AGENT_ROUTE": agent_route(plugin["upstream_timeout_secs"]) if kb else "",
        "CLUSTERS": "\n".join(clusters),
    }
    return Template(TEMPLATE.read_text()).substitute(values)


def start_emulator():
    """Start the bundled emulator on a free loopback port; returns (process, base_url)."""
    binary = Path(env("DUO_EMULATOR_BIN", str(DEFAULT_EMULATOR)))
    if not binary.exists():
        raise ConfigError(f"{binary} is missing: run `make build` first")
    proc = subprocess.Popen(
        [str(binary), "serve", "--listen", "127.0.0.1:0",
         "--access-key-id", DEMO_ACCESS_KEY, "--secret-access-key", DEMO_SECRET_KEY, "--region", DEMO_REGION],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    prefix = "bedrock-emulator listening on "
    if not line.startswith(prefix):
        proc.kill()
        raise ConfigError(f"the emulator did not start (said {line!r})")
    return proc, line[len(prefix):]


def mint_demo_token(issuer):
    binary = env("DUO_EMULATOR_BIN", str(DEFAULT_EMULATOR))
    out = subprocess.run([binary, "mint", "--issuer", issuer], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def demo_banner(port, token):
    base = f"http://127.0.0.1:{port}"
    headers = (f"-H 'Authorization: Bearer {token}' -H 'X-Gitlab-Authentication-Type: oidc' "
               f"-H 'X-Gitlab-Realm: self-managed' -H 'X-Gitlab-Instance-Id: 00000000-0000-4000-8000-000000000001' "
               f"-H 'Content-Type: application/json'")
    completion = json.dumps({
        "current_file": {"file_name": "add.py", "language_identifier": "python",
                         "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": "\n"},
        "prompt_version": 2, "model_provider": "litellm",
        "model_identifier": f"bedrock/{DEMO_MODEL}", "stream": False})
    docs_search = json.dumps({"type": "search-docs", "metadata": {"source": "GitLab EE", "version": "18.9.0"},
                              "payload": {"query": "How do I protect a branch?"}})
    return f"""
=====================================================================
 OFFLINE DEMO: no AWS credentials and no AWS_BEDROCK_RUNTIME_ENDPOINT.
 Bedrock and the GitLab OIDC issuer are the bundled emulator, a local
 stand-in. Set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
 AWS_REGION_NAME and AIGW_GITLAB_URL to serve real traffic.
=====================================================================
Try (the token is a demo token, valid for one hour):

  curl -i {base}/monitoring/healthz
  curl -i {base}/            # 401 {{"error":"No authorization header presented"}}
  curl -i {base}/v2/code/completions {headers} \\
       -d '{completion}'
  # Duo Chat's documentation search, from the emulator's demo knowledge base:
  curl -i {base}/v1/search/gitlab-docs {headers} \\
       -d '{docs_search}'

"""


def stop_processes(children):
    """SIGTERM every child still running, then wait up to 5 s each and SIGKILL what is left."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()


def admin_stat(admin_port, name):
    """One counter or gauge from Envoy's admin (`/stats?filter=^name$`), None when unreadable."""
    url = f"http://127.0.0.1:{admin_port}/stats?filter=^{re.escape(name)}$"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


def drain(envoy, admin_port, bound_s):
    """Graceful shutdown: Envoy stops taking new connections and asks open ones to close
    (`/drain_listeners?graceful`, with --drain-strategy immediate), the requests in flight (long
    streams included) finish, up to `bound_s` seconds; then Envoy stops. Without an admin port
    it just stops."""
    if envoy.poll() is not None:
        return
    started = time.monotonic()
    if admin_port:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/drain_listeners?graceful&inboundonly", method="POST")
            urllib.request.urlopen(req, timeout=2).close()
            print(f"duo-bedrock sidecar: draining (at most {bound_s} s)", flush=True)
            while time.monotonic() - started < bound_s and envoy.poll() is None:
                active = admin_stat(admin_port, "http.ai_gateway.downstream_rq_active")
                if active is None or active == 0:
                    break
                time.sleep(0.1)
        except OSError:
            pass
    if envoy.poll() is None and admin_port:
        # The admin's own exit is immediate; SIGTERM would wait for Envoy's shutdown sequence.
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/quitquitquit", method="POST")
            urllib.request.urlopen(req, timeout=2).close()
        except OSError:
            pass
    for stop_it in (lambda: None, envoy.terminate, envoy.kill):
        if envoy.poll() is None:
            stop_it()
        try:
            envoy.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    print(f"duo-bedrock sidecar: stopped after draining {time.monotonic() - started:.1f} s", flush=True)


class Terminate(Exception):
    """SIGTERM arrived. Raised from the signal handler so that the work happens in the main
    flow: a handler that waits for a child itself deadlocks on the `Popen.wait` the main flow
    is in (its lock is not reentrant), which used to stall every stop by 5 s."""


def on_sigterm(*_):
    raise Terminate()


def run():
    children = []

    def stop(*_):
        stop_processes(children)

    signal.signal(signal.SIGTERM, on_sigterm)
    # No credentials of any kind, no endpoint and no region: nothing real to talk to.
    demo = not first_env("AWS_ACCESS_KEY_ID", "AWS_BEARER_TOKEN_BEDROCK", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                         "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_BEDROCK_RUNTIME_ENDPOINT",
                         "AWS_REGION_NAME", "AWS_REGION", "AWS_DEFAULT_REGION")
    token_file = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    if token_file:
        # The wasm VM has no filesystem: pass the file's content (EKS Pod Identity rotates the
        # file; restart the sidecar when it changes, the old token stays valid meanwhile).
        try:
            os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE_CONTENT"] = Path(token_file).read_text().strip()
        except OSError as exc:
            print(f"configuration error: AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE={token_file!r}: {exc}", file=sys.stderr)
            return 2
    banner = ""
    try:
        if demo:
            emulator, url = start_emulator()
            children.append(emulator)
            os.environ.update({
                "AWS_ACCESS_KEY_ID": DEMO_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": DEMO_SECRET_KEY,
                "AWS_REGION_NAME": DEMO_REGION, "AWS_BEDROCK_RUNTIME_ENDPOINT": url,
                "AWS_BEDROCK_AGENT_RUNTIME_ENDPOINT": url,
            })
            os.environ.setdefault("AIGW_BEDROCK_KNOWLEDGE_BASE_ID", DEMO_KNOWLEDGE_BASE)
            os.environ.pop("AWS_SESSION_TOKEN", None)
            os.environ.setdefault("AIGW_GITLAB_URL", url)
            os.environ.setdefault("AIGW_DEFAULT_MODEL", DEMO_MODEL)
            banner = demo_banner(env("AIGW_FASTAPI__API_PORT", "5052"), mint_demo_token(url))
        config = render()
        workdir = ROOT / ".run"
        workdir.mkdir(exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="envoy-", suffix=".yaml", dir=workdir)
        with os.fdopen(fd, "w") as handle:
            handle.write(config)
        envoy = env("ENVOY_BIN", str(DEFAULT_ENVOY))
        if not Path(envoy).exists() and not shutil.which(envoy):
            raise ConfigError(f"{envoy} is missing: run `make envoy` first")
        # --disable-hot-restart: a sidecar is replaced, never hot-restarted, and without it every
        # Envoy on a host uses the same shared-memory base id (0): a second instance would fail
        # to start ("unable to bind domain socket with base_id=0").
        args = [envoy, "-c", path, "--log-level", env("ENVOY_LOG_LEVEL", "info"), "--disable-hot-restart",
                "--drain-strategy", "immediate", "--drain-time-s", "1"]
        if env("ENVOY_CONCURRENCY"):
            args += ["--concurrency", env("ENVOY_CONCURRENCY")]
        # Kubernetes sends SIGTERM when it stops the pod: the requests in flight drain first
        # (DUO_BEDROCK_DRAIN_SECONDS, default the model timeout + 5 s; the pod's
        # terminationGracePeriodSeconds must be above it).
        drain_seconds = int_env("DUO_BEDROCK_DRAIN_SECONDS", int_env("AIGW_MODEL_TIMEOUT_SECONDS", 60, 1, 600) + 5, 0, 3600)
        admin_port = int_env("ENVOY_ADMIN_PORT", 9901, 0, 65535)
        proc = subprocess.Popen(args)
        children.append(proc)
        print(f"duo-bedrock sidecar: Envoy on {env('AIGW_FASTAPI__API_HOST', '0.0.0.0')}:"
              f"{env('AIGW_FASTAPI__API_PORT', '5052')} (admin 127.0.0.1:{env('ENVOY_ADMIN_PORT', '9901')}); "
              f"Bedrock {env('AWS_BEDROCK_RUNTIME_ENDPOINT') or 'regional endpoint'}", flush=True)
        if banner:
            print(banner, flush=True)
        try:
            return proc.wait()
        except Terminate:
            drain(proc, admin_port, drain_seconds)
            return 0
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminate):
        return 0
    finally:
        stop()


def main(argv):
    if len(argv) >= 2 and argv[1] == "render":
        out = argv[3] if len(argv) >= 4 and argv[2] == "--out" else None
        try:
            text = render()
        except ConfigError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 2
        if out:
            Path(out).write_text(text)
        else:
            sys.stdout.write(text)
        return 0
    if len(argv) >= 2 and argv[1] == "run":
        return run()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
