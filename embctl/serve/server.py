"""Running the app on uvicorn: logs on stderr, SIGTERM drains the requests in flight."""

from __future__ import annotations

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
    """uvicorn's logging, every line on stderr (stdout is for results), plain in logs."""
    fmt = "%(asctime)s %(levelname)s %(message)s"
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
               "formatter": "plain"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": fmt, "datefmt": "%Y-%m-%dT%H:%M:%S"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["stderr"] if access_log else [],
                               "level": "INFO", "propagate": False},
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


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(config: ServeConfig) -> int:
    """Serve until SIGTERM (exit 0, requests in flight finished) or Ctrl-C (130)."""
    import uvicorn

    from embctl.serve.app import build_app

    class Server(uvicorn.Server):
        received: list[int] = []

        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises the signal after its graceful shutdown, which would end the
            # process as killed; embctl decides the exit code instead.
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
    sock = bind(config.host, config.port)
    uv_config = uvicorn.Config(
        build_app(config), host=config.host, port=config.port, log_config=log_config(
            config.access_log), access_log=config.access_log, timeout_graceful_shutdown=GRACE_S,
        server_header=False, lifespan="on")
    upstream = f", fetching what it lacks from {config.upstream}" if config.upstream else ""
    logging.getLogger("embctl.serve").info(
        "embctl serve: listening on %s (the Hub mirror of %s%s%s)", url_of(sock),
        config.cache_dir, upstream, "; every route requires the bearer token" if config.token
        else "")
    server = Server(uv_config)
    with sock:
        server.run(sockets=[sock])
    if signal.SIGINT in server.received:
        return 130
    if not server.started and not server.received:
        return 1  # the app failed to start: uvicorn logged why
    return 0
