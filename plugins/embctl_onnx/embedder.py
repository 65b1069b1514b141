"""``onnx:`` embeddings: tokenizers + onnxruntime + numpy, following the model's
sentence-transformers configuration (embctl_onnx.config).

``load`` is cheap: it finds the files (pulling the variant when missing) and reads the
configs.  tokenizers and onnxruntime are imported when the first batch is embedded, so a run
whose vectors are all cached loads neither.  Nothing here imports torch, transformers or
sentence_transformers.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embctl.plugin import Embedder, Model, warn
from embctl_onnx.config import STConfig, read_config
from embctl_onnx.locate import OnnxFiles, locate_onnx


class ONNXEmbedder(Embedder):
    """A sentence-transformers model run by onnxruntime."""

    #: Calls are cut from token-sorted windows (``token_lengths``): at most 64 inputs and
    #: 2,048 padded tokens a call (8 inputs of 256: the attention's (batch, heads, tokens,
    #: tokens) tensors grow with the square of the length), and a cut wherever padding would
    #: cost more than a call (``call_cost``, in tokens).  A plain onnxruntime loop over
    #: token-sorted texts is fastest at 64 short texts, 32 varied, 8 long (2 cores,
    #: all-MiniLM-L6-v2: bench/bench_batching.py); the budget gives each its size.
    batch_size = 64
    max_batch_tokens = 2048
    padded_budget = 2048
    call_cost = 16
    tokens_exact = True

    def __init__(self, model: Model, files: OnnxFiles, config: STConfig,
                 options: dict[str, Any]) -> None:
        self.model = model
        self.files = files
        self.path = files.root
        self.revision = files.revision
        self.config = config
        from embctl_onnx.session import check_device

        self.device = check_device(options.get("device") or "cpu")
        self.threads: int | None = options.get("threads")
        self.normalize = bool(options.get("normalize", False))
        self.truncate_dim: int | None = options.get("truncate_dim")
        self.prompt = config.default_prompt
        self.max_input_tokens = config.max_seq_length
        dim = config.dim
        if dim and self.truncate_dim:
            dim = min(dim, self.truncate_dim)
        self.dim = self.expected_dim = int(dim) if dim else 0
        self.truncated = 0
        self._ready: tuple | None = None
        self._tokenizers: dict[tuple[bool, bool], Any] = {}
        self.pad_id = 0
        #: Encodings of inputs planned but not embedded yet (``token_lengths``), by text.
        self.encoded: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        # The core adds backend, repo_id and revision: the file's hash and the variant make
        # the vectors of each ONNX file their own (int8 and fp32 never mix).
        self.params = {"variant": files.variant, "onnx_sha256": files.sha256,
                       "normalize": self.normalize, "truncate_dim": self.truncate_dim,
                       "prompt": self.prompt}

    @property
    def model_files(self) -> list[Path]:
        return self.files.model_files

    def count_tokens(self, text: str) -> int:
        """The tokens of ``text`` (prompt and special tokens included) before truncation: what
        the core's batches are cut by, and what ``--dry-run`` sums and compares with
        max_seq_length.  Loads a tokenizer only, not the model."""
        from embctl_onnx.runtime import count

        return count(self, self.tokenizer(truncate=False), text)

    def token_lengths(self, inputs: Sequence[str]) -> list[int]:
        """The tokens each input is computed with (truncated at max_seq_length), from the
        encodings the next ``embed`` of those inputs then uses: the core sorts and cuts its
        calls by them."""
        from embctl_onnx.runtime import lengths

        return lengths(self, self.tokenizer(pad=False), list(inputs))

    def tokenizer(self, *, truncate: bool = True, pad: bool = True):
        """The model's tokenizer: truncating at max_seq_length (to embed), or not (to count);
        padding each batch to its longest, or not (its calls pad themselves)."""
        with self._lock:
            if (truncate, pad) not in self._tokenizers:
                from embctl_onnx.runtime import make_tokenizer

                self._tokenizers[truncate, pad] = make_tokenizer(self, truncate=truncate,
                                                                 pad=pad)
            return self._tokenizers[truncate, pad]

    def _load(self) -> tuple:
        tok = self.tokenizer(pad=False)
        with self._lock:
            if self._ready is None:
                from embctl_onnx.runtime import prepare

                self._ready = prepare(self, tok)
            return self._ready

    def embed(self, inputs: Sequence[str]):
        from embctl_onnx.runtime import run

        return run(self, self._load(), list(inputs))

    def finish(self) -> None:
        if self.truncated:
            n, limit = self.truncated, self.config.max_seq_length
            warn(f"{n:,} input{'s' if n > 1 else ''} longer than {self.model.ref}'s "
                 f"max_seq_length ({limit} tokens) {'were' if n > 1 else 'was'} truncated")
            self.truncated = 0


def load(model: Model, options: dict[str, Any]) -> ONNXEmbedder:
    """Backend.load for ``onnx``: options device, variant, normalize, truncate_dim, threads
    (embctl_onnx/__init__.py), and the core's cache_dir and quiet."""
    from embctl_onnx.variants import forced_cpu

    forced_cpu()  # a bad EMBCTL_ONNX_CPU is a usage error, whatever the variant
    files = locate_onnx(model, options)
    return ONNXEmbedder(model, files, read_config(files.root, model.ref), options)
