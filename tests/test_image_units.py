"""Unit tests of the image backend's pieces: file selection, decoding rules, preprocessing
equivalence with transformers' PIL image processors, quality checks."""

from __future__ import annotations

import numpy as np
import pytest
from support.image_fixtures import make_images, render8, thermal

from embctl.errors import UsageError


def test_select_files_weights_and_configs_only():
    from embctl_image.files import select_files

    repo = ["README.md", "config.json", "preprocessor_config.json", "model.safetensors",
            "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "onnx/model.onnx"]
    assert select_files(repo) == ["config.json", "preprocessor_config.json", "model.safetensors"]
    sharded = ["config.json", "preprocessor_config.json", "model.safetensors.index.json",
               "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "pytorch_model.bin"]
    assert select_files(sharded) == sharded[:5]


def test_scaling_rules():
    from embctl_image.decode import Scaling, scale_wide
    from PIL import Image

    frame = thermal()
    img = Image.fromarray(frame)
    assert img.mode.startswith("I;16")
    got = np.asarray(scale_wide(img, Scaling()))
    assert np.array_equal(got, render8(frame))  # the documented min/max rule
    fixed = np.asarray(scale_wide(img, Scaling.parse("0:65535")))
    assert np.array_equal(fixed, np.rint(frame / 257.0).astype(np.uint8))
    assert Scaling.parse(None).rule == "minmax" and Scaling.parse("0:16383").rule == "0:16383"
    for bad in ("5:5", "x", "9:1", "1-2"):
        with pytest.raises(UsageError):
            Scaling.parse(bad)
    flat = Image.fromarray(np.full((4, 4), 4000, dtype=np.uint16))
    assert not np.asarray(scale_wide(flat, Scaling())).any()


def test_decode_modes_and_errors(tmp_path):
    from embctl_image.decode import DecodeError, Scaling, decode

    files = make_images(tmp_path)
    for name in ("rgb.png", "rgb.jpg", "gray8.png", "ir16.png", "ir16.tiff"):
        img = decode(files[name].read_bytes(), Scaling())
        assert img.mode == "RGB" and img.size == (80, 60)
    assert decode(files["ir16.png"].read_bytes(), Scaling(), "L").mode == "L"
    for name, text in (("empty.png", "empty"), ("corrupt.png", "not a PNG"),
                       ("truncated.png", "cannot decode")):
        with pytest.raises(DecodeError, match=text):
            decode(files[name].read_bytes(), Scaling())


@pytest.mark.parametrize("kind", ["convnext64", "convnext224", "vit"])
def test_preprocessing_matches_transformers(tmp_path, kind):
    from embctl_image.decode import Scaling, decode
    from embctl_image.preprocess import Preprocessor
    from PIL import Image
    from transformers import ConvNextImageProcessorPil, ViTImageProcessorPil

    proc = {
        "convnext64": lambda: ConvNextImageProcessorPil(size={"shortest_edge": 64},
                                                        crop_pct=0.875, resample=3),
        "convnext224": lambda: ConvNextImageProcessorPil(
            size={"shortest_edge": 224}, crop_pct=0.875, resample=3,
            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]),
        "vit": ViTImageProcessorPil,
    }[kind]()
    pre = Preprocessor.from_config(proc.to_dict())
    files = make_images(tmp_path)
    for name in ("rgb.png", "gray8.png", "ir16.png"):
        base = decode(files[name].read_bytes(), Scaling())
        for size in ((80, 60), (61, 97), (640, 512)):
            img = base.resize(size, Image.BILINEAR)
            want = proc(img, return_tensors="np")["pixel_values"]
            got = pre.to_tensor([pre.crop_image(img)]).numpy()
            assert got.shape == want.shape
            assert np.abs(got - want).max() < 1e-5


def test_quality_rejects_nan_inf_zero():
    from embctl_image.quality import problems

    vecs = np.array([[1, 0], [np.nan, 1], [np.inf, 0], [0, 0]], dtype=np.float32)
    verdicts = problems(vecs)
    assert verdicts[0] is None
    assert "NaN" in verdicts[1] and "infinite" in verdicts[2] and "zero" in verdicts[3]


def test_embedder_rejects_bad_vectors_and_api_paths(tmp_path):
    from embctl_image.embedder import ImageEmbedder
    from support.image_fixtures import build_resnet_repo

    from embctl.backends import Model
    from embctl.errors import EmbctlError

    repo = build_resnet_repo(tmp_path / "hub")
    files = make_images(tmp_path / "imgs")
    emb = ImageEmbedder(Model("t", "image", "embctl-test/tiny-resnet"), repo, "r", {})
    try:
        v = emb.embed([files["rgb.png"], str(files["rgb.png"]), files["gray8.png"].read_bytes()])
        assert v.shape == (3, emb.dim) and np.array_equal(v[0], v[1])
        with pytest.raises(EmbctlError, match="truncated.png"):
            emb.embed([files["truncated.png"]])
        emb.compute = lambda crops: np.full((len(crops), emb.dim), np.nan, dtype=np.float32)
        with pytest.raises(EmbctlError, match="NaN"):
            emb.embed([files["rgb.png"]])
    finally:
        emb.finish()
