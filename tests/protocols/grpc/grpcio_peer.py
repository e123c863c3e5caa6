"""A grpcio server process for the multi-process tests: Greeter and Echo, READY line on stdout.

python grpcio_peer.py STUBS_DIR
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from grpc_support import Peers, import_generated


def main() -> None:
    peers = Peers(import_generated(Path(sys.argv[1])))
    server, port = peers.serve()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("READY " + json.dumps({"port": port}), flush=True)
    stop.wait()
    peers.release.set()
    server.stop(0).wait()


if __name__ == "__main__":
    main()
