"""What a vector cache file says about itself: its ``meta`` table (namespace, dimension, count,
last use), which ``embctl ls`` reads without scanning rows.  Standard library only."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StoreInfo:
    """What a cache file says about itself (the ``meta`` table)."""

    namespace: dict[str, Any]
    ns_id: str
    dim: int | None
    count: int
    created: float | None
    last_used: float | None
    ref: str | None
    stores_text: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT name, value FROM meta").fetchall())


def info_from_meta(meta: dict[str, str]) -> StoreInfo:
    def num(name: str) -> float | None:
        try:
            return float(meta[name])
        except (KeyError, ValueError):
            return None

    namespace = json.loads(meta.get("namespace", "{}"))
    dim = num("dim")
    return StoreInfo(
        namespace=namespace,
        ns_id=meta.get("ns_id", ""),
        dim=int(dim) if dim else None,
        count=int(num("count") or 0),
        created=num("created"),
        last_used=num("last_used"),
        ref=meta.get("ref"),
        stores_text=meta.get("stores_text") == "1",
    )
