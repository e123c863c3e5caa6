"""`sofamesh <command> ...`: dispatch to the command modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sofamesh.cli import ca


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sofamesh")
    commands = parser.add_subparsers(dest="command", required=True)
    ca.add_parser(commands)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
