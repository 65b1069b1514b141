"""Test data for the image backend: a tiny randomly initialised ResNet repo and test images.

``build_resnet_repo`` writes a Hub repo (``config.json``, ``model.safetensors`` and
``preprocessor_config.json`` from ``save_pretrained``, plus decoys a pull must not fetch) into
the test hub's root.  ``make_images`` writes the images the tests and the benchmark use.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .hub import make_repo

TINY_RESNET = "embctl-test/tiny-resnet"
TINY_DIM = 32
DECOYS = {"pytorch_model.bin": b"decoy" * 100, "tf_model.h5": b"decoy" * 100,
          "README.md": "# tiny resnet\n", "onnx/model.onnx": b"decoy" * 100}


def build_resnet_repo(root: Path, repo_id: str = TINY_RESNET, *, size: int = 64,
                      hidden: tuple[int, ...] = (16, TINY_DIM), depths: tuple[int, ...] = (1, 1),
                      layer_type: str = "basic", seed: int = 0) -> Path:
    """A randomly initialised ResNet saved with save_pretrained, with its image processor."""
    import torch
    from transformers import ConvNextImageProcessorPil, ResNetConfig, ResNetModel

    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=3, embedding_size=hidden[0], hidden_sizes=list(hidden),
                          depths=list(depths), layer_type=layer_type)
    model = ResNetModel(config).eval()
    repo = make_repo(root, repo_id, DECOYS)
    model.save_pretrained(repo, safe_serialization=True)
    processor = ConvNextImageProcessorPil(size={"shortest_edge": size}, crop_pct=0.875,
                                          resample=3)
    processor.save_pretrained(repo)
    return repo


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def thermal(height: int = 60, width: int = 80, seed: int = 1) -> np.ndarray:
    """A 16-bit infrared-like frame: a warm blob on a gradient, values well above 255."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    blob = np.exp(-((x - width * 0.6) ** 2 + (y - height * 0.4) ** 2) / (2 * (width / 6) ** 2))
    frame = 9000 + 30 * x + 12000 * blob + rng.normal(0, 40, (height, width))
    return np.clip(frame, 0, 65535).astype(np.uint16)


def render8(frame: np.ndarray) -> np.ndarray:
    """The documented min/max rule, as a user would render the frame to 8 bits."""
    lo, hi = float(frame.min()), float(frame.max())
    return np.rint((frame.astype(np.float32) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def rgb(height: int = 60, width: int = 80, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 3, y * 4, (x + y) * 2], axis=2) % 256
    return np.clip(base + rng.integers(0, 30, base.shape), 0, 255).astype(np.uint8)


def make_images(folder: Path) -> dict[str, Path]:
    """Write the test images; returns name -> path."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    frame = thermal()
    files: dict[str, bytes] = {
        "rgb.png": png_bytes(rgb()),
        "rgb.jpg": png_bytes(rgb(seed=3), "JPEG"),
        "gray8.png": png_bytes(rgb(seed=4)[:, :, 1]),
        "ir16.png": png_bytes(frame),
        "ir16_as8.png": png_bytes(render8(frame)),
        "ir16_lowbyte.png": png_bytes((frame & 0xFF).astype(np.uint8)),
        "empty.png": b"",
        "corrupt.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    }
    valid = files["rgb.png"]
    files["truncated.png"] = valid[: len(valid) // 2]
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    tiff = folder / "ir16.tiff"
    Image.fromarray(frame).save(tiff)
    out["ir16.tiff"] = tiff
    return out
