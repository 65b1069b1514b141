"""ONNX exports of a repo that ships no ONNX weights (``embctl_onnx.exported``) and their store.

The repo is ``embctl-test/minilm-noonnx`` on the session hub: the real all-MiniLM-L6-v2 files,
no ONNX.  It is pulled with ``embctl pull st:...``; the export runs through
``support.onnx_export_fixtures`` (the call the onnx backend's pull makes): in this process
(`call_entry`), or as a subprocess (`run_entry`) where the process is the point (killed, two at
once, torch absent: ``e2e``), and the exported graphs are checked with onnxruntime against
sentence-transformers.  ``ls``, ``du``, ``rm`` and ``verify`` run as users run them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from support.inprocess import environment
from support.onnx_export_fixtures import NOONNX, main
from support.runner import Embctl, copy_home, heavy_imports, one_line_error

TESTS = Path(__file__).parent
INSTALL = 'pip install torch==2.13.0 "embctl[onnx-export]"'
TEXTS = ["where is my refund", "The weather today is sunny, with clouds later on.",
         "Payment invoice for order 1234 was never delivered to the customer's account, "
         "and support has not answered the ticket for three weeks.", "a",
         " ".join(["embedding vectors cache"] * 150)]  # past max_seq_length: truncated


def _env(runner: Embctl, **extra: str) -> dict[str, str]:
    paths = [str(TESTS), runner.env.get("PYTHONPATH", "")]
    return {**runner.env, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


def _entry(runner: Embctl, *args: str) -> list[str]:
    return [sys.executable, "-m", "support.onnx_export_fixtures", *args]


def run_entry(runner: Embctl, *args: str, env: dict | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """The entry as a subprocess: for what needs a process of its own (``e2e``)."""
    return subprocess.run(_entry(runner, *args), env=env or _env(runner), cwd=TESTS,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def call_entry(runner: Embctl, *args: str) -> subprocess.CompletedProcess:
    """The entry's `main` in this process, with the runner's environment and streams of its
    own, as `run_entry` runs it."""
    out, err = io.StringIO(), io.StringIO()
    with environment(runner.env), redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def snapshot(runner: Embctl) -> Path:
    snaps = list((runner.cache / f"models--{NOONNX.replace('/', '--')}" / "snapshots").iterdir())
    assert len(snaps) == 1, snaps
    return snaps[0]


def export(runner: Embctl, variant: str, *extra: str) -> subprocess.CompletedProcess:
    snap = snapshot(runner)
    return call_entry(runner, "export", str(snap), NOONNX, snap.name, variant, *extra)


def find(runner: Embctl, variant: str, revision: str | None = None) -> dict | None:
    proc = call_entry(runner, "find", NOONNX, revision or snapshot(runner).name, variant)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def exports_root(runner: Embctl) -> Path:
    return Path(runner.env["EMBCTL_HOME"]) / "onnx-exports" / "v1"


def revision_folder(runner: Embctl) -> Path:
    return exports_root(runner) / f"models--{NOONNX.replace('/', '--')}" / snapshot(runner).name


def tree_digest(folder: Path) -> dict[str, str]:
    """Every path under ``folder``: a link's target, a file's sha256 (links not followed)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture(scope="session")
def exported_home(tmp_path_factory, noonnx_home, hub_server) -> dict:
    """A copy of ``noonnx_home`` where the int8 export (and so the fp32 one) was made once;
    with the Hub repo folder's digest before and after."""
    home = copy_home(noonnx_home, tmp_path_factory.mktemp("exported"))
    runner = Embctl.at(home, hub_server.url)
    repo = snapshot(runner).parents[1]
    before = tree_digest(repo)
    proc = export(runner, "int8")
    assert proc.returncode == 0, proc.stderr
    return {"home": home, "int8": json.loads(proc.stdout), "stderr": proc.stderr,
            "before": before, "after": tree_digest(repo)}


@pytest.fixture
def exported(tmp_path, exported_home, hub) -> Embctl:
    return Embctl.at(copy_home(exported_home["home"], tmp_path / "home"), hub.url)


def _pooled(session, snap: Path, texts: list[str]) -> np.ndarray:
    """Mean pooling and normalization, as all-MiniLM-L6-v2's modules.json says."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(snap / "tokenizer.json"))
    tok.enable_truncation(256)  # sentence_bert_config.json's max_seq_length
    tok.enable_padding()
    enc = tok.encode_batch(texts)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    feeds = {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
             "attention_mask": mask,
             "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}
    (hidden,) = session.run(["last_hidden_state"], feeds)
    vec = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return vec / np.linalg.norm(vec, axis=1, keepdims=True)


def test_the_exports_compute_sentence_transformers_vectors(exported_home, hub_server):
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer

    runner = Embctl.at(exported_home["home"], hub_server.url)
    snap = snapshot(runner)
    fp32, int8 = find(runner, "fp32"), find(runner, "int8")
    assert int8 == exported_home["int8"] and fp32 is not None
    assert (fp32["variant"], int8["variant"]) == ("fp32", "int8")
    home = Path(runner.env["EMBCTL_HOME"])
    for found in (fp32, int8):
        path = Path(found["path"])
        assert path.is_relative_to(exports_root(runner)) and path.is_relative_to(home)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == found["sha256"]
    expected = SentenceTransformer(str(snap), device="cpu").encode(
        TEXTS, normalize_embeddings=True, batch_size=2)
    vectors = {}
    for name, found in (("fp32", fp32), ("int8", int8)):
        session = ort.InferenceSession(found["path"], providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == \
            ["input_ids", "attention_mask", "token_type_ids"]
        assert [o.name for o in session.get_outputs()] == ["last_hidden_state"]
        # Dynamic batch and sequence axes: one text alone, then all of them padded together.
        # (int8 quantizes activations with one scale per batch: its vectors move a little
        # with the batch they are computed in.)
        one = _pooled(session, snap, TEXTS[:1])
        vectors[name] = _pooled(session, snap, TEXTS)
        assert float(one[0] @ vectors[name][0]) > (0.9999 if name == "fp32" else 0.98)
    assert (vectors["fp32"] * expected).sum(1).min() >= 0.9999
    assert (vectors["int8"] * vectors["fp32"]).sum(1).mean() >= 0.98
    assert Path(int8["path"]).stat().st_size < 0.8 * Path(fp32["path"]).stat().st_size


def test_the_hub_snapshot_stays_what_the_hub_has(exported_home, hub_root, hub_server):
    runner = Embctl.at(exported_home["home"], hub_server.url)
    assert exported_home["after"] == exported_home["before"]
    hf = Path(runner.env["HF_HOME"])
    assert not [p for p in hf.rglob("*") if p.name.endswith(".onnx") or "onnx" in p.parts]
    snap = snapshot(runner)
    served = {str(p.relative_to(hub_root / NOONNX)): p.read_bytes()
              for p in (hub_root / NOONNX).rglob("*") if p.is_file()}
    cached = {str(p.relative_to(snap)): p.read_bytes() for p in snap.rglob("*") if p.is_file()}
    # What st pulls of the repo, byte for byte, and nothing else (.gitattributes aside).
    assert set(cached) <= set(served) and "model.safetensors" in cached
    assert all(cached[name] == served[name] for name in cached)
    assert "has no ONNX weights: exporting them with torch" in exported_home["stderr"]


def test_find_export_before_any_export_is_none(noonnx):
    assert find(noonnx, "fp32") is None and find(noonnx, "int8") is None
    assert not exports_root(noonnx).exists()


def without_torch(runner: Embctl, tmp_path: Path) -> dict[str, str]:
    """The entry's environment with a folder first on PYTHONPATH holding a `torch` package
    whose import raises ImportError: what an absent torch looks like to Python (the venv's
    torch stays installed)."""
    blocked = tmp_path / "notorch" / "torch"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ImportError(\"No module named 'torch'\", name='torch')\n")
    base = _env(runner)
    return {**base, "PYTHONPATH": os.pathsep.join([str(blocked.parent), base["PYTHONPATH"]])}


@pytest.mark.e2e  # torch absent: a fresh interpreter
def test_without_torch_one_line_naming_what_to_install(noonnx, tmp_path):
    env = without_torch(noonnx, tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True,
                           text=True)
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr
    before = tree_digest(noonnx.cache)
    snap = snapshot(noonnx)
    for variant in ("fp32", "int8"):
        proc = run_entry(noonnx, "export", str(snap), NOONNX, snap.name, variant, env=env)
        assert proc.returncode == 1, proc.stderr
        line = one_line_error(proc)
        assert NOONNX in line and "needs torch" in line and INSTALL in line, line
        assert "transformers" not in line.split("needs", 1)[1].split(":")[0]  # only torch
    assert tree_digest(noonnx.cache) == before
    assert not any(p.is_dir() for p in exports_root(noonnx).rglob("*")
                   if p.name in ("fp32", "int8") or p.name.startswith(".tmp-"))
    listing = noonnx.process("ls", "--json", env={"PYTHONPATH": env["PYTHONPATH"]}, check=True)
    assert [e["kind"] for e in json.loads(listing.stdout)] == ["model"]


@pytest.mark.e2e  # torch absent: a fresh interpreter
def test_int8_from_an_existing_fp32_export_needs_no_torch(exported, tmp_path):
    folder = revision_folder(exported)
    shutil.rmtree(folder / "int8")
    fp32 = find(exported, "fp32")
    snap = snapshot(exported)
    proc = run_entry(exported, "export", str(snap), NOONNX, snap.name, "int8",
                     env=without_torch(exported, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == find(exported, "int8")
    made = json.loads((folder / "int8" / "manifest.json").read_text())["made"]
    assert made["from_sha256"] == fp32["sha256"] and made["per_channel"] is True


@pytest.mark.e2e  # SIGKILL
def test_an_interrupted_export_is_never_found(noonnx):
    snap = snapshot(noonnx)
    proc = subprocess.Popen(_entry(noonnx, "export", str(snap), NOONNX, snap.name, "fp32"),
                            env=_env(noonnx), cwd=TESTS, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    folder = revision_folder(noonnx)
    deadline = time.monotonic() + 300
    while not list(folder.glob(".tmp-fp32-*")) and proc.poll() is None:
        assert time.monotonic() < deadline, "the export never started"
        time.sleep(0.02)
    time.sleep(0.3)  # inside the export now (loading the model, tracing, writing)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = list(folder.glob(".tmp-fp32-*"))
    assert len(left) == 1 and not (folder / "fp32").exists()
    assert find(noonnx, "fp32") is None
    rows = json.loads(noonnx("ls", "--json", check=True).stdout)
    (row,) = [r for r in rows if r["kind"] == "onnx-export"]
    assert (row["status"], row["variant"], row["path"]) == ("incomplete", "fp32", str(left[0]))
    assert isinstance(row["size_bytes"], int)
    check = noonnx("verify")
    assert check.returncode == 1 and "interrupted export" in check.stdout, check.stdout
    pruned = noonnx("rm", "--prune", "-y", "--json", check=True)
    removed = [r for r in json.loads(pruned.stdout)["removed"] if r["kind"] == "onnx-export"]
    assert [r["path"] for r in removed] == [str(left[0])]
    assert not left[0].exists()
    # Killed again, the next export clears what the dead one left and finishes.
    again = subprocess.Popen(_entry(noonnx, "export", str(snap), NOONNX, snap.name, "fp32"),
                             env=_env(noonnx), cwd=TESTS, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not list(folder.glob(".tmp-fp32-*")) and again.poll() is None:
        time.sleep(0.02)
    again.kill()
    again.communicate(timeout=60)
    done = export(noonnx, "fp32", "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == find(noonnx, "fp32")
    assert sorted(p.name for p in folder.iterdir()) == ["fp32"]
    assert noonnx("verify").returncode == 0


@pytest.mark.e2e  # two exporting processes
def test_two_concurrent_exports_make_one(noonnx):
    snap = snapshot(noonnx)
    procs = [subprocess.Popen(_entry(noonnx, "export", str(snap), NOONNX, snap.name, "int8"),
                              env=_env(noonnx), cwd=TESTS, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert json.loads(outs[0][0]) == json.loads(outs[1][0]) == find(noonnx, "int8")
    stderr = "".join(err for _, err in outs)
    assert stderr.count("exporting them with torch") == 1, stderr
    assert stderr.count("quantizing the export") == 1, stderr
    assert sorted(p.name for p in revision_folder(noonnx).iterdir()) == ["fp32", "int8"]


@pytest.mark.e2e  # heavy_imports: what a fresh interpreter imports
def test_ls_and_du_count_exports_in_integer_bytes_without_heavy_imports(exported):
    rows = [r for r in json.loads(exported("ls", "--json", check=True).stdout)
            if r["kind"] == "onnx-export"]
    assert sorted(r["variant"] for r in rows) == ["fp32", "int8"]
    assert {(r["ref"], r["backend"], r["status"]) for r in rows} == \
        {(f"onnx:{NOONNX}", "onnx", "ok")}
    sizes = {r["variant"]: r["size_bytes"] for r in rows}
    for r in rows:
        on_disk = sum(p.stat().st_size for p in Path(r["path"]).iterdir())
        assert isinstance(r["size_bytes"], int) and r["size_bytes"] == on_disk
        assert r["revision"] == snapshot(exported).name
    usage = json.loads(exported("du", "--json", check=True).stdout)
    assert usage["onnx_exports"] == sizes["fp32"] + sizes["int8"]
    assert "ONNX exports" in exported("du", check=True).stdout
    for args in (("ls",), ("du",), ("rm", "--prune", "--dry-run")):
        heavy, err = heavy_imports(exported.env, *args)
        assert heavy == [], (args, heavy, err)


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def test_verify_catches_a_corrupted_export_and_repair_exports_it_again(exported):
    folder = revision_folder(exported)
    fp32 = folder / "fp32" / "model.onnx"
    good = fp32.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2: len(bad) // 2 + 64] = bytes(64)  # same size: only a hash sees it
    _replace(fp32, bytes(bad))
    int8 = folder / "int8" / "model.onnx"
    _replace(int8, int8.read_bytes()[:1000])  # truncated
    assert find(exported, "fp32") is not None  # sizes match: find_export does not hash
    assert find(exported, "int8") is None
    proc = exported("verify", "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    found = {p["variant"]: p for p in report["problems"] if p["kind"] == "onnx-export"}
    assert report["checked"]["onnx_exports"] == 2
    assert found["fp32"]["problems"] == ["model.onnx: sha256 mismatch"]
    assert "model.onnx is 1,000 bytes" in found["int8"]["problems"][0]
    text = exported("verify")
    assert text.returncode == 1 and str(fp32.parent) in text.stdout
    repaired = exported("verify", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert repaired.stdout.count("deleted and exported again") == 2, repaired.stdout
    assert exported("verify", "-q").returncode == 0
    fixed = find(exported, "fp32")
    assert fixed is not None and hashlib.sha256(fp32.read_bytes()).hexdigest() == fixed["sha256"]
    assert find(exported, "int8") is not None


def test_repairing_the_weights_an_export_came_from_exports_it_again(exported):
    folder = revision_folder(exported)
    made = {v: json.loads((folder / v / "manifest.json").read_text())["created"]
            for v in ("fp32", "int8")}
    blob = (snapshot(exported) / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[-4096:] = bytes(4096)  # bit rot: same size, only a hash sees it
    _replace(blob, bytes(data))
    proc = exported("verify", "--repair", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["dropped"] == [] and report["dropped_vectors"] == []
    assert [(r["variant"], r["path"], r["repaired"], r["outcome"]) for r in report["rebuilt"]] \
        == [("fp32", str(folder / "fp32"), True, "deleted and exported again"),
            ("int8", str(folder / "int8"), True, "deleted and exported again")]
    for variant in ("fp32", "int8"):  # made again, after the repair, from the right bytes
        assert find(exported, variant) is not None
        assert json.loads((folder / variant / "manifest.json").read_text())["created"] > \
            made[variant]
    assert exported("verify", "-q").returncode == 0


def test_repair_without_the_snapshot_drops_the_export(exported):
    folder = revision_folder(exported)
    int8 = folder / "int8" / "model.onnx"
    _replace(int8, b"not an onnx graph")
    exported("rm", f"st:{NOONNX}", "-y", check=True)  # the snapshot goes; exports stay
    proc = exported("verify", "--repair")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deleted; the snapshot is gone" in proc.stdout and f"onnx:{NOONNX}" in proc.stdout
    assert find(exported, "int8", folder.name) is None
    assert find(exported, "fp32", folder.name) is not None
    # What is left was made from a snapshot no longer cached: --prune removes it.
    pruned = json.loads(exported("rm", "--prune", "-y", "--json", check=True).stdout)
    assert [(r["kind"], r["revision"]) for r in pruned["removed"]] == \
        [("onnx-export", folder.name)]
    assert not exports_root(exported).joinpath(f"models--{NOONNX.replace('/', '--')}").exists()


def test_rm_removes_exports_and_frees_what_du_counted(exported):
    usage = json.loads(exported("du", "--json", check=True).stdout)["onnx_exports"]
    snap_before = tree_digest(snapshot(exported))
    dry = json.loads(exported("rm", "--filter", "kind=onnx-export", "--dry-run", "--json",
                              check=True).stdout)
    assert dry["dry_run"] and dry["freed_bytes"] == usage and len(dry["removed"]) == 2
    assert find(exported, "fp32") is not None
    done = json.loads(exported("rm", "--filter", "kind=onnx-export", "-y", "--json",
                               check=True).stdout)
    assert done["freed_bytes"] == usage and all(isinstance(r["freed_bytes"], int)
                                                for r in done["removed"])
    assert find(exported, "fp32") is None and find(exported, "int8") is None
    assert json.loads(exported("du", "--json", check=True).stdout)["onnx_exports"] == 0
    assert tree_digest(snapshot(exported)) == snap_before
    assert [r["kind"] for r in json.loads(exported("ls", "--json", check=True).stdout)] == \
        ["model"]


# End to end through the onnx: backend (issue #12's other half): these run once it is merged
# into the tree (the backend calls export_model from its pull), and skip before.

@pytest.fixture
def onnx_backend() -> None:
    from embctl.registry import backends

    if "onnx" not in backends():
        pytest.skip("the onnx: backend is not in this tree yet")


def _vector(runner: Embctl, *args: str) -> np.ndarray:
    proc = runner("embed", *args, "--no-cache", "-q", input='{"text": "where is my refund"}\n')
    assert proc.returncode == 0, proc.stderr
    vec = np.asarray(json.loads(proc.stdout)["embedding"], dtype=np.float64)
    return vec / np.linalg.norm(vec)


def test_pull_onnx_of_a_repo_without_onnx_exports_it(embctl, noonnx_home, hub_root,
                                                     onnx_backend):
    proc = embctl("pull", f"onnx:{NOONNX}")
    assert proc.returncode == 0, proc.stderr
    assert "exporting them with torch" in proc.stderr
    fp32 = find(embctl, "fp32")
    assert fp32 is not None and Path(fp32["path"]).is_relative_to(exports_root(embctl))
    snap = snapshot(embctl)
    assert not [p for p in embctl.cache.rglob("*") if p.name.endswith(".onnx")]
    assert all((hub_root / NOONNX / p.relative_to(snap)).read_bytes() == p.read_bytes()
               for p in snap.rglob("*") if p.is_file())
    assert embctl("pull", f"onnx:{NOONNX}", "--variant", "int8", "-q").returncode == 0
    assert find(embctl, "int8") is not None
    onnx32 = _vector(embctl, f"onnx:{NOONNX}")
    onnx8 = _vector(embctl, f"onnx:{NOONNX}", "-O", "variant=int8")
    st = _vector(embctl, f"st:{NOONNX}")
    assert float(onnx32 @ st) >= 0.9999 and float(onnx8 @ onnx32) >= 0.98
    assert embctl("verify", "-q").returncode == 0
    removed = json.loads(embctl("rm", f"onnx:{NOONNX}", "-y", "--json", check=True).stdout)
    assert sorted(r["kind"] for r in removed["removed"]) == ["model", "onnx-export",
                                                             "onnx-export"]
    assert not exports_root(embctl).joinpath(f"models--{NOONNX.replace('/', '--')}").exists()


@pytest.mark.e2e  # torch absent: a fresh interpreter
def test_pull_onnx_without_torch_says_what_to_install(embctl, noonnx_home, tmp_path,
                                                      onnx_backend):
    blocked = tmp_path / "notorch" / "torch"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError(\"No module named 'torch'\")\n")
    path = os.pathsep.join([str(blocked.parent), embctl.env.get("PYTHONPATH", "")])
    proc = embctl.process("pull", f"onnx:{NOONNX}", env={"PYTHONPATH": path})
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "torch" in line and INSTALL in line, line
    assert not [p for p in exports_root(embctl).rglob("*") if p.name in ("fp32", "int8")]
