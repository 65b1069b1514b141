"""``python -m support.hub ROOT [--port N] [--minilm]`` (from tests/): serve ROOT until killed.

The URL is printed on stdout; control the server with `support.hub.HubServerClient`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .repos import build_minilm_repo
from .server import HubServer
from .snapshots import DEFAULT_LFS_THRESHOLD


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m support.hub", description="Serve repos from ROOT as a Hugging Face Hub."
    )
    parser.add_argument("root", type=Path, help="directory holding <org>/<name>/ repos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument(
        "--minilm", action="store_true", help="first build the all-MiniLM-L6-v2 repo (with decoys)"
    )
    parser.add_argument("--lfs-threshold", type=int, default=DEFAULT_LFS_THRESHOLD)
    parser.add_argument("--verbose", action="store_true", help="log requests on stderr")
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    if args.minilm:
        build_minilm_repo(args.root)
    server = HubServer(
        args.root,
        host=args.host,
        port=args.port,
        lfs_threshold=args.lfs_threshold,
        verbose=args.verbose,
    )
    server.start()
    print(server.url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
