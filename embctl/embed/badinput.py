"""Input that parses but cannot be used: a lone surrogate in a JSON string.

JSON may spell a UTF-16 surrogate on its own (``"\\ud800"``); Python's json accepts it (orjson
does not) and gives a str that cannot be encoded as UTF-8: the model's tokenizer, the cache key
and the output would all fail on it.  Such a line is bad input, reported with its line number.
"""

from __future__ import annotations

import re
from typing import Any

#: The escape of a surrogate (a high or a low one): only lines holding one are walked.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def lone_surrogate(line: str, obj: Any) -> str | None:
    """Where ``obj`` (parsed from ``line``) holds a lone surrogate, as a message; else None."""
    if "\\u" not in line or not _SURROGATE_ESCAPE.search(line):  # the common case: no walk
        return None
    found = _find(obj, "")
    if found is None:
        return None
    where, char = found
    return (f"{where or 'the line'} holds a lone surrogate (\\u{ord(char):04x}), which is not "
            "valid Unicode")


def _find(value: Any, where: str) -> tuple[str, str] | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (repr(where) if where else ""), value[exc.start]
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            found = _find(key, name) or _find(item, name)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _find(item, f"{where}[{i}]")
            if found is not None:
                return found
    return None
