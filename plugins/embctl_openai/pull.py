"""``embctl pull openai:MODEL``: remote models need no download, so pull checks access.

It sends one request with one short input (about one token is billed) and reports whether the
key works, the model exists and what dimension it returns.  Failures are the one-line errors of
``embed`` (bad key, unknown model, unreachable server), exit 1.
"""

from __future__ import annotations

import time
from typing import Any

from embctl.plugin import UsageError
from embctl_openai.embedder import load

PROBE = "embctl access check"


def pull(model: Any, options: dict[str, Any]) -> dict[str, Any]:
    if options.get("from_dir") or options.get("include") or options.get("tensor"):
        raise UsageError(f"{model.ref}: remote models take no --from, --include or --tensor")
    embedder = load(model, {"max_retries": 2})
    _ = embedder.client.client  # build the client (imports openai) before timing
    start = time.monotonic()
    vectors = embedder.embed([PROBE])
    elapsed = time.monotonic() - start
    dim = int(vectors.shape[1])
    where = embedder.settings.host
    return {
        "ref": model.ref,
        "backend": "openai",
        "model": embedder.settings.model,
        "endpoint": where,
        "dim": dim,
        "dimensions": embedder.settings.dimensions,
        "latency_ms": round(elapsed * 1000, 1),
        "up_to_date": True,
        "downloaded_bytes": 0,
        "message": f"openai:{embedder.settings.model}: reachable at {where}, {dim} dimensions, "
                   f"{elapsed * 1000:.0f} ms (remote model: nothing to download)",
    }
