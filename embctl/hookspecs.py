"""The plugin contract: the hooks an embctl plugin may implement.

A plugin is a module exposed through the ``embctl`` entry-point group::

    [project.entry-points.embctl]
    mybackend = "embctl_mybackend"

whose functions are decorated with :data:`hookimpl`.  The built-in backends in ``plugins/`` are
registered exactly this way.  Plugin modules must stay cheap to import: import torch,
transformers, openai or PIL inside the callables of the backend, never at module level.

The types a hook registers (``Backend``, ``Option``, ``Alias``; a store class for
``register_stores``, see :class:`embctl.stores.base.Store`) and the ``Embedder`` base class
a backend's ``load`` returns are in :mod:`embctl.backends`; docs/plugins.md documents every
hook, field and member with a complete example plugin.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("embctl")
hookimpl = pluggy.HookimplMarker("embctl")


@hookspec
def register_backends(register):
    """Register embedding backends.

    Call ``register(backend)`` once per :class:`embctl.backends.Backend`.  A backend name is a
    reference prefix (``st`` in ``st:org/name``) and must be unique; a later duplicate is
    ignored with a warning.
    """


@hookspec
def register_aliases(register):
    """Register model aliases.

    Call ``register(alias)`` once per :class:`embctl.backends.Alias`: a short name such as
    ``all-MiniLM-L6-v2`` for a full reference, with what is known of the model (dimension,
    max sequence length, approximate size, a one-line description).
    """


@hookspec
def register_stores(register):
    """Register stores of things a plugin keeps on disk, beside the core's models and vector
    caches.

    Call ``register(store_class)`` once per class implementing
    :class:`embctl.stores.base.Store`: its ``kind`` (unique) names its ``ls`` rows and
    ``ls --filter kind=...``, its ``du_lines`` its ``du`` lines, and ``ls``, ``du``, ``rm`` and
    ``verify`` visit it after the core's stores.  Its files lie under EMBCTL_HOME, and its
    module must be cheap to import (``ls`` and ``du`` import it).  A store that is malformed,
    or raises in ``open``, ``scan`` or ``usage``, costs one warning.
    """
