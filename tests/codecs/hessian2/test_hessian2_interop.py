"""Interop is the proof: com.caucho Hessian 4.0.38 (Java) and hessian.js read what we write.

Needs the peers built by `bash ../shared/peers/bolt/setup_peers.sh build/peers`
(or SOFAMESH_PEERS_DIR); without them these tests fail, they do not skip. The
JVM starts in about half a second, so each test hands it many files at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hessian2_support import (
    REGISTRY,
    graphs,
    java_dump,
    java_read,
    java_reencode,
    manifest,
    node_env,
    peers_dir,
    run,
    same,
    same_js,
    without_double_text,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sofamesh.codecs import hessian2

pytestmark = [
    pytest.mark.interop,
    # a failing batch is large; let hypothesis print it without turning that into an error
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]
HANDLE_VECTORS = {"057_float_0.5f.bin", "058_float_0.1f.bin", "059_short_7.bin", "060_byte_m3.bin"}
BATCH = settings(
    max_examples=int(os.environ.get("HESSIAN2_INTEROP_EXAMPLES", "3")),
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each run starts a JVM
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def peers() -> Path:
    return peers_dir()


@pytest.fixture(scope="module")
def vectors(peers: Path) -> list[tuple[dict[str, Any], bytes]]:
    entries = manifest(peers)
    assert len(entries) == 102
    return [(m, (peers / "java" / "vectors" / m["file"]).read_bytes()) for m in entries]


def java_reading(entry: dict[str, Any]) -> list[Any]:
    """What Java itself reads from its vector (for -0.0 that is not what it wrote)."""
    return list(entry.get("decoded", entry["expected"]))


def test_every_java_vector_decodes_to_what_java_reads(vectors: list[Any]) -> None:
    for entry, data in vectors:
        decoded = hessian2.loads_all(data)
        assert len(decoded) == entry["count"]
        assert java_dump(decoded) == without_double_text(java_reading(entry)), entry["file"]


def test_re_encoded_java_vectors_are_byte_identical(vectors: list[Any]) -> None:
    differ = set()
    for entry, data in vectors:
        decoded = hessian2.loads_all(data)
        assert hessian2.dumps_all(decoded, java_handles=True) == data, entry["file"]
        if hessian2.dumps_all(decoded) != data:
            differ.add(entry["file"])
    # Only Float/Short/Byte differ by default: plain double/int instead of Java's handles.
    assert differ == HANDLE_VECTORS


def test_java_reads_re_encoded_vectors_back_to_the_same_value(
    peers: Path, vectors: list[Any], tmp_path: Path
) -> None:
    files, wanted = [], []
    for entry, data in vectors:
        decoded = hessian2.loads_all(data)
        for handles in (False, True):
            path = tmp_path / f"{handles:d}_{entry['file']}"
            path.write_bytes(hessian2.dumps_all(decoded, java_handles=handles))
            files.append(path)
            wanted += java_reading(entry)
    assert java_read(peers, files) == wanted


@BATCH
@given(batch=st.lists(graphs(java=True), min_size=12, max_size=20), handles=st.booleans())
def test_java_reads_generated_values_to_the_same_value(
    peers: Path, batch: list[Any], handles: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("java") / "batch.bin"
    path.write_bytes(hessian2.dumps_all(batch, registry=REGISTRY, java_handles=handles))
    # Java decodes the stream and writes it again; reading that back must give the batch.
    back = hessian2.loads_all(java_reencode(peers, path), registry=REGISTRY)
    same(batch, back, java=True, handles=handles)


def test_java_reads_registered_classes_into_its_own(peers: Path, tmp_path: Path) -> None:
    from hessian2_support import Person

    people = [Person("alice", 30, ["a", "b"]), Person("bob", 41, [])]
    path = tmp_path / "people.bin"
    path.write_bytes(hessian2.dumps([people[0], people[1], people[0]], registry=REGISTRY))
    (dump,) = java_read(peers, [path])
    vectors_dir = peers / "java" / "vectors"
    p1_p2_p1 = next(m for m in manifest(peers) if m["file"].startswith("098_"))
    assert dump == p1_p2_p1["expected"][0]
    assert path.read_bytes() == (vectors_dir / p1_p2_p1["file"]).read_bytes()


@BATCH
@given(batch=st.lists(graphs(java=True), min_size=12, max_size=20))
def test_hessianjs_reads_generated_values(
    peers: Path, batch: list[Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("js")
    args = []
    for i, value in enumerate(batch):
        path = folder / f"{i}.bin"
        path.write_bytes(hessian2.dumps(value, registry=REGISTRY))
        args += [str(path), "1"]
    script = Path(__file__).with_name("hessianjs_dump.js")
    out = run(["node", str(script), *args], env=node_env(peers))
    results = [json.loads(line) for line in out.split("\n") if line]
    assert len(results) == len(batch)
    for value, result in zip(batch, results, strict=True):
        assert "error" not in result, result
        same_js(value, result["values"][0])


def test_hessianjs_reads_re_encoded_vectors(
    peers: Path, vectors: list[Any], tmp_path: Path
) -> None:
    lines = []
    for entry, data in vectors:
        (tmp_path / entry["file"]).write_bytes(hessian2.dumps_all(hessian2.loads_all(data)))
        lines.append(json.dumps({"file": entry["file"], "count": entry["count"]}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    check = peers / "node" / "check_hessianjs.js"
    out = run(["node", str(check), str(tmp_path)], env=node_env(peers))
    assert "hessian.js: 102 decoded, 0 errors" in out, out
