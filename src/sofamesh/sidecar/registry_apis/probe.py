"""One HTTP GET for a Consul HTTP check: the status code, or 0 if no answer came.

Only the status line is read; the check's URL was allowed at registration
(loopback, or an address in `local_api.upstreams`).
"""

from __future__ import annotations

import logging

import anyio

log = logging.getLogger("sofamesh.registry_apis.probe")

MAX_STATUS_LINE = 1024


async def http_get_status(url: str, timeout: float) -> int:
    rest = url.split("://", 1)[-1]
    authority, _, path = rest.partition("/")
    host, _, port = authority.rpartition(":")
    if not port.isdigit():
        host, port = authority, "80"
    request = f"GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    try:
        with anyio.fail_after(timeout):
            async with await anyio.connect_tcp(host.strip("[]"), int(port)) as stream:
                await stream.send(request.encode("latin-1"))
                head = b""
                while b"\r\n" not in head and len(head) < MAX_STATUS_LINE:
                    head += await stream.receive()
    except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError) as e:
        log.debug("HTTP check %s: %s", url, e)
        return 0
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
