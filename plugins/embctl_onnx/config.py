"""The model's own sentence-transformers configuration, read from its files.

What sentence-transformers does after the transformer, so the ONNX path does the same:
``modules.json`` names the modules (Transformer, Pooling, Dense, Normalize); the Pooling
module's ``config.json`` its modes (cls, max, mean, mean_sqrt_len, weightedmean, lasttoken,
concatenated in that order when several are on); ``sentence_bert_config.json`` the
``max_seq_length``; ``config_sentence_transformers.json`` the prompts and the default one.
A repo without ``modules.json`` is a plain transformers model: mean pooling, as
sentence-transformers itself assumes for one.

Standard library only (cheap): ``load`` reads it without numpy or onnxruntime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embctl.plugin import EmbctlError

#: Pooling modes (sentence-transformers' names), and the legacy ``pooling_mode_*`` keys of
#: each, in the order sentence-transformers concatenates them when several are on.
POOLING_MODES = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens",
                 "mean": "pooling_mode_mean_tokens",
                 "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
                 "weightedmean": "pooling_mode_weightedmean_tokens",
                 "lasttoken": "pooling_mode_lasttoken"}


@dataclass(frozen=True)
class Dense:
    """A Dense module: ``activation(x @ weight.T + bias)``."""

    path: str  # the module folder, relative to the model
    in_features: int
    out_features: int
    bias: bool
    activation: str  # the last part of the torch class name: Tanh, Identity...


@dataclass(frozen=True)
class STConfig:
    pooling: tuple[str, ...] = ("mean",)
    include_prompt: bool = True
    dense: tuple[Dense, ...] = ()
    normalize: bool = False
    max_seq_length: int | None = None
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    dim: int | None = None

    @property
    def default_prompt(self) -> str:
        """What sentence-transformers puts before every text when no prompt is asked for."""
        if self.default_prompt_name:
            return self.prompts.get(self.default_prompt_name, "")
        return ""


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EmbctlError(f"{path}: unreadable ({exc}); run `embctl verify`") from None


def read_config(path: Path, ref: str) -> STConfig:
    """The configuration of the model in ``path``; one line for what this backend cannot do."""
    modules = _json(path / "modules.json")
    hf = _json(path / "config.json") or {}
    hidden = hf.get("hidden_size") or hf.get("d_model") or hf.get("dim")
    kw: dict[str, Any] = {}
    if modules is None:  # a transformers model: mean pooling, as sentence-transformers assumes
        kw.update(pooling=("mean",), dim=hidden)
    else:
        kw.update(_modules(path, modules, ref, hidden))
    bert = _json(path / "sentence_bert_config.json") or {}
    if isinstance(bert.get("max_seq_length"), int):
        kw["max_seq_length"] = bert["max_seq_length"]
    kw["do_lower_case"] = bool(bert.get("do_lower_case", False))
    if kw.get("max_seq_length") is None:
        tok = _json(path / "tokenizer_config.json") or {}
        limits = [v for v in (tok.get("model_max_length"), hf.get("max_position_embeddings"))
                  if isinstance(v, int) and 0 < v < 1_000_000]
        kw["max_seq_length"] = min(limits) if limits else None
    st = _json(path / "config_sentence_transformers.json") or {}
    prompts = st.get("prompts") or {}
    kw["prompts"] = {str(k): str(v) for k, v in prompts.items()} if isinstance(prompts, dict) \
        else {}
    kw["default_prompt_name"] = st.get("default_prompt_name") or None
    return STConfig(**kw)


def pooling_modes(cfg: dict[str, Any]) -> tuple[str, ...]:
    """The modes of a Pooling config: ``pooling_mode`` (a name or a list, sentence-transformers
    >= 5), else the legacy ``pooling_mode_*_token(s)`` booleans; mean when none is on."""
    mode = cfg.get("pooling_mode")
    if isinstance(mode, str):
        return (mode,)
    if isinstance(mode, list) and mode:
        return tuple(str(m) for m in mode)
    modes = tuple(name for name, key in POOLING_MODES.items() if cfg.get(key) is True)
    return modes or ("mean",)


def _modules(path: Path, modules: list, ref: str, hidden: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"dim": hidden}
    dense: list[Dense] = []
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        folder = str(module.get("path", ""))
        cfg = _json(path / folder / "config.json") if folder else None
        cfg = cfg or {}
        if kind == "Transformer" or kind.endswith("Transformer"):
            continue
        if kind == "Pooling":
            modes = pooling_modes(cfg)
            unknown = [m for m in modes if m not in POOLING_MODES]
            if unknown:
                raise EmbctlError(f"{ref}: pooling {', '.join(unknown)} is not supported by "
                                  "the onnx backend; use the st backend")
            out["pooling"] = modes
            out["include_prompt"] = bool(cfg.get("include_prompt", True))
            width = cfg.get("embedding_dimension") or cfg.get("word_embedding_dimension") \
                or hidden
            out["dim"] = width * len(modes) if width else None
        elif kind == "Dense":
            act = str(cfg.get("activation_function", "torch.nn.modules.activation.Tanh"))
            dense.append(Dense(folder, int(cfg["in_features"]), int(cfg["out_features"]),
                               bool(cfg.get("bias", True)), act.rsplit(".", 1)[-1]))
            out["dim"] = int(cfg["out_features"])
        elif kind == "Normalize":
            out["normalize"] = True
        else:
            raise EmbctlError(f"{ref}: the sentence-transformers module {kind} is not "
                              "supported by the onnx backend; use the st backend")
    out["dense"] = tuple(dense)
    return out
