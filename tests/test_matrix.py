"""The matrix backend against the local hub: range reads, cache, concatenation, errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support.hub import MINILM, HubServer, settle
from support.matrix_fixtures import (
    BIN_ONLY,
    EMBED_NAME,
    LLM,
    LLM_B,
    NO_EMBED,
    OTHER_TOKENIZER,
    SMALL_VOCAB,
    TWO_EMBED,
    VOCAB,
    build_matrix_repos,
    embed_shard,
    header_size,
    tensor_bytes,
)
from support.runner import Embctl, one_line_error
from support.servers import fresh

MINILM_TENSOR = "embeddings.word_embeddings.weight"


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, Path]:
    return build_matrix_repos(tmp_path_factory.mktemp("matrix-hub"))


@pytest.fixture(scope="module")
def mhub_server(repos):
    with HubServer(repos[LLM].parent.parent) as server:
        yield server


@pytest.fixture
def mhub(mhub_server):
    yield from fresh(mhub_server)


@pytest.fixture
def run(tmp_path, mhub) -> Embctl:
    return Embctl.at(tmp_path, mhub.url)


def kill_when_partial(proc: subprocess.Popen, run: Embctl, pattern: str, size: int) -> Path:
    """kill -9 the pull once a partial file matching ``pattern`` holds ``size`` bytes."""
    root = run.home / "embctl" / "matrices"
    deadline = time.time() + 120
    while time.time() < deadline:
        assert proc.poll() is None, f"the pull ended early: {proc.stderr.read()}"
        for path in root.glob(pattern) if root.is_dir() else []:
            try:
                if path.stat().st_size > size:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return path
            except FileNotFoundError:
                continue
        time.sleep(0.05)
    raise AssertionError("the download never started")


def weight_bytes(hub: HubServer) -> dict[tuple[str, str], int]:
    return {k: n for k, n in hub.bytes_by_path.items() if k[1].endswith(".safetensors") and n}


def pull_json(run: Embctl, *args: str) -> dict:
    proc = run("pull", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


def cached(run: Embctl) -> list[Path]:
    return sorted((run.home / "embctl" / "matrices").glob("*.safetensors"))


def read_cached(path: Path) -> tuple[dict, bytes]:
    from embctl_matrix.matrices.format import read_header

    header, offset = read_header(path)
    with open(path, "rb") as f:
        f.seek(offset)
        return header, f.read()


def bf16_to_f32(raw: bytes) -> np.ndarray:
    return (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def python(run: Embctl, code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=run.env, capture_output=True,
                          text=True, timeout=300, **kw)


# -- pulling ---------------------------------------------------------------------------------


def test_pull_reads_only_the_tensor_bytes_of_one_shard(run, mhub, repos):
    summary = pull_json(run, f"matrix:{LLM}")
    shard = embed_shard(repos[LLM])
    raw = tensor_bytes(shard, EMBED_NAME)
    sent = weight_bytes(mhub)
    # Only the second shard was read: its header and the tensor, nothing else.
    assert sent == {(LLM, shard.name): len(raw) + header_size(shard)}
    assert summary["downloaded_bytes"] == len(raw) + header_size(shard)
    assert summary["up_to_date"] is False
    assert summary["dtype"] == "BF16" and summary["shape"] == [VOCAB, 64]
    gets = [r for r in mhub.requests if r.path.endswith(".safetensors") and r.method == "GET"]
    assert all(r.range for r in gets)  # never a plain GET of a shard
    # The tokenizer and config came along (through hf_hub_download).
    assert (LLM, "tokenizer.json") in mhub.bytes_by_path
    assert (LLM, "config.json") in mhub.bytes_by_path
    # The cached matrix is the source tensor, bit for bit, with its provenance.
    [path] = cached(run)
    header, data = read_cached(path)
    assert data == raw
    meta = header["__metadata__"]
    assert header["embeddings"]["dtype"] == "BF16"
    assert json.loads(meta["sources"]) == [LLM]
    assert json.loads(meta["revisions"]) == [mhub.commit_sha(LLM)]
    assert json.loads(meta["tensors"]) == [EMBED_NAME]
    assert meta["sha256"] == hashlib.sha256(raw).hexdigest() == summary["sha256"]
    assert not list(path.parent.glob("*.incomplete"))


def test_second_pull_transfers_nothing(run, mhub):
    pull_json(run, f"matrix:{LLM}")
    mhub.reset_stats()
    summary = pull_json(run, f"matrix:{LLM}")
    assert summary["up_to_date"] is True and summary["downloaded_bytes"] == 0
    assert weight_bytes(mhub) == {}
    proc = run("pull", f"matrix:{LLM}", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "up to date (offline" in proc.stderr


def test_pull_real_minilm_single_file(run, mhub, repos):
    summary = pull_json(run, f"matrix:{MINILM}")
    source = repos["minilm"] / "model.safetensors"
    raw = tensor_bytes(source, MINILM_TENSOR)
    assert weight_bytes(mhub) == {(MINILM, "model.safetensors"): len(raw) + header_size(source)}
    assert summary["tensors"] == [MINILM_TENSOR]
    assert summary["dtype"] == "F32" and summary["shape"] == [VOCAB, 384]
    assert read_cached(cached(run)[0])[1] == raw


def test_tensor_option_overrides_the_name(run, repos):
    default = pull_json(run, f"matrix:{LLM}")
    summary = pull_json(run, f"matrix:{LLM}", "--tensor", "lm_head.weight")
    assert summary["tensors"] == ["lm_head.weight"] and summary["path"] != default["path"]
    shard = repos[LLM] / "model-00003-of-00003.safetensors"
    assert read_cached(Path(summary["path"]))[1] == tensor_bytes(shard, "lm_head.weight")
    # Without --tensor, references keep meaning the tensor found by name.
    code = (f"from embctl_matrix.matrices import matrix_info\n"
            f"print(matrix_info('matrix:{LLM}')['tensors'][0])\n"
            f"from embctl_matrix.matrices.store import find_matrix\n"
            f"print(find_matrix('matrix:{LLM}', tensor='lm_head.weight').tensors[0])")
    proc = python(run, code)
    assert proc.stdout.split() == [EMBED_NAME, "lm_head.weight"], proc.stderr


# -- several models --------------------------------------------------------------------------


def test_concatenate_two_bf16_models(run, repos):
    summary = pull_json(run, f"matrix:{LLM}+{LLM_B}")
    assert summary["dtype"] == "BF16" and summary["shape"] == [VOCAB, 96]
    a = np.frombuffer(tensor_bytes(embed_shard(repos[LLM]), EMBED_NAME), np.uint16)
    b = np.frombuffer(tensor_bytes(embed_shard(repos[LLM_B]), EMBED_NAME), np.uint16)
    got = np.frombuffer(read_cached(Path(summary["path"]))[1], np.uint16).reshape(VOCAB, 96)
    assert np.array_equal(got[:, :64], a.reshape(VOCAB, 64))
    assert np.array_equal(got[:, 64:], b.reshape(VOCAB, 32))
    assert not list(Path(summary["path"]).parent.glob("*.part*"))


def test_concatenate_bf16_with_f32_widens_exactly(run, mhub, repos):
    pull_json(run, f"matrix:{LLM}")  # cached on its own first: the concatenation reuses it
    mhub.reset_stats()
    summary = pull_json(run, f"matrix:{LLM}+{MINILM}")
    assert (LLM, embed_shard(repos[LLM]).name) not in weight_bytes(mhub) or \
        weight_bytes(mhub)[(LLM, embed_shard(repos[LLM]).name)] == header_size(
            embed_shard(repos[LLM]))
    assert summary["dtype"] == "F32" and summary["shape"] == [VOCAB, 448]
    got = np.frombuffer(read_cached(Path(summary["path"]))[1], np.float32).reshape(VOCAB, 448)
    a = bf16_to_f32(tensor_bytes(embed_shard(repos[LLM]), EMBED_NAME)).reshape(VOCAB, 64)
    m = np.frombuffer(tensor_bytes(repos["minilm"] / "model.safetensors", MINILM_TENSOR),
                      np.float32).reshape(VOCAB, 384)
    assert np.array_equal(got[:, :64], a) and np.array_equal(got[:, 64:], m)


# -- errors: one line, nothing cached --------------------------------------------------------


@pytest.mark.parametrize(("ref", "args", "expected"), [
    (NO_EMBED, (), ["no token-embedding tensor", "encoder.proj.weight F32[64, 32]",
                    "--tensor"]),
    (TWO_EMBED, (), ["several token-embedding tensors", "decoder.embed_tokens.weight",
                     "encoder.embed_tokens.weight F32[100, 8]"]),
    (LLM, ("--tensor", "nope.weight"), ["no tensor named 'nope.weight'",
                                        f"{EMBED_NAME} BF16[{VOCAB}, 64]",
                                        f"lm_head.weight BF16[{VOCAB}, 64]"]),
    (LLM, ("--tensor", "model.norm.weight"), ["model.norm.weight has shape [64], not"]),
    (BIN_ONLY, (), ["no model.safetensors or model.safetensors.index.json"]),
    (f"{LLM}+{SMALL_VOCAB}", (), ["vocabulary sizes differ", f"{LLM} {VOCAB}",
                                  f"{SMALL_VOCAB} 1000"]),
    (f"{LLM}+{OTHER_TOKENIZER}", (), ["tokenizers differ"]),
    ("test-org/missing", (), ["model not found"]),
    (f"{LLM}@no-such-branch", (), ["revision not found"]),
])
def test_errors_are_one_line_and_cache_nothing(run, mhub, ref, args, expected):
    proc = run("pull", f"matrix:{ref}", *args)
    assert proc.returncode == 1
    line = one_line_error(proc)
    for text in expected:
        assert text in line, line
    assert cached(run) == []
    assert all(n == 0 for (_, p), n in mhub.bytes_by_path.items()
               if p.endswith(".safetensors") and n > 2000)  # headers at most, never a tensor


def test_server_ignoring_range_is_refused(run, mhub, repos):
    shard = embed_shard(repos[LLM]).name
    mhub.set_fault(LLM, shard, ignore_range=True)
    proc = run("pull", f"matrix:{LLM}")
    assert proc.returncode == 1
    assert "ignored the Range request" in one_line_error(proc)
    assert cached(run) == []
    # The first answer gave it away: no second request was made to that shard.
    gets = [r for r in mhub.requests if r.path.endswith(shard) and r.method == "GET"]
    assert len(gets) == 1


# -- interruptions ---------------------------------------------------------------------------


def test_dropped_connections_resume_within_a_pull(run, mhub, repos):
    shard = embed_shard(repos[LLM])
    mhub.set_fault(LLM, shard.name, drop_after=1_000_000, methods=["GET"])
    summary = pull_json(run, f"matrix:{LLM}")
    raw = tensor_bytes(shard, EMBED_NAME)
    assert read_cached(Path(summary["path"]))[1] == raw
    gets = [r for r in mhub.requests if r.path.endswith(shard.name) and r.method == "GET"]
    starts = [int(r.range.split("=")[1].split("-")[0]) for r in gets[2:]]  # after the header
    assert len(starts) >= 4 and starts == sorted(set(starts))
    # Resumed, never re-sent: the shard cost exactly the tensor plus its header.
    assert weight_bytes(mhub)[(LLM, shard.name)] == len(raw) + header_size(shard)


@pytest.mark.e2e  # SIGKILL mid-pull
def test_kill_mid_pull_leaves_no_complete_looking_file_then_resumes(run, mhub, repos):
    shard = embed_shard(repos[LLM])
    mhub.set_fault(LLM, shard.name, delay_s=0.05, chunk_size=64 * 1024)
    proc = run.popen("pull", f"matrix:{LLM}")
    partial = [kill_when_partial(proc, run, "*.incomplete", 500_000)]
    assert cached(run) == []
    listed = [e for e in json.loads(run("ls", "--json").stdout) if e["kind"] == "matrix"]
    assert [e["status"] for e in listed] == ["incomplete"]
    already = partial[0].stat().st_size
    mhub.clear_faults()
    settle(mhub)  # count only what the resumed pull costs
    mhub.reset_stats()
    summary = pull_json(run, f"matrix:{LLM}")
    raw = tensor_bytes(shard, EMBED_NAME)
    assert read_cached(Path(summary["path"]))[1] == raw  # bit for bit after the resume
    tensor_sent = weight_bytes(mhub)[(LLM, shard.name)] - header_size(shard)
    assert 0 < tensor_sent < len(raw) and tensor_sent <= len(raw) - (already - 2000)


# -- the cache: ls, du, rm, verify ------------------------------------------------------------


def test_ls_du_rm_verify_cover_matrices(run, repos):
    pull_json(run, f"matrix:{LLM}")
    pull_json(run, f"matrix:{LLM}+{LLM_B}")
    listed = [e for e in json.loads(run("ls", "--json").stdout) if e["kind"] == "matrix"]
    assert sorted(e["ref"] for e in listed) == [f"matrix:{LLM}", f"matrix:{LLM}+{LLM_B}"]
    assert {e["dim"] for e in listed} == {64, 96} and {e["status"] for e in listed} == {"ok"}
    usage = json.loads(run("du", "--json").stdout)
    assert usage["matrices"] == sum(e["size_bytes"] for e in listed)
    code = f"""
import json, sys
from embctl.backends import Model
from embctl_matrix.matrices.scan import remove_matrices, verify_matrices
from embctl_matrix.matrices.store import find_matrix
print(json.dumps([c.to_json() for c in verify_matrices()]))
path = find_matrix("matrix:{LLM}").path
with open(path, "r+b") as f:
    f.seek(-100, 2); b = f.read(1); f.seek(-100, 2); f.write(bytes([b[0] ^ 1]))
print(json.dumps([c.to_json() for c in verify_matrices()]))
print(json.dumps([c.to_json() for c in verify_matrices(repair=True)]))
print(json.dumps([c.to_json() for c in verify_matrices()]))
dry = remove_matrices(Model("m", "matrix", "{LLM}+{LLM_B}"), dry_run=True)
gone = remove_matrices(Model("m", "matrix", "{LLM}+{LLM_B}"))
print(json.dumps([dry[0].size_bytes, gone[0].size_bytes, len(remove_matrices(key="ffff"))]))
"""
    proc = python(run, code)
    assert proc.returncode == 0, proc.stderr
    first, corrupted, repaired, after, sizes = map(json.loads, proc.stdout.splitlines())
    assert all(c["ok"] for c in first)
    bad = [c for c in corrupted if not c["ok"]]
    assert len(bad) == 1 and bad[0]["ref"] == f"matrix:{LLM}"
    assert "sha256 mismatch" in bad[0]["problems"][0]
    assert [c["repaired"] for c in repaired if c["ref"] == f"matrix:{LLM}"] == [True]
    assert all(c["ok"] for c in after)
    assert sizes[0] == sizes[1] > 5_000_000 and sizes[2] == 0
    assert [e["ref"] for e in json.loads(run("ls", "--json").stdout)
            if e["kind"] == "matrix"] == [f"matrix:{LLM}"]


# -- Python API: in memory and shared memory maps --------------------------------------------


def test_load_matrix_in_memory_and_mapped(run, repos):
    pull_json(run, f"matrix:{LLM}")
    pull_json(run, f"matrix:{MINILM}")
    code = f"""
import numpy as np
from embctl_matrix.matrices import load_matrix, npy_path
a = load_matrix("matrix:{LLM}", mmap=False)
b = load_matrix("matrix:{LLM}")
m = load_matrix("matrix:{MINILM}")
assert isinstance(b, np.memmap) and isinstance(m, np.memmap)
assert not b.flags.writeable and not m.flags.writeable
assert a.dtype == np.float32 and np.array_equal(a, b)
assert np.load(npy_path("matrix:{LLM}"), mmap_mode="r").shape == a.shape
h = load_matrix("matrix:{MINILM}", dtype="float16", mmap=False)
print(a.shape, m.dtype, m.shape, h.dtype, float(a[1000, 3]))
"""
    proc = python(run, code)
    assert proc.returncode == 0, proc.stderr
    expected = bf16_to_f32(tensor_bytes(embed_shard(repos[LLM]), EMBED_NAME))[1000 * 64 + 3]
    assert proc.stdout.split() == ["(30522,", "64)", "float32", "(30522,", "384)", "float16",
                                   repr(float(expected))]


WORKER = """
import sys, numpy as np
from embctl_matrix.matrices import load_matrix
m = load_matrix(sys.argv[1])
total = float(np.asarray(m, dtype=np.float64).sum())  # touch every page
try:
    m[0, 0] = 1
    writable = True
except (ValueError, OSError):
    writable = False
path = str(m.filename)
shared = 0
with open("/proc/self/smaps") as f:
    inside = False
    for line in f:
        parts = line.split()
        if "-" in parts[0] and len(parts) >= 5:
            inside = line.rstrip().endswith(path)
        elif inside and parts[0] == "Shared_Clean:":
            shared += int(parts[1]) * 1024
print(total, writable, shared, m.nbytes, flush=True)
sys.stdin.readline()
"""


@pytest.mark.e2e  # two processes share one memory map
@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs /proc/self/smaps")
@pytest.mark.parametrize("which", [LLM, MINILM])
def test_two_processes_share_the_memmap_read_only(run, which):
    pull_json(run, f"matrix:{which}")
    procs = []
    outputs = []
    try:
        for _ in range(2):
            p = subprocess.Popen([sys.executable, "-c", WORKER, f"matrix:{which}"], env=run.env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            procs.append(p)
            outputs.append(p.stdout.readline().split())  # the first holds its map meanwhile
            assert outputs[-1], p.stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.stdin.write("\n")
                p.stdin.flush()
            p.wait(timeout=60)
    (t1, w1, _, n1), (t2, w2, shared, n2) = outputs
    assert t1 == t2 and n1 == n2 and w1 == w2 == "False"
    # The second process's pages are the first one's: one copy in memory, shared.
    assert int(shared) >= 0.9 * int(n2)


# -- embed and export ------------------------------------------------------------------------


def test_embed_static_vectors_match_a_manual_lookup(run, repos):
    pull_json(run, f"matrix:{LLM}")
    texts = ["hello world", "the cat sat on the mat", "embeddings"]
    proc = run("embed", f"matrix:{LLM}", "--lines", input="\n".join(texts) + "\n")
    assert proc.returncode == 0, proc.stderr
    got = np.array([json.loads(line)["embedding"] for line in proc.stdout.splitlines()])
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(repos[LLM] / "tokenizer.json"))
    tok.no_padding()  # MiniLM's tokenizer.json pads to 128
    matrix = bf16_to_f32(tensor_bytes(embed_shard(repos[LLM]), EMBED_NAME)).reshape(VOCAB, 64)
    for text, vec in zip(texts, got, strict=True):
        ids = tok.encode(text, add_special_tokens=False).ids
        mean = matrix[ids].mean(axis=0)
        assert np.allclose(vec, mean / np.linalg.norm(mean), atol=1e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    # The vector cache serves a rerun; --no-normalize is another namespace.
    again = run("embed", f"matrix:{LLM}", "--lines", input="\n".join(texts) + "\n")
    assert "3 cache hits" in again.stderr and again.stdout == proc.stdout
    raw = run("embed", f"matrix:{LLM}", "--lines", "--no-normalize", input="hello world\n")
    vec = np.array(json.loads(raw.stdout)["embedding"])
    assert not np.isclose(np.linalg.norm(vec), 1)


def test_export_npy_and_safetensors(run, repos, tmp_path):
    pull_json(run, f"matrix:{LLM}")
    out_npy, out_st = tmp_path / "m.npy", tmp_path / "m.safetensors"
    assert run("export", f"matrix:{LLM}", "-o", str(out_npy)).returncode == 0
    assert run("export", f"matrix:{LLM}", "-o", str(out_st)).returncode == 0
    raw = tensor_bytes(embed_shard(repos[LLM]), EMBED_NAME)
    assert np.array_equal(np.load(out_npy), bf16_to_f32(raw).reshape(VOCAB, 64))
    import torch
    from safetensors.torch import load_file

    t = load_file(str(out_st))["embeddings"]
    assert t.dtype == torch.bfloat16 and t.view(torch.int16).numpy().tobytes() == raw
    bad = run("export", f"matrix:{LLM}", "-o", str(tmp_path / "m.csv"))
    assert bad.returncode == 2 and ".npy or .safetensors" in one_line_error(bad)


@pytest.mark.e2e  # a heavy-import check: a fresh interpreter
def test_plugin_and_listing_import_nothing_heavy(run):
    code = ("import sys, embctl_matrix, embctl_matrix.matrices.scan, embctl_matrix.matrices\n"
            "heavy = [m for m in ('numpy', 'torch', 'safetensors', 'tokenizers',"
            " 'huggingface_hub', 'transformers') if m in sys.modules]\n"
            "print(heavy)")
    proc = python(run, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_embed_pulls_a_missing_matrix_and_offline_fails_cleanly(run, mhub):
    offline = run("embed", f"matrix:{LLM}", "--lines", input="hello\n",
                  env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 1
    assert "HF_HUB_OFFLINE=1" in one_line_error(offline)
    proc = run("embed", f"matrix:{LLM}", "--lines", "-q", input="hello\n")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["embedding"]) == 64
    assert len(cached(run)) == 1


def test_tensor_list_must_match_the_models(run):
    proc = run("pull", f"matrix:{LLM}+{LLM_B}", "--tensor", "a,b,c")
    assert proc.returncode == 2
    assert "one per model (2)" in one_line_error(proc)
    ok = pull_json(run, f"matrix:{LLM}+{LLM_B}", "--tensor", f"{EMBED_NAME},lm_head.weight")
    assert ok["tensors"] == [EMBED_NAME, "lm_head.weight"] and ok["shape"] == [VOCAB, 96]


def test_dead_connection_fails_cleanly_with_nothing_cached(run, mhub, repos):
    mhub.set_fault(LLM, embed_shard(repos[LLM]).name, drop_after=0, methods=["GET"])
    proc = run("pull", f"matrix:{LLM}")
    assert proc.returncode == 1
    assert "tiny-llm" in one_line_error(proc)
    assert cached(run) == []


@pytest.mark.e2e  # SIGKILL mid-concatenation
def test_interrupted_concatenation_is_listed_and_removable(run, mhub, repos):
    mhub.set_fault(LLM_B, embed_shard(repos[LLM_B]).name, delay_s=0.05, chunk_size=64 * 1024)
    proc = run.popen("pull", f"matrix:{LLM}+{LLM_B}")
    kill_when_partial(proc, run, "*.part1.incomplete", 200_000)
    assert cached(run) == []
    code = ("from embctl_matrix.matrices.scan import matrix_entries, remove_matrices\n"
            "print([e.status for e in matrix_entries()])\n"
            "removed = remove_matrices()\n"
            "print(len(removed), [e.status for e in matrix_entries()])\n")
    out = python(run, code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["['incomplete']", "1 []"]
    root = run.home / "embctl" / "matrices"
    assert [p.name for p in root.iterdir() if p.name != ".locks"] == []
    assert list((root / ".locks").iterdir()) == []  # its lock file went too


def test_cli_verify_and_rm_cover_matrices(run, repos):
    pull_json(run, f"matrix:{LLM}")
    assert run("verify").returncode == 0
    [path] = cached(run)
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    bad = run("verify", "--json")
    assert bad.returncode == 1
    problems = json.loads(bad.stdout)["problems"]
    assert [p["kind"] for p in problems] == ["matrix"]
    assert run("verify", f"matrix:{LLM}", "--repair").returncode == 0
    assert run("verify").returncode == 0
    models_before = [e for e in json.loads(run("ls", "--json").stdout) if e["kind"] == "model"]
    proc = run("rm", f"matrix:{LLM}", "-y")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(run("ls", "--json").stdout)
    assert not [e for e in rows if e["kind"] == "matrix"]
    # The Hub repo it borrowed config and tokenizer from is a different thing: left alone.
    assert [e for e in rows if e["kind"] == "model"] == models_before
    again = run("rm", f"matrix:{LLM}", "-y")
    assert again.returncode == 1
