"""The model store: Hub model repos in the Hugging Face cache (``embctl.models``).

Models other tools put in the cache have no pull record naming their backend: the installed
backends recognise them (``Backend.recognize``), so the core names none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from embctl.models.scan import model_entries, model_entry, scan_cache, scan_repo

if TYPE_CHECKING:
    from embctl.backends import Model
    from embctl.inventory import Entry
    from embctl.stores.base import Scope, VerifyOptions, VerifyReport
    from embctl.stores.plan import RemovalPlan


_FAILED: set[str] = set()  # backends whose recognize raised (warned once)


def recognize_backend(files: list[str]) -> str | None:
    """The backend whose ``recognize`` claims a snapshot with these files: the default backend
    first (it takes references without a prefix), then the others in registry order.  A
    plugin whose ``recognize`` raises is skipped, with one warning."""
    from embctl.plugins import warn
    from embctl.registry import backends

    for backend in sorted(backends().values(), key=lambda b: not b.default):
        if not backend.overrides("recognize") or backend.name in _FAILED:
            continue
        try:
            if backend.recognize(files):
                return backend.name
        except Exception as exc:  # one failing plugin must not break ls
            _FAILED.add(backend.name)
            warn(f"plugin {backend.plugin!r}: recognize failed: {type(exc).__name__}: {exc}")
    return None


class ModelStore:
    """Hub model repos in the Hugging Face cache (``cache_dir``)."""

    kind = "model"
    du_lines = (("models", "models"), ("incomplete", "incomplete downloads"),
                ("other", "other Hub repos (datasets, spaces)"))
    du_optional = frozenset({"other"})  # Hub repos that are not models: shown when there are

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    @classmethod
    def open(cls, cache_dir: Path) -> ModelStore:
        return cls(cache_dir)

    @property
    def root(self) -> Path:
        return self.cache_dir

    def scan(self) -> list[Entry]:
        return model_entries(self.cache_dir, recognize_backend)

    def select(self, model: Model | None = None, key: str | None = None) -> list[Entry]:
        """The repo a reference names, by the name ``ls`` shows for the reference's backend
        (``embctl.naming``: one form however it was typed); every model repo when ``model``
        is None."""
        if model is None:
            return [model_entry(repo, self.cache_dir, recognize_backend)
                    for repo in scan_cache(self.cache_dir) if repo.repo_type == "model"]
        from embctl.naming import row_name
        from embctl.paths import repo_folder_name
        from embctl.registry import get_backend

        if not get_backend(model.backend).hub:
            return []
        repo = scan_repo(self.cache_dir / repo_folder_name(model.repo_id))
        if repo is None:
            return []
        return [model_entry(repo, self.cache_dir, recognize_backend,
                            ref=row_name(model.backend, model.repo_id, model.ref))]

    def named_by(self, model: Model, scope: Scope) -> bool:
        # A backend with its own pull (matrix:) keeps its models elsewhere; the Hub repo of
        # the same name holds only what it borrowed, and is not what REF names.
        from embctl.registry import get_backend

        backend = get_backend(model.backend)
        return scope != "vectors" and backend.hub and not backend.overrides("pull")

    def verify(self, entries: list[Entry], options: VerifyOptions) -> VerifyReport:
        """Every blob against its hash (and the Hub's listing with ``remote``); with
        ``repair``, bad files are fetched again and checked again."""
        from embctl.models import verify
        from embctl.models.verify import check_and_repair, check_models
        from embctl.stores.base import VerifyReport

        repos = [e.source for e in entries if e.source is not None]
        names = {e.repo_id: e.ref for e in entries}
        damaged: tuple[tuple[str, str, str], ...] = ()
        repaired: tuple[tuple[str, str, str, tuple[str, ...]], ...] = ()
        kwargs = {"remote": options.remote, "workers": options.workers, "quiet": options.quiet}
        if options.repair:
            trusted = verify.trusted_blobs(repos)  # before the check records its hashes
            repos, problems = check_and_repair(repos, self.cache_dir, names,
                                               on_repair=options.on_repair, **kwargs)
            damaged = tuple(verify.damaged_revisions(repos, problems, names, trusted))
            repaired = tuple(verify.repaired_files(repos, problems, names))
        else:
            problems = check_models(repos, self.cache_dir, names, **kwargs)
        files = sum(len(r.files) for repo in repos for r in repo.revisions)
        revisions = sum(len(repo.revisions) for repo in repos)
        return VerifyReport({"models": len(repos), "revisions": revisions, "files": files},
                            _summary(len(repos), revisions, files), tuple(problems), damaged,
                            repaired)

    def forget_revision(self, repo_id: str, commit: str) -> list[Entry]:
        return []  # the repair replaced the bad files themselves

    def plan_removal(self, entries: list[Entry], model: Model | None = None) -> RemovalPlan:
        from embctl.stores.model_removal import plan_repo, plan_revision
        from embctl.stores.plan import RemovalPlan

        plan = RemovalPlan()
        for entry in entries:
            repo = entry.source
            if model is not None and model.revision:
                plan += plan_revision(self.cache_dir, repo, model.revision, entry.ref)
            else:
                plan += plan_repo(self.cache_dir, repo, entry.ref)
        return plan

    def plan_prune(self, entries: list[Entry] | None = None) -> RemovalPlan:
        from embctl.stores.model_removal import plan_prune

        repos = None if entries is None else [e.source for e in entries]
        return plan_prune(self.cache_dir, repos)

    def usage(self) -> dict[str, int]:
        from embctl.models.usage import model_usage

        return model_usage(self.cache_dir)


def _summary(models: int, revisions: int, files: int) -> str:
    """``2 models (14 files)``: model repos (``ls`` shows one a row per backend pulled) and
    the files of their revisions (what ITEMS of a model row counts); the revisions are
    named when a repo has several (``ls`` shows the head, with "N revisions" in NOTES)."""
    from embctl.console import plural

    more = f"{plural(revisions, 'revision')}, " if revisions > models else ""
    return f"{plural(models, 'model')} ({more}{plural(files, 'file')})"
