"""`sofamesh COMMAND ...`: one entry point; each command group is a module that adds its parser.

Groups: `ctl` (the control plane, `ctl.py`), `ca` (certificates, `ca.py`), and from
`sofamesh.deploy`: `inject`, `injector` (Kubernetes) and `vm` (systemd). A group module
has `add_parser(subparsers)` and sets `run` on its namespace; `main` returns its exit status.
"""

from __future__ import annotations

import argparse
import sys

from sofamesh.cli import ca, ctl
from sofamesh.deploy import manifests, vm, webhook


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sofamesh", description="The sofamesh command line.")
    groups = p.add_subparsers(dest="group", metavar="COMMAND", required=True)
    ctl.add_parser(groups)
    ca.add_parser(groups)
    manifests.add_parser(groups)
    webhook.add_parser(groups)
    vm.add_parser(groups)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
