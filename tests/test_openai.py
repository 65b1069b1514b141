"""The openai backend end to end: embctl (in-process; as ``python -m embctl`` where the process
boundary is the point: signals, imports, the client's logging) against `support.openai_server`.

Every test counts what reached the server: a second run sends nothing, a rerun after a failure
sends only the missing inputs, retries happen and are bounded, and the key never leaks.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from support.inprocess import environment
from support.openai_server import TEST_KEY, Fault, OpenAIServer, expected_vector
from support.runner import Embctl, embctl_argv, one_line_error

KEY = TEST_KEY  # the key the fake server (fixtures `fake`, `oa` in conftest.py) accepts
MODEL = "test-embed"


def texts(n: int, tag: str = "doc") -> list[str]:
    return [f"{tag} number {i}: " + "lorem ipsum " * (i % 7) for i in range(n)]


def embed(oa: Embctl, items: list[str], *args: str, env: dict | None = None):
    return oa("embed", f"openai:{MODEL}", "--lines", *args, input="\n".join(items) + "\n",
              env=env, timeout=120)


def vectors_of(stdout: str) -> np.ndarray:
    return np.array([json.loads(line)["embedding"] for line in stdout.splitlines()],
                    dtype=np.float32)


def check_vectors(stdout: str, items: list[str], dims: int | None = None) -> None:
    got = vectors_of(stdout)
    want = np.stack([expected_vector(t, MODEL, dims) for t in items])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def sent(server: OpenAIServer) -> list[str]:
    return server.embedded_inputs()


# -- embedding, batching, order, the cache -------------------------------------------------


def test_embed_in_order_batched_concurrent_and_second_run_sends_nothing(oa, fake):
    items = texts(300)
    first = embed(oa, items, "--dimensions", "32", "--batch-size", "40", "--concurrency", "4")
    assert first.returncode == 0, first.stderr
    check_vectors(first.stdout, items, 32)
    log = fake.log
    assert len(log) == 8 and all(r.status == 200 for r in log)  # ceil(300 / 40)
    assert all(len(r.inputs) <= 40 for r in log)
    assert all(r.dimensions == 32 and r.encoding_format == "base64" for r in log)
    assert sorted(sent(fake)) == sorted(items)  # each input sent exactly once

    fake.reset()
    second = embed(oa, items, "--dimensions", "32", "--batch-size", "40", "--concurrency", "4")
    assert second.returncode == 0, second.stderr
    assert fake.log == []  # zero requests
    assert second.stdout == first.stdout

    fake.reset()  # a new --dimensions is a new namespace: everything is requested again
    third = embed(oa, items[:10], "--dimensions", "16")
    assert third.returncode == 0, third.stderr
    check_vectors(third.stdout, items[:10], 16)
    assert len(sent(fake)) == 10


def test_partial_cache_hits_send_only_new_inputs(oa, fake):
    old, new = texts(50, "old"), texts(30, "new")
    assert embed(oa, old).returncode == 0
    fake.reset()
    mixed = [x for pair in zip(old[:30], new, strict=True) for x in pair] + old[30:]
    proc = embed(oa, mixed)
    assert proc.returncode == 0, proc.stderr
    check_vectors(proc.stdout, mixed)
    assert sorted(sent(fake)) == sorted(new)


def test_requests_are_cut_by_estimated_tokens(oa, fake):
    items = [f"{i:04d}" + "x" * 36 for i in range(50)]  # 40 bytes: 10 estimated tokens each
    proc = embed(oa, items, env={"EMBCTL_OPENAI_MAX_BATCH_TOKENS": "100"})
    assert proc.returncode == 0, proc.stderr
    assert all(len(r.inputs) <= 10 for r in fake.log)
    assert len(fake.log) == 5
    check_vectors(proc.stdout, items)


def test_base_url_option_and_jsonl_input(oa, fake, tmp_path):
    items = texts(5)
    lines = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(items))
    proc = oa("embed", f"openai:{MODEL}", "--base-url", fake.url, input=lines,
              env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert proc.returncode == 0, proc.stderr
    check_vectors(proc.stdout, items)
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == list(range(5))


def test_float_encoding_for_servers_without_base64(oa, fake):
    items = texts(7)
    proc = embed(oa, items, env={"EMBCTL_OPENAI_ENCODING": "float"})
    assert proc.returncode == 0, proc.stderr
    assert [r.encoding_format for r in fake.log] == ["float"]
    check_vectors(proc.stdout, items)


# -- faults --------------------------------------------------------------------------------


def test_retries_429_5xx_drops_and_timeouts_then_succeeds(oa, fake):
    fake.add_faults(Fault(status=429, retry_after="0.05", message="slow down"),
                    Fault(status=500), Fault(status=503, retry_after="0"),
                    Fault(drop=True), Fault(delay_s=4.0))  # a body slower than the timeout
    items = texts(20)
    proc = embed(oa, items)
    assert proc.returncode == 0, proc.stderr
    check_vectors(proc.stdout, items)
    assert [r.status for r in fake.log] == [429, 500, 503, 0, 200, 200]
    retries = [line for line in proc.stderr.splitlines() if "retrying in" in line]
    assert len(retries) == 5, proc.stderr
    assert "rate limited" in retries[0] and "attempt 2 of 6" in retries[0]
    assert "timed out" in retries[4]
    # The slow answer was abandoned by the client (the server still counts it as served).
    assert fake.log[-2].inputs == fake.log[-1].inputs == sorted(items, key=len, reverse=True)


def test_retries_are_bounded(oa, fake):
    fake.add_faults(Fault(status=503, times=None))
    proc = embed(oa, texts(3), env={"EMBCTL_OPENAI_MAX_RETRIES": "2"})
    assert proc.returncode == 1
    err = one_line_error(proc)
    assert "503" in err and "gave up after 3 attempts" in err
    assert len(fake.log) == 3


def test_a_retry_after_beyond_the_ceiling_fails_at_once(oa, fake):
    fake.add_faults(Fault(status=429, retry_after="3600"))
    proc = embed(oa, texts(3))
    assert proc.returncode == 1
    assert "retry after 3600 s" in one_line_error(proc)
    assert len(fake.log) == 1


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (Fault(status=401, message="Incorrect API key provided"), "authentication failed"),
        (Fault(status=403, message="You are not allowed to sample from this model"),
         "access denied"),
    ],
)
def test_auth_errors_are_one_line_and_not_retried(oa, fake, fault, cause):
    fake.add_faults(fault)
    proc = embed(oa, texts(3))
    assert proc.returncode == 1
    assert cause in one_line_error(proc)
    assert len(fake.log) == 1


def test_wrong_key_unknown_model_and_token_limit(oa, fake):
    proc = embed(oa, texts(2), env={"OPENAI_API_KEY": "sk-wrong-key-000000000000"})
    assert proc.returncode == 1
    assert "authentication failed" in one_line_error(proc)

    proc = oa("embed", "openai:no-such-model", "--lines", input="hello\n")
    assert proc.returncode == 1
    err = one_line_error(proc)
    assert "unknown model 'no-such-model'" in err

    proc = embed(oa, ["short", "y" * 40_000])  # ~10,000 tokens > 8,192
    assert proc.returncode == 1
    assert "token limit" in one_line_error(proc)


def test_no_key_for_api_openai_com_fails_before_any_request(oa):
    env = {k: v for k, v in oa.env.items() if not k.startswith("OPENAI_")}
    proc = Embctl(env, oa.home)("embed", "openai:text-embedding-3-small", "--lines",
                                input="hi\n")
    assert proc.returncode == 1
    assert "OPENAI_API_KEY is not set" in one_line_error(proc)


@pytest.mark.parametrize("kind", ["count", "dim", "all_dim", "string", "nan", "json", "index",
                                  "nodata"])
def test_malformed_responses_are_rejected_and_never_cached(oa, fake, kind):
    items = texts(6)
    # Every vector one short is detectable only against a known dimension (--dimensions here,
    # or a known OpenAI model); with an unknown model on a custom server any first answer sets it.
    dims = ["--dimensions", "32"] if kind == "all_dim" else []
    fake.add_faults(Fault(malformed=kind))
    proc = embed(oa, items, *dims)
    assert proc.returncode == 1
    assert "malformed response" in one_line_error(proc)
    assert proc.stdout == ""
    fake.reset()
    again = embed(oa, items, *dims)  # nothing was cached: everything is asked for again
    assert again.returncode == 0, again.stderr
    assert sorted(sent(fake)) == sorted(items)
    check_vectors(again.stdout, items, 32 if dims else None)


# -- money is never spent twice ------------------------------------------------------------


def test_rerun_after_a_failure_sends_only_the_missing_inputs(oa, fake):
    items = texts(200)
    fake.add_faults(Fault(), Fault(), Fault(status=401, message="key revoked"))
    proc = embed(oa, items, "--batch-size", "50", "--concurrency", "1")
    assert proc.returncode == 1
    assert "authentication failed" in one_line_error(proc)
    paid = sent(fake)
    assert len(paid) == 100  # two batches went through before the failure

    fake.reset()
    rerun = embed(oa, items, "--batch-size", "50", "--concurrency", "1")
    assert rerun.returncode == 0, rerun.stderr
    check_vectors(rerun.stdout, items)
    assert sorted(sent(fake)) == sorted(set(items) - set(paid))


def test_concurrent_batches_in_flight_are_kept_when_one_fails(oa, fake):
    items = texts(400)
    fake.state.latency_s = 0.05
    try:
        fake.add_faults(Fault(), Fault(malformed="count"))
        proc = embed(oa, items, "--batch-size", "40", "--concurrency", "4")
    finally:
        fake.state.latency_s = 0.0
    assert proc.returncode == 1
    assert "malformed response" in one_line_error(proc)
    # Batches in flight beside the bad one (4 at a time) finished and were committed.
    paid = [t for r in fake.log if r.status == 200 and not (r.fault or {}).get("malformed")
            for t in r.inputs]
    assert len(paid) >= 2 * 40
    fake.reset()
    rerun = embed(oa, items, "--batch-size", "40", "--concurrency", "4")
    assert rerun.returncode == 0, rerun.stderr
    check_vectors(rerun.stdout, items)
    again = sent(fake)
    assert not set(again) & set(paid)  # nothing paid for is asked for twice
    assert sorted(paid + again) == sorted(items)


def test_a_failure_while_the_next_window_is_queued_loses_nothing_paid(oa, fake):
    """Windows of 160 inputs (16 batches of 10): the next window's requests are queued while
    one is in flight.  Request 20 (in the second window) fails: what was answered, in any
    window, is cached; the rerun asks only for the rest."""
    items = texts(480)
    fake.state.latency_s = 0.02
    try:
        fake.add_faults(*[Fault()] * 19, Fault(status=400, message="bad request"))
        proc = embed(oa, items, "--batch-size", "10", "--concurrency", "4")
    finally:
        fake.state.latency_s = 0.0
    assert proc.returncode == 1
    assert proc.stdout.count("\n") in (0, 160)  # whole windows only
    paid = [t for r in fake.log if r.status == 200 for t in r.inputs]
    assert len(paid) >= 160 and len(set(paid)) == len(paid)
    fake.reset()
    rerun = embed(oa, items, "--batch-size", "10", "--concurrency", "4")
    assert rerun.returncode == 0, rerun.stderr
    check_vectors(rerun.stdout, items)
    again = sent(fake)
    assert not set(again) & set(paid)
    assert sorted(paid + again) == sorted(items)


@pytest.mark.e2e  # a signal to a running process
@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_a_stopped_run_keeps_everything_it_paid_for(oa, fake, tmp_path, sig, code, word):
    """`docker stop` (SIGTERM) or Ctrl-C mid-run: the requests in flight finish, every answer
    is committed, nothing is written half; the rerun asks only for the rest."""
    items = texts(400)
    src = tmp_path / "in.txt"
    src.write_text("\n".join(items) + "\n")
    args = ("--batch-size", "10", "--concurrency", "4")
    fake.state.latency_s = 0.1
    try:
        proc = oa.popen("embed", f"openai:{MODEL}", "--lines", "-i", str(src), *args,
                        "-o", str(tmp_path / "out.npy"))
        deadline = time.monotonic() + 60
        while (time.monotonic() < deadline and proc.poll() is None
               and sum(r.status == 200 for r in list(fake.log)) < 8):
            time.sleep(0.02)
        assert proc.poll() is None, "finished before it could be stopped"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        fake.state.latency_s = 0.0
    assert proc.returncode == code, err
    assert f"embctl: {word}" in err and "Traceback" not in err
    assert not (tmp_path / "out.npy").exists()
    paid = [t for r in fake.log if r.status == 200 for t in r.inputs]
    assert 80 <= len(paid) < len(items)
    fake.reset()
    rerun = embed(oa, items, *args)
    assert rerun.returncode == 0, rerun.stderr
    check_vectors(rerun.stdout, items)
    again = sent(fake)
    assert not set(again) & set(paid)  # every answer of the stopped run was kept
    assert sorted(paid + again) == sorted(items)


def test_a_failure_stops_retries_and_queued_batches_at_once(oa, fake):
    """Two requests in flight: one is told to retry in 2 s, the other fails for good.  The
    failure ends the run without that retry and without starting the batches queued behind
    (the old loop waited for the first batch, retry included, before noticing)."""
    fake.add_faults(Fault(status=429, retry_after="2"), Fault(status=401, message="no"))
    proc = embed(oa, texts(40), "--batch-size", "10", "--concurrency", "2")
    assert proc.returncode == 1
    assert "authentication failed" in one_line_error(proc)
    assert len(fake.log) == 2  # no retry, no third batch


def test_python_api_model_works_again_after_a_failed_call(oa, fake):
    """embctl.load("openai:...") stays usable when one call fails: the next call sends (and
    retries) as usual, and what the failed call received was kept."""
    import embctl
    from embctl.errors import EmbctlError

    fake.add_faults(Fault(), Fault(status=401, message="no"))
    items = texts(60)
    with environment(oa.env), embctl.load(f"openai:{MODEL}", batch_size=10) as m:
        with pytest.raises(EmbctlError) as first:  # the first call fails
            m.embed(items)
        v = m.embed(items)
    assert "authentication failed" in str(first.value) and v.shape == (60, 64)
    want = np.stack([expected_vector(t, MODEL) for t in texts(60)])
    np.testing.assert_allclose(np.asarray(v, dtype=np.float32), want, rtol=1e-6, atol=1e-7)
    answered = [t for r in fake.log if r.status == 200 for t in r.inputs]
    assert sorted(answered) == sorted(texts(60))  # each paid for once, over both calls
    assert sum(r.status == 401 for r in fake.log) == 1


def test_dry_run_counts_inputs_and_tokens_and_sends_nothing(oa, fake):
    items = texts(100)
    assert embed(oa, items[:30]).returncode == 0
    fake.reset()
    env = {"OPENAI_API_KEY": ""}  # a dry run needs no key
    proc = embed(oa, items + items[:5], "--dry-run", "--batch-size", "25", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert fake.log == []
    line = proc.stderr.strip().splitlines()[-1]
    tokens = sum(-(-len(t.encode()) // 4) for t in items[30:])
    assert "105 inputs: 35 cached, 70 would be sent in 3 requests" in line, line
    assert f"~{tokens:,} tokens (estimated)" in line
    assert "nothing sent" in line


# -- pull, ls, du, rm, export --------------------------------------------------------------


def test_pull_checks_access_with_one_request(oa, fake):
    proc = oa("pull", f"openai:{MODEL}", "--json")
    assert proc.returncode == 0, proc.stderr
    [summary] = json.loads(proc.stdout)
    assert summary["up_to_date"] is True and summary["dim"] == 64
    assert summary["ref"] == f"openai:{MODEL}"
    assert "nothing to download" in summary["message"]
    assert [len(r.inputs) for r in fake.log] == [1]

    fake.add_faults(Fault(status=401))
    proc = oa("pull", f"openai:{MODEL}")
    assert proc.returncode == 1
    assert "authentication failed" in one_line_error(proc)


def test_ls_du_export_rm_cover_openai_caches(oa, fake, tmp_path):
    items = texts(20)
    assert embed(oa, items).returncode == 0
    listing = json.loads(oa("ls", "--json", check=True).stdout)
    [entry] = [e for e in listing if e["kind"] == "vectors"]
    assert entry["ref"] == f"openai:{MODEL}" and entry["backend"] == "openai"
    assert entry["count"] == 20 and entry["dim"] == 64
    assert "vector caches" in oa("du", check=True).stdout

    out = tmp_path / "vecs.npy"
    proc = oa("export", f"openai:{MODEL}", "--vectors", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert np.load(out).shape == (20, 64)

    proc = oa("rm", f"openai:{MODEL}", "-y")
    assert proc.returncode == 0, proc.stderr
    assert not [e for e in json.loads(oa("ls", "--json", check=True).stdout)
                if e["kind"] == "vectors"]


@pytest.mark.e2e  # what a fresh interpreter imports
def test_listing_commands_do_not_import_openai(oa, fake):
    assert embed(oa, texts(3)).returncode == 0
    for args in (["--help"], ["ls"], ["du"], ["plugins"]):
        python, *rest = embctl_argv(*args)
        proc = subprocess.run([python, "-X", "importtime", *rest],
                              env=oa.env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        imported = {line.split("|")[-1].strip().split(".")[0]
                    for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert "openai" not in imported and "numpy" not in imported, args


# -- secrets -------------------------------------------------------------------------------


@pytest.mark.e2e  # the openai client reads OPENAI_LOG once, at import: a fresh process
def test_the_key_never_appears_in_output_logs_or_files(oa, fake, tmp_path):
    outputs: list[str] = []

    def run(*args: str, process: bool = False, **kw) -> subprocess.CompletedProcess:
        proc = (oa.process if process else oa)(*args, **kw)
        outputs.extend([proc.stdout if isinstance(proc.stdout, str) else "", proc.stderr])
        return proc

    debug = {"OPENAI_LOG": "debug"}  # the openai client's own request logging
    items = texts(30)
    out = tmp_path / "out.jsonl"
    run("embed", f"openai:{MODEL}", "--lines", "-o", str(out), "--store-text",
        input="\n".join(items), env=debug, process=True)
    fake.add_faults(Fault(status=401, message="invalid key {key} (Bearer {key})"))
    failed = run("embed", f"openai:{MODEL}", "--lines", input="other text\n", env=debug,
                 process=True)
    assert failed.returncode == 1
    fake.add_faults(Fault(status=500, message="upstream said {key}", times=None))
    run("embed", f"openai:{MODEL}", "--lines", input="third text\n",
        env={"EMBCTL_OPENAI_MAX_RETRIES": "1"})
    fake.reset()
    fake.add_faults(Fault(malformed="json"))
    run("embed", f"openai:{MODEL}", "--lines", input="fourth text\n")
    run("pull", f"openai:{MODEL}", "--json")
    run("embed", f"openai:{MODEL}", "--lines", "--dry-run", input="\n".join(items))
    for args in (["ls"], ["ls", "--json"], ["du"], ["verify"], ["verify", "--json"],
                 ["plugins"], ["plugins", "--json"]):
        run(*args)
    run("export", f"openai:{MODEL}", "--vectors", "-o", str(tmp_path / "v.jsonl"))

    assert any("authentication failed" in text for text in outputs)
    leaks = [text for text in outputs if KEY in text or KEY[8:] in text]
    assert not leaks, leaks[0]
    for path in Path(tmp_path).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert KEY.encode() not in data and KEY[8:].encode() not in data, path
