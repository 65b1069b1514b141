"""The JSON bodies of the Hub's ``/api/models/...`` endpoints, built from a `RepoSnapshot`.

Plain functions of a snapshot and the request's query (``parse_qs`` form): the request handler
routes to them and sends what they return.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from .reply import Reply
from .snapshots import RepoFileInfo, RepoSnapshot

Query = Mapping[str, list[str]]
COMMIT_DATE = "2024-01-01T00:00:00.000Z"
COMMIT_TITLE = "Initial commit"


def first(query: Query, name: str) -> str | None:
    """The last value of ``name`` in the query (the Hub takes the last), or None."""
    values = query.get(name)
    return values[-1] if values else None


def truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def last_commit(snap: RepoSnapshot) -> dict[str, str]:
    return {"id": snap.commit, "title": COMMIT_TITLE, "date": COMMIT_DATE}


def file_entry(snap: RepoSnapshot, info: RepoFileInfo, expand: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": info.oid, "size": info.size}
    if info.lfs:
        entry["lfs"] = {"oid": info.sha256, "size": info.size, "pointerSize": info.pointer_size}
    entry["path"] = info.path
    if expand:
        entry["lastCommit"] = last_commit(snap)
        entry["securityFileStatus"] = {
            "status": "safe",
            "avScan": {"virusFound": False, "virusNames": None},
            "pickleImportScan": None,
        }
    return entry


def dir_entry(snap: RepoSnapshot, path: str, expand: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "directory", "oid": snap.tree_oid(path), "size": 0}
    entry["path"] = path
    if expand:
        entry["lastCommit"] = last_commit(snap)
    return entry


def safetensors_summary(info: RepoFileInfo) -> dict[str, Any] | None:
    """``{"parameters": {dtype: count}, "total": n}`` from a safetensors header, if parsable."""
    try:
        with info.open() as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > 100_000_000:
                return None
            header = json.loads(fh.read(length))
        params: Counter[str] = Counter()
        for name, tensor in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in tensor["shape"]:
                count *= int(dim)
            params[tensor["dtype"]] += count
        return {"parameters": dict(params), "total": sum(params.values())}
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None


def model_info(snap: RepoSnapshot, query: Query) -> dict[str, Any]:
    """``GET /api/models/{repo}[/revision/{rev}]``."""
    blobs = truthy(first(query, "blobs"))
    siblings: list[dict[str, Any]] = []
    for info in snap.files.values():
        sibling: dict[str, Any] = {"rfilename": info.path}
        if blobs:
            sibling["size"] = info.size
            sibling["blobId"] = info.oid
            if info.lfs:
                sibling["lfs"] = {
                    "size": info.size,
                    "sha256": info.sha256,
                    "pointerSize": info.pointer_size,
                }
        siblings.append(sibling)
    repo_id = snap.repo_id
    data: dict[str, Any] = {
        "_id": snap.commit[:24],
        "id": repo_id,
        "modelId": repo_id,
        "author": repo_id.split("/")[0],
        "sha": snap.commit,
        "lastModified": COMMIT_DATE,
        "createdAt": COMMIT_DATE,
        "private": False,
        "gated": snap.gated or False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "usedStorage": sum(f.size for f in snap.files.values()),
        "siblings": siblings,
        "spaces": [],
    }
    if "modules.json" in snap.files:
        data["library_name"] = "sentence-transformers"
        data["pipeline_tag"] = "sentence-similarity"
        data["tags"] = ["sentence-transformers", "sentence-similarity"]
    if "model.safetensors" in snap.files:
        summary = safetensors_summary(snap.files["model.safetensors"])
        if summary is not None:
            data["safetensors"] = summary
    if truthy(first(query, "securityStatus")):
        data["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
    expand = list(query.get("expand", [])) + list(query.get("expand[]", []))
    if expand:
        data = {k: v for k, v in data.items() if k in ("_id", "id") or k in expand}
    return data


def tree(snap: RepoSnapshot, revision: str, path: str, query: Query) -> list[dict[str, Any]]:
    """Every entry of ``GET /api/models/{repo}/tree/{rev}[/{path}]``, before pagination."""
    recursive = truthy(first(query, "recursive"))
    expand = truthy(first(query, "expand"))
    directories = snap.directories
    if path and path not in directories:
        raise Reply(
            404,
            f"{path} does not exist on {revision}",
            "EntryNotFound",
            {"X-Repo-Commit": snap.commit},
        )
    prefix = f"{path}/" if path else ""

    def wanted(candidate: str) -> bool:
        if not candidate.startswith(prefix) or candidate == path:
            return False
        return recursive or "/" not in candidate[len(prefix) :]

    entries: list[dict[str, Any]] = []
    for directory in directories:
        if wanted(directory):
            entries.append(dir_entry(snap, directory, expand))
    for info in snap.files.values():
        if wanted(info.path):
            entries.append(file_entry(snap, info, expand))
    if recursive:  # list each directory just before its content
        entries.sort(key=lambda e: e["path"].split("/"))
    return entries


def paths_info(snap: RepoSnapshot, body: bytes, content_type: str) -> list[dict[str, Any]]:
    """``POST /api/models/{repo}/paths-info/{rev}`` with a form or JSON body."""
    if "json" in content_type:
        data = json.loads(body or b"{}")
        paths = data.get("paths", [])
        paths = [paths] if isinstance(paths, str) else list(paths)
        expand = bool(data.get("expand", False))
    else:
        form = parse_qs(body.decode(), keep_blank_values=True)
        paths = form.get("paths", []) + form.get("paths[]", [])
        expand = truthy((form.get("expand") or ["false"])[-1])
    directories = set(snap.directories)
    entries: list[dict[str, Any]] = []
    for raw in paths:
        path = raw.strip("/") if raw not in snap.files else raw
        if path in snap.files:
            entries.append(file_entry(snap, snap.files[path], expand))
        elif path in directories:
            entries.append(dir_entry(snap, path, expand))
    return entries


def refs(commits: Mapping[str, str]) -> dict[str, Any]:
    """``GET /api/models/{repo}/refs`` for branch name -> commit sha."""
    branches = [
        {"name": b, "ref": f"refs/heads/{b}", "targetCommit": commit}
        for b, commit in commits.items()
    ]
    return {"branches": branches, "converts": [], "tags": [], "pullRequests": []}


def commits(snap: RepoSnapshot) -> list[dict[str, Any]]:
    """``GET /api/models/{repo}/commits/{rev}``: one commit per branch."""
    commit = {
        "id": snap.commit,
        "title": COMMIT_TITLE,
        "message": "",
        "authors": [{"user": snap.repo_id.split("/")[0], "avatar": None}],
        "date": COMMIT_DATE,
    }
    return [commit]
