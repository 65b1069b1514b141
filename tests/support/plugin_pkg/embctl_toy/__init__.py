"""``toy:``, a third-party embctl backend used by the tests: the whole plugin contract from the
outside (docs/plugins.md walks through it).

A toy model is a Hub repo with ``toy.json`` (``{"dim": D}``) and ``weights.bin``: 256 rows of D
little-endian float32, one per byte value.  A text's vector is the mean of the rows of its
UTF-8 bytes, L2-normalized with ``normalize=true``.
"""

from __future__ import annotations

from typing import Any

from embctl.plugin import Alias, Backend, Embedder, Model, Option, hookimpl

FILES = ("toy.json", "weights.bin")


def select_files(paths: list[str]) -> list[str]:
    """A pull fetches the config and the weights; never READMEs or other exports."""
    return [p for p in FILES if p in paths]


class ToyBackend(Backend):
    name = "toy"
    description = "toy byte-embedding models (a third-party plugin)"
    options = (Option("normalize", bool, False, "L2-normalize the vectors"),)

    def select_files(self, paths: list[str], options: dict[str, Any]) -> list[str]:
        return select_files(paths)

    def load(self, model: Model, options: dict[str, Any]) -> Embedder:
        from embctl_toy.embedder import load  # numpy is imported here, not by `embctl ls`

        return load(model, options)


@hookimpl
def register_backends(register):
    register(ToyBackend())


@hookimpl
def register_aliases(register):
    register(Alias("toy-mini", "toy:toyorg/toy-mini", "The smallest toy model", dim=16))
