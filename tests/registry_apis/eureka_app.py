"""An app that uses py-eureka-client as it would against a real Eureka server, unchanged.

argv: eureka URL, app name. It serves HTTP on a free port (GET /hello answers
`{"app": NAME, "path": ...}`; GET /call?app=X&path=/p calls app X through
`do_service` and answers what X said), registers itself with a 1 s renewal and
a 3 s lease, and prints `READY {"port": N}` once registered.
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlparse

import py_eureka_client.eureka_client as eureka_client


async def main(server: str, name: str) -> None:
    client: eureka_client.EurekaClient | None = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        target = head.split(" ", 2)[1]
        url = urlparse(target)
        if url.path == "/call":
            q = parse_qs(url.query)
            assert client is not None
            body = await client.do_service(q["app"][0], q["path"][0])
        else:
            body = json.dumps({"app": name, "path": target})
        data = body.encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        writer.close()

    server_ = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server_.sockets[0].getsockname()[1]
    client = eureka_client.EurekaClient(
        eureka_server=server,
        app_name=name,
        instance_port=port,
        instance_ip="127.0.0.1",
        instance_host="127.0.0.1",
        renewal_interval_in_secs=1,
        duration_in_secs=3,
        metadata={"version": "2.0"},
    )
    await client.start()
    print("READY " + json.dumps({"port": port}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
