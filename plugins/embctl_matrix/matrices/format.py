"""The safetensors file format, read and written with the standard library only.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of JSON, then
the raw tensor data; a tensor's bytes are at ``8 + N + begin .. 8 + N + end``.  We write the
files ourselves because safetensors' numpy API cannot hold bfloat16, and because writing the
header first (with a fixed-width placeholder for the sha256) lets the data stream straight
into place, without ever holding a whole matrix in memory.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

#: Bytes per element of the dtypes a token-embedding matrix may have.
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I8": 1, "U8": 1,
            "F8_E4M3": 1, "F8_E5M2": 1}
#: The largest header we accept (the format allows 100 MB).
MAX_HEADER = 100_000_000
ALIGN = 8
SHA_PLACEHOLDER = "0" * 64


class FormatError(ValueError):
    """Not a safetensors file, or one we cannot use."""


def parse_header_length(first8: bytes) -> int:
    if len(first8) < 8:
        raise FormatError("file shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", first8[:8])
    if length < 2 or length > MAX_HEADER:
        raise FormatError(f"implausible header length {length}")
    return length


def parse_header_json(raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"bad header JSON: {exc}") from None
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")
    return header


def read_header(path: Path | str) -> tuple[dict[str, Any], int]:
    """Return (header, data_offset) of a local safetensors file, read without moving its
    atime (``ls`` reading a header is no use of the matrix: docs/cache.md)."""
    from embctl.plugin import open_noatime

    with open_noatime(path) as f:
        return read_header_from(f)


def read_header_from(f: BinaryIO) -> tuple[dict[str, Any], int]:
    length = parse_header_length(f.read(8))
    raw = f.read(length)
    if len(raw) != length:
        raise FormatError("truncated header")
    return parse_header_json(raw), 8 + length


def tensors(header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tensor entries of a header (without ``__metadata__``)."""
    return {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def tensor_nbytes(info: dict[str, Any]) -> int:
    begin, end = info["data_offsets"]
    return int(end) - int(begin)


def encode_header(tensor_name: str, dtype: str, shape: list[int], metadata: dict[str, str],
                  ) -> bytes:
    """A one-tensor header, 8-byte length prefix included, padded so data is 8-aligned."""
    nbytes = ITEMSIZE[dtype]
    for dim in shape:
        nbytes *= dim
    header = {
        "__metadata__": {k: str(v) for k, v in metadata.items()},
        tensor_name: {"dtype": dtype, "shape": list(shape), "data_offsets": [0, nbytes]},
    }
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    raw += b" " * (-(8 + len(raw)) % ALIGN)  # spaces are legal padding in the format
    return struct.pack("<Q", len(raw)) + raw
