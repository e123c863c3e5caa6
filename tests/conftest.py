"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

# Speed is measured in benchmarks/, never in tests: on a machine shared with other work a
# generated example can take longer than hypothesis's 200 ms deadline without anything being
# wrong, so no property test fails for the clock (each test's own settings still apply).
settings.register_profile("sofamesh", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sofamesh")
# The public plugin (what `pip install sofamesh[testing]` registers), loaded from this checkout.
pytest_plugins = ["sofamesh.testing"]


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
