"""``embctl serve``'s embeddings API with real clients: the ``openai`` client, embctl's own
``openai:`` backend, many concurrent clients, Ollama's /api/embed, and the failures the issue
names (unknown model, token arrays, limits, a full queue, a broken model) made to happen.

Every vector is compared with what ``embctl embed all-MiniLM-L6-v2`` computes apart from the
server (in-process, in a home with a vector cache of its own, so the server computes its
vectors itself).  The tests that talk to a running ``embctl serve`` are in the e2e tier; a
setting that stops it from starting is a plain CLI run.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import openai
import pytest
from support.runner import Embctl, copy_home
from support.serve import post, start_serve, stop

MODEL = "all-MiniLM-L6-v2"
SHORT = [f"note {i}: the refund policy allows returns within {i} days" for i in range(200)]
POOL = [f"client text {i} about shipping, invoices and the {i % 13}th warehouse"
        for i in range(160)]
BATCH_LINE = re.compile(r"embeddings \S+: (\d+) requests?, (\d+) inputs? \((\d+) cached, "
                        r"(\d+) computed\)")


@pytest.fixture(scope="module")
def expected(tmp_path_factory, pulled_home, hub_server) -> dict[str, np.ndarray]:
    """Reference vectors from ``embctl embed`` in a home of its own."""
    home = copy_home(pulled_home, tmp_path_factory.mktemp("reference"))
    texts = SHORT + POOL
    proc = Embctl.at(home, hub_server.url)("embed", MODEL, "--lines",
                                           input="\n".join(texts) + "\n")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line)["embedding"] for line in proc.stdout.splitlines()]
    return dict(zip(texts, np.array(rows, dtype=np.float32), strict=True))


def in_threads(target, args) -> None:
    """``target(a)`` for each ``a`` in ``args``, all at once, each in its own thread."""
    threads = [threading.Thread(target=target, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)


class Served:
    def __init__(self, home: Path, hub_url: str, env: dict[str, str] | None = None) -> None:
        self.embctl = Embctl.at(home, hub_url, **(env or {}))
        self.log = home / "serve.log"
        self.proc, self.url = start_serve(self.embctl.env, log=self.log)

    def client(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, **kw)

    def batches(self) -> list[tuple[int, int, int, int]]:
        """(requests, inputs, cached, computed) of each worker window so far."""
        return [tuple(map(int, m.groups())) for m in BATCH_LINE.finditer(self.log.read_text())]


@pytest.fixture(scope="module")
def served(tmp_path_factory, pulled_home, hub_server):
    server = Served(copy_home(pulled_home, tmp_path_factory.mktemp("served")), hub_server.url)
    yield server
    assert stop(server.proc) == 0, server.log.read_text()


def expected_revision(server: Served) -> str:
    refs = server.embctl.repo_dir / "refs" / "main"
    return refs.read_text().strip()[:8]


def check(got, texts: list[str], expected: dict[str, np.ndarray]) -> None:
    got = np.asarray(got, dtype=np.float32)
    want = np.stack([expected[t] for t in texts])
    assert got.shape == want.shape
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999
    np.testing.assert_allclose(got, want, atol=1e-4)


# -- the openai client ---------------------------------------------------------------------


@pytest.mark.e2e
def test_concurrent_first_requests_open_the_model_once(served, expected):
    """Six first requests at once, naming the model three ways: one session, one worker."""
    names = [MODEL, "sentence-transformers/all-MiniLM-L6-v2",
             "st:sentence-transformers/all-MiniLM-L6-v2"] * 2
    answers: dict[int, list] = {}
    gate = threading.Barrier(len(names))

    def first(i: int) -> None:
        client = served.client(timeout=300)
        gate.wait()
        got = client.embeddings.create(model=names[i], input=SHORT[i], encoding_format="float")
        answers[i] = got.data[0].embedding

    in_threads(first, range(len(names)))
    check([answers[i] for i in range(len(names))], SHORT[:len(names)], expected)
    opened = re.findall(r"embeddings \S+: opened (\S+)", served.log.read_text())
    assert opened == [f"st:sentence-transformers/{MODEL}@{expected_revision(served)}"]


@pytest.mark.e2e
def test_openai_client_base64_default_and_float(served, expected):
    client = served.client()
    texts = SHORT[:5]
    raw = client.embeddings.with_raw_response.create(model=MODEL, input=texts)
    body = json.loads(raw.http_response.text)
    assert all(isinstance(d["embedding"], str) for d in body["data"])  # base64 was asked for
    parsed = raw.parse()
    assert [d.index for d in parsed.data] == list(range(5))
    check([d.embedding for d in parsed.data], texts, expected)
    assert parsed.model == MODEL and parsed.usage.prompt_tokens > 0

    floats = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    check([d.embedding for d in floats.data], texts, expected)
    one = client.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2",
                                   input=SHORT[5])
    check([one.data[0].embedding], SHORT[5:6], expected)


@pytest.mark.e2e
def test_dimensions_on_a_model_without_matryoshka_dims_is_a_400(served, expected):
    """all-MiniLM-L6-v2 declares no Matryoshka dimensions: cutting its vectors is refused."""
    client = served.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input="x", dimensions=64)
    assert info.value.status_code == 400 and info.value.body["param"] == "dimensions"
    assert "declares no Matryoshka dimensions" in info.value.message
    assert "--truncate-dim" in info.value.message and "\n" not in info.value.message
    body = {"model": MODEL, "input": "x", "dimensions": 64}
    status, _, answer = post(served.url + "/v1/embeddings", body)
    assert status == 400 and set(answer["error"]) == {"message", "type", "param", "code"}
    status, _, answer = post(served.url + "/api/embed", body)  # Ollama's shape
    assert status == 400 and "declares no Matryoshka dimensions" in answer["error"]
    own = client.embeddings.create(model=MODEL, input=SHORT[10:12], dimensions=384,
                                   encoding_format="float")  # its own size: nothing is cut
    check([d.embedding for d in own.data], SHORT[10:12], expected)
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input="x", dimensions=385)
    assert info.value.status_code == 400
    assert info.value.body["param"] == "dimensions" and "at most 384" in info.value.message


MATRYOSHKA = "test-org/minilm-matryoshka"
CARD = ("---\nlibrary_name: sentence-transformers\ntags:\n- sentence-transformers\n"
        "- loss:MatryoshkaLoss\n---\n\nall-MiniLM-L6-v2's weights under a Matryoshka card.\n")


@pytest.mark.e2e
def test_dimensions_truncate_and_renormalize_a_matryoshka_model(served, expected, hub_root):
    """A model whose card declares Matryoshka dimensions (the tag sentence-transformers
    writes after training with MatryoshkaLoss): the server cuts and renormalizes."""
    from support.hub import minilm_source

    repo = hub_root / MATRYOSHKA
    if not repo.is_dir():
        for src in minilm_source().rglob("*"):
            if src.is_file() and src.name != "README.md" and "__pycache__" not in src.parts:
                dst = repo / src.relative_to(minilm_source())
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)  # the package's files, never written
                except OSError:
                    shutil.copyfile(src, dst)
        (repo / "README.md").write_text(CARD)
    served.embctl("pull", MATRYOSHKA, "-q", check=True)
    client = served.client()
    texts = SHORT[10:14]
    for fmt in ("float", "base64"):
        got = client.embeddings.create(model=MATRYOSHKA, input=texts, dimensions=64,
                                       encoding_format=fmt)
        vectors = np.array([d.embedding if fmt == "float" else
                            np.frombuffer(base64.b64decode(d.embedding), "<f4")
                            for d in got.data], dtype=np.float32)
        head = np.stack([expected[t][:64] for t in texts])
        head /= np.linalg.norm(head, axis=1, keepdims=True)
        np.testing.assert_allclose(vectors, head, atol=1e-4)


@pytest.mark.e2e
def test_models_list(served):
    ids = [m.id for m in served.client().models.list()]
    assert MODEL in ids


@pytest.mark.e2e
def test_errors_have_openai_shape(served):
    client = served.client()
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="no-such-org/no-such-model", input="hi")
    assert info.value.code == "model_not_found" and "not in this server's cache" in str(info.value)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="./local/dir", input="hi")  # never a path on the server
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model=MODEL, input=[[101, 2023, 102]])
    assert "token arrays" in info.value.message
    url = served.url + "/v1/embeddings"
    for body, words in ((b"{not json", "not valid JSON"), ({"model": MODEL}, "'input' is required"),
                        ({"model": MODEL, "input": ["a", 3]}, "'input[1]' is int"),
                        ({"model": MODEL, "input": []}, "non-empty list"),
                        ({"model": MODEL, "input": "a", "encoding_format": "int8"},
                         "encoding_format"),
                        ({"model": MODEL, "input": "a", "dimensions": 0}, "dimensions")):
        status, _, answer = post(url, body)
        assert status == 400, answer
        error = answer["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert words in error["message"] and "\n" not in error["message"]
    with urllib.request.urlopen(served.url + "/healthz", timeout=10) as response:
        assert response.status == 200  # still up


@pytest.mark.e2e
def test_ollama_embed(served, expected):
    texts = SHORT[20:23]
    status, _, body = post(served.url + "/api/embed", {"model": MODEL, "input": texts})
    assert status == 200, body
    assert body["model"] == MODEL
    check(body["embeddings"], texts, expected)
    status, _, body = post(served.url + "/api/embed", {"model": "nope/nope", "input": "x"})
    assert status == 404 and "not found" in body["error"]


# -- embctl's own openai: backend ----------------------------------------------------------


@pytest.mark.e2e
def test_embctl_openai_backend_against_serve(served, expected, tmp_path):
    texts = SHORT[30:60]
    client = Embctl.at(tmp_path)  # another home, no key: a local server gets a placeholder
    proc = client("embed", f"openai:{MODEL}", "--base-url", served.url + "/v1", "--lines",
                  "--batch-size", "8", input="\n".join(texts) + "\n")
    assert proc.returncode == 0, proc.stderr
    check([json.loads(line)["embedding"] for line in proc.stdout.splitlines()], texts, expected)


# -- many clients, batching, the cache -----------------------------------------------------


@pytest.mark.e2e
def test_many_concurrent_clients_get_their_own_vectors(served, expected):
    before = served.batches()
    results: dict[tuple[int, int], list] = {}
    errors: list[BaseException] = []
    plan = {(c, r): [POOL[(c * 11 + r * 16 + i) % len(POOL)] for i in range(16)]
            for c in range(10) for r in range(3)}
    gate = threading.Barrier(10)

    def client_thread(c: int) -> None:
        try:
            client = served.client(timeout=300)
            gate.wait()
            for r in range(3):
                got = client.embeddings.create(model=MODEL, input=plan[c, r])
                results[c, r] = [d.embedding for d in got.data]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    in_threads(client_thread, range(10))
    assert not errors, errors
    for key, texts in plan.items():
        check(results[key], texts, expected)
    windows = served.batches()[len(before):]
    assert sum(w[0] for w in windows) == 30
    distinct = {t for texts in plan.values() for t in texts}
    assert sum(w[3] for w in windows) == len(distinct)  # each text computed once, all clients


@pytest.mark.e2e
def test_repeat_is_served_from_the_cache(served, expected):
    client = served.client()
    texts = SHORT[100:132]
    first = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert served.batches()[-1][2:] == (0, 32)
    again = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert served.batches()[-1][2:] == (32, 0)  # all hits, nothing computed
    assert [d.embedding for d in again.data] == [d.embedding for d in first.data]
    check([d.embedding for d in again.data], texts, expected)


# -- limits, the full queue, shutdown ------------------------------------------------------


@pytest.mark.e2e
def test_limits_full_queue_and_sigterm(tmp_path, pulled_home, hub_server):
    """A queue of one request, 100 inputs and 40 kB a request (the EMBCTL_SERVE_* variables):
    413 and 400 over the limits; a burst answered 429 for real; SIGTERM exits 0 and the
    vector cache holds what was computed."""
    server = Served(copy_home(pulled_home, tmp_path / "tight"), hub_server.url, {
        "EMBCTL_SERVE_MAX_QUEUE": "1", "EMBCTL_SERVE_MAX_INPUTS": "100",
        "EMBCTL_SERVE_MAX_BODY_BYTES": "40000"})
    url = server.url + "/v1/embeddings"
    try:
        status, _, body = post(url, {"model": MODEL, "input": ["x"] * 101})
        assert status == 400 and body["error"]["param"] == "input", body
        status, _, body = post(url, {"model": MODEL, "input": ["y" * 50_000]})
        assert status == 413 and "40,000 bytes" in body["error"]["message"], body
        client = server.client(timeout=300)
        client.embeddings.create(model=MODEL, input="warm up: load the model")

        long = [f"{i} " + "a long passage about returns and refunds " * 20 for i in range(32)]
        outcomes: list = []

        def burst(k: int) -> None:
            try:
                got = client.embeddings.create(model=MODEL, input=long, encoding_format="float")
                outcomes.append(np.array([d.embedding for d in got.data]))
            except openai.RateLimitError as exc:
                outcomes.append(exc)

        in_threads(burst, range(8))
        limited = [o for o in outcomes if isinstance(o, openai.RateLimitError)]
        served_ok = [o for o in outcomes if not isinstance(o, openai.RateLimitError)]
        assert len(outcomes) == 8 and limited and served_ok
        assert limited[0].status_code == 429 and limited[0].code == "rate_limit_exceeded"
        assert limited[0].response.headers.get("retry-after") == "1"
        for vectors in served_ok[1:]:
            np.testing.assert_allclose(vectors, served_ok[0], atol=1e-5)
        after = client.embeddings.create(model=MODEL, input="still serving")
        assert len(after.data[0].embedding) == 384
    finally:
        code = stop(server.proc)
    assert code == 0, server.log.read_text()
    listing = json.loads(server.embctl("ls", "--json", check=True).stdout)
    counts = [row["count"] for row in listing if row["kind"] == "vectors"]
    assert counts == [32 + 2]  # the long texts once, the warm-up and the last request


@pytest.mark.e2e
def test_model_failure_is_a_500_and_the_server_stays_up(tmp_path, pulled_home, hub_server):
    home = copy_home(pulled_home, tmp_path / "broken")
    blob = next((home / "hf" / "hub").glob(
        "models--sentence-transformers--all-MiniLM-L6-v2/snapshots/*/model.safetensors"))
    target = blob.resolve()
    data = bytearray(target.read_bytes())
    data[-100:] = bytes(100)  # same size, other bytes: no longer its hash
    target.unlink()
    target.write_bytes(bytes(data))
    server = Served(home, hub_server.url)
    try:
        client = server.client()
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as info:
                client.embeddings.create(model=MODEL, input=["hello"])
            assert info.value.status_code == 500 and MODEL in info.value.message
            assert "\n" not in info.value.message
        status, _, body = post(server.url + "/api/embed", {"model": MODEL, "input": "x"})
        assert status == 500 and body["error"]
    finally:
        assert stop(server.proc) == 0
    assert "Traceback" not in server.log.read_text()


def test_bad_limit_setting_refuses_to_start(tmp_path):
    proc = Embctl.at(tmp_path)("serve", "--port", "0",
                               env={"EMBCTL_SERVE_MAX_QUEUE": "none"}, timeout=60)
    assert proc.returncode == 2
    assert "EMBCTL_SERVE_MAX_QUEUE" in proc.stderr and "Traceback" not in proc.stderr
