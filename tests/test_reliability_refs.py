"""Issue #10, references and listings: typos get a suggestion, an uncached model offline says
how to pull it, embed/export complete references, unknown ls filter values are usage errors,
and dataset/space repos in the shared cache are not models (du, ls, rm --prune).

Everything runs the CLI (in-process; ``python -m embctl`` for the heavy-import check) against a
real cache, the local test hub, or a port nobody listens on."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest
from support.hub import MINILM, make_repo
from support.runner import heavy_imports, one_line_error

LINE = '{"id": 1, "text": "The refund policy allows returns within 30 days"}\n'


def closed_port_url() -> str:
    """An endpoint on 127.0.0.1 where nothing listens: connections are refused for real."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------------------------------
# A typo gets a suggestion
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["rm", "-y"], ["verify"], ["export", "--to", "OUT"]])
def test_typo_of_a_cached_model_suggests_it(pulled, tmp_path, args):
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in args]
    proc = pulled(argv[0], "all-MiniLM-L6v2", *argv[1:])
    assert proc.returncode == 1
    assert one_line_error(proc).endswith("did you mean all-MiniLM-L6-v2?")
    # the repo id is suggested for a repo id, with the revision kept
    proc = pulled(argv[0], f"{MINILM.replace('L6-', 'L6')}@main", *argv[1:])
    assert proc.returncode == 1
    assert one_line_error(proc).endswith(f"did you mean {MINILM}@main?")
    assert (pulled.repo_dir / "snapshots").is_dir()  # rm removed nothing
    assert not (tmp_path / "out").exists()


def test_cache_commands_suggest_only_what_is_cached(pulled):
    # all-mpnet-base-v2 is an alias but not cached: rm must not send the user there
    proc = pulled("rm", "all-mpnet-base-v3", "-y")
    assert proc.returncode == 1 and "did you mean" not in one_line_error(proc)
    proc = pulled("verify", "nobody/nothing")
    assert proc.returncode == 1
    assert one_line_error(proc).endswith(f"nobody/nothing: not in the cache {pulled.cache}")


def test_pull_of_a_typo_suggests_from_aliases_and_the_cache(embctl, hub, hub_root):
    proc = embctl("pull", "all-MiniLM-L6v2")  # the hub answers 404; the cache is empty
    assert proc.returncode == 1
    line = one_line_error(proc)  # pull names repos by id: the alias's repo is suggested
    assert "not found on the Hub" in line and line.endswith(f"did you mean {MINILM}?")
    # a cached model that is no alias is suggested too
    make_repo(hub_root, "acme/tool-model", {"config.json": '{"hidden_size": 8}',
                                            "modules.json": "[]"})
    embctl("pull", "acme/tool-model", "-q", check=True)
    proc = embctl("pull", "acme/tool-modle")
    assert proc.returncode == 1
    assert one_line_error(proc).endswith("did you mean acme/tool-model?")
    # nothing alike: no suggestion
    proc = embctl("pull", "acme/zzz")
    assert proc.returncode == 1 and "did you mean" not in one_line_error(proc)


def test_embed_of_a_typo_suggests_online_and_offline(pulled):
    proc = pulled("embed", "all-MiniLM-L6v2", input=LINE)  # online: the hub's 404
    assert proc.returncode == 1 and proc.stdout == ""
    assert one_line_error(proc).endswith("did you mean all-MiniLM-L6-v2?")
    proc = pulled("embed", "all-MiniLM-L6v2", input=LINE, env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1 and proc.stdout == ""
    line = one_line_error(proc)
    assert "not cached" in line and "did you mean all-MiniLM-L6-v2?" in line
    # aliases take no backend prefix: a prefixed typo gets the repo id, prefix kept
    proc = pulled("embed", "st:all-MiniLM-L6v2", input=LINE, env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1
    assert f"did you mean st:{MINILM}?" in one_line_error(proc)


# ---------------------------------------------------------------------------------------------
# embed of an uncached model, offline or with a dead endpoint
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["some-uncached-model", "image:acme/uncached-vit",
                                 "matrix:acme/uncached-llm"])
@pytest.mark.parametrize("how", ["offline", "dead endpoint"])
def test_embed_of_an_uncached_model_says_how_to_pull_it(embctl, ref, how):
    env = ({"HF_HUB_OFFLINE": "1"} if how == "offline"
           else {"HF_ENDPOINT": closed_port_url(), "HF_HUB_ETAG_TIMEOUT": "2"})
    began = time.monotonic()
    proc = embctl("embed", ref, input=LINE, env=env, timeout=120)
    assert time.monotonic() - began < 60
    assert proc.returncode == 1 and proc.stdout == ""
    line = one_line_error(proc)
    assert line.startswith(f"embctl: error: {ref}: not cached, and ")
    assert line.endswith(f"; pull it first: embctl pull {ref}")
    assert ("HF_HUB_OFFLINE=1" if how == "offline" else "cannot be reached") in line
    assert not list(embctl.cache.glob("models--*/snapshots/*/*"))  # nothing half-pulled


def test_pull_still_reports_the_connection_failure_itself(embctl):
    proc = embctl("pull", "acme/anything", env={"HF_ENDPOINT": closed_port_url()})
    assert proc.returncode == 1 and "connection failed" in one_line_error(proc)


# ---------------------------------------------------------------------------------------------
# embed and export complete references
# ---------------------------------------------------------------------------------------------


def complete(run, words: str) -> list[str]:
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    proc = run(env={"COMP_WORDS": words, "COMP_CWORD": str(cword),
                    "_EMBCTL_COMPLETE": "bash_complete"})
    assert proc.returncode == 0, proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines()]


def test_embed_and_export_complete_references(pulled):
    embed = complete(pulled, "embctl embed al")  # embed pulls: aliases too
    assert "all-MiniLM-L6-v2" in embed and "all-mpnet-base-v2" in embed
    assert complete(pulled, "embctl embed sentence-") == [MINILM]
    assert complete(pulled, "embctl export al") == ["all-MiniLM-L6-v2"]  # only what is cached
    assert complete(pulled, "embctl export --to /tmp/x sen") == [MINILM]
    # options still complete as options
    assert "--to" in complete(pulled, "embctl export all-MiniLM-L6-v2 --t")


# ---------------------------------------------------------------------------------------------
# ls --filter: unknown keys, values and malformed quantities are usage errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "names"), [
    ("kind=modle", "kind is one of model, vectors, matrix"),
    ("kind!=Model", "kind is one of model, vectors, matrix"),
    ("status=okk", "status is one of ok, partial, incomplete, broken, empty"),
    ("backend=stt", "backend is one of"),
    ("colour=red", "keys are size, used, dim"),
    ("kind>model", "keys are size, used, dim"),
    ("size>1.2.3GB", "bad size '1.2.3GB'"),
    ("size>-5MB", "bad size '-5MB'"),
    ("size>5XB", "bad size '5XB'"),
    ("used>7xd", "bad duration '7xd'"),
    ("used>nand", "bad duration 'nand'"),
    ("used>1e999d", "bad duration '1e999d'"),
    ("dim=abc", "dim takes a number"),
])
def test_ls_bad_filter_is_a_usage_error(pulled, expr, names):
    proc = pulled("ls", "--filter", expr)
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_line_error(proc)
    assert repr(expr) in line and names in line


def test_ls_backend_values_come_from_the_plugins(pulled):
    proc = pulled("ls", "--filter", "backend=nope")
    line = one_line_error(proc)
    assert proc.returncode == 2
    for name in ("st", "matrix", "openai", "image", "-"):
        assert f" {name}," in line or line.endswith(f" {name}")

    def refs(*exprs):
        args = [a for e in exprs for a in ("--filter", e)]
        proc = pulled("ls", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return [r["ref"] for r in json.loads(proc.stdout)]

    assert refs("backend=st") == ["all-MiniLM-L6-v2"]
    assert refs("backend=image") == []  # valid, and nothing has it
    assert refs("kind=mod*", "status=ok") == ["all-MiniLM-L6-v2"]  # globs over valid values
    assert refs("backend=-") == []


@pytest.mark.e2e  # what a fresh interpreter imports
def test_ls_backend_filter_imports_no_heavy_library(pulled):
    for args in (["ls", "--filter", "backend=st"], ["ls", "--filter", "backend=nope"]):
        heavy, stderr = heavy_imports(pulled.env, *args)
        assert heavy == [], (args, stderr)
        assert "plugins" not in stderr  # no plugin failed to load either


# ---------------------------------------------------------------------------------------------
# Dataset and Space repos in the same cache are not models
# ---------------------------------------------------------------------------------------------


def add_hub_repo(cache: Path, folder: str, files: dict[str, bytes]) -> dict[str, Path]:
    """A repo laid out as huggingface_hub lays it out: blobs named by sha256, snapshot links
    relative into blobs/, refs/main.  Returns the blobs by file path."""
    repo = cache / folder
    commit = hashlib.sha1(folder.encode()).hexdigest()
    blobs = {}
    for path, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        blobs[path] = blob
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return blobs


def test_dataset_and_space_repos_are_not_models(pulled):
    cache = pulled.cache
    data = {"data/train.csv": b"text,label\n" + b"a refund,1\n" * 5000, "README.md": b"# d\n"}
    add_hub_repo(cache, "datasets--acme--reviews", data)
    add_hub_repo(cache, "spaces--acme--demo", {"app.py": b"print('hi')\n" * 300})
    dataset = cache / "datasets--acme--reviews"
    # what other tools leave behind in a dataset repo: an interrupted download, an orphan blob
    old = time.time() - 3 * 86400
    stale = dataset / "blobs" / ("cd" * 32 + ".incomplete")
    stale.write_bytes(b"y" * 7000)
    orphan = dataset / "blobs" / ("ef" * 32)
    orphan.write_bytes(b"z" * 3000)
    for path in (stale, orphan):
        os.utime(path, (old, old))

    # the layout is the real one: huggingface_hub sees a dataset and a space, no warnings
    import huggingface_hub as h

    r = h.scan_cache_dir(cache)
    repos = [list(x) for x in sorted((x.repo_type, x.repo_id) for x in r.repos)]
    warnings = [str(w) for w in r.warnings]
    assert warnings == [] and ["dataset", "acme/reviews"] in repos
    assert ["space", "acme/demo"] in repos

    model_bytes = sum(p.stat().st_size for p in (pulled.repo_dir / "blobs").iterdir())
    other_bytes = sum(p.stat().st_size for p in cache.glob("*--acme--*/blobs/*"))
    usage = json.loads(pulled("du", "--json").stdout)
    assert usage["models"] == model_bytes and usage["incomplete"] == 0
    assert usage["other"] == other_bytes
    assert all(isinstance(v, int) for v in usage.values())
    assert usage["total"] == sum(v for k, v in usage.items() if k != "total")
    human = pulled("du").stdout
    assert "other Hub repos (datasets, spaces)" in human

    rows = json.loads(pulled("ls", "--json").stdout)
    assert [r["repo_id"] for r in rows] == [MINILM]
    assert pulled("ls", "acme").stdout == "no matching entries\n"  # a result: stdout

    pruned = pulled("rm", "--prune", "-y", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["removed"] == []
    assert stale.exists() and orphan.exists()
    assert all(p.exists() for p in cache.glob("*--acme--*/snapshots/*/**/*"))
    assert pulled("verify").returncode == 0
    assert "acme" not in "".join(complete(pulled, "embctl rm a"))
