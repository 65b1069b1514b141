"""The one helper behind every per-test server fixture.

A server (`support.hub.HubServer`, `support.openai_server.OpenAIServer`) is started once per
module or session; each test gets it through `fresh`, which resets it (faults, extra entries,
counters, request log) before the test and again after it, so a fault a test leaves armed
never reaches the next one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Protocol, TypeVar


class Resettable(Protocol):
    def reset(self) -> None: ...


S = TypeVar("S", bound=Resettable)


def fresh(server: S) -> Iterator[S]:
    """Yield a running, shared ``server`` reset for one test (``yield from`` it in a fixture)."""
    server.reset()
    yield server
    server.reset()


class ServerThreads(ThreadingHTTPServer):
    """A threading HTTP server whose threads report a request's error (a client that hung up
    mid-body, as embctl does when it refuses an answer) on the real stderr of the process,
    never on ``sys.stderr``: while an in-process embctl run is going, ``sys.stderr`` is that
    run's (`support.inprocess`), and a server of the test's is no part of it."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        import traceback

        stream = sys.__stderr__
        if stream is not None:
            print(f"test server: error serving {client_address}:", file=stream)
            traceback.print_exc(file=stream)
