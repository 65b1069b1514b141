"""A third-party plugin, installed the way pip installs one, through the whole life of a model:
pull, embed (right vectors), cache hits, `ls` (its model and its vector caches, found by the
namespace keys the core writes), `rm` of both.  The plugin is tests/support/plugin_pkg: a real
package whose `load` reads real weights from a model pulled from the test hub."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
from support.hub import make_repo, resolve_gets
from support.runner import Embctl, one_line_error

PKG = Path(__file__).parent / "support" / "plugin_pkg"
REPO = "toyorg/toy-mini"
REF = f"toy:{REPO}"
DIM = 16
TEXTS = ["the refund policy", "return guidelines", "Ünïcödé 🙂", "the refund policy"]


def install(site: Path) -> None:
    """Write the dist-info pip would write for tests/support/plugin_pkg: its metadata and its
    entry points, read from its pyproject.toml (the package itself is on PYTHONPATH)."""
    project = tomllib.loads((PKG / "pyproject.toml").read_text())["project"]
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    points = "".join(f"{name} = {target}\n"
                     for name, target in project["entry-points"]["embctl"].items())
    (dist / "entry_points.txt").write_text(f"[embctl]\n{points}")


def weights() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((256, DIM)).astype("<f4")


def expected(text: str, normalize: bool = False) -> np.ndarray:
    vec = weights()[np.frombuffer(text.encode(), dtype=np.uint8)].mean(axis=0)
    return vec / np.linalg.norm(vec) if normalize else vec


@pytest.fixture(scope="module")
def toy_repo(hub_root: Path) -> Path:
    """The toy model on the test hub, with files a pull must skip."""
    return make_repo(hub_root, REPO, {
        "toy.json": json.dumps({"dim": DIM}),
        "weights.bin": weights().tobytes(),  # 16 KiB: stored in LFS, as real weights are
        "README.md": "# toy-mini\n",
        "onnx/model.onnx": b"\0" * 40_000,
    })


@pytest.fixture
def toy(tmp_path: Path, hub, toy_repo) -> Embctl:
    """embctl in a fresh home, with the toy plugin installed."""
    site = tmp_path / "site"
    install(site)
    path = [str(site), str(PKG), *filter(None, [os.environ.get("PYTHONPATH")])]
    return Embctl.at(tmp_path / "home", hub.url, PYTHONPATH=os.pathsep.join(path))


def embed(run: Embctl, *args: str, env: dict | None = None) -> tuple[list[np.ndarray], str]:
    lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(TEXTS))
    proc = run("embed", REF, *args, input=lines, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in rows] == list(range(len(TEXTS)))
    return [np.asarray(r["embedding"], dtype=np.float32) for r in rows], proc.stderr


def counts(stderr: str) -> tuple[int, int]:
    """(cache hits, computed) from embed's summary line."""
    found = re.search(r"\(([\d,]+) cache hits?, ([\d,]+) computed", stderr)
    assert found, stderr
    return int(found[1].replace(",", "")), int(found[2].replace(",", ""))


def test_plugin_is_listed_with_its_backend_options(toy):
    proc = toy("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    plugin = {p["name"]: p for p in json.loads(proc.stdout)}["toy"]
    assert (plugin["module"], plugin["version"], plugin["error"]) == ("embctl_toy", "0.3.0", None)
    [backend] = plugin["backends"]
    assert backend["name"] == "toy"
    assert backend["options"] == [{"name": "normalize", "type": "bool", "default": False,
                                   "help": "L2-normalize the vectors", "choices": None}]
    assert [a["name"] for a in plugin["aliases"]] == ["toy-mini"]


def test_pull_embed_cache_ls_rm(toy, hub):
    pulled = toy("pull", REF, "--json")
    assert pulled.returncode == 0, pulled.stderr
    [summary] = json.loads(pulled.stdout)
    commit = summary["revision"]
    assert sorted(summary["files"]) == ["toy.json", "weights.bin"]
    assert set(resolve_gets(hub, REPO)) == {"toy.json", "weights.bin"}  # select_files

    vectors, stderr = embed(toy)
    for text, vec in zip(TEXTS, vectors, strict=True):
        np.testing.assert_allclose(vec, expected(text), rtol=1e-6, atol=1e-7)
    assert counts(stderr) == (0, 3)  # the repeated text is computed once

    hub.reset_stats()
    again, stderr = embed(toy, env={"HF_HUB_OFFLINE": "1"})
    assert counts(stderr) == (4, 0)  # every vector from the cache, no model call
    assert all(np.array_equal(a, b) for a, b in zip(again, vectors, strict=True))
    assert not hub.requests

    normalized, stderr = embed(toy, "--normalize")  # another namespace: computed again
    assert counts(stderr) == (0, 3)
    np.testing.assert_allclose(normalized[0], expected(TEXTS[0], True), rtol=1e-6)

    rows = json.loads(toy("ls", "--json").stdout)
    models = [r for r in rows if r["kind"] == "model"]
    caches = [r for r in rows if r["kind"] == "vectors"]
    assert [(r["repo_id"], r["backend"]) for r in models] == [(REPO, "toy")]
    assert len(caches) == 2
    for row in caches:  # the core wrote the identity: the plugin's params hold normalize only
        assert (row["repo_id"], row["backend"], row["revision"]) == (REPO, "toy", commit)
    assert sorted(r["params"]["normalize"] for r in caches) == [False, True]

    removed = toy("rm", REF, "--all", "-y")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(toy("ls", "--json").stdout) == []
    assert not list((toy.home / "embctl" / "vectors").glob("*.sqlite"))
    assert not (toy.cache / "models--toyorg--toy-mini").exists()


def test_load_pulls_through_the_core_and_checks_the_blobs(toy, hub):
    offline = toy("embed", "toy-mini", input='{"text": "x"}\n', env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1
    assert "pull it first" in one_line_error(offline)

    vectors, _ = embed(toy)  # not cached: the core's locate pulls it, only the needed files
    np.testing.assert_allclose(vectors[1], expected(TEXTS[1]), rtol=1e-6, atol=1e-7)
    assert set(resolve_gets(hub, REPO)) == {"toy.json", "weights.bin"}

    blob = (toy.cache / "models--toyorg--toy-mini" / "blobs")
    [weights_blob] = [p for p in blob.iterdir() if p.stat().st_size == DIM * 256 * 4]
    damaged = bytearray(weights_blob.read_bytes())
    damaged[100] ^= 0xFF
    weights_blob.unlink()
    weights_blob.write_bytes(bytes(damaged))
    proc = toy("embed", REF, "--no-cache", input='{"text": "y"}\n')
    assert proc.returncode == 1
    assert "does not match its hash" in one_line_error(proc)
