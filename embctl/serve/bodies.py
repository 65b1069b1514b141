"""Reading a request body under a size limit: the embeddings routes and the mirror's
paths-info read theirs the same way, and answer in their own shapes."""

from __future__ import annotations

from collections.abc import Callable


async def read_capped(request, limit: int, too_large: Callable[[], Exception],
                      cut: Callable[[], Exception]) -> bytes:
    """The body, refused with ``too_large()`` as soon as it is known to pass ``limit`` bytes
    (by its Content-Length, or while it streams in, never read whole first); ``cut()`` when
    the client hangs up before its body ends (its mistake: no failure in the log)."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large()
            chunks.append(chunk)
    except ClientDisconnect:
        raise cut() from None
    return b"".join(chunks)
