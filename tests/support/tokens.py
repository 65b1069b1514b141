"""The tokens all-MiniLM-L6-v2 computes texts with, counted apart from embctl (the tokenizers
library over the model's own files): what `--max-request-tokens` is checked against."""

from __future__ import annotations

import json
from pathlib import Path


def snapshot_of(home: Path) -> Path:
    repo = home / "hf" / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


def tokens_of(snapshot: Path, texts: list[str], truncate: bool = True) -> int:
    """The tokens all-MiniLM-L6-v2 computes ``texts`` with, counted here with the tokenizers
    library from its files: special tokens included, truncated at its max_seq_length."""
    from tokenizers import Tokenizer

    limit = json.loads((snapshot / "sentence_bert_config.json").read_text())["max_seq_length"]
    tok = Tokenizer.from_file(str(snapshot / "tokenizer.json"))
    tok.no_padding()
    if truncate:
        tok.enable_truncation(max_length=limit)
    else:
        tok.no_truncation()
    return sum(len(e.ids) for e in tok.encode_batch(texts))
