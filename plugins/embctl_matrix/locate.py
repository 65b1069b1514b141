"""Finding the token-embedding tensor of a checkpoint by its name.

Names come from ``model.safetensors.index.json``'s ``weight_map`` (sharded checkpoints) or from
the single file's header; shapes from the header of the shard that holds the tensor.
"""

from __future__ import annotations

from embctl.plugin import EmbctlError

#: Exact names used by common architectures, most specific first.
KNOWN_NAMES = (
    "model.embed_tokens.weight",  # Llama, Mistral, Qwen, Gemma, Phi-3, ...
    "language_model.model.embed_tokens.weight",  # LLaVA-style multimodal wrappers
    "model.language_model.embed_tokens.weight",  # Gemma 3, newer multimodal layouts
    "embeddings.word_embeddings.weight",  # BERT-style encoders (all-MiniLM-L6-v2)
    "bert.embeddings.word_embeddings.weight",
    "roberta.embeddings.word_embeddings.weight",
    "transformer.wte.weight",  # GPT-2, GPT-J, Falcon-style
    "wte.weight",
    "tok_embeddings.weight",  # original Llama / Mistral checkpoints
    "transformer.word_embeddings.weight",  # BLOOM
    "word_embeddings.weight",
    "gpt_neox.embed_in.weight",  # Pythia / GPT-NeoX
    "transformer.embedding.word_embeddings.weight",  # ChatGLM
    "model.decoder.embed_tokens.weight",  # OPT
    "backbone.embeddings.weight",  # Mamba
    "backbone.embedding.weight",
)
#: Name endings that mark a token embedding in layouts not listed above.
SUFFIXES = ("embed_tokens.weight", "word_embeddings.weight", "wte.weight",
            "tok_embeddings.weight", "embed_in.weight")


def match_names(names: list[str]) -> list[str]:
    """Tensor names that look like the token embedding: a known name, else a known ending."""
    present = set(names)
    exact = [n for n in KNOWN_NAMES if n in present]
    if exact:
        return exact
    return sorted(n for n in names if n.endswith(SUFFIXES))


def candidates_message(ref: str, what: str, shapes: dict[str, tuple[str, list[int]]]) -> str:
    """One line: the problem, then the 2-D tensors (largest first) with dtypes and shapes."""
    two_d = sorted(((n, d, s) for n, (d, s) in shapes.items() if len(s) == 2),
                   key=lambda t: (-t[2][0] * t[2][1], t[0]))
    shown = ", ".join(f"{n} {d}{list(s)}" for n, d, s in two_d[:8])
    more = f" and {len(two_d) - 8} more" if len(two_d) > 8 else ""
    listing = f"2-D tensors: {shown}{more}" if two_d else "no 2-D tensors"
    return f"{ref}: {what}; {listing}; choose one with --tensor NAME"


def choose(ref: str, names: list[str], requested: str | None,
           shapes_for_error) -> str:
    """The tensor to extract; ``shapes_for_error()`` gives name -> (dtype, shape) for errors."""
    if requested is not None:
        if requested in names:
            return requested
        raise EmbctlError(candidates_message(ref, f"no tensor named {requested!r}",
                                             shapes_for_error()))
    found = match_names(names)
    if len(found) == 1:
        return found[0]
    if not found:
        raise EmbctlError(candidates_message(ref, "no token-embedding tensor found by name",
                                             shapes_for_error()))
    raise EmbctlError(candidates_message(
        ref, f"several token-embedding tensors ({', '.join(found)})", shapes_for_error()))
