"""Built-in OpenAI embeddings backend (``openai:``), registered through the ``embctl`` group.

Works with api.openai.com and with OpenAI-compatible servers (vLLM, text-embeddings-inference,
Ollama, LiteLLM) through ``OPENAI_BASE_URL`` or ``--base-url``.  Nothing heavy is imported
here: the ``openai`` client and numpy are imported by the backend's callables when a model is
used, so ``embctl --help``, ``ls`` and ``du`` stay fast.  See docs/openai.md.
"""

from __future__ import annotations

from typing import Any

from embctl.backends import Alias, Backend
from embctl.hookspecs import hookimpl


def _load(model, options: dict[str, Any]):
    from embctl_openai.embedder import load

    return load(model, options)


def _pull(model, options: dict[str, Any]) -> dict[str, Any]:
    from embctl_openai.pull import pull

    return pull(model, options)


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="openai",
            description="OpenAI embeddings API and OpenAI-compatible servers (OPENAI_BASE_URL)",
            hub=False,
            pull=_pull,
            load=_load,
        )
    )


@hookimpl
def register_aliases(register):
    for name, dim, desc in (
        ("text-embedding-3-small", 1536, "OpenAI's small v3 embedding model (API; --dimensions)."),
        ("text-embedding-3-large", 3072, "OpenAI's large v3 embedding model (API; --dimensions)."),
        ("text-embedding-ada-002", 1536, "OpenAI's previous-generation embedding model (API)."),
    ):
        register(Alias(name, f"openai:{name}", desc, dim=dim, max_seq_length=8191))
