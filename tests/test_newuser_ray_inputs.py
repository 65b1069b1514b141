"""`embed --engine ray`: what is wrong with ``-i`` is one line before Ray starts, and a worker
that cannot import embctl names the real cause (issue #25, item 6).

The input checks run in-process: a tripwire in place of `embctl.scale.cluster.connect`
fails any run that would start (or join) Ray, so a check that came too late fails the test
at once instead of starting a cluster.  The workers' import error needs real Ray workers:
one e2e run, on three lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support.runner import embctl_argv, one_line_error

MODEL = "all-MiniLM-L6-v2"


class RayStarted(Exception):
    pass


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the run, in place of Ray's start; records that it was reached."""
    from embctl.scale import cluster

    calls = []

    def tripwire(*args, **kwargs):
        calls.append(args)
        raise RayStarted("the run went on to start Ray")

    monkeypatch.setattr(cluster, "connect", tripwire)
    ray_before = "ray" in sys.modules
    yield calls
    if not ray_before:  # other tests in this worker may have imported it; else, not us
        assert "ray" not in sys.modules


def ray_embed(pulled, src: Path | str, out: Path):
    return pulled("embed", MODEL, "--engine", "ray", "-i", str(src), "-o", str(out))


def test_a_folder_without_jsonl_files_is_one_line_before_ray(pulled, tmp_path, no_ray):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("hello\n")
    (folder / "b.csv").write_text("text\nhello\n")
    proc = ray_embed(pulled, folder, tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert f"-i {folder}: no .jsonl, .json or .ndjson files" in line, line
    assert "2 other files" in line and "a.txt" in line, line
    assert no_ray == [] and not (tmp_path / "out").exists()


def test_an_empty_folder_is_one_line_before_ray(pulled, tmp_path, no_ray):
    folder = tmp_path / "empty"
    (folder / "sub").mkdir(parents=True)  # folders hold no file either
    proc = ray_embed(pulled, folder, tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert f"-i {folder}: the folder is empty" in one_line_error(proc)
    assert no_ray == []


def test_files_ray_would_skip_are_named_as_skipped(pulled, tmp_path, no_ray):
    """Ray's listing skips names starting with '.' or '_' under the folder: a folder holding
    only those reads nothing, and the line says why."""
    folder = tmp_path / "docs"
    (folder / "_staging").mkdir(parents=True)
    (folder / ".hidden.jsonl").write_text(json.dumps({"text": "a"}) + "\n")
    (folder / "_staging" / "b.jsonl").write_text(json.dumps({"text": "b"}) + "\n")
    proc = ray_embed(pulled, folder, tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert "no .jsonl, .json or .ndjson files" in line and "starting with '.' or '_'" in line
    assert no_ray == []


@pytest.mark.parametrize("given", ["missing.jsonl", "docs/*.jsonl"])
def test_a_missing_path_or_a_glob_matching_nothing_is_one_line_before_ray(
        pulled, tmp_path, no_ray, given):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x\n")
    proc = ray_embed(pulled, tmp_path / given, tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert "no such file or folder" in line or "no file matches" in line, line
    assert no_ray == []


def test_a_folder_with_jsonl_files_below_it_goes_on_to_ray(pulled, tmp_path, no_ray):
    """The check reads as Ray reads (the folder's tree, compressed forms, any case): a good
    folder passes it, and the run reaches Ray's start (the tripwire)."""
    folder = tmp_path / "docs"
    (folder / "2024").mkdir(parents=True)
    (folder / "README.md").write_text("notes\n")
    (folder / "2024" / "Part-1.JSONL").write_text(json.dumps({"text": "a"}) + "\n")
    proc = ray_embed(pulled, folder, tmp_path / "out")
    assert len(no_ray) == 1, proc.stderr  # the checks passed; Ray would start now
    assert "the run went on to start Ray" in proc.stderr


# -- the workers cannot import embctl ---------------------------------------------------------

#: A project of the user's own called embctl, in the folder the command runs from.
SHADOW = "from .settings import config  # the user's own package, not embctl\n"


@pytest.mark.e2e  # real Ray workers, which import embctl in processes of their own
def test_workers_that_cannot_import_embctl_name_the_real_cause(pulled, tmp_path):
    import subprocess

    work = tmp_path / "work"
    (work / "embctl").mkdir(parents=True)
    (work / "embctl" / "__init__.py").write_text(SHADOW)
    src = work / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(3)))
    # -P: the driver's sys.path does not start with the working folder (as with the
    # `embctl` console script); Ray puts the driver's working folder on its workers' path.
    python, *rest = embctl_argv("embed", MODEL, "--engine", "ray", "-i", str(src),
                                "-o", str(work / "out"))
    proc = subprocess.run([python, "-P", *rest], cwd=work, env=pulled.env,
                          capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr
    line = one_line_error(proc)
    assert "No module named 'embctl.settings'" in line, line
    assert f"a folder named embctl in {work}" in line, line
    assert not (work / "out").exists()
