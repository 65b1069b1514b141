"""Built-in ``matrix:`` backend: token-embedding matrices of LLM checkpoints.

``embctl pull matrix:ORG/NAME[+ORG2/NAME2][@REV]`` range-reads only the token-embedding tensor
of each checkpoint (never a whole shard) into ``EMBCTL_HOME/matrices``; ``embctl embed
matrix:...`` turns it into static embeddings (tokenize, look up rows, mean-pool, normalize).

Nothing heavy is imported here: numpy, tokenizers and huggingface_hub are imported by the
backend's callables when a command needs them.
"""

from __future__ import annotations

from embctl.backends import Backend, Option
from embctl.hookspecs import hookimpl

#: What ``load`` takes besides the core's cache_dir and quiet (``pull`` takes ``tensor`` too).
OPTIONS = (
    Option("normalize", bool, True, "L2-normalize the mean-pooled vectors"),
    Option("tensor", str, None, "the token-embedding tensor, when its name is not a known "
           "one (several names: one per checkpoint, comma-separated)", metavar="NAME"),
)


def _pull(model, options):
    from embctl_matrix.fetch import pull_matrix

    return pull_matrix(model, options)


def _load(model, options):
    from embctl_matrix.embedder import load

    return load(model, options)


@hookimpl
def register_backends(register):
    register(
        Backend(
            name="matrix",
            description="token-embedding matrices of LLM checkpoints (range-read), "
            "static embeddings",
            pull=_pull,
            load=_load,
            options=OPTIONS,
        )
    )
