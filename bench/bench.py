#!/usr/bin/env python3
"""`make bench`: side-by-side latency/throughput of plain Envoy, Envoy's native JWT+SigV4 filters,
and Envoy + this filter, all in one run, against the same local upstream (the bundled emulator).

Rows (every row ends at the emulator's InvokeModel, which verifies SigV4 and answers the same JSON):
  plain Envoy          a pre-signed Bedrock request proxied as is (no JWT, no signing): the floor
  native jwt+sigv4     Envoy's own jwt_authn (RS256, remote JWKS) + aws_request_signing: verify + sign, no translation
  filter               the sidecar as `make run` renders it: Envoy's jwt_authn checks the RS256 signature,
                       this filter applies the GitLab rules + GitLab -> Bedrock rewrite + SigV4 + answer rewrite
                       (a fresh token per request, as Rails mints one per request: no token cache can hit)
  filter, wasm verify  the same with DUO_BEDROCK_ENVOY_JWT_AUTHN=false: the filter verifies RS256 itself
                       (hosts that cannot put jwt_authn in front, e.g. an Istio WasmPlugin)
  filter, token reused the same token every request (jwt_authn's and the filter's token caches hit)
  filter, stream       completions with stream=true (event-stream decoded and re-emitted as text)
  floor rows           what the filter cannot avoid, for the cost breakdown: jwt_authn alone; a proxy-wasm
                       filter (bench/wasm-floor) that only holds the request for its body and reads/rewrites
                       headers and bodies like the filter; and both together

BENCH_ROWS=plain,native,jwt,floor,floor+jwt,filter,wasm,cached,stream,hostcalls,streams picks rows (default: all).

Hostcall prices (`hostcalls`, a small table after the first): the floor+jwt row again, and the same
with 50 extra hostcalls of one kind per request (clock, one header value, jwt_authn's `jti`
property, the whole request header map; bench/wasm-floor's plugin configuration); the CPU
difference divided by 50 is what one such call costs in Envoy's V8.

Each row: wrk at 1 connection (latency) and at 16 connections (throughput), Envoy --concurrency 1
(override with BENCH_CONCURRENCY), plus the Envoy process RSS idle (3 s after it is ready, before
any load) and after the runs. Numbers on a shared
2-core machine are noisy; compare rows of the same run, not runs.

Streaming scenario (`streams`, a second table, run after the first): long LLM streams, N of them
opened at once (BENCH_STREAMS, default 50,500,2000), each on its own HTTP/1.1 connection from an
asyncio client (raw sockets, chunked bodies decoded as they arrive). The emulator's model id
`...-fault-first-200-fault-drip-100-fault-deltas-40-...` answers with headers at once, the first
event-stream frames (message_start, content_block_start, the first text delta) after 200 ms, then
one frame every 100 ms: 40 text deltas over ~4 s (~4.4 s per stream). Three rows, each cell on a
fresh Envoy (--concurrency as above, pinned like the first table; the client runs on the other CPU):
  plain Envoy   a pre-signed InvokeModelWithResponseStream request proxied as is, through a cluster
                block identical to the filter's bedrock cluster (circuit breakers sized by
                DUO_BEDROCK_MAX_CONCURRENT_REQUESTS, default 10000, so neither row overflows)
  filter        the sidecar as `make run` renders it (jwt_authn in front): POST /v2/code/completions
                with "stream": true, a token per request never seen by that Envoy
  filter-h2     the same with DUO_BEDROCK_UPSTREAM_HTTP2=true: the streams to the emulator are
                multiplexed over HTTP/2 connections (h2c here; ALPN h2 over TLS to Bedrock)
Per cell, after one warm-up stream: added TTFB p50/p99 (connection opened -> first body byte, minus
the upstream's own 200 ms; the client's own delay is in it, alike in both rows), Envoy CPU per
streamed event (scheduler time of all its threads during the cell, /proc/<pid>/task/*/schedstat,
divided by the text deltas delivered; Envoy's idle background is in it, which weighs at small N),
RSS per open stream ((peak RSS with the N streams open - idle RSS) / N; the peak is VmHWM after
resetting it through /proc/<pid>/clear_refs, and RSS sampled every 50 ms), and failures: non-200,
cut streams (fewer deltas or frames than sent, closed early), connection errors, and streams not
done within BENCH_STREAM_TIMEOUT (30 s). Failed cells also print Envoy's overflow / connect-failure
/ timeout counters from the admin /stats. The filter row shows its ratio to plain Envoy (×k).
BENCH_STREAM_ROUNDS (default 1) repeats the cells interleaved and reports medians.

BENCH_PERF=<row>[,<row>...] records Envoy with `perf record` (cpu-clock, call graphs) during that
row in one more c=16 run after the measured rounds (sampling costs the sampled process CPU, so
the table never includes it) and splits that run's CPU per request: V8-compiled wasm
code, Envoy code called from it (hostcalls), the kernel, and the rest of Envoy. Envoy's binary is
stripped and V8's --perf-prof cannot be set in Envoy, so the split goes by call stacks (frame
pointers), not symbols.
"""
import asyncio
import base64
import datetime
import errno
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The launcher (`duo-bedrock render`) renders every filter config, as for `make run`.
LAUNCHER = os.environ.get("DUO_BEDROCK_LAUNCHER") or str(ROOT / "target" / "release" / "duo-bedrock")
ENVOY_BIN = os.environ.get("ENVOY_BIN") or str(ROOT / ".venv" / "bin" / "envoy")
EMULATOR_BIN = os.environ.get("DUO_EMULATOR_BIN") or str(ROOT / "target" / "release" / "bedrock-emulator")

DURATION = os.environ.get("BENCH_DURATION", "3s")
# Every row is measured once per round, rounds interleaved, and the median round is reported:
# on a shared 2-core VM the background load drifts, and interleaving spreads it over every row.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONCURRENCY = os.environ.get("BENCH_CONCURRENCY", "1")
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
# The Bedrock request the floor rows send pre-signed (the one the filter builds for the bench's
# completion), shared by the main table and the hostcall prices.
INVOKE_PATH = "/model/" + urllib.parse.quote(MODEL, safe="-._~") + "/invoke"
INVOKE_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 128, "temperature": 0,
                          "system": "Complete the code.", "messages": [{"role": "user", "content":
                          "<prefix>def add(a, b):\n    </prefix><suffix>\n</suffix>"}]}, separators=(",", ":"))
# The emulator's demo credentials (the AWS documentation's example key pair), as the launcher's demo.
AK, SK, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1"
INSTANCE = "00000000-0000-4000-8000-000000000001"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def wait_ready(port, path="/monitoring/healthz", timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not ready")


def sigv4_headers(host, path, body, when, accept="application/json"):
    """Presigned headers (stdlib SigV4) so plain Envoy can forward a valid Bedrock request."""
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    canonical_path = "/".join(urllib.parse.quote(seg, safe="-_.~") for seg in path.split("/"))
    headers = {"accept": accept, "content-type": "application/json", "host": host, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    creq = "\n".join(["POST", canonical_path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed,
                      hashlib.sha256(body).hexdigest()])
    scope = f"{date}/{REGION}/bedrock/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = ("AWS4" + SK).encode()
    for part in (date, REGION, "bedrock", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders={signed}, Signature={sig}"
    del headers["host"]
    return headers


def lua_script(path, method, url_path, headers, body, tokens=None, token_header="authorization"):
    lines = [f'wrk.method = "{method}"', f"wrk.path = {json.dumps(url_path)}", f"wrk.body = {json.dumps(body)}"]
    for k, v in headers.items():
        lines.append(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}")
    if tokens:
        lines.append("local tokens = {" + ",".join(json.dumps(t) for t in tokens) + "}")
        lines.append("local i = 0")
        lines.append("request = function()\n  i = i % #tokens + 1\n"
                     f"  wrk.headers[{json.dumps(token_header)}] = \"Bearer \" .. tokens[i]\n"
                     "  return wrk.format()\nend")
    Path(path).write_text("\n".join(lines) + "\n")


# On a small machine, pin Envoy to the last CPU and wrk + the emulator to the others, so the rows
# compete for the same cores the same way (BENCH_PIN=0 turns it off).
PIN = os.environ.get("BENCH_PIN", "1") != "0" and shutil.which("taskset") and (os.cpu_count() or 1) >= 2
ENVOY_CPUS = str((os.cpu_count() or 1) - 1)
CLIENT_CPUS = f"0-{(os.cpu_count() or 2) - 2}"


def pinned(cpus, argv):
    return ["taskset", "-c", cpus, *argv] if PIN else argv


def cpu_ns(pid):
    """CPU time of every thread of `pid` so far (ns, from the scheduler: no tick rounding)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def run_wrk(port, script, connections, pid=None):
    """(req/s, p50 ms, p99 ms, non-2xx, Envoy CPU µs per request or None)."""
    before = cpu_ns(pid) if pid else 0
    out = subprocess.run(pinned(CLIENT_CPUS, ["wrk", "-t1", f"-c{connections}", f"-d{DURATION}", "--latency", "-s", script,
                          f"http://127.0.0.1:{port}"]), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    cpu = (cpu_ns(pid) - before) / 1000 / max(total, 1) if pid else None
    return rps, pct(50), pct(99), int(non2xx.group(1)) if non2xx else 0, cpu


PERF_ROWS = {r for r in os.environ.get("BENCH_PERF", "").split(",") if r}


def perf_start(pid, out):
    """`perf record` of Envoy `pid` into `out` until perf_stop (software clock: no PMU on this VM)."""
    return subprocess.Popen(pinned(CLIENT_CPUS, ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-p", str(pid),
                             "-o", out]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_stop(proc):
    proc.send_signal(2)
    proc.wait(timeout=60)


def perf_summary(data, label, cpu_us):
    """Where one request's Envoy CPU (`cpu_us`, the row's median) went in one recording: V8-compiled
    wasm code itself, Envoy code called from it (hostcalls and the host's allocations in the VM),
    the kernel, and the rest (Envoy's own HTTP work, jwt_authn, V8's entry into the VM). Frame
    pointers make the split possible without symbols (Envoy's binary is stripped)."""
    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,dso"], capture_output=True, text=True).stdout
    total = wasm = hostcalls = kernel = 0
    for sample in script.split("\n\n"):
        frames = [line.split() for line in sample.strip().splitlines() if line.strip()]
        if not frames:
            continue
        total += 1
        jit = [i for i, f in enumerate(frames) if "perf-" in f[-1] or "[JIT]" in f[-1]]
        if jit and jit[0] == 0:
            wasm += 1
        elif jit:
            hostcalls += 1
        elif "kernel" in frames[0][-1]:
            kernel += 1
    if not total:
        print(f"\nperf, {label}: no samples ({data})")
        return
    per = cpu_us / total
    print(f"\nperf, {label} ({total} samples, {data}), per request of {cpu_us:.0f} µs:")
    print(f"  wasm code {wasm * per:.0f} µs | hostcalls from wasm {hostcalls * per:.0f} µs | "
          f"kernel {kernel * per:.0f} µs | rest of Envoy {(total - wasm - hostcalls - kernel) * per:.0f} µs")


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def render(**env):
    """`duo-bedrock render` for this environment plus `env`."""
    out = subprocess.run([LAUNCHER, "render"], env=dict(os.environ, **env), capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{LAUNCHER} render: {out.stderr.strip()}")
    return out.stdout


def rendered_block(config, start, end):
    """The text of `config` from the line that starts with `start` up to the line that starts with `end`."""
    lines = config.splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next(i for i in range(first + 1, len(lines)) if lines[i].startswith(end))
    return "".join(lines[first:last])


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


def envoy(config_text, workdir, name):
    path = Path(workdir) / f"{name}.yaml"
    path.write_text(config_text)
    env = {"PATH": os.environ["PATH"], "AWS_ACCESS_KEY_ID": AK, "AWS_SECRET_ACCESS_KEY": SK}
    proc = subprocess.Popen(pinned(ENVOY_CPUS, [ENVOY_BIN, "-c", str(path),
                             "--concurrency", CONCURRENCY, "--log-level", "warning", "--disable-hot-restart"]),
                            env=env, stdout=subprocess.DEVNULL, stderr=open(Path(workdir) / f"{name}.log", "w"))
    admin = re.search(r"^admin:.*?port_value: (\d+)", config_text, re.S | re.M)
    proc.admin = int(admin.group(1)) if admin else None
    proc.remote_jwks = "remote_jwks" in config_text
    return proc


def wait_jwks(procs, timeout=45):
    """Every Envoy with jwt_authn has GitLab's keys before it is measured. A failed first fetch
    (seen when nine Envoys start at once) is retried only after failed_refetch_duration (30 s),
    and until then jwt_authn verifies nothing: the filter row would silently measure the
    filter's own RS256 check behind a failing jwt_authn."""
    deadline = time.time() + timeout
    for proc in procs:
        if not getattr(proc, "remote_jwks", False) or not proc.admin:
            continue
        while True:
            try:
                stats = http("GET", f"http://127.0.0.1:{proc.admin}/stats?filter=jwks_fetch_success")[1].decode()
            except OSError:
                stats = ""
            counts = [int(v) for v in re.findall(r"jwks_fetch_success: (\d+)", stats)]
            if counts and min(counts) > 0:
                break
            if time.time() > deadline:
                sys.exit(f"an Envoy (admin {proc.admin}) has no JWKS after {timeout} s: {stats.strip()}")
            time.sleep(0.5)


def plain_config(port, admin, upstream_port, filters="", cluster=None):
    """Plain Envoy; `cluster` replaces its `upstream` cluster block (the streaming scenario gives
    it the filter's own bedrock cluster settings, circuit breakers included)."""
    cluster = cluster or f"""  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream_port} }} }} }} }}] }}]
"""
    return f"""
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
  - name: l
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    per_connection_buffer_limit_bytes: 16777216
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: l
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ path: "/monitoring/healthz" }}
                direct_response: {{ status: 200, body: {{ inline_string: "{{}}" }} }}
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream, timeout: 60s, host_rewrite_literal: "127.0.0.1:{upstream_port}" }}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
{cluster}"""


def native_filters(upstream_port):
    return f"""
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                gitlab:
                  audiences: [gitlab-ai-gateway]
                  clock_skew_seconds: 0
                  remote_jwks:
                    http_uri: {{ uri: "http://127.0.0.1:{upstream_port}/oauth/discovery/keys", cluster: upstream, timeout: 5s }}
                    cache_duration: 3600s
                    async_fetch: {{ fast_listener: false }}
                  payload_in_metadata: jwt_payload
                  jwt_cache_config: {{ jwt_cache_size: 0 }}
              rules:
              - match: {{ path: "/monitoring/healthz" }}
              - match: {{ prefix: "/" }}
                requires: {{ provider_name: gitlab }}
          - name: envoy.filters.http.aws_request_signing
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning
              service_name: bedrock
              region: {REGION}
              host_rewrite: "127.0.0.1:{upstream_port}"
              credential_provider:
                inline_credential: {{ access_key_id: {AK}, secret_access_key: "{SK}" }}"""


def jwt_authn_filter(upstream_port, header):
    """Envoy's jwt_authn exactly as `make run` puts it in front of the filter (cut from the
    launcher's rendering), with the emulator as the GitLab issuer and the token read from `header`."""
    url = f"http://127.0.0.1:{upstream_port}"
    config = render(AIGW_GITLAB_URL=url, AWS_BEDROCK_RUNTIME_ENDPOINT=url, AWS_REGION_NAME=REGION,
                    AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, DUO_BEDROCK_ENVOY_JWT_AUTHN="true",
                    AIGW_AUTH__BYPASS_EXTERNAL="false", AIGW_CUSTOMER_PORTAL_URL="")
    block = rendered_block(config, "          - name: envoy.filters.http.jwt_authn", "          - name: envoy.filters.http.wasm")
    block = block.replace("cluster: gitlab,", "cluster: upstream,").replace("{ name: Authorization,", f"{{ name: {header},")
    return "\n" + block.rstrip("\n")


def floor_filter(wasm, config=""):
    """bench/wasm-floor: the proxy-wasm round trips of the real filter, without its work;
    `config` ("<kind> <n>") adds n hostcalls of one kind per request (BENCH_ROWS=hostcalls)."""
    configuration = (f"""
                configuration: {{ "@type": type.googleapis.com/google.protobuf.StringValue, value: "{config}" }}"""
                     if config else "")
    return f"""
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: floor
                root_id: floor
                allow_on_headers_stop_iteration: true
                vm_config: {{ vm_id: floor, runtime: envoy.wasm.runtime.v8, code: {{ local: {{ filename: "{wasm}" }} }} }}{configuration}"""


WASM_FLOOR = os.environ.get("DUO_WASM_FLOOR", str(ROOT / "target/wasm-floor/wasm32-wasip1/release/wasm_floor.wasm"))


# ---------------------------------------------------------------------------------------------
# Streaming scenario (BENCH_ROWS=streams): N long LLM streams opened at once.

ALL_ROWS = ("plain", "native", "jwt", "floor", "floor+jwt", "filter", "wasm", "cached", "stream", "hostcalls",
            "streams")
HOSTCALL_KINDS = ("clock", "header", "property", "map")
HOSTCALLS_PER_REQUEST = 50


def run_hostcalls(up_port, workdir, tokens):
    """What one hostcall costs in Envoy's V8: the floor+jwt row, and the same with 50 extra
    hostcalls of one kind per request, interleaved; the CPU difference / 50 prices one call."""
    procs = []
    try:
        presigned = sigv4_headers(f"127.0.0.1:{up_port}", INVOKE_PATH, INVOKE_BODY.encode(),
                                  datetime.datetime.now(datetime.timezone.utc))
        lua_script(f"{workdir}/hostcalls.lua", "POST", INVOKE_PATH, presigned, INVOKE_BODY, tokens, "x-bench-jwt")
        cells = []
        for kind in ("none", *HOSTCALL_KINDS):
            port = free_port()
            config = "" if kind == "none" else f"{kind} {HOSTCALLS_PER_REQUEST}"
            proc = envoy(plain_config(port, free_port(), up_port, jwt_authn_filter(up_port, "x-bench-jwt")
                                      + floor_filter(WASM_FLOOR, config)), workdir, f"hostcalls-{kind}")
            procs.append(proc)
            cells.append((kind, port, proc, []))
        for _kind, port, _proc, _runs in cells:
            wait_ready(port)
        wait_jwks(procs)
        for _ in range(ROUNDS):
            for _kind, port, proc, runs in cells:
                runs.append(run_wrk(port, f"{workdir}/hostcalls.lua", 16, proc.pid)[4])
        base = sorted(cells[0][3])[len(cells[0][3]) // 2]
        print(f"\nOne hostcall in Envoy's V8 (bench/wasm-floor with jwt_authn, {HOSTCALLS_PER_REQUEST} extra calls "
              f"of one kind per request, median of {ROUNDS} interleaved rounds)\n")
        print("| hostcall | Envoy CPU µs/req | µs per call |")
        print("|---|---|---|")
        print(f"| none (floor + jwt_authn) | {base:.0f} | |")
        names = {"clock": "proxy_get_current_time_nanoseconds", "header": "proxy_get_header_map_value",
                 "property": "proxy_get_property (jwt_authn's jti)", "map": "proxy_get_header_map_pairs (request)"}
        for kind, _port, _proc, runs in cells[1:]:
            cpu = sorted(runs)[len(runs) // 2]
            print(f"| {names[kind]} | {cpu:.0f} | {(cpu - base) / HOSTCALLS_PER_REQUEST:.1f} |")
        return 0
    finally:
        stop_processes(procs)
STREAM_COUNTS = [int(n) for n in os.environ.get("BENCH_STREAMS", "50,500,2000").split(",") if n.strip()]
STREAM_TIMEOUT = float(os.environ.get("BENCH_STREAM_TIMEOUT", "30"))
STREAM_ROUNDS = int(os.environ.get("BENCH_STREAM_ROUNDS", "1"))
# Rows of the streaming table: plain Envoy, the filter (Bedrock over HTTP/1.1, the default), and
# the filter with DUO_BEDROCK_UPSTREAM_HTTP2 (streams multiplexed; h2c to the emulator here).
STREAM_VARIANTS = ("plain", "filter", "filter-h2")
# The emulator's long-stream shape: headers at once, the first frames (message_start,
# content_block_start, first text delta) after 200 ms, then one frame every 100 ms: 40 text
# deltas over ~4 s, then content_block_stop, message_delta, message_stop (~4.4 s per stream).
STREAM_FIRST_MS, STREAM_DRIP_MS, STREAM_DELTAS = 200, 100, 40
STREAM_MODEL = (f"anthropic.claude-fault-first-{STREAM_FIRST_MS}-fault-drip-{STREAM_DRIP_MS}"
                f"-fault-deltas-{STREAM_DELTAS}-v1:0")
# The same text at once (warm-up: learns the text the filter streams, loads every code path).
WARM_MODEL = f"anthropic.claude-fault-deltas-{STREAM_DELTAS}-v1:0"
# An emulator chunk frame's payload is {"bytes":"<base64 of the Anthropic event>","p":...}; a text
# delta's event starts with {"type":"content_block_delta": its first 27 bytes are 36 base64 characters.
DELTA_MARK = b'{"bytes":"' + base64.b64encode(b'{"type":"content_block_delta"')[:36]


class StreamClient:
    """One streamed request over its own HTTP/1.1 connection, a raw non-blocking socket driven by
    the asyncio loop's add_writer/add_reader (no transport, no future per connection: 2,000 of them
    must not make the client the bottleneck): chunked body decoded as it comes; event-stream
    frames counted (plain) or GitLab's text counted (filter)."""

    def __init__(self, request, eventstream, on_done):
        self.request, self.eventstream, self.on_done = request, eventstream, on_done
        self.loop = self.sock = None
        self.fd = -1
        self.out = b""
        self.buf = bytearray()
        self.frame = bytearray()
        self.head = True
        self.need = -1  # bytes of the current chunk still expected; -1: a chunk-size line is next
        self.status = 0
        self.t0 = self.t_first = None
        self.frames = self.deltas = self.text = 0
        self.ended = False  # the terminating chunk arrived
        self.result = None  # "ok", "non-200", "cut", "connection", "timeout"
        self.detail = ""

    def open(self, loop, port):
        """Start connecting; the request goes out once connected."""
        self.loop = loop
        self.t0 = time.perf_counter()
        try:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setblocking(False)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            err = self.sock.connect_ex(("127.0.0.1", port))
        except OSError as e:
            return self.finish("connection", f"connect: {e}")
        self.fd = self.sock.fileno()
        if err not in (0, errno.EINPROGRESS):
            return self.finish("connection", f"connect: {os.strerror(err)}")
        self.out = self.request
        loop.add_writer(self.fd, self.writable)

    def writable(self):
        if self.out is self.request:  # first call: the connect finished
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return self.finish("connection", f"connect: {os.strerror(err)}")
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return
        except OSError as e:
            return self.finish("connection", f"send: {e}")
        self.out = self.out[sent:]
        if not self.out:
            self.loop.remove_writer(self.fd)
            self.loop.add_reader(self.fd, self.readable)

    def readable(self):
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError as e:
            return self.connection_lost(e)
        if not data:
            return self.connection_lost(None)
        self.data_received(data)

    def data_received(self, data):
        buf = self.buf
        buf += data
        if self.head:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
            del buf[:end + 4]
            self.head = False
            try:
                self.status = int(lines[0].split(" ", 2)[1])
            except (IndexError, ValueError):
                return self.finish("connection", f"bad status line {lines[0][:60]!r}")
            if self.status != 200:
                return self.finish("non-200", str(self.status))
            if not any(line.lower().startswith("transfer-encoding:") and "chunked" in line.lower()
                       for line in lines[1:]):
                return self.finish("cut", "200 without a chunked body")
        while self.result is None:
            if self.need < 0:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    return
                self.need = int(bytes(buf[:eol]).split(b";")[0], 16)
                del buf[:eol + 2]
                if self.need == 0:
                    self.ended = True
                    return self.finish(*self.verdict())
            if len(buf) < self.need + 2:
                return
            self.body(bytes(buf[:self.need]))
            del buf[:self.need + 2]
            self.need = -1

    def body(self, data):
        if self.t_first is None and data:
            self.t_first = time.perf_counter()
        if not self.eventstream:
            self.text += len(data)
            return
        frame = self.frame
        frame += data
        while len(frame) >= 12:
            total = int.from_bytes(frame[0:4], "big")
            if len(frame) < total:
                return
            if frame.startswith(DELTA_MARK, 12 + int.from_bytes(frame[4:8], "big")):
                self.deltas += 1
            self.frames += 1
            del frame[:total]

    def verdict(self):
        if self.eventstream:
            if self.deltas == STREAM_DELTAS and self.frames == STREAM_DELTAS + 5 and not self.frame:
                return "ok", ""
            return "cut", f"{self.deltas} deltas, {self.frames} frames"
        if self.text == StreamClient.expected_text:
            return "ok", ""
        return "cut", f"{self.text} of {StreamClient.expected_text} text bytes"

    def delivered(self):
        """Text deltas this stream delivered (the filter's text: its share of the whole text)."""
        if self.eventstream:
            return self.deltas
        return self.text * STREAM_DELTAS // max(StreamClient.expected_text, 1)

    def finish(self, result, detail=""):
        if self.result is None:
            self.result, self.detail = result, detail
            if self.sock is not None:
                if self.fd >= 0:
                    self.loop.remove_writer(self.fd)
                    self.loop.remove_reader(self.fd)
                self.sock.close()
            self.on_done()

    def connection_lost(self, exc):
        if self.result is None:
            why = f"closed: {exc}" if exc else "closed by the server"
            self.finish("connection" if self.head else "cut", why)


StreamClient.expected_text = STREAM_DELTAS * len("return a + b")


async def open_streams(port, requests, eventstream, pid, timeout):
    """Open one connection per request at once; returns (streams, seconds, peak RSS kB sampled)."""
    loop = asyncio.get_running_loop()
    left = [len(requests)]
    all_done = loop.create_future()

    def done():
        left[0] -= 1
        if left[0] == 0 and not all_done.done():
            all_done.set_result(None)

    streams = [StreamClient(r, eventstream, done) for r in requests]
    peak = [0]

    async def sample():
        while True:
            peak[0] = max(peak[0], proc_status_kb(pid, "VmRSS"))
            await asyncio.sleep(0.05)

    sampler = loop.create_task(sample())
    start = time.perf_counter()
    for stream in streams:
        stream.open(loop, port)
    try:
        await asyncio.wait_for(asyncio.shield(all_done), timeout)
    except asyncio.TimeoutError:
        pass
    elapsed = time.perf_counter() - start
    for stream in streams:
        stream.finish("timeout", f"not done after {timeout:.0f} s")
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    return streams, elapsed, peak[0]


def proc_status_kb(pid, field):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def envoy_counters(admin, pattern):
    """Non-zero Envoy counters whose name matches `pattern` (admin /stats, regex filter)."""
    try:
        _, body = http("GET", f"http://127.0.0.1:{admin}/stats?filter={urllib.parse.quote(pattern)}")
    except OSError as e:
        return {"admin unreachable": str(e)}
    out = {}
    for line in body.decode().splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit() and int(value) > 0:
            out[name] = int(value)
    return out


def http_request(path, headers, body):
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{head}content-length: {len(body)}\r\n\r\n").encode() + body


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run_streams(url, up_port, workdir, tokens):
    """The streaming scenario: for each N, plain Envoy and the filter (each a fresh Envoy per cell,
    so idle RSS is not inflated by an earlier cell), N streams opened at once."""
    counts = STREAM_COUNTS
    bedrock_body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 128, "temperature": 0,
                               "system": "Complete the code.", "messages": [{"role": "user", "content":
                               "<prefix>def add(a, b):\n    </prefix><suffix>\n</suffix>"}]},
                              separators=(",", ":")).encode()
    now = datetime.datetime.now(datetime.timezone.utc)

    def plain_request(model):
        path = "/model/" + urllib.parse.quote(model, safe="-._~") + "/invoke-with-response-stream"
        headers = sigv4_headers(f"127.0.0.1:{up_port}", path, bedrock_body, now, "application/vnd.amazon.eventstream")
        return http_request(path, headers, bedrock_body)

    def filter_request(model, token):
        completion = {"current_file": {"file_name": "add.py", "language_identifier": "python",
                                       "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": "\n"},
                      "prompt_version": 2, "model_provider": "litellm", "model_identifier": f"bedrock/{model}",
                      "stream": True}
        headers = {"authorization": f"Bearer {token}", "x-gitlab-authentication-type": "oidc",
                   "x-gitlab-realm": "self-managed", "x-gitlab-instance-id": INSTANCE,
                   "content-type": "application/json"}
        return http_request("/v2/code/completions", headers, json.dumps(completion).encode())

    plain_stream = plain_request(STREAM_MODEL)
    # Plain Envoy gets the filter's own bedrock cluster block: the same circuit breakers
    # (DUO_BEDROCK_MAX_CONCURRENT_REQUESTS, default 10000; Envoy's default of 1,024 would refuse
    # the rest), connect timeout and buffer limit.
    filter_config = render(AIGW_GITLAB_URL=url, AWS_BEDROCK_RUNTIME_ENDPOINT=url, AWS_REGION_NAME=REGION,
                           AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK)
    cluster = rendered_block(filter_config, "  - name: bedrock\n", "  - name: ").replace(
        "name: bedrock\n", "name: upstream\n").replace("cluster_name: bedrock\n", "cluster_name: upstream\n").rstrip("\n") + "\n"

    def start(row, tag):
        port, admin = free_port(), free_port()
        if row == "plain":
            config = plain_config(port, admin, up_port, cluster=cluster)
        else:
            config = render(AIGW_GITLAB_URL=url, AWS_BEDROCK_RUNTIME_ENDPOINT=url, AWS_REGION_NAME=REGION,
                            AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AIGW_FASTAPI__API_HOST="127.0.0.1",
                            AIGW_FASTAPI__API_PORT=str(port), ENVOY_ADMIN_PORT=str(admin),
                            DUO_BEDROCK_UPSTREAM_HTTP2="true" if row == "filter-h2" else "false")
        proc = envoy(config, workdir, f"streams-{tag}")
        wait_ready(port)
        wait_jwks([proc])
        return proc, port, admin

    def cell(row, n):
        proc, port, admin = start(row, f"{row}-{n}")
        try:
            plain = row == "plain"
            # Warm-up: one whole stream at once (loads every code path, checks the answer).
            warm = plain_request(WARM_MODEL) if plain else filter_request(WARM_MODEL, tokens[n])
            streams, _, _ = asyncio.run(open_streams(port, [warm], plain, proc.pid, STREAM_TIMEOUT))
            if streams[0].result != "ok":
                raise RuntimeError(f"streams/{row}: warm-up stream failed: {streams[0].result} {streams[0].detail}"
                                   f" (logs in {workdir})")
            time.sleep(0.5)
            requests = [plain_stream] * n if plain else [filter_request(STREAM_MODEL, t) for t in tokens[:n]]
            idle = proc_status_kb(proc.pid, "VmRSS")
            try:  # reset VmHWM (peak RSS) to the current RSS
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
                hwm = True
            except OSError:
                hwm = False
            cpu0 = cpu_ns(proc.pid)
            streams, elapsed, sampled = asyncio.run(open_streams(port, requests, plain, proc.pid, STREAM_TIMEOUT))
            cpu = cpu_ns(proc.pid) - cpu0
            peak = max(sampled, proc_status_kb(proc.pid, "VmHWM") if hwm else 0)
            counters = envoy_counters(admin, r"overflow|cx_connect_fail|cx_connect_timeout|rq_timeout"
                                             r"|cx_destroy_remote_with_active_rq|rq_pending_failure_eject")
            ok = [s for s in streams if s.result == "ok"]
            ttfb = [(s.t_first - s.t0) * 1000 - STREAM_FIRST_MS for s in streams if s.t_first is not None
                    and s.status == 200]
            events = sum(s.delivered() for s in streams)
            failures = {}
            for s in streams:
                if s.result != "ok":
                    failures.setdefault(s.result, []).append(s.detail)
            return {"n": n, "ok": len(ok), "ttfb50": percentile(ttfb, 50), "ttfb99": percentile(ttfb, 99),
                    "cpu_us": cpu / 1000 / max(events, 1), "events": events, "idle_mb": idle / 1024,
                    "kb_per_stream": max(peak - idle, 0) / n, "elapsed": elapsed, "failures": failures,
                    "counters": counters}
        finally:
            stop_processes([proc])

    if PIN:
        saved_affinity = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(range(0, (os.cpu_count() or 2) - 1)))
    try:
        results = {}
        for _ in range(STREAM_ROUNDS):
            for n in counts:
                for row in STREAM_VARIANTS:
                    print(f"streams: {row}, N={n} ...", file=sys.stderr, flush=True)
                    results.setdefault((row, n), []).append(cell(row, n))
    finally:
        if PIN:
            os.sched_setaffinity(0, saved_affinity)

    def med(runs, key):
        return sorted(r[key] for r in runs)[len(runs) // 2]

    labels = {"plain": "plain Envoy (pre-signed InvokeModelWithResponseStream)",
              "filter": "filter (jwt_authn in front): /v2/code/completions stream, fresh token",
              "filter-h2": "the same, Bedrock over HTTP/2 (DUO_BEDROCK_UPSTREAM_HTTP2)"}
    print(f"\nStreams: N concurrent streams opened at once, Envoy --concurrency {CONCURRENCY}"
          f"{', pinned to CPU ' + ENVOY_CPUS if PIN else ''}; upstream = bedrock-emulator: first event after "
          f"{STREAM_FIRST_MS} ms, then {STREAM_DELTAS} text deltas {STREAM_DRIP_MS} ms apart; "
          f"{'median of ' + str(STREAM_ROUNDS) + ' rounds' if STREAM_ROUNDS > 1 else 'one round'}, "
          f"cells bounded to {STREAM_TIMEOUT:.0f} s\n")
    print("| variant | N | added TTFB p50 ms | added TTFB p99 ms | Envoy CPU µs/event | RSS KiB/stream "
          "| failures | streams ok | cell s |")
    print("|---|---|---|---|---|---|---|---|---|")

    def ratio(value, base):
        return f" (×{value / base:.1f})" if base and base > 0 and value == value else ""

    failed = False
    for n in counts:
        base = results[("plain", n)]
        for row in STREAM_VARIANTS:
            runs = results[(row, n)]
            t50, t99, cpu, mem = (med(runs, k) for k in ("ttfb50", "ttfb99", "cpu_us", "kb_per_stream"))
            fails = sum(n - r["ok"] for r in runs)
            failed = failed or fails > 0
            rel = row != "plain"
            print(f"| {labels[row]} | {n} | {t50:.1f}{ratio(t50, med(base, 'ttfb50')) if rel else ''} "
                  f"| {t99:.1f}{ratio(t99, med(base, 'ttfb99')) if rel else ''} "
                  f"| {cpu:.1f}{ratio(cpu, med(base, 'cpu_us')) if rel else ''} "
                  f"| {mem:.1f}{ratio(mem, med(base, 'kb_per_stream')) if rel else ''} "
                  f"| {fails} | {med(runs, 'ok')}/{n} | {med(runs, 'elapsed'):.1f} |")
    print(f"\nadded TTFB: from opening the connection to the first body byte, minus the upstream's own "
          f"{STREAM_FIRST_MS} ms (includes the client's own delay, the same in both rows). Envoy CPU µs/event: "
          f"scheduler time of every Envoy thread during the cell / text deltas delivered. RSS KiB/stream: "
          f"(peak RSS with the N streams open - idle RSS after a warm-up stream) / N. (×k): ratio to plain Envoy.")
    for n in counts:
        for row in STREAM_VARIANTS:
            for i, r in enumerate(results[(row, n)]):
                if r["failures"] or r["counters"]:
                    kinds = ", ".join(f"{k} {len(v)} (e.g. {v[0]})" for k, v in r["failures"].items())
                    counters = ", ".join(f"{k}={v}" for k, v in sorted(r["counters"].items())) or "none"
                    print(f"  {row} N={n} round {i + 1}: failures: {kinds or 'none'}; Envoy counters: {counters}")
    print()
    if failed:
        print("some streams failed: see the logs in", workdir)
        return 1
    return 0


def run_table(url, up_port, workdir, fresh_tokens):
    """The main table: every row under wrk, interleaved rounds (its own Envoys, stopped at the end)."""
    procs = []
    try:
        token = fresh_tokens[0]
        gitlab = {"authorization": f"Bearer {token}", "x-gitlab-authentication-type": "oidc",
                  "x-gitlab-realm": "self-managed", "x-gitlab-instance-id": INSTANCE, "content-type": "application/json"}
        completion = {"current_file": {"file_name": "add.py", "language_identifier": "python",
                                       "content_above_cursor": "def add(a, b):\n    ", "content_below_cursor": "\n"},
                      "prompt_version": 2, "model_provider": "litellm", "model_identifier": f"bedrock/{MODEL}",
                      "stream": False}
        bedrock_body, invoke_path = INVOKE_BODY, INVOKE_PATH
        presigned = sigv4_headers(f"127.0.0.1:{up_port}", invoke_path, bedrock_body.encode(),
                                  datetime.datetime.now(datetime.timezone.utc))

        rows = []
        plain_port, native_port = free_port(), free_port()
        by_name = {}
        by_name["plain"] = envoy(plain_config(plain_port, free_port(), up_port), workdir, "plain")
        by_name["native"] = envoy(plain_config(native_port, free_port(), up_port, native_filters(up_port)), workdir,
                                  "native")
        # Floors: what jwt_authn alone costs (the JWT rides in its own header so the pre-signed
        # request stays valid), and a proxy-wasm filter doing only the real filter's round trips.
        jwt_port, floor_port, floor_jwt_port = free_port(), free_port(), free_port()
        by_name["jwt"] = envoy(plain_config(jwt_port, free_port(), up_port, jwt_authn_filter(up_port, "x-bench-jwt")),
                               workdir, "jwt")
        floors = Path(WASM_FLOOR).is_file()
        if floors:
            by_name["floor"] = envoy(plain_config(floor_port, free_port(), up_port, floor_filter(WASM_FLOOR)),
                                     workdir, "floor")
            by_name["floor+jwt"] = envoy(plain_config(floor_jwt_port, free_port(), up_port,
                                                      jwt_authn_filter(up_port, "x-bench-jwt") + floor_filter(WASM_FLOOR)),
                                         workdir, "floor-jwt")
        procs.extend(by_name.values())
        filter_port = free_port()
        variants = [("filter", filter_port, {"AIGW_TOKEN_CACHE_SIZE": "0"}),
                    ("filter-wasm", free_port(), {"AIGW_TOKEN_CACHE_SIZE": "0", "DUO_BEDROCK_ENVOY_JWT_AUTHN": "false"}),
                    ("filter-cache", free_port(), {})]
        for name, port, extra in variants:
            config = render(AIGW_GITLAB_URL=url, AWS_BEDROCK_RUNTIME_ENDPOINT=url, AWS_REGION_NAME=REGION,
                            AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AIGW_FASTAPI__API_HOST="127.0.0.1",
                            AIGW_FASTAPI__API_PORT=str(port), ENVOY_ADMIN_PORT=str(free_port()), **extra)
            by_name[name] = envoy(config, workdir, name)
            procs.append(by_name[name])
        for port in (plain_port, native_port, jwt_port, *((floor_port, floor_jwt_port) if floors else ()),
                     *(v[1] for v in variants)):
            wait_ready(port)
        wait_jwks(list(by_name.values()))
        # Idle RSS, before any load: Envoy with its workers' VMs compiled and the keys fetched
        # (the launcher's memory_allocator_manager hands freed pages back once a second).
        time.sleep(2.0)
        idle = {proc.pid: rss_mb(proc.pid) for proc in by_name.values()}

        scripts = {}
        lua_script(f"{workdir}/plain.lua", "POST", invoke_path, presigned, bedrock_body)
        lua_script(f"{workdir}/jwt.lua", "POST", invoke_path, presigned, bedrock_body, fresh_tokens, "x-bench-jwt")
        native_headers = {"authorization": f"Bearer {token}", "content-type": "application/json",
                          "accept": "application/json"}
        lua_script(f"{workdir}/native.lua", "POST", invoke_path, native_headers, bedrock_body, fresh_tokens)
        lua_script(f"{workdir}/filter.lua", "POST", "/v2/code/completions", gitlab, json.dumps(completion), fresh_tokens)
        lua_script(f"{workdir}/cached.lua", "POST", "/v2/code/completions", gitlab, json.dumps(completion))
        lua_script(f"{workdir}/stream.lua", "POST", "/v2/code/completions", gitlab,
                   json.dumps(dict(completion, stream=True)), fresh_tokens)
        plan = [
            ("plain", "plain Envoy (pre-signed passthrough)", plain_port, "plain.lua", by_name["plain"]),
            ("native", "native jwt_authn + aws_request_signing", native_port, "native.lua", by_name["native"]),
            ("jwt", "floor: jwt_authn alone (as in front of the filter), fresh token", jwt_port, "jwt.lua",
             by_name["jwt"]),
            ("floor", "floor: proxy-wasm round trips only (bench/wasm-floor)", floor_port, "plain.lua",
             by_name.get("floor")),
            ("floor+jwt", "floor: jwt_authn + proxy-wasm round trips, fresh token", floor_jwt_port, "jwt.lua",
             by_name.get("floor+jwt")),
            ("filter", "filter (jwt_authn in front): completion, fresh token each request", filter_port,
             "filter.lua", by_name["filter"]),
            ("wasm", "filter, wasm-only verify: completion, fresh token each request", variants[1][1],
             "filter.lua", by_name["filter-wasm"]),
            ("cached", "filter: completion, token reused (caches)", variants[2][1], "cached.lua",
             by_name["filter-cache"]),
            ("stream", "filter (jwt_authn in front): completion, stream, fresh token", filter_port,
             "stream.lua", by_name["filter"]),
        ]
        wanted = os.environ.get("BENCH_ROWS", ",".join(ALL_ROWS)).split(",")
        if not floors and {"floor", "floor+jwt"} & set(wanted):
            print(f"no {WASM_FLOOR} (make bench builds it): floor rows skipped", file=sys.stderr)
        plan = [p for p in plan if p[0] in wanted and p[4] is not None]
        cells = {p[0]: ([], []) for p in plan}
        for _ in range(ROUNDS):
            for key, _label, port, script, proc in plan:
                cells[key][0].append(run_wrk(port, f"{workdir}/{script}", 1))
                cells[key][1].append(run_wrk(port, f"{workdir}/{script}", 16, proc.pid))
        # Recorded in a round of its own after the measured ones: sampling costs the sampled
        # process CPU (its call stacks are walked in its own context), which the table must not see.
        recorded = {}
        for key, _label, port, script, proc in plan:
            if key in PERF_ROWS:
                recorder = perf_start(proc.pid, f"{workdir}/perf-{key}.data")
                recorded[key] = run_wrk(port, f"{workdir}/{script}", 16, proc.pid)[4]
                perf_stop(recorder)

        def median(runs, index):
            """The run with the median value of `index` (p50 at c=1, req/s at c=16)."""
            return sorted(runs, key=lambda r: r[index])[len(runs) // 2]

        for key, label, _port, _script, proc in plan:
            lat_runs, thr_runs = cells[key]
            lat, thr = median(lat_runs, 1), median(thr_runs, 0)
            cpu = sorted(r[4] for r in thr_runs)[len(thr_runs) // 2]
            errors = sum(r[3] for r in lat_runs + thr_runs)
            rows.append((label, lat, thr, rss_mb(proc.pid), errors, cpu,
                         idle[proc.pid]))

        if not rows:
            sys.exit(f"BENCH_ROWS={os.environ.get('BENCH_ROWS')!r}: no such row")
        base, base_cpu = rows[0][1][1], rows[0][5]
        print(f"\nEnvoy {ENVOY_BIN} --concurrency {CONCURRENCY}, wrk {DURATION} per cell, "
              f"median of {ROUNDS} interleaved rounds, upstream = bedrock-emulator (SigV4 verified)"
              f"{', Envoy pinned to CPU ' + ENVOY_CPUS if PIN else ''}\n")
        print("| variant | c=1 p50 ms | c=1 p99 ms | added p50 µs | c=16 req/s | c=16 p50 ms | c=16 p99 ms "
              "| Envoy CPU µs/req | added CPU µs/req | idle RSS MB | RSS MB after | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        if "plain" not in wanted:
            print("(no plain row: 'added' is relative to the first row)\n")
        for label, lat, thr, rss, errors, cpu, idle_rss in rows:
            print(f"| {label} | {lat[1]:.3f} | {lat[2]:.3f} | {(lat[1] - base) * 1000:+.0f} | {thr[0]:.0f} | "
                  f"{thr[1]:.3f} | {thr[2]:.3f} | {cpu:.0f} | {cpu - base_cpu:+.0f} | {idle_rss:.1f} | {rss:.0f} | "
                  f"{errors} |")
        for key, label, *_ in plan:
            if key in recorded:
                perf_summary(f"{workdir}/perf-{key}.data", label, recorded[key])
        print("\nEnvoy CPU µs/req: CPU time of every Envoy thread during the c=16 run / requests served "
              "(the cost that decides capacity; latency at c=1 also includes waiting on the upstream).")
        print()
        if any(row[4] for row in rows):
            print("some requests failed: see the logs in", workdir)
            return 1
        return 0
    finally:
        stop_processes(procs)


def main():
    wanted = os.environ.get("BENCH_ROWS", ",".join(ALL_ROWS)).split(",")
    table = [row for row in wanted if row not in ("streams", "hostcalls")]
    if table and not shutil.which("wrk"):
        sys.exit("wrk is not installed (make bench installs it from Debian)")
    workdir = tempfile.mkdtemp(prefix="duo-bench-")
    emu = subprocess.Popen(pinned(CLIENT_CPUS, [EMULATOR_BIN, "serve", "--listen", "127.0.0.1:0", "--access-key-id", AK,
                            "--secret-access-key", SK, "--region", REGION]), stdout=subprocess.PIPE, text=True,
                           stderr=subprocess.DEVNULL)
    url = emu.stdout.readline().strip().rsplit(" ", 1)[-1]
    up_port = int(url.rsplit(":", 1)[1])
    try:
        def mint(n=1):
            return [json.loads(http("POST", f"{url}/_emulator/mint", b"{}", {"content-type": "application/json"})[1])["token"]
                    for _ in range(n)]

        tokens = mint(int(os.environ.get("BENCH_TOKENS", "3000"))) if table or "hostcalls" in wanted else []
        status = 0
        if table:
            status = run_table(url, up_port, workdir, tokens)
        if "hostcalls" in wanted and Path(WASM_FLOOR).is_file():
            status = run_hostcalls(up_port, workdir, tokens) or status
        if "streams" in wanted:
            need = max(STREAM_COUNTS) + 1
            tokens += mint(max(0, need - len(tokens)))
            status = run_streams(url, up_port, workdir, tokens) or status
        return status
    finally:
        stop_processes([emu])

if __name__ == "__main__":
    sys.exit(main())
