"""Shared fixtures: a real Hub-protocol server on 127.0.0.1 and embctl run as a subprocess.

Every test runs ``python -m embctl`` the way users run it (`support.runner.Embctl`), with
``HF_ENDPOINT`` pointing at the local hub and ``HF_HOME``/``EMBCTL_HOME`` in a fresh temporary
directory.  The helpers themselves live in the `support` package; this file only wires them
into fixtures.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `support` is imported as a top-level package from tests/, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).parent))

from support.hub import HubServer, build_minilm_repo  # noqa: E402
from support.openai_server import TEST_KEY, OpenAIServer  # noqa: E402
from support.runner import Embctl, copy_home  # noqa: E402
from support.servers import fresh  # noqa: E402

# A shell starts background jobs (`.ci/run &`, nohup) with SIGINT ignored, and an ignored
# signal stays ignored in every process started from here: embctl would then never see the
# Ctrl-C the tests send.  A handled signal is reset to the default in a child: Python's own
# KeyboardInterrupt there, as from a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def onnx_built(tmp_path_factory) -> dict[str, Path]:
    """Real ONNX files of all-MiniLM-L6-v2 (fp32 and int8), exported once per session."""
    from support.onnx_fixtures import export_minilm_onnx

    return export_minilm_onnx(tmp_path_factory.mktemp("onnx-export"))


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory, onnx_built) -> Path:
    """The session hub's root: all-MiniLM-L6-v2 with its decoys, its real ONNX files (fp32,
    and int8 under the name this CPU picks) and the other ONNX variants as decoys; tests may
    add repos."""
    from support.onnx_fixtures import add_onnx_files

    root = tmp_path_factory.mktemp("hub")
    add_onnx_files(build_minilm_repo(root), onnx_built)
    return root


@pytest.fixture(scope="session")
def hub_server(hub_root: Path) -> Iterator[HubServer]:
    with HubServer(hub_root) as server:
        yield server


@pytest.fixture
def hub(hub_server: HubServer) -> Iterator[HubServer]:
    """The session's hub, with faults and counters cleared for this test."""
    yield from fresh(hub_server)


@pytest.fixture
def embctl(tmp_path: Path, hub: HubServer) -> Embctl:
    return Embctl.at(tmp_path, hub.url)


@pytest.fixture(scope="session")
def pulled_home(tmp_path_factory, hub_server) -> Path:
    """A home where all-MiniLM-L6-v2 was pulled once from the hub; copy it, don't modify it."""
    home = tmp_path_factory.mktemp("pulled")
    Embctl.at(home, hub_server.url)("pull", "all-MiniLM-L6-v2", "-q", check=True)
    return home


@pytest.fixture
def pulled(tmp_path: Path, pulled_home: Path, hub: HubServer) -> Embctl:
    """embctl with all-MiniLM-L6-v2 already in its cache (a private copy).  ``hub`` comes
    after ``pulled_home``: the session's one pull is not in this test's counters."""
    return Embctl.at(copy_home(pulled_home, tmp_path / "pulled"), hub.url)


@pytest.fixture(scope="session")
def openai_session() -> Iterator[OpenAIServer]:
    """The fake OpenAI server (tests/support/openai_server.py), one per test session."""
    with OpenAIServer(api_key=TEST_KEY) as server:
        yield server


@pytest.fixture
def fake(openai_session: OpenAIServer) -> Iterator[OpenAIServer]:
    """The fake OpenAI server, reset for this test."""
    yield from fresh(openai_session)


@pytest.fixture
def oa(tmp_path: Path, fake: OpenAIServer) -> Embctl:
    """embctl pointed at the fake OpenAI server with its key; no Hub is needed (the runner's
    default endpoint has nothing listening)."""
    return Embctl.at(tmp_path, OPENAI_BASE_URL=fake.url, OPENAI_API_KEY=TEST_KEY,
                     EMBCTL_OPENAI_BACKOFF="0.01", EMBCTL_OPENAI_TIMEOUT="1.5")
