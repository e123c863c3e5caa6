"""The local API's token directory: `tempfile.gettempdir()`'s answer, without tempfile."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from sofamesh.config.local_api import private_dir, temp_dir


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"TMPDIR": "{tmp}"},
        {"TMPDIR": "{tmp}/missing", "TEMP": "{tmp}"},
        {"TMP": "{tmp}/."},
        {"TMPDIR": "relative"},
    ],
)
def test_temp_dir_answers_as_tempfile_does(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "relative").mkdir()
    for name in ("TMPDIR", "TEMP", "TMP"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches its first answer
    assert temp_dir() == tempfile.gettempdir()
    assert private_dir() == Path(tempfile.gettempdir()) / f"sofamesh-{os.getuid()}"
