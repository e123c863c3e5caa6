"""`needs_llhttp`: the relay's tests read with llhttp (`httptools`, the `speedups` extra).

Without it they are skipped, as in a pure-Python install of the package, unless
`SOFAMESH_TEST_ALL_EXTRAS` is set: `scripts/test.sh` (what CI runs) sets it, having
installed every extra, so there a missing llhttp fails them instead.
"""

from __future__ import annotations

import os

import pytest

from sofamesh.codecs.http1 import fast

needs_llhttp = pytest.mark.skipif(
    not fast.LLHTTP and not os.environ.get("SOFAMESH_TEST_ALL_EXTRAS"),
    reason="the relay reads with llhttp (pip install 'sofamesh[speedups]')",
)
