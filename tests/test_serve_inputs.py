"""A client's mistake is a 4xx in the route's error shape, never a 500: every input a client
controls sent hostile to a real ``embctl serve`` as raw bytes on a socket (so no client
library tidies it up), and the server's log checked for tracebacks.  Then the headers and
secrets: two ``Authorization`` headers are a 400, a token in the query string never reaches
the access log, and a request's work is capped (``--max-request-tokens``: 413).

The pure functions behind these answers have in-process tests: tests/test_serve_parsing.py.
"""

from __future__ import annotations

import gzip
import http.client
import itertools
import json
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import openai
import pytest
from support.runner import Embctl, copy_home
from support.serve import output, post, start_serve, stop
from support.tokens import snapshot_of, tokens_of

MODEL = "all-MiniLM-L6-v2"
REPO = "sentence-transformers/all-MiniLM-L6-v2"
TOKEN = "tok-3d9a7c"
#: Texts a request under the dedicated server's cap sends; its cap is their exact tokens.
UNDER = [f"note {i}: the refund policy allows returns within {i} days" for i in range(12)]
EXTRA = "one more sentence, about shipping to the warehouse"
#: 2,587 characters, 640 tokens (MiniLM computes 256 of them); 2,048 of them fit in 8 MiB.
LONG = " ".join(itertools.islice(itertools.cycle(
    "the refund for an order is paid to the card it came from in ten days".split()), 600))


# -- a real server: hostile inputs --------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


def exchange(url: str, raw: bytes, method: str = "GET") -> Reply:
    """Send ``raw`` (a whole HTTP/1.1 request) as it is; the response, parsed."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=120) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return Reply(response.status, response.headers, response.read())


def request(method: str, target: str, body: bytes | None = None, headers: str = "",
            *, ctype: str | None = "application/json", chunked: bool = False,
            length: int | None = None) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    data = body or b""
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
        data = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 7]), data[i:i + 7])
                        for i in range(0, len(data), 7)) + b"0\r\n\r\n"
    elif body is not None or length is not None:
        head += f"Content-Length: {len(data) if length is None else length}\r\n"
    return (head + "Connection: close\r\n\r\n").encode("latin-1") + data


def embed(raw_body: bytes | str, route: str = "/v1/embeddings", **kw) -> bytes:
    data = raw_body.encode() if isinstance(raw_body, str) else raw_body
    return request("POST", route, data, **kw)


def get(target: str, headers: str = "") -> bytes:
    return request("GET", target, headers=headers, ctype=None)


M = f'"model": "{MODEL}"'
RESOLVE = f"/{REPO}/resolve/main"
API = f"/api/models/{REPO}"
INFO = f"{API}/paths-info/main"
PLAIN = embed(f'{{{M}, "input": "x"}}')


def check_416(reply: Reply) -> None:
    assert reply.headers["Content-Range"].startswith("bytes */")


def check_short_header(reply: Reply) -> None:
    assert len(reply.headers["X-Error-Message"]) < 2000


@dataclass
class Case:
    name: str
    raw: bytes
    status: int | None  # None: any status under 500 (a route another part of the issue owns)
    shape: str  # openai, ollama, hub, or protocol (uvicorn's own 400, before the app)
    check: Callable[[Reply], None] | None = field(default=None)


CASES = [
    # -- the JSON body of /v1/embeddings: every field, every type ------------------------------
    Case("nested-arrays", embed(b"[" * 100_000), 400, "openai"),
    Case("nested-in-input", embed(f"{{{M}, \"input\": " + "[" * 100_000), 400, "openai"),
    Case("nested-closed", embed(f"{{{M}, \"input\": " + "[" * 5000 + "]" * 5000 + "}"), 400,
         "openai"),
    Case("nested-900-in-dimensions", embed(f"{{{M}, \"input\": \"x\", \"dimensions\": "
                                           + "[" * 900 + "]" * 900 + "}"), 400, "openai"),
    Case("lone-surrogate", embed(f'{{{M}, "input": "\\ud800"}}'), 400, "openai"),
    Case("lone-surrogate-in-list", embed(f'{{{M}, "input": ["ok", "a\\udfff"]}}'), 400, "openai"),
    Case("low-surrogate-first", embed(f'{{{M}, "input": "\\udc00x"}}'), 400, "openai"),
    Case("reversed-pair", embed(f'{{{M}, "input": "\\ude00\\ud83d"}}'), 400, "openai"),
    Case("surrogate-in-model", embed(b'{"model": "\\ud800", "input": "x"}'), 400, "openai"),
    Case("surrogate-pair-is-text", embed(f'{{{M}, "input": "\\ud83d\\ude00"}}'), 200, "openai"),
    Case("escaped-backslash-u", embed(f'{{{M}, "input": "\\\\ud800"}}'), 200, "openai"),
    Case("nan-dimensions", embed(f'{{{M}, "input": "x", "dimensions": NaN}}'), 400, "openai"),
    Case("infinity-dimensions", embed(f'{{{M}, "input": "x", "dimensions": Infinity}}'), 400,
         "openai"),
    Case("nan-in-ignored-field", embed(f'{{{M}, "input": "x", "user": NaN}}'), 400, "openai"),
    Case("huge-integer", embed(f'{{{M}, "input": "x", "dimensions": 1{"0" * 5000}}}'), 400,
         "openai"),
    Case("huge-float", embed(f'{{{M}, "input": "x", "dimensions": 1e999}}'), 400, "openai"),
    Case("dimensions-10e30", embed(f'{{{M}, "input": "x", "dimensions": {10**30}}}'), 400,
         "openai"),
    Case("dimensions-float", embed(f'{{{M}, "input": "x", "dimensions": 1.5}}'), 400, "openai"),
    Case("dimensions-bool", embed(f'{{{M}, "input": "x", "dimensions": true}}'), 400, "openai"),
    Case("dimensions-string", embed(f'{{{M}, "input": "x", "dimensions": "384"}}'), 400,
         "openai"),
    Case("dimensions-zero", embed(f'{{{M}, "input": "x", "dimensions": 0}}'), 400, "openai"),
    Case("dimensions-null", embed(f'{{{M}, "input": "x", "dimensions": null}}'), 200, "openai"),
    Case("encoding-list", embed(f'{{{M}, "input": "x", "encoding_format": []}}'), 400,
         "openai"),
    Case("encoding-object", embed(f'{{{M}, "input": "x", "encoding_format": {{}}}}'), 400,
         "openai"),
    Case("encoding-empty", embed(f'{{{M}, "input": "x", "encoding_format": ""}}'), 400,
         "openai"),
    Case("encoding-megabyte", embed(f'{{{M}, "input": "x", "encoding_format": '
                                    f'"{"z" * 1_000_000}"}}'), 400, "openai"),
    Case("encoding-null", embed(f'{{{M}, "input": "x", "encoding_format": null}}'), 200,
         "openai"),
    Case("model-null", embed(b'{"model": null, "input": "x"}'), 400, "openai"),
    Case("model-list", embed(b'{"model": [], "input": "x"}'), 400, "openai"),
    Case("model-number", embed(b'{"model": 5, "input": "x"}'), 400, "openai"),
    Case("model-blank", embed(b'{"model": "  ", "input": "x"}'), 400, "openai"),
    Case("model-100k", embed(f'{{"model": "{"a" * 100_000}", "input": "x"}}'), 400, "openai"),
    Case("model-nul", embed(b'{"model": "a\\u0000b", "input": "x"}'), 404, "openai"),
    Case("model-newline", embed(b'{"model": "a\\nb", "input": "x"}'), 404, "openai"),
    Case("model-traversal", embed(b'{"model": "../../etc/passwd", "input": "x"}'), 404,
         "openai"),
    Case("model-absolute", embed(b'{"model": "/etc", "input": "x"}'), 404, "openai"),
    Case("model-home", embed(b'{"model": "~/x", "input": "x"}'), 404, "openai"),
    Case("model-url", embed(b'{"model": "file:///etc/passwd", "input": "x"}'), 404, "openai"),
    Case("model-empty-name", embed(b'{"model": "st:", "input": "x"}'), 404, "openai"),
    Case("model-empty-revision", embed(f'{{"model": "{MODEL}@", "input": "x"}}'), 404,
         "openai"),
    Case("model-bad-revision", embed(f'{{"model": "{MODEL}@..%2f", "input": "x"}}'), 404,
         "openai"),
    Case("model-not-text", embed(b'{"model": "image:openai/clip-vit-base-patch32", '
                                 b'"input": "x"}'), 404, "openai"),
    Case("input-null", embed(f'{{{M}, "input": null}}'), 400, "openai"),
    Case("input-object", embed(f'{{{M}, "input": {{"a": 1}}}}'), 400, "openai"),
    Case("input-empty-list", embed(f'{{{M}, "input": []}}'), 400, "openai"),
    Case("input-list-of-null", embed(f'{{{M}, "input": [null]}}'), 400, "openai"),
    Case("input-list-of-bool", embed(f'{{{M}, "input": [true]}}'), 400, "openai"),
    Case("input-list-of-float", embed(f'{{{M}, "input": [1.5]}}'), 400, "openai"),
    Case("input-list-of-empty-list", embed(f'{{{M}, "input": [[]]}}'), 400, "openai"),
    Case("input-2049", embed(json.dumps({"model": MODEL, "input": ["a"] * 2049})), 400,
         "openai"),
    Case("input-empty-string", embed(f'{{{M}, "input": ""}}'), 200, "openai"),
    Case("input-list-of-empty-string", embed(f'{{{M}, "input": [""]}}'), 200, "openai"),
    Case("input-nul-char", embed(f'{{{M}, "input": "a\\u0000b"}}'), 200, "openai"),
    Case("input-2mb-string", embed(f'{{{M}, "input": "{"word " * 400_000}"}}'), 200, "openai"),
    Case("token-ids", embed(f'{{{M}, "input": [1, 2, 3]}}'), 400, "openai"),
    Case("token-id-lists", embed(f'{{{M}, "input": [[1, 2], [3]]}}'), 400, "openai"),
    Case("token-ids-negative", embed(f'{{{M}, "input": [-1]}}'), 400, "openai"),
    Case("token-ids-huge", embed(f'{{{M}, "input": [{10**30}]}}'), 400, "openai"),
    Case("token-ids-mixed", embed(f'{{{M}, "input": [1, "a"]}}'), 400, "openai"),
    Case("duplicate-keys-last-bad", embed(f'{{{M}, "input": "x", "input": 5}}'), 400, "openai"),
    Case("duplicate-keys-last-good", embed(f'{{"input": 5, {M}, "input": "x"}}'), 200, "openai"),
    Case("top-level-list", embed(b"[]"), 400, "openai"),
    Case("top-level-string", embed(b'"x"'), 400, "openai"),
    Case("top-level-null", embed(b"null"), 400, "openai"),
    Case("top-level-number", embed(b"1e999"), 400, "openai"),
    Case("empty-body", embed(b""), 400, "openai"),
    Case("whitespace-body", embed(b"   \r\n"), 400, "openai"),
    Case("trailing-garbage", embed(f'{{{M}, "input": "x"}} garbage'), 400, "openai"),
    Case("invalid-utf8", embed(f'{{{M}, "input": "'.encode() + b"\xff\xfe\x80" + b'"}'), 400,
         "openai"),
    Case("utf8-encoded-surrogate", embed(f'{{{M}, "input": "'.encode() + b"\xed\xa0\x80"
                                         + b'"}'), 400, "openai"),
    Case("utf8-bom", embed(b"\xef\xbb\xbf" + f'{{{M}, "input": "x"}}'.encode()), 200, "openai"),
    Case("utf16-body", embed(f'{{{M}, "input": "x"}}'.encode("utf-16")), 200, "openai"),
    # -- how the body comes: Content-Type, Content-Encoding, framing --------------------------
    Case("no-content-type", embed(f'{{{M}, "input": "x"}}', ctype=None), 200, "openai"),
    Case("text-plain", embed(f'{{{M}, "input": "x"}}', ctype="text/plain"), 200, "openai"),
    Case("form-type", embed(f'{{{M}, "input": "x"}}', ctype="application/x-www-form-urlencoded"),
         200, "openai"),
    Case("odd-charset", embed(f'{{{M}, "input": "x"}}', ctype="application/json; charset=xx"),
         200, "openai"),
    Case("gzip", embed(gzip.compress(f'{{{M}, "input": "x"}}'.encode()),
                       headers="Content-Encoding: gzip\r\n"), 415, "openai"),
    Case("gzip-declared-plain-sent", embed(f'{{{M}, "input": "x"}}',
                                           headers="Content-Encoding: gzip\r\n"), 415, "openai"),
    Case("deflate", embed(zlib.compress(f'{{{M}, "input": "x"}}'.encode()),
                          headers="Content-Encoding: deflate\r\n"), 415, "openai"),
    Case("identity-encoding", embed(f'{{{M}, "input": "x"}}',
                                    headers="Content-Encoding: identity\r\n"), 200, "openai"),
    Case("chunked", embed(f'{{{M}, "input": "x"}}', chunked=True), 200, "openai"),
    Case("chunked-nested", embed(b"[" * 100_000, chunked=True), 400, "openai"),
    Case("chunked-malformed", request("POST", "/v1/embeddings", headers="Transfer-Encoding: "
                                      "chunked\r\n", length=None) + b"zz\r\nabc\r\n0\r\n\r\n",
         None, "protocol"),
    Case("declared-over-8mib", embed(None, length=99_999_999_999), 413, "openai"),
    Case("content-length-not-a-number",
         b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400,
         "protocol"),
    Case("two-content-lengths",
         b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
         b"Content-Length: 5\r\n\r\nabc", 400, "protocol"),
    Case("expect-100-continue", embed(f'{{{M}, "input": "x"}}',
                                      headers="Expect: 100-continue\r\n"), 200, "openai"),
    Case("query-string-on-embeddings", embed(f'{{{M}, "input": "x"}}').replace(
        b"/v1/embeddings", b"/v1/embeddings?%ff=%00&&=x", 1), 200, "openai"),
    # -- headers --------------------------------------------------------------------------------
    Case("two-authorization", embed(f'{{{M}, "input": "x"}}', headers="Authorization: Bearer "
                                    "a\r\nAuthorization: Bearer a\r\n"), 400, "openai"),
    Case("two-authorization-mirror", get(f"{RESOLVE}/config.json", "Authorization: Bearer a\r\n"
                                         "authorization: Bearer b\r\n"), 400, "hub"),
    Case("header-bytes", get("/healthz", "X-Odd: \xff\x80\r\n"), 200, "hub"),
    Case("host-bytes", b"GET /healthz HTTP/1.1\r\nHost: \xff\xfe\r\nConnection: close\r\n\r\n",
         200, "hub"),
    Case("absolute-form-target", b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\n"
         b"Connection: close\r\n\r\n", 400, "hub"),
    Case("asterisk-target", b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400,
         "hub"),
    Case("unknown-method", request("FOO", "/v1/embeddings", b"{}"), 405, "openai"),
    # -- Ollama's routes ------------------------------------------------------------------------
    Case("ollama-nested", embed(b"[" * 100_000, "/api/embed"), 400, "ollama"),
    Case("ollama-surrogate", embed(f'{{{M}, "input": "\\ud800"}}', "/api/embed"), 400,
         "ollama"),
    Case("ollama-nan", embed(f'{{{M}, "input": "x", "dimensions": NaN}}', "/api/embed"), 400,
         "ollama"),
    Case("ollama-token-ids", embed(f'{{{M}, "input": [[1, 2]]}}', "/api/embed"), 400, "ollama"),
    Case("ollama-gzip", embed(gzip.compress(b"{}"), "/api/embed",
                              headers="Content-Encoding: gzip\r\n"), 415, "ollama"),
    Case("ollama-legacy-surrogate", embed(f'{{{M}, "prompt": "\\ud800"}}', "/api/embeddings"),
         400, "ollama"),
    Case("ollama-legacy-nested", embed(b"[" * 100_000, "/api/embeddings"), 400, "ollama"),
    Case("ollama-legacy-prompt-list", embed(f'{{{M}, "prompt": [1]}}', "/api/embeddings"), 400,
         "ollama"),
    # -- the mirror's paths ---------------------------------------------------------------------
    Case("path-invalid-utf8", get(f"{RESOLVE}/%ff%fe.json"), 400, "hub"),
    Case("path-utf8-surrogate", get(f"{RESOLVE}/%ed%a0%80"), 400, "hub"),
    Case("revision-invalid-utf8", get(f"/{REPO}/resolve/%ff/config.json"), 400, "hub"),
    Case("repo-invalid-utf8", get("/sentence-transformers/%ff/resolve/main/config.json"), 400,
         "hub"),
    Case("path-nul", get(f"{RESOLVE}/config%00.json"), 400, "hub"),
    Case("revision-nul", get(f"/{REPO}/resolve/ma%00in/config.json"), 400, "hub"),
    Case("path-dotdot", get(f"{RESOLVE}/../config.json"), 400, "hub"),
    Case("path-dotdot-encoded", get(f"{RESOLVE}/%2e%2e%2fconfig.json"), 400, "hub"),
    Case("path-bad-escape", get(f"{RESOLVE}/%zz"), 404, "hub"),
    Case("path-lone-percent", get(f"{RESOLVE}/%"), 404, "hub"),
    Case("path-12kb", get(f"{RESOLVE}/" + "a/" * 6000), 400, "hub", check_short_header),
    Case("path-segment-12kb", get(f"{RESOLVE}/" + "a" * 12_000), 404, "hub", check_short_header),
    # Over h11's 16 KiB a request head may be refused before the app (uvicorn's plain 400).
    Case("path-100kb", get(f"{RESOLVE}/" + "a" * 100_000), None, "protocol"),
    Case("revision-5kb", get(f"/{REPO}/resolve/{'a' * 5000}/config.json"), 400, "hub",
         check_short_header),
    Case("repo-5kb", get(f"/{'a' * 5000}/b/resolve/main/c"), 404, "hub", check_short_header),
    Case("revision-empty-part", get(f"/{REPO}/resolve/refs%2Fpr%2F%2F/config.json"), 400,
         "hub"),
    Case("revision-dotdot", get(f"{API}/revision/refs%2F..%2Fmain"), 400, "hub"),
    Case("revision-backslash", get(f"{API}/revision/a%5Cb"), 400, "hub"),
    Case("api-tree-invalid-utf8", get(f"{API}/tree/%ff"), 400, "hub"),
    Case("api-tree-nul", get(f"{API}/tree/main/a%00"), 400, "hub"),
    Case("api-tree-dotdot", get(f"{API}/tree/main/.."), 400, "hub"),
    Case("api-tree-12kb", get(f"{API}/tree/main/" + "a/" * 6000), 404, "hub",
         check_short_header),
    Case("api-repo-invalid-utf8", get("/api/models/%ff%fe/x"), 400, "hub"),
    Case("api-refs-invalid-utf8", get("/api/models/%ff/refs"), 400, "hub"),
    Case("api-kind-invalid-utf8", get("/api/%ff/x"), 404, "hub"),
    Case("api-empty-repo", get("/api/models//"), 404, "hub"),
    Case("query-invalid-utf8", get(f"{API}?expand=%ff&blobs=%ff"), 200, "hub"),
    Case("query-odd", get(f"{API}?%%%&&==&expand[]=%00"), 200, "hub"),
    Case("query-12kb", get(f"{API}?" + "a=1&" * 3000), 200, "hub"),
    Case("query-tree", get(f"{API}/tree/main?recursive=%ff&expand=%00"), 200, "hub"),
    Case("listing-limit-text", get("/api/models?limit=abc"), None, "hub"),
    Case("listing-limit-negative", get("/api/models?limit=-1"), None, "hub"),
    Case("listing-limit-huge", get(f"/api/models?limit={10**30}"), None, "hub"),
    Case("listing-search-odd", get("/api/models?search=%ff%00&author=%ed%a0%80&full=%ff"), None,
         "hub"),
    # -- Range --------------------------------------------------------------------------------
    Case("range-not-bytes", get(f"{RESOLVE}/config.json", "Range: items=0-1\r\n"), 200, "hub"),
    Case("range-garbage", get(f"{RESOLVE}/config.json", "Range: bytes=abc\r\n"), 200, "hub"),
    Case("range-no-equals", get(f"{RESOLVE}/config.json", "Range: bytes\r\n"), 200, "hub"),
    Case("range-empty", get(f"{RESOLVE}/config.json", "Range: bytes=,\r\n"), 200, "hub"),
    Case("range-reversed", get(f"{RESOLVE}/config.json", "Range: bytes=100-5\r\n"), 200, "hub"),
    Case("range-5000-digits", get(f"{RESOLVE}/config.json", f"Range: bytes=0-{'9' * 5000}\r\n"),
         200, "hub"),
    Case("range-2000-parts", get(f"{RESOLVE}/config.json", "Range: bytes="
                                 + ",".join(f"{i}-{i}" for i in range(2000)) + "\r\n"), 200,
         "hub"),
    Case("range-past-end", get(f"{RESOLVE}/config.json", "Range: bytes=99999999999-\r\n"), 416,
         "hub", check_416),
    Case("range-suffix-zero", get(f"{RESOLVE}/config.json", "Range: bytes=-0\r\n"), 416, "hub",
         check_416),
    Case("range-overlapping", get(f"{RESOLVE}/config.json", "Range: bytes=0-10,5-20\r\n"), 206,
         "hub"),
    Case("if-range-garbage", get(f"{RESOLVE}/config.json", "Range: bytes=0-1\r\n"
                                 "If-Range: \xff\r\n"), 200, "hub"),
    Case("conditional-garbage", get(f"{RESOLVE}/config.json", "If-None-Match: \xff\r\n"
                                    "If-Modified-Since: yesterday\r\n"), 200, "hub"),
    # -- the paths-info body ----------------------------------------------------------------------
    Case("paths-info-nested", embed(b"[" * 100_000, INFO), 400, "hub"),
    Case("paths-info-nested-in-paths", embed(b'{"paths": ' + b"[" * 100_000, INFO), 400, "hub"),
    Case("paths-info-number", embed(b'{"paths": 5}', INFO), 400, "hub"),
    Case("paths-info-object", embed(b'{"paths": {"a": 1}}', INFO), 400, "hub"),
    Case("paths-info-nan", embed(b'{"paths": NaN}', INFO), 400, "hub"),
    Case("paths-info-null", embed(b'{"paths": null}', INFO), 200, "hub"),
    Case("paths-info-top-list", embed(b"[1, 2]", INFO), 200, "hub"),
    Case("paths-info-surrogate", embed(b'{"paths": ["\\ud800"]}', INFO), 200, "hub"),
    Case("paths-info-invalid-utf8", embed(b'{"paths": ["\xff"]}', INFO), 400, "hub"),
    Case("paths-info-form-odd", embed(b"paths=%ff&expand=%00", INFO,
                                      ctype="application/x-www-form-urlencoded"), 200, "hub"),
    Case("paths-info-no-type-binary", embed(b"\xff\xfe\x00", INFO, ctype=None), 200, "hub"),
    Case("paths-info-gzip", embed(gzip.compress(b'{"paths": ["config.json"]}'), INFO,
                                  headers="Content-Encoding: gzip\r\n"), 415, "hub"),
    Case("paths-info-declared-2mb", embed(None, INFO, length=2_000_000), 400, "hub"),
    Case("paths-info-bad-revision", embed(b"{}", f"{API}/paths-info/%ff"), 400, "hub"),
]


class Log:
    """The server's stderr log file: what a request added to it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size

    def since(self, mark: int) -> str:
        with open(self.path, "rb") as f:
            f.seek(mark)
            return f.read().decode("utf-8", "replace")


@dataclass
class Server:
    proc: object
    url: str
    log: Log
    home: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory, pulled_home, hub_server):
    """One ``embctl serve`` for the module (no --token), its log in the home."""
    home = copy_home(pulled_home, tmp_path_factory.mktemp("inputs"))
    proc, url = start_serve(Embctl.at(home, hub_server.url).env, log=home / "serve.log")
    yield Server(proc, url, Log(home / "serve.log"), home)
    assert stop(proc) == 0, output(proc)[1]


def assert_shape(reply: Reply, shape: str) -> None:
    if shape == "protocol":
        return
    error = reply.json()["error"]
    if shape == "openai":
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["type"] == "invalid_request_error"
    else:
        assert isinstance(error, str) and error, error
    if shape == "hub":
        assert reply.headers["X-Error-Message"]


def assert_clean(text: str) -> None:
    assert "Traceback" not in text, text
    assert " ERROR " not in text, text


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_a_4xx_in_the_route_shape(served, case: Case):
    mark = served.log.mark()
    method = case.raw.split(b" ", 1)[0].decode()
    reply = exchange(served.url, case.raw, method)
    assert reply.status < 500, (reply.status, reply.body[:300])
    if case.status is not None:
        assert reply.status == case.status, reply.body[:300]
    if reply.status >= 400:
        assert_shape(reply, case.shape)
        assert len(reply.body) < 4000  # nothing a client sent is echoed back whole
    if case.check is not None:
        case.check(reply)
    assert_clean(served.log.since(mark))


@pytest.mark.e2e
def test_body_cut_short_leaves_no_error_in_the_log(served):
    """A client that hangs up in the middle of its body: nothing to answer, nothing to log as
    a failure (it was 'embeddings failed: ClientDisconnect' and a traceback on paths-info)."""
    parts = urlsplit(served.url)
    mark = served.log.mark()
    for route in ("/v1/embeddings", "/api/embed", INFO):
        with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
            sock.sendall(request("POST", route, length=100) + b'{"model":')
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
    reply = exchange(served.url, PLAIN, "POST")  # the server goes on
    assert reply.status == 200
    wait_for(lambda: served.log.since(mark).count('"POST /') >= 1)
    assert_clean(served.log.since(mark))


@pytest.mark.e2e
def test_two_authorization_headers_without_token(served):
    """No --token: a request with one Authorization passes, with two is a 400."""
    one = embed(f'{{{M}, "input": "x"}}', headers="Authorization: Bearer anything\r\n")
    assert exchange(served.url, one, "POST").status == 200
    two = embed(f'{{{M}, "input": "x"}}', headers="Authorization: Bearer x\r\n"
                "Authorization: Bearer y\r\n")
    reply = exchange(served.url, two, "POST")
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "invalid_authorization"


@pytest.mark.e2e
def test_default_cap_lets_2048_inputs_of_512_tokens_through(served, reference):
    """The largest ordinary request: 2,048 inputs of more than 512 tokens each (counted in a
    thread: their bytes pass the cap); one distinct text, so the model computes it once."""
    snapshot = snapshot_of(served.home)
    assert tokens_of(snapshot, [LONG]) == 256 and tokens_of(snapshot, [LONG], False) > 512
    client = openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0,
                           timeout=600)
    got = client.embeddings.create(model=MODEL, input=[LONG] * 2048)
    assert len(got.data) == 2048
    vectors = np.array([d.embedding for d in got.data], dtype=np.float32)
    np.testing.assert_allclose(vectors, np.broadcast_to(vectors[0], vectors.shape), atol=1e-6)
    np.testing.assert_allclose(vectors[0], reference([LONG])[0], atol=1e-4)


# -- the access log: secrets in query strings ---------------------------------------------------


SECRETS = {"token": "s3cr3t-token-1", "Access_Token": "s3cr3t-token-2",
           "API_KEY": "s3cr3t-token-3", "key": "s3cr3t-token-4", "password": "s3cr3t-token-5",
           "client_secret": "s3cr3t-token-6", "api-key": "s3cr3t-token-7",
           "hf_token": "s3cr3t-token-8", "Authorization": "s3cr3t-token-9"}


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Hang guard: the access log line follows the response by a moment."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


@pytest.mark.e2e
def test_query_secrets_never_reach_the_access_log(served):
    query = "&".join(f"{k}={v}" for k, v in SECRETS.items())
    targets = [f"/healthz?{query}&search=visible-1",
               f"{RESOLVE}/config.json?search=visible-2&{query}",
               f"/v1/models?{query}&search=visible-3",
               f"/api/models?author=sentence-transformers&{query}&search=visible-4"]
    for target in targets:
        reply = exchange(served.url, get(target))
        assert reply.status == 200, reply.body[:300]
    status, _, _ = post(f"{served.url}/v1/embeddings?{query}&search=visible-5",
                        {"model": MODEL, "input": "x"})
    assert status == 200
    wait_for(lambda: "visible-5" in output(served.proc)[1])
    log = output(served.proc)[1]
    for value in SECRETS.values():
        assert value not in log
    lines = [line for line in log.splitlines() if "visible-" in line]
    assert len(lines) == 5, lines
    for line in lines:
        assert "token=REDACTED" in line and "API_KEY=REDACTED" in line, line
    assert "author=sentence-transformers" in lines[3] and "search=visible-4" in lines[3]


# -- a server with --token and a small --max-request-tokens -------------------------------------


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pulled_home, hub_server) -> Callable[[list[str]], np.ndarray]:
    """``embctl embed`` of texts, in a home of its own (no server's vector cache is used)."""
    home = copy_home(pulled_home, tmp_path_factory.mktemp("reference"))

    def vectors(texts: list[str]) -> np.ndarray:
        proc = Embctl.at(home, hub_server.url)("embed", MODEL, "--lines",
                                               input="\n".join(texts) + "\n")
        assert proc.returncode == 0, proc.stderr
        return np.array([json.loads(line)["embedding"] for line in proc.stdout.splitlines()],
                        dtype=np.float32)

    return vectors


@pytest.fixture(scope="module")
def capped(tmp_path_factory, pulled_home, hub_server):
    """``--token`` and ``--max-request-tokens`` exactly the tokens of UNDER."""
    home = copy_home(pulled_home, tmp_path_factory.mktemp("capped"))
    cap = tokens_of(snapshot_of(home), UNDER)
    proc, url = start_serve(Embctl.at(home, hub_server.url).env, "--token", TOKEN,
                            "--max-request-tokens", str(cap), log=home / "serve.log")
    yield Server(proc, url, Log(home / "serve.log"), home), cap
    assert stop(proc) == 0, output(proc)[1]


def capped_client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=TOKEN, max_retries=0, timeout=300)


@pytest.mark.e2e
def test_work_cap_is_a_413_that_says_the_limit_and_the_figure(capped, reference):
    server, cap = capped
    over = tokens_of(snapshot_of(server.home), UNDER + [EXTRA])
    assert over > cap
    client = capped_client(server.url)
    with pytest.raises(openai.APIStatusError) as info:
        client.embeddings.create(model=MODEL, input=UNDER + [EXTRA])
    assert info.value.status_code == 413
    message = info.value.message
    assert f"are {over:,} tokens" in message and f"at most {cap:,} tokens" in message, message
    assert info.value.body["code"] == "too_many_tokens"
    # Ollama's routes answer in their shape.
    status, _, body = post(server.url + "/api/embed", {"model": MODEL, "input": UNDER + [EXTRA]},
                           {"Authorization": f"Bearer {TOKEN}"})
    assert status == 413 and f"{over:,} tokens" in body["error"], body
    # At the cap exactly: through, with the vectors `embctl embed` computes.
    got = client.embeddings.create(model=MODEL, input=UNDER, encoding_format="float")
    vectors = np.array([d.embedding for d in got.data], dtype=np.float32)
    np.testing.assert_allclose(vectors, reference(UNDER), atol=1e-4)
    assert_clean(output(server.proc)[1])


@pytest.mark.e2e
def test_openai_client_gets_400s(capped):
    server, _ = capped
    client = capped_client(server.url)
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="m" * 2000, input="x")
    assert "at most 1,024" in info.value.message and info.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input=[[101, 2023, 102]])
    assert "check_embedding_ctx_length=False" in info.value.message


@pytest.mark.e2e
def test_two_authorization_headers_with_token(capped):
    server, _ = capped
    right = f"Authorization: Bearer {TOKEN}\r\n"
    assert exchange(server.url, get("/healthz", right)).status == 200
    assert exchange(server.url, get("/healthz")).status == 401
    for second in (right, "Authorization: Bearer wrong\r\n"):
        for target in ("/healthz", f"{RESOLVE}/config.json"):
            reply = exchange(server.url, get(target, right + second))
            assert reply.status == 400, reply.body
            assert_shape(reply, "hub")
        reply = exchange(server.url, embed(f'{{{M}, "input": "x"}}', headers=second + right),
                         "POST")
        assert reply.status == 400 and reply.json()["error"]["code"] == "invalid_authorization"


def test_bad_max_request_tokens_option_refuses_to_start(tmp_path):
    proc = Embctl.at(tmp_path)("serve", "--port", "0", "--max-request-tokens", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'--max-request-tokens': 0 is not in the range x>=1" in proc.stderr


@pytest.mark.e2e
def test_bad_max_request_tokens_variable_refuses_to_start(tmp_path):
    """A process with a time limit: a server that ignored the variable would serve on."""
    proc = Embctl.at(tmp_path).process("serve", "--port", "0", timeout=60,
                                       env={"EMBCTL_SERVE_MAX_REQUEST_TOKENS": "lots"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "EMBCTL_SERVE_MAX_REQUEST_TOKENS='lots': expected a positive integer" in proc.stderr
