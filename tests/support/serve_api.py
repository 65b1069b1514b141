"""Starting ``embctl serve`` as a subprocess for the embeddings tests and benchmark, the way a
user starts it, on a free port of 127.0.0.1.

(A minimal helper; tests/support/serve.py, with the mirror's tests, has the general one.)
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(env: dict[str, str], *args: str, log: Path | None = None,
                timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """``embctl serve --port P ARGS`` -> (process, base URL), once /healthz answers.  Its
    stderr (the access log) goes to ``log`` when given, else is discarded."""
    port = free_port()
    err = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "embctl", "serve", "--port", str(port), *args],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=err)
    if log is not None:
        err.close()  # the child has its own copy
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text() if log is not None else ""
            raise RuntimeError(f"embctl serve exited {proc.returncode}:\n{text}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("embctl serve did not answer /healthz in time")


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM, then the exit code."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def post(url: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None,
         timeout: float = 120) -> tuple[int, dict[str, str], Any]:
    """POST raw bytes or a JSON object -> (status, headers, parsed JSON body)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())
