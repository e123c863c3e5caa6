"""The README's first command: the demo mesh runs every phase and exits 0 by itself.

It runs as on an install with only the `demo` extra: every module that only another
extra of setup.cfg provides (test tools, trio, uvloop, grpcio...) fails to import in
the demo and in every process it starts.
"""

from __future__ import annotations

import configparser
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = '''
import os, sys

_BLOCKED = frozenset(os.environ["SOFAMESH_TEST_ABSENT"].split(","))


class _Absent:
    """Modules of packages the demo extra does not install: as if they were not there."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Absent)
'''


def _names(requirements: str) -> set[str]:
    return {
        re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", line.strip())[0]).lower()
        for line in requirements.splitlines()
        if line.strip()
    }


def modules_outside_demo_extra() -> set[str]:
    """Top-level modules that only the other extras of setup.cfg install."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    extras = cfg["options.extras_require"]
    allowed = _names(cfg["options"]["install_requires"]) | _names(extras["demo"])
    others = set().union(*(_names(extras[e]) for e in extras if e != "demo")) - allowed
    return {
        module
        for module, dists in packages_distributions().items()
        if {re.sub(r"[-_.]+", "-", d).lower() for d in dists} <= others
    }


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("demo-extra-only")
    (site / "sitecustomize.py").write_text(BLOCKER)
    absent = modules_outside_demo_extra()
    assert {"pytest", "trio", "uvloop", "grpc"} <= absent  # the blocker has work to do
    path = [str(site), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(path),
        "SOFAMESH_TEST_ABSENT": ",".join(absent),
    }


def test_demo_runs_every_phase_and_exits_0(demo_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sofamesh.demo", "--phase-seconds", "2"],
        capture_output=True,
        text=True,
        timeout=600,  # start-up and each phase wait longer (bounded) on a loaded machine
        env=demo_env,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    for caller in ("shop (SDK)", "web (plain -> sidecar)"):
        for service in ("com.example.Orders", "com.example.Inventory"):
            assert f"{caller:<24} -> {service}" in out
    assert "SIGKILL inventory-2's app" in out
    assert "steady ok: True   ejection seen, no failed calls: True   recovered: True" in out


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 60.0) -> str:
    """Lines of the demo's stdout up to and including the first that holds `marker`."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while marker not in seen:
            left = deadline - time.monotonic()
            assert left > 0 and sel.select(left), f"no {marker!r} in:\n{seen}"
            line = proc.stdout.readline()
            assert line, f"the demo ended before {marker!r}:\n{seen}"
            seen += line
    return seen


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found |= {int(child)} | _descendants(int(child))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_every_child_and_removes_the_temp_dir(
    demo_env: dict[str, str], sig: signal.Signals
) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "sofamesh.demo", "--keep-running"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=demo_env,
        start_new_session=True,  # a signal the demo misses must not reach the test run
    ) as proc:
        try:
            started = _read_until(proc, "--- steady")  # printed once every process is up
            found = re.search(r"registry file://(\S+)/registry\)", started)
            assert found, started
            tmp, children = Path(found.group(1)), _descendants(proc.pid)
            assert tmp.is_dir() and len(children) >= 7  # 2 apps, 3 sidecars, 2 SDK providers
            proc.send_signal(sig)
            assert proc.wait(timeout=60) == 128 + sig
            assert not tmp.exists()
            assert not {pid for pid in children if _alive(pid)}
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
