"""Tokenizer files: which to fetch, how to tell two tokenizers apart, how to load one."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: Small files fetched with the tensor (those the repo has).
SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "tokenizer.model", "vocab.txt", "vocab.json",
              "merges.txt", "added_tokens.json")
#: Files that define the vocabulary, in order of preference for the fingerprint.
VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


def fingerprint(files: dict[str, Path]) -> str | None:
    """``kind:hash`` of what maps text to token ids, or None when there is nothing to hash.

    For tokenizer.json only the model (vocab, merges) and the added tokens count: truncation,
    padding or post-processor settings do not change which row a token id selects.
    """
    for name in VOCAB_FILES:
        path = files.get(name)
        if path is None:
            continue
        if name == "tokenizer.json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                core = {"model": data.get("model"),
                        "added": sorted((t.get("id"), t.get("content"))
                                        for t in data.get("added_tokens") or [])}
                blob = json.dumps(core, sort_keys=True, separators=(",", ":")).encode()
            except (OSError, ValueError, AttributeError):
                blob = path.read_bytes()
        else:
            blob = path.read_bytes()
            if name == "vocab.json" and "merges.txt" in files:
                blob += files["merges.txt"].read_bytes()
        return f"{name}:{hashlib.sha256(blob).hexdigest()[:16]}"
    return None


def same_vocabulary(prints: list[str | None]) -> bool | None:
    """True/False when every pair can be compared, None when it cannot be told."""
    known = [p for p in prints if p]
    if len(known) < len(prints) or len({p.split(":", 1)[0] for p in known}) > 1:
        return None
    return len(set(known)) == 1


def load_tokenizer(tokenizer_json: Path | None, snapshot: Path | None):
    """A callable ``texts -> list[list[int]]`` (no special tokens)."""
    if tokenizer_json is not None and tokenizer_json.is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_json))
        tok.no_padding()
        tok.no_truncation()

        # encode_batch_fast (tokenizers >= 0.20) skips the character offsets we do not use.
        batch = getattr(tok, "encode_batch_fast", tok.encode_batch)

        def encode(texts: list[str]) -> list[list[int]]:
            return [e.ids for e in batch(texts, add_special_tokens=False)]

        return encode
    if snapshot is not None and snapshot.is_dir():
        from transformers import AutoTokenizer

        hf_tok = AutoTokenizer.from_pretrained(str(snapshot))

        def encode_hf(texts: list[str]) -> list[list[int]]:
            return hf_tok(list(texts), add_special_tokens=False)["input_ids"]

        return encode_hf
    return None
