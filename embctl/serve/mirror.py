"""The read-only Hub mirror over the local HF cache: the routes huggingface_hub, ``hf download``,
sentence-transformers and ``embctl pull`` use.

    GET  /api/models                            the cached models (?search=, ?author=, ?limit=)
    GET  /api/models/{repo}[/revision/{rev}]    model info (siblings; ?blobs=true, ?expand=)
    GET  /api/models/{repo}/tree/{rev}[/{path}] tree entries (?recursive=, ?expand=)
    POST /api/models/{repo}/paths-info/{rev}    entries for the paths asked
    GET  /api/models/{repo}/refs                branches (and refs/pr/N) the cache holds
    HEAD, GET /{repo}/resolve/{rev}/{path}      the file, with the Hub's headers and Range

``{repo}`` is ``org/name`` (or a legacy one-part name).  Paths are parsed from the raw request
target, segment by segment, before percent-decoding: ``%2F`` inside a revision (``refs%2Fpr%2F1``)
stays one revision, and a decoded ``..``, empty part, backslash or NUL anywhere is a 400.  A
path never reaches the file system anyway: it names an entry of the snapshot listing
(`cacheview`), which only holds regular files inside the cache.

Errors are the Hub's: 404 with ``X-Error-Code`` ``RepoNotFound``, ``RevisionNotFound`` or
``EntryNotFound`` (the last with ``X-Repo-Commit``, which sentence-transformers needs to treat
a probed file as absent); datasets and spaces are ``RepoNotFound``.  A path that names none of
these routes is a 404, a wrong method on one a 405 with ``Allow`` (`embctl.serve.routing`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

from embctl.models.hub import is_safe_repo_path
from embctl.serve import hubapi, hublist, routing
from embctl.serve.cacheview import CacheView, NotOnMirror, Snapshot, valid_repo_id, valid_revision
from embctl.serve.upstream import Upstream, UpstreamFailed

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from embctl.serve.config import ServeConfig

log = logging.getLogger("embctl.serve")
#: Sub-resources of /api/models/{repo}/...: a one-part repo id is followed by one of these.
API_PARTS = frozenset({"revision", "tree", "paths-info", "refs", "commits"})
READ = frozenset({"GET", "HEAD"})
MAX_API_BODY = 1 << 20
CHUNK = 1 << 20  # bytes per body message: fewer event-loop turns than starlette's 64 KiB


class BadRequest(Exception):
    """A request the mirror will not interpret: 400."""


def error_response(status: int, message: str, code: str | None = None,
                   commit: str | None = None) -> Response:
    headers = {}
    if code:
        headers["X-Error-Code"] = code
    if commit:
        headers["X-Repo-Commit"] = commit
    return routing.hub_error(status, message, headers)  # capped: a 60 KB path is not echoed


def raw_segments(request: Request) -> list[str]:
    """The request path split on ``/`` before percent-decoding (``%2F`` stays in its part)."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    return raw.decode("latin-1").split("/")[1:]


def decode(part: str) -> str:
    return unquote(part, errors="strict")


class Mirror:
    def __init__(self, config: ServeConfig) -> None:
        from embctl.paths import hub_cache_dir

        self.view = CacheView(hub_cache_dir(config.cache_dir))
        self.upstream = Upstream(config.upstream, self.view.cache_dir) if config.upstream \
            else None

    # -- shared --------------------------------------------------------------------------

    async def handle(self, request: Request, route) -> Response:
        try:
            return await route(request)
        except NotOnMirror as exc:
            return error_response(404, exc.message, exc.code, exc.commit)
        except (BadRequest, UnicodeDecodeError) as exc:
            return error_response(400, f"Invalid request: {exc}")
        except UpstreamFailed as exc:
            log.warning("upstream: %s", exc)
            return error_response(502, str(exc))
        except asyncio.CancelledError:
            # Only uvicorn cancels a handler: SIGTERM's grace ran out while this request
            # waited for a fetch-through (its partial download is resumed by the next one).
            return error_response(503, "the server is shutting down; retry later")

    def _repo(self, parts: list[str]) -> tuple[str, list[str]]:
        """(repo id, what follows it) from the decoded parts after ``/api/models/``:
        ``org/name``, or a legacy one-part id (``gpt2``) when a sub-resource follows its first
        part (``gpt2/tree/main``, ``gpt2/refs``) and no ``org/name`` of that spelling is
        cached."""
        if not parts:
            raise NotOnMirror("RepoNotFound", "no repository named")
        one_part = (len(parts) >= 3 and parts[1] in API_PARTS) or parts[1:] == ["refs"]
        if len(parts) >= 2 and not (one_part and not self.view.has_repo("/".join(parts[:2]))):
            repo_id, rest = "/".join(parts[:2]), parts[2:]
        else:
            repo_id, rest = parts[0], parts[1:]
        if not valid_repo_id(repo_id):
            raise NotOnMirror("RepoNotFound", f"Repository {repo_id!r} is not on this mirror")
        return repo_id, rest

    async def _snapshot(self, repo_id: str, revision: str) -> Snapshot:
        """The cached snapshot ``revision`` names; fetched through first when it is missing
        and there is an upstream."""
        from starlette.concurrency import run_in_threadpool

        if not valid_revision(revision):
            raise BadRequest(f"revision {revision!r}")
        try:
            commit = self.view.resolve(repo_id, revision)
        except NotOnMirror:
            if self.upstream is None:
                raise
            started = time.monotonic()
            log.info("upstream: fetching %s@%s from %s", repo_id, revision, self.upstream.url)
            await self.upstream.fetch_revision(repo_id, revision)
            log.info("upstream: fetched %s@%s in %.1f s", repo_id, revision,
                     time.monotonic() - started)
            commit = self.view.resolve(repo_id, revision)
        kept = self.view.kept(repo_id, commit)
        return kept if kept is not None else \
            await run_in_threadpool(self.view.snapshot, repo_id, commit)

    # -- /{repo}/resolve/{rev}/{path} ------------------------------------------------------

    async def files(self, request: Request) -> Response:
        return await self.handle(request, self._resolve)

    async def _resolve(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        segs = raw_segments(request)
        method = request.method
        if segs and segs[0] in ("datasets", "spaces") and method in READ:
            raise NotOnMirror("RepoNotFound", f"this mirror serves models only, not {segs[0]}")
        if len(segs) >= 5 and segs[2] == "resolve":
            repo_parts, rev_raw, path_raw = segs[:2], segs[3], segs[4:]
        elif len(segs) >= 4 and segs[1] == "resolve":
            repo_parts, rev_raw, path_raw = segs[:1], segs[2], segs[3:]
        else:
            return routing.not_found(method, request.url.path)
        if method not in READ:
            return routing.method_not_allowed(method, request.url.path, READ)
        repo_id = "/".join(decode(p) for p in repo_parts)
        if not valid_repo_id(repo_id):
            raise NotOnMirror("RepoNotFound", f"Repository {repo_id!r} is not on this mirror")
        revision = decode(rev_raw)
        path = decode("/".join(path_raw))
        if not is_safe_repo_path(path):
            raise BadRequest(f"file path {path!r}")
        snap = await self._snapshot(repo_id, revision)
        found = snap.files.get(path)
        if found is None and self.upstream is not None:
            await self.upstream.fetch_file(repo_id, snap.commit, path)
            snap = await run_in_threadpool(self.view.snapshot, repo_id, snap.commit)
            found = snap.files.get(path)
        if found is not None and not self.view.unchanged(found):  # changed since listed
            self.view.forget(repo_id, snap.commit)
            snap = await run_in_threadpool(self.view.snapshot, repo_id, snap.commit)
            found = snap.files.get(path)
        if found is None:
            raise NotOnMirror("EntryNotFound", f"{path} is not in {repo_id}@{revision} on this "
                              "mirror", snap.commit)
        if found.corrupt:
            log.error("%s of %s@%s is corrupt in the cache (its blob does not hash to its "
                      "name); run `embctl verify --repair`", path, repo_id, snap.commit[:8])
            return error_response(500, f"{path} is corrupt in the mirror's cache", None,
                                  snap.commit)
        return self._file_response(snap, found)

    @staticmethod
    def _file_response(snap: Snapshot, f) -> Response:
        from starlette.responses import FileResponse

        class Body(RangeBody, FileResponse):
            chunk_size = CHUNK

        headers = {"ETag": f'"{f.etag}"', "X-Repo-Commit": snap.commit,
                   "Content-Disposition": _disposition(f.path)}
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.etag}"'
            headers["X-Linked-Size"] = str(f.size)
        return Body(f.real, headers=headers, media_type="application/octet-stream",
                    stat_result=f.st)

    # -- /api/... ----------------------------------------------------------------------------

    async def api(self, request: Request) -> Response:
        return await self.handle(request, self._api)

    async def _api(self, request: Request) -> Response:
        from starlette.responses import JSONResponse

        segs = raw_segments(request)  # ["api", kind, ...]
        kind = segs[1] if len(segs) > 1 else ""
        if kind in ("datasets", "spaces"):
            raise NotOnMirror("RepoNotFound", f"this mirror serves models only, not {kind}")
        method = request.method
        if kind != "models" or len(segs) < 3 or not segs[2]:
            return routing.not_found(method, request.url.path)
        parts = [decode(p) for p in segs[2:]]
        repo_id, rest = self._repo(parts)
        allowed = _allowed(rest)
        if allowed is None:
            return routing.not_found(method, request.url.path)
        if method not in allowed:
            return routing.method_not_allowed(method, request.url.path, allowed)
        query = _query(request)
        if not rest:
            return JSONResponse(hubapi.model_info(await self._snapshot(repo_id, "main"), query))
        if rest[0] == "revision":
            return JSONResponse(hubapi.model_info(await self._snapshot(repo_id, rest[1]), query))
        if rest[0] == "tree":
            snap = await self._snapshot(repo_id, rest[1])
            path = "/".join(rest[2:]).strip("/")
            if path and not is_safe_repo_path(path):
                raise BadRequest(f"path {path!r}")
            entries = hubapi.tree(snap, path, query)
            if entries is None:
                raise NotOnMirror("EntryNotFound", f"{path} is no folder of {repo_id}@{rest[1]}",
                                  snap.commit)
            return JSONResponse(entries)
        if rest[0] == "paths-info":
            snap = await self._snapshot(repo_id, rest[1])
            paths, expand = await _paths_info_body(request)
            return JSONResponse(hubapi.paths_info(snap, paths, expand))
        if not self.view.has_repo(repo_id):  # refs
            raise NotOnMirror("RepoNotFound", f"Repository {repo_id} is not on this mirror")
        return JSONResponse(hubapi.refs(self.view.refs(repo_id)))

    # -- GET /api/models ---------------------------------------------------------------------

    async def listing(self, request: Request) -> Response:
        return await self.handle(request, self._listing)

    async def _listing(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import JSONResponse

        try:
            query = hublist.parse_query(_query(request))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        items, more = await run_in_threadpool(self._listed, query)
        headers = {"Link": hublist.next_link(str(request.url), more)} if more is not None \
            else None
        return JSONResponse(items, headers=headers)

    def _listed(self, query: hublist.ListQuery) -> tuple[list[dict], int | None]:
        """(this page's models, the next page's ``skip``), off the event loop: a model seen
        the first time is walked (and its small files hashed) once."""
        items = []
        for repo_id in self.view.repo_ids():
            if not hublist.wanted_id(repo_id, query):
                continue
            commit = self.view.head(repo_id)
            if commit is None:
                continue
            item = hubapi.listed(self.view.snapshot(repo_id, commit), query.full, query.expand)
            if hublist.wanted(item, query):
                items.append(item)
        return hublist.page(items, query)


def _allowed(rest: list[str]) -> frozenset[str] | None:
    """The methods the route under ``/api/models/{repo}/`` that ``rest`` names takes; None
    when it names none."""
    if not rest or rest == ["refs"] or (len(rest) == 2 and rest[0] == "revision") or (
            len(rest) >= 2 and rest[0] == "tree"):
        return READ
    if len(rest) == 2 and rest[0] == "paths-info":
        return frozenset({"POST"})
    return None


def _query(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.scope.get("query_string", b"").decode("latin-1"),
                    keep_blank_values=True)


async def _paths_info_body(request: Request) -> tuple[list[str], bool]:
    """The body, refused as soon as it passes `MAX_API_BODY` (not read whole first)."""
    from embctl.serve.bodies import read_capped

    body = await read_capped(request, MAX_API_BODY,
                             lambda: BadRequest("paths-info body too large"),
                             lambda: BadRequest("the request ended before its body did"))
    return paths_info_request(body, request.headers.get("content-type", ""))


def paths_info_request(body: bytes, content_type: str) -> tuple[list[str], bool]:
    """(paths, expand) of a paths-info body: JSON (``{"paths": [...], "expand": true}``) or
    a form (``paths=a&paths=b&expand=1``, what huggingface_hub sends).  `BadRequest` for a
    body that is none of these."""
    if "json" in content_type:
        try:
            data = json.loads(body or b"{}")
        except RecursionError:
            raise BadRequest("paths-info body: nested too deeply") from None
        except ValueError as exc:
            raise BadRequest(f"paths-info body: {exc}") from None
        paths = data.get("paths") if isinstance(data, dict) else None
        expand = bool(data.get("expand", False)) if isinstance(data, dict) else False
        if paths is not None and not isinstance(paths, str | list):
            raise BadRequest(f"paths-info body: 'paths' must be a string or a list of "
                             f"strings, not {type(paths).__name__}")
    else:
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        paths = form.get("paths", []) + form.get("paths[]", [])
        expand = hubapi.truthy((form.get("expand") or ["false"])[-1])
    if paths is None:
        return [], expand
    paths = [paths] if isinstance(paths, str) else [p for p in paths if isinstance(p, str)]
    return paths, expand


class RangeBody:
    """A `FileResponse` mixin: ``Range`` as the Hub's CDN answers it.  A header that is
    malformed or in other units than bytes is ignored (the whole file, 200; RFC 9110 allows
    it), where starlette answers a plain-text 400; a range past the end is a 416 with
    ``Content-Range`` in the mirror's error shape, where starlette's has no body."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

        try:
            return super()._parse_range_header(http_range, file_size)  # type: ignore[misc]
        except MalformedRangeHeader:
            return []
        except RangeNotSatisfiable:
            raise Unsatisfiable(file_size) from None

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        except Unsatisfiable as exc:  # raised before anything was sent
            response = error_response(416, f"Range {_range_of(scope)[:100]} is not within the "
                                      f"file's {exc.size:,} bytes")
            response.headers["Content-Range"] = f"bytes */{exc.size}"
            await response(scope, receive, send)


class Unsatisfiable(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _range_of(scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"range":
            return value.decode("latin-1")
    return ""


def _disposition(path: str) -> str:
    from urllib.parse import quote

    name = path.rsplit("/", 1)[-1]
    quoted = quote(name)
    return f'inline; filename="{name}"' if quoted == name else \
        f"inline; filename*=UTF-8''{quoted}"


def routes(config: ServeConfig) -> list:
    """Starlette routes for /api/... and the /{repo}/resolve/... catch-all (keep it last)."""
    from starlette.routing import Route

    mirror = Mirror(config)
    return [
        Route("/api/models", mirror.listing, methods=["GET"]),
        # Every method reaches the catch-alls: they answer 404 or 405 (routing.py).
        routing.any_method(Route("/api/{rest:path}", mirror.api)),
        routing.any_method(Route("/{rest:path}", mirror.files)),
    ]
