"""Everything a plugin may use of embctl, in one flat module: ``from embctl.plugin import X``.

What is not here is private to embctl and may change in any release.  The built-in backends
(``plugins/embctl_*``) import embctl only through this module (tests/test_layout.py checks).

Registering:
    hookimpl           decorates a plugin's hook functions (register_backends/_aliases/_stores)
    Backend            the base class of a backend: subclass it (attributes: name, options...;
                       methods: load, and select_files, pull... whose defaults are the core's)
    Alias              a short name for a model reference
    Option             one option a backend declares (``-O KEY=VALUE``, ``embctl.load(k=v)``)
    Model              a resolved reference: ref, backend, repo_id, revision, local_path
Embedding:
    Embedder           what ``Backend.load`` returns: subclass it and implement ``embed``
    split              [start, end) batches of at most N items and a token budget
    pick_device        the device asked for, else cuda when torch sees a GPU, else cpu
Input adapters:
    InputAdapter       what ``embed`` reads, keys and hands a backend: subclass it
    VectorSource       the run's cache as an adapter's ``prepare`` sees it
    Options            the run's input options ``InputAdapter.open`` receives
    Record             one input line: its number, text and JSON object
Stores (``register_stores``):
    Store              the protocol a plugin's store implements for ls, du, rm, verify
    FolderStore        a Store over a folder of items: say where it is and how to read one
    ItemCheck          verify's verdict on one item: its problems, repaired or not
    Scope              which of a model's things ``rm`` names: "default", "vectors", "all"
    Entry              one immutable inventory row (a model, a cache, a matrix...)
    VerifyOptions      what ``verify`` was asked: repair, remote, workers, quiet
    VerifyReport       what a store's ``verify`` found
    RemovalPlan        the paths a removal deletes and the bytes it frees, before it runs
    Removal            one thing a plan removes
    Doomed             a file a removal deletes, as it was when planned
    remove_files       the Removal of an entry that is a set of files
    files_size         bytes of the files that still exist
    last_used          the latest access or modification time of the files
    has_files          whether a folder holds anything
Errors for users (one line, no traceback):
    EmbctlError        a failure: exit 1
    UsageError         a mistake in the command: exit 2
    HubUnreachable     the Hub cannot be asked (offline, no connection): "pull it first"
Model files:
    locate             (folder, revision) of a model: from the cache, else pulled
    cached_snapshot    the same, from the cache only: (folder, commit) or None
    snapshot_dir       a cached snapshot's folder, or None
    dir_fingerprint    a local model folder's identity (paths, sizes, mtimes)
    pull               the generic Hub pull: resumable, shared, hash-checked
    PullResult         what a pull did; ``Backend.after_pull`` receives it
    damaged            the cache blobs among some files whose bytes fail their hash
    hash_kind          "sha256", "git-sha1" or None for a blob's name
    hash_blob          a file's hash of that kind
    open_noatime       ``open(path, "rb")`` that leaves the file's access time alone
Paths:
    embctl_home        EMBCTL_HOME, where embctl and plugins keep their own files
    hub_cache_dir      the Hugging Face model cache (``--cache-dir`` or the environment)
    repo_folder_name   ``models--org--name``: a repo's folder in a cache
Holds, locks and safe writes:
    hold               hold a model in use (a shared lock) so ``rm`` cleanups skip it
    lock_path          a per-model lock file's path under a cache or a plugin's folder
    lock_file          a lock file with its folders made and planted links refused
    write_text_atomic  replace a small text file atomically
    refuse_cache_path  refuse an output path inside a cache
The Hub:
    import_hf          huggingface_hub, imported with embctl's settings (no bars, telemetry)
    list_revision      a revision's commit and its files, sizes and hashes: a Listing
    Listing            repo_id, commit and RemoteFiles of one revision
    RemoteFile         a repo file's path, size and hash (its blob's name)
    cached_commit      the commit a revision names in a cache, offline, or None
    repo_dir           a repo's folder in a cache
    hub_error          a huggingface_hub or network error as a one-line EmbctlError
    is_offline         HF_HUB_OFFLINE is set
    is_safe_repo_path  a repo file path that is safe to write under a snapshot
References:
    resolve            a reference as typed to a Model (aliases, prefixes, revisions)
    get_backend        the registered Backend of a name
Console and logs (results to stdout, everything else to stderr):
    info               one line of progress on stderr
    warn               one warning line on stderr
    plural             "1 line", "2 lines": a count and its noun, agreed
    human_size         bytes for people: "90.9 MB"
    print_json         a JSON result on stdout
    ByteProgress       a byte progress bar (rich on a terminal, plain lines off one)
    route_logs         a library's loggers to embctl's log file (stderr under -v)
    library_warnings   ``with`` it: Python warnings to the log, not the terminal
    progress_bars      a library's bars: on under -v, off otherwise (given its switches)
    verbose            -v was given: let libraries show their own progress

Importing this module costs what registering a plugin costs (pluggy, the contract's types):
every name outside "Registering" and the first two errors is imported from its home module
when first used (a module ``__getattr__``), so ``embctl ls`` and ``du``, which import every
plugin, pay only for what a plugin's module uses at import time.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from embctl.backends import Alias, Embedder, Model, Option
from embctl.errors import EmbctlError, UsageError
from embctl.hookspecs import hookimpl
from embctl.models.backend import Backend

if TYPE_CHECKING:
    from embctl.console import human_size, info, plural, print_json, warn
    from embctl.device import pick_device
    from embctl.embed.adapter import InputAdapter, VectorSource
    from embctl.embed.batching import split
    from embctl.embed.records import Options, Record
    from embctl.guard import refuse_cache_path
    from embctl.inventory import Entry
    from embctl.models.blobcheck import damaged
    from embctl.models.hashing import hash_blob, hash_kind
    from embctl.models.holds import hold, lock_path
    from embctl.models.hub import (
        HubUnreachable,
        Listing,
        RemoteFile,
        cached_commit,
        hub_error,
        import_hf,
        is_offline,
        is_safe_repo_path,
        list_revision,
        repo_dir,
    )
    from embctl.models.locate import cached_snapshot, dir_fingerprint, locate, snapshot_dir
    from embctl.models.pull import PullResult, pull
    from embctl.models.safefs import lock_file, write_text_atomic
    from embctl.noatime import open_noatime
    from embctl.paths import embctl_home, hub_cache_dir, repo_folder_name
    from embctl.progress import ByteProgress
    from embctl.quiet import library_warnings, progress_bars, route_logs, verbose
    from embctl.registry import get_backend, resolve
    from embctl.stores.base import Scope, Store, VerifyOptions, VerifyReport
    from embctl.stores.files import files_size, last_used
    from embctl.stores.folder import FolderStore, ItemCheck, has_files
    from embctl.stores.plan import Doomed, Removal, RemovalPlan, remove_files

#: Where each lazily imported name lives (the same as the TYPE_CHECKING imports above).
_HOMES = {
    "embctl.console": "human_size info plural print_json warn",
    "embctl.device": "pick_device",
    "embctl.embed.adapter": "InputAdapter VectorSource",
    "embctl.embed.batching": "split",
    "embctl.embed.records": "Options Record",
    "embctl.guard": "refuse_cache_path",
    "embctl.inventory": "Entry",
    "embctl.models.blobcheck": "damaged",
    "embctl.models.hashing": "hash_blob hash_kind",
    "embctl.models.holds": "hold lock_path",
    "embctl.models.hub": "HubUnreachable Listing RemoteFile cached_commit hub_error import_hf "
                         "is_offline is_safe_repo_path list_revision repo_dir",
    "embctl.models.locate": "cached_snapshot dir_fingerprint locate snapshot_dir",
    "embctl.models.pull": "PullResult pull",
    "embctl.models.safefs": "lock_file write_text_atomic",
    "embctl.noatime": "open_noatime",
    "embctl.paths": "embctl_home hub_cache_dir repo_folder_name",
    "embctl.progress": "ByteProgress",
    "embctl.quiet": "library_warnings progress_bars route_logs verbose",
    "embctl.registry": "get_backend resolve",
    "embctl.stores.base": "Scope Store VerifyOptions VerifyReport",
    "embctl.stores.files": "files_size last_used",
    "embctl.stores.folder": "FolderStore ItemCheck has_files",
    "embctl.stores.plan": "Doomed Removal RemovalPlan remove_files",
}
_HOME = {name: module for module, names in _HOMES.items() for name in names.split()}

__all__ = [
    "hookimpl", "Backend", "Alias", "Option", "Model",
    "Embedder", "split", "pick_device",
    "InputAdapter", "VectorSource", "Options", "Record",
    "Store", "FolderStore", "ItemCheck", "Scope", "Entry", "VerifyOptions", "VerifyReport",
    "RemovalPlan", "Removal", "Doomed", "remove_files", "files_size", "last_used", "has_files",
    "EmbctlError", "UsageError", "HubUnreachable",
    "locate", "cached_snapshot", "snapshot_dir", "dir_fingerprint", "pull", "PullResult",
    "damaged", "hash_kind", "hash_blob", "open_noatime",
    "embctl_home", "hub_cache_dir", "repo_folder_name",
    "hold", "lock_path", "lock_file", "write_text_atomic", "refuse_cache_path",
    "import_hf", "list_revision", "Listing", "RemoteFile", "cached_commit", "repo_dir",
    "hub_error", "is_offline", "is_safe_repo_path",
    "resolve", "get_backend",
    "info", "warn", "plural", "human_size", "print_json", "ByteProgress", "route_logs",
    "library_warnings", "progress_bars", "verbose",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'embctl.plugin' has no attribute {name!r}")
    value = getattr(import_module(_HOME[name]), name)
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
