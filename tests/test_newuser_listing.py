"""Issue #25, items 3-5: listings a new user can read.

- ``ls`` rows that looked the same (vector caches of one model differing by prefix or a
  setting) say what tells them apart (NOTES), and a model has one name in ``ls``, ``rm`` and
  ``verify``, however each of its files was typed; ``verify``'s counts are ``ls``'s.
- Results on stdout: ``rm --dry-run``'s plan and the empty listings; progress and what a real
  ``rm`` freed on stderr.
- ``hf cache``'s spellings: ``--sort size:asc``, ``--filter type=model``.

Real all-MiniLM-L6-v2 (st and ONNX) against the test hub; the CLI in-process.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from support.runner import Embctl, heavy_imports, one_line_error

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def embed(run, *args: str, ref: str = "all-MiniLM-L6-v2") -> None:
    proc = run("embed", ref, "--lines", *args, input="hello\nworld\n")
    assert proc.returncode == 0, proc.stderr


def table(run, *args: str) -> list[str]:
    proc = run("ls", *args)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout.splitlines()


def listing(run, *args: str) -> list[dict]:
    proc = run("ls", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def complete(run, words: str) -> list[str]:
    proc = run(env={"COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1),
                    "_EMBCTL_COMPLETE": "bash_complete"})
    assert proc.returncode == 0, proc.stderr
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines()]


# -- item 3: rows that looked the same ---------------------------------------------------------


def test_caches_of_one_model_say_what_tells_them_apart(pulled):
    embed(pulled)
    embed(pulled, "--prefix", "query: ")
    embed(pulled, "--normalize")
    embed(pulled, "--truncate-dim", "128")
    caches = {r["namespace"]: r for r in listing(pulled, "--filter", "kind=vectors")}
    assert len(caches) == 4 and {r["ref"] for r in caches.values()} == {"all-MiniLM-L6-v2"}

    rows = [line for line in table(pulled) if " vectors " in line]
    assert len(rows) == 4 and len(set(rows)) == 4  # no two rows alike
    notes = {}
    for line in rows:
        short = re.search(r"ns=([0-9a-f]{8})", line).group(1)
        [ns] = [ns for ns in caches if ns.startswith(short)]
        notes[ns] = line.split(f"ns={short}")[1]

    def find(**params):  # the cache whose --json params (the fields themselves) are these
        [ns] = [ns for ns, r in caches.items()
                if all(r["params"].get(k) == v for k, v in params.items())]
        return ns

    unset = {"prefix": "", "normalize": False, "truncate_dim": None}
    prefixed = find(**{**unset, "prefix": "query: "})
    assert notes[prefixed] == ", prefix='query: '"
    assert notes[find(**{**unset, "normalize": True})] == ", normalize"
    assert notes[find(**{**unset, "truncate_dim": 128})] == ", truncate_dim=128"
    assert notes[find(**unset)] == ""  # the cache with nothing set: its id alone
    assert caches[find(truncate_dim=128)]["dim"] == 128

    # The id ls shows is what rm --namespace takes: exactly that cache goes.
    proc = pulled("rm", "--namespace", prefixed[:8], "-y")
    assert proc.returncode == 0, proc.stderr
    assert "prefix='query: '" in proc.stderr
    left = {r["namespace"] for r in listing(pulled, "--filter", "kind=vectors")}
    assert set(caches) - left == {prefixed} and len(left) == 3


def test_a_model_has_one_name_in_ls_rm_and_verify_however_it_was_typed(tmp_path,
                                                                       onnx_hub_server):
    # The issue's case: the model pulled as one form, its vectors embedded as another (the
    # hub with the real ONNX files: the onnx backend pulls them).
    run = Embctl.at(tmp_path, onnx_hub_server.url)
    name = "onnx:all-MiniLM-L6-v2"  # the alias, run by onnx: the shortest name that resolves
    assert run("pull", f"onnx:{MINILM}", "-q").returncode == 0
    embed(run, ref=f"onnx:{MINILM}")
    embed(run, "--prefix", "query: ", ref=name)
    rows = listing(run, "--filter", "backend=onnx")  # (st claims the files too: its own row)
    assert sorted(r["kind"] for r in rows) == ["model", "vectors", "vectors"]
    assert {r["ref"] for r in rows} == {name}
    assert {line.split()[0] for line in table(run, "-f", "backend=onnx")[1:]} == {name}

    assert name in complete(run, "embctl rm onnx:a")  # what ls prints, rm completes
    check = run("verify", name)
    assert check.returncode == 0, check.stderr
    assert re.fullmatch(r"verified 1 model \(\d+ files\), 2 vector caches: all ok\n",
                        check.stderr), check.stderr
    dry = run("rm", name, "--all", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    planned = [line for line in dry.stdout.splitlines() if line.startswith("would remove")]
    assert len(planned) == 3 and all(f" {name} " in line for line in planned), dry.stdout
    gone = run("rm", name, "--vectors", "-y")
    assert gone.returncode == 0, gone.stderr
    assert [r["kind"] for r in listing(run, "--filter", "backend=onnx")] == ["model"]


def test_the_default_backends_model_is_named_by_its_alias_in_every_row(pulled):
    embed(pulled, ref=f"st:{MINILM}")
    assert {r["ref"] for r in listing(pulled)} == {"all-MiniLM-L6-v2"}


def test_verify_counts_the_models_and_files_ls_shows(pulled):
    embed(pulled)
    embed(pulled, "--prefix", "query: ")
    [model] = listing(pulled, "-f", "kind=model")
    on_disk = [p for p in (Path(model["path"]) / "snapshots").rglob("*") if not p.is_dir()]
    assert model["files"] == len(on_disk) > 5
    [row] = [line for line in table(pulled) if " model " in line]
    assert f" {len(on_disk)} files " in row
    proc = pulled("verify")
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr == f"verified 1 model ({len(on_disk)} files), 2 vector caches: all ok\n"
    checked = json.loads(pulled("verify", "--json").stdout)["checked"]
    assert (checked["models"], checked["files"], checked["vector_caches"]) == (1, len(on_disk), 2)


# -- item 4: results on stdout ----------------------------------------------------------------


def test_a_dry_run_plan_and_empty_results_are_on_stdout(pulled):
    embed(pulled)
    dry = pulled("rm", "all-MiniLM-L6-v2", "--all", "--dry-run")
    assert dry.returncode == 0 and dry.stderr == "", dry.stderr
    lines = dry.stdout.splitlines()
    assert [line.split()[2] for line in lines[:-1]] == ["model", "vectors"]
    assert lines[-1].startswith("would free ")
    nothing = pulled("rm", "--filter", "used>30d", "--dry-run")
    assert (nothing.stdout, nothing.stderr) == ("nothing to remove\n", "")
    assert table(pulled, "no-such-model") == ["no matching entries"]
    as_json = pulled("rm", "all-MiniLM-L6-v2", "--dry-run", "--json")
    assert json.loads(as_json.stdout)["dry_run"] is True and as_json.stderr == ""

    done = pulled("rm", "all-MiniLM-L6-v2", "--vectors", "-y")  # progress and summary
    assert done.returncode == 0 and done.stdout == ""
    assert "removing vectors all-MiniLM-L6-v2 [ns=" in done.stderr and "freed " in done.stderr
    assert table(pulled, "--filter", "kind=vectors") == ["no matching entries"]
    pulled("rm", "all-MiniLM-L6-v2", "-y", check=True)
    assert table(pulled) == ["nothing cached"]


# -- item 5: hf cache's spellings ----------------------------------------------------------------


def test_hf_cache_spellings_of_sort_and_filter(pulled):
    embed(pulled)  # a vector cache, smaller than the model

    def order(*args):
        return [r["kind"] for r in listing(pulled, *args)]

    assert order("--sort", "size") == order("--sort", "size:desc") == ["model", "vectors"]
    assert order("--sort", "size:asc") == ["vectors", "model"]
    assert order("--sort", "name:desc") == list(reversed(order("--sort", "name")))
    rows = listing(pulled)
    assert len({r["last_used"] for r in rows}) == 2
    recent = [r["kind"] for r in sorted(rows, key=lambda r: -r["last_used"])]
    assert order("--sort", "accessed") == order("--sort", "used") == recent
    assert order("--sort", "used:asc") == order("--sort", "ACCESSED:ASC") == recent[::-1]
    assert listing(pulled, "-f", "type=model") == listing(pulled, "--filter", "kind=model")
    assert order("--filter", "type!=model") == ["vectors"]
    for bad in (("--filter", "type=dataset"), ("--filter", "type=modle"),
                ("--sort", "size:up")):
        proc = pulled("ls", *bad)
        assert proc.returncode == 2 and one_line_error(proc), (bad, proc.stderr)
    proc = pulled("rm", "all-MiniLM-L6-v2", "--vectors", "--no-dry-run", "-y")  # hf's flag
    assert proc.returncode == 0 and order() == ["model"]


@pytest.mark.e2e  # what a fresh interpreter imports, naming and noting vector caches
def test_ls_and_rm_with_vector_caches_import_no_heavy_library(pulled):
    embed(pulled, "--prefix", "query: ")
    for args in (["ls"], ["rm", "all-MiniLM-L6-v2", "--all", "--dry-run"]):
        heavy, stderr = heavy_imports(pulled.env, *args)
        assert heavy == [], (args, stderr)


def test_a_second_revision_is_named_in_ls_and_counted_by_verify(pulled):
    # A revision no ref points to, as an older pull (or another tool) leaves one: the same
    # files, linked to the same blobs.
    [head] = (pulled.repo_dir / "snapshots").iterdir()
    shutil.copytree(head, head.with_name("0" * 40), symlinks=True)
    [model] = listing(pulled)
    assert model["revision"] == head.name and model["revisions"] == 2
    [row] = table(pulled)[1:]
    assert row.endswith(" 2 revisions") and f" {model['files']} files " in row
    proc = pulled("verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == (f"verified 1 model (2 revisions, {2 * model['files']} files): "
                           "all ok\n")


def test_ls_sizes_a_vector_cache_as_rm_then_frees_it(pulled):
    """ls reads each cache's meta table, which leaves the WAL database's -shm (and -wal)
    beside it: the size ls shows is taken after that read, so it is what rm frees."""
    embed(pulled)
    first = [r for r in listing(pulled) if r["kind"] == "vectors"]
    second = [r for r in listing(pulled) if r["kind"] == "vectors"]
    assert len(first) == 1 and first[0]["size_bytes"] == second[0]["size_bytes"]
    proc = pulled("rm", "all-MiniLM-L6-v2", "--vectors", "-y", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["freed_bytes"] == second[0]["size_bytes"]
