"""A backend's declared options reach it from `embed -O KEY=VALUE`, from today's flags, and
from `embctl.load(ref, **options)`, checked by one parser (embctl/options.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.inprocess import environment
from support.runner import one_line_error

TEXTS = "The refund policy allows returns within 30 days\nreturn guidelines\n"


def vectors(stdout: str) -> np.ndarray:
    return np.array([json.loads(line)["embedding"] for line in stdout.splitlines()],
                    dtype=np.float32)


def test_an_option_and_its_flag_give_the_same_vectors(pulled):
    plain = pulled("embed", "all-MiniLM-L6-v2", "--lines", "--no-cache", input=TEXTS,
                   check=True)
    flag = pulled("embed", "all-MiniLM-L6-v2", "--lines", "--normalize", input=TEXTS,
                  check=True)
    option = pulled("embed", "all-MiniLM-L6-v2", "--lines", "-O", "normalize=true",
                    input=TEXTS, check=True)
    assert "2 cache hits" in option.stderr  # the same namespace as the flag's
    a, b, c = vectors(plain.stdout), vectors(flag.stdout), vectors(option.stdout)
    np.testing.assert_array_equal(b, c)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(c, a / np.linalg.norm(a, axis=1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("args, expected", [
    (("-O", "bogus=1"), "unknown option 'bogus'; st options: device (str), normalize (bool), "
                        "truncate_dim (int)"),
    (("-O", "truncate_dim=many"), "st option truncate_dim: expected int, got 'many'"),
    (("-O", "normalize"), "option 'normalize': expected KEY=VALUE"),
    (("--dimensions", "256"), "--dimensions does not apply to the st backend; st options:"),
    (("--base-url", "http://127.0.0.1:9/v1"), "--base-url does not apply to the st backend"),
])
def test_bad_options_are_one_line_usage_errors_before_the_model_loads(pulled, args, expected):
    proc = pulled("embed", "all-MiniLM-L6-v2", "--lines", *args, input=TEXTS)
    assert proc.returncode == 2, proc.stderr
    assert expected in one_line_error(proc)
    assert proc.stdout == ""
    assert not (pulled.home / "embctl" / "vectors").exists() or not any(
        (pulled.home / "embctl" / "vectors").iterdir())


def test_openai_options_reach_the_requests(oa, fake):
    proc = oa("embed", "openai:test-embed", "--lines", "-O", "dimensions=16", "-O",
              "batch_size=1", input="a\nb\nc\n")
    assert proc.returncode == 0, proc.stderr
    assert vectors(proc.stdout).shape == (3, 16)
    log = [r for r in fake.log if r.path.endswith("/embeddings")]
    assert len(log) == 3 and all(r.dimensions == 16 for r in log)
    # The flag is a shorthand for the same option: the same namespace, all cache hits.
    again = oa("embed", "openai:test-embed", "--lines", "--dimensions", "16", input="a\nb\nc\n")
    assert again.returncode == 0 and "3 cache hits" in again.stderr
    assert len([r for r in fake.log if r.path.endswith("/embeddings")]) == 3


def test_embed_help_lists_every_backends_options(embctl):
    out = embctl("embed", "--help", check=True).stdout
    assert "-O, --option KEY=VALUE" in out
    for line in ("st:", "truncate_dim=INT", "openai:", "base_url=URL", "dimensions=INT",
                 "image:", "image_range=minmax|LO:HI", "matrix:", "tensor=NAME"):
        assert line in out, line


def test_python_api_takes_and_checks_backend_options(pulled):
    import embctl
    from embctl.errors import UsageError

    out = []
    with environment(pulled.env):  # as a script run in the home would
        with embctl.load("all-MiniLM-L6-v2", normalize=True, cache=False) as m:
            out.append(str(round(float(np.linalg.norm(m.embed("return guidelines"))), 4)))
        try:
            embctl.load("all-MiniLM-L6-v2", dimensions=256)
        except UsageError as exc:
            out.append(f"refused: {exc}")
        try:
            embctl.load("all-MiniLM-L6-v2", cache="off")  # a truthy string must not mean "write"
        except UsageError as exc:
            out.append(f"refused: {exc}")
    first, second, third = out
    assert first == "1.0"
    assert second.startswith("refused: unknown option 'dimensions'; st options:")
    assert third == "refused: cache must be True or False, not 'off'"
