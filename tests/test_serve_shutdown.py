"""``embctl serve`` stopped under load: five clients wait for 64 long texts each when SIGTERM
(and, in one test, a second signal) arrives.

Every client gets its 64 vectors or a JSON 503 in OpenAI's shape (``shutting_down``, with
``Retry-After``); a request sent after the signal is refused (no connection, or that 503); the
server exits 0 (130 after a Ctrl-C) within 10 s, with no traceback and no abort in its log;
and the vector cache it leaves passes ``embctl verify`` and holds only whole rows: each equal
to a fresh computation of its text, and every vector a client was answered among them.

Also: a request the model can finish within the grace is answered (200); a model stuck in a
call (a remote API that does not answer) does not hold the exit past 10 s.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from support.openai_server import Fault
from support.runner import Embctl, copy_home
from support.serve import output, start_serve, stop

pytest.importorskip("uvicorn")

MODEL = "all-MiniLM-L6-v2"
CLIENTS, PER_CLIENT = 5, 64
WARM = "warming the model up before the load"
VOCABULARY = (
    "the shipment arrived late because the warehouse in the northern district closed early "
    "for inventory while customers waited for refunds invoices and replacement parts that "
    "support agents promised within three business days after the storm damaged several "
    "trucks roads bridges power lines and the regional sorting center where most parcels are "
    "scanned weighed labeled and loaded onto vans driven by contractors who complain about "
    "fuel prices overtime rules insurance paperwork and the new routing software which "
    "sometimes sends drivers across the river twice before noon"
).split()


def paragraph(seed: int) -> str:
    """A distinct paragraph of 200 to 260 words (more tokens than the model keeps)."""
    rng = random.Random(seed)
    words = [rng.choice(VOCABULARY) for _ in range(rng.randint(200, 260))]
    return f"Report {seed}: " + " ".join(words) + "."


TEXTS = [[paragraph(1000 * c + i) for i in range(PER_CLIENT)] for c in range(CLIENTS)]


class Reference:
    """Fresh vectors of the texts a test has to check, computed by ``embctl embed`` in a home
    of its own (no cache), each text once per module: only the few texts a server committed
    or answered before it stopped, not the 320 the clients sent."""

    def __init__(self, home: Embctl) -> None:
        self.home = home
        self.vectors: dict[str, np.ndarray] = {}

    def of(self, texts: list[str]) -> dict[str, np.ndarray]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            out = self.home.home / f"reference-{len(self.vectors)}.npy"
            proc = self.home("embed", MODEL, "--lines", "--no-cache", "-q", "-o", str(out),
                             input="\n".join(missing) + "\n", timeout=900)
            assert proc.returncode == 0, proc.stderr
            self.vectors.update(zip(missing, np.load(out), strict=True))
        return {t: self.vectors[t] for t in texts}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pulled_home, hub_server) -> Reference:
    return Reference(Embctl.at(copy_home(pulled_home, tmp_path_factory.mktemp("reference")),
                               hub_server.url))


def exported(home: Embctl, path: Path) -> dict[str, np.ndarray]:
    """The model's vector cache in ``home``: key -> vector; {} when the model has none (it
    computed nothing)."""
    proc = home("export", MODEL, "--vectors", "-o", str(path))
    if proc.returncode == 1 and "no vector cache found" in proc.stderr:
        return {}
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert not [r for r in rows if r.get("text") is not None]  # a server keeps no texts
    return {r["key"]: np.asarray(r["embedding"], dtype=np.float32) for r in rows}


def cached_texts(home: Embctl, texts: list[str]) -> dict[str, np.ndarray]:
    """Which of ``texts`` the model's vector cache in ``home`` holds: text -> its vector
    (``embctl export --texts``: the texts keyed as embed keys them; nothing computed)."""
    sent = home.home / "sent.jsonl"
    sent.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = home.home / "matched.jsonl"
    proc = home("export", MODEL, "--vectors", "--texts", str(sent), "-o", str(out), "-q")
    if proc.returncode == 1 and "no vector cache found" in proc.stderr:
        return {}
    assert proc.returncode in (0, 1), proc.stderr  # 1: some texts not cached
    rows = (json.loads(line) for line in out.read_text().splitlines())
    return {r["text"]: np.asarray(r["embedding"], dtype=np.float32) for r in rows}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def ask(url: str, texts: list[str], model: str = MODEL) -> dict[str, Any]:
    """One client's request -> its outcome: {"status", "vectors"} or {"status", "headers",
    "body"} (the body parsed as JSON when it is), or {"error"} when no answer came."""
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    try:
        got = client.embeddings.create(model=model, input=texts, encoding_format="float")
    except openai.APIStatusError as exc:
        try:
            body = exc.response.json()
        except ValueError:
            body = exc.response.text
        return {"status": exc.status_code, "headers": dict(exc.response.headers), "body": body}
    except openai.APIConnectionError as exc:
        return {"error": f"{type(exc).__name__}: {exc.__cause__!r}"}
    return {"status": 200, "vectors": [d.embedding for d in got.data]}


def is_shutting_down(outcome: dict[str, Any]) -> bool:
    """A 503 in OpenAI's error shape that says the server is shutting down, with Retry-After."""
    body = outcome.get("body")
    if outcome.get("status") != 503 or not isinstance(body, dict):
        return False
    error = body.get("error")
    return (isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
            and error["code"] == "shutting_down" and "shutting down" in error["message"]
            and {k.lower() for k in outcome["headers"]} >= {"retry-after"})


def load(url: str, groups: list[list[str]] = TEXTS
         ) -> tuple[list[threading.Thread], list[dict[str, Any] | None]]:
    """One client per group of texts (the five clients), started: each thread fills its slot
    with its outcome, and the texts it sent (``texts``)."""
    outcomes: list[dict[str, Any] | None] = [None] * len(groups)

    def client(c: int) -> None:
        outcomes[c] = {**ask(url, groups[c]), "texts": groups[c], "at": time.monotonic()}

    threads = [threading.Thread(target=client, args=(c,)) for c in range(len(groups))]
    for t in threads:
        t.start()
    return threads, outcomes


def refused_after_signal(url: str, until: float) -> list[dict[str, Any]]:
    """Requests sent after the signal, until ``until`` or until the port is closed."""
    seen = []
    while time.monotonic() < until:
        outcome = ask(url, ["sent after the signal"])
        seen.append(outcome)
        if "error" in outcome:  # the listening socket is closed: nothing more to learn
            break
        time.sleep(0.05)
    return seen


def check_cache(server: Embctl, reference: Reference, outcomes: list[dict[str, Any]]) -> int:
    """``embctl verify`` passes; every row is the vector of a text the clients sent, equal to
    a fresh computation of it; every vector a client got is among them.  -> the number of
    rows."""
    proc = server("verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = exported(server, server.home / "after.jsonl")
    sent = [WARM] + [t for group in TEXTS for t in group]
    cached = cached_texts(server, sent)
    assert len(cached) == len(rows), "rows whose key is no text the clients sent"
    fresh = reference.of(list(cached))
    for text, vector in cached.items():
        assert vector.shape == (384,) and np.isfinite(vector).all()
        assert cosine(vector, fresh[text]) >= 0.9999, text[:60]
    for outcome in outcomes:
        if outcome["status"] == 200:
            for text, got in zip(outcome["texts"], outcome["vectors"], strict=True):
                assert text in cached, "a vector answered but not committed"
                assert cosine(np.asarray(got, dtype=np.float32), cached[text]) >= 0.9999
    return len(rows)


def check_outcomes(outcomes: list[dict[str, Any] | None], reference: Reference) -> None:
    for c, outcome in enumerate(outcomes):
        assert outcome is not None, f"client {c} got no answer"
        if outcome.get("status") == 200:
            assert len(outcome["vectors"]) == len(outcome["texts"])
            fresh = reference.of(outcome["texts"])
            for text, got in zip(outcome["texts"], outcome["vectors"], strict=True):
                assert cosine(np.asarray(got, dtype=np.float32), fresh[text]) >= 0.9999
        else:
            assert is_shutting_down(outcome), f"client {c}: {outcome}"


#: What a clean shutdown never logs: tracebacks, the C++ runtime's abort, uvicorn cancelling
#: handlers when its grace runs out, asyncio's complaint about tasks left pending.
UNCLEAN = ("Traceback", "terminate called", "Exception in ASGI", "timeout graceful shutdown",
           "was destroyed but it is pending")


def check_exit(proc, code: int, expected: int, took: float) -> str:
    """Exit ``expected`` (a Popen code: -6 is an abort, the shell's 134) within 10 s of the
    first signal, and a clean log.  -> the log."""
    log = output(proc)[1]
    found = [marker for marker in UNCLEAN if marker in log]
    assert (code, found) == (expected, []), f"took {took:.1f} s; log:\n{log[-6000:]}"
    assert took <= 10, log[-6000:]
    return log


@pytest.mark.e2e
@pytest.mark.parametrize("warm", [True, False], ids=["model-loaded", "model-loading"])
def test_sigterm_under_load(pulled: Embctl, reference, warm: bool):
    """SIGTERM 1.5 s after five clients sent 64 long texts each (the model already loaded,
    or still loading): each client gets its vectors or a JSON 503, later requests are
    refused, the server exits 0 within 10 s, and its vector cache is whole."""
    proc, url = start_serve(pulled.env)
    try:
        if warm:
            assert ask(url, [WARM])["status"] == 200
        threads, outcomes = load(url)
        time.sleep(1.5)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        late = refused_after_signal(url, signalled + 2)
        code = proc.wait(timeout=60)
        took = time.monotonic() - signalled
        for t in threads:
            t.join(120)
        log = check_exit(proc, code, 0, took)
        assert late and all("error" in o or is_shutting_down(o) for o in late), late
        check_outcomes(outcomes, reference)
    finally:
        stop(proc)
    rows = check_cache(pulled, reference, outcomes)
    answered = sum(o["status"] == 200 for o in outcomes)
    print(f"\n{answered} of {CLIENTS} clients answered 200, the others 503; {rows} rows "
          f"cached; exit {code} {took:.1f} s after SIGTERM")
    assert "shutting down" in log


@pytest.mark.e2e
@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_second_signal_stops_at_once(pulled: Embctl, reference, second: int):
    """A second signal during the grace: every request still waiting gets its 503 at once,
    the batch being computed is committed, and the server exits (130 after a Ctrl-C, else 0)
    with its cache whole."""
    proc, url = start_serve(pulled.env)
    try:
        assert ask(url, [WARM])["status"] == 200
        threads, outcomes = load(url)
        time.sleep(1.5)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        proc.send_signal(second)
        code = proc.wait(timeout=60)
        took = time.monotonic() - signalled
        for t in threads:
            t.join(120)
        log = check_exit(proc, code, 130 if second == signal.SIGINT else 0, took)
        check_outcomes(outcomes, reference)
        assert "second signal" in log, log[-4000:]
        # The 503s came with the second signal, not when the 6 s of grace ran out.
        assert all(o["at"] - signalled < 6 for o in outcomes if o["status"] == 503), outcomes
    finally:
        stop(proc)
    check_cache(pulled, reference, outcomes)
    print(f"\nexit {code} {took:.1f} s after the first signal")


@pytest.mark.e2e
def test_a_model_stuck_in_a_call_does_not_hold_the_exit(oa: Embctl, fake):
    """A model that does not come back (a remote API sending its answer 15 s late): its
    request gets the 503 when the grace runs out, and the server exits 0 within 10 s all the
    same, saying which model it did not wait for."""
    fake.add_faults(Fault(delay_s=15))
    proc, url = start_serve({**oa.env, "EMBCTL_OPENAI_TIMEOUT": "60"})
    try:
        outcome: list[dict[str, Any]] = []
        waiting = threading.Thread(target=lambda: outcome.append(
            ask(url, ["an answer that comes too late"], "openai:text-embedding-3-small")))
        waiting.start()
        time.sleep(1.5)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        took = time.monotonic() - signalled
        waiting.join(60)
        log = check_exit(proc, code, 0, took)
        assert len(outcome) == 1 and is_shutting_down(outcome[0]), outcome
        assert "openai:text-embedding-3-small still computing a batch; exiting without it" \
            in log, log
    finally:
        stop(proc)


@pytest.mark.e2e
def test_a_request_in_flight_at_sigterm_finishes(pulled: Embctl, reference):
    """One client's 16 long texts (one batch of the model) in flight when SIGTERM arrives:
    computed well within the grace, answered 200 with the right vectors, and committed."""
    proc, url = start_serve(pulled.env)
    try:
        assert ask(url, [WARM])["status"] == 200
        threads, outcomes = load(url, [TEXTS[0][:16]])
        time.sleep(0.5)  # sent: the model is computing it
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        took = time.monotonic() - signalled
        threads[0].join(120)
        check_exit(proc, code, 0, took)
        check_outcomes(outcomes, reference)
    finally:
        stop(proc)
    check_cache(pulled, reference, outcomes)
    assert outcomes[0]["status"] == 200, outcomes[0]  # ~1 s of work, 6 s of grace
