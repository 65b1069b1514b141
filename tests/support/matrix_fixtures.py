"""Tiny LLM checkpoints for the matrix backend's tests and benchmark.

`build_sharded_llm` writes a Llama-like checkpoint: three bf16 shards and an index, the token
embedding ``model.embed_tokens.weight`` in the *second* shard (a seed-style "shard 1" guess
would miss it), an ``lm_head.weight`` of the same shape as a decoy, a config, and a real
tokenizer (all-MiniLM-L6-v2's WordPiece, vocabulary 30522, the embedding's row count).
`build_matrix_repos` adds the variants the error tests need.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

from .hub import build_minilm_repo, make_repo, minilm_source

VOCAB = 30522
LLM = "test-org/tiny-llm"
LLM_B = "test-org/tiny-llm-b"
SMALL_VOCAB = "test-org/small-vocab"
OTHER_TOKENIZER = "test-org/other-tokenizer"
NO_EMBED = "test-org/no-embed"
TWO_EMBED = "test-org/two-embed"
BIN_ONLY = "test-org/bin-only"
EMBED_NAME = "model.embed_tokens.weight"


def tensor_bytes(path: Path, name: str) -> bytes:
    """The raw bytes of one tensor of a local safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        begin, end = header[name]["data_offsets"]
        f.seek(8 + n + begin)
        return f.read(end - begin)


def header_size(path: Path) -> int:
    with open(path, "rb") as f:
        return 8 + struct.unpack("<Q", f.read(8))[0]


def _save(path: Path, tensors: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})


def build_sharded_llm(root: Path, repo_id: str = LLM, *, hidden: int = 64, vocab: int = VOCAB,
                      layers: int = 2, seed: int = 0, tokenizer: Path | None = None,
                      dtype: str = "bfloat16") -> Path:
    """Write the checkpoint under ``root/<repo_id>/``; return that directory."""
    import torch

    repo = Path(root) / repo_id
    if (repo / "model.safetensors.index.json").is_file():
        return repo
    gen = torch.Generator().manual_seed(seed)
    dt = getattr(torch, dtype)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * 0.05).to(dt)

    inter = hidden * 4
    shards: list[dict[str, torch.Tensor]] = [{}, {}, {}]
    for i in range(layers):
        target = shards[0] if i < layers - 1 else shards[1]
        p = f"model.layers.{i}."
        for name, shape in (("self_attn.q_proj.weight", (hidden, hidden)),
                            ("self_attn.k_proj.weight", (hidden, hidden)),
                            ("self_attn.v_proj.weight", (hidden, hidden)),
                            ("self_attn.o_proj.weight", (hidden, hidden)),
                            ("mlp.gate_proj.weight", (inter, hidden)),
                            ("mlp.up_proj.weight", (inter, hidden)),
                            ("mlp.down_proj.weight", (hidden, inter)),
                            ("input_layernorm.weight", (hidden,))):
            target[p + name] = rand(*shape)
    shards[1][EMBED_NAME] = rand(vocab, hidden)
    shards[2]["lm_head.weight"] = rand(vocab, hidden)
    shards[2]["model.norm.weight"] = rand(hidden)
    weight_map: dict[str, str] = {}
    total = 0
    for i, tensors in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        _save(repo / name, tensors)
        for key, t in tensors.items():
            weight_map[key] = name
            total += t.numel() * t.element_size()
    (repo / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
        indent=2))
    (repo / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "vocab_size": vocab, "num_hidden_layers": layers, "intermediate_size": inter,
        "torch_dtype": dtype}, indent=2))
    src = minilm_source()
    shutil.copyfile(tokenizer or src / "tokenizer.json", repo / "tokenizer.json")
    shutil.copyfile(src / "tokenizer_config.json", repo / "tokenizer_config.json")
    return repo


def embed_shard(repo: Path) -> Path:
    index = json.loads((repo / "model.safetensors.index.json").read_text())
    return repo / index["weight_map"][EMBED_NAME]


def build_matrix_repos(root: Path) -> dict[str, Path]:
    """Every repo the matrix tests use, plus the real all-MiniLM-L6-v2; name -> directory."""
    root = Path(root)
    repos = {
        LLM: build_sharded_llm(root, LLM, seed=0),
        LLM_B: build_sharded_llm(root, LLM_B, hidden=32, seed=1),
        SMALL_VOCAB: build_sharded_llm(root, SMALL_VOCAB, vocab=1000, hidden=16, seed=2),
        "minilm": build_minilm_repo(root, decoys=False),
    }
    other = root / "_other_tokenizer.json"
    data = json.loads((minilm_source() / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    a, b = "hello", "world"
    vocab[a], vocab[b] = vocab[b], vocab[a]  # same size, different token ids
    other.write_text(json.dumps(data))
    repos[OTHER_TOKENIZER] = build_sharded_llm(root, OTHER_TOKENIZER, hidden=16, seed=3,
                                               tokenizer=other)
    import torch

    if not (root / NO_EMBED / "model.safetensors").is_file():
        _save(root / NO_EMBED / "model.safetensors",
              {"encoder.proj.weight": torch.zeros(64, 32), "encoder.bias": torch.zeros(32)})
    if not (root / TWO_EMBED / "model.safetensors").is_file():
        _save(root / TWO_EMBED / "model.safetensors",
              {"encoder.embed_tokens.weight": torch.zeros(100, 8),
               "decoder.embed_tokens.weight": torch.zeros(100, 8)})
    repos[NO_EMBED] = root / NO_EMBED
    repos[TWO_EMBED] = root / TWO_EMBED
    repos[BIN_ONLY] = make_repo(root, BIN_ONLY, {"pytorch_model.bin": b"\0" * 2048,
                                                 "config.json": "{}"})
    return repos
