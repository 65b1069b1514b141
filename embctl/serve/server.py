"""Running the app on uvicorn: logs on stderr, SIGTERM drains the requests in flight.

SIGTERM (or Ctrl-C) stops accepting connections; downloads in flight get GRACE_S seconds,
requests waiting for a model DRAIN_S (embctl.serve.models), then a 503 ``shutting_down``; each
model stops after the batch it is in and its vector cache commits.  A second signal answers
the requests waiting for a model at once.  Exit 0 (130 after a Ctrl-C) within 10 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING

from embctl.errors import EmbctlError

if TYPE_CHECKING:
    from embctl.serve.config import ServeConfig

#: Seconds SIGTERM gives requests in flight before the server closes their connections.
GRACE_S = 8


def log_config(access_log: bool) -> dict:
    """uvicorn's logging, every line on stderr (stdout is for results), plain in logs; the
    access log's query strings without their secrets (embctl.serve.redact)."""
    fmt = "%(asctime)s %(levelname)s %(message)s"
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
               "formatter": "plain"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": fmt, "datefmt": "%Y-%m-%dT%H:%M:%S"}},
        "handlers": {"stderr": handler},
        "filters": {"redact": {"()": "embctl.serve.redact.RedactQuery"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["stderr"] if access_log else [],
                               "level": "INFO", "propagate": False, "filters": ["redact"]},
            "embctl.serve": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one line (exit 1), not
    uvicorn's log and traceback."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise EmbctlError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise EmbctlError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def run(config: ServeConfig) -> int:
    """Serve until SIGTERM (exit 0, requests in flight finished) or Ctrl-C (130)."""
    import uvicorn

    from embctl.serve import embeddings
    from embctl.serve.app import build_app
    from embctl.serve.models import DRAIN_S

    log = logging.getLogger("embctl.serve")

    class Server(uvicorn.Server):
        received: list[int] = []
        loop: asyncio.AbstractEventLoop | None = None

        def handle_exit(self, sig: int, frame) -> None:
            # Never uvicorn's force_exit (its answer to a second Ctrl-C): it skips the
            # lifespan's shutdown, leaving a model computing while the interpreter exits
            # (an abort) and its vector cache uncommitted.  A second signal hurries instead.
            hurry = self.should_exit
            self._captured_signals.append(sig)
            self.should_exit = True
            if self.loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to stop
                    self.loop.call_soon_threadsafe(self.stopping, sig, hurry)

        def stopping(self, sig: int, hurry: bool) -> None:
            name = signal.Signals(sig).name
            if hurry:
                log.info("embctl serve: second signal (%s): answering the requests waiting "
                         "for a model now (503)", name)
            else:
                log.info("embctl serve: %s: shutting down (requests waiting for a model have "
                         "%g s, downloads %g s)", name, DRAIN_S, GRACE_S)
            embeddings.stop(app, hurry)

        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises the signal after its graceful shutdown, which would end the
            # process as killed; embctl decides the exit code instead.
            self.loop = asyncio.get_running_loop()
            previous = {sig: signal.signal(sig, self.handle_exit)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                self.received = list(self._captured_signals)

    if not config.upstream:
        # Without --upstream nothing is ever fetched: a model a client names must be in the
        # cache for its backend (embctl.serve.models), and a backend's load cannot reach out.
        os.environ["HF_HUB_OFFLINE"] = "1"
    tls = config.ssl_certfile is not None and config.ssl_keyfile is not None
    if tls:
        from embctl.serve.tls import check_tls

        check_tls(config.ssl_certfile, config.ssl_keyfile)  # one line, before listening
    sock = bind(config.host, config.port)
    app = build_app(config)
    uv_config = uvicorn.Config(
        app, host=config.host, port=config.port, log_config=log_config(
            config.access_log), access_log=config.access_log, timeout_graceful_shutdown=GRACE_S,
        server_header=False, lifespan="on",
        **({"ssl_certfile": os.fspath(config.ssl_certfile),
            "ssl_keyfile": os.fspath(config.ssl_keyfile)} if tls else {}))
    upstream = f", fetching what it lacks from {config.upstream}" if config.upstream else ""
    logging.getLogger("embctl.serve").info(
        "embctl serve: listening on %s (the Hub mirror of %s%s%s)", url_of(
            sock, "https" if tls else "http"),
        config.cache_dir, upstream, "; every route requires the bearer token" if config.token
        else "")
    server = Server(uv_config)
    with sock:
        server.run(sockets=[sock])
    if signal.SIGINT in server.received:
        code = 130
    elif not server.started and not server.received:
        return 1  # the app failed to start: uvicorn logged why
    else:
        code = 0
    busy = embeddings.unfinished(app)
    if busy:
        # A thread inside torch or onnxruntime while the interpreter exits aborts the
        # process: exit without finalizing.  What was committed is whole (SQLite), the
        # batch in flight is absent.
        log.warning("embctl serve: %s still computing a batch; exiting without it",
                    ", ".join(busy))
        hard_exit(code)
    return code


def hard_exit(code: int) -> None:
    """Exit now: logs and standard streams flushed, no interpreter finalization."""
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
