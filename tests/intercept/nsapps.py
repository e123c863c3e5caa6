"""Small programs the interception tests run inside network namespaces (`ip netns exec`).

- `provider PORT`: an HTTP server on 0.0.0.0:PORT answering JSON about each request.
- `dns-upstream HOST ADDRESS`: a DNS server on HOST:53 answering every A query with ADDRESS.
- `get URL [HEADER:VALUE ...]`: one HTTP GET; prints JSON {status, body}; knows no mesh.
- `tls-get HOST PORT CERT KEY BUNDLE SERVICE`: one HTTP GET over mutual TLS with a mesh
  certificate (as a caller's sidecar sends it), `Host: SERVICE`; prints JSON {status, body}.
- `resolve NAME`: prints the IPv4 addresses getaddrinfo gives NAME, or the error.
- `grpc-provider PORT`: a gRPC server (grpcio) on 0.0.0.0:PORT serving helloworld.Greeter/SayHello.
- `grpc-call TARGET`: one SayHello call to TARGET; prints JSON {code, body}; knows no mesh.
- `grpc-tls-call TARGET CERT KEY BUNDLE NAME`: the same over mutual TLS with a mesh
  certificate, expecting the server's to carry the DNS name NAME (grpcio checks one).
- `bolt-provider SERVICE`: a SOFARPC Bolt provider of SERVICE (`interface:version`) on
  127.0.0.1 (the SDK on a private registry), whose `whoami` answers [caller, method].
- `bolt-call HOST PORT SERVICE`: one `whoami` over Bolt to HOST:PORT, as a plain SOFARPC
  client writes it; prints JSON {status, value}; knows no mesh.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def provider(port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "path": self.path,
                    "host": self.headers.get("host"),
                    "caller": self.headers.get("x-sofamesh-caller"),
                    "peer": self.client_address[0],
                }
            ).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print("READY " + json.dumps({"port": port}), flush=True)
    server.serve_forever()


def dns_upstream(host: str, address: str) -> None:
    import dns.message
    import dns.rrset

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 53))
    print("READY " + json.dumps({"port": 53}), flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        if question.rdtype == 1:
            reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", address))
        sock.sendto(reply.to_wire(), peer)


def get(url: str, headers: list[str]) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=dict(h.split(":", 1) for h in headers))
    try:
        with opener.open(request, timeout=10) as response:
            out = {"status": response.status, "body": response.read().decode()}
    except urllib.error.HTTPError as e:
        out = {"status": e.code, "body": e.read().decode()}
    except OSError as e:
        out = {"status": 0, "body": str(e)}
    print(json.dumps(out))


def tls_get(host: str, port: int, cert: str, key: str, bundle: str, service: str) -> None:
    import http.client
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # mesh peers are named by their SPIFFE ID, not a host name
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(bundle)
    ctx.set_alpn_protocols(["http/1.1"])
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/mtls", headers={"Host": service})
        response = conn.getresponse()
        out = {"status": response.status, "body": response.read().decode()}
    except OSError as e:
        out = {"status": 0, "body": str(e)}
    finally:
        conn.close()
    print(json.dumps(out))


def resolve(name: str) -> None:
    try:
        infos = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)
        print(json.dumps(sorted({info[4][0] for info in infos})))
    except OSError as e:
        print(json.dumps(str(e)))


GREETER = "helloworld.Greeter"


def grpc_provider(port: int) -> None:
    from concurrent import futures

    import grpc

    def say_hello(request: bytes, context: grpc.ServicerContext) -> bytes:
        caller = dict(context.invocation_metadata()).get("x-sofamesh-caller", "")
        return b"hello " + request + b" from " + str(caller).encode()

    method = grpc.unary_unary_rpc_method_handler(say_hello)
    server = grpc.server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(GREETER, {"SayHello": method}),)
    )
    server.add_insecure_port(f"0.0.0.0:{port}")
    server.start()
    print("READY " + json.dumps({"port": port}), flush=True)
    server.wait_for_termination()


def grpc_call(target: str) -> None:
    import grpc

    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/{GREETER}/SayHello")
        try:
            reply = call(b"mesh", timeout=10)
            out = {"code": "OK", "body": reply.decode()}
        except grpc.RpcError as e:
            out = {"code": e.code().name, "body": e.details()}
    print(json.dumps(out))


def grpc_tls_call(target: str, cert: str, key: str, bundle: str, name: str) -> None:
    import grpc

    def read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(read(bundle), read(key), read(cert))
    options = [("grpc.ssl_target_name_override", name)]
    with grpc.secure_channel(target, creds, options) as channel:
        call = channel.unary_unary(f"/{GREETER}/SayHello")
        try:
            reply = call(b"mesh", timeout=10)
            out = {"code": "OK", "body": reply.decode()}
        except grpc.RpcError as e:
            out = {"code": e.code().name, "body": e.details()}
    print(json.dumps(out))


def bolt_provider(service: str) -> None:
    import anyio

    import sofamesh
    from sofamesh.registry.memory import MemoryHub, MemoryRegistry
    from sofamesh.sdk.bolt import current_call

    class Echo:
        def whoami(self) -> list[str]:
            call = current_call.get()
            return [call.caller, call.method]

    async def serve() -> None:
        iface, version = service.rsplit(":", 1)
        config = {"app": "echo", "registry": "memory://"}
        registry = MemoryRegistry(MemoryHub())  # published where nobody looks: B's sidecar does
        async with (
            sofamesh.open_mesh(config, env={}, registry=registry) as mesh,
            mesh.serve_bolt(Echo(), iface, version=version) as served,
        ):
            print("READY " + json.dumps({"port": served.address.port}), flush=True)
            await anyio.sleep_forever()

    anyio.run(serve)


def bolt_call(host: str, port: int, service: str) -> None:
    from sofamesh.codecs.bolt import FrameDecoder, ResponseFrame, ResponseStatus, encode, request
    from sofamesh.codecs.bolt.sofarpc import SofaRequest, decode_response, encode_request

    body = encode_request(SofaRequest("whoami", [], service, None, {}), [])
    frame = request(7, body, headers={"service": service})
    decoder = FrameDecoder()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(encode(frame))
        while (reply := decoder.next_frame()) is None:
            data = sock.recv(65536)
            if not data:
                print(json.dumps({"status": "closed", "value": None}))
                return
            decoder.receive_data(data)
    assert isinstance(reply, ResponseFrame)
    ok = reply.status == ResponseStatus.SUCCESS
    value = decode_response(reply.body).appResponse if ok else None
    print(json.dumps({"status": reply.status.name, "value": value}))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "provider":
        provider(int(args[0]))
    elif command == "dns-upstream":
        dns_upstream(args[0], args[1])
    elif command == "grpc-provider":
        grpc_provider(int(args[0]))
    elif command == "grpc-call":
        grpc_call(args[0])
    elif command == "grpc-tls-call":
        grpc_tls_call(*args[:5])
    elif command == "bolt-provider":
        bolt_provider(args[0])
    elif command == "bolt-call":
        bolt_call(args[0], int(args[1]), args[2])
    elif command == "get":
        get(args[0], args[1:])
    elif command == "tls-get":
        tls_get(args[0], int(args[1]), *args[2:6])
    else:
        resolve(args[0])
