"""A local, fault-injecting Hugging Face Hub server for tests and benchmarks.

`HubServer` is a real HTTP/1.1 server (standard library only) that serves model repos from a
directory, speaking the subset of the Hub protocol that huggingface_hub 2.x (`snapshot_download`,
`hf_hub_download`, `HfApi.model_info` / `repo_info` / `list_repo_tree` / `list_repo_files` /
`file_exists` / `get_paths_info` / `list_repo_refs` / `get_safetensors_metadata`), the `hf` CLI
and sentence-transformers use.  Point a client at it with ``HF_ENDPOINT=server.url`` (set it
*before* `huggingface_hub` is imported: the endpoint is read once, at import time).

Repos on disk
-------------
``root/<org>/<name>/`` holds the files of repo ``org/name`` (sub-folders allowed) for branch
``main``; ``root/<org>/<name>@<branch>/`` directories, if any, are further branches.  Each
branch has one deterministic commit: the sha1 of its sorted ``(path, size, sha256)`` listing.
Revisions may be a branch name or such a commit sha; anything else is ``RevisionNotFound``.
Marker files (never listed, never served): ``.gated`` makes every ``resolve`` of the repo fail
with ``GatedRepo`` (401 without an ``Authorization`` header, 403 with one); its content, if
``auto`` or ``manual``, is reported as the repo's ``gated`` value.  ``.git/`` is ignored.

A file is stored "in LFS" when it is larger than ``lfs_threshold`` (10 KiB by default; the real
Hub follows ``.gitattributes``) or has an extension in `LFS_EXTENSIONS`.  For an LFS file the
ETag is its sha256 and the tree's ``oid`` is the git blob sha1 of its LFS *pointer* (as on the
real Hub); for other files both are the git blob sha1 of the content.  Xet is never advertised,
so clients always download over plain HTTP.

Endpoints
---------
``GET /api/models/{org}/{name}`` and ``.../revision/{rev}``
    Model info: ``id``, ``modelId``, ``sha``, ``siblings`` (with ``size``/``blobId``/``lfs``
    when ``blobs=true``), ``private``, ``gated``, ``safetensors`` (parsed from the header of a
    top-level ``model.safetensors``)...  ``expand=`` (repeated, or ``expand[]=``) returns only
    the listed properties plus ``_id``/``id``.
``GET /api/models/{org}/{name}/tree/{rev}[/{path}]?recursive=&expand=``
    Tree entries ``{type: file|directory, path, size, oid, lfs?: {oid, size, pointerSize}}``,
    directories included (also when recursive, like the Hub).  ``expand=true`` adds
    ``lastCommit`` and ``securityFileStatus``.  Paginated with a ``Link: <...>; rel="next"``
    header every ``page_size`` entries.  A missing folder is ``EntryNotFound``.
``POST /api/models/{org}/{name}/paths-info/{rev}``
    Form (``paths=a&paths=b&expand=false``) or JSON body; entries for the paths that exist.
``GET /api/models/{org}/{name}/refs`` and ``.../commits/{rev}``
    One branch per revision directory, one commit per branch.
``GET /api/agent-harnesses``
    An empty registry (huggingface_hub fetches it for its user-agent telemetry).
``HEAD``/``GET /{org}/{name}/resolve/{rev}/{path}``
    Headers ``X-Repo-Commit``, quoted ``ETag``, ``X-Linked-Etag`` + ``X-Linked-Size`` (LFS
    files only), ``Content-Length``, ``Accept-Ranges: bytes``.  ``Range: bytes=a-b``,
    ``bytes=a-`` and ``bytes=-n`` get ``206`` + ``Content-Range``; an unsatisfiable range gets
    ``416``; a multi-range header is ignored (``200``).
Errors carry ``X-Error-Code`` (and ``X-Error-Message``) as the Hub's do: ``RepoNotFound`` (404),
``RevisionNotFound`` (404), ``EntryNotFound`` (404, with ``X-Repo-Commit``), ``GatedRepo``.

Control endpoints (for a server running in another process; see `HubServerClient`):
``GET /_stats`` (JSON counters), ``POST /_stats/reset``, ``GET /_faults`` and
``POST /_faults`` with a JSON body ``{"clear": bool, "faults": [{...Fault fields...}],
"extra_tree_entries": {"org/name": {"path": "text content"} or ["path", ...]}}``.

Faults
------
`HubServer.set_fault` (or ``POST /_faults``) adds a `Fault`.  A fault matches a request by repo
(``"org/name"`` or ``None`` for any), by ``path`` (an fnmatch pattern, whose ``*`` also matches
``/``; matched against the file path for ``resolve`` requests and against the whole URL path
for ``api`` requests), by ``endpoint`` (``"resolve"``, ``"api"`` or ``"any"``) and by
``methods``.  The first active matching fault is applied; ``times`` is how many more requests
it affects (``None``: always); ``fault.hits`` counts the requests it affected.

* ``status=500`` (any status; ``retry_after=`` adds ``Retry-After``, handy with 429;
  ``error_code=`` adds ``X-Error-Code``): answer with that error instead.
* ``drop_after=N``: send the headers with the full ``Content-Length``, ``N`` body bytes, then
  shut the socket down.  Applies to ``GET`` of a file only, as do the next three.
* ``delay_s=S``: send the body in ``chunk_size`` chunks (64 KiB), sleeping ``S`` before each.
* ``corrupt=True``: flip one byte of the body (at ``corrupt_offset``, default mid-file).
* ``ignore_range=True``: answer ``200`` with the whole file even to a ``Range`` request.

How huggingface_hub 2.4 reacts (observed; plan fault counts with it):

* ``hf_hub_download`` HEADs first without retries; on a 408/429/5xx or a network error, with no
  cached copy, it HEADs again *with* retries (up to 5, sleeping 1, 2, 4, 8, 8 s, or
  ``Retry-After`` + 1 s): an always-failing HEAD costs 7 HEADs and ~23 s, then
  ``LocalEntryNotFoundError``.  ``times=1`` costs one extra HEAD, no sleep.
* The GET retries only 408/429 (``Retry-After`` + 1 s); a 500 on the GET raises
  ``HfHubHTTPError`` at once.  The API calls (``model_info``, tree) do not retry 5xx at all:
  ``snapshot_download`` then falls back to the cache (``LocalEntryNotFoundError`` if empty).
* A dropped body (``RemoteProtocolError``) is resumed after 1 s with ``Range: bytes=N-`` where
  N counts only whole 10 MiB chunks received (`DOWNLOAD_CHUNK_SIZE`), so a drop in the first
  10 MiB restarts from 0 with a plain GET.  Up to 5 retries in a row without progress, then the
  ``httpx`` error itself is raised; with ``drop_after`` > 10 MiB and ``times=None`` the client
  creeps forward and succeeds.
* Paths with ``..`` segments or absolute paths are refused with ``ValueError`` (after
  ``snapshot_download`` has fetched the other files).

"Escaping" names: ``server.extra_tree_entries["org/name"] = ["../../x", "/etc/evil"]`` (or a
dict ``{path: content}``, or `HubServer.add_extra_entry`) makes those paths appear in the tree,
the siblings and paths-info, and ``resolve`` serves them (exact path match only; the server never
reads outside a repo directory), so tests can check that a client refuses them.  They change the
commit sha so that clients do not reuse a cached tree listing.

Counters (thread-safe, reset by `HubServer.reset_stats`; `HubServer.reset` also clears the
faults and extra entries): ``bytes_sent`` (body bytes of every response but the control
endpoints'), ``bytes_by_path[("org/name", "path")]`` (body bytes of ``resolve`` responses)
and ``requests``, a list of `RequestRecord` ``(method, path, range, status)``; ``path`` is
the URL-decoded request path without the query string.  A request is recorded when its status
line is sent and bytes are counted as they are handed to the socket, so both are up to date
once a client has its answer.

`HubServer.stop` also cuts open keep-alive connections, and a later `HubServer.start` binds the
same port: tests can take the Hub "down" and back up at the same URL.

Run ``python -m support.hub ROOT [--port N] [--minilm]`` (from ``tests/``) to serve ``ROOT``
until killed; the URL is printed on stdout.  `build_minilm_repo` and `make_repo` create repos
to serve.

Modules: `snapshots` (repos on disk as the protocol sees them), `api` (the JSON bodies),
`handler` (routing, transfers, faults, control endpoints), `state` (faults, counters),
`server` (`HubServer`), `client` (`HubServerClient`), `repos` (building repos to serve).
"""

from __future__ import annotations

from .client import HubServerClient
from .repos import MINILM, MINILM_DECOYS, MINILM_NEEDED, build_minilm_repo, make_repo, minilm_source
from .server import HubServer
from .snapshots import (
    DEFAULT_LFS_THRESHOLD,
    LFS_EXTENSIONS,
    RepoFileInfo,
    RepoSnapshot,
    git_blob_sha1,
)
from .state import Fault, RequestRecord, resolve_gets, settle

__all__ = [
    "DEFAULT_LFS_THRESHOLD",
    "LFS_EXTENSIONS",
    "MINILM",
    "MINILM_DECOYS",
    "MINILM_NEEDED",
    "Fault",
    "HubServer",
    "HubServerClient",
    "RepoFileInfo",
    "RepoSnapshot",
    "RequestRecord",
    "build_minilm_repo",
    "git_blob_sha1",
    "make_repo",
    "minilm_source",
    "resolve_gets",
    "settle",
]
