#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/seed-*.

The inputs are literals from the project's unit tests (request bodies, Bedrock answers and
stream events, JWKS, credentials answers, plugin configurations), put into each target's input
format (see the target's doc comment). Rerun after changing a format:
`python3 fuzz/seeds.py` (it replaces the seed-* files, and leaves other corpus files alone).
"""

import base64
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "..", "src", "auth", "testdata")
MODEL = "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0"
NOW = 1_739_952_001


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.remove(os.path.join(d, f))
    for i, (name, data) in enumerate(seeds):
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, "seed-%02d-%s" % (i, name)), "wb") as f:
            f.write(data)


def nul(*parts):
    return b"\0".join(p.encode() if isinstance(p, str) else p for p in parts)


def j(v):
    return json.dumps(v, ensure_ascii=False)


# ---------------------------------------------------------------- request bodies (unit tests)

COMPLETIONS_EXAMPLE = {
    "current_file": {"file_name": "app/models/user.rb", "language_identifier": "ruby",
                     "content_above_cursor": "class User\n  def full_name\n    ",
                     "content_below_cursor": "\n  end\nend\n"},
    "intent": "completion", "stream": False, "project_path": "group/project", "telemetry": [],
    "context": [], "model_provider": "litellm", "prompt_version": 2, "prompt": None,
    "model_endpoint": "https://bedrock-runtime.us-east-1.amazonaws.com", "model_name": "claude_3",
    "model_identifier": MODEL,
}
GENERATIONS_EXAMPLE = {
    "project_path": "string", "project_id": 0,
    "current_file": {"file_name": "test.py", "language_identifier": "python",
                     "content_above_cursor": "def hello():\n  ", "content_below_cursor": ""},
    "model_provider": "litellm", "model_endpoint": None, "model_api_key": None,
    "model_identifier": MODEL, "model_name": "claude_3", "telemetry": [], "stream": False,
    "choices_count": 0, "context": [], "agent_id": "string",
    "prompt_id": "code_suggestions/generations", "prompt_version": 2, "prompt": "",
}
V3_GENERATION_EXAMPLE = {
    "current_file": {"file_name": "main.py", "content_above_cursor": "# sort a list of ints\n",
                     "content_below_cursor": ""},
    "intent": "generation", "stream": True,
    "prompt_components": [{"type": "code_editor_generation", "payload": {
        "file_name": "main.py", "content_above_cursor": "# sort a list of ints\n",
        "content_below_cursor": "", "language_identifier": "Python", "stream": True,
        "prompt_enhancer": {
            "examples_array": [{"example": "...", "response": "...", "trigger_type": "comment"}],
            "trimmed_content_above_cursor": "# sort a list of ints\n",
            "trimmed_content_below_cursor": "",
            "related_files": ["<file_content file_name=\"a.py\">\n...\n</file_content>\n"],
            "related_snippets": [], "libraries": [],
            "user_instruction": "Generate the best possible code based on instructions."},
        "prompt_id": "code_suggestions/generations", "prompt_version": "^1.0.0"}}],
    "model_metadata": {"provider": "openai", "name": "claude_3",
                       "endpoint": "https://bedrock-runtime.us-east-1.amazonaws.com",
                       "api_key": None, "identifier": MODEL},
}
V3_COMPLETION = {
    "prompt_components": [
        {"type": "code_editor_completion", "payload": {
            "file_name": "main.go", "content_above_cursor": "func main() {\n\t",
            "content_below_cursor": "\n}\n", "language_identifier": "go", "stream": True}},
        {"type": "code_context", "payload": {"type": "file", "name": "util.go",
                                             "content": "package util"}}],
    "model_metadata": {"provider": "openai", "name": "claude_3",
                       "identifier": "bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0"},
}
AGENT = {
    "messages": [
        {"role": "user", "content": "How do I revert a commit?", "context": None,
         "current_file": None, "additional_context": []},
        {"role": "assistant", "agent_scratchpad": [{"action": {
            "thought": "I should\\_search", "tool": "gitlab\\_documentation",
            "tool_input": "revert commit"}, "observation": "Use git revert."}]}],
    "model_metadata": {"provider": "openai", "name": "claude_3", "endpoint": "https://x",
                       "api_key": None, "identifier": MODEL},
    "unavailable_resources": ["Pipelines", "Vulnerabilities"],
}
AGENT_CONTEXT = {"messages": [
    {"role": "user", "content": "a", "additional_context": [
        {"category": "file", "id": "x", "content": "y", "metadata": {"a": 1}},
        {"category": "snippet", "id": "x", "content": "y", "metadata": {"a": 1}}]},
    {"role": "assistant", "content": "b"},
    {"role": "user", "content": "c"}]}
AGENT_OPTIONS = {
    "messages": [{"role": "user", "content": "q"}],
    "options": {"agent_scratchpad": {"agent_type": "react", "steps": [
        {"thought": "t", "tool": "issue\\_reader", "tool_input": "#1", "observation": "o"}]}},
    "unavailable_resources": None,
}
LEGACY = {"prompt_components": [{"type": "prompt",
                                 "metadata": {"source": "GitLab EE", "version": "17.9.0"},
                                 "payload": {"content": [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "Hello"}],
                                             "provider": "litellm", "model": "claude_3",
                                             "model_endpoint": "https://x", "model_api_key": None,
                                             "model_identifier": MODEL,
                                             "params": {"stop_sequences": ["\n\nHuman", "Observation:"],
                                                        "temperature": 0.1,
                                                        "max_tokens_to_sample": 4096}}}],
          "stream": True}
PROMPT_CHECK = {"inputs": {}, "stream": False, "model_metadata": {
    "name": "claude_3", "endpoint": "https://example.com", "api_key": "k", "provider": "openai",
    "identifier": MODEL}}
PROMPT_COMMIT = {"inputs": {"diff": "+x"}, "stream": True,
                 "model_metadata": {"provider": "p", "name": "n", "identifier": MODEL}}
PROMPT_REVIEW = {"inputs": {"diff_lines": "d", "mr_title": "t", "current_date": "someday"},
                 "model_metadata": {"identifier": MODEL}}
PROMPT_ISSUE = {"inputs": {"input": "see #12", "suggestions": None},
                "model_metadata": {"identifier": MODEL}}
PROMPT_DOCS = {"inputs": {"question": "how?", "content_id": "ATTRS",
                          "documents": [{"id": 1, "content": "c"}]},
               "model_metadata": {"identifier": MODEL}}


def plan_seeds():
    def seed(bits, path, body, flags="", default="", scopes="complete_code,generate_code,duo_chat",
             iss="https://gitlab.example.com", method="POST", now=NOW):
        control = "%02x%016x" % (bits, now)
        return nul(control, method, path, flags, default, scopes, iss,
                   body if isinstance(body, str) else j(body))

    gen = dict(GENERATIONS_EXAMPLE, stream=True)
    return [
        ("v2-completions", seed(0b000101, "/v2/code/completions", COMPLETIONS_EXAMPLE, flags="a,b")),
        ("v2-completions-alias", seed(0b011000, "/v2/completions", COMPLETIONS_EXAMPLE)),
        ("v2-generations", seed(0b110100, "/v2/code/generations", gen)),
        ("v3-generation", seed(0b000100, "/v3/code/completions", V3_GENERATION_EXAMPLE)),
        ("v3-completion", seed(0b001000, "/v3/code/completions/", V3_COMPLETION)),
        ("v4-suggestions", seed(0b010101, "/v4/code/suggestions?x=1", V3_COMPLETION, flags=" x, y ,x")),
        ("prompt-check", seed(0b000100, "/v1/prompts/model_configuration%2Fcheck", PROMPT_CHECK,
                              scopes="", iss="gitlab-ai-gateway")),
        ("prompt-commit", seed(0b010100, "/v2/prompts/generate_commit_message", PROMPT_COMMIT)),
        ("prompt-review", seed(0b000000, "/v1/prompts/review_merge_request", PROMPT_REVIEW)),
        ("prompt-issue", seed(0b000100, "/v1/prompts/chat/issue_reader", PROMPT_ISSUE, scopes="ask_issue")),
        ("prompt-docs", seed(0b000000, "/v2/prompts/chat%2Fdocumentation_search", PROMPT_DOCS)),
        ("agent", seed(0b000110, "/v2/chat/agent", AGENT, default=MODEL)),
        ("agent-context", seed(0b000110, "/v2/chat/agent", AGENT_CONTEXT, default=MODEL,
                               scopes="duo_chat,include_file_context")),
        ("agent-options", seed(0b000010, "/v2/chat/agent", AGENT_OPTIONS, default="anthropic.claude-3-haiku-20240307-v1:0")),
        ("legacy", seed(0b011100, "/v1/chat/explain_code", LEGACY)),
        ("legacy-agent", seed(0b000000, "/v1/chat/agent", dict(LEGACY, stream=False))),
        ("healthz", seed(0, "/monitoring/healthz", "", method="GET")),
        ("not-json", seed(0b000100, "/v2/code/completions", "{\"current_file\":")),
        ("model-arn", seed(0b000000, "/v2/code/completions", dict(
            COMPLETIONS_EXAMPLE,
            model_identifier="bedrock/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0"))),
    ]


# ---------------------------------------------------------------- JWT

def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


RAILS_CLAIMS = {
    "jti": "8b1e6c5e-2d4a-4f0e-9a7b-000000000001", "aud": ["gitlab-ai-gateway", "other-service"],
    "sub": "instance-uuid-1", "iss": "https://gitlab.example.com",
    "iat": 1_739_952_000, "nbf": 1_739_952_000 - 5, "exp": 1_739_952_000 + 3600,
    "gitlab_realm": "self-managed", "scopes": ["complete_code", "generate_code", "duo_chat"],
    "skip_usage_cutoff": False,
}


def jwt_seeds():
    def seed(bits, header, payload, jti="", auth_type="oidc", headers="", extra="01 00000000 00"):
        control = "%02x %s" % (bits, extra)
        return nul(control, header if isinstance(header, str) else j(header),
                   payload if isinstance(payload, str) else j(payload), jti, auth_type, headers)

    h1 = {"alg": "RS256", "kid": "test-key-1", "typ": "JWT"}
    h2 = {"alg": "RS256", "kid": "test-key-2"}
    bindings = "x-gitlab-realm: self-managed\nx-gitlab-instance-id: instance-uuid-1"
    gw = dict(RAILS_CLAIMS, iss="gitlab-ai-gateway", sub="user-42", gitlab_instance_id="iid")
    return [
        ("rails", seed(0b00000, h1, RAILS_CLAIMS, headers=bindings)),
        ("rails-envoy-jti", seed(0b10000, h1, RAILS_CLAIMS, headers=bindings)),
        ("rails-envoy-other-jti", seed(0b00000, h1, RAILS_CLAIMS, jti="another")),
        ("key2-string-aud", seed(0b00010, h2, dict(RAILS_CLAIMS, aud="gitlab-ai-gateway", duo_seat_count=42))),
        ("wrong-key", seed(0b10010, h1, RAILS_CLAIMS)),
        ("no-kid", seed(0b10000, {"alg": "RS256"}, RAILS_CLAIMS)),
        ("corrupt", seed(0b10100, h1, RAILS_CLAIMS, extra="01 00000000 00 05 80")),
        ("gateway-issued", seed(0b10000, h1, gw, headers="x-gitlab-realm: self-managed\nx-gitlab-instance-id: iid\nx-gitlab-global-user-id: user-42")),
        ("minimal", seed(0b10000, h1, {"aud": "gitlab-ai-gateway", "exp": 1_739_952_001, "sub": None, "scopes": None})),
        ("fraction-times", seed(0b00000, h1, {"aud": "gitlab-ai-gateway", "exp": 1739952000.9, "iat": 1.5})),
        ("expired-leeway", seed(0b10000, h1, dict(RAILS_CLAIMS, exp=1_739_952_000 - 30), extra="1e 00000000 00")),
        ("bad-claims", seed(0b10000, h1, dict(RAILS_CLAIMS, scopes=["complete_code", 1]))),
        ("other-audience", seed(0b1010000, h1, RAILS_CLAIMS)),
        ("payload-array", seed(0b00000, h1, "[1,2,3]")),
        ("alg-none", seed(0b00000, {"alg": "none", "kid": "test-key-1"}, RAILS_CLAIMS)),
        ("hs256", seed(0b00000, {"alg": "HS256", "kid": "test-key-1"}, RAILS_CLAIMS)),
        ("kid-number", seed(0b00000, {"alg": "RS256", "kid": 7}, RAILS_CLAIMS)),
        ("unknown-kid", seed(0b10000, {"alg": "RS256", "kid": "k" * 200}, RAILS_CLAIMS)),
        ("jku-ignored", seed(0b10010, {"alg": "RS256", "kid": "test-key-2", "jku": "https://evil.example/"}, RAILS_CLAIMS)),
        ("raw-segments", seed(0b00001, b64url(j(h1).encode()) + "=", b64url(j(RAILS_CLAIMS).encode()))),
        ("raw-segments-envoy", seed(0b10001, b64url(j(h1).encode()), b64url(j(RAILS_CLAIMS).encode()))),
        ("verbatim", seed(0b01000, "eyJ.eyJ.eyJ", "")),
        ("empty-keys", seed(0b100000, h1, RAILS_CLAIMS)),
        ("bad-scheme", seed(0b00000, h1, RAILS_CLAIMS, auth_type="OIDC", headers="authorization: Basic dXNlcjpwdw==")),
        ("size-limit", seed(0b00000, h1, RAILS_CLAIMS, extra="01 00000000 02")),
    ]


# ---------------------------------------------------------------- JWKS / discovery

def jwks_seeds():
    jwks = open(os.path.join(TESTDATA, "jwks.json"), "rb").read()
    key1 = open(os.path.join(TESTDATA, "key1_pkcs1.pem"), "rb").read()
    key2 = open(os.path.join(TESTDATA, "key2_pkcs8.pem"), "rb").read()
    doc = json.loads(jwks)
    k0 = doc["keys"][0]
    variants = []
    for change in [{"use": "enc"}, {"alg": "RS512"}, {"kty": "oct"}, {"kid": 7}, {"n": "!!!"},
                   {"n": "AQAB"}, {"e": "AQA"}, {"e": "Aw"}]:
        variants.append(dict(k0, **change))
    no_kid = {k: v for k, v in doc["keys"][1].items() if k not in ("kid", "use", "alg")}
    no_kid["e"] = "AQAB=="
    return [
        ("jwks", b"\0" + jwks),
        ("jwks-twice-and-html", b"\0" + nul(jwks, jwks, b"<html>502</html>")),
        ("jwks-unusable-keys", b"\0" + j({"keys": variants}).encode()),
        ("jwks-no-kid-padded", b"\0" + j({"keys": [no_kid]}).encode()),
        ("jwks-empty", b"\0" + b'{"keys":[]}'),
        ("discovery", b"\x01" + b'{"issuer":"https://gl","jwks_uri":"https://gl.example/oauth/discovery/keys"}'),
        ("discovery-upper", b"\x01" + b'{"jwks_uri":" HTTP://user:pw@x:8080/k?a=1#f "}'),
        ("discovery-file", b"\x01" + b'{"jwks_uri":"file:///etc/passwd"}'),
        ("pem-pkcs1", b"\x02" + key1),
        ("pem-pkcs8", b"\x02" + key2),
        ("pem-squeezed", b"\x02" + key2.strip().replace(b"\n", b"\\n")),
        ("pem-encrypted", b"\x02" + b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----"),
        ("misc", b"\x03" + nul("https://example.com/gitlab/?x#y", "max-age=86400, public, must-revalidate",
                              b"".join(bytes([op]) + struct.pack(">Q", t) for op, t in
                                       [(0, 1000), (2, 1001), (2, 1016), (1, 1020), (1, 1025), (2, 1030), (2, 1046)]))),
        ("misc-quoted", b"\x03" + nul("gitlab.example.com", "public, MAX-AGE = \"60\"", "")),
    ]


# ---------------------------------------------------------------- event stream

def frame(headers, payload):
    hb = b""
    for name, value in headers:
        hb += bytes([len(name)]) + name.encode()
        if isinstance(value, int):
            hb += b"\x04" + struct.pack(">i", value)
        else:
            v = value.encode()
            hb += b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(hb) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hb))
    out = prelude + struct.pack(">I", zlib.crc32(prelude)) + hb + payload
    return out + struct.pack(">I", zlib.crc32(out))


def chunk(event, pad="abcdefgh"):
    payload = j({"bytes": base64.b64encode(event.encode()).decode(), "p": pad}).encode()
    return frame([(":event-type", "chunk"), (":content-type", "application/json"),
                  (":message-type", "event")], payload)


FIXTURE = [
    '{"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_bdrk_01Xyz","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1}}}',
    '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}',
    '{"type":"content_block_stop","index":0}',
    '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":15}}',
    '{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":10,"outputTokenCount":15,"invocationLatency":1798,"firstByteLatency":1507}}',
]
ERROR_EVENT = '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'


def eventstream_seeds():
    def raw(flags, stream, cuts=()):
        return bytes([flags, len(cuts)]) + b"".join(struct.pack(">H", c) for c in cuts) + stream

    def rec(kind, data):
        data = data.encode() if isinstance(data, str) else data
        return bytes([kind]) + struct.pack(">H", len(data)) + data

    fixture = b"".join(chunk(e) for e in FIXTURE)
    exceptions = (chunk(FIXTURE[2])
                  + frame([(":exception-type", "throttlingException"), (":content-type", "application/json"),
                           (":message-type", "exception")],
                          b'{"message":"Too many requests, please wait before trying again."}')
                  + frame([(":message-type", "error"), (":error-code", "InternalFailure"),
                           (":error-message", "An internal error occurred")], b""))
    return [
        ("fixture", raw(0, fixture, (100, 333))),
        ("fixture-crc-fixed", raw(2, fixture, (7,))),
        ("exceptions", raw(0, exceptions, (12, 13, 200))),
        ("garbage", raw(0, b"HTTP/1.1 500 Internal Server Error\r\n\r\n")),
        ("script-fixture", raw(1, b"".join(rec(0, e) for e in FIXTURE), (50, 51, 52))),
        ("script-mixed", raw(1, rec(3, "initial-response") + rec(0, FIXTURE[2])
                              + rec(1, "modelStreamErrorException\n{\"Message\":\"boom\",\"originalStatusCode\":500}")
                              + rec(2, "InternalFailure\nAn internal error occurred")
                              + rec(0, ERROR_EVENT) + rec(5, b'{"bytes":"e30="}')
                              + rec(6, b"\x03\x01x\x2a") + rec(7, "weird") + rec(4, b"oops"))),
        ("script-bad-json", raw(1, rec(0, FIXTURE[2]) + rec(0, "not json") + rec(0, FIXTURE[2]))),
    ]


# ---------------------------------------------------------------- responders

def answer(text, inp=10, out=50):
    return j({"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude",
              "content": [{"type": "text", "text": text}, {"type": "tool_use", "id": "x"}],
              "stop_reason": "end_turn", "usage": {"input_tokens": inp, "output_tokens": out}})


def responders_seeds():
    def seed(fam, mode, answer_bytes, prefix="def hello():\n  ", status=0):
        return nul("%02x%02x%04x" % (fam, mode, status), prefix, answer_bytes)

    stream_events = "\n".join(FIXTURE[:3] + [
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there\\nFinal Answer: yes"}}']
        + FIXTURE[3:])
    agent_stream = "\n".join([
        FIXTURE[0],
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" ok\\nFinal"}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Answer: You can "}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"use `git revert`."}}',
        FIXTURE[4]])
    generation = "```python\ndef hello():\n    print('hi')\n```"
    seeds = []
    for fam in range(10):
        seeds.append(("json-%d" % fam, seed(fam, 0, answer(generation if fam in (1, 3, 5) else "full_name"))))
        seeds.append(("stream-%d" % fam, seed(fam, 1, agent_stream if fam == 8 else stream_events)))
    seeds += [
        ("stream-error-event", seed(8, 1, FIXTURE[2] + "\n" + ERROR_EVENT)),
        ("stream-exception", seed(4, 1, FIXTURE[2] + "\n!Too many requests")),
        ("stream-prompt-usage", seed(7, 1, "\n".join(FIXTURE))),
        ("json-new-code", seed(1, 0, answer("<new_code>\n    return 1\n</new_code>"), prefix="def f():\n")),
        ("json-unreadable", seed(0, 0, "<html>")),
        ("error-validation", seed(0, 2, "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/\n\n"
                                       '{"message":"Malformed input request: extraneous key [model] is not permitted"}', status=400)),
        ("error-throttle", seed(6, 2, " ThrottlingException \n3\n", status=429)),
        ("error-token", seed(8, 2, "\n\n" + j({"__type": "com.amazon.coral.service#UnrecognizedClientException",
                                                "Message": "The security token included in the request is invalid."}), status=403)),
        ("error-signature", seed(2, 2, "InvalidSignatureException\n\n" + j({
            "message": "The request signature we calculated does not match. The Canonical String for this request should have been 'POST ... x-amz-security-token:IQoJ...'"}), status=400)),
        ("error-code-body", seed(9, 2, '\n\n{"Code":"X"}', status=404)),
    ]
    return seeds


# ---------------------------------------------------------------- ReAct

def react_seeds():
    return [
        ("action", " I should search the docs.\nAction: gitlab_documentation\nAction Input: revert a commit\n"),
        ("final", " I know this.\nAction: DirectAnswer\nFinal Answer: Use `git revert <sha>`.\n\nIt adds a new commit \u2014 safe for shared branches \U0001F600.\n\n"),
        ("split-marker", "Thought: easy\nFinal Ans\x01wer:\x01  \x01Hel\x01lo \n\x01world"),
        ("text-before-thought", "Sure, let me look.\nThought: the user is on an issue\nAction: issue_reader\nAction Input: current issue"),
        ("final-wins", "x\nAction: issue_reader\nAction Input: #1\nFinal Answer: done"),
        ("two-finals", "Final Answer: a Final Answer: b"),
        ("empty-final", "ok\nFinal Answer:   \n"),
        ("unknown", "  I am not sure what to do.\n"),
        ("merge-request-reader", "t\nAction: MergeRequestReader\nAction Input: !12"),
        ("escaped", "use\\_it\nAction: work\\_item\\_reader\nAction Input: x\\_y"),
        ("refused", "t\nAction: delete_project\nAction Input: all"),
        ("overloaded", " ok\nFinal\x01 Answer: You can \x01use `git revert`.\x01Anthropic overloaded_error"),
    ]


# ---------------------------------------------------------------- credentials

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzSECRETzz"
SESSION = "IQoJb3JpZ2luX2VjEPz//////////SESSIONTOKEN=="


def creds_json(expiration="2026-09-21T10:15:00Z"):
    return j({"Code": "Success", "LastUpdated": "2026-09-21T10:00:00Z", "Type": "AWS-HMAC",
              "AccessKeyId": "ASIAEMU000001", "SecretAccessKey": SECRET, "Token": SESSION,
              "Expiration": expiration})


WEB_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Z2l0bGFiOmR1byJ9.c2ln"
IRSA = ("AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/eks.amazonaws.com/serviceaccount/token\n"
        "AWS_ROLE_ARN=arn:aws:iam::123456789012:role/duo-bedrock\nAWS_ENDPOINT_URL_STS=http://127.0.0.1:9")


def sts_xml(expiration="2026-09-21T10:15:00Z"):
    return ('<?xml version="1.0"?>\n<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            "<AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAEMU000001</AccessKeyId>"
            "<SecretAccessKey>" + SECRET + "</SecretAccessKey><SessionToken>" + SESSION + "</SessionToken>"
            "<Expiration>" + expiration + "</Expiration></Credentials><Audience>sts.amazonaws.com</Audience>"
            "</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>")


def sts_error(code, message):
    return ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            "<Code>" + code + "</Code><Message>" + message + "</Message></Error><RequestId>r</RequestId></ErrorResponse>")


def credentials_seeds():
    def seed(env, a1="", a2="", a3="", statuses="000000", time="0000000069b0a400"):
        return nul("00" + statuses + time, env, a1, a2, a3)

    container = "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:9/creds\nAWS_CONTAINER_AUTHORIZATION_TOKEN=eyJhbGciOiJSUzI1NiJ9.AUTHTOKEN.sig"
    return [
        ("container", seed(container, creds_json())),
        ("container-relative", seed("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/abc?x=1\nAWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/t\n", "tok\n", creds_json())),
        ("imds", seed("", "AQAEAIMDSTOKENxyz==\n", "my-role\nother\n", creds_json())),
        ("imds-ipv6-offset", seed("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6", "AQAEAIMDSTOKENxyz==", "r", creds_json("2026-09-21T12:15:00+02:00"))),
        ("imds-endpoint", seed("AWS_EC2_METADATA_SERVICE_ENDPOINT=http://[fd00:ec2::254]:80/prefix/", "tok", "role", creds_json(), statuses="000004")),
        ("imds-403", seed("", "", statuses="070000")),
        ("static", seed("AWS_ACCESS_KEY_ID=AKID\nAWS_SECRET_ACCESS_KEY=" + SECRET, creds_json())),
        ("bad-uri", seed("AWS_CONTAINER_CREDENTIALS_FULL_URI=http://10.0.0.1/creds?token=SECRETQUERY", "")),
        ("disabled", seed("AWS_EC2_METADATA_DISABLED=true", "")),
        ("minimal-json", seed(container, '{"AccessKeyId":"AKIA1","SecretAccessKey":"s/k+1","Token":"","Expiration":null,"RoleArn":"arn:aws:iam::1:role/r"}')),
        ("web-identity", seed(IRSA, WEB_TOKEN + "\n", sts_xml())),
        ("web-identity-error", seed(IRSA, WEB_TOKEN, sts_error("InvalidIdentityToken", "Token " + WEB_TOKEN + " &amp; more"), statuses="000700")),
        ("web-identity-no-file", seed(IRSA, "open /t: no such file", statuses="050000")),
        ("failure-code", seed(container, '{"Code":"AssumeRoleUnauthorizedAccess"}')),
        ("fraction-time", seed(container, creds_json("2026-09-21T10:15:00.123456Z"), "", "2024-02-29 23:59:60z")),
        ("shared-record", seed("", '{"v":1,"access_key_id":"A","secret_access_key":"S","session_token":null,"expires_at":5}')),
    ]


# ---------------------------------------------------------------- config

def config_seeds():
    keys = "AWS_ACCESS_KEY_ID=AKID\nAWS_SECRET_ACCESS_KEY=SECRET"
    key1 = open(os.path.join(TESTDATA, "key1_pkcs1.pem")).read()
    return [
        ("minimal", nul('{"gitlab_url":"https://gitlab.example.com","region":"eu-west-1"}', keys)),
        ("full", nul(j({"gitlab_url": "http://127.0.0.1:8080", "gitlab_cluster": "gitlab",
                        "customer_portal_url": "https://customers.gitlab.com", "customer_portal_cluster": "cdot",
                        "audience": "gitlab-ai-gateway", "bedrock_endpoint": "http://127.0.0.1:9000",
                        "region": "us-east-1", "default_model": MODEL, "auth_bypass": False,
                        "jwt_leeway_secs": 30, "upstream_timeout_secs": 60, "key_wait_ms": 5000,
                        "max_token_bytes": 8192, "token_cache_size": 1024,
                        "credentials_cluster": "aws_credentials", "envoy_jwt_authn": True}),
                     keys + "\nAWS_SESSION_TOKEN=T\nAIGW_SELF_SIGNED_JWT__SIGNING_KEY=" + key1.strip().replace("\n", "\\n"))),
        ("bearer", nul('{"gitlab_url":"http://127.0.0.1:8080","bedrock_endpoint":"http://127.0.0.1:9000","region":"us-east-1"}',
                       "AWS_BEARER_TOKEN_BEDROCK=br-key\nAWS_ACCESS_KEY_ID=A")),
        ("vpce", nul('{"gitlab_url":"https://g","bedrock_endpoint":"https://vpce-1.bedrock-runtime.eu-central-1.vpce.amazonaws.com/"}', keys)),
        ("imds", nul('{"gitlab_url":"https://g","region":"us-east-1"}', "")),
        ("container", nul('{"gitlab_url":"https://g","region":"us-east-1"}',
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:9/creds\nAWS_CONTAINER_AUTHORIZATION_TOKEN=t")),
        ("no-credentials", nul('{"gitlab_url":"https://g","region":"us-east-1"}', "AWS_EC2_METADATA_DISABLED=true")),
        ("typo", nul('{"gitlab_url":"https://g","region":"us-east-1","typo":1}', keys)),
        ("bounds", nul('{"gitlab_url":"https://g","region":"us-east-1","jwt_leeway_secs":301}', keys)),
        ("bypass", nul('{"gitlab_url":"https://g","region":"us-east-1","auth_bypass":true,"envoy_jwt_authn":true}',
                       keys + "\nDUO_BEDROCK_FAULT_INJECTION=crash")),
        ("ipv6-endpoint", nul('{"gitlab_url":"https://g","bedrock_endpoint":"http://[::1]:9000","region":"us-west-2"}', keys)),
    ]


def main():
    write("plan", plan_seeds())
    write("jwt", jwt_seeds())
    write("jwks", jwks_seeds())
    write("eventstream", eventstream_seeds())
    write("responders", responders_seeds())
    write("react", react_seeds())
    write("credentials", credentials_seeds())
    write("config", config_seeds())


if __name__ == "__main__":
    main()
