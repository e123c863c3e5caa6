"""`lazy_module`: bound now, run on the first read of a name, then the module itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sofamesh
from sofamesh.lazy_imports import is_loaded, lazy_module

SRC = Path(sofamesh.__file__).resolve().parents[1]

FIRST_READ = """
import json, sys
from sofamesh.lazy_imports import is_loaded, lazy_module
colorsys = lazy_module("colorsys")
bound = "colorsys" in sys.modules and not is_loaded("colorsys")
converted = colorsys.rgb_to_hls(1.0, 0.0, 0.0)
print(json.dumps({
    "bound": bound, "loaded": is_loaded("colorsys"), "converted": converted,
    "module": type(colorsys) is type(sys), "same": sys.modules["colorsys"] is colorsys,
}))
"""


def test_a_lazy_module_runs_on_its_first_read_and_is_then_the_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FIRST_READ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC)},
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {
        "bound": True,
        "loaded": True,
        "converted": [0.0, 0.5, 1.0],
        "module": True,
        "same": True,
    }


def test_an_imported_module_is_returned_as_it_is() -> None:
    assert lazy_module("json") is json
    assert is_loaded("json")


def test_a_missing_module_is_refused_at_once() -> None:
    with pytest.raises(ModuleNotFoundError, match="no_such_module_here"):
        lazy_module("no_such_module_here")
    assert not is_loaded("no_such_module_here")
