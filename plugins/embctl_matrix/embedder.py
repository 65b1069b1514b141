"""Static embeddings from a token-embedding matrix.

Tokenize without special tokens, look up the rows, mean-pool, L2-normalize (by default): the
model2vec recipe without per-token weights.  The matrix stays memory-mapped (BF16 rows are
widened to float32 only after the lookup), so loading costs no more than the tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embctl.plugin import EmbctlError, Embedder, Model, UsageError
from embctl_matrix.matrices import store
from embctl_matrix.matrices.arrays import raw_memmap, to_float


class StaticEmbedder(Embedder):
    #: Inputs per call the pipeline should use: a lookup is cheap, per-call overhead is not.
    batch_size = 512
    #: The namespace names the matrix by its content (sha256, sources, revisions), and matrix
    #: caches were keyed so before the core wrote backend/repo_id/revision: adding them now
    #: would orphan every existing cache.
    namespace_identity = False

    def __init__(self, info: store.MatrixInfo, encode, *, normalize: bool = True,
                 model: Model | None = None) -> None:
        self.model = model
        self.info = info
        self._matrix = raw_memmap(info)
        self._encode = encode
        self.normalize = normalize
        self.dim = info.shape[1]
        self.params = {
            "kind": "static-mean",
            "matrix_sha256": info.sha256,
            "sources": info.sources,
            "revisions": info.revisions,
            "tensors": info.tensors,
            "dtype": info.dtype,
            "tokenizer": info.metadata.get("tokenizer"),
            "normalize": normalize,
        }

    def embed(self, inputs: Sequence[Any]) -> np.ndarray:
        texts = [str(t) for t in inputs]  # the pipeline has already added any --prefix
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self._encode(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((i for x in ids for i in x), dtype=np.int64, count=int(lengths.sum()))
        rows = self._matrix.shape[0]
        if flat.size and int(flat.max()) >= rows:  # tokenizer larger than the matrix
            keep = flat < rows
            owner = np.repeat(np.arange(len(ids)), lengths)[keep]
            flat = flat[keep]
            lengths = np.bincount(owner, minlength=len(ids))
        if flat.size:
            vectors = to_float(self._matrix[flat], self.info.dtype).astype(np.float32,
                                                                             copy=False)
            # A slice sum per text: several times faster than np.add.reduceat on rows.
            start = 0
            for i, n in enumerate(lengths.tolist()):
                if n:
                    np.sum(vectors[start:start + n], axis=0, out=out[i])
                    out[i] /= n
                    start += n
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out


def load(model: Model, options: dict[str, Any]) -> StaticEmbedder:
    """Backend ``load``: the cached matrix (pulled first when missing and online).  Options:
    normalize, tensor (see ``OPTIONS`` in __init__.py), the core's cache_dir and quiet."""
    from embctl_matrix.tokenizer import load_tokenizer

    if options.get("truncate_dim"):
        raise UsageError("--truncate-dim is not supported by the matrix backend")
    repo_ids = model.repo_id.split("+")
    ref = store.display_ref(repo_ids, model.revision)
    tensor = options.get("tensor")
    info = store.find_matrix(ref, tensor=tensor)
    if info is None:  # offline, pulled from the Hugging Face cache or HubUnreachable
        from embctl_matrix.fetch import pull_matrix

        pull_matrix(model, {"cache_dir": options.get("cache_dir"), "tensor": tensor,
                            "quiet": bool(options.get("quiet"))})
        info = store.require_matrix(ref, tensor=tensor)
    encode = load_tokenizer(info.tokenizer_path, _snapshot(info, options))
    if encode is None:
        raise EmbctlError(f"{ref}: no tokenizer for this matrix (the model has no "
                          "tokenizer.json; pull it again, or install transformers)")
    normalize = options.get("normalize")
    return StaticEmbedder(info, encode, normalize=True if normalize is None else bool(normalize),
                          model=model)


def _snapshot(info: store.MatrixInfo, options: dict[str, Any]) -> Path | None:
    """The first source's snapshot, for a tokenizer the matrix did not keep."""
    from embctl.plugin import snapshot_dir

    return snapshot_dir(info.sources[0], info.revisions[0], options.get("cache_dir"))
