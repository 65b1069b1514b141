"""Shared fixtures: a real Hub-protocol server on 127.0.0.1, test homes, and the two tiers.

Most tests run the CLI in this process (`support.runner.Embctl`, `support.inprocess`), each
in its own home (``HF_HOME``/``EMBCTL_HOME`` under its ``tmp_path``) against the session's
hub.  Tests marked ``e2e`` may also start ``python -m embctl`` (``Embctl.process``,
``Embctl.popen``): the process boundary is what they test.  docs/testing.md says how to add
a test to each tier.

What costs seconds is built once: the hub and its repos, one pulled home (hard-linked into
each test's home, never copied), and the ONNX export (built only when a test asks for it,
and kept across sessions in pytest's cache while its inputs are unchanged).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `support` is imported as a top-level package from tests/, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).parent))

from support import runner  # noqa: E402
from support.homes import BlobGuard  # noqa: E402
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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of ``item`` is set up: may it start ``python -m embctl``?"""
    runner.E2E.update(allowed=item.get_closest_marker("e2e") is not None, test=item.nodeid)


@pytest.fixture(scope="session")
def onnx_built(request, tmp_path_factory) -> dict[str, Path]:
    """Real ONNX files of all-MiniLM-L6-v2 (fp32 and int8).  Exported only when a test asks,
    and kept in pytest's cache (``.pytest_cache``) under a key of everything the export reads,
    so later sessions (and the other xdist worker) reuse it."""
    from support.onnx_fixtures import cached_minilm_onnx

    return cached_minilm_onnx(request.config, tmp_path_factory)


@pytest.fixture(scope="session")
def hub_root(tmp_path_factory) -> Path:
    """The session hub's root: all-MiniLM-L6-v2 with its decoys (random bytes under the names
    of the public repo's other exports, ONNX ones included); tests may add repos."""
    root = tmp_path_factory.mktemp("hub")
    build_minilm_repo(root)
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


def _pull_home(home: Path, url: str) -> Path:
    Embctl.at(home, url)("pull", "all-MiniLM-L6-v2", "-q", check=True)
    return home


@pytest.fixture(scope="session")
def pulled_home(tmp_path_factory, hub_server) -> Path:
    """A home where all-MiniLM-L6-v2 was pulled once from the hub; link it (`pulled`),
    don't modify it."""
    return _pull_home(tmp_path_factory.mktemp("pulled"), hub_server.url)


@pytest.fixture(scope="session")
def _guards() -> dict[Path, BlobGuard]:
    """A `BlobGuard` for each shared home a test linked (`pulled_home`, or a module's own)."""
    return {}


@pytest.fixture
def pulled(tmp_path: Path, pulled_home: Path, _guards: dict[Path, BlobGuard], hub: HubServer
           ) -> Iterator[Embctl]:
    """embctl with all-MiniLM-L6-v2 already in its cache: a private home whose model blobs
    are hard links to the session's pull (`support.homes`).  ``hub`` comes after
    ``pulled_home``: the session's one pull is not in this test's counters.  A module may
    override ``pulled_home`` and ``hub`` (test_onnx.py: the ONNX hub)."""
    if pulled_home not in _guards:  # the blobs as the session's pull left them
        _guards[pulled_home] = BlobGuard(pulled_home)
    guard = _guards[pulled_home]
    yield Embctl.at(copy_home(pulled_home, tmp_path / "pulled"), hub.url)
    written = guard.changed()
    assert not written, (f"this test wrote into blobs shared by every test's home: {written}; "
                         "damage a blob with support.homes.damage(), which unlinks it first")



@pytest.fixture(scope="session")
def noonnx_home(tmp_path_factory, hub_root, hub_server) -> Path:
    """A home where ``embctl-test/minilm-noonnx`` (the real all-MiniLM-L6-v2 files, no ONNX)
    was pulled with the st backend; nothing exported."""
    from support.onnx_export_fixtures import NOONNX, build_minilm_noonnx_repo

    build_minilm_noonnx_repo(hub_root)
    home = tmp_path_factory.mktemp("noonnx")
    Embctl.at(home, hub_server.url)("pull", f"st:{NOONNX}", "-q", check=True)
    return home


@pytest.fixture
def noonnx(tmp_path, noonnx_home, hub) -> Embctl:
    return Embctl.at(copy_home(noonnx_home, tmp_path / "home"), hub.url)

# -- the onnx backend's hub: all-MiniLM-L6-v2 with its real ONNX files ------------------------


@pytest.fixture(scope="session")
def onnx_hub_root(tmp_path_factory, onnx_built) -> Path:
    """A hub root whose all-MiniLM-L6-v2 also has its real ONNX files (fp32, and int8 under
    the name this CPU picks) and the other ONNX variants as decoys.  Its own root: the
    files change the repo's commit, which the other tests' hub must keep."""
    from support.onnx_fixtures import add_onnx_files

    root = tmp_path_factory.mktemp("onnx-hub")
    add_onnx_files(build_minilm_repo(root), onnx_built)
    return root


@pytest.fixture(scope="session")
def onnx_hub_server(onnx_hub_root: Path) -> Iterator[HubServer]:
    with HubServer(onnx_hub_root) as server:
        yield server


@pytest.fixture(scope="session")
def onnx_pulled_home(tmp_path_factory, onnx_hub_server) -> Path:
    return _pull_home(tmp_path_factory.mktemp("onnx-pulled"), onnx_hub_server.url)


# -- the fake OpenAI server --------------------------------------------------------------------


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
