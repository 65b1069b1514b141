"""Loading sentence-transformers models for ``embctl embed`` and ``embctl.load``.

``load`` is cheap: it finds the model's snapshot in the Hugging Face cache (pulling it when it
is missing, unless HF_HUB_OFFLINE=1) and reads its dimension from the config files.  torch and
sentence_transformers are imported only when the first batch is embedded, so a run whose
vectors are all cached never loads the model at all.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embctl.plugin import EmbctlError, Embedder, Model, locate, pick_device, warn

#: Loaded SentenceTransformer objects, by (the identity of the model's files, device): once
#: per process for the same files, wherever they are linked from.
_LOADED: dict[tuple[tuple, str], Any] = {}
_LOCK = threading.Lock()


def config_dim(path: Path) -> int | None:
    """The output dimension, read from modules.json and module configs; None if unsure."""
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    dim = None
    for module in modules:
        kind = str(module.get("type", ""))
        try:
            cfg = json.loads((path / module.get("path", "") / "config.json").read_text())
        except (OSError, ValueError):
            cfg = {}
        if kind.endswith("Pooling"):
            modes = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
            if modes != ["pooling_mode_mean_tokens"] and modes != ["pooling_mode_cls_token"] \
                    and modes != ["pooling_mode_max_tokens"]:
                return None  # concatenated modes: let the model say
            dim = cfg.get("word_embedding_dimension")
        elif kind.endswith("Dense"):
            dim = cfg.get("out_features")
        elif kind.endswith(("Normalize", "Transformer")):
            continue
        else:
            return None
    return int(dim) if dim else None


class STEmbedder(Embedder):
    """A sentence-transformers model, loaded on first use.

    ``params`` and (usually) ``dim`` are known without loading anything.
    """

    batch_size = 64
    #: One encode() call costs ~7 ms before any token (MiniLM, 2 CPU cores): about what 40
    #: more tokens (~160 characters) cost.  The core cuts a batch where padding would cost more.
    call_cost = 160

    def __init__(self, model: Model, path: Path, revision: str, options: dict[str, Any]) -> None:
        self.model = model
        self.path = path
        self.revision = revision
        self.device_request: str | None = options.get("device")
        self.normalize = bool(options.get("normalize", False))
        self.truncate_dim: int | None = options.get("truncate_dim")
        self.truncated = 0  # inputs longer than max_seq_length, counted as they are embedded
        self._st = None
        self._dim = config_dim(path)
        if self._dim and self.truncate_dim:
            self._dim = min(self._dim, self.truncate_dim)
        # The core adds backend, repo_id and revision (embctl/namespace.py).
        self.params = {"normalize": self.normalize, "truncate_dim": self.truncate_dim}
        counter = TokenCounter.of(path)
        if counter is not None:  # windows sorted and cut by tokens; a call costs ~40
            self.token_lengths = counter
            self.call_cost = 40
            # At most 2,048 padded tokens a call: 8 inputs of 256, where a plain loop over
            # token-sorted texts is fastest on long inputs (32 of varied sentences, 64 of
            # short ones, which the budget leaves alone: bench/bench_batching.py).  Calls
            # of 16 long inputs ran 10-15% slower (attention grows with length squared).
            self.padded_budget = 2048

    @property
    def model_files(self) -> list[Path]:
        """The files the vectors are made from: the pipeline checks those that are cache blobs
        against their hashes before the first batch."""
        return sorted(p for p in self.path.rglob("*") if p.is_file())

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._load().get_sentence_embedding_dimension())
        return self._dim

    @property
    def max_seq_length(self) -> int | None:
        return getattr(self._load(), "max_seq_length", None)

    def _load(self):
        if self._st is None:
            with _LOCK:
                device = pick_device(self.device_request)
                key = (files_identity(self.path), device)
                if key not in _LOADED:
                    _LOADED[key] = _load_st(self.path, device, self.model.ref)
                self._st = _LOADED[key]
        return self._st

    def embed(self, inputs: Sequence[str]):
        import numpy as np

        st = self._load()
        texts = self._clip(st, list(inputs))
        vectors = st.encode(texts, batch_size=max(len(texts), 1),
                            normalize_embeddings=self.normalize, convert_to_numpy=True,
                            show_progress_bar=False, truncate_dim=self.truncate_dim)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _clip(self, st, texts: list[str]) -> list[str]:
        """Count the texts the model will truncate, and cut very long ones short.

        A token covers at least one UTF-8 byte, so only texts longer than max_seq_length
        (less room for special tokens) can be truncated; only those are tokenized, and only
        their head (32 characters a token).  When the head alone has clearly more tokens than
        the model keeps, the model's output is the same for the head as for the whole text,
        so the head is what it gets: a 50 MB line is not tokenized whole (which takes minutes
        and gigabytes).
        """
        limit = getattr(st, "max_seq_length", None)
        if not limit:
            return texts
        head = limit * 32
        long = [i for i, t in enumerate(texts) if len(t) > limit - 4 or len(t.encode()) > limit - 4]
        counted = getattr(self.token_lengths, "overflowed", {})
        if counted:  # the plan's count saw these whole: truncated or not, nothing to cut
            known = [i for i in long if len(texts[i]) <= head and texts[i] in counted]
            self.truncated += sum(1 for i in known if counted.pop(texts[i]))
            done = set(known)
            long = [i for i in long if i not in done]
        if not long:
            return texts
        counts = st.tokenizer([texts[i][:head] for i in long], add_special_tokens=True,
                              truncation=False)["input_ids"]
        out = list(texts)
        for i, ids in zip(long, counts, strict=True):
            if len(ids) > limit:
                self.truncated += 1
                if len(texts[i]) > head and len(ids) > limit + 16:
                    out[i] = texts[i][:head]
        return out

    def finish(self) -> None:
        """Called once at the end of a run: the one truncation warning."""
        if self.truncated and self._st is not None:
            limit = self._st.max_seq_length
            warn(f"{self.truncated:,} input{'s' if self.truncated > 1 else ''} longer than "
                 f"{self.model.ref}'s max_seq_length ({limit} tokens) "
                 f"{'were' if self.truncated > 1 else 'was'} truncated")
            self.truncated = 0

    def info(self) -> dict[str, Any]:
        return {"ref": self.model.ref, "backend": self.model.backend,
                "repo_id": self.model.repo_id, "revision": self.revision,
                "path": str(self.path), "dim": self._dim, "normalize": self.normalize}


class TokenCounter:
    """The tokens sentence-transformers computes each text with (special tokens included,
    truncated at max_seq_length), from the model's fast tokenizer (``tokenizer.json``) alone:
    no torch, so a dry run and the planning of a window load no model.  encode() tokenizes
    the texts again (1-2% of a batch's time: bench/bench_batching.py)."""

    def __init__(self, file: Path, limit: int | None, lower: bool) -> None:
        self.file, self.limit, self.lower = file, limit, lower
        self.overflowed: dict[str, bool] = {}  # text -> truncated, of the windows planned
        self._tok = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, path: Path) -> TokenCounter | None:
        import importlib.util

        file = path / "tokenizer.json"
        if not file.is_file() or importlib.util.find_spec("tokenizers") is None:
            return None  # sorted and cut by characters, as before
        try:
            cfg = json.loads((path / "sentence_bert_config.json").read_text())
        except (OSError, ValueError):
            cfg = {}
        limit = cfg.get("max_seq_length")
        return cls(file, limit if isinstance(limit, int) and limit > 0 else None,
                   bool(cfg.get("do_lower_case")))

    def _tokenizer(self):
        with self._lock:
            if self._tok is None:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(self.file))
                tok.no_padding()
                if self.limit:
                    tok.enable_truncation(max_length=self.limit)
                self._tok = tok
            return self._tok

    def __call__(self, texts: Sequence[str]) -> list[int]:
        head = self.limit * 32 if self.limit else None  # as _clip: a 50 MB line's head
        prepared = [(t[:head] if head else t) for t in texts]
        if self.lower:
            prepared = [t.lower() for t in prepared]
        encoded = self._tokenizer().encode_batch(prepared)
        with self._lock:  # whether each was truncated: _clip need not tokenize it again
            for text, e in zip(texts, encoded, strict=True):
                self.overflowed[text] = bool(e.overflowing)
            while len(self.overflowed) > 16384:
                del self.overflowed[next(iter(self.overflowed))]
        return [len(e.ids) for e in encoded]


def files_identity(path: Path) -> tuple:
    """The files under ``path`` by identity (name, device, inode, size, modification time):
    two snapshots whose blobs are the same files (hard links, two refs of one commit) load
    one model; a file replaced or changed since is a new model."""
    found = []
    for file in sorted(path.rglob("*")):
        try:
            st = file.stat()
        except OSError:  # a dangling link: loading will say what is wrong
            continue
        if stat.S_ISREG(st.st_mode):
            found.append((file.relative_to(path).as_posix(), st.st_dev, st.st_ino, st.st_size,
                          st.st_mtime_ns))
    return tuple(found)


#: The libraries whose logs and warnings are not the user's business unless -v
#: (embctl.quiet): the load report of a checkpoint with unused weights, the tokenizer's
#: "longer than the specified maximum" (embctl's own truncation line says it once).
LIBRARIES = ("sentence_transformers", "transformers", "huggingface_hub", "torch")


def _load_st(path: Path, device: str, ref: str):
    from embctl.plugin import library_warnings, route_logs, verbose

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not verbose():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from embctl_st.deferred import sklearn_deferred

    with library_warnings():
        try:
            with sklearn_deferred():  # ~1.5 s of a cold start that embedding never uses
                from sentence_transformers import SentenceTransformer
        except ImportError:
            raise EmbctlError(
                "the st backend needs sentence-transformers: pip install 'embctl[st]'") from None
        route_logs(*LIBRARIES)  # after the import: transformers sets its logger up then
        _progress_bars()
        try:
            return SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as exc:  # a broken snapshot, a bad device name...
            text = " ".join(str(exc).split())[:300]
            raise EmbctlError(f"{ref}: cannot load the model on {device}: {text}") from None


def _progress_bars() -> None:
    """transformers' "Loading weights" bars: only under -v (a process-wide switch)."""
    from embctl.plugin import progress_bars

    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    progress_bars(hf_logging.enable_progress_bar, hf_logging.disable_progress_bar)


def load(model: Model, options: dict[str, Any]) -> STEmbedder:
    """Backend.load for ``st``: options are device, normalize, truncate_dim (see
    ``OPTIONS`` in __init__.py), and the core's cache_dir and quiet."""
    path, revision = locate(model, options.get("cache_dir"), quiet=bool(options.get("quiet")),
                            markers=("config.json", "modules.json"))
    return STEmbedder(model, path, revision, options)
