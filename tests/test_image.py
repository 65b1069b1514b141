"""The image backend end to end: `embctl pull/embed image:...` against the local test hub,
with a tiny randomly initialised ResNet and generated images (RGB, 8-bit gray, 16-bit
infrared, corrupt, truncated, empty)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from support.image_fixtures import TINY_DIM, TINY_RESNET, build_resnet_repo, make_images
from support.runner import HEAVY_MODULES, one_line_error

REF = f"image:{TINY_RESNET}"
GOOD = ["rgb.png", "rgb.jpg", "gray8.png", "ir16.png", "ir16_as8.png", "ir16_lowbyte.png",
        "ir16.tiff"]


@pytest.fixture(scope="module")
def resnet_repo(hub_root) -> Path:
    return build_resnet_repo(hub_root)


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    return make_images(tmp_path / "imgs")


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def vectors(stdout: str) -> dict[str, np.ndarray]:
    rows = [json.loads(line) for line in stdout.splitlines()]
    return {r["path"]: np.asarray(r["embedding"], dtype=np.float32) for r in rows}


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def write_list(folder: Path, names: list[str], **extra) -> Path:
    listing = folder / "images.jsonl"
    listing.write_text(jsonl([{"path": n, **extra} for n in names]))
    return listing


def test_pull_fetches_weights_and_configs_only(embctl, resnet_repo):
    proc = embctl("pull", REF, "-q")
    assert proc.returncode == 0, proc.stderr
    snapshots = list((embctl.cache / "models--embctl-test--tiny-resnet" / "snapshots").iterdir())
    (snap,) = snapshots
    got = sorted(p.name for p in snap.iterdir())
    assert got == ["config.json", "model.safetensors", "preprocessor_config.json"]


@pytest.mark.e2e  # an all-cached rerun imports no torch: -X importtime of a fresh process
def test_embed_jsonl_dims_formats_and_16bit(embctl, resnet_repo, images):
    folder = images["rgb.png"].parent
    listing = write_list(folder, GOOD, tag="x")
    proc = embctl("embed", REF, "-i", str(listing))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["path"] for r in rows] == GOOD and all(r["tag"] == "x" for r in rows)
    v = vectors(proc.stdout)
    assert all(vec.shape == (TINY_DIM,) and np.isfinite(vec).all() for vec in v.values())
    # 16-bit frame vs its 8-bit rendering (min/max rule): the same picture
    assert rel(v["ir16.png"], v["ir16_as8.png"]) < 1e-3
    assert rel(v["ir16.png"], v["ir16.tiff"]) < 1e-5  # TIFF decodes like PNG
    # ... while keeping only the low byte is a different picture
    assert rel(v["ir16.png"], v["ir16_lowbyte.png"]) > 100 * max(
        rel(v["ir16.png"], v["ir16_as8.png"]), 1e-4)
    assert "7 computed" in proc.stderr

    # identical images give identical vectors; a copy and a renamed file are cache hits
    shutil.copy(folder / "rgb.png", folder / "copy.png")
    (folder / "ir16.png").rename(folder / "renamed16.png")
    again = embctl.process("embed", REF, "-i", str(write_list(folder, ["copy.png",
                                                                       "renamed16.png",
                                                                       "rgb.png"])),
                           env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert again.returncode == 0, again.stderr
    w = vectors(again.stdout)
    assert np.array_equal(w["copy.png"], v["rgb.png"]) and np.array_equal(w["rgb.png"],
                                                                          v["rgb.png"])
    assert np.array_equal(w["renamed16.png"], v["ir16.png"])
    assert "3 cache hits, 0 computed" in again.stderr
    assert "| torch" not in again.stderr  # all cached: the model was never loaded


def test_fixed_range_is_another_namespace(embctl, resnet_repo, images):
    listing = write_list(images["ir16.png"].parent, ["ir16.png"])
    a = embctl("embed", REF, "-i", str(listing), "-q", check=True)
    b = embctl("embed", REF, "-i", str(listing), "-q", "--image-range", "0:65535", check=True)
    assert rel(vectors(a.stdout)["ir16.png"], vectors(b.stdout)["ir16.png"]) > 1e-3
    assert len(list((embctl.home / "embctl" / "vectors").glob("*.sqlite"))) == 2
    bad = embctl("embed", REF, "-i", str(listing), "--image-range", "9:3")
    assert bad.returncode == 2 and "--image-range" in one_line_error(bad)


def test_embed_directory_recursively(embctl, resnet_repo, images):
    folder = images["rgb.png"].parent
    for name in ("empty.png", "corrupt.png", "truncated.png"):
        (folder / name).unlink()
    (folder / "sub").mkdir()
    shutil.copy(folder / "gray8.png", folder / "sub" / "g.PNG")
    (folder / "notes.txt").write_text("not an image")
    proc = embctl("embed", REF, "-i", str(folder))
    assert proc.returncode == 0, proc.stderr
    paths = [json.loads(line)["path"] for line in proc.stdout.splitlines()]
    assert paths == sorted(GOOD) + ["sub/g.PNG"]
    v = vectors(proc.stdout)
    assert np.array_equal(v["sub/g.PNG"], v["gray8.png"])
    assert "1 duplicate)" in proc.stderr  # the copy was embedded once


@pytest.mark.parametrize("name, message", [
    ("missing.png", "missing.png: no such file"),
    ("empty.png", "empty.png: empty file (0 bytes)"),
    ("corrupt.png", "corrupt.png: not a PNG, JPEG or TIFF image"),
    ("truncated.png", "truncated.png: cannot decode image"),
    ("../outside.png", "../outside.png: outside"),
    ("sub", "sub: is a directory"),
])
def test_bad_input_fails_with_line_and_path(embctl, resnet_repo, images, name, message):
    folder = images["rgb.png"].parent
    (folder / "sub").mkdir()
    (folder.parent / "outside.png").write_bytes(images["rgb.png"].read_bytes())
    listing = write_list(folder, ["rgb.png", "gray8.png", name])
    proc = embctl("embed", REF, "-i", str(listing), "-o", str(folder / "out.jsonl"))
    assert proc.returncode == 1
    error = one_line_error(proc)
    assert "line 3:" in error and message in error, error
    assert not (folder / "out.jsonl").exists()
    for path in (embctl.home / "embctl" / "vectors").glob("*.sqlite"):  # no bad row cached
        conn = sqlite3.connect(path)
        try:
            for (blob,) in conn.execute("SELECT vec FROM vectors"):
                vec = np.frombuffer(blob, dtype="<f4")
                assert vec.shape == (TINY_DIM,) and np.isfinite(vec).all()
        finally:
            conn.close()


def test_skip_counts_bad_images_and_caches_only_good_ones(embctl, resnet_repo, images):
    folder = images["rgb.png"].parent
    names = ["rgb.png", "empty.png", "corrupt.png", "truncated.png", "missing.png", "gray8.png"]
    proc = embctl("embed", REF, "-i", str(write_list(folder, names)), "--on-error", "skip")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x)["path"] for x in proc.stdout.splitlines()] == ["rgb.png", "gray8.png"]
    assert "4 skipped" in proc.stderr
    for line, name in ((2, "empty.png"), (3, "corrupt.png"), (4, "truncated.png"),
                       (5, "missing.png")):
        assert f"line {line}: {name}:" in proc.stderr
    (store,) = (embctl.home / "embctl" / "vectors").glob("*.sqlite")
    conn = sqlite3.connect(store)
    try:
        assert conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 2
    finally:
        conn.close()


def test_absolute_paths_and_stdin(embctl, resnet_repo, images):
    rows = jsonl([{"file": str(images["rgb.png"])}])
    proc = embctl("embed", REF, "--path-field", "file", "-q", input=rows)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["embedding"]) == TINY_DIM
    text_only = embctl("embed", REF, "--lines", input="x\n")
    assert text_only.returncode == 2 and "--lines" in one_line_error(text_only)


def test_offline_without_model_is_a_clear_error(embctl, images):
    listing = write_list(images["rgb.png"].parent, ["rgb.png"])
    proc = embctl("embed", REF, "-i", str(listing), env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1
    assert "HF_HUB_OFFLINE=1" in one_line_error(proc)


def test_verify_flags_bad_vectors_in_image_caches(embctl, resnet_repo, images):
    listing = write_list(images["rgb.png"].parent, ["rgb.png", "gray8.png"])
    embctl("embed", REF, "-i", str(listing), "-q", check=True)
    (store,) = (embctl.home / "embctl" / "vectors").glob("*.sqlite")
    conn = sqlite3.connect(store)
    try:
        key = conn.execute("SELECT key FROM vectors LIMIT 1").fetchone()[0]
        conn.execute("UPDATE vectors SET vec = ? WHERE key = ?",
                     (np.full(TINY_DIM, np.nan, dtype="<f4").tobytes(), key))
        conn.commit()
    finally:
        conn.close()
    script = ("import json; from embctl.vectors.scan import verify_vectors\n"
              "print(json.dumps([c.to_json() for c in verify_vectors()]))")
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", script], env=embctl.env, capture_output=True,
                         text=True, check=True).stdout
    (check,) = json.loads(out)
    assert "nan" in json.dumps(check)


@pytest.mark.e2e  # a heavy-import check: a fresh interpreter
def test_plugin_import_stays_light(embctl):
    script = ("import sys, embctl_image, embctl_image.adapter, embctl_image.inputs\n"
              f"heavy = [m for m in {HEAVY_MODULES + ('numpy',)!r} if m in sys.modules]\n"
              "assert not heavy, heavy\n")
    import subprocess
    import sys
    subprocess.run([sys.executable, "-c", script], env=embctl.env, check=True)
    proc = embctl("embed", "--help")
    assert proc.returncode == 0 and "--path-field" in proc.stdout
