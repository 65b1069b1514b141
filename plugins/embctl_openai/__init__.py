"""Built-in OpenAI embeddings backend (``openai:``), registered through the ``embctl`` group.

Works with api.openai.com and with OpenAI-compatible servers (vLLM, text-embeddings-inference,
Ollama, LiteLLM) through ``OPENAI_BASE_URL`` or ``--base-url``.  Nothing heavy is imported
here: the ``openai`` client and numpy are imported by the backend's callables when a model is
used, so ``embctl --help``, ``ls`` and ``du`` stay fast.  See docs/openai.md.
"""

from __future__ import annotations

from typing import Any

from embctl.plugin import Alias, Backend, Embedder, Model, Option, UsageError, hookimpl


def _base_url(text: str) -> str:
    """The ``base_url`` option, checked as ``load`` checks it (no credentials in it)."""
    from embctl_openai.settings import check_base_url

    try:
        return check_base_url(text.strip(), "base_url")
    except UsageError as exc:
        raise ValueError(str(exc).removeprefix("base_url ")) from None


#: What ``load`` takes besides the core's quiet.  Each falls back to its environment variable,
#: then to the default its help names (so the declared defaults are None).
OPTIONS = (
    Option("dimensions", int, None, "ask the server for N-dimensional vectors (v3 models; "
           "env EMBCTL_OPENAI_DIMENSIONS)", minimum=1, flag="--dimensions"),
    Option("base_url", _base_url, None, "the server (default: OPENAI_BASE_URL, else "
           "https://api.openai.com/v1)", metavar="URL", flag="--base-url"),
    Option("batch_size", int, None, "inputs per request (default: EMBCTL_OPENAI_BATCH_SIZE, "
           "else 512; at most 2048)", minimum=1),
    Option("max_batch_tokens", int, None, "estimated tokens per request (default: "
           "EMBCTL_OPENAI_MAX_BATCH_TOKENS, else 100000)", minimum=1),
    Option("concurrency", int, None, "requests in flight (default: EMBCTL_OPENAI_CONCURRENCY, "
           "else 4; at most 64)", minimum=1),
    Option("max_retries", int, None, "retries of a failed request (default: "
           "EMBCTL_OPENAI_MAX_RETRIES, else 5)", minimum=0),
    Option("backoff", float, None, "first wait before a retry, in seconds; doubles each retry "
           "(default: EMBCTL_OPENAI_BACKOFF, else 0.5)", minimum=0),
    Option("timeout", float, None, "seconds per request (default: EMBCTL_OPENAI_TIMEOUT, "
           "else 60)", minimum=0.001),
)


class OpenAIBackend(Backend):
    name = "openai"
    description = "OpenAI embeddings API and OpenAI-compatible servers (OPENAI_BASE_URL)"
    hub = False
    options = OPTIONS

    def load(self, model: Model, options: dict[str, Any]) -> Embedder:
        from embctl_openai.embedder import load

        return load(model, options)

    def pull(self, model: Model, options: dict[str, Any]) -> dict[str, Any]:
        """No download: one request checks the key, the model and its dimension."""
        from embctl_openai.pull import pull

        return pull(model, options)


@hookimpl
def register_backends(register):
    register(OpenAIBackend())


@hookimpl
def register_aliases(register):
    for name, dim, desc in (
        ("text-embedding-3-small", 1536, "OpenAI's small v3 embedding model (API; --dimensions)."),
        ("text-embedding-3-large", 3072, "OpenAI's large v3 embedding model (API; --dimensions)."),
        ("text-embedding-ada-002", 1536, "OpenAI's previous-generation embedding model (API)."),
    ):
        register(Alias(name, f"openai:{name}", desc, dim=dim, max_seq_length=8191))
