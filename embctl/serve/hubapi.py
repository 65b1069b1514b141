"""The JSON bodies of the Hub's ``/api/models/...`` endpoints, from a cached `Snapshot`.

Shaped as huggingface_hub 2.x parses them (``ModelInfo``, ``RepoFile``, ``RepoFolder``,
``GitRefs``).  The cache keeps no commit dates, titles, downloads or likes: those fields get
neutral values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embctl.serve.cacheview import CachedFile, Snapshot

Query = Mapping[str, list[str]]
#: The cache keeps no commit dates; this one is as good as any and stable.
DATE = "1970-01-01T00:00:00.000Z"


def last(query: Query, name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _last_commit(snap: Snapshot) -> dict[str, str]:
    return {"id": snap.commit, "title": "", "date": DATE}


def file_entry(snap: Snapshot, f: CachedFile, expand: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": f.path}
    if f.lfs:
        entry["lfs"] = {"oid": f.etag, "size": f.size, "pointerSize": _pointer_size(f)}
    if expand:
        entry["lastCommit"] = _last_commit(snap)
    return entry


def dir_entry(snap: Snapshot, path: str, expand: bool) -> dict[str, Any]:
    import hashlib

    # A folder's git tree id cannot be known from the cache: a stable stand-in.
    oid = hashlib.sha1(f"{snap.commit}:{path}".encode()).hexdigest()
    entry: dict[str, Any] = {"type": "directory", "oid": oid, "size": 0, "path": path}
    if expand:
        entry["lastCommit"] = _last_commit(snap)
    return entry


def _pointer_size(f: CachedFile) -> int:
    return len(f"version https://git-lfs.github.com/spec/v1\noid sha256:{f.etag}\n"
               f"size {f.size}\n")


def model_info(snap: Snapshot, query: Query) -> dict[str, Any]:
    """``GET /api/models/{repo}[/revision/{rev}]``: ``blobs=true`` adds sizes and hashes;
    ``expand=`` keeps only the named properties (and ``_id``, ``id``)."""
    blobs = truthy(last(query, "blobs"))
    siblings = []
    for f in snap.files.values():
        sibling: dict[str, Any] = {"rfilename": f.path}
        if blobs:
            sibling.update(size=f.size, blobId=f.oid)
            if f.lfs:
                sibling["lfs"] = {"size": f.size, "sha256": f.etag,
                                  "pointerSize": _pointer_size(f)}
        siblings.append(sibling)
    data: dict[str, Any] = {
        "_id": snap.commit[:24], "id": snap.repo_id, "modelId": snap.repo_id,
        "author": snap.repo_id.split("/")[0] if "/" in snap.repo_id else None,
        "sha": snap.commit, "lastModified": DATE, "createdAt": DATE, "private": False,
        "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
        "usedStorage": sum(f.size for f in snap.files.values()), "siblings": siblings,
        "spaces": [],
    }
    if "modules.json" in snap.files:
        data.update(library_name="sentence-transformers", pipeline_tag="sentence-similarity",
                    tags=["sentence-transformers", "sentence-similarity"])
    if truthy(last(query, "securityStatus")):
        data["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
    expand = list(query.get("expand", [])) + list(query.get("expand[]", []))
    if expand:
        data = {k: v for k, v in data.items() if k in ("_id", "id") or k in expand}
    return data


def tree(snap: Snapshot, path: str, query: Query) -> list[dict[str, Any]] | None:
    """``GET .../tree/{rev}[/{path}]``; None when ``path`` is no folder of the snapshot."""
    recursive = truthy(last(query, "recursive"))
    expand = truthy(last(query, "expand"))
    directories = snap.directories
    if path and path not in directories:
        return None
    prefix = f"{path}/" if path else ""

    def wanted(candidate: str) -> bool:
        if not candidate.startswith(prefix):
            return False
        return recursive or "/" not in candidate[len(prefix):]

    entries = [dir_entry(snap, d, expand) for d in directories if wanted(d)]
    entries += [file_entry(snap, f, expand) for f in snap.files.values() if wanted(f.path)]
    entries.sort(key=lambda e: e["path"].split("/"))
    return entries


def paths_info(snap: Snapshot, paths: list[str], expand: bool) -> list[dict[str, Any]]:
    """``POST .../paths-info/{rev}``: entries for the paths that exist, files or folders."""
    directories = set(snap.directories)
    entries = []
    for raw in paths:
        path = raw.strip("/")
        if path in snap.files:
            entries.append(file_entry(snap, snap.files[path], expand))
        elif path in directories:
            entries.append(dir_entry(snap, path, expand))
    return entries


def refs(branches: Mapping[str, str]) -> dict[str, Any]:
    """``GET .../refs``: the cache cannot tell branches from tags; ``refs/pr/N`` are PRs."""
    heads = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
             for n, c in branches.items() if not n.startswith("refs/")]
    prs = [{"name": n, "ref": n, "targetCommit": c}
           for n, c in branches.items() if n.startswith("refs/pr/")]
    return {"branches": heads, "converts": [], "tags": [], "pullRequests": prs}


#: What the Hub lists of each model in ``GET /api/models`` (without ``full`` or ``expand``).
LISTED = ("_id", "id", "modelId", "author", "sha", "lastModified", "createdAt", "private",
          "gated", "disabled", "downloads", "likes", "trendingScore", "tags", "pipeline_tag",
          "library_name")


def listed(snap: Snapshot, full: bool = False, expand: tuple[str, ...] = ()) -> dict[str, Any]:
    """One model of ``GET /api/models``: the properties `model_info` gives, fewer: ``full``
    keeps ``siblings`` (names only, as the Hub's listing), ``expand`` only the named ones."""
    data = {**model_info(snap, {}), "trendingScore": 0}
    if expand:
        return {k: v for k, v in data.items() if k in ("_id", "id") or k in expand}
    return {k: v for k, v in data.items() if k in LISTED or (full and k == "siblings")}
