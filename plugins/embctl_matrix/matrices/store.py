"""The matrix cache: one safetensors file per extracted matrix under ``EMBCTL_HOME/matrices``.

File names come from a stable hash of what went in (source repos, resolved commits, tensor
names), so the same extraction always lands on the same file and a new commit on a new one::

    <slug>.<key16>.safetensors          the matrix: one tensor "embeddings", metadata below
    <slug>.<key16>.tokenizer.json       the first source's tokenizer (for embed)
    <slug>.<key16>.<dtype>.npy          created on demand, for np.load(mmap_mode="r")
    <slug>.<key16>.safetensors.incomplete / .part<i>[.incomplete]   while pulling

The header's ``__metadata__`` holds (as strings; lists JSON-encoded): ``format``, ``ref``,
``sources``, ``requested_revision``, ``revisions``, ``tensors``, ``tensor_choice`` (auto or
explicit), ``source_dtypes``,
``source_shapes``, ``dtype``, ``shape``, ``sha256`` (of the data bytes), ``tokenizer``
(fingerprints), ``created``.  A file is renamed into place only after its data is complete and
hashed, so a file without ``.incomplete`` is always whole.

Nothing heavy is imported at module level: listing the cache reads headers with json/struct.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embctl.plugin import EmbctlError
from embctl_matrix.matrices.format import FormatError, read_header, tensors
from embctl_matrix.matrices.paths import matrices_dir

FORMAT = "embctl-matrix/1"
TENSOR = "embeddings"
SUFFIX = ".safetensors"
INCOMPLETE = ".incomplete"
#: safetensors dtype -> the numpy dtype arrays are returned in (bf16 has none in numpy).
NUMPY_DTYPE = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "float32"}


@dataclass(frozen=True)
class Source:
    """One model's share of a matrix."""

    repo_id: str
    commit: str
    tensor: str
    dtype: str
    shape: tuple[int, int]


def cache_key(sources: list[Source]) -> str:
    """Stable 16-hex key of the sources, their resolved commits and tensor names."""
    text = json.dumps([[s.repo_id, s.commit, s.tensor] for s in sources], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def slug(repo_ids: list[str]) -> str:
    text = "+".join(r.replace("/", "--") for r in repo_ids)
    text = re.sub(r"[^A-Za-z0-9_.+\-]", "_", text)
    return text[:80]


def matrix_path(sources: list[Source]) -> Path:
    return matrices_dir() / f"{slug([s.repo_id for s in sources])}.{cache_key(sources)}{SUFFIX}"


def display_ref(repo_ids: list[str], requested_revision: str | None) -> str:
    ref = "matrix:" + "+".join(repo_ids)
    return f"{ref}@{requested_revision}" if requested_revision else ref


def build_metadata(sources: list[Source], *, requested_revision: str | None, dtype: str,
                   shape: tuple[int, int], sha256: str, tokenizer: list[str | None],
                   created: int, explicit_tensor: bool = False) -> dict[str, str]:
    return {
        "format": FORMAT,
        "ref": display_ref([s.repo_id for s in sources], requested_revision),
        "sources": json.dumps([s.repo_id for s in sources]),
        "requested_revision": requested_revision or "",
        "revisions": json.dumps([s.commit for s in sources]),
        "tensors": json.dumps([s.tensor for s in sources]),
        "tensor_choice": "explicit" if explicit_tensor else "auto",
        "source_dtypes": json.dumps([s.dtype for s in sources]),
        "source_shapes": json.dumps([list(s.shape) for s in sources]),
        "dtype": dtype,
        "shape": json.dumps(list(shape)),
        "sha256": sha256,
        "tokenizer": json.dumps(tokenizer),
        "created": f"{created:010d}",
    }


@dataclass
class MatrixInfo:
    """A cached matrix, read from its header."""

    path: Path
    data_offset: int
    dtype: str
    shape: tuple[int, int]
    sha256: str
    ref: str
    sources: list[str]
    requested_revision: str | None
    revisions: list[str]
    tensors: list[str]
    created: int
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.path.name[: -len(SUFFIX)]

    @property
    def key(self) -> str:
        return self.stem.rsplit(".", 1)[-1]

    @property
    def nbytes(self) -> int:
        from embctl_matrix.matrices.format import ITEMSIZE

        return self.shape[0] * self.shape[1] * ITEMSIZE[self.dtype]

    @property
    def tokenizer_path(self) -> Path:
        return self.path.with_name(f"{self.stem}.tokenizer.json")

    def npy_path(self, dtype: str) -> Path:
        return self.path.with_name(f"{self.stem}.{dtype}.npy")

    def companions(self) -> list[Path]:
        """Files that belong to this matrix besides the safetensors file."""
        return sorted(p for p in self.path.parent.glob(f"{self.stem}.*")
                      if p != self.path and not p.name.endswith(INCOMPLETE))


def read_info(path: Path) -> MatrixInfo:
    """Parse a cached matrix's header (json/struct only); FormatError if it is not one."""
    header, offset = read_header(path)
    meta = header.get("__metadata__") or {}
    found = tensors(header)
    if meta.get("format") != FORMAT or TENSOR not in found:
        raise FormatError("not an embctl matrix file")
    info = found[TENSOR]
    shape = info.get("shape") or []
    if len(shape) != 2:
        raise FormatError("matrix is not 2-D")
    try:
        return MatrixInfo(
            path=path, data_offset=offset, dtype=info["dtype"],
            shape=(int(shape[0]), int(shape[1])), sha256=meta.get("sha256", ""),
            ref=meta.get("ref", ""), sources=json.loads(meta["sources"]),
            requested_revision=meta.get("requested_revision") or None,
            revisions=json.loads(meta["revisions"]), tensors=json.loads(meta["tensors"]),
            created=int(meta.get("created") or 0), metadata=dict(meta),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise FormatError(f"bad matrix metadata: {exc}") from None


def cached_matrices() -> list[MatrixInfo]:
    root = matrices_dir()
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.glob(f"*{SUFFIX}")):
        try:
            found.append(read_info(path))
        except (OSError, FormatError):
            continue
    return found


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def matrix_files(path: Path) -> list[Path]:
    """Every file of the matrix at ``path`` (whether or not it is complete): the matrix, its
    tokenizer and .npy companions, partial downloads, and its lock."""
    stem = path.name[: -len(SUFFIX)]
    found = [p for p in path.parent.glob(f"{glob_escape(stem)}.*") if p.is_file()]
    lock = path.parent / ".locks" / f"{path.name}.lock"
    return found + ([lock] if lock.exists() else [])


def parse_matrix_ref(ref: str) -> tuple[list[str], str | None]:
    """``matrix:A+B@rev`` (the prefix optional) -> (["A", "B"], "rev")."""
    text = ref.strip()
    if text.startswith("matrix:"):
        text = text[len("matrix:"):]
    name, at, revision = text.rpartition("@") if "@" in text else (text, "", "")
    parts = [p for p in name.split("+") if p]
    if not parts:
        raise EmbctlError(f"invalid matrix reference {ref!r}")
    return parts, (revision or None)


def _matches(info: MatrixInfo, repo_ids: list[str], revision: str | None,
             tensor: str | None) -> bool:
    if info.sources != repo_ids:
        return False
    if tensor is not None and any(t != tensor for t in info.tensors) and \
            ",".join(info.tensors) != tensor:
        return False
    if revision is None or revision == "main":
        return info.requested_revision in (None, "main")
    if info.requested_revision == revision:
        return True
    return len(revision) >= 7 and all(c.startswith(revision) for c in info.revisions)


def find_matrix(ref: str, *, tensor: str | None = None) -> MatrixInfo | None:
    """The newest cached matrix for a reference, a cache key prefix, or a file path; offline."""
    path = Path(os.path.expanduser(ref))
    if ref.endswith(SUFFIX) and path.is_file():
        try:
            return read_info(path)
        except FormatError as exc:
            raise EmbctlError(f"{ref}: {exc}") from None
    infos = cached_matrices()
    if re.fullmatch(r"[0-9a-f]{6,16}", ref):
        by_key = [i for i in infos if i.key.startswith(ref)]
        if by_key:
            return max(by_key, key=lambda i: i.created)
    repo_ids, revision = parse_matrix_ref(ref)
    hits = [i for i in infos if _matches(i, repo_ids, revision, tensor)]
    # Without --tensor, a matrix whose tensor was found by name wins over a chosen one.
    return max(hits, key=lambda i: (tensor is not None or
                                    i.metadata.get("tensor_choice") != "explicit",
                                    i.created, i.path.name)) if hits else None


def require_matrix(ref: str, *, tensor: str | None = None) -> MatrixInfo:
    info = find_matrix(ref, tensor=tensor)
    if info is None:
        shown = ref if ref.startswith("matrix:") else f"matrix:{ref}"
        raise EmbctlError(f"{ref}: no cached matrix; run `embctl pull {shown}` first")
    return info


def describe(info: MatrixInfo) -> dict[str, Any]:
    return {
        "ref": info.ref, "path": str(info.path), "dtype": info.dtype, "shape": list(info.shape),
        "sources": info.sources, "revisions": info.revisions, "tensors": info.tensors,
        "sha256": info.sha256,
    }
