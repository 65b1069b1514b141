"""Unit tests of the openai backend's parts: retry loop, Retry-After, validation, scrubbing,
token estimates, settings.  No network, no sleeping (``sleep`` is injected)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from embctl_openai.redact import scrub
from embctl_openai.retry import RetryPolicy, Throttle, Verdict, call_with_retries
from embctl_openai.retry import parse_retry_after as retry_after
from embctl_openai.settings import from_options
from embctl_openai.tokens import estimate_tokens
from embctl_openai.validate import MalformedResponse, parse_embeddings

from embctl.errors import EmbctlError, UsageError


class Flaky:
    def __init__(self, failures: list[Verdict]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise RuntimeError(self.failures.pop(0))
        return "ok"


def classify(exc: BaseException) -> Verdict | None:
    return exc.args[0] if isinstance(exc, RuntimeError) else None


def test_retry_honours_retry_after_and_backs_off_exponentially():
    slept: list[float] = []
    fn = Flaky([Verdict("429", True, 2.5, True), Verdict("500", True), Verdict("500", True)])
    policy = RetryPolicy(max_attempts=6, backoff_s=1.0, max_backoff_s=30)
    assert call_with_retries(fn, classify, policy, sleep=slept.append) == "ok"
    assert fn.calls == 4
    assert slept[0] == 2.5  # Retry-After, exactly
    assert 0.75 * 2 <= slept[1] <= 2 and 0.75 * 4 <= slept[2] <= 4  # 1 s doubling, jitter off


def test_retry_is_bounded_and_fatal_errors_are_not_retried():
    fn = Flaky([Verdict("503", True)] * 10)
    with pytest.raises(EmbctlError, match="gave up after 3 attempts"):
        call_with_retries(fn, classify, RetryPolicy(max_attempts=3), sleep=lambda s: None)
    assert fn.calls == 3
    fn = Flaky([Verdict("401 bad key", False)])
    with pytest.raises(EmbctlError, match="401 bad key") as info:
        call_with_retries(fn, classify, RetryPolicy(), sleep=lambda s: None)
    assert fn.calls == 1 and info.value.__cause__ is None and info.value.__suppress_context__


def test_retry_after_over_the_ceiling_fails_and_unknown_errors_propagate():
    fn = Flaky([Verdict("429", True, 600.0, True)])
    with pytest.raises(EmbctlError, match="retry after 600 s"):
        call_with_retries(fn, classify, RetryPolicy(max_retry_after_s=120), sleep=lambda s: None)

    def bug() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        call_with_retries(bug, classify, RetryPolicy(), sleep=lambda s: None)


def test_a_429_pauses_every_worker():
    now = [100.0]
    throttle = Throttle(clock=lambda: now[0])
    fn = Flaky([Verdict("429", True, 3.0, True)])
    slept: list[float] = []
    call_with_retries(fn, classify, RetryPolicy(), throttle=throttle, sleep=slept.append)
    assert throttle.remaining() == 3.0  # another worker would wait this long first


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after": "7"}, 7.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
    ({"retry-after": "soon"}, None),
    ({}, None),
])
def test_parse_retry_after(headers, seconds):
    import email.utils

    now = email.utils.mktime_tz(email.utils.parsedate_tz("Wed, 21 Oct 2015 07:28:00 GMT"))
    assert retry_after(headers, now=now) == seconds


def body(vectors, b64: bool = True, **extra) -> bytes:
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(np.asarray(v, "<f4").tobytes()).decode() if b64
             else list(v)} for i, v in enumerate(vectors)]
    return json.dumps({"object": "list", "data": data, "usage": {"prompt_tokens": 5}, **extra}
                      ).encode()


def test_parse_embeddings_base64_float_and_index_order():
    vecs = np.arange(12, dtype=np.float32).reshape(3, 4)
    out, tokens = parse_embeddings(body(vecs), 3, 4)
    assert out.dtype == np.float32 and tokens == 5
    np.testing.assert_array_equal(out, vecs)
    payload = json.loads(body(vecs.tolist(), b64=False))
    payload["data"].reverse()  # servers may answer out of order: "index" decides
    out, _ = parse_embeddings(json.dumps(payload), 3, None)
    np.testing.assert_array_equal(out, vecs)


@pytest.mark.parametrize(("raw", "count", "dim", "message"), [
    (b"not json", 1, None, "not JSON"),
    (b'{"object": "list"}', 1, None, "no 'data'"),
    (body([[1, 2]]), 2, None, "1 vector for 2 inputs"),
    (body([[1, 2], [1, 2, 3]]), 2, None, "differing dimensions"),
    (body([[1, 2, 3]]), 1, 4, "3 dimensions, expected 4"),
    (body([[1, "x"]], b64=False), 1, None, "non-numbers"),
    (body([[1, None]], b64=False), 1, None, "non-numbers"),
    (body([[1, float("nan")]]), 1, None, "NaN"),
    (body([[]], b64=False), 1, None, "empty"),
    (b'{"data": [{"index": 0, "embedding": "%%%"}]}', 1, None, "not base64"),
    (b'{"data": [{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [2]}]}', 2, None,
     "duplicate"),
    (b'{"data": [{"index": 5, "embedding": [1]}]}', 1, None, "bad index"),
])
def test_malformed_bodies_are_rejected(raw, count, dim, message):
    with pytest.raises(MalformedResponse, match=message):
        parse_embeddings(raw, count, dim)


def test_scrub_masks_the_key_bearer_tokens_and_sk_keys():
    key = "sk-proj-ABCDEF1234567890"
    text = f"bad key {key}; header Authorization: Bearer abc.def; other sk-zzzzzzzzzzzz"
    clean = scrub(text, (key,))
    assert key not in clean and "abc.def" not in clean and "sk-zzzz" not in clean
    assert scrub("nothing secret", (None,)) == "nothing secret"


def test_token_estimate_is_bytes_over_four_rounded_up():
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("é" * 4) == 2  # 8 UTF-8 bytes
    assert estimate_tokens("") == 1


def test_settings(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "EMBCTL_OPENAI_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    s = from_options("text-embedding-3-small", {})
    assert s.base_url == "https://api.openai.com/v1" and s.max_input_tokens == 8192
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw@localhost:8000/v1/?key=zzz")
    with pytest.raises(UsageError, match="credentials in the URL") as refused:
        from_options("nomic-embed-text:v1.5", {})  # issue #10: refused, never sent as Basic
    assert "pw" not in str(refused.value) and "user" not in str(refused.value)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1/?key=zzz")
    s = from_options("nomic-embed-text:v1.5", {"concurrency": 8, "dimensions": 128})
    assert s.host == "localhost:8000/v1" and s.concurrency == 8 and s.dimensions == 128
    assert "zzz" not in s.host and s.max_input_tokens is None
    monkeypatch.delenv("OPENAI_BASE_URL")
    with pytest.raises(UsageError, match="at most 1536"):
        from_options("text-embedding-3-small", {"dimensions": 4096})
    with pytest.raises(UsageError, match="does not support"):
        from_options("text-embedding-ada-002", {"dimensions": 256})
    with pytest.raises(UsageError, match="bad base URL"):
        from_options("m", {"base_url": "ftp://x"})
    with pytest.raises(UsageError, match="--concurrency"):
        from_options("m", {"concurrency": "many"})
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-000000000000")
    assert "sk-secret" not in repr(from_options("m", {}))


@pytest.mark.parametrize("dims", [1536, 256])  # one base64 text per response / per vector
def test_parse_without_pybase64_and_orjson_gives_the_same_vectors(monkeypatch, dims):
    from embctl_openai import validate

    rng = np.random.default_rng(dims)
    want = rng.standard_normal((5, dims)).astype(np.float32)
    body = json.dumps({"data": [{"index": i, "embedding": base64.b64encode(v.tobytes()).decode()}
                                for i, v in reversed(list(enumerate(want)))]})
    fast, _ = parse_embeddings(body, 5, dims)
    monkeypatch.setitem(__import__("sys").modules, "pybase64", None)  # import fails
    monkeypatch.setitem(__import__("sys").modules, "orjson", None)
    monkeypatch.setattr(validate, "_decode_b64", None)  # restored after the test
    monkeypatch.setattr(validate, "_loads", None)  # both chosen again on the next call
    plain, _ = parse_embeddings(body, 5, dims)
    assert validate._loads is json.loads
    np.testing.assert_array_equal(fast, want)
    np.testing.assert_array_equal(plain, want)
    bad = body.replace('"embedding": "', '"embedding": "!', 1)
    with pytest.raises(MalformedResponse, match="is not base64"):
        parse_embeddings(bad, 5, dims)
