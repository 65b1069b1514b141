"""Shared fixtures: a real Hub-protocol server on 127.0.0.1 and embctl run as a subprocess.

Every test runs ``python -m embctl`` the way users run it, with ``HF_ENDPOINT`` pointing at
the local hub and ``HF_HOME``/``EMBCTL_HOME`` in a fresh temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hubserver import MINILM_REPO_ID, HubServer, build_minilm_repo  # noqa: E402

MINILM = MINILM_REPO_ID
# What sentence-transformers needs of all-MiniLM-L6-v2; everything else in the repo is a decoy.
MINILM_NEEDED = {
    "1_Pooling/config.json", "README.md", "config.json", "config_sentence_transformers.json",
    "data_config.json", "model.safetensors", "modules.json", "sentence_bert_config.json",
    "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
}  # fmt: skip
HEAVY_MODULES = ("torch", "transformers", "sentence_transformers", "openai", "PIL")


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    build_minilm_repo(root)
    return root


@pytest.fixture(scope="session")
def hub_server(hub_root):
    with HubServer(hub_root) as server:
        yield server


def cleared(server: HubServer):
    """Yield a shared server with faults and counters cleared; clear its faults afterwards."""
    server.clear_faults()
    server.reset_stats()
    yield server
    server.clear_faults()


@pytest.fixture
def hub(hub_server):
    """The session's hub, with faults and counters cleared for this test."""
    yield from cleared(hub_server)


def base_env(tmp: Path, hub_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "SENTENCE_TRANSFORMERS", "EMBCTL_", "OPENAI_"))
    }
    env.update(
        HF_ENDPOINT=hub_url,
        HF_HOME=str(tmp / "hf"),
        EMBCTL_HOME=str(tmp / "embctl"),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_ETAG_TIMEOUT="5",
        HF_HUB_DOWNLOAD_TIMEOUT="5",
        PYTHONUNBUFFERED="1",
        NO_COLOR="1",
    )
    return env


@dataclass
class Embctl:
    """Runs ``python -m embctl`` with a test environment."""

    env: dict[str, str]
    home: Path

    @property
    def cache(self) -> Path:
        return Path(self.env["HF_HOME"]) / "hub"

    @property
    def repo_dir(self) -> Path:
        return self.cache / "models--sentence-transformers--all-MiniLM-L6-v2"

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        env: dict | None = None,
        timeout: float = 300,
        check: bool | None = None,
    ) -> subprocess.CompletedProcess:
        full_env = {**self.env, **(env or {})}
        text = not isinstance(input, bytes)
        proc = subprocess.run(
            [sys.executable, "-m", "embctl", *args],
            input=input,
            env=full_env,
            capture_output=True,
            text=text,
            timeout=timeout,
            stdin=subprocess.DEVNULL if input is None else None,
        )
        if check:
            assert proc.returncode == 0, f"embctl {' '.join(args)} failed:\n{proc.stderr}"
        return proc

    def popen(self, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "embctl", *args],
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )


@pytest.fixture
def embctl(tmp_path, hub) -> Embctl:
    return Embctl(base_env(tmp_path, hub.url), tmp_path)


@pytest.fixture(scope="session")
def pulled_home(tmp_path_factory, hub_server) -> Path:
    """A home where all-MiniLM-L6-v2 was pulled once from the hub; copy it, don't modify it."""
    home = tmp_path_factory.mktemp("pulled")
    run = Embctl(base_env(home, hub_server.url), home)
    run("pull", "all-MiniLM-L6-v2", "-q", check=True)
    return home


@pytest.fixture
def pulled(tmp_path, hub, pulled_home) -> Embctl:
    """embctl with all-MiniLM-L6-v2 already in its cache (a private copy)."""
    home = tmp_path / "pulled"
    for name in ("hf", "embctl"):
        if (pulled_home / name).exists():
            shutil.copytree(pulled_home / name, home / name, symlinks=True)
    return Embctl(base_env(home, hub.url), home)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The error output must be one line (plus optional warnings) and hold no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("embctl: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def settle(server: HubServer) -> None:
    """Wait until the server's byte counter stops moving: after a client is killed, the server
    thread of its connection may still push a chunk into the dead socket."""
    import time

    settled, last = 0, -1
    while settled < 3:
        time.sleep(0.2)
        settled, last = (settled + 1, last) if server.bytes_sent == last else (0, server.bytes_sent)


def resolve_gets(server: HubServer, repo: str = MINILM) -> dict[str, int]:
    """Body bytes the server sent per file of ``repo``."""
    return {path: n for (r, path), n in server.bytes_by_path.items() if r == repo and n}


RunFn = Callable[..., subprocess.CompletedProcess]
