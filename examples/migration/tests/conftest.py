"""Every async test runs on asyncio and on trio; the sofamesh fixtures come from the plugin
that `pip install sofamesh[testing]` registers (no `-p` flag, no import here)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
