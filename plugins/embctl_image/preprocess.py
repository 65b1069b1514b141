"""The model's image preprocessing, split in two so that the costly half runs in workers.

* ``Preprocessor.crop(img)`` (worker threads, beside the model): resize and center-crop a
  decoded PIL image exactly as the checkpoint's ``preprocessor_config.json`` says, with the
  same PIL resampling transformers' PIL image processors use.  The result stays uint8
  (H, W, C): a quarter of the memory of float pixels.
* ``Preprocessor.to_tensor(crops)`` (the model thread, per batch): rescale and normalize the
  whole batch at once in float32 and return NCHW pixel values.

Supported configurations: ConvNeXt-style (``shortest_edge`` with ``crop_pct``, which is what
microsoft/resnet-50 ships), fixed ``height``/``width`` (ViT), and ``shortest_edge`` with an
optional ``crop_size`` center crop (BiT, CLIP-like).  Anything else raises a clear error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embctl.plugin import EmbctlError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _size(value: Any) -> dict[str, int]:
    if isinstance(value, int):
        return {"shortest_edge": value}
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return {"height": int(value[0]), "width": int(value[1])}
    return {k: int(v) for k, v in (value or {}).items() if v is not None}


@dataclass(frozen=True)
class Preprocessor:
    kind: str  # "crop_pct", "fixed", "shortest_edge"
    size: dict[str, int]
    crop: dict[str, int] | None
    crop_pct: float | None
    resample: int
    rescale: float | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    do_resize: bool = True

    @classmethod
    def from_dir(cls, path: Path) -> Preprocessor:
        try:
            cfg = json.loads((path / "preprocessor_config.json").read_text())
        except FileNotFoundError:
            raise EmbctlError(f"{path}: no preprocessor_config.json; not an image model") \
                from None
        except (OSError, ValueError) as exc:
            raise EmbctlError(f"{path}/preprocessor_config.json: {exc}") from None
        return cls.from_config(cfg)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> Preprocessor:
        size = _size(cfg.get("size", 224))
        name = str(cfg.get("image_processor_type") or cfg.get("feature_extractor_type") or "")
        crop = _size(cfg["crop_size"]) if cfg.get("do_center_crop") and cfg.get("crop_size") \
            else None
        if "shortest_edge" in size and (name.startswith("ConvNext") or "crop_pct" in cfg):
            kind = "crop_pct"
            crop = None
        elif "height" in size and "width" in size:
            kind = "fixed"
        elif "shortest_edge" in size and "longest_edge" not in size:
            kind = "shortest_edge"
        else:
            raise EmbctlError(f"unsupported preprocessor_config.json size {size!r} ({name})")
        do_rescale = cfg.get("do_rescale", True)
        do_normalize = cfg.get("do_normalize", True)
        return cls(
            kind=kind, size=size, crop=crop,
            crop_pct=float(cfg.get("crop_pct") or 224 / 256) if kind == "crop_pct" else None,
            resample=int(cfg.get("resample", 3 if kind == "crop_pct" else 2)),
            rescale=float(cfg.get("rescale_factor", 1 / 255)) if do_rescale else None,
            mean=tuple(cfg.get("image_mean", IMAGENET_MEAN)) if do_normalize else None,
            std=tuple(cfg.get("image_std", IMAGENET_STD)) if do_normalize else None,
            do_resize=bool(cfg.get("do_resize", True)),
        )

    def describe(self) -> dict[str, Any]:
        """What goes into the cache namespace."""
        return {"kind": self.kind, "size": self.size, "crop": self.crop,
                "crop_pct": self.crop_pct, "resample": self.resample, "rescale": self.rescale,
                "mean": self.mean, "std": self.std, "do_resize": self.do_resize}

    # -- worker side -----------------------------------------------------------------------

    def crop_image(self, img: Image.Image) -> np.ndarray:
        """Resize and crop as transformers does; uint8 (H, W, C)."""
        import numpy as np

        if self.do_resize:
            img = self._resize(img)
        if self.crop is not None:
            img = _center_crop(img, self.crop["height"], self.crop["width"])
        arr = np.asarray(img)
        return arr[:, :, None] if arr.ndim == 2 else arr

    def _resize(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        if self.kind == "fixed":
            return img.resize((self.size["width"], self.size["height"]), self.resample)
        edge = self.size["shortest_edge"]
        if self.kind == "crop_pct" and edge >= 384:
            return img.resize((edge, edge), self.resample)
        target = int(edge / self.crop_pct) if self.kind == "crop_pct" else edge  # type: ignore[operator]
        # transformers' get_resize_output_image_size(default_to_square=False)
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = target, int(target * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        img = img.resize((new_w, new_h), self.resample)
        if self.kind == "crop_pct":
            img = _center_crop(img, edge, edge)
        return img

    # -- model side ------------------------------------------------------------------------

    def to_tensor(self, crops: list[np.ndarray]):
        """A float32 NCHW torch tensor, rescaled and normalized (same order as transformers:
        ``(x * rescale - mean) / std``)."""
        import numpy as np
        import torch

        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
        if self.rescale is not None:
            batch.mul_(self.rescale)
        if self.mean is not None and self.std is not None:
            channels = batch.shape[1]
            mean = torch.tensor(_fit(self.mean, channels)).view(1, -1, 1, 1)
            std = torch.tensor(_fit(self.std, channels)).view(1, -1, 1, 1)
            batch.sub_(mean).div_(std)
        return batch


def _fit(values: tuple[float, ...], channels: int) -> list[float]:
    return list(values[:channels]) if len(values) >= channels else [values[0]] * channels


def _center_crop(img: Image.Image, height: int, width: int) -> Image.Image:
    """transformers' center_crop: top = (H - h) // 2; pads with zeros when smaller."""
    from PIL import Image

    w, h = img.size
    if w >= width and h >= height:
        top, left = (h - height) // 2, (w - width) // 2
        return img.crop((left, top, left + width, top + height))
    canvas = Image.new(img.mode, (max(w, width), max(h, height)))
    canvas.paste(img, ((max(w, width) - w) // 2, (max(h, height) - h) // 2))
    return _center_crop(canvas, height, width)
