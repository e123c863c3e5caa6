"""What a sidecar loads at start: the heavy modules only a configured feature needs stay out.

Each module listed costs the idle sidecar resident memory (docs/performance.md,
"Idle memory"); the check runs in a fresh interpreter, since this test
process has imported everything already.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.fresh_python import run_python

import sofamesh.sidecar.__main__ as sidecar_main
from sofamesh.sidecar.footprint import HelpFormatter, terminal_columns
from sofamesh.transport.heap import trim_heap

# Loaded only when configured: TLS (cryptography), a YAML file, an etcd registry; the SDK (which the
# package's `__init__` offers) only by an SDK app; the h2 library only by the lean HTTP/2 codec's
# differential reference; hashlib (OpenSSL's digests) and what imports it (hmac, secrets) only with
# the first hash, rules document or admin request (on trio, whose DTLS imports hmac, the sidecar
# binds it unrun: `footprint.TRIO_DEFERRED`, with shutil, tempfile and idna, which trio imports
# too); the workers' machinery only with `workers: N`, N > 1; the rules document's model and every
# kind of rule only with a rules document (or a read of the rules in force); every protocol but
# HTTP/1.1 (the admin API's) and its codecs only with its first connection or call
# (protocols/lazy.py); workload identities (and datetime, which they read certificates' dates with)
# only with `tls:`; tempfile (with shutil, bz2, lzma and zlib) only where a file needs it, not for
# the token's directory; h11, HTTP/1.1's reference parser, only with the first HTTP/1.1 connection
# (`h11` itself is bound, by `lazy_imports`, so its submodules tell whether it ran); llhttp
# (httptools) with the first head the fast path splits; the admin API's handlers with its first
# request; Istio's metrics with `metrics.istio`, OTLP export with `tracing.enabled`; upstream's
# machines with the first cluster that runs them (the health checker, the removal guard, the
# success-rate detector; the config holds their settings from `upstream.settings`) and the hash
# tables with the first hashing balancer; the networked registries' URL parsing and snapshot wrapper
# with an etcd or ZooKeeper URL; TLS's contexts, wraps and listeners with `tls:`
# (`transport/tls_names.py` holds what a plaintext mesh names); the asyncio protocol under our own
# TCP stream with the first connection on asyncio; tracing (its spans, tracer, export and filters)
# with `tracing.enabled`, its trace-context readers with the first call an access log finds a trace
# id on; the rule kinds' declarations and the keyed state they name with the first rules document
# (the options governance starts with are in `governance.options`); the `http` module (HTTPStatus's
# phrases) with the first status line written without a reason; SPIFFE IDs with the first mutual-TLS
# HTTP/1.1 caller; a cluster's state, with the outlier detector and the balancers, with the first
# cluster (the config holds outlier's settings and the balancers' names from `upstream.settings`).
# Each entry covers its submodules.
NOT_AT_START = (
    "cryptography",
    "yaml",
    "sofamesh.registry.etcd",
    "sofamesh.security.enroll",
    "sofamesh.sdk",
    "h2",
    "hyperframe",
    "sofamesh.codecs.h2.connection",
    "hashlib",
    "_hashlib",
    "hmac",
    "secrets",
    "sofamesh.sidecar.supervisor",
    "sofamesh.sidecar.workers",
    "sofamesh.sidecar.worker",
    "sofamesh.sidecar.worker_link",
    "sofamesh.sidecar.worker_stats",
    "sofamesh.sidecar.listener_shares",
    "sofamesh.governance.rules",
    "sofamesh.governance.kinds",
    "sofamesh.governance.filters.state",
    "sofamesh.governance.enforcement_rules",
    "sofamesh.governance.routing_rules",
    "sofamesh.protocols.h2",
    "sofamesh.protocols.grpc",
    "sofamesh.protocols.bolt",
    "sofamesh.protocols.dubbo",
    "sofamesh.codecs.h2.lean",
    "sofamesh.codecs.h2.compression",
    "sofamesh.codecs.h2.hpack_encoder",
    "sofamesh.codecs.grpc",
    "sofamesh.codecs.bolt",
    "sofamesh.codecs.dubbo",
    "sofamesh.codecs.hessian2",
    "hpack",
    "decimal",
    "sofamesh.security.identity",
    "datetime",
    "tempfile",
    "shutil",
    "bz2",
    "lzma",
    "h11._connection",
    "h11._events",
    "httptools.parser",
    "sofamesh.sidecar.admin",
    "sofamesh.sidecar.admin_stats",
    "sofamesh.sidecar.guard",
    "sofamesh.sidecar.local_api",
    "sofamesh.observability.rule_metrics",
    "sofamesh.observability.istio",
    "sofamesh.tracing.otlp",
    "sofamesh.upstream.health",
    "sofamesh.upstream.removals",
    "sofamesh.upstream.success_rate",
    "sofamesh.upstream.hashing",
    "sofamesh.registry.resilient",
    "sofamesh.registry.snapshot",
    "sofamesh.transport.tls",
    "sofamesh.transport.tls_listener",
    "sofamesh.transport.loop_protocol",
    "sofamesh.tracing",
    "sofamesh.filters.tracing",
    "sofamesh.governance.kind",
    "sofamesh.governance.filters.keyed",
    "sofamesh.governance.rule_fields",
    "http",
    "sofamesh.security.spiffe",
    "idna",
    "zlib",
    "sofamesh.upstream.cluster_state",
    "sofamesh.upstream.outlier",
    "sofamesh.upstream.balancers",
)

# Not loaded at all on trio: asyncio (with concurrent.futures, which it imports), uvloop
# and anyio's asyncio backend. Our TCP stream asks for asyncio's loop only once asyncio is
# loaded, and its asyncio protocol is imported where a stream is made on asyncio.
NOT_ON_TRIO = ("asyncio", "_asyncio", "concurrent", "uvloop", "anyio._backends._asyncio")

BUILD = """
import json, sys
import sofamesh.sidecar.__main__
sofamesh.sidecar.__main__._parse_args(["-c", "mesh.json"])
from sofamesh.config import load_config
from sofamesh.sidecar.app import Sidecar
config = load_config(json.loads(sys.argv[1]), env={})
Sidecar(config)
from sofamesh.lazy_imports import is_loaded
print(json.dumps(sorted(m for m in list(sys.modules) if is_loaded(m))))  # bound unrun: not loaded
"""


def loaded_by_sidecar(config: dict[str, object]) -> set[str]:
    return set(json.loads(run_python(BUILD, json.dumps(config))))


def every_protocol(tmp_path: Path) -> dict[str, object]:
    """A sidecar with an outbound listener of every protocol, a file registry and the admin API."""
    listeners = [
        {"protocol": p, "listen": "127.0.0.1:0"} for p in ("http", "h2", "grpc", "bolt", "dubbo")
    ]
    return {
        "app": "orders",
        "registry": f"file://{tmp_path}",
        "admin": "127.0.0.1:0",
        "outbound": listeners,
    }


def test_every_protocol_without_tls_loads_no_optional_feature(tmp_path: Path) -> None:
    config = every_protocol(tmp_path)
    loaded = loaded_by_sidecar(config)
    assert "sofamesh.protocols.lazy" in loaded  # the check sees what start-up loads
    heavy = {m for m in loaded if _within(m, NOT_AT_START)}
    assert heavy == set()


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_a_rules_document_loads_the_rules_model(tmp_path: Path) -> None:
    config = {
        "app": "orders",
        "registry": f"file://{tmp_path}",
        "rules": {"breakers": [{"service": "pay"}]},
    }
    loaded = loaded_by_sidecar(config)
    assert "sofamesh.governance.rules" not in loaded  # parsed when the rules are watched
    code = BUILD.replace(
        "Sidecar(config)", "Sidecar(config).runtime.governance.load(config.rules, 'inline')"
    )
    loaded = set(json.loads(run_python(code, json.dumps(config))))
    assert {"sofamesh.governance.rules", "sofamesh.governance.kinds"} <= loaded


def test_tls_loads_cryptography(tmp_path: Path) -> None:
    config = {
        "app": "orders",
        "workspace": "shop",
        "registry": f"file://{tmp_path}",
        "tls": {"mode": "strict"},
        "control": "http://127.0.0.1:1",
        "control_token": "secret",
    }
    loaded = loaded_by_sidecar(config)
    assert {"cryptography", "sofamesh.security.identity"} <= loaded


def test_trim_heap_gives_freed_pages_back() -> None:
    # Every other 16 KiB block freed: holes of whole pages inside the heap, which only a
    # trim (not free's own release of the heap's top) gives back.
    blocks = [bytes(16 * 1024) for _ in range(2000)]
    del blocks[::2]
    assert trim_heap() is (sys.platform == "linux")
    del blocks


def test_sidecar_trims_the_heap_once_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[None] = []
    monkeypatch.setattr(sidecar_main, "trim_heap", lambda: trims.append(None) or True)
    threshold = gc.get_threshold()
    try:
        sidecar_main._settle_gc()
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert trims == [None]


PROCESS = """
import json, linecache, sys
import sofamesh
def generated():
    return sum(1 for name in linecache.cache if name.startswith("<attrs generated"))
before = generated()
import attrs
import sofamesh.sidecar.__main__
from sofamesh.config import load_config
from sofamesh.sidecar import Sidecar
Sidecar(load_config(json.loads(sys.argv[1]), env={}))
@attrs.frozen
class Made:
    x: int
print(json.dumps({
    "before": before, "after": generated(), "made": Made(1).x,
    "source": linecache.getline(sofamesh.__file__, 1),
}))
"""


def test_sidecar_process_keeps_no_generated_source(tmp_path: Path) -> None:
    config = {"app": "orders", "registry": f"file://{tmp_path}", "admin": "127.0.0.1:0"}
    seen = json.loads(run_python(PROCESS, json.dumps(config)))
    assert seen["before"] > 0  # the package's own classes, made before the sidecar's setup
    assert seen["after"] == seen["before"]
    assert seen["made"] == 1
    assert seen["source"].startswith('"""')  # other source stays readable


# The sidecar's own process, run to its READY line: what it has run then, once its
# loop, listeners and admin API run (argument parsing and serving included, not only
# the construction BUILD covers; a module bound by `lazy_module` and not yet run is not
# counted). The READY line is read from a wrapped stdout.
IDLE = """
import json, os, sys, threading
import sofamesh.sidecar.__main__ as main
from sofamesh.lazy_imports import is_loaded
ready = threading.Event()
class Stdout:
    def write(self, text):
        if text.startswith("SOFAMESH READY"):
            ready.set()
        return len(text)
    def flush(self):
        pass
def report():
    ready.wait()
    with open("/proc/self/status") as f:
        native = next(int(ln.split()[1]) for ln in f if ln.startswith("Threads:"))
    with open(sys.argv[3], "w") as out:
        json.dump({"modules": sorted(m for m in list(sys.modules) if is_loaded(m)),
                   "threads": native,
                   "python_threads": threading.active_count()}, out)
    os._exit(0)
sys.stdout = Stdout()
threading.Thread(target=report, daemon=True).start()
main.main(["-c", sys.argv[1], "--backend", sys.argv[2], "--log-level", "warning"])
"""


def ready_process(tmp_path: Path, config: dict[str, object], backend: str) -> dict[str, Any]:
    path = tmp_path / "mesh.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "modules.json"
    run_python(IDLE, str(path), backend, str(out))
    assert out.exists()
    seen: dict[str, Any] = json.loads(out.read_text())
    return seen


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_ready_sidecar_loads_no_optional_feature(tmp_path: Path, backend: str) -> None:
    config = every_protocol(tmp_path)
    seen = ready_process(tmp_path, config, backend)
    loaded = set(seen["modules"])
    assert "sofamesh.protocols.lazy" in loaded  # the check sees what start-up loads
    assert {m for m in loaded if _within(m, NOT_AT_START)} == set()
    if backend == "trio":
        assert {m for m in loaded if _within(m, NOT_ON_TRIO)} == set()
    # Every thread is Python's (the report's, the token's worker): listeners on IP
    # literals are bound without a name look-up, which on uvloop starts libuv's threads.
    assert seen["threads"] == seen["python_threads"]


@pytest.mark.parametrize("columns", ["", "50", "0", "wide"])
def test_help_is_as_wide_as_shutil_would_make_it(
    monkeypatch: pytest.MonkeyPatch, columns: str
) -> None:
    import shutil

    monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size().columns
    assert HelpFormatter("sidecar")._width == argparse.HelpFormatter("sidecar")._width


TRIO_FIRST_USES = """
import json, sys
from sofamesh.lazy_imports import is_loaded
from sofamesh.sidecar.footprint import TRIO_DEFERRED, defer_trio_imports
defer_trio_imports()
import trio
from trio._socket import encode_hostname
unrun = [m for m in (*TRIO_DEFERRED, "hashlib", "bz2") if is_loaded(m)]
encoded = encode_hostname("b\u00fccher.example").decode()
import hmac
compared = hmac.compare_digest(b"a", b"a")
import shutil, tempfile
print(json.dumps({
    "unrun": unrun, "encoded": encoded, "compared": compared,
    "which": shutil.which("sh") is not None, "tmp": isinstance(tempfile.gettempdir(), str),
    "run": [is_loaded(m) for m in TRIO_DEFERRED],
    "plain": [type(sys.modules[m]) is type(sys) for m in TRIO_DEFERRED],
}))
"""


def test_what_trio_imports_and_an_idle_sidecar_never_runs_runs_on_first_use() -> None:
    assert json.loads(run_python(TRIO_FIRST_USES)) == {
        "unrun": [],  # trio imported them all, and ran none
        "encoded": "xn--bcher-kva.example",
        "compared": True,
        "which": True,
        "tmp": True,
        "run": [True] * 4,
        "plain": [True] * 4,
    }


FIRST_HEADS = """
import json, sys
from sofamesh.codecs.http1 import DEFAULT_LIMITS, fast
loaded = ["httptools.parser" in sys.modules]
limits = DEFAULT_LIMITS
request = fast.split_request(b"GET / HTTP/1.1\\r\\nhost: a\\r\\n\\r\\n", limits)
response = fast.split_response(b"HTTP/1.1 200 OK\\r\\ncontent-length: 0\\r\\n\\r\\n", limits)
import httptools
print(json.dumps({
    "loaded": [*loaded, "httptools.parser" in sys.modules],
    "fields": [list(map(bytes.decode, f)) for f in request[2] + response[2]],
    "bound": [fast._REQUEST_PARSER is httptools.HttpRequestParser,
              fast._RESPONSE_PARSER is httptools.HttpResponseParser],
}))
"""


def test_llhttp_loads_with_the_first_head_and_its_parsers_take_the_loaders_place() -> None:
    assert json.loads(run_python(FIRST_HEADS)) == {
        "loaded": [False, True],
        "fields": [["host", "a"], ["content-length", "0"]],
        "bound": [True, True],
    }
