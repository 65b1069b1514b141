"""Decoding image files into what the model expects, 16-bit infrared images included.

Rule for images with more than 8 bits per sample (16-bit PNG/TIFF, 32-bit integer or float
TIFF; single channel, as infrared cameras write them): samples are mapped linearly onto 0..255
and rounded, never truncated to their low byte::

    minmax (default):  lo, hi = the image's own min and max
    LO:HI (fixed):     lo, hi = LO, HI; samples outside are clipped first
    out = round((clip(x, lo, hi) - lo) * 255 / (hi - lo))      (all 0 when hi == lo)

A fixed range keeps absolute intensities comparable between images (the same temperature
gives the same gray level); min/max stretches each image's contrast.  8-bit images (RGB, gray,
palette, with alpha) are used as they are.  The result is converted to the model's channels:
RGB (gray replicated) for 3-channel models, L for 1-channel ones.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embctl.plugin import UsageError

if TYPE_CHECKING:
    from PIL import Image

#: Pillow modes with more than 8 bits per sample.
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I;16S", "I", "F", "I;32", "I;32B")
FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")


class DecodeError(Exception):
    """The bytes are not a decodable image (corrupt, truncated, unsupported)."""


@dataclass(frozen=True)
class Scaling:
    """How samples wider than 8 bits are mapped onto 0..255."""

    lo: float | None = None  # None: per-image min/max
    hi: float | None = None

    @property
    def rule(self) -> str:
        return "minmax" if self.lo is None else f"{self.lo:g}:{self.hi:g}"

    @classmethod
    def parse(cls, text: str | None) -> Scaling:
        """``None``/"minmax", or "LO:HI" (e.g. "0:16383" for a 14-bit sensor)."""
        if text is None or text.strip().lower() in ("", "minmax"):
            return cls()
        lo_text, sep, hi_text = text.partition(":")
        try:
            lo, hi = float(lo_text), float(hi_text)
        except ValueError:
            lo = hi = float("nan")
        if not sep or not lo < hi:
            raise UsageError(f"--image-range {text!r}: expected 'minmax' or LO:HI with LO < HI "
                             "(e.g. 0:16383)")
        return cls(lo, hi)


def scale_wide(img: Image.Image, scaling: Scaling) -> Image.Image:
    """A >8-bit single-channel image mapped onto 8-bit gray by ``scaling``'s rule."""
    import numpy as np
    from PIL import Image

    samples = np.asarray(img).astype(np.float32)
    if samples.ndim == 3:  # several wide channels (rare): scale them together, keep gray
        samples = samples.mean(axis=2)
    finite = np.isfinite(samples)
    if not finite.all():
        samples = np.where(finite, samples, 0.0)
    if scaling.lo is None:
        lo, hi = (float(samples.min()), float(samples.max())) if samples.size else (0.0, 0.0)
    else:
        lo, hi = scaling.lo, scaling.hi  # type: ignore[assignment]
        samples = np.clip(samples, lo, hi)
    if hi <= lo:
        out = np.zeros(samples.shape, dtype=np.uint8)
    else:
        out = np.rint((samples - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def decode(data: bytes, scaling: Scaling, mode: str = "RGB") -> Image.Image:
    """Decode an image file's bytes into a fully loaded PIL image of ``mode`` (RGB or L).

    Raises DecodeError for anything that is not a complete, supported image."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
        img.load()  # decodes everything: a truncated file fails here
    except UnidentifiedImageError:
        raise DecodeError("not a PNG, JPEG or TIFF image (or a corrupt one)") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError(str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise DecodeError(f"cannot decode image: {text}") from None
    if img.mode in WIDE_MODES:
        img = scale_wide(img, scaling)
    if img.mode != mode:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")  # composite transparency on black, consistently
        img = img.convert(mode)
    return img
