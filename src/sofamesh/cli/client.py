"""A small blocking JSON client of the control plane's API (the CLI needs no event loop)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

# Exit statuses, as scripts rely on them.
OK, FAILED, BAD_INPUT, DENIED = 0, 1, 2, 3


class CtlError(Exception):
    """A failed call: the message, every problem the server named, and the exit status."""

    def __init__(self, message: str, status: int = FAILED, problems: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.exit_status = status
        self.problems = problems or []


def exit_status_of(http_status: int) -> int:
    if http_status in (401, 403):
        return DENIED
    if http_status in (400, 413, 422):
        return BAD_INPUT
    return FAILED


class Client:
    def __init__(
        self, server: str, token: str | None, timeout: float = 30.0, cafile: str | None = None
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        # https: the server's certificate and host name are verified (never switched off)
        try:
            self.context = ssl.create_default_context(cafile=cafile) if cafile else None
        except (OSError, ssl.SSLError) as e:
            raise CtlError(f"--ca {cafile}: not a readable PEM CA file: {e}", BAD_INPUT) from None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("accept", "application/json")
        if data is not None:
            req.add_header("content-type", "application/json")
        if self.token:
            req.add_header("authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            raise self._failure(e.code, e.read()) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CtlError(f"cannot reach the control plane at {self.server}: {reason}") from None

    @staticmethod
    def _failure(status: int, raw: bytes) -> CtlError:
        try:
            body = json.loads(raw)
            message, problems = str(body.get("error", raw)), list(body.get("problems", []))
        except (ValueError, AttributeError):
            message, problems = raw.decode(errors="replace").strip(), []
        return CtlError(f"{message} (HTTP {status})", exit_status_of(status), problems)
