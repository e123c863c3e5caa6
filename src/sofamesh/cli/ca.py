"""`sofamesh ca`: a mesh CA in a directory, and workload identities as files.

    sofamesh ca init DIR [--trust-domain D]      -> DIR/ca.pem, DIR/ca-key.pem
    sofamesh ca issue --ca DIR --app A --workspace W --out OUT [--hours H]
                                                 -> OUT/cert.pem, OUT/key.pem, OUT/bundle.pem
    sofamesh ca issue-server --ca DIR [--dns NAME]... [--ip ADDR]... --out OUT [--days N]
                                                 -> the same three files, for HTTPS

For meshes without a control plane, and for scripts: a data plane reads the
issued files through `tls: {cert, key, trust_bundle}` and reloads them when
`issue` writes them again.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

from sofamesh.security.ca import (
    CA_CERT,
    CA_KEY,
    SERVER_LIFE,
    WORKLOAD_LIFE,
    CertificateAuthority,
    write_identity,
)
from sofamesh.security.spiffe import DEFAULT_TRUST_DOMAIN, SpiffeId, check_trust_domain


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("ca", help="a mesh CA and workload certificates as files")
    sub = p.add_subparsers(dest="ca_command", required=True)
    init = sub.add_parser("init", help="create a CA (ECDSA P-256 root) in DIR")
    init.add_argument("dir")
    init.add_argument("--trust-domain", default=DEFAULT_TRUST_DOMAIN)
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(run=run)
    issue = sub.add_parser("issue", help="issue a workload certificate and key as files")
    issue.add_argument("--ca", required=True, help="the CA directory")
    issue.add_argument("--app", required=True)
    issue.add_argument("--workspace", required=True)
    issue.add_argument("--out", required=True)
    hours = WORKLOAD_LIFE.total_seconds() / 3600
    issue.add_argument("--hours", type=float, default=hours, help=f"life (default {hours:g})")
    issue.add_argument("--bundle", help="a trust bundle to write instead of the CA's certificate")
    issue.add_argument(
        "--dns", action="append", default=[], help="a DNS SAN too (clients that check host names)"
    )
    issue.set_defaults(run=run)
    server = sub.add_parser(
        "issue-server", help="a server certificate for the control plane's API over HTTPS"
    )
    server.add_argument("--ca", required=True, help="the CA directory")
    server.add_argument("--dns", action="append", default=[], help="a host name (repeatable)")
    server.add_argument("--ip", action="append", default=[], help="an IP address (repeatable)")
    server.add_argument("--out", required=True)
    days = SERVER_LIFE.days
    server.add_argument("--days", type=float, default=days, help=f"life (default {days})")
    server.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.ca_command == "init":
            return _init(args)
        if args.ca_command == "issue-server":
            return _issue_server(args)
        return _issue(args)
    except (OSError, ValueError) as exc:
        print(f"sofamesh ca {args.ca_command}: {exc}", file=sys.stderr)
        return 1


def _init(args: argparse.Namespace) -> int:
    d = Path(args.dir)
    if (d / CA_KEY).exists() and not args.force:
        print(f"sofamesh ca init: {d / CA_KEY} exists (--force replaces it)", file=sys.stderr)
        return 1
    ca = CertificateAuthority.create(check_trust_domain(args.trust_domain))
    ca.save(d)
    print(f"CA for trust domain {args.trust_domain}: {d / CA_CERT}")
    return 0


def _issue(args: argparse.Namespace) -> int:
    ca = CertificateAuthority.load(args.ca)
    workload = SpiffeId(ca.trust_domain, args.workspace, args.app)
    if not args.hours > 0:
        raise ValueError(f"--hours must be positive, got {args.hours}")
    life = datetime.timedelta(hours=args.hours)
    cert, key = ca.issue(workload, life=life, dns=tuple(args.dns))
    bundle = (
        Path(args.bundle).read_bytes() if args.bundle else (Path(args.ca) / CA_CERT).read_bytes()
    )
    write_identity(args.out, cert, key, bundle)
    print(f"{workload}: {Path(args.out) / 'cert.pem'}, valid until {cert.not_valid_after_utc}")
    return 0


def _issue_server(args: argparse.Namespace) -> int:
    ca = CertificateAuthority.load(args.ca)
    if not args.days > 0:
        raise ValueError(f"--days must be positive, got {args.days}")
    life = datetime.timedelta(days=args.days)
    cert, key = ca.issue_server(tuple(args.dns), tuple(args.ip), life=life)
    write_identity(args.out, cert, key, (Path(args.ca) / CA_CERT).read_bytes())
    names = ", ".join([*args.dns, *args.ip])
    print(
        f"server certificate for {names}: {Path(args.out) / 'cert.pem'}, "
        f"valid until {cert.not_valid_after_utc}"
    )
    return 0
