"""The image Embedder: decode and preprocess in a worker pool beside the model.

``load`` is cheap: it locates the snapshot (pulling it when missing, unless HF_HUB_OFFLINE=1,
exactly as the ``st`` backend does), reads the dimension from ``config.json`` and the
preprocessing from ``preprocessor_config.json``.  torch and transformers are imported when the
first batch reaches the model, so a run whose vectors are all cached never loads them.

Work is split so that both cores stay busy:

* ``submit(data, name)`` queues decode + resize + crop of one file's bytes on a thread pool
  (Pillow and numpy release the GIL while they work) and returns a Future of a uint8 crop;
* ``compute(crops)`` turns a batch of crops into normalized pixels and runs the model.

The image input adapter (``embctl_image/adapter.py``) submits the next batch's
images before it runs the model on the current one.  ``embed(inputs)`` does the same for a
plain list of paths (the Python API).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embctl.plugin import EmbctlError, Embedder, Model, locate, pick_device
from embctl_image.adapter import Ready
from embctl_image.decode import DecodeError, Scaling, decode
from embctl_image.preprocess import Preprocessor

if TYPE_CHECKING:
    import numpy as np

PREPROCESS_VERSION = 1
_LOADED: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def config_dim(config: dict[str, Any]) -> int | None:
    """Pooled feature size: ResNet/ConvNeXt/RegNet ``hidden_sizes[-1]``, ViT-likes
    ``hidden_size``."""
    sizes = config.get("hidden_sizes")
    if isinstance(sizes, list) and sizes:
        return int(sizes[-1])
    if isinstance(config.get("hidden_size"), int):
        return int(config["hidden_size"])
    return None


def workers_default() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))


class ImageEmbedder(Embedder):
    batch_size = 32
    #: What a decoding Future may raise for a bad file (the adapter reports it by line).
    decode_errors = (DecodeError,)

    def __init__(self, model: Model, path: Path, revision: str, options: dict[str, Any]) -> None:
        self.model = model
        self.path = path
        self.revision = revision
        self.device_request: str | None = options.get("device")
        self.normalize = bool(options.get("normalize") or False)
        self.scaling = Scaling.parse(options.get("image_range"))
        self.workers = int(options.get("workers") or workers_default())
        try:
            self.config = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise EmbctlError(f"{model.ref}: cannot read config.json: {exc}") from None
        self.channels = int(self.config.get("num_channels", 3))
        self.mode = "L" if self.channels == 1 else "RGB"
        self.pre = Preprocessor.from_dir(path)
        self._dim = config_dim(self.config)
        self._net = None
        self._device = "cpu"
        self._pool: ThreadPoolExecutor | None = None
        # The core adds backend, repo_id and revision (embctl/namespace.py).
        self.params = {
            "normalize": self.normalize,
            "wide_scaling": self.scaling.rule,
            "preprocess": self.pre.describe(),
            "channels": self.mode,
            "image_pipeline": PREPROCESS_VERSION,
        }

    # -- metadata --------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        if self._dim is None:
            import numpy as np

            probe = np.zeros((1, *self._crop_shape()), dtype=np.uint8)
            self._dim = int(self.compute([probe[0]]).shape[1])
        return self._dim

    @property
    def model_files(self) -> list[Path]:
        """The files the vectors are made from: the pipeline checks those that are cache blobs
        against their hashes before the first batch."""
        return sorted(p for p in self.path.rglob("*") if p.is_file())

    def _crop_shape(self) -> tuple[int, int, int]:
        size = self.pre.crop or self.pre.size
        edge = size.get("shortest_edge", 224)
        return size.get("height", edge), size.get("width", edge), self.channels

    def info(self) -> dict[str, Any]:
        return {"ref": self.model.ref, "backend": self.model.backend,
                "repo_id": self.model.repo_id, "revision": self.revision,
                "path": str(self.path), "dim": self._dim, "normalize": self.normalize,
                "wide_scaling": self.scaling.rule, "workers": self.workers}

    # -- workers ---------------------------------------------------------------------------

    def prepare(self, data: bytes) -> np.ndarray:
        """Decode and crop one file's bytes (runs in a worker). Raises DecodeError."""
        return self.pre.crop_image(decode(data, self.scaling, self.mode))

    def submit(self, data: bytes) -> Future:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embctl-image")
        return self._pool.submit(self.prepare, data)

    # -- the model -------------------------------------------------------------------------

    def _load(self):
        if self._net is None:
            with _LOCK:
                self._device = pick_device(self.device_request)
                key = (str(self.path), self._device)
                if key not in _LOADED:
                    _LOADED[key] = _load_model(self.path, self._device, self.model.ref)
                self._net = _LOADED[key]
        return self._net

    def compute(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """float32 (len(crops), dim) pooled features of preprocessed uint8 crops."""
        import numpy as np
        import torch

        net = self._load()
        pixels = self.pre.to_tensor(list(crops)).to(self._device)
        if self._device == "cpu" and self.config.get("model_type") != "vit":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = net(pixel_values=pixels)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state[:, 0]
        vectors = pooled.reshape(pooled.shape[0], -1).float()
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=1)
        return np.ascontiguousarray(vectors.cpu().numpy(), dtype=np.float32)

    def problems(self, vectors: np.ndarray) -> list[str | None]:
        """validate_embedding_quality: why each vector is unusable, or None."""
        from embctl_image.quality import problems

        return problems(vectors)

    def embed(self, inputs: Sequence[Any]) -> np.ndarray:
        """Vectors for file paths (decoded in the pool), raw bytes, or ``Ready`` vectors.

        Raises EmbctlError naming the file when one cannot be read or decoded, or when the
        model returns an unusable vector (NaN, inf, zero norm)."""
        import numpy as np

        from embctl_image.quality import problems

        out: list[Any] = [None] * len(inputs)
        pending: dict[int, tuple[str, Future]] = {}
        for i, item in enumerate(inputs):
            if isinstance(item, Ready):
                out[i] = item.vector
            elif isinstance(item, (bytes, bytearray)):
                pending[i] = (f"input {i}", self.submit(bytes(item)))
            else:
                name = os.fspath(item)
                try:
                    data = Path(name).read_bytes()
                except OSError as exc:
                    raise EmbctlError(f"{name}: cannot read: {exc.strerror}") from None
                pending[i] = (name, self.submit(data))
        crops = []
        for name, future in pending.values():
            try:
                crops.append(future.result())
            except DecodeError as exc:
                raise EmbctlError(f"{name}: {exc}") from None
        if crops:
            vectors = self.compute(crops)
            for (i, (name, _)), vec, problem in zip(pending.items(), vectors,
                                                     problems(vectors), strict=True):
                if problem:
                    raise EmbctlError(f"{name}: {problem}; not cached")
                out[i] = vec
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(out).astype(np.float32, copy=False)

    def finish(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _load_model(path: Path, device: str, ref: str):
    from embctl.plugin import library_warnings, progress_bars, route_logs, verbose

    # The libraries' logs, warnings and bars: only under -v (embctl.quiet).
    if not verbose():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise EmbctlError("the image backend needs transformers and torch: "
                          "pip install 'embctl[image]'") from None
    route_logs("transformers", "huggingface_hub", "torch")
    progress_bars(hf_logging.enable_progress_bar, hf_logging.disable_progress_bar)
    if not any(path.glob("*.safetensors")):
        raise EmbctlError(f"{ref}: no safetensors weights in {path}")
    try:
        with library_warnings():
            net = AutoModel.from_pretrained(str(path), local_files_only=True,
                                            use_safetensors=True)
        net = net.to(device).eval()
        if device == "cpu" and getattr(net.config, "model_type", "") != "vit":
            net = net.to(memory_format=torch.channels_last)
    except Exception as exc:  # a broken snapshot, a bad device name...
        text = " ".join(str(exc).split())[:300]
        raise EmbctlError(f"{ref}: cannot load the model on {device}: {text}") from None
    return net


def load(model: Model, options: dict[str, Any]) -> ImageEmbedder:
    """Backend.load for ``image``: options are device, normalize, image_range, workers (see
    ``OPTIONS`` in __init__.py), and the core's cache_dir and quiet."""
    path, revision = locate(model, options.get("cache_dir"), quiet=bool(options.get("quiet")),
                            markers=("config.json",))
    return ImageEmbedder(model, path, revision, options)
