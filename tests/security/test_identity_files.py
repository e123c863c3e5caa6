"""Identity from files: loaded, re-read when replaced, the last good kept when a set is broken."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from tests.security.pki import DOMAIN, issue_files

from sofamesh.security.ca import CertificateAuthority, key_pem, new_key, write_file
from sofamesh.security.identity import IdentityError, IdentitySource, load_identity


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(DOMAIN)


def test_loads_the_id_and_knows_when_to_renew(ca: CertificateAuthority, tmp_path: Path) -> None:
    ident = load_identity(issue_files(ca, tmp_path, "web", life=datetime.timedelta(hours=3)))
    assert str(ident.spiffe_id) == "spiffe://mesh.test/ws/prod/app/web"
    start = ident.cert.not_valid_before_utc
    assert ident.renew_after == start + (ident.not_after - start) * 2 / 3


def test_a_key_of_another_certificate_is_an_error(ca: CertificateAuthority, tmp_path: Path) -> None:
    files = issue_files(ca, tmp_path, "web")
    write_file(Path(files.key), key_pem(new_key()), 0o600)
    with pytest.raises(IdentityError, match="is not the key of"):
        load_identity(files)


def test_replaced_files_are_read_again_after_the_check_interval(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    ticks = Ticks()
    source = IdentitySource(issue_files(ca, tmp_path, "web"), clock=ticks)
    first = source.current()
    issue_files(ca, tmp_path, "web")
    assert source.current() is first  # not looked at again within the interval
    ticks.now = 1.0
    renewed = source.current()
    assert renewed is not first and renewed.cert.serial_number != first.cert.serial_number
    assert source.reloads == 1
    ticks.now = 2.0
    assert source.current() is renewed  # unchanged files: the same object


def test_a_broken_set_keeps_the_last_good_identity(
    ca: CertificateAuthority, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = Ticks()
    files = issue_files(ca, tmp_path, "web")
    source = IdentitySource(files, clock=ticks)
    good = source.current()
    write_file(Path(files.key), key_pem(new_key()), 0o600)
    ticks.now = 5.0
    assert source.current() is good
    assert source.failed_reloads == 1
    assert "identity files not reloaded, keeping spiffe://mesh.test/ws/prod/app/web" in caplog.text


def test_an_expired_identity_is_loaded_with_a_warning(
    ca: CertificateAuthority, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=30)
    source = IdentitySource(issue_files(ca, tmp_path, "web", at=start))
    assert str(source.current().spiffe_id).endswith("/app/web")
    assert "identity spiffe://mesh.test/ws/prod/app/web expired at" in caplog.text
