"""Image backend (``image:``): transformers vision models (ResNet, ConvNeXt, ViT) as feature
extractors, with PNG/JPEG/TIFF decoding that handles 16-bit single-channel infrared images.

Nothing heavy is imported here: torch, transformers, PIL and numpy are imported by the
functions that need them, so ``embctl --help`` and ``embctl ls`` stay fast.
"""

from __future__ import annotations

from typing import Any

from embctl.backends import Alias, Backend
from embctl.hookspecs import hookimpl
from embctl_image.files import select_files

MB = 1_000_000


def _load(model: Any, options: dict[str, Any]) -> Any:
    from embctl_image.embedder import load

    return load(model, options)


def _input_adapter(options: dict[str, Any]) -> Any:
    from embctl_image.adapter import input_adapter

    return input_adapter(options)


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="image",
            description="image feature extractors from the Hub (transformers ResNet/ConvNeXt/ViT)",
            select_files=select_files,
            load=_load,
            input_kind="image",
            input_adapter=_input_adapter,
        )
    )


@hookimpl
def register_aliases(register):
    register(Alias("resnet-50", "image:microsoft/resnet-50",
                   "ResNet-50 (ImageNet-1k) pooled features; the infrared seed's default.",
                   dim=2048, size_bytes=103 * MB))
