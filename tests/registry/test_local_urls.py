"""`memory://` and `file://` URL options: known ones parsed, every problem named at load."""

from __future__ import annotations

import pytest

from sofamesh.registry import local_options, open_registry, validate_registry_url


def test_file_options_parse_with_their_defaults() -> None:
    assert local_options("file:///var/tmp/m") == {"lease": 10.0, "poll": 0.2}
    assert local_options("file:///var/tmp/m?lease=30&poll=0.5") == {"lease": 30.0, "poll": 0.5}
    assert local_options("memory://") == {}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file:///d?lease=abc", "file registry URL: lease: not a number: 'abc'"),
        ("file:///d?lease=nan", "lease: must be a positive number of seconds, got nan"),
        ("file:///d?poll=inf", "poll: must be a positive number of seconds, got inf"),
        ("file:///d?poll=0", "poll: must be a positive number of seconds, got 0"),
        ("file:///d?ttl=5", "unknown option 'ttl' (known: lease, poll)"),
        ("memory://?lease=5", "memory registry URL: unknown option 'lease' (known: none)"),
    ],
)
def test_bad_options_are_named(url: str, problem: str) -> None:
    assert problem in (validate_registry_url(url) or "")
    with pytest.raises(ValueError, match="registry URL"):
        open_registry(url)


def test_every_problem_is_listed_at_once() -> None:
    problem = validate_registry_url("file:///d?lease=x&poll=-1&what=1") or ""
    assert problem.count(";") == 2
