"""Installed size of an ``embctl[onnx]`` venv against an ``embctl[st]`` venv (bench_onnx --sizes).

Two fresh venvs (``python -m venv``), the tree installed non-editable into each; for ``[st]``
torch==2.13.0 (the local CPU wheel) goes in first, as the README tells CPU-only users.  The size
is the apparent bytes of every file under site-packages (links not followed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "transformers", "sentence_transformers")
TORCH = "torch==2.13.0"


def tree_bytes(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        raise SystemExit(f"{venv}: no site-packages")
    return found[0]


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} failed:\n{proc.stdout[-1500:]}{proc.stderr[-3000:]}")


def build(venv: Path, tree: Path, extra: str) -> dict:
    """A fresh venv holding ``tree[extra]``: its site-packages bytes, the biggest
    distributions, and which of torch / transformers / sentence_transformers it can import."""
    start = time.perf_counter()
    _run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir"]
    if extra == "st":
        _run([*pip, TORCH])
    _run([*pip, f"{tree}[{extra}]"])
    site = site_packages(venv)
    per_top: dict[str, int] = {}
    for child in site.iterdir():
        if child.is_dir() and not child.is_symlink():
            size = tree_bytes(child)
        elif child.is_file():
            size = child.stat().st_size
        else:
            continue
        per_top[child.name] = size
    probe = ("import importlib.util, json; print(json.dumps({n: importlib.util.find_spec(n) "
             f"is not None for n in {HEAVY!r}}}))")
    present = json.loads(subprocess.run([str(venv / "bin" / "python"), "-c", probe],
                                        capture_output=True, text=True, check=True).stdout)
    biggest = sorted(per_top.items(), key=lambda kv: -kv[1])[:8]
    return {"extra": extra, "bytes": sum(per_top.values()), "biggest": biggest,
            "heavy_importable": present, "build_s": round(time.perf_counter() - start, 1)}


def source_copy(tree: Path, work: Path) -> Path:
    """The tree copied without its caches and build leftovers: pip builds in the source
    folder, and a stale ``build/`` would both land in the wheel and be left in the tree."""
    import shutil

    junk = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                  ".pytest_cache", ".ruff_cache", ".venv", "tests", "bench")
    return Path(shutil.copytree(tree, work / "src", ignore=junk))


def sizes(tree: Path, work: Path) -> dict:
    src = source_copy(tree, work)
    onnx = build(work / "venv-onnx", src, "onnx")
    st = build(work / "venv-st", src, "st")
    return {"onnx": onnx, "st": st, "ratio": onnx["bytes"] / st["bytes"]}


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def report(result: dict) -> str:
    onnx, st = result["onnx"], result["st"]
    lines = [
        "| venv | site-packages | ratio | torch / transformers / sentence_transformers |",
        "|---|---|---|---|",
        f"| `embctl[st]` (torch {TORCH.split('==')[1]} CPU first) | {mb(st['bytes'])} | 1.00x | "
        + " / ".join("yes" if st["heavy_importable"][n] else "no" for n in HEAVY) + " |",
        f"| `embctl[onnx]` | {mb(onnx['bytes'])} | {result['ratio']:.2f}x (goal <= 0.2x) | "
        + " / ".join("yes" if onnx["heavy_importable"][n] else "no" for n in HEAVY) + " |",
        "",
        "biggest in [onnx]: " + ", ".join(f"{n} {mb(b)}" for n, b in onnx["biggest"]),
        "biggest in [st]: " + ", ".join(f"{n} {mb(b)}" for n, b in st["biggest"]),
    ]
    return "\n".join(lines)
