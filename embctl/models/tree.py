"""The files of a model folder, for ``pull --from DIR`` and ``export --to``: one walker, one rule.

- Names starting with ``.`` are skipped (``.git``, ``.cache``, the export manifest).
- A symlink that stays inside the folder (its bound) is followed, file or folder: a linked
  folder is walked, never dropped.
- A symlink that leaves the bound is refused, naming it, unless ``follow_links``; a broken link
  is refused too: nothing is dropped silently.
- A link back to a folder that holds it (``loop -> .``) is a cycle: refused, never walked.
- Anything else that is not a regular file or folder (a FIFO, a socket) is refused.

Each file is returned with the real path to read, so what is checked is what gets copied.
"""

from __future__ import annotations

import os
from pathlib import Path

from embctl.errors import EmbctlError

SHOWN = 4  # problems named in the one-line error; the rest are counted


def _inside(path: str, bound: str) -> bool:
    return path == bound or path.startswith(bound.rstrip(os.sep) + os.sep)


def _fail(label: str, what: str, items: list[str], hint: str) -> EmbctlError:
    named = ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more"
                                        if len(items) > SHOWN else "")
    return EmbctlError(f"{label}: {what}: {named}; {hint}")


def model_files(root: Path, *, label: str, bound: Path | None = None,
                follow_links: bool = False, broken_hint: str = "") -> dict[str, Path]:
    """Every file under ``root`` as ``{relative posix path: real path to read}``, sorted.

    ``bound`` is the folder links may point into (default ``root``; a cache snapshot's links
    point into its repo's ``blobs/``).  ``label`` starts every error (``--from DIR``)."""
    root_real = os.path.realpath(root)
    bound_real = os.path.realpath(bound) if bound is not None else root_real
    files: dict[str, Path] = {}
    outside: list[str] = []
    broken: list[str] = []
    cycles: list[str] = []
    odd: list[str] = []

    def visit(folder: str, rel: str, ancestors: frozenset[str]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise EmbctlError(f"{label}: cannot read {rel or '.'}: {exc.strerror or exc}") \
                from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = rel + entry.name
            real = os.path.realpath(entry.path)
            link = entry.is_symlink()
            shown = f"{path} -> {os.readlink(entry.path)}" if link else path
            if link:
                if not os.path.exists(real):
                    broken.append(shown)
                    continue
                if not _inside(real, bound_real) and not follow_links:
                    outside.append(shown)
                    continue
            if os.path.isdir(real):
                if any(_inside(a, real) for a in ancestors):  # it holds itself
                    cycles.append(shown)
                    continue
                visit(real, path + "/", ancestors | {real})
            elif os.path.isfile(real):
                files[path] = Path(real)
            else:
                odd.append(path)

    visit(root_real, "", frozenset({root_real}))
    if cycles:
        raise _fail(label, "symlink cycle (a link to a folder that holds it)", cycles,
                    "remove the link; it is never walked")
    if broken:
        raise _fail(label, "broken symlink", broken, broken_hint or "fix or remove it")
    if outside:
        raise _fail(label, "symlink leaving the folder", outside,
                    "copy the file in, or pass --follow-links to copy what it points to")
    if odd:
        raise _fail(label, "not a regular file or folder", odd, "remove it")
    return dict(sorted(files.items()))
