"""The ``embctl`` entry points of the installed distributions, read without importlib.metadata.

``importlib.metadata`` costs 15-30 ms to import (email, csv, zipfile, inspect), more than the
rest of ``embctl du``'s start-up; ``ls``, ``du`` and ``rm`` need only the names and modules of
one entry-point group.  This reads the same files it reads (``*.dist-info/entry_points.txt``
and ``*.egg-info/entry_points.txt`` on ``sys.path``, the first distribution of a name winning)
with os.scandir and configparser.  Anything it cannot read this way (a zipped path entry) makes
the caller fall back to importlib.metadata, which stays the reference.
"""

from __future__ import annotations

import configparser
import os
import sys
from dataclasses import dataclass


class Unreadable(Exception):
    """A path entry this reader does not handle: use importlib.metadata instead."""


@dataclass(frozen=True)
class EntryPoint:
    name: str
    value: str  # "module" or "module:attribute"
    version: str | None  # the distribution's (folder name, else its METADATA / PKG-INFO)

    def load(self) -> object:
        import importlib

        module, _, attr = self.value.partition(":")
        obj: object = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def _dist_folders(entry: str) -> list[os.DirEntry]:
    try:
        with os.scandir(entry or ".") as it:
            return sorted((d for d in it if d.name.endswith((".dist-info", ".egg-info"))),
                          key=lambda d: d.name)
    except NotADirectoryError:
        raise Unreadable(entry) from None
    except OSError:
        return []


def _metadata_version(folder: str) -> str | None:
    """The ``Version:`` header of a distribution whose folder name has none (``*.egg-info``)."""
    for name in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("Version:"):
                        return line.split(":", 1)[1].strip() or None
                    if not line.strip():
                        break  # the headers end at the first blank line
        except OSError:
            continue
    return None


def find(group: str) -> list[EntryPoint]:
    """The entry points of ``group``, as ``importlib.metadata.entry_points(group=...)`` gives
    them.  Raises :class:`Unreadable` where that would need its zip support."""
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for entry in sys.path:
        if os.path.isfile(entry):
            raise Unreadable(entry)
        for folder in _dist_folders(entry):
            stem = folder.name.rsplit(".", 1)[0]
            name, _, version = stem.partition("-")
            key = name.lower().replace("-", "_").replace(".", "_")
            if key in seen:
                continue
            seen.add(key)
            path = os.path.join(folder.path, "entry_points.txt")
            if not os.path.exists(path):
                continue
            parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
            parser.optionxform = str  # type: ignore[assignment,method-assign]
            try:
                parser.read(path, encoding="utf-8")
            except configparser.Error:
                raise Unreadable(path) from None
            if parser.has_section(group):
                version = version or _metadata_version(folder.path)
                found += [EntryPoint(n, v, version) for n, v in parser.items(group)]
    return found
