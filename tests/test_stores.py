"""The store interface in process: removal plans on real caches made by ``embctl pull``.

A plan must know the bytes it frees before it deletes anything, and they must be what
deleting frees: a blob shared by hard links counts once, and only when its last link goes; a
symlink frees nothing and is never followed, so nothing outside a store is ever deleted.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest
from embctl_matrix.matrix_store import MatrixStore
from support.homes import own_blobs
from support.hub import MINILM, make_repo
from support.inprocess import environment

from embctl.errors import EmbctlError
from embctl.registry import resolve
from embctl.stores import open_stores, store_classes
from embctl.stores.models import ModelStore
from embctl.stores.plan import Removal, RemovalPlan
from embctl.stores.rm import plan_rm
from embctl.stores.vectors import VectorCacheStore
from embctl.vectors import files as vector_files
from embctl.vectors import store as vector_store

ROOT = Path(__file__).resolve().parent.parent


def stores_of(run) -> list:
    """The three stores of a test home (explicit roots: this process's env is not the home's)."""
    return [ModelStore(run.cache), VectorCacheStore(run.home / "embctl" / "vectors"),
            MatrixStore(run.home / "embctl" / "matrices")]


def data_files(*roots: Path) -> dict[tuple[int, int], int]:
    """inode -> size of the regular files that hold data (blobs, store files) under roots;
    symlinks are not followed."""
    found = {}
    for root in roots:
        for folder, _dirs, names in os.walk(root):
            if root.name == "hub" and Path(folder).name != "blobs":
                continue  # records and refs are bookkeeping, not what rm reports
            for name in names:
                st = os.lstat(os.path.join(folder, name))
                if not os.path.islink(os.path.join(folder, name)):
                    found[(st.st_dev, st.st_ino)] = st.st_size
    return found


def freed_by(plan: RemovalPlan, *roots: Path) -> int:
    """Execute ``plan``; return the bytes of the data files that are gone afterwards."""
    before = data_files(*roots)
    plan.execute()
    after = data_files(*roots)
    return sum(size for inode, size in before.items() if inode not in after)


def add_vector_cache(root: Path, repo_id: str, commit: str, n: int = 50) -> Path:
    ns = {"backend": "st", "repo_id": repo_id, "revision": commit, "normalize": True}
    s = vector_store.VectorStore.open(ns, ref=repo_id, root=root)
    s.put_many([(s.key(f"t{i}".encode()), vector_store.blob_from_floats([1.0, i, 2.0]), None)
                for i in range(n)])
    s.close()
    return s.path


def test_the_registry_lists_each_store_once():
    kinds = ["model", "vectors", "matrix", "onnx-export"]
    assert [s.kind for s in store_classes()] == kinds
    assert [s.kind for s in open_stores(Path("/nonexistent"))] == kinds


def test_plan_knows_the_bytes_before_and_counts_shared_blobs_once(pulled, hub):
    own_blobs(pulled.home)  # only the twin below links them: the session's home must not
    cache, vectors = pulled.cache, pulled.home / "embctl" / "vectors"
    twin = cache / "models--someone--minilm-copy"  # every blob a hard link of the original
    shutil.copytree(pulled.repo_dir, twin, symlinks=True, copy_function=os.link)
    cache_file = add_vector_cache(vectors, MINILM, hub.commit_sha(MINILM))
    blobs = sum(p.stat().st_size for p in (pulled.repo_dir / "blobs").iterdir())
    stores = stores_of(pulled)

    # The model and its vectors: the blobs stay (the twin links them), the cache file goes.
    plan = plan_rm(stores, cache, [resolve("all-MiniLM-L6-v2")], scope="all")
    assert [i.kind for i in plan.items] == ["model", "vectors"]
    assert plan.items[0].freed_bytes == 0
    known = plan.bytes_freed
    assert known == vector_files.file_size(cache_file) > 0
    assert pulled.repo_dir.exists() and cache_file.exists()  # planning deleted nothing
    assert freed_by(plan, cache, vectors) == known
    assert not pulled.repo_dir.exists() and not cache_file.exists()

    # Put it back; now both repos go: their shared bytes are freed, and counted, once.
    shutil.copytree(twin, pulled.repo_dir, symlinks=True, copy_function=os.link)
    models = [resolve("all-MiniLM-L6-v2"), resolve("someone/minilm-copy")]
    plan = plan_rm(stores, cache, models)
    assert sum(i.freed_bytes for i in plan.items) == 0  # alone, neither frees a byte
    assert plan.bytes_freed == blobs
    assert plan.to_json(dry_run=True)["freed_bytes"] == blobs
    assert freed_by(plan, cache, vectors) == blobs
    assert not twin.exists() and not pulled.repo_dir.exists()


def test_prune_and_repo_removal_together_count_a_blob_once(pulled):
    own_blobs(pulled.home)  # a blob still linked from the shared home frees nothing
    orphan = pulled.repo_dir / "blobs" / ("ef" * 20)
    orphan.write_bytes(b"z" * 2000)
    os.utime(orphan, (1, 1))
    blobs = sum(p.stat().st_size for p in (pulled.repo_dir / "blobs").iterdir())
    plan = plan_rm(stores_of(pulled), pulled.cache, [resolve("all-MiniLM-L6-v2")], prune=True)
    assert [i.kind for i in plan.items] == ["model", "blob"]
    assert plan.bytes_freed == blobs  # the orphan is in both removals
    assert freed_by(plan, pulled.cache) == blobs


def test_nothing_outside_a_store_is_deleted(pulled, tmp_path):
    own_blobs(pulled.home)  # a blob still linked from the shared home frees nothing
    outside = tmp_path / "precious"
    outside.mkdir()
    keep = outside / "keep.txt"
    keep.write_bytes(b"k" * 5000)
    outside_cache = add_vector_cache(outside, "org/elsewhere", "b" * 40)
    snap = next((pulled.repo_dir / "snapshots").iterdir())
    (snap / "escape").symlink_to(outside, target_is_directory=True)
    (pulled.repo_dir / "blobs" / "evil").symlink_to(keep)
    locks = pulled.cache / ".locks" / pulled.repo_dir.name
    shutil.rmtree(locks, ignore_errors=True)
    locks.parent.mkdir(exist_ok=True)
    locks.symlink_to(outside, target_is_directory=True)  # removed with the repo: unlinked
    vectors = pulled.home / "embctl" / "vectors"
    vectors.mkdir(parents=True, exist_ok=True)
    planted = vectors / outside_cache.name
    planted.symlink_to(outside_cache)
    (pulled.cache / "models--evil--link").symlink_to(outside, target_is_directory=True)
    blobs = sum(p.stat().st_size for p in (pulled.repo_dir / "blobs").iterdir()
                if not p.is_symlink())

    stores = stores_of(pulled)
    plan = plan_rm(stores, pulled.cache, [resolve("all-MiniLM-L6-v2")])
    plan += plan_rm(stores, pulled.cache, [], namespaces=[planted.stem])
    assert plan.bytes_freed == blobs  # the planted links free nothing
    before = {p.name for p in outside.iterdir()}
    assert freed_by(plan, pulled.cache, vectors) == blobs
    assert before <= {p.name for p in outside.iterdir()}
    assert keep.read_bytes() == b"k" * 5000 and outside_cache.stat().st_size > 0
    assert not planted.is_symlink() and not locks.is_symlink()
    assert (pulled.cache / "models--evil--link").is_symlink()  # not a repo: not touched


def test_a_plan_with_a_path_outside_its_store_deletes_nothing(pulled, tmp_path):
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"v" * 100)
    plan = plan_rm(stores_of(pulled), pulled.cache, [resolve("all-MiniLM-L6-v2")])
    plan += RemovalPlan((Removal("blob", str(pulled.cache), files=(str(victim),)),))
    with pytest.raises(EmbctlError, match="outside the cache"):
        plan.execute()
    assert victim.exists() and pulled.repo_dir.exists()


def test_a_foreign_model_is_recognised_by_its_backend(embctl, hub, hub_root):
    """huggingface_hub's own snapshot_download puts models in the cache, with no pull record:
    the st and image backends recognise theirs from the files (``Backend.recognize``)."""
    make_repo(hub_root, "other/st-model", {"modules.json": "[]", "config.json": '{"dim": 32}',
                                           "model.safetensors": b"\0" * 1024})
    make_repo(hub_root, "other/vision-model", {"preprocessor_config.json": "{}",
                                               "config.json": '{"hidden_sizes": [8, 16]}',
                                               "model.safetensors": b"\0" * 1024})
    make_repo(hub_root, "other/mystery", {"config.json": "{}", "weights.bin": b"\0" * 64})
    # Both backends claim a sentence-transformers CLIP: the default backend comes first.
    make_repo(hub_root, "other/st-clip", {"modules.json": "[]", "preprocessor_config.json": "{}",
                                          "config.json": "{}"})
    with environment(embctl.env):  # huggingface_hub alone, in the home's environment
        import huggingface_hub as h

        for r in ("other/st-model", "other/vision-model", "other/mystery", "other/st-clip"):
            h.snapshot_download(r)
    proc = embctl("ls", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["repo_id"]: (r["backend"], r["dim"]) for r in json.loads(proc.stdout)}
    assert rows == {"other/st-model": ("st", 32), "other/vision-model": ("image", 16),
                    "other/mystery": (None, None), "other/st-clip": ("st", None)}


# -- import cycles ----------------------------------------------------------------------------

MINE = ("embctl.inventory", "embctl.listing", "embctl.stores", "embctl.models",
        "embctl.vectors", "embctl_matrix.matrices", "embctl.cli.rm", "embctl.cli.verify",
        "embctl.cli.du", "embctl.cli.ls")


def import_graph() -> dict[str, set[str]]:
    """Module -> embctl modules it imports, at any level (function-level imports too)."""
    files = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
             for p in (ROOT / "embctl").rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                         for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def test_no_import_cycle_through_the_stores_and_their_scanners():
    graph = import_graph()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    mine = [m for m in graph if m.startswith(MINE)]
    assert "embctl.stores.base" in mine and "embctl.models.scan" in mine
    cycles = [m for m in mine if reaches(m, m)]
    assert cycles == []
