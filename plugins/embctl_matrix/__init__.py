"""Built-in ``matrix:`` backend: token-embedding matrices of LLM checkpoints.

``embctl pull matrix:ORG/NAME[+ORG2/NAME2][@REV]`` range-reads only the token-embedding tensor
of each checkpoint (never a whole shard) into ``EMBCTL_HOME/matrices``; ``embctl embed
matrix:...`` turns it into static embeddings (tokenize, look up rows, mean-pool, normalize).
The matrices are a store of their own (``matrix_store``, registered through
``register_stores``): ``ls``, ``du``, ``rm`` and ``verify`` list, count, remove and check them;
``embctl export matrix:... -o FILE`` is the backend's ``export``.  The package ``matrices``
holds the cache itself (format, naming, writer, numpy views, scan, verify) and its Python API.

Nothing heavy is imported here: numpy, tokenizers and huggingface_hub are imported by the
backend's callables when a command needs them.
"""

from __future__ import annotations

from typing import Any

from embctl.plugin import Backend, Embedder, Model, Option, hookimpl

#: What ``load`` takes besides the core's cache_dir and quiet (``pull`` takes ``tensor`` too).
OPTIONS = (
    Option("normalize", bool, True, "L2-normalize the mean-pooled vectors"),
    Option("tensor", str, None, "the token-embedding tensor, when its name is not a known "
           "one (several names: one per checkpoint, comma-separated)", metavar="NAME"),
)


class MatrixBackend(Backend):
    name = "matrix"
    description = "token-embedding matrices of LLM checkpoints (range-read), static embeddings"
    options = OPTIONS

    def pull(self, model: Model, options: dict[str, Any]) -> dict[str, Any]:
        from embctl_matrix.fetch import pull_matrix

        return pull_matrix(model, options)

    def load(self, model: Model, options: dict[str, Any]) -> Embedder:
        from embctl_matrix.embedder import load

        return load(model, options)

    def export(self, model: Model, output: Any, to_dir: Any, fmt: str | None, as_json: bool,
               quiet: bool) -> None:
        from embctl_matrix.export import export_command

        export_command(model.ref, output, to_dir, fmt, as_json=as_json, quiet=quiet)


@hookimpl
def register_backends(register):
    register(MatrixBackend())


@hookimpl
def register_stores(register):
    from embctl_matrix.matrix_store import MatrixStore

    register(MatrixStore)
