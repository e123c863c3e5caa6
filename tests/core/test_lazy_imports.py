"""`lazy_module`: bound now, run on the first read of a name, then the module itself."""

from __future__ import annotations

import json
from pathlib import Path

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


IMPORTED_AGAIN = """
import json, sys
from sofamesh.lazy_imports import is_loaded, lazy_module
bound = lazy_module("colorsys")
import colorsys  # what a library's own `import colorsys` does: reads only its `__spec__`
again = colorsys is bound and not is_loaded("colorsys")
from colorsys import rgb_to_hls  # a name read: it runs
print(json.dumps({"again": again, "loaded": is_loaded("colorsys"),
                  "same": rgb_to_hls is bound.rgb_to_hls}))
"""


def test_a_later_import_statement_binds_it_still_unrun() -> None:
    assert json.loads(run_python(IMPORTED_AGAIN)) == {"again": True, "loaded": True, "same": True}


# Two threads read a lazy module's first name at once: the second waits until the first
# has run it, rather than reading it half run. `slow` waits, while it runs, until the test
# has seen the second thread ask for the module's lock.
SLOW = """
import probe
probe.runs += 1
probe.started.set()
probe.release.wait()
value = 42
"""
PROBE = """
import threading
runs = 0
started = threading.Event()
release = threading.Event()
"""
TWO_THREADS = """
import json, sys, threading
sys.path.insert(0, sys.argv[1])
from sofamesh import lazy_imports
import probe
slow = lazy_imports.lazy_module("slow")
seen = []
first = threading.Thread(target=lambda: seen.append(slow.value))
first.start()
probe.started.wait()  # `first` runs it, holding its lock


class Asked:
    # The module's lock, which tells when the second thread asks for it.
    def __init__(self, lock):
        self.lock, self.asked = lock, threading.Event()
    def __enter__(self):
        self.asked.set()
        return self.lock.__enter__()
    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


asked = lazy_imports._PENDING["slow"] = Asked(lazy_imports._PENDING["slow"])
second = threading.Thread(target=lambda: seen.append(slow.value))
second.start()
asked.asked.wait()
probe.release.set()
first.join()
second.join()
print(json.dumps({"seen": seen, "runs": probe.runs, "loaded": lazy_imports.is_loaded("slow")}))
"""


def test_a_second_thread_waits_for_the_first_run(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW)
    (tmp_path / "probe.py").write_text(PROBE)
    seen = json.loads(run_python(TWO_THREADS, str(tmp_path)))
    assert seen == {"seen": [42, 42], "runs": 1, "loaded": True}


FAILING = """
import json, sys
sys.path.insert(0, sys.argv[1])
from sofamesh.lazy_imports import is_loaded, lazy_module
flaky = lazy_module("flaky")
errors = []
for _ in range(2):
    try:
        flaky.value
    except RuntimeError as e:
        errors.append(str(e))
print(json.dumps({"errors": errors, "loaded": is_loaded("flaky")}))
"""


def test_a_run_that_raises_leaves_it_unrun_for_the_next_read(tmp_path: Path) -> None:
    (tmp_path / "flaky.py").write_text("raise RuntimeError('not today')\n")
    seen = json.loads(run_python(FAILING, str(tmp_path)))
    assert seen == {"errors": ["not today", "not today"], "loaded": False}
