"""What ``embctl embed`` reads with the image backend: JSONL naming image files, or a folder.

:func:`open_input` checks the options that make no sense for images, says where relative paths
start, and returns the stream of JSONL lines the pipeline reads (a folder becomes one
``{"path": ...}`` line per image file under it, recursively, in sorted order).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING

from embctl.plugin import UsageError

if TYPE_CHECKING:
    from embctl.plugin import Options

#: What ``-i DIR`` picks up (case-insensitive); other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif")


def open_input(input_path: str, opts: Options, path_field: str
               ) -> tuple[IO[bytes] | Iterable[bytes], str]:
    """Adjust ``opts`` for image records and open the input (stdin, a JSONL file or a
    folder); -> (the stream of JSONL lines, the folder relative paths start from)."""
    if opts.lines:
        raise UsageError("--lines is for text backends; image backends read JSONL or -i DIR")
    if opts.prefix:
        raise UsageError("--prefix is for text backends")
    opts.text_field = path_field
    if input_path == "-":
        if sys.stdin is None:
            raise UsageError("no input: give -i FILE, -i DIR or pipe JSONL to stdin")
        return sys.stdin.buffer, os.getcwd()
    if os.path.isdir(input_path):
        base = os.path.abspath(input_path)
        return FolderLines(base, path_field), base
    base = os.path.dirname(os.path.abspath(input_path))
    try:
        return open(input_path, "rb"), base
    except OSError as exc:
        raise UsageError(f"-i {input_path}: {exc.strerror}") from None


class FolderLines:
    """Iterates ``{"<field>": "relative/path.png"}`` JSONL lines for a folder's images."""

    def __init__(self, root: str, field: str) -> None:
        self.root = root
        self.field = field

    def __iter__(self) -> Iterator[bytes]:
        for path in image_files(self.root):
            yield (json.dumps({self.field: path}, ensure_ascii=False) + "\n").encode()

    def close(self) -> None:
        pass


def image_files(root: str) -> Iterator[str]:
    """Image files under ``root``, recursively, as sorted '/'-separated relative paths.
    Hidden files and folders are skipped; symbolic links are listed (the adapter refuses
    those that lead outside ``root``)."""
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root)
        for name in sorted(names):
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            yield name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
