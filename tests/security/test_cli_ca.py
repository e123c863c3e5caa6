"""`sofamesh ca init` and `sofamesh ca issue`: the file contract scripts rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.security.pki import files_in

from sofamesh.security.identity import load_identity

SRC = str(Path(__file__).resolve().parents[2] / "src")


def sofamesh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sofamesh.cli", *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
    )


def test_init_then_issue_writes_files_openssl_verifies(tmp_path: Path) -> None:
    ca, out = tmp_path / "ca", tmp_path / "web"
    done = sofamesh("ca", "init", str(ca), "--trust-domain", "corp.example")
    assert done.returncode == 0, done.stderr
    assert {p.name for p in ca.iterdir()} == {"ca.pem", "ca-key.pem"}
    done = sofamesh(
        "ca", "issue", "--ca", str(ca), "--app", "web", "--workspace", "w1", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} == {"cert.pem", "key.pem", "bundle.pem"}
    assert (out / "key.pem").stat().st_mode & 0o077 == 0
    ident = load_identity(files_in(out))
    assert str(ident.spiffe_id) == "spiffe://corp.example/ws/w1/app/web"
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(out / "bundle.pem"), str(out / "cert.pem")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr


def test_init_does_not_replace_a_ca_and_bad_input_is_one_line(tmp_path: Path) -> None:
    assert sofamesh("ca", "init", str(tmp_path)).returncode == 0
    again = sofamesh("ca", "init", str(tmp_path))
    assert again.returncode == 1 and "exists (--force replaces it)" in again.stderr
    bad = sofamesh("ca", "init", str(tmp_path / "x"), "--trust-domain", "Not Valid")
    assert bad.returncode == 1 and "trust domain must be lowercase" in bad.stderr
    assert "Traceback" not in bad.stderr
