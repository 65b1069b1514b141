"""Parsing model references.

Accepted forms::

    all-MiniLM-L6-v2                  an alias, or a bare name (-> sentence-transformers/<name>)
    BAAI/bge-small-en-v1.5            a Hub repo id
    st:BAAI/bge-small-en-v1.5         an explicit backend prefix (st:, matrix:, openai:, image:)
    org/name@v1.0 / org/name@<sha>    a revision: branch, tag or commit

Parsing is purely syntactic and strict: a malformed reference fails here with a one-line
error, before anything touches the filesystem or the network.  Which backend handles the
reference and which repo it names is decided by :func:`embctl.registry.resolve`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from embctl.errors import UsageError

# Mirrors huggingface_hub.utils.validate_repo_id (ASCII word chars, '-', '.'; no '--' or '..';
# each part starts and ends with an alphanumeric or '_'; at most 96 characters a part).
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"(?:{_PART}/)?{_PART}")
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,254}")
_BACKEND = re.compile(r"[a-z][a-z0-9_\-]{0,31}")
# Names of remote API models (openai:text-embedding-3-small, openai:nomic-embed-text:v1.5).
_API_MODEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-/]{0,199}")


@dataclass(frozen=True)
class ParsedRef:
    """A reference split into its parts, not yet resolved to a backend or repo."""

    text: str
    backend: str | None
    name: str
    revision: str | None


def parse_ref(text: str) -> ParsedRef:
    """Split ``[BACKEND:]NAME[@REVISION]``; raise UsageError when malformed."""
    raw = text
    text = text.strip()
    if not text:
        raise UsageError("empty model reference")
    backend = None
    head, sep, rest = text.partition(":")
    if sep and _BACKEND.fullmatch(head) and not head.startswith(("http", "file")):
        backend, text = head, rest
    elif sep and ("/" in head or "\\" in head or "." in head):
        raise UsageError(f"invalid model reference {raw!r}: unexpected ':'")
    name, at, revision = text.rpartition("@") if "@" in text else (text, "", "")
    if at and not revision:
        raise UsageError(f"invalid model reference {raw!r}: empty revision after '@'")
    if at and not _REVISION.fullmatch(revision) or ".." in revision or "//" in revision:
        raise UsageError(f"invalid model reference {raw!r}: bad revision {revision!r}")
    if not name:
        raise UsageError(f"invalid model reference {raw!r}: empty name")
    return ParsedRef(raw, backend, name, revision or None)


def validate_repo_id(repo_id: str, ref_text: str) -> str:
    """Check a Hub repo id (``name`` or ``org/name``) the way the Hub would accept it."""
    if repo_id.startswith(("/", "~", ".")) or "\\" in repo_id:
        raise UsageError(f"invalid model reference {ref_text!r}: looks like a path, not a repo id")
    if not _REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        raise UsageError(
            f"invalid model reference {ref_text!r}: {repo_id!r} is not a valid Hub repo id "
            "(ORG/NAME, letters, digits, '-', '_', '.')"
        )
    if repo_id.endswith(".git"):
        raise UsageError(f"invalid model reference {ref_text!r}: a repo id cannot end in '.git'")
    return repo_id


def validate_api_model(name: str, ref_text: str) -> str:
    """Check the name of a model served by an API (no repo, no files)."""
    if not _API_MODEL.fullmatch(name) or ".." in name:
        raise UsageError(f"invalid model reference {ref_text!r}: bad model name {name!r}")
    return name
