"""Issue #10, export/import: --force never empties a folder that is not an earlier export, no
output is written into or through a cache, one symlink rule for `pull --from` and `export`,
an export imported elsewhere keeps its revision (and the vector cache hits), and a folder
without weights is refused.  embctl runs in-process, on real files and real symlinks."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from support.runner import Embctl, one_line_error

MODEL = "all-MiniLM-L6-v2"
ROWS = "".join(json.dumps({"id": i, "text": t}) + "\n"
               for i, t in enumerate(["return guidelines", "weather forecast", "refunds"]))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(run: Embctl) -> Path:
    commit = (run.repo_dir / "refs" / "main").read_text().strip()
    return run.repo_dir / "snapshots" / commit


def model_folder(pulled: Embctl, dest: Path) -> Path:
    """A plain model folder (regular files, hard links to the blobs where possible)."""
    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(os.path.realpath(src), dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(snapshot(pulled), dest, copy_function=link_or_copy)
    return dest


def nothing_imported(run: Embctl) -> bool:
    return not run.cache.exists() or not any(run.cache.glob("models--*"))


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file()}


# -- case 1: --force and outputs never delete or overwrite what is not theirs --------------------


def test_force_never_empties_a_folder_holding_a_cache(pulled, tmp_path):
    (pulled.home / "notes.txt").write_text("mine\n")
    blob = (snapshot(pulled) / "model.safetensors").resolve()
    before = sha256(blob)
    hf_home = pulled.env["HF_HOME"]
    for to in (f"{hf_home}/..", str(pulled.home), hf_home, pulled.env["EMBCTL_HOME"]):
        proc = pulled("export", MODEL, "--to", to, "--force")
        line = one_line_error(proc)
        assert proc.returncode == 1 and ("holds" in line or "inside" in line), (to, line)
        assert (pulled.home / "notes.txt").read_text() == "mine\n"
        assert blob.is_file() and (snapshot(pulled) / "model.safetensors").is_symlink()
    assert sha256(blob) == before
    # Writing an export into the cache is refused too, with or without --force.
    inside = pulled.cache / "minilm-export"
    proc = pulled("export", MODEL, "--to", str(inside))
    assert proc.returncode == 1 and "inside the model cache" in one_line_error(proc)
    assert not inside.exists()
    assert pulled("verify", MODEL).returncode == 0


def test_force_replaces_only_an_earlier_export(pulled, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text("print('hello')\n")
    (project / "data").mkdir()
    (project / "data" / "rows.jsonl").write_text(ROWS)
    before = tree(project)
    # `--to . --force`, run from the project folder.
    with monkeypatch.context() as m:
        m.chdir(project)
        proc = pulled("export", MODEL, "--to", ".", "--force")
    assert proc.returncode == 1 and ".embctl-export.json" in one_line_error(proc)
    assert tree(project) == before

    out = tmp_path / "out"
    assert pulled("export", MODEL, "--to", str(out), "-q").returncode == 0
    manifest = json.loads((out / ".embctl-export.json").read_text())
    replaced = pulled("export", MODEL, "--to", str(out), "--force", "--json")
    assert replaced.returncode == 0, replaced.stderr
    assert json.loads(replaced.stdout)["revision"] == manifest["revision"]
    assert sorted(os.listdir(tmp_path)) == ["out", "project", "pulled"]  # no .tmp/.old left
    # Something the export did not write turns it into a folder --force must not delete.
    (out / "my-notes.txt").write_text("keep me\n")
    proc = pulled("export", MODEL, "--to", str(out), "--force")
    assert proc.returncode == 1 and "my-notes.txt" in one_line_error(proc)
    assert (out / "my-notes.txt").read_text() == "keep me\n"
    assert (out / "model.safetensors").stat().st_size > 80_000_000


def test_outputs_never_write_into_or_through_a_cache(pulled, tmp_path):
    link = snapshot(pulled) / "model.safetensors"
    blob = link.resolve()
    before = sha256(blob)
    through = tmp_path / "through.jsonl"
    through.symlink_to(blob)
    for target in (link, through, Path(pulled.env["EMBCTL_HOME"]) / "out.npy"):
        proc = pulled("embed", MODEL, "-o", str(target), input=ROWS)
        assert proc.returncode == 1, proc.stderr
        assert "embctl never writes into its caches" in one_line_error(proc)
    assert link.is_symlink() and through.is_symlink() and sha256(blob) == before
    assert not (Path(pulled.env["EMBCTL_HOME"]) / "out.npy").exists()

    ok = pulled("embed", MODEL, "-o", str(tmp_path / "ok.npy"), input=ROWS)
    assert ok.returncode == 0, ok.stderr  # outside the caches: written as before
    (store,) = (Path(pulled.env["EMBCTL_HOME"]) / "vectors").glob("*.sqlite*")
    store_sha = sha256(store)
    for target in (store, link):
        proc = pulled("export", MODEL, "--vectors", "-o", str(target), "--format", "jsonl")
        assert proc.returncode == 1 and "never writes into" in one_line_error(proc)
    assert sha256(store) == store_sha and sha256(blob) == before
    assert pulled("export", MODEL, "--vectors", "-o", str(tmp_path / "v.npy")).returncode == 0

    matrix_out = Path(pulled.env["EMBCTL_HOME"]) / "matrices" / "m.npy"
    proc = pulled("export", "matrix:test-org/tiny-llm", "-o", str(matrix_out))
    assert proc.returncode == 1 and "inside EMBCTL_HOME" in one_line_error(proc)
    assert not matrix_out.exists()
    assert pulled("verify").returncode == 0


# -- case 4: one symlink rule for pull --from and export ---------------------------------------


def test_pull_from_follows_links_inside_and_refuses_links_leaving(pulled, tmp_path):
    src = model_folder(pulled, tmp_path / "model")
    (src / "_shared").mkdir()
    os.replace(src / "1_Pooling", src / "_shared" / "pooling")
    (src / "1_Pooling").symlink_to("_shared/pooling")  # a linked folder, inside DIR
    b = Embctl.at(tmp_path / "b", HF_HUB_OFFLINE="1")
    proc = b("pull", MODEL, "--from", str(src))
    assert proc.returncode == 0, proc.stderr
    assert (snapshot(b) / "1_Pooling" / "config.json").is_file()
    emb = b("embed", MODEL, input=ROWS.splitlines(keepends=True)[0])
    assert emb.returncode == 0, emb.stderr
    assert len(json.loads(emb.stdout)["embedding"]) == 384

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = outside / "vocab.txt"
    os.replace(src / "vocab.txt", secret)
    (src / "vocab.txt").symlink_to(secret)  # a file link leaving DIR
    c = Embctl.at(tmp_path / "c", HF_HUB_OFFLINE="1")
    proc = c("pull", MODEL, "--from", str(src))
    line = one_line_error(proc)
    assert proc.returncode == 1 and "vocab.txt" in line and "--follow-links" in line
    assert nothing_imported(c)
    proc = c("pull", MODEL, "--from", str(src), "--follow-links")
    assert proc.returncode == 0, proc.stderr
    assert sha256(snapshot(c) / "vocab.txt") == sha256(secret)
    # A link that exists nowhere is named too, never dropped.
    (src / "vocab.txt").unlink()
    (src / "vocab.txt").symlink_to(tmp_path / "gone.txt")
    d = Embctl.at(tmp_path / "d", HF_HUB_OFFLINE="1")
    proc = d("pull", MODEL, "--from", str(src), "--follow-links")
    assert proc.returncode == 1 and "broken symlink: vocab.txt" in one_line_error(proc)
    assert nothing_imported(d)


def test_symlink_cycles_are_refused_never_walked(pulled, tmp_path):
    src = model_folder(pulled, tmp_path / "model")
    (src / "loop").symlink_to(".")
    (src / "1_Pooling" / "up").symlink_to("..")
    out = tmp_path / "out"
    proc = pulled("export", str(src), "--to", str(out))
    line = one_line_error(proc)
    assert proc.returncode == 1 and "cycle" in line and "loop -> ." in line
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["model", "pulled"]
    b = Embctl.at(tmp_path / "b", HF_HUB_OFFLINE="1")
    proc = b("pull", MODEL, "--from", str(src), "--follow-links")
    assert proc.returncode == 1 and "1_Pooling/up -> .." in one_line_error(proc)
    assert nothing_imported(b)
    # Without the cycles, the local folder exports (links inside resolved into files).
    (src / "loop").unlink()
    (src / "1_Pooling" / "up").unlink()
    (src / "tokenizer.json").unlink()
    (src / "tokenizer.json").symlink_to("_tok.json")
    shutil.copy(snapshot(pulled) / "tokenizer.json", src / "_tok.json")
    proc = pulled("export", str(src), "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not (out / "tokenizer.json").is_symlink()
    assert sha256(out / "tokenizer.json") == sha256(snapshot(pulled) / "tokenizer.json")


# -- case 8: an export keeps its revision on the other machine -----------------------------------


def test_export_import_keeps_the_revision_and_the_vector_cache(pulled, tmp_path, hub):
    commit = snapshot(pulled).name
    ours = pulled("embed", MODEL, input=ROWS)  # machine A computes and caches
    assert ours.returncode == 0 and "3 computed" in ours.stderr, ours.stderr
    usb = tmp_path / "usb" / "minilm"
    assert pulled("export", MODEL, "--to", str(usb), "-q").returncode == 0

    # Machine B: the export and A's vector cache file, nothing else; no network to import.
    b = Embctl.at(tmp_path / "b", hub.url)
    shutil.copytree(Path(pulled.env["EMBCTL_HOME"]) / "vectors", b.home / "embctl" / "vectors")
    proc = b("pull", MODEL, "--from", str(usb), "--json", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["revision"] == commit
    theirs = b("embed", MODEL, input=ROWS, env={"HF_HUB_OFFLINE": "1"})
    assert theirs.returncode == 0, theirs.stderr
    assert "3 cache hits, 0 computed" in theirs.stderr, theirs.stderr
    assert theirs.stdout == ours.stdout
    # The blobs carry the Hub's names: the comparison with the Hub finds nothing wrong.
    remote = b("verify", MODEL, "--remote")
    assert remote.returncode == 0, remote.stdout + remote.stderr

    # A damaged copy (same size, one byte changed) is refused; nothing is imported.
    damaged = tmp_path / "damaged"
    shutil.copytree(usb, damaged)
    data = bytearray((damaged / "tokenizer.json").read_bytes())
    data[100] ^= 1
    (damaged / "tokenizer.json").write_bytes(bytes(data))
    c = Embctl.at(tmp_path / "c", HF_HUB_OFFLINE="1")
    proc = c("pull", MODEL, "--from", str(damaged))
    line = one_line_error(proc)
    assert proc.returncode == 1 and "tokenizer.json" in line and "sha256" in line
    assert nothing_imported(c)
    # ... and so is one that lost a file the manifest lists.
    (damaged / "tokenizer.json").unlink()
    proc = c("pull", MODEL, "--from", str(damaged))
    assert proc.returncode == 1 and "tokenizer.json" in one_line_error(proc)
    assert nothing_imported(c)

    # A plain folder (the README's offline install) imports as before, under its own revision.
    plain = tmp_path / "plain"
    shutil.copytree(usb, plain, ignore=shutil.ignore_patterns(".embctl-export.json"))
    d = Embctl.at(tmp_path / "d", HF_HUB_OFFLINE="1")
    proc = d("pull", MODEL, "--from", str(plain), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["revision"] != commit
    assert d("verify", MODEL).returncode == 0


# -- case 10: a folder without weights is not a model ---------------------------------------------


def test_import_without_weights_fails_and_imports_nothing(pulled, tmp_path):
    src = model_folder(pulled, tmp_path / "model")
    (src / "model.safetensors").unlink()
    b = Embctl.at(tmp_path / "b", HF_HUB_OFFLINE="1")
    proc = b("pull", MODEL, "--from", str(src))
    assert proc.returncode == 1 and "no weight files" in one_line_error(proc)
    assert nothing_imported(b)
    # Weights the backend does not load (an ONNX export) do not count either.
    (src / "onnx").mkdir()
    os.link((snapshot(pulled) / "model.safetensors").resolve(), src / "onnx" / "model.onnx")
    proc = b("pull", MODEL, "--from", str(src))
    assert proc.returncode == 1 and "onnx/model.onnx" in one_line_error(proc)
    assert nothing_imported(b)
