"""Built-in sentence-transformers backend (``st:``), registered through the ``embctl`` group.

Nothing heavy is imported here: sentence_transformers and torch are imported by ``load`` when
the first model is needed.
"""

from __future__ import annotations

from typing import Any

from embctl.plugin import Alias, Backend, Embedder, Model, Option, hookimpl
from embctl_st.files import select_files

MB = 1_000_000

#: What ``load`` takes besides the core's cache_dir and quiet.
OPTIONS = (
    Option("device", str, None, "cpu, cuda, cuda:1, mps... (default: cuda if available, "
           "else cpu)"),
    Option("normalize", bool, False, "L2-normalize the vectors"),
    Option("truncate_dim", int, None, "keep the first N dimensions (Matryoshka models)",
           minimum=1),
)


class SentenceTransformers(Backend):
    name = "st"
    description = "sentence-transformers models from the Hugging Face Hub"
    default = True
    bare_org = "sentence-transformers"
    options = OPTIONS

    def load(self, model: Model, options: dict[str, Any]) -> Embedder:
        from embctl_st.model import load

        return load(model, options)

    def select_files(self, paths: list[str], options: dict[str, Any]) -> list[str]:
        return select_files(paths)

    def recognize(self, files: list[str]) -> bool:
        """A sentence-transformers model: the files its save() writes."""
        return "modules.json" in files or "config_sentence_transformers.json" in files


@hookimpl
def register_backends(register):
    register(SentenceTransformers())


@hookimpl
def register_aliases(register):
    for name, target, dim, seq, size, desc in (
        (
            "all-MiniLM-L6-v2",
            "st:sentence-transformers/all-MiniLM-L6-v2",
            384, 256, 80 * MB,
            "Fast general-purpose English sentence embeddings (6 layers).",
        ),
        (
            "all-mpnet-base-v2",
            "st:sentence-transformers/all-mpnet-base-v2",
            768, 384, 420 * MB,
            "Best-quality general-purpose sentence-transformers model (MPNet base).",
        ),
        (
            "bge-small-en-v1.5",
            "st:BAAI/bge-small-en-v1.5",
            384, 512, 130 * MB,
            "BAAI's small English retrieval model; strong on MTEB for its size.",
        ),
        (
            "e5-small-v2",
            "st:intfloat/e5-small-v2",
            384, 512, 130 * MB,
            "intfloat's small E5; prefix inputs with 'query: ' or 'passage: '.",
        ),
    ):
        register(Alias(name, target, desc, dim=dim, max_seq_length=seq, size_bytes=size))
