"""`start_serve`: ``embctl serve`` as a subprocess on a free port, ready when /healthz answers.

The server's stdout and stderr go to files (``proc.out_path``, ``proc.log_path``; `output`
reads them), so a chatty access log can never fill a pipe and stall the server.  `stop` sends
SIGTERM and returns the exit code; `serving` is the context-manager form a fixture uses.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.runner import embctl_argv

LISTENING = re.compile(r"listening on (https?://\S+)")


def _token(env: dict[str, str], args: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--token" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--token="):
            return arg.split("=", 1)[1]
    return env.get("EMBCTL_SERVE_TOKEN")


def output(proc: subprocess.Popen) -> tuple[str, str]:
    """(stdout, stderr) the server wrote so far."""
    with open(proc.out_path) as out, open(proc.log_path) as err:  # type: ignore[attr-defined]
        return out.read(), err.read()


def start_serve(env: dict[str, str], *args: str, log: Path | None = None,
                timeout: float = 60, cafile: str | os.PathLike[str] | None = None
                ) -> tuple[subprocess.Popen, str]:
    """Start ``embctl serve --port 0 ARGS`` with ``env``; return it and its base URL once
    ``GET /healthz`` answers 200 (with the bearer token when ARGS or env give one).  Its
    stderr (the access log) goes to ``log`` when given.  ``cafile``: the certificate an
    ``https://`` server (``--ssl-certfile``) is verified against while it is polled."""
    folder = tempfile.mkdtemp(prefix="embctl-serve-")
    # Read after stop() by tests, so removed when the test process exits, not at stop.
    atexit.register(shutil.rmtree, folder, True)
    out_path = os.path.join(folder, "stdout")
    log_path = os.fspath(log) if log is not None else os.path.join(folder, "stderr")
    with open(out_path, "w") as out, open(log_path, "w") as err:
        proc = subprocess.Popen(embctl_argv("serve", "--port", "0", *args),
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    proc.out_path, proc.log_path = out_path, log_path  # type: ignore[attr-defined]
    token = _token(env, args)
    deadline = time.monotonic() + timeout
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"embctl serve exited {proc.returncode}:\n{output(proc)[1]}")
        if url is None and (found := LISTENING.search(output(proc)[1])):
            url = found.group(1)
        if url is not None and _healthy(url, token, cafile):
            return proc, url
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"embctl serve did not become healthy:\n{output(proc)[1]}")


def _healthy(url: str, token: str | None, cafile: str | os.PathLike[str] | None = None
             ) -> bool:
    request = urllib.request.Request(f"{url}/healthz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    context = None
    if cafile is not None:
        import ssl

        context = ssl.create_default_context(cafile=os.fspath(cafile))
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(proc: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM, then the exit code (killed after ``timeout`` seconds: the code is then -9)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextmanager
def serving(env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    proc, url = start_serve(env, *args)
    try:
        yield proc, url
    finally:
        stop(proc)


def post(url: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None,
         timeout: float = 120) -> tuple[int, dict[str, str], Any]:
    """POST raw bytes or a JSON object -> (status, headers, parsed JSON body)."""
    import json

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())
