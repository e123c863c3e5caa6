"""The example project under examples/migration, installed as a user would install it.

A fresh virtualenv gets `pip install <this repo>[testing]` and the example, then the example's
own pytest runs there: its tests use only the public plugin, found through the `pytest11`
entry point (no `-p` flag, no import of it in a conftest). The dependencies come from the
wheelhouse `scripts/setup.sh` fills (`build/wheelhouse`, with `--no-index`): the same
releases, without asking an index for each.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "migration"
WHEELHOUSE = ROOT / "build" / "wheelhouse"


def run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what pip installed
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def copy_sources(into: Path) -> tuple[Path, Path]:
    """The repository's package and the example, copied: pip builds in place, and its
    `*.egg-info` must not land in this checkout (on PYTHONPATH it would pose as an install)."""
    repo = into / "sofamesh"
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(ROOT / "src", repo / "src", ignore=skip)
    example = shutil.copytree(EXAMPLE, into / "example", ignore=skip)
    return repo, example


def fresh_venv(sources: Path, venv: Path) -> tuple[Path, Path]:
    """A new virtualenv with `sofamesh[testing]` and the example installed as a user would.

    It lives in the test's own directory, so two runs of the suite never share one.
    """
    assert (WHEELHOUSE / ".built").exists(), f"no {WHEELHOUSE}: run scripts/setup.sh"
    # No pip of its own (ensurepip costs seconds): this interpreter's pip installs into it.
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], ROOT, 120)
    assert made.returncode == 0, made.stderr
    repo, example = copy_sources(sources)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index"]
    pip += ["--find-links", str(WHEELHOUSE)]
    installed = run([*pip, f"{repo}[testing]", str(example)], ROOT, 300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python, example


def test_the_migration_example_passes_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    python, example = fresh_venv(tmp_path / "src", tmp_path / "venv")
    plugins = run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; "
            "print([e.value for e in m.entry_points(group='pytest11')])",
        ],
        ROOT,
        60,
    )
    assert "sofamesh.testing" in plugins.stdout, plugins.stdout + plugins.stderr
    argv = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    result = run([*argv, "--basetemp", str(tmp_path / "t")], example, 300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 18 and "failed" not in result.stdout, out
