"""HTTP range reads of safetensors files on the Hub, with huggingface_hub's session and auth.

Headers are read with two exact ranges (the 8-byte length, then the JSON), not the 100 kB
guess ``get_safetensors_metadata`` makes (which would be the whole of a small shard).  Tensor
bytes stream with ``Range: bytes=a-b`` into a :class:`PendingFile`, resuming from what is
already there after a dropped connection.  A server that ignores Range (answers 200) would
send the whole shard, which is exactly what this backend exists to avoid: that is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from embctl.plugin import EmbctlError, hub_error, import_hf
from embctl_matrix.matrices.format import (
    FormatError,
    parse_header_json,
    parse_header_length,
    tensors,
)
from embctl_matrix.matrices.writer import PendingFile

ATTEMPTS = 4


@dataclass
class RemoteHeader:
    path: str  # file path in the repo
    header: dict[str, Any]
    data_offset: int  # 8 + header length
    file_size: int | None

    def shapes(self) -> dict[str, tuple[str, list[int]]]:
        return {n: (t.get("dtype", "?"), list(t.get("shape", [])))
                for n, t in tensors(self.header).items()}


class Counter:
    """Bytes received from weight files (headers and tensor data), and bytes of them read
    from the Hugging Face cache instead (``embctl_matrix.cached``)."""

    def __init__(self) -> None:
        self.header_bytes = 0
        self.tensor_bytes = 0
        self.cache_bytes = 0


def _url(repo_id: str, path: str, commit: str) -> str:
    hf = import_hf()
    return hf.hf_hub_url(repo_id, path, revision=commit)


def _is_network_error(exc: BaseException) -> bool:
    """A dropped or stalled connection (worth resuming), not an HTTP error answer."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        return False
    return isinstance(exc, OSError) or type(exc).__module__.startswith(("httpx", "httpcore"))


@contextmanager
def _get(url: str, start: int, end: int):
    """A streamed GET of bytes ``start..end`` (inclusive), raising typed Hub errors."""
    import_hf()
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_stream_backoff

    headers = {**build_hf_headers(), "Range": f"bytes={start}-{end}",
               "Accept-Encoding": "identity"}
    with http_stream_backoff("GET", url, headers=headers, timeout=30, max_retries=2,
                             base_wait_time=0.5, max_wait_time=2, retry_on_exceptions=(),
                             retry_on_status_codes=(429, 500, 502, 503, 504)) as response:
        hf_raise_for_status(response)
        yield response


def _ignored_range(ref: str, url: str, status: int) -> EmbctlError:
    name = url.rsplit("/", 1)[-1]
    return EmbctlError(f"{ref}: the server ignored the Range request for {name} (HTTP "
                       f"{status}); refusing to download whole shards")


def _content_range(response) -> tuple[int, int | None]:
    """(first byte, total size) from a 206's Content-Range."""
    value = response.headers.get("Content-Range", "")
    try:
        unit, _, rest = value.partition(" ")
        span, _, total = rest.partition("/")
        first = int(span.split("-")[0])
        return first, (int(total) if total.isdigit() else None)
    except ValueError:
        return -1, None


def _read_exact(ref: str, url: str, start: int, length: int) -> tuple[bytes, int | None]:
    """Exactly ``length`` bytes at ``start``."""
    with _get(url, start, start + length - 1) as response:
        if response.status_code != 206:
            raise _ignored_range(ref, url, response.status_code)
        first, total = _content_range(response)
        if first != start:
            raise EmbctlError(f"{ref}: the server answered the wrong byte range")
        buf = bytearray()
        for chunk in response.iter_bytes():
            buf += chunk
            if len(buf) >= length:
                break
    if len(buf) < length:
        raise EmbctlError(f"{ref}: the server sent {len(buf)} of {length} header bytes")
    return bytes(buf[:length]), total


def _read_retrying(ref: str, url: str, start: int, length: int) -> tuple[bytes, int | None]:
    for attempt in range(ATTEMPTS):
        try:
            return _read_exact(ref, url, start, length)
        except Exception as exc:
            if attempt == ATTEMPTS - 1 or not _is_network_error(exc):
                raise
    raise AssertionError("unreachable")


def read_header(ref: str, repo_id: str, path: str, commit: str, counter: Counter
                ) -> RemoteHeader:
    """Fetch and parse the JSON header of a remote safetensors file (8 + N bytes)."""
    url = _url(repo_id, path, commit)
    try:
        first, total = _read_retrying(ref, url, 0, 8)
        counter.header_bytes += 8
        length = parse_header_length(first)
        raw, _ = _read_retrying(ref, url, 8, length)
        counter.header_bytes += length
        header = parse_header_json(raw)
    except FormatError as exc:
        raise EmbctlError(f"{ref}: {path} is not a valid safetensors file ({exc})") from None
    except EmbctlError:
        raise
    except Exception as exc:
        raise hub_error(ref, exc) from None
    return RemoteHeader(path, header, 8 + length, total)


def download_range(ref: str, repo_id: str, path: str, commit: str, start: int,
                   sink: PendingFile, counter: Counter,
                   on_progress: Callable[[int], None] = lambda n: None) -> None:
    """Append file bytes ``start + sink.have .. start + sink.size`` to ``sink``.

    A dropped connection is resumed from the bytes already written, ``ATTEMPTS`` times in a
    row without progress at most; what was written stays in the ``.incomplete`` file.
    """
    url = _url(repo_id, path, commit)
    failures = 0
    while sink.have < sink.size:
        before = sink.have
        offset = start + sink.have
        try:
            with _get(url, offset, start + sink.size - 1) as response:
                if response.status_code != 206:
                    raise _ignored_range(ref, url, response.status_code)
                first, _ = _content_range(response)
                if first != offset:
                    raise EmbctlError(f"{ref}: the server answered the wrong byte range")
                for chunk in response.iter_bytes():  # as received: a drop loses nothing
                    take = chunk[: sink.size - sink.have]
                    sink.write(take)
                    counter.tensor_bytes += len(take)
                    on_progress(len(take))
                    if sink.have >= sink.size:
                        break
        except EmbctlError:
            raise
        except Exception as exc:
            if not _is_network_error(exc):
                raise hub_error(ref, exc) from None
            failures = 0 if sink.have > before else failures + 1
            if failures >= ATTEMPTS:
                raise EmbctlError(
                    f"{ref}: download of {path} interrupted at {sink.have:,} of {sink.size:,} "
                    f"bytes ({type(exc).__name__}); run the pull again to resume") from None
            continue
        if sink.have == before:
            failures += 1
            if failures >= ATTEMPTS:
                raise EmbctlError(f"{ref}: the server sent no data for {path}; "
                                  "run the pull again to resume")
