"""Small JSON files embctl keeps beside its caches (pull records, use records, the blob-hash
memo), written whole or not at all: a temporary file in the same folder, renamed into place."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any, *, prefix: str = ".tmp-",
                      indent: int | None = None) -> None:
    """Write ``data`` as JSON to ``path`` atomically; on failure, no temporary file is left
    and the old file (if any) is untouched.  Raises what the write raised."""
    import tempfile  # not at module level: ls reads these files and must start fast

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=indent, sort_keys=indent is not None)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
