"""``embctl serve --ssl-certfile --ssl-keyfile``: HTTPS with a self-signed certificate made
here.  The ``openai`` client that trusts the certificate gets correct vectors (with the bearer
token, which then never crosses the wire in clear); plain HTTP to that port gets no HTTP
answer; a client that does not trust the certificate fails its verification.  Every mistake
in the two options is one line, exit 2, before anything listens."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import openai
import pytest
from support.runner import Embctl, copy_home, one_line_error
from support.serve import output, start_serve, stop

pytest.importorskip("uvicorn")

MODEL = "all-MiniLM-L6-v2"
TOKEN = "tls-test-token"
TEXTS = ["the parcel left the warehouse", "where is my refund", "über café naïve 東京"]


def make_pair(folder: Path, name: str, *, passphrase: str | None = None) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its RSA key (encrypted
    with ``passphrase`` when given), made by the ``openssl`` command (the venv has no
    ``cryptography`` package, and embctl needs none)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate with")
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key),
                    "-out", str(cert),
                    *(["-passout", f"pass:{passphrase}"] if passphrase else ["-nodes"])],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("certificates")
    return {"server": make_pair(folder, "server"), "other": make_pair(folder, "other"),
            "encrypted": make_pair(folder, "encrypted", passphrase="s3cret")}


@pytest.fixture(scope="module")
def expected(tmp_path_factory, pulled_home, hub_server) -> np.ndarray:
    """The vectors of TEXTS from ``embctl embed``, in a home of its own."""
    home = Embctl.at(copy_home(pulled_home, tmp_path_factory.mktemp("reference")),
                     hub_server.url)
    proc = home("embed", MODEL, "--lines", input="\n".join(TEXTS) + "\n")
    assert proc.returncode == 0, proc.stderr
    return np.array([json.loads(line)["embedding"] for line in proc.stdout.splitlines()],
                    dtype=np.float32)


@pytest.fixture(scope="module")
def served(tmp_path_factory, pulled_home, hub_server, pairs):
    """One HTTPS server, with a token, for the module."""
    cert, key = pairs["server"]
    home = Embctl.at(copy_home(pulled_home, tmp_path_factory.mktemp("served")), hub_server.url)
    proc, url = start_serve(home.env, "--token", TOKEN, "--ssl-certfile", str(cert),
                            "--ssl-keyfile", str(key), cafile=cert)
    yield proc, url
    assert stop(proc) == 0, output(proc)[1]
    assert "Traceback" not in output(proc)[1]


def client(url: str, verify: ssl.SSLContext | bool = True, token: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=token, max_retries=0, timeout=120,
                         http_client=openai.DefaultHttpxClient(verify=verify))


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, outermost first."""
    chain = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


@pytest.mark.e2e
def test_the_openai_client_gets_correct_vectors_over_https(served, pairs, expected):
    proc, url = served
    assert url.startswith("https://127.0.0.1:")
    assert f"listening on {url} " in output(proc)[1]
    trusted = client(url, ssl.create_default_context(cafile=str(pairs["server"][0])))
    got = trusted.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    vectors = np.array([d.embedding for d in got.data], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, atol=1e-4)
    base64 = trusted.embeddings.create(model=MODEL, input=TEXTS[:1])  # the client's default
    np.testing.assert_allclose(np.asarray(base64.data[0].embedding, np.float32), expected[0],
                               atol=1e-4)
    # The token is still required, over TLS as over HTTP.
    with pytest.raises(openai.AuthenticationError):
        client(url, ssl.create_default_context(cafile=str(pairs["server"][0])), "wrong") \
            .embeddings.create(model=MODEL, input="x")


@pytest.mark.e2e
def test_plain_http_to_the_tls_port_gets_no_http_answer(served):
    _, url = served
    plain = url.replace("https://", "http://", 1)
    with pytest.raises(openai.APIConnectionError):
        client(plain).embeddings.create(model=MODEL, input="x")
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + TOKEN.encode() + b"\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except OSError:  # reset by the server
            pass
    assert not answer.startswith(b"HTTP/"), answer[:200]
    assert b'"status"' not in answer


@pytest.mark.e2e
def test_a_client_that_does_not_trust_the_certificate_fails(served, pairs):
    _, url = served
    for verify in (True, ssl.create_default_context(cafile=str(pairs["other"][0]))):
        with pytest.raises(openai.APIConnectionError) as info:
            client(url, verify).embeddings.create(model=MODEL, input="x")
        failures = [e for e in causes(info.value) if isinstance(e, ssl.SSLCertVerificationError)]
        assert failures, causes(info.value)
        assert "certificate verify failed" in str(failures[0])


@pytest.mark.parametrize("case, code, words", [
    ("cert only", 2, "--ssl-certfile needs --ssl-keyfile too"),
    ("key only", 2, "--ssl-keyfile needs --ssl-certfile too"),
    ("missing cert", 2, "No such file or directory"),
    ("missing key", 2, "No such file or directory"),
    ("key of another certificate", 2, "is not the private key of --ssl-certfile"),
    ("not a certificate", 2, "not a PEM certificate"),
    ("not a key", 2, "not a PEM private key"),
    ("encrypted key", 2, "encrypted with a passphrase"),
])
def test_tls_mistakes_are_one_line(embctl: Embctl, pairs, tmp_path: Path, case: str,
                                   code: int, words: str):
    cert, key = pairs["server"]
    args = {
        "cert only": ["--ssl-certfile", cert],
        "key only": ["--ssl-keyfile", key],
        "missing cert": ["--ssl-certfile", tmp_path / "none.crt", "--ssl-keyfile", key],
        "missing key": ["--ssl-certfile", cert, "--ssl-keyfile", tmp_path / "none.key"],
        "key of another certificate": ["--ssl-certfile", cert, "--ssl-keyfile",
                                       pairs["other"][1]],
        "not a certificate": ["--ssl-certfile", key, "--ssl-keyfile", key],
        "not a key": ["--ssl-certfile", cert, "--ssl-keyfile", cert],
        "encrypted key": ["--ssl-certfile", pairs["encrypted"][0], "--ssl-keyfile",
                          pairs["encrypted"][1]],
    }[case]
    proc = embctl("serve", "--port", "0", *map(str, args), timeout=60)
    assert proc.returncode == code, proc.stderr
    line = one_line_error(proc)
    assert words in line, line
