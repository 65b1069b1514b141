"""What ``embctl serve`` was asked to do."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from embctl.errors import UsageError


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    #: Bearer token every route requires; None: no auth (loopback hosts only).
    token: str | None = field(default=None, repr=False)
    #: The HF hub cache served by the mirror and used by the embedding models.
    cache_dir: Path | None = None
    #: A Hub to fetch uncached models from (the mirror fetches through), or None.
    upstream: str | None = None
    #: Embeddings: the most requests waiting for the model; more are answered 429.
    max_queue: int = 256
    #: Embeddings: the most inputs in one request, and the most bytes in its body.
    max_inputs: int = 2048
    max_body_bytes: int = 8 * 1024 * 1024
    #: Embeddings: the most tokens one request's inputs may sum to (413 beyond); None:
    #: EMBCTL_SERVE_MAX_REQUEST_TOKENS, else 2048 x 512 (embctl.serve.worklimit).
    max_request_tokens: int | None = None
    #: Access-log lines on stderr.
    access_log: bool = True
    #: HTTPS: the certificate (chain) and its private key, PEM (both or neither).
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    #: With a token: GET /metrics answers without it (every other route still requires it).
    metrics_public: bool = False


def is_loopback(host: str) -> bool:
    """True for names and addresses only this machine can reach."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Anything but loopback must have a token: refuse to start without one (exit 2)."""
    if token is not None and not token.strip():
        raise UsageError("--token is empty")
    if not is_loopback(host) and token is None:
        raise UsageError(f"--host {host} exposes the cache beyond this machine: give --token T "
                         "(or EMBCTL_SERVE_TOKEN); every route then requires "
                         "'Authorization: Bearer T'")
