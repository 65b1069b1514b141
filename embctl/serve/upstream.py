"""``--upstream URL``: what the cache lacks is fetched through from another Hub, then served.

Two cases, both written into the served cache by the core's own downloader (per-blob file
locks shared with huggingface_hub and other embctl processes, hashes checked, atomic renames,
``refs/`` written last), never by this module:

- a revision that is not cached: pulled as ``embctl pull REPO@REV`` would (the default
  backend's files), then served from the cache;
- a file missing from a cached revision (``hf_hub_download(repo, "onnx/model.onnx")``):
  that one file, if the upstream lists it.

Within this process one fetch runs per revision or file, the requests that want it wait for
it (`_once`); across processes the core's file locks do the same.  The fetch goes on if the
client that started it disconnects.  huggingface_hub reads ``HF_ENDPOINT`` when first
imported: `Upstream` sets it before anything imports the library (``embctl serve`` imports
it only here and in the embeddings' model loading, which then also pulls from upstream).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from embctl.errors import EmbctlError
from embctl.serve.cacheview import NotOnMirror


class UpstreamFailed(Exception):
    """The upstream Hub could not be reached or refused: a 502 naming the cause."""


class Upstream:
    def __init__(self, url: str, cache_dir: Path) -> None:
        self.url = url.rstrip("/")
        self.cache_dir = Path(cache_dir)
        self._inflight: dict[tuple, asyncio.Future] = {}
        self._listings: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()
        os.environ["HF_ENDPOINT"] = self.url
        if "huggingface_hub" in sys.modules:  # imported already: point it there too
            from huggingface_hub import constants

            constants.ENDPOINT = self.url
            constants.HUGGINGFACE_CO_URL_TEMPLATE = (
                self.url + "/{repo_id}/resolve/{revision}/{filename}")

    async def fetch_revision(self, repo_id: str, revision: str) -> None:
        await self._once(("revision", repo_id, revision), lambda: self._pull(repo_id, revision))

    async def fetch_file(self, repo_id: str, commit: str, path: str) -> None:
        await self._once(("file", repo_id, commit, path),
                         lambda: self._fetch_file(repo_id, commit, path))

    async def _once(self, key: tuple, work: Callable[[], None]) -> None:
        """Run ``work`` in a thread once for all the requests awaiting ``key`` at a time."""
        future = self._inflight.get(key)
        if future is None:
            future = _in_daemon_thread(work)
            self._inflight[key] = future
            future.add_done_callback(lambda _: self._inflight.pop(key, None))
        await asyncio.shield(future)

    # -- in a worker thread ----------------------------------------------------------------

    def _info(self, repo_id: str, revision: str):
        from embctl.models.hub import hub_error, import_hf

        hf = import_hf()
        from huggingface_hub import errors

        try:
            return hf.HfApi().model_info(repo_id, revision=revision, files_metadata=True)
        except errors.GatedRepoError:
            raise UpstreamFailed(f"{repo_id} is gated on {self.url}: the mirror's HF_TOKEN "
                                 "has no access") from None
        except errors.RevisionNotFoundError:
            raise NotOnMirror("RevisionNotFound",
                              f"Revision {revision} of {repo_id} is not on {self.url}") from None
        except errors.RepositoryNotFoundError:
            raise NotOnMirror("RepoNotFound", f"Repository {repo_id} is not on {self.url}") \
                from None
        except Exception as exc:
            raise UpstreamFailed(f"upstream {self.url}: {hub_error(repo_id, exc)}") from None

    def _pull(self, repo_id: str, revision: str) -> None:
        from embctl.backends import Model
        from embctl.models.pull import pull
        from embctl.registry import default_backend

        self._info(repo_id, revision)  # typed 404s before the pull
        backend = default_backend()
        model = Model(repo_id, backend.name, repo_id, revision)
        try:
            pull(model, backend, self.cache_dir, quiet=True)
        except EmbctlError as exc:
            raise UpstreamFailed(f"fetching {repo_id}@{revision} from {self.url}: {exc}") \
                from None

    def _fetch_file(self, repo_id: str, commit: str, path: str) -> None:
        from embctl.models.download import fetch_file
        from embctl.models.hub import hub_error, repo_dir

        with self._lock:
            files = self._listings.get((repo_id, commit))
        if files is None:
            info = self._info(repo_id, commit)
            files = {}
            for s in info.siblings or []:
                lfs = getattr(s, "lfs", None)
                files[s.rfilename] = (lfs.sha256 if lfs else s.blob_id, int(s.size or 0))
            with self._lock:
                self._listings[(repo_id, commit)] = files
        if path not in files:
            raise NotOnMirror("EntryNotFound", f"{path} is not in {repo_id}@{commit}", commit)
        storage = repo_dir(self.cache_dir, repo_id)
        try:
            fetch_file(repo_id, path, commit, self.cache_dir, storage, known=files[path])
        except EmbctlError as exc:
            raise UpstreamFailed(f"fetching {path} of {repo_id} from {self.url}: {exc}") \
                from None
        except Exception as exc:
            raise UpstreamFailed(f"upstream {self.url}: {hub_error(repo_id, exc)}") from None


def _in_daemon_thread(work: Callable[[], None]) -> asyncio.Future:
    """``work`` in a daemon thread: a fetch still running when the server stops does not hold
    the exit (its ``.incomplete`` file is resumed by the next fetch), as an executor would."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not future.done():
            future.set_result(None) if error is None else future.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            work()
        except BaseException as exc:  # handed to the awaiting requests
            error = exc
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:  # the server stopped meanwhile: nobody waits
            pass

    threading.Thread(target=run, name="embctl-upstream", daemon=True).start()
    return future
