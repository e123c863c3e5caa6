"""The interception tests' two hosts (network namespaces), made fresh for each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.intercept.netns import Hosts, two_hosts


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    try:
        made = two_hosts()
        net = made.__enter__()
    except RuntimeError as e:
        pytest.fail(f"this machine refuses network namespaces (needs root, ip, iptables): {e}")
    try:
        yield net
    finally:
        made.__exit__(None, None, None)
