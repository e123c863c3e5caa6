"""`python -m sofamesh.deploy.probe PORT`: exit 0 when the sidecar's `/ready` on 127.0.0.1:PORT
answers 200, 1 otherwise (the kubelet runs it inside the pod: the admin API is on loopback).
"""

from __future__ import annotations

import sys

import anyio

TIMEOUT = 2.0  # seconds; under the probes' timeoutSeconds


async def ready(port: int, host: str = "127.0.0.1") -> bool:
    request = f"GET /ready HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    with anyio.move_on_after(TIMEOUT):
        try:
            async with await anyio.connect_tcp(host, port) as stream:
                await stream.send(request.encode("ascii"))
                head = await stream.receive(1024)
        except (OSError, anyio.EndOfStream, anyio.BrokenResourceError):
            return False
        return head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 "))
    return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m sofamesh.deploy.probe ADMIN_PORT", file=sys.stderr)
        return 2
    ok = anyio.run(ready, int(args[0]))
    if not ok:
        print(f"sofamesh sidecar not ready on 127.0.0.1:{args[0]}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
