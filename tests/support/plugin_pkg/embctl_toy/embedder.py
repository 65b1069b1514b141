"""The toy embedder: the core finds (or pulls) the files, this turns texts into vectors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embctl.plugin import EmbctlError, Embedder, Model, locate


class ToyEmbedder(Embedder):
    batch_size = 16  # the core cuts batches of 16 inputs when --batch-size is not given

    def __init__(self, model: Model, path: Path, revision: str, normalize: bool) -> None:
        self.model = model  # messages name it; the core derives backend/repo_id from it
        self.revision = revision  # the commit: the core writes it into the namespace
        self.path = path
        try:
            config = json.loads((path / "toy.json").read_text())
            weights = np.fromfile(path / "weights.bin", dtype="<f4")
            self.dim = self.expected_dim = int(config["dim"])
            self.weights = weights.reshape(256, self.dim)
        except (OSError, ValueError, KeyError) as exc:
            raise EmbctlError(f"{model.ref}: not a toy model: {exc}") from None
        self.normalize = normalize
        self.params = {"normalize": normalize}  # only what this backend changes
        self.model_files = [path / name for name in ("toy.json", "weights.bin")]

    def embed(self, inputs: Sequence[Any]) -> np.ndarray:
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        for i, text in enumerate(inputs):
            data = np.frombuffer(str(text).encode(), dtype=np.uint8)
            if data.size:
                out[i] = self.weights[data].mean(axis=0)
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.divide(out, norms, out=out, where=norms > 0)
        return out


def load(model: Model, options: dict[str, Any]) -> ToyEmbedder:
    """Backend.load: locate the files with the core service (pulling them when missing, as
    `embctl pull` does), then read them."""
    path, revision = locate(model, options.get("cache_dir"), quiet=bool(options.get("quiet")),
                            markers=("toy.json",))
    return ToyEmbedder(model, path, revision, bool(options.get("normalize") or False))
