"""`python -m sofamesh.sidecar` fails with one clear message and the right status, never a
traceback: bad registry URL options (2), a busy port (1), a token file it cannot write (1)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

SIDECAR = [sys.executable, "-m", "sofamesh.sidecar"]


def run(tmp: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp / "mesh.yaml"
    path.write_text(yaml.safe_dump({"app": "orders", **config}))
    return subprocess.run([*SIDECAR, "-c", str(path)], capture_output=True, text=True, timeout=30)


def assert_fails(proc: subprocess.CompletedProcess[str], status: int, *lines: str) -> None:
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr and "READY" not in proc.stdout
    for line in lines:
        assert line in proc.stderr, proc.stderr


def test_registry_url_options_are_validated_at_load(tmp_path: Path) -> None:
    proc = run(tmp_path, {"registry": f"file://{tmp_path}/reg?lease=abc&poll=nan&leese=5"})
    assert_fails(
        proc,
        2,
        "  - registry: file registry URL: lease: not a number: 'abc'; "
        "poll: must be a positive number of seconds, got nan; "
        "unknown option 'leese' (known: lease, poll)",
    )
    proc = run(tmp_path, {"registry": "memory://?poll=1"})
    assert_fails(proc, 2, "  - registry: memory registry URL: unknown option 'poll' (known: none)")


def test_a_busy_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listener = {"protocol": "http", "listen": f"127.0.0.1:{port}"}
        proc = run(tmp_path, {"registry": f"file://{tmp_path}/reg", "outbound": [listener]})
    assert_fails(proc, 1, f"outbound[0]: cannot listen on 127.0.0.1:{port}: ")
    assert proc.stderr.count("sofamesh.sidecar:") == 1


def test_a_token_file_it_cannot_write_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    token = tmp_path / "not-a-dir" / "admin.token"
    proc = run(
        tmp_path,
        {
            "registry": f"file://{tmp_path}/reg",
            "admin": "127.0.0.1:0",
            "local_api": {"token_file": str(token)},
        },
    )
    assert_fails(proc, 1, f"cannot write the local API token to {token}: Not a directory")


def test_a_missing_rules_file_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "rules.yaml"
    proc = run(
        tmp_path,
        {
            "registry": f"file://{tmp_path}/reg",
            "rules_file": str(missing),
            "rules_last_good": str(tmp_path / "last-good.json"),
        },
    )
    assert_fails(proc, 2, f"  - file:{missing}: cannot read: No such file or directory")


def test_a_registry_directory_it_cannot_make_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    proc = run(tmp_path, {"registry": f"file://{tmp_path}/not-a-dir/reg"})
    assert_fails(proc, 1, f"sofamesh.sidecar: Not a directory: {tmp_path}/not-a-dir/reg")
