"""The plugin contract's types: what a plugin registers (backends, their options, aliases) and
the :class:`Embedder` a backend's ``load`` returns.

A backend is a subclass of :class:`Backend`: class attributes say what it is, methods with
typed defaults do what it supports.  Every method is called lazily, so a plugin module stays
cheap to import: heavy libraries (torch, transformers, openai, PIL) are imported inside
``load`` and friends, never at module level.  docs/plugins.md documents every attribute and
member with an example plugin.
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
    flag:     a shorthand flag of ``embed`` (and of ``pull``, for a pull option), such as
              ``--variant``: the command adds it, and ``embed --help`` lists it under the
              backend.  Backends declaring the same flag share it.
    """

    name: str
    type: Callable[[str], Any] = str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    metavar: str | None = None
    flag: str | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"option name {self.name!r} is not a Python identifier")
        if self.flag is not None and self.flag != "--" + self.name.replace("_", "-"):
            raise ValueError(f"option {self.name!r}: its flag must be "
                             f"--{self.name.replace('_', '-')}, not {self.flag!r}")


class Backend:
    """An embedding backend: subclass it and register an instance through
    ``register_backends`` (``register(MyBackend())``).

    A backend declares what it is in class attributes and overrides the methods it supports;
    every method but ``load`` has a default that does what the core does for any Hub backend,
    and each is called in one way only.  Methods are called lazily, so a plugin module stays
    cheap to import: heavy libraries are imported inside them, never at module level.

    Class attributes (or keyword arguments of the constructor, for a backend without code):

    name:          the reference prefix (``st`` in ``st:org/name``).
    description:   one line for ``embctl plugins``.
    hub:           True when models are Hugging Face Hub repos (pull/ls/rm/verify apply).
    default:       True for the backend that handles references without a prefix.
    bare_org:      organisation prepended to a bare name without '/', as sentence-transformers
                   does with ``sentence-transformers/<name>``.
    options:       the backend's own options, declared: :class:`Option`.
    pull_options:  names of the options that change what a pull fetches (``onnx``:
                   ``variant``).  ``embctl pull -O``/``--variant`` take only these; they reach
                   ``select_files``, ``after_pull`` and ``export_files``, and the pull record.
    input_kind:    "text" or "image": what the embed pipeline feeds ``Embedder.embed``.
    plugin:        set by the core: the plugin that registered the backend.
    """

    name: str = ""
    description: str = ""
    hub: bool = True
    default: bool = False
    bare_org: str | None = None
    options: tuple[Option, ...] = ()
    pull_options: tuple[str, ...] = ()
    input_kind: str = "text"
    plugin: str = ""

    _ATTRIBUTES = ("name", "description", "hub", "default", "bare_org", "options",
                   "pull_options", "input_kind", "plugin")

    def __init__(self, name: str | None = None, **attributes: Any) -> None:
        if name is not None:
            attributes["name"] = name
        for key, value in attributes.items():
            if key not in self._ATTRIBUTES:
                raise TypeError(f"Backend() got {key!r}: subclass Backend and override the "
                                "method instead" if callable(getattr(Backend, key, None))
                                else f"Backend() got an unknown attribute {key!r}")
            setattr(self, key, value)
        self.options = tuple(self.options)
        self.pull_options = tuple(self.pull_options)
        names = [o.name for o in self.options]
        if not self.name:
            raise ValueError(f"{type(self).__name__}: a backend needs a name")
        if len(set(names)) != len(names) or not all(isinstance(o, Option) for o in self.options):
            raise ValueError(f"backend {self.name!r}: options must be Options with unique names")
        if any(n not in names for n in self.pull_options):
            raise ValueError(f"backend {self.name!r}: pull_options must name declared options")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} (plugin {self.plugin or '?'})>"

    #: Set on the core's own classes: their methods are the defaults (see ``overrides``).
    _core_defaults = True

    def overrides(self, method: str) -> bool:
        """Whether this backend brings its own ``method`` (``load``: it embeds; ``pull``: it
        keeps its models outside the Hub cache; ``export``: it exports them itself)."""
        for cls in type(self).__mro__:
            if method in vars(cls):
                return not vars(cls).get("_core_defaults", False)
        return False

    def load(self, model: Model, options: dict[str, Any]) -> Embedder:
        """Load ``model`` and return its :class:`Embedder`.  ``options`` holds the backend's
        own options, parsed, with their defaults, and the core's ``cache_dir`` and ``quiet``.
        A backend that does not override it cannot embed."""
        raise NotImplementedError(f"backend {self.name!r} cannot embed")

    def select_files(self, paths: list[str], options: dict[str, Any]) -> list[str]:
        """Given every file path in the repo, those a pull must download; ``options`` holds
        the ``pull_options`` (empty when there are none).  Default: every file."""
        return list(paths)

    def pull(self, model: Model, options: dict[str, Any]) -> dict[str, Any]:
        """``embctl pull REF``: fetch the model; return a JSON-able summary whose
        ``message`` is the line the CLI prints.  ``options``: ``cache_dir``, ``quiet``,
        ``include``, ``exclude``, ``from_dir``, ``follow_links``, ``tensor``, ``json`` and the
        ``pull_options`` given.  Default: the core's Hub pull (``select_files``, the download,
        then ``after_pull``), or the import of ``from_dir``; that default lives in
        ``embctl.plugin.Backend`` (embctl/models/backend.py), which plugins subclass, so that
        this module needs no pull machinery.  Override it for a backend that keeps its models
        elsewhere (``matrix``: range reads) or checks access (``openai``)."""
        from embctl.errors import UsageError

        raise UsageError(f"{model.ref}: the {self.name} backend has nothing to pull")

    def after_pull(self, model: Model, result: Any, options: dict[str, Any]) -> None:
        """Called after the default pull (the files are in place) with its ``PullResult``
        and the pull options plus ``cache_dir`` and ``quiet``: derive what the backend needs
        from the snapshot, into embctl's own files (``onnx``: export a repo without ONNX
        weights).  May add JSON-able keys to ``result.extra``.  Default: nothing."""

    def export_files(self, model: Model, snapshot: os.PathLike[str],
                     options: dict[str, Any]) -> dict[str, Any]:
        """``{relative path: file}``: files ``embctl export REF --to DIR`` adds to the
        snapshot's (what the backend keeps outside the Hub cache); raise EmbctlError when the
        options' files are missing.  Default: none."""
        return {}

    def recognize(self, files: list[str]) -> bool:
        """Given the file paths of a model another tool put in the Hub cache, True when it is
        one of this backend's (``ls`` shows it as such).  Default: False."""
        return False

    def input_adapter(self, options: dict[str, Any]) -> Any:
        """The ``InputAdapter``: what ``embed`` reads, keys and hands to ``embed``
        (embctl/embed/adapter.py).  Default: texts, with ``options["prefix"]`` prepended."""
        from embctl.embed.adapter import TextAdapter

        return TextAdapter(options.get("prefix") or "")

    def export(self, model: Model, output: os.PathLike[str] | None,
               to_dir: os.PathLike[str] | None, fmt: str | None, as_json: bool,
               quiet: bool) -> None:
        """The backend's own ``embctl export REF`` (without ``--vectors``), for what it keeps
        outside the Hub cache: ``-o``, ``--to``, ``--format``, ``--json``, ``--quiet``; it
        checks them, writes the export and prints its summary (``matrix:`` writes a .npy or
        .safetensors file).  Only called when overridden (see ``overrides``)."""
        raise NotImplementedError(f"backend {self.name!r} has no export of its own")


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
