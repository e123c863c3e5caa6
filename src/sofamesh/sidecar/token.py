"""The local API's token file: written at start, readable only by the sidecar's user.

A process on the host that cannot read the file cannot use the local API: it can
neither publish in the app's name nor learn the listeners. The token is new at
every start, so a file left behind by a dead sidecar opens nothing.
"""

from __future__ import annotations

import base64
import contextlib
import os
import stat
from pathlib import Path

from sofamesh.config.local_api import private_dir
from sofamesh.sidecar.errors import SidecarError


class TokenFileError(SidecarError):
    """The token file cannot be written safely; the message names the path and the cause."""


def write_token(path: Path, token: str | None = None) -> str:
    """A fresh token (or `token`, kept across an in-place upgrade), written atomically to
    `path` with mode 0600."""
    if path.parent == private_dir():
        _ensure_private_dir(path.parent)
    token = token or _fresh_token()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise TokenFileError(f"cannot write the local API token to {path}: {e.strerror}") from None
    return token


def remove_token(path: Path, token: str) -> None:
    """Remove the file if it still holds `token` (a newer sidecar may have replaced it)."""
    with contextlib.suppress(OSError):
        if path.read_text().strip() == token:
            path.unlink()


def _ensure_private_dir(directory: Path) -> None:
    # The default directory is shared by name (under the temp dir): refuse one that another
    # user made or that others can read, or they could read or replace the token.
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.lstat()
    except OSError as e:
        raise TokenFileError(f"cannot create {directory}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise TokenFileError(
            f"{directory} must be a directory owned by this user with mode 0700; "
            "remove it or set local_api.token_file"
        )


def _fresh_token() -> str:
    """`secrets.token_urlsafe(32)`, without importing `secrets`: it imports `hmac`, and
    with it OpenSSL's digests (0.7 MB an idle sidecar does not otherwise need)."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")
