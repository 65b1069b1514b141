"""`Reply`: an error answer, raised anywhere below the request handler and sent by it."""

from __future__ import annotations

from collections.abc import Mapping


class Reply(Exception):
    """Answer the current request with ``status`` (and the Hub's ``X-Error-Code``)."""

    def __init__(
        self,
        status: int,
        message: str,
        error_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = dict(headers or {})
