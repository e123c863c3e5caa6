"""`sofamesh vm install` / `uninstall` in a temporary root, and the units systemd would load."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sofamesh.cli.main import main
from sofamesh.deploy.units import UnitSettings, sidecar_unit

UNITS = "etc/systemd/system"


def tree(root: Path) -> dict[str, str]:
    """Every file and directory under `root`, with the files' digests."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "orders.yaml"
    path.write_text(
        "app: orders\nadmin: 127.0.0.1:15000\nregistry: etcd://10.0.0.5:2379\ndrain_timeout: 20\n"
        "inbound:\n  - {protocol: http, listen: 0.0.0.0:15443, upstream: 127.0.0.1:8080,"
        " services: [orders]}\n"
    )
    return path


def install(root: Path, config: Path, *extra: str) -> int:
    return main(["vm", "install", "--config", str(config), "--root", str(root), *extra])


def verify(*units: Path) -> str:
    """What `systemd-analyze verify` says about `units` ("" when it has nothing to say)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: scripts/setup.sh installs systemd"
    proc = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True)
    return f"{proc.returncode} {proc.stdout}{proc.stderr}".strip()


def test_install_writes_the_units_the_config_and_the_user(tmp_path: Path, config: Path) -> None:
    root = tmp_path / "root"
    assert install(root, config, "--exclude-outbound-cidrs", "169.254.169.254/32") == 0
    assert (root / "etc/sofamesh/mesh.yaml").read_bytes() == config.read_bytes()
    sysusers = (root / "etc/sysusers.d/sofamesh.conf").read_text()
    assert sysusers.startswith("u sofamesh 1337 ")
    sidecar = (root / UNITS / "sofamesh-sidecar.service").read_text()
    init = (root / UNITS / "sofamesh-init.service").read_text()
    assert "User=sofamesh\n" in sidecar
    assert f"ExecStart={sys.executable} -m sofamesh.sidecar --config /etc/sofamesh/mesh.yaml\n" in (
        sidecar
    )
    assert "Requires=sofamesh-init.service\n" in sidecar
    assert "CapabilityBoundingSet=\n" in sidecar
    assert "TimeoutStopSec=25\n" in sidecar  # the config's drain_timeout, and a margin
    assert "Type=oneshot\n" in init and "RemainAfterExit=yes\n" in init
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n" in init
    start = next(x for x in init.splitlines() if x.startswith("ExecStart="))[len("ExecStart=") :]
    stop = next(x for x in init.splitlines() if x.startswith("ExecStop="))[len("ExecStop=") :]
    assert stop == start + " --remove"
    assert "--proxy-uid 1337" in start
    assert "--exclude-outbound-cidrs 169.254.169.254/32" in start
    # The sidecar's own ports are never redirected: its mesh listener and its admin.
    assert "--exclude-inbound-ports 22,15443,15000" in start
    assert oct((root / "etc/sofamesh/mesh.yaml").stat().st_mode & 0o777) == "0o644"


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path, config: Path) -> None:
    root = tmp_path / "root"
    assert install(root, config) == 0
    units = root / UNITS
    assert verify(units / "sofamesh-sidecar.service", units / "sofamesh-init.service") == "0"


def test_the_verification_can_fail(tmp_path: Path) -> None:
    unit = tmp_path / "sofamesh-sidecar.service"
    text = sidecar_unit(UnitSettings(python=sys.executable, config="/etc/sofamesh/mesh.yaml"))
    unit.write_text(text.replace("ProtectSystem=", "ProtectSystm="))
    assert "Unknown key 'ProtectSystm'" in verify(unit)


def test_uninstall_removes_exactly_what_install_wrote(tmp_path: Path, config: Path) -> None:
    root = tmp_path / "root"
    (root / UNITS).mkdir(parents=True)
    (root / UNITS / "nginx.service").write_text("[Service]\nExecStart=/usr/sbin/nginx\n")
    before = tree(root)
    assert install(root, config) == 0
    assert install(root, config) == 0  # again over its own files: an upgrade
    assert main(["vm", "uninstall", "--root", str(root)]) == 0
    assert tree(root) == before
    assert main(["vm", "uninstall", "--root", str(root)]) == 1  # nothing left to remove


def test_an_edited_config_is_kept_and_named(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    assert install(root, config) == 0
    (root / "etc/sofamesh/mesh.yaml").write_text("app: orders\n# tuned by hand\n")
    assert main(["vm", "uninstall", "--root", str(root)]) == 0
    assert "kept /etc/sofamesh/mesh.yaml" in capsys.readouterr().err
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [
        "etc",
        "etc/sofamesh",
        "etc/sofamesh/mesh.yaml",
    ]


def test_install_does_not_replace_a_file_it_did_not_write(
    tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    (root / "etc/sofamesh").mkdir(parents=True)
    (root / "etc/sofamesh/mesh.yaml").write_text("app: someone-elses\n")
    assert install(root, config) == 1
    assert "/etc/sofamesh/mesh.yaml" in capsys.readouterr().err
    assert not (root / UNITS).exists()
    assert install(root, config, "--force") == 0


def test_a_bad_config_is_refused_with_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("app: orders\nadmin: nowhere\n")
    assert install(tmp_path / "root", bad) == 1
    assert "admin: expected host:port" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def test_without_interception_there_is_no_init_unit(tmp_path: Path, config: Path) -> None:
    root = tmp_path / "root"
    assert install(root, config, "--no-interception") == 0
    assert not (root / UNITS / "sofamesh-init.service").exists()
    sidecar = root / UNITS / "sofamesh-sidecar.service"
    assert "sofamesh-init" not in sidecar.read_text()
    assert verify(sidecar) == "0"


def test_percent_and_dollar_stay_literal_in_command_lines() -> None:
    unit = sidecar_unit(UnitSettings(python="/opt/py%1/$HOME/python", config="/etc/x.yaml"))
    assert "ExecStart='/opt/py%%1/$$HOME/python' -m sofamesh.sidecar" in unit
