"""Which ONNX file of a repo a variant means, for this CPU.

Repos exported by sentence-transformers/optimum carry ``onnx/model.onnx`` (fp32) and int8
files quantized for one instruction set each: ``model_qint8_avx512_vnni.onnx`` (VNNI),
``model_qint8_avx512.onnx`` (AVX-512), ``model_quint8_avx2.onnx`` (AVX2) and
``model_qint8_arm64.onnx`` (ARM).  Any of them runs anywhere onnxruntime does; the one made
for this CPU runs fastest, so it comes first and the others follow as fallbacks, then the
names other exporters use (``model_quantized.onnx``, ``model_int8.onnx``...).

Standard library only: ``embctl ls`` and ``pull`` import this.
"""

from __future__ import annotations

import functools
import os
import platform

#: The variants ``-O variant=...`` takes.
VARIANTS = ("fp32", "int8")

FP32_FILES = ("onnx/model.onnx", "model.onnx")
VNNI = "onnx/model_qint8_avx512_vnni.onnx"
AVX512 = "onnx/model_qint8_avx512.onnx"
AVX2 = "onnx/model_quint8_avx2.onnx"
ARM64 = "onnx/model_qint8_arm64.onnx"
#: Names other exporters give one int8 file (Xenova/transformers.js, fastembed repos).
GENERIC_INT8 = ("onnx/model_quantized.onnx", "onnx/model_int8.onnx", "onnx/model_uint8.onnx",
                "model_quantized.onnx", "model_optimized_quantized.onnx")


#: What ``EMBCTL_ONNX_CPU`` takes (the CPU kinds :func:`cpu_kind` tells apart).
CPU_KINDS = ("vnni", "avx512", "avx2", "arm", "x86")


def forced_cpu() -> str | None:
    """``EMBCTL_ONNX_CPU`` (None when unset or empty): a usage error listing the values when
    it is none of them, never silently ignored.  The backend checks it before a pull or a
    load, whatever the variant."""
    raw = os.environ.get("EMBCTL_ONNX_CPU", "")
    forced = raw.strip().lower()
    if not forced:
        return None
    if forced not in CPU_KINDS:
        from embctl.plugin import UsageError

        raise UsageError(f"bad EMBCTL_ONNX_CPU {raw!r}: expected one of "
                         f"{', '.join(CPU_KINDS)} (or unset it to detect this CPU)")
    return forced


@functools.lru_cache(maxsize=1)
def cpu_kind() -> str:
    """``arm``, ``vnni`` (AVX-512 VNNI or AVX-VNNI), ``avx512``, ``avx2`` or ``x86``.

    ``EMBCTL_ONNX_CPU`` overrides the detection (to pull the file for another machine)."""
    forced = forced_cpu()
    if forced is not None:
        return forced
    machine = platform.machine().lower()
    if machine.startswith(("arm", "aarch64")):
        return "arm"
    flags = _cpu_flags()
    if flags is None:  # not Linux: no /proc/cpuinfo; every x86-64 CPU of the last decade
        return "avx2"
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        return "vnni"
    if "avx512f" in flags and "avx512bw" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "x86"


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.partition(":")[2].split())
    except OSError:
        return None
    return set()


def preferred_files(variant: str, kind: str | None = None) -> tuple[str, ...]:
    """The repo paths that hold ``variant``, best first for this CPU (or for ``kind``)."""
    if variant == "fp32":
        return FP32_FILES
    order = {
        "vnni": (VNNI, AVX512, AVX2, ARM64),
        "avx512": (AVX512, VNNI, AVX2, ARM64),
        "arm": (ARM64, AVX2, VNNI, AVX512),
    }.get(kind or cpu_kind(), (AVX2, VNNI, AVX512, ARM64))
    return order + GENERIC_INT8


def pick(paths: list[str] | set[str], variant: str, kind: str | None = None) -> str | None:
    """The file of ``paths`` that ``variant`` uses on this CPU; None when the repo has none."""
    present = set(paths)
    return next((p for p in preferred_files(variant, kind) if p in present), None)


def variant_of(path: str) -> str:
    """The variant a repo's ONNX file is (``ls``, messages)."""
    return "fp32" if path in FP32_FILES else "int8"
