"""What sentence-transformers does after the transformer, in numpy: pooling (its modes and
their concatenation order), Dense modules, Normalize.  Each function mirrors the module of
the same name in sentence_transformers.models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embctl.plugin import EmbctlError
from embctl_onnx.config import Dense


def pool(hidden: np.ndarray, mask: np.ndarray, modes: tuple[str, ...]) -> np.ndarray:
    """(batch, hidden * len(modes)) from token vectors (batch, seq, hidden) and the 0/1 mask
    (batch, seq) of the tokens to pool (right-padded)."""
    m = mask.astype(np.float32)[:, :, None]
    rows = np.arange(hidden.shape[0])
    parts = []
    for mode in modes:
        if mode == "cls":  # the first token pooled (not the prompt's, with include_prompt off)
            parts.append(hidden[rows, np.argmax(mask > 0, axis=1)])
        elif mode == "max":
            parts.append(np.where(m > 0, hidden, -np.inf).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            total = (hidden * m).sum(axis=1)
            count = np.maximum(m.sum(axis=1), 1e-9)
            parts.append(total / (count if mode == "mean" else np.sqrt(count)))
        elif mode == "weightedmean":  # later tokens weigh more: position 1, 2, 3...
            w = m * np.arange(1, hidden.shape[1] + 1, dtype=np.float32)[None, :, None]
            parts.append((hidden * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-9))
        elif mode == "lasttoken":
            seq = mask.shape[1]
            last = seq - 1 - np.argmax(mask[:, ::-1] > 0, axis=1)
            parts.append(hidden[rows, last] * m[rows, last])
        else:  # config.read_config refuses the others
            raise EmbctlError(f"pooling mode {mode} is not supported by the onnx backend")
    out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
    return np.ascontiguousarray(out, dtype=np.float32)


ACTIVATIONS = {
    "Tanh": np.tanh,
    "Identity": lambda x: x,
    "ReLU": lambda x: np.maximum(x, 0),
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
}


def load_dense(root: Path, dense: Dense, ref: str):
    """``x -> activation(x @ W.T + b)`` for a Dense module saved as safetensors."""
    folder = root / dense.path
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise EmbctlError(f"{ref}: the Dense module {dense.path} has no model.safetensors; "
                          "the onnx backend reads no torch .bin files (use the st backend)")
    act = ACTIVATIONS.get(dense.activation)
    if act is None:
        raise EmbctlError(f"{ref}: Dense activation {dense.activation} is not supported by "
                          "the onnx backend")
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise EmbctlError(f"{ref} has a Dense module: pip install safetensors") from None
    tensors = load_file(str(weights))
    w = np.asarray(tensors["linear.weight"], dtype=np.float32).T.copy()
    b = np.asarray(tensors["linear.bias"], dtype=np.float32) if dense.bias else None

    def apply(x: np.ndarray) -> np.ndarray:
        y = x @ w
        if b is not None:
            y += b
        return np.asarray(act(y), dtype=np.float32)

    return apply


def normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
