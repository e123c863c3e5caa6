"""`lazy_module`: bound now, run on the first read of a name, then the module itself."""

from __future__ import annotations

import json

import pytest
from tests.fresh_python import run_python

from sofamesh.lazy_imports import is_loaded, lazy_module

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
    seen = json.loads(run_python(FIRST_READ))
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
