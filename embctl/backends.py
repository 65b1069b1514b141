"""The plugin contract's types: what a plugin registers (backends, their options, aliases) and
the :class:`Embedder` a backend's ``load`` returns.

A backend is a plain data class whose fields are callables; plugins fill in what they support.
Every callable is invoked lazily, so a plugin module stays cheap to import: heavy libraries
(torch, transformers, openai, PIL) are imported inside ``load`` and friends, never at module
level.  docs/plugins.md documents every field and member with an example plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import os

    import numpy as np

#: The keys the core writes into every vector-cache namespace from the resolved model.
IDENTITY_KEYS = ("backend", "repo_id", "revision")


@dataclass(frozen=True)
class Model:
    """A reference resolved to a backend and what it names."""

    ref: str  # what the user typed
    backend: str  # backend name, e.g. "st"
    repo_id: str  # Hub repo id, or API model name for remote backends
    revision: str | None = None  # requested revision (None: the default branch)
    alias: str | None = None
    local_path: str | None = None  # a local model directory given as the reference

    @property
    def display(self) -> str:
        base = f"{self.backend}:{self.repo_id}"
        return f"{base}@{self.revision}" if self.revision else base


def model_identity(model: Model, revision: str | None = None) -> dict[str, Any]:
    """The namespace keys the core derives from the model: ``backend``, ``repo_id`` and, when
    there is one, ``revision`` (the resolved one, else the one asked for).  ``ls``, ``rm`` and
    ``export`` find a model's vector caches by these keys."""
    ns: dict[str, Any] = {"backend": model.backend, "repo_id": model.repo_id}
    resolved = revision if revision is not None else model.revision
    if resolved is not None:
        ns["revision"] = resolved
    return ns


class Embedder:
    """A loaded model, as returned by ``Backend.load``: subclass it and implement ``embed``.

    Every other member has a default; a backend overrides (as a class attribute, an instance
    attribute or a property) what its model knows better.  These members are everything the
    core uses: it does the batching (``batch_size``, ``max_batch_tokens``), the parallel calls
    (``concurrency``), the vector cache (``namespace``), the checks of the model's files
    (``model_files``) and of every vector (NaN, infinity), and calls ``finish``/``cancel``.
    """

    #: The resolved model; set it in ``load``.  Messages name it (``ref``) and the namespace's
    #: ``backend`` and ``repo_id`` come from it.
    model: Model | None = None
    #: The revision the vectors come from: the commit the reference resolved to (or a local
    #: directory's fingerprint).  None for models without revisions (API models).
    revision: str | None = None
    #: The backend's own settings that change the output (normalize, dimensions, image
    #: preprocessing...), JSON-able.  The core adds the model's identity and its own keys.
    params: Mapping[str, Any] = MappingProxyType({})
    #: False: the core adds no ``backend``/``repo_id``/``revision`` to the namespace, whose
    #: ``params`` identify the model by content already (the matrix backend: its sha256).
    namespace_identity: bool = True
    #: Vector dimension; 0 while unknown (an API model before its first answer).
    dim: int = 0
    #: The dimension when known before the model runs: a new cache file's pages are sized for it.
    expected_dim: int | None = None
    #: Inputs per ``embed`` call when ``--batch-size`` is not given (None: 64).
    batch_size: int | None = None
    #: ``embed`` calls in flight at once, in threads, when ``--concurrency`` is not given.
    concurrency: int = 1
    #: Token budget of one ``embed`` call: a batch is also cut before its inputs' tokens
    #: (``count_tokens``) pass it (API request limits).  None: batches are cut by size only.
    max_batch_tokens: int | None = None
    #: For models that pad each call's inputs to the longest (transformers): the fixed cost of
    #: one ``embed`` call, in the units of the input's size (characters of text).  The core
    #: then cuts each window's length-sorted misses where the padding saved pays for another
    #: call, instead of every ``batch_size`` inputs (embctl/embed/batching.py).  None: by
    #: ``batch_size`` only (and ``max_batch_tokens``, which comes first).
    call_cost: int | None = None
    #: ``token_lengths(inputs) -> list[int]``: the tokens each input is computed with (after
    #: truncation, special tokens included), from the same encodings the model then uses (the
    #: backend keeps them for the ``embed`` call of those inputs: one tokenization).  With it
    #: the core sorts each window's misses by tokens and cuts calls by padded tokens
    #: (``padded_budget``; ``call_cost`` is then in tokens).  None: by ``size`` (characters).
    token_lengths: Callable[[Sequence[Any]], list[int]] | None = None
    #: With ``token_lengths``: the most padded tokens (inputs x the longest one's tokens) one
    #: call may compute; None: ``batch_size`` alone bounds a call.
    padded_budget: int | None = None
    #: ``count_tokens(text) -> int``, the tokens of one input (an estimate unless
    #: ``tokens_exact``).  None: the model cannot count; ``--dry-run`` then shows no tokens.
    count_tokens: Callable[[str], int] | None = None
    #: True when ``count_tokens`` is exact (``--dry-run`` prints "tokens", not "~tokens").
    tokens_exact: bool = False
    #: The most tokens one input may have; ``--dry-run`` counts the inputs over it.
    max_input_tokens: int | None = None
    #: The files the vectors are made from.  Those that are Hugging Face cache blobs are
    #: checked against their hashes before the first batch is computed.
    model_files: Sequence[str | os.PathLike[str]] = ()

    @property
    def ref(self) -> str:
        """The reference as the user gave it, for messages ("" when ``model`` is not set)."""
        return self.model.ref if self.model is not None else ""

    @property
    def namespace(self) -> dict[str, Any]:
        """The model's part of the vector-cache namespace: ``params`` plus the identity the
        core derives from ``model`` and ``revision`` (see embctl/namespace.py)."""
        ns = dict(self.params)
        if self.namespace_identity and self.model is not None:
            ns.update(model_identity(self.model, self.revision))
        return ns

    @namespace.setter
    def namespace(self, value: Mapping[str, Any]) -> None:
        # Plugins written before ``params`` assigned ``namespace``: it is their params.
        self.params = dict(value)

    def embed(self, inputs: Sequence[Any]) -> np.ndarray:
        """Return a float32 array of shape (len(inputs), dim): a new array each call (the
        pipeline keeps it without copying; calls may run in parallel threads)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement embed()")

    def cancel(self) -> None:
        """The run is stopping (a failed batch, Ctrl-C, SIGTERM): calls running now should give
        up what they can (send no retry).  Called from the main thread."""

    def finish(self) -> None:
        """Called once at the end of a run (or of an ``embctl.load`` ``embed`` call): print
        one summary warning, stop worker pools."""


@dataclass(frozen=True)
class Option:
    """An option of one backend: ``embctl embed REF -O NAME=VALUE`` on the command line,
    ``embctl.load(REF, NAME=VALUE)`` in Python.  ``load`` receives the parsed value.

    name:     a Python identifier (``base_url``; ``base-url=`` is accepted on the command line).
    type:     ``bool``, ``int``, ``float``, ``str``, or a parser ``text -> value`` that raises
              ValueError with a reason.
    default:  the value the backend uses when the option is not given; None when that is
              decided at load time (then ``help`` says how).
    help:     one line for ``embctl plugins`` and ``embed --help``.
    choices:  the values allowed, when they are a fixed set.
    minimum:  the smallest value allowed, for numbers.
    metavar:  shown instead of the type's name (``URL``, ``LO:HI``).
    """

    name: str
    type: Callable[[str], Any] = str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    metavar: str | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"option name {self.name!r} is not a Python identifier")


@dataclass(frozen=True)
class PullPlan:
    """What a pull must fetch from a Hub repo."""

    files: list[str]


@dataclass(frozen=True)
class Backend:
    """An embedding backend, registered by a plugin through ``register_backends``.

    name:          the reference prefix (``st`` in ``st:org/name``).
    description:   one line for ``embctl plugins``.
    hub:           True when models are Hugging Face Hub repos (pull/ls/rm/verify apply).
    default:       True for the backend that handles references without a prefix.
    bare_org:      organisation prepended to a bare name without '/', as sentence-transformers
                   does with ``sentence-transformers/<name>``.
    select_files:  given every file path in the repo, return those a pull must download.
                   ``None`` means every file.  Called as ``select_files(paths)``, or as
                   ``select_files(paths, options)`` when ``pull_options`` is not empty.
    pull_options:  names of the backend's options that change what a pull fetches (``onnx``:
                   ``variant``).  ``embctl pull -O``/``--variant`` take only these; they reach
                   ``select_files``, ``after_pull`` and ``export_files``, and the pull record.
    after_pull:    ``after_pull(model, result, options)``, called after a generic pull (the
                   files are in place): derive what the backend needs from the snapshot, into
                   embctl's own files (``onnx``: export a repo without ONNX weights).  May
                   add JSON-able keys to ``result.extra``.
    export_files:  ``export_files(model, snapshot, options) -> {relative path: file}``: files
                   ``embctl export REF --to DIR`` adds to the snapshot's (what the backend
                   keeps outside the Hub cache); raises EmbctlError when the options' files
                   are missing.
    pull:          a custom pull, replacing the generic Hub download (e.g. range requests).
                   Called as ``pull(model, options) -> dict`` (a JSON-able summary).
    load:          ``load(model, options) -> Embedder``; ``options`` holds the backend's own
                   options (``options`` below), parsed, and the core's ``cache_dir`` and
                   ``quiet``.
    options:       the backend's own options, declared: :class:`Option`.
    input_kind:    "text" or "image": what the embed pipeline feeds ``Embedder.embed``.
    recognize:     given the file paths of a model another tool put in the Hub cache, True
                   when it is one of this backend's (``ls`` shows it as such).
    input_adapter: ``input_adapter(options) -> InputAdapter``: what ``embed`` reads, keys and
                   hands to ``embed`` (embctl/embed/adapter.py); ``None``: texts.
    export:        the backend's own ``embctl export REF`` (without ``--vectors``), for what it
                   keeps outside the Hub cache.  Called as ``export(model, output, to_dir,
                   fmt, as_json, quiet)``: ``-o``, ``--to`` (Paths or None), ``--format`` (or
                   None), ``--json``, ``--quiet``; it checks them, writes the export and prints
                   its summary (e.g. ``matrix:`` writes a .npy or .safetensors file).
    """

    name: str
    description: str = ""
    hub: bool = True
    default: bool = False
    bare_org: str | None = None
    select_files: Callable[..., list[str]] | None = None
    pull_options: tuple[str, ...] = ()
    after_pull: Callable[..., None] | None = None
    export_files: Callable[..., dict[str, Any]] | None = None
    pull: Callable[..., dict[str, Any]] | None = None
    load: Callable[..., Embedder] | None = None
    options: tuple[Option, ...] = ()
    input_kind: str = "text"
    recognize: Callable[[list[str]], bool] | None = None
    input_adapter: Callable[[dict[str, Any]], Any] | None = None
    export: Callable[..., None] | None = None
    plugin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        names = [o.name for o in self.options]
        if len(set(names)) != len(names) or not all(isinstance(o, Option) for o in self.options):
            raise ValueError(f"backend {self.name!r}: options must be Options with unique names")
        object.__setattr__(self, "pull_options", tuple(self.pull_options))
        if any(name not in names for name in self.pull_options):
            raise ValueError(f"backend {self.name!r}: pull_options must name declared options")


@dataclass(frozen=True)
class Alias:
    """A short name for a model, registered through ``register_aliases``."""

    name: str
    target: str  # a full reference, e.g. "st:sentence-transformers/all-MiniLM-L6-v2"
    description: str = ""
    dim: int | None = None
    max_seq_length: int | None = None
    size_bytes: int | None = None  # approximate download size
    plugin: str = field(default="", compare=False)
