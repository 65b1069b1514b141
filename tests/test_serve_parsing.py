"""The pure functions behind `embctl serve`'s answers to a client's mistakes (in-process, no
server): request parsing (nested, NaN, lone surrogates, echoes cut short), the paths-info
body, the header checks, the access log's redaction and the work limit's token counting.
The same behaviours against a real server: tests/test_serve_inputs.py."""

from __future__ import annotations

import itertools
import json
import types

import pytest
from support.tokens import snapshot_of, tokens_of

from embctl.errors import UsageError
from embctl.serve.config import ServeConfig
from embctl.serve.embeddings import limits_of
from embctl.serve.headers import authorization_count, body_encoding
from embctl.serve.mirror import BadRequest, paths_info_request
from embctl.serve.openai_shapes import ApiError, Limits, parse_ollama, parse_openai, show
from embctl.serve.redact import is_secret, redact_query, redact_target
from embctl.serve.worklimit import (
    DEFAULT_MAX_REQUEST_TOKENS,
    KeptLengths,
    WorkLimit,
    bound,
    count,
    estimate,
)

MODEL = "all-MiniLM-L6-v2"
REPO = "sentence-transformers/all-MiniLM-L6-v2"
LIMITS = Limits(max_inputs=2048, max_body_bytes=8 << 20)
UNDER = [f"note {i}: the refund policy allows returns within {i} days" for i in range(12)]
#: 2,587 characters, 640 tokens (MiniLM computes 256 of them).
LONG = " ".join(itertools.islice(itertools.cycle(
    "the refund for an order is paid to the card it came from in ten days".split()), 600))


# -- unit tests: parsing ----------------------------------------------------------------------


def body(**fields) -> bytes:
    return json.dumps({"model": MODEL, "input": "x", **fields}).encode()


@pytest.mark.parametrize("raw, param, words", [
    (b"[" * 100_000, None, "nested too deeply"),
    (b'{"model": "m", "input": ' + b"[" * 100_000, None, "nested too deeply"),
    (b'{"model": "m", "input": "\\ud800"}', "input", "lone surrogate (\\ud800) at character 0"),
    (b'{"model": "m", "input": ["ok", "a\\udfffb"]}', "input", "'input[1]'"),
    (b'{"model": "m", "input": "\\ude00\\ud83d"}', "input", "lone surrogate"),
    (b'{"model": "\\ud800", "input": "x"}', "model", "lone surrogate"),
    (b'{"model": "m", "input": "x", "user": NaN}', None, "NaN is not a JSON value"),
    (b'{"model": "m", "input": "x", "dimensions": -Infinity}', None, "-Infinity"),
    (b'{"model": "m", "input": "x", "dimensions": 1' + b"0" * 5000 + b"}", None,
     "more than 4,300 digits"),
    (body(encoding_format=[]), "encoding_format", "not []"),
    (body(encoding_format=""), "encoding_format", "not ''"),
    (body(encoding_format="z" * 100_000), "encoding_format", "..."),
    (body(dimensions=json.loads("[" * 500 + "]" * 500)), "dimensions", "[[[[...]]]]"),
    (body(model="m" * 2000), "model", "at most 1,024"),
    (body(input=[[101, 2023, 102]]), "input", "check_embedding_ctx_length=False"),
    (b'{"model": "m", "input": "x", "input": 5}', "input", "not int"),
    (b"\xef\xbb\xbf\xff", None, "not valid JSON"),
])
def test_parse_refuses_with_400(raw, param, words):
    for parse in (parse_openai, parse_ollama):
        if parse is parse_ollama and param == "encoding_format":
            continue  # Ollama's route has no encoding_format
        with pytest.raises(ApiError) as info:
            parse(raw, LIMITS)
        assert info.value.status == 400 and info.value.param == param
        assert words in info.value.message
        assert len(info.value.message) < 500
        info.value.message.encode("utf-8")  # never a surrogate in what is answered


def test_parse_takes_valid_unicode_and_escapes():
    got = parse_openai(b'{"model": "m", "input": ["\\ud83d\\ude00", "\\\\ud800", ""]}', LIMITS)
    assert got.texts == ["\U0001F600", "\\ud800", ""]
    assert parse_openai(body(encoding_format=None), LIMITS).encoding == "float"


def test_api_error_never_carries_a_surrogate():
    error = ApiError(404, "model '\ud800' not found")
    assert error.message == "model '\\ud800' not found"
    assert show("x" * 10_000).endswith("xxx'") and len(show("x" * 10_000)) < 80


@pytest.mark.parametrize("raw, ctype, expected", [
    (b'{"paths": ["config.json"], "expand": true}', "application/json", (["config.json"], True)),
    (b'{"paths": "config.json"}', "application/json", (["config.json"], False)),
    (b'{"paths": null}', "application/json", ([], False)),
    (b'{"paths": ["a", 1]}', "application/json", (["a"], False)),
    (b"[1, 2]", "application/json", ([], False)),
    (b"paths=a&paths%5B%5D=b&expand=1", "application/x-www-form-urlencoded", (["a", "b"], True)),
    (b"paths=%ff", "application/x-www-form-urlencoded", (["\ufffd"], False)),
])
def test_paths_info_body(raw, ctype, expected):
    assert paths_info_request(raw, ctype) == expected


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"paths": 5}', b'{"paths": {"a": 1}}',
                                 b'{"paths": NaN}', b"\xff", b'{"paths": '])
def test_paths_info_body_refused(raw):
    with pytest.raises(BadRequest):
        paths_info_request(raw, "application/json")


def test_header_checks():
    assert authorization_count([(b"authorization", b"Bearer a"), (b"host", b"x"),
                                (b"authorization", b"Bearer a")]) == 2
    assert body_encoding([(b"content-encoding", b"gzip"), (b"content-length", b"20")]) == "gzip"
    assert body_encoding([(b"content-encoding", b"identity"), (b"content-length", b"20")]) \
        is None
    assert body_encoding([(b"content-encoding", b"gzip")]) is None  # no body
    assert body_encoding([(b"content-encoding", b"br, identity"),
                          (b"transfer-encoding", b"chunked")]) == "br"


# -- unit tests: redaction ----------------------------------------------------------------------


@pytest.mark.parametrize("target, expected", [
    ("/healthz?token=abc", "/healthz?token=REDACTED"),
    ("/x?search=bert&Access_Token=a&API_KEY=b&key=c&password=d&secret=e&author=me",
     "/x?search=bert&Access_Token=REDACTED&API_KEY=REDACTED&key=REDACTED&password=REDACTED"
     "&secret=REDACTED&author=me"),
    ("/x?apiKey=a&api-key=b&x-amz-signature=c&hf_token=d&client_secret=e&%74oken=f",
     "/x?apiKey=REDACTED&api-key=REDACTED&x-amz-signature=REDACTED&hf_token=REDACTED"
     "&client_secret=REDACTED&%74oken=REDACTED"),
    ("/x?a=1;token=t;b=2", "/x?a=1;token=REDACTED;b=2"),
    ("/x?token=&token&keyword=k&expand[]=a", "/x?token=&token&keyword=k&expand[]=a"),
    ("/x?TOKEN=a=b&passwd=%20", "/x?TOKEN=REDACTED&passwd=REDACTED"),
    ("/no/query", "/no/query"),
])
def test_redact_target(target, expected):
    assert redact_target(target) == expected


def test_is_secret_words():
    for name in ("token", "Token", "sessionid", "private_key", "sig", "auth", "my.key",
                 "key[]", "PASSWORD", "apikey"):
        assert is_secret(name), name
    for name in ("author", "keyword", "search", "expand", "limit", "blobs", "monkey"):
        assert not is_secret(name), name
    assert redact_query("") == ""


# -- unit tests: the work limit ---------------------------------------------------------------


def test_limits_of_max_request_tokens(monkeypatch):
    var = "EMBCTL_SERVE_MAX_REQUEST_TOKENS"
    monkeypatch.delenv(var, raising=False)
    assert limits_of(ServeConfig())["max_request_tokens"] == DEFAULT_MAX_REQUEST_TOKENS
    assert DEFAULT_MAX_REQUEST_TOKENS >= 2048 * 512
    monkeypatch.setenv(var, "500")
    assert limits_of(ServeConfig())["max_request_tokens"] == 500
    assert limits_of(ServeConfig(max_request_tokens=300))["max_request_tokens"] == 300
    monkeypatch.setenv(var, "0")
    with pytest.raises(UsageError, match=var):
        limits_of(ServeConfig())


@pytest.fixture
def embedder(pulled):
    """The st backend's embedder of the pulled model (its tokenizer; torch is not loaded)."""
    from embctl_st.model import STEmbedder

    from embctl.backends import Model

    path = snapshot_of(pulled.home)
    return STEmbedder(Model(MODEL, "st", REPO), path, path.name, {})


TEXTS = ["hello", "Ünïcödé тексты 文字", "\U0001F600 emoji", "", LONG, "a b c d e f g"]


def test_count_with_token_lengths_is_kept_for_the_worker(embedder, pulled):
    expected = tokens_of(snapshot_of(pulled.home), TEXTS)
    got, exact = count(embedder, TEXTS + TEXTS)  # twice: each text counted once, summed twice
    assert (got, exact) == (2 * expected, True)
    lengths = embedder.token_lengths
    assert isinstance(lengths, KeptLengths) and set(lengths.kept) == set(TEXTS)
    # The worker's planning asks for the same texts: the kept counts, taken once.
    planned = lengths(list(reversed(TEXTS)))
    assert sum(planned) == expected and not lengths.kept
    assert lengths.overflowed[LONG] is True  # st's own attributes still read through
    assert lengths(["hello"]) == [tokens_of(snapshot_of(pulled.home), ["hello"])]


def test_bound_is_never_under_the_count(embedder, pulled):
    for texts in ([t] for t in TEXTS):
        assert bound(texts) >= tokens_of(snapshot_of(pulled.home), texts), texts


def test_count_without_a_tokenizer_estimates():
    plain = types.SimpleNamespace()  # a backend that counts nothing (matrix:)
    assert count(plain, ["abcd", "é" * 3, ""]) == (estimate(["abcd", "é" * 3, ""]), False)
    assert estimate(["abcd", "é" * 3, ""]) == 1 + 2 + 0


def test_work_limit_refuses_with_413(embedder, pulled):
    import asyncio

    need = tokens_of(snapshot_of(pulled.home), UNDER)
    worker = types.SimpleNamespace(session=types.SimpleNamespace(embedder=embedder))
    asyncio.run(WorkLimit(need).check(worker, UNDER))  # at the limit: through
    with pytest.raises(ApiError) as info:
        asyncio.run(WorkLimit(need - 1).check(worker, UNDER))
    assert info.value.status == 413 and info.value.code == "too_many_tokens"
    assert f"are {need:,} tokens; at most {need - 1:,} tokens" in info.value.message
