"""The one helper behind every per-test server fixture.

A server (`support.hub.HubServer`, `support.openai_server.OpenAIServer`) is started once per
module or session; each test gets it through `fresh`, which resets it (faults, extra entries,
counters, request log) before the test and again after it, so a fault a test leaves armed
never reaches the next one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, TypeVar


class Resettable(Protocol):
    def reset(self) -> None: ...


S = TypeVar("S", bound=Resettable)


def fresh(server: S) -> Iterator[S]:
    """Yield a running, shared ``server`` reset for one test (``yield from`` it in a fixture)."""
    server.reset()
    yield server
    server.reset()
