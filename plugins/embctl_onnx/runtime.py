"""Running a batch: tokenize (tokenizers, padded to the batch's longest input), run the ONNX
graph (onnxruntime), pool and post-process (numpy).  Imported on the first batch only."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from embctl.plugin import EmbctlError
from embctl_onnx.pooling import load_dense, normalize, pool
from embctl_onnx.session import check_graph, open_session

if TYPE_CHECKING:
    from embctl_onnx.embedder import ONNXEmbedder

HEAD_CHARS_PER_TOKEN = 32
#: Encodings `lengths` keeps for the batches to come (a few windows' worth).
KEPT = 16384
#: One input as the graph gets it: (ids, token type ids, truncated).
Encoded = tuple[list[int], list[int], bool]


def make_tokenizer(embedder: ONNXEmbedder, *, truncate: bool = True, pad: bool = True):
    """The model's fast tokenizer, truncating at max_seq_length (unless ``truncate`` is
    False), padding each batch to its longest input (unless ``pad`` is False: `encode`
    pads)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from embctl_onnx.session import library

    Tokenizer = library("tokenizers").Tokenizer  # noqa: N806 - the class, as imported

    path = embedder.path / "tokenizer.json"
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # a missing or malformed tokenizer.json
        raise EmbctlError(f"{embedder.model.ref}: cannot read {path} ({exc}); the onnx "
                          "backend needs a fast tokenizer (tokenizer.json)") from None
    limit = embedder.config.max_seq_length
    if limit and truncate:
        tok.enable_truncation(max_length=limit)
    else:
        tok.no_truncation()
    padding = tok.padding or {}
    embedder.pad_id = padding.get("pad_id", 0)
    if pad:
        tok.enable_padding(pad_id=embedder.pad_id, pad_token=padding.get("pad_token", "[PAD]"))
    else:
        tok.no_padding()
    return tok


def encode(embedder: ONNXEmbedder, tok, texts: list[str]) -> list[Encoded]:
    """Each text as the model computes it (prompt, lower case, truncated; not padded), from
    the encodings `token_lengths` kept for these texts, else tokenized now."""
    prepared = _prepare(embedder, tok, texts)
    kept = embedder.encoded
    with embedder._lock:  # pool threads take, the planning thread adds
        found = [kept.pop(t, None) for t in prepared]
    missing = [t for t, e in zip(prepared, found, strict=True) if e is None]
    if missing:
        made = iter(tokenize(tok, missing))
        found = [e if e is not None else next(made) for e in found]
    return found  # type: ignore[return-value]


def _prepare(embedder: ONNXEmbedder, tok, texts: list[str]) -> list[str]:
    """Each text as it is tokenized: prompt, lower case, a very long one cut to its head.
    The key its encoding is kept by between `lengths` and `encode`."""
    return _clip(embedder, tok, [_text(embedder, t) for t in texts])


def tokenize(tok, texts: list[str]) -> list[Encoded]:
    return [(e.ids, e.type_ids, bool(e.overflowing)) for e in tok.encode_batch(texts)]


def lengths(embedder: ONNXEmbedder, tok, texts: list[str]) -> list[int]:
    """The tokens each text is computed with; their encodings are kept (`encode` takes
    them) so that the batch tokenizes nothing again.  At most `KEPT` are kept: a dry run,
    which embeds nothing, keeps the newest."""
    prepared = _prepare(embedder, tok, texts)
    encoded = tokenize(tok, prepared)
    kept = embedder.encoded
    with embedder._lock:
        for text, e in zip(prepared, encoded, strict=True):
            kept[text] = e
        while len(kept) > KEPT:
            kept.popitem(last=False)
    return [len(ids) for ids, _types, _over in encoded]


def _pad(rows: list[list[int]], width: int, value: int, dtype) -> np.ndarray:
    out = np.full((len(rows), width), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def _text(embedder: ONNXEmbedder, text: str) -> str:
    text = embedder.prompt + text if embedder.prompt else text
    return text.lower() if embedder.config.do_lower_case else text


def count(embedder: ONNXEmbedder, tok, text: str) -> int:
    """``text``'s tokens with ``tok`` (not truncating); a text so long that its head alone
    fills max_seq_length is counted by its head (a 50 MB line is not tokenized to count it)."""
    limit = embedder.config.max_seq_length
    if limit and len(text) > limit * HEAD_CHARS_PER_TOKEN:
        text = text[:limit * HEAD_CHARS_PER_TOKEN]
    return len(tok.encode(_text(embedder, text)).ids)


def prepare(embedder: ONNXEmbedder, tok) -> tuple:
    """(tokenizer, session, graph inputs, output name, input dtype, dense modules,
    prompt tokens): what every batch needs, made once."""
    label = f"{embedder.model.ref}: {embedder.files.onnx_label}"
    session = open_session(embedder.files.onnx, embedder.device, embedder.threads, label)
    inputs, output = check_graph(session, label)
    kinds = {i.name: i.type for i in session.get_inputs()}
    dtype = np.int32 if kinds.get("input_ids") == "tensor(int32)" else np.int64
    dense = [load_dense(embedder.path, d, embedder.model.ref) for d in embedder.config.dense]
    prompt_tokens = 0
    if embedder.prompt and not embedder.config.include_prompt:
        # sentence-transformers leaves the prompt's tokens out of the pooling (Instructor)
        prompt_tokens = max(0, len(tok.encode(embedder.prompt).ids) - 1)
    return tok, session, inputs, output, dtype, dense, prompt_tokens


def _clip(embedder: ONNXEmbedder, tok, texts: list[str]) -> list[str]:
    """Cut very long texts to a head that already has more tokens than the model keeps."""
    limit = embedder.config.max_seq_length
    if not limit:
        return texts
    head = limit * HEAD_CHARS_PER_TOKEN
    out = list(texts)
    for i, text in enumerate(texts):
        if len(text) > head:
            enc = tok.encode(text[:head])
            if len(enc.overflowing) and len(enc.ids) + sum(
                    len(o.ids) for o in enc.overflowing[:1]) > limit + 16:
                out[i] = text[:head]
    return out


def run(embedder: ONNXEmbedder, ready: tuple, inputs: list[str]) -> np.ndarray:
    tok, session, names, output, dtype, dense, prompt_tokens = ready
    cfg = embedder.config
    encodings = encode(embedder, tok, inputs)
    embedder.truncated += sum(1 for _ids, _types, over in encodings if over)
    width = max(len(ids) for ids, _types, _over in encodings)
    ids = _pad([e[0] for e in encodings], width, embedder.pad_id, dtype)
    mask = _pad([[1] * len(e[0]) for e in encodings], width, 0, dtype)
    feed: dict[str, Any] = {"input_ids": ids}
    if "attention_mask" in names:
        feed["attention_mask"] = mask
    if "token_type_ids" in names:
        feed["token_type_ids"] = _pad([e[1] for e in encodings], width, 0, dtype)
    if "position_ids" in names:
        feed["position_ids"] = np.broadcast_to(np.arange(ids.shape[1], dtype=dtype), ids.shape)
    try:
        hidden = session.run([output], feed)[0]
    except Exception as exc:  # onnxruntime's own errors: shapes, types, out of memory
        reason = " ".join(str(exc).split())[:200]
        raise EmbctlError(f"{embedder.model.ref}: onnxruntime failed on "
                          f"{embedder.files.onnx_label}: {reason}") from None
    hidden = np.asarray(hidden, dtype=np.float32)
    if hidden.ndim != 3 or hidden.shape[:2] != ids.shape:
        raise EmbctlError(f"{embedder.model.ref}: {embedder.files.onnx_label}: output "
                          f"{output} has shape {hidden.shape}; expected (batch, sequence, "
                          "hidden)")
    pool_mask = mask
    if prompt_tokens:
        pool_mask = mask.copy()
        pool_mask[:, :prompt_tokens] = 0
    vectors = pool(hidden, pool_mask, cfg.pooling)
    for apply in dense:
        vectors = apply(vectors)
    if cfg.normalize:
        vectors = normalize(vectors)
    if embedder.truncate_dim:
        vectors = vectors[:, :embedder.truncate_dim]
    if embedder.normalize:
        vectors = normalize(vectors)
    return np.ascontiguousarray(vectors, dtype=np.float32)
