"""The onnxruntime side: an ``InferenceSession`` made for this machine, its graph checked.

Sessions are made once per (file, device) in a process.  On CPU the intra-op pool has one
thread per physical core (hyper-threads only contend for the same units in these matrix
products), its idle threads do not spin, and inter-op parallelism is off (the graph is one
chain); graph optimizations are all on.  ``--device cuda`` uses the CUDA execution provider,
which only the onnxruntime-gpu package has: without it, one line says what to install.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from embctl.plugin import EmbctlError, UsageError

#: Inputs the backend can feed a transformer graph; ``input_ids`` is required.
KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
#: Outputs holding one vector per token, (batch, sequence, hidden), in order of preference.
TOKEN_OUTPUTS = ("last_hidden_state", "token_embeddings")

_SESSIONS: dict[tuple[str, str, int], Any] = {}
_LOCK = threading.Lock()


def library(name: str) -> Any:
    """``import name``, or one line saying what to install: a half-installed image (an
    extra left out, a wheel missing for this platform) fails at the first batch, not with a
    traceback."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise EmbctlError(f"the onnx backend cannot import {name} ({exc}): "
                          "pip install 'embctl[onnx]'") from None


def physical_cores() -> int:
    """Physical cores this process may run on (Linux topology), else the CPU count."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def check_device(device: str) -> str:
    """``device`` when this backend knows it (``cpu``, ``cuda``, ``cuda:N``); a usage error
    otherwise, before anything is loaded."""
    kind, _, index = device.partition(":")
    if device != "cpu" and (kind != "cuda" or (index and not index.isdigit())):
        raise UsageError(f"--device {device}: the onnx backend runs on cpu, cuda or cuda:N")
    return device


def providers_for(device: str) -> list[Any]:
    """The execution providers for ``device`` (``cpu``, ``cuda``, ``cuda:N``)."""
    if check_device(device) == "cpu":
        return ["CPUExecutionProvider"]
    index = device.partition(":")[2]
    ort = library("onnxruntime")

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise EmbctlError(f"--device {device}: this onnxruntime has no CUDA execution provider; "
                          "pip install onnxruntime-gpu (instead of onnxruntime)")
    return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]


def open_session(path: Path, device: str, threads: int | None, label: str) -> Any:
    """The session of the ONNX file ``path`` (``label`` names it in messages)."""
    key = (str(path), device, threads or 0)
    with _LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = _make(path, device, threads, label)
        return _SESSIONS[key]


def _make(path: Path, device: str, threads: int | None, label: str) -> Any:
    providers = providers_for(device)
    ort = library("onnxruntime")

    ort.set_default_logger_severity(3)  # its warnings about unused initializers are noise
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or physical_cores()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep instead of spinning: on a shared or CPU-limited machine (CI,
    # containers) spinning threads steal the cores the work needs (2x slower measured here).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own classes (InvalidProtobuf, Fail...)
        reason = " ".join(str(exc).split())
        reason = reason.split("] ", 1)[-1][:160]
        raise EmbctlError(f"{label}: not a loadable ONNX model ({reason}); the file may be "
                          "truncated or corrupt: check it with `embctl verify`") from None
    check_graph(session, label)
    return session


def check_graph(session: Any, label: str) -> tuple[list[str], str]:
    """The graph's inputs and its token-embeddings output, or one line saying what was
    expected."""
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    unknown = [n for n in inputs if n not in KNOWN_INPUTS]
    out = next((n for n in TOKEN_OUTPUTS if n in outputs), None)
    if "input_ids" not in inputs or unknown or out is None:
        raise EmbctlError(
            f"{label}: unexpected ONNX graph (inputs {', '.join(inputs) or 'none'}; outputs "
            f"{', '.join(outputs) or 'none'}): expected inputs input_ids[, attention_mask, "
            "token_type_ids, position_ids] and an output last_hidden_state or "
            "token_embeddings (batch, sequence, hidden)")
    return inputs, out
