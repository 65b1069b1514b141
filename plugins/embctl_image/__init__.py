"""Image backend (``image:``): transformers vision models (ResNet, ConvNeXt, ViT) as feature
extractors, with PNG/JPEG/TIFF decoding that handles 16-bit single-channel infrared images.

Nothing heavy is imported here: torch, transformers, PIL and numpy are imported by the
functions that need them, so ``embctl --help`` and ``embctl ls`` stay fast.
"""

from __future__ import annotations

from typing import Any

from embctl.plugin import Alias, Backend, Embedder, Model, Option, UsageError, hookimpl
from embctl_image.files import select_files

MB = 1_000_000


def _image_range(text: str) -> str:
    """The ``image_range`` option, checked and written as ``load`` reads it."""
    from embctl_image.decode import Scaling

    try:
        return Scaling.parse(text).rule
    except UsageError:
        raise ValueError(f"expected 'minmax' or LO:HI with LO < HI (e.g. 0:16383), "
                         f"got {text!r}") from None


#: What ``load`` takes besides the core's cache_dir and quiet.
OPTIONS = (
    Option("device", str, None, "cpu, cuda, cuda:1, mps... (default: cuda if available, "
           "else cpu)"),
    Option("normalize", bool, False, "L2-normalize the vectors"),
    Option("image_range", _image_range, "minmax", "how >8-bit (infrared) images map to "
           "0..255: per-image min/max, or a fixed range such as 0:16383",
           metavar="minmax|LO:HI", flag="--image-range"),
    Option("path_field", str, "path", "the JSONL field holding the image path (relative to "
           "the JSONL file)", flag="--path-field"),
    Option("workers", int, None, "decoding threads (default: the CPUs, at most 4)", minimum=1),
)


class ImageBackend(Backend):
    name = "image"
    description = "image feature extractors from the Hub (transformers ResNet/ConvNeXt/ViT)"
    options = OPTIONS
    input_kind = "image"

    def load(self, model: Model, options: dict[str, Any]) -> Embedder:
        from embctl_image.embedder import load

        return load(model, options)

    def select_files(self, paths: list[str], options: dict[str, Any]) -> list[str]:
        return select_files(paths)

    def recognize(self, files: list[str]) -> bool:
        """An image model: it ships an image processor's config."""
        return "preprocessor_config.json" in files

    def input_adapter(self, options: dict[str, Any]) -> Any:
        from embctl_image.adapter import input_adapter

        return input_adapter(options)


@hookimpl
def register_backends(register):
    register(ImageBackend())


@hookimpl
def register_aliases(register):
    register(Alias("resnet-50", "image:microsoft/resnet-50",
                   "ResNet-50 (ImageNet-1k) pooled features; the infrared seed's default.",
                   dim=2048, size_bytes=103 * MB))
