"""A local, fault-injecting OpenAI-compatible embeddings server for tests and benchmarks.

`OpenAIServer` is a real HTTP/1.1 server (``http.server``, one thread per connection, keep-alive)
on 127.0.0.1 implementing ``POST /v1/embeddings`` the way api.openai.com does:

* ``input``: a string or a list of up to 2,048 non-empty strings; ``model`` must be one of
  ``models`` (name -> native dimension), else 404 ``model_not_found``;
* ``dimensions`` honoured for models that allow it (the vector is cut and re-normalised, as
  OpenAI's v3 models do), 400 for ``text-embedding-ada-002`` or out of range;
* ``encoding_format``: ``"float"`` (the default) or ``"base64"`` (little-endian float32);
* an input over ``max_input_tokens`` (tokens counted as ceil(UTF-8 bytes / 4)) gets OpenAI's
  400 "maximum context length" error;
* with ``api_key`` set, a request without ``Authorization: Bearer <api_key>`` gets a 401.

Vectors are deterministic: `expected_vector` (in `support.openai_payloads`, re-exported here)
derives each from the SHAKE-256 of the model
name and the input, so a test can check every vector and its order.  ``latency_s`` delays every
answer (the benchmark uses 20 ms).

Faults (`Fault`) are queued with `OpenAIServer.add_faults` or ``POST /_control/faults``
(``{"faults": [{...}], "clear": true}``); each request takes the fault at the head of the queue
(``times`` requests each).  A fault can answer an HTTP ``status`` with an error ``message`` (which
may contain ``{key}``: replaced by the bearer token received, like a hostile proxy echoing it,
or ``{authorization}``: the whole Authorization header, whatever its scheme)
and a ``retry_after`` header; ``delay_s`` sends the headers, then waits before the body (a slow
body); ``drop`` closes the connection without an answer; ``malformed`` sends a 200 with a broken
body: ``"count"`` (one vector short), ``"dim"`` (one vector one number short), ``"all_dim"``
(every vector one number short), ``"string"`` (a non-number), ``"nan"``, ``"json"`` (not JSON),
``"index"`` (duplicate indexes), ``"nodata"``.

Every request is logged (`RequestRecord`: model, inputs, dimensions, encoding, status, fault),
readable with `OpenAIServer.log` or ``GET /_control/log``; ``POST /_control/reset`` clears the log
and the faults.  Run it on its own for benchmarks (from ``tests/``)::

    python -m support.openai_server --latency-ms 20    # prints "URL http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field, fields
from http.server import BaseHTTPRequestHandler
from typing import Any

from .openai_payloads import (
    DEFAULT_MODELS,
    FIXED_DIM_MODELS,
    MAX_INPUTS,
    cached_b64_body,
    count_tokens,
    expected_vector,
    expected_vectors,
    payload,
)
from .servers import ServerThreads

#: The API key the test fixtures' server accepts (tests/conftest.py).
TEST_KEY = "sk-embctl-TEST-0123456789abcdefSECRET"

__all__ = [
    "DEFAULT_MODELS",
    "Fault",
    "OpenAIServer",
    "RequestRecord",
    "ServerControl",
    "count_tokens",
    "expected_vector",
    "expected_vectors",
]


@dataclass
class Fault:
    status: int | None = None
    message: str | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    drop: bool = False
    malformed: str | None = None
    times: int | None = 1  # None: every request from now on

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class RequestRecord:
    path: str
    model: str | None
    inputs: list[str]
    dimensions: int | None
    encoding_format: str | None
    status: int
    fault: dict[str, Any] | None = None
    authorized: bool = True


@dataclass
class _State:
    models: dict[str, int]
    api_key: str | None
    latency_s: float
    max_input_tokens: int
    faults: list[Fault] = field(default_factory=list)
    # (model, dimensions, text) -> base64 vector; None: no cache.  For benchmarks: a remote
    # API's compute does not share the client's CPU cores; this server's would.
    b64_cache: dict[tuple[str, int | None, str], bytes] | None = None
    log: list[RequestRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self) -> Fault | None:
        with self.lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.pop(0)
            return fault

    def record(self, rec: RequestRecord) -> None:
        with self.lock:
            self.log.append(rec)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-openai/1.0"
    state: _State  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing -------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
        raw: bytes | None = None,
    ) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if delay_s:
            self.wfile.flush()
            time.sleep(delay_s)
        self.wfile.write(body)

    def _error(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        err = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
        self._send(status, {"error": err}, headers, delay_s)

    # -- control endpoints ----------------------------------------------------------------
    def do_GET(self) -> None:
        st = self.state
        if self.path == "/_control/log":
            with st.lock:
                self._send(200, [asdict(r) for r in st.log])
        elif self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send(
                200,
                {
                    "object": "list",
                    "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in st.models],
                },
            )
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        body = self._body()
        if self.path.startswith("/_control/"):
            self._control(body)
        elif self.path.rstrip("/") in ("/v1/embeddings", "/embeddings"):
            self._embeddings(body)
        else:
            self._error(404, f"no route POST {self.path}")

    def _control(self, body: bytes) -> None:
        st = self.state
        data = json.loads(body or b"{}")
        with st.lock:
            if self.path == "/_control/reset":
                st.log.clear()
                st.faults.clear()
            elif self.path == "/_control/faults":
                if data.get("clear"):
                    st.faults.clear()
                st.faults.extend(Fault.from_json(f) for f in data.get("faults", []))
            elif self.path == "/_control/config":
                if "latency_s" in data:
                    st.latency_s = float(data["latency_s"])
            else:
                self._error(404, f"no control {self.path}")
                return
        self._send(200, {"ok": True})

    # -- the API --------------------------------------------------------------------------
    def _embeddings(self, body: bytes) -> None:
        st = self.state
        try:
            req = json.loads(body)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            self._error(400, "We could not parse the JSON body of your request.")
            return
        model = req.get("model")
        inputs = req.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        inputs_ok = isinstance(inputs, list) and all(isinstance(t, str) for t in inputs)
        dims = req.get("dimensions")
        fmt = req.get("encoding_format")
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        authorized = st.api_key is None or token == st.api_key
        rec = RequestRecord(
            self.path,
            model,
            list(inputs) if inputs_ok else [],
            dims,
            fmt,
            200,
            authorized=authorized,
        )
        fault = st.next_fault()
        if fault is not None:
            rec.fault = asdict(fault)
        if st.latency_s:
            time.sleep(st.latency_s)
        status, sender = self._answer(
            req, model, inputs if inputs_ok else None, dims, fmt, token, authorized, fault
        )
        rec.status = status
        st.record(rec)
        sender()

    def _answer(self, req, model, inputs, dims, fmt, token, authorized, fault):
        st = self.state
        if fault is not None and fault.drop:

            def drop() -> None:
                self.close_connection = True
                self.connection.shutdown(2)

            return 0, drop
        if fault is not None and fault.status:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            message = (fault.message or f"fault {fault.status}").replace("{key}", token)
            message = message.replace("{authorization}", self.headers.get("Authorization") or "")
            return fault.status, lambda: self._error(
                fault.status, message, None, headers, fault.delay_s
            )
        if not authorized:
            shown = f"{token[:3]}*****{token[-4:]}" if len(token) > 8 else "***"
            return 401, lambda: self._error(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_api_key",
            )
        if model not in st.models:
            return 404, lambda: self._error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "model_not_found",
            )
        if inputs is None or not inputs or len(inputs) > MAX_INPUTS or any(not t for t in inputs):
            return 400, lambda: self._error(
                400,
                "'$.input' is invalid. Please check the API "
                "reference: https://platform.openai.com/docs/api-reference.",
            )
        native = st.models[model]
        if dims is not None:
            if model in FIXED_DIM_MODELS:
                return 400, lambda: self._error(
                    400, "This model does not support specifying dimensions."
                )
            if not isinstance(dims, int) or not 1 <= dims <= native:
                return 400, lambda: self._error(400, f"Invalid value for 'dimensions' ({dims}).")
        counts = [count_tokens(t) for t in inputs]
        worst = max(counts)
        if worst > st.max_input_tokens:
            return 400, lambda: self._error(
                400,
                f"This model's maximum context length is {st.max_input_tokens} tokens, "
                f"however you requested {worst} tokens ({worst} in your prompt; 0 for the "
                "completion). Please reduce your prompt; or completion length.",
            )
        delay = fault.delay_s if fault else 0.0
        if st.b64_cache is not None and fmt == "base64" and fault is None:
            body = cached_b64_body(st.b64_cache, model, inputs, dims, native, sum(counts))
            return 200, lambda: self._send(200, None, raw=body)
        vectors = expected_vectors(inputs, model, dims, native)
        answer = payload(
            model, vectors, fmt == "base64", sum(counts), fault.malformed if fault else None
        )
        if isinstance(answer, bytes):
            return 200, lambda: self._send(200, None, raw=answer, delay_s=delay)
        return 200, lambda: self._send(200, answer, delay_s=delay)


class OpenAIServer:
    """``with OpenAIServer(api_key="sk-...") as server: ... server.url ... server.log``."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        latency_s: float = 0.0,
        models: dict[str, int] | None = None,
        max_input_tokens: int = 8192,
        host: str = "127.0.0.1",
        port: int = 0,
        cache_vectors: bool = False,
    ) -> None:
        self.state = _State(dict(models or DEFAULT_MODELS), api_key, latency_s, max_input_tokens)
        if cache_vectors:
            self.state.b64_cache = {}
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ServerThreads((host, port), handler)
        self.httpd.request_queue_size = 128
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults and the log ---------------------------------------------------------------
    def add_faults(self, *faults: Fault, clear: bool = False) -> None:
        with self.state.lock:
            if clear:
                self.state.faults.clear()
            self.state.faults.extend(faults)

    @property
    def log(self) -> list[RequestRecord]:
        with self.state.lock:
            return list(self.state.log)

    def reset(self) -> None:
        with self.state.lock:
            self.state.log.clear()
            self.state.faults.clear()

    def embedded_inputs(self) -> list[str]:
        """Every input of every successful (200) request, in arrival order."""
        return [t for r in self.log if r.status == 200 for t in r.inputs]


class ServerControl:
    """The control endpoints of a server running in another process."""

    def __init__(self, url: str) -> None:
        self.root = url.rstrip("/").removesuffix("/v1")

    def _call(self, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.root + path, data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def log(self) -> list[dict[str, Any]]:
        return self._call("/_control/log")

    def reset(self) -> None:
        self._call("/_control/reset", {})

    def add_faults(self, *faults: Fault, clear: bool = False) -> None:
        self._call("/_control/faults", {"faults": [asdict(f) for f in faults], "clear": clear})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--cache-vectors", action="store_true",
                        help="Keep encoded vectors in memory (benchmarks: compute off the CPU).")
    args = parser.parse_args(argv)
    server = OpenAIServer(
        api_key=args.api_key, latency_s=args.latency_ms / 1000, host=args.host, port=args.port,
        cache_vectors=args.cache_vectors,
    )
    print(f"URL {server.url}", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    sys.exit(main())
