"""The interception tests' two hosts (network namespaces), made fresh for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.intercept.netns import Hosts, hosts_or_fail


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    yield from hosts_or_fail()
