"""Rendering helpers shared by the commands: stderr messages, sizes, ages, JSON.

Everything meant for people goes to stderr; stdout carries only results (tables, JSON,
vectors), so pipes stay clean.  rich is imported only when a terminal will see it.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

# A plain decimal number (no sign, exponent, inf or nan) and a unit: '1.5GB', '7d', '123'.
_QUANTITY = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([a-z]*)")


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"embctl: warning: {message}", file=sys.stderr, flush=True)


def plural(n: int, word: str, words: str | None = None) -> str:
    """A count and its noun, agreed: ``plural(1, "line")`` -> "1 line", ``plural(1024,
    "line")`` -> "1,024 lines", ``plural(2, "matrix", "matrices")`` -> "2 matrices"."""
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def human_age(timestamp: float | None, now: float | None = None) -> str:
    if not timestamp:
        return "-"
    delta = max(0.0, (now or time.time()) - timestamp)
    for seconds, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"),
                          (86400, "day"), (3600, "hour"), (60, "minute")):
        if delta >= seconds:
            count = int(delta // seconds)
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "just now"


def parse_size(text: str) -> int:
    """'1.5GB', '200M', '10k', '123' -> bytes (decimal units, as `hf cache ls` and du -H)."""
    units = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
             "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
             "tib": 2**40}
    m = _QUANTITY.fullmatch(text.strip().lower().replace(" ", ""))
    if not m or m[2] not in units:
        raise ValueError(f"bad size {text!r} (a number and a unit of B, kB, MB, GB, TB, KiB, "
                         "MiB, GiB, TiB; examples: 500MB, 1.5GB, 200k)")
    return int(float(m[1]) * units[m[2]])


def parse_duration(text: str) -> float:
    """'7d', '12h', '30m', '2w', '90s' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    m = _QUANTITY.fullmatch(text.strip().lower())
    if not m or m[2] not in units:
        raise ValueError(f"bad duration {text!r} (a number and a unit of s, m, h, d, w, y; "
                         "examples: 30m, 12h, 7d, 2w)")
    return float(m[1]) * units[m[2]]
