"""`sofamesh-init`: install (or `--remove`) the iptables rules of transparent interception.

Run with NET_ADMIN in the app's network namespace before the app starts, as Istio's
init container runs istio-iptables: the Kubernetes init container and the VM's oneshot
unit both call this command. Installing first removes what an earlier run installed,
so running it twice leaves one set of rules. Exit status: 0 done, 1 iptables failed,
2 bad options.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
from typing import Any

from sofamesh.intercept.rules import (
    ALL_PORTS,
    InterceptPlan,
    install_rules,
    parse_cidrs,
    parse_ports,
    remove_rules,
)

log = logging.getLogger("sofamesh.intercept")

DESCRIPTION = """\
Install the iptables rules (nat table, chains SOFAMESH_*) that send the app's outbound TCP
to the sidecar's outbound port, the app's inbound TCP to the sidecar's inbound port, and
(with --dns) the app's DNS queries (udp/53) to the sidecar's DNS proxy. The sidecar's own
traffic (by --proxy-uid / --proxy-gid) and loopback are never redirected.
"""
MAX_DUPLICATE_JUMPS = 16  # jumps left by runs of other tools are deleted up to this many


# (flag, its argparse keywords): what to intercept, what to leave alone, and how to run.
_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--outbound-port", {"type": int, "default": 15001,
                         "help": "the sidecar's transparent outbound port (default 15001)"}),
    ("--inbound-port", {"type": int, "default": 15006,
                        "help": "the sidecar's transparent inbound port (default 15006)"}),
    ("--proxy-uid", {"action": "append", "type": int, "default": None,
                     "help": "uid the sidecar runs as, never redirected "
                             "(repeatable; default 1337)"}),
    ("--proxy-gid", {"action": "append", "type": int, "default": [],
                     "help": "gid the sidecar runs as, never redirected (repeatable)"}),
    ("--inbound-ports", {"default": "", "help": "the app's ports whose inbound TCP goes to the "
                         "sidecar: 'P1,P2' or '*' (default none)"}),
    ("--exclude-inbound-ports", {"default": "", "help": "inbound ports never redirected: 'P1,P2'"}),
    ("--exclude-outbound-ports", {"default": "",
                                  "help": "destination ports never redirected: 'P1,P2'"}),
    ("--exclude-outbound-cidrs", {"default": "", "help": "destination IPv4 networks never "
                                  "redirected: 'CIDR1,CIDR2'"}),
    ("--dns", {"action": argparse.BooleanOptionalAction, "default": False, "help": "redirect the "
               "app's DNS (udp/53) to the sidecar's DNS proxy (default: off)"}),
    ("--dns-port", {"type": int, "default": 15053,
                    "help": "the sidecar's DNS proxy port (default 15053)"}),
    ("--iptables", {"default": "iptables", "help": "the iptables binary (default iptables; "
                    "iptables-legacy or iptables-nft: a backend)"}),
    ("--remove", {"action": "store_true",
                  "help": "remove the rules this command installs, and nothing else"}),
    ("--dry-run", {"action": "store_true",
                   "help": "print the iptables commands instead of running them"}),
)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sofamesh-init", description=DESCRIPTION)
    for flag, options in _OPTIONS:
        p.add_argument(flag, **options)
    return p


def plan_of(args: argparse.Namespace) -> InterceptPlan:
    inbound: tuple[int, ...] | str = (
        ALL_PORTS if args.inbound_ports.strip() == ALL_PORTS else parse_ports(args.inbound_ports)
    )
    return InterceptPlan(
        outbound_port=args.outbound_port,
        inbound_port=args.inbound_port,
        proxy_uids=tuple(args.proxy_uid if args.proxy_uid is not None else (1337,)),
        proxy_gids=tuple(args.proxy_gid),
        inbound_ports=inbound,
        exclude_outbound_ports=parse_ports(args.exclude_outbound_ports),
        exclude_outbound_cidrs=parse_cidrs(args.exclude_outbound_cidrs),
        exclude_inbound_ports=parse_ports(args.exclude_inbound_ports),
        dns=args.dns,
        dns_port=args.dns_port,
    )


def run_removal(iptables: str, dry_run: bool) -> None:
    for rule in remove_rules():
        repeat = MAX_DUPLICATE_JUMPS if "-D" in rule else 1
        for _ in range(repeat):
            if dry_run:
                print(shlex.join([iptables, *rule]))
                break
            done = subprocess.run([iptables, *rule], capture_output=True, check=False)
            if done.returncode != 0:  # nothing (more) of ours there
                break


def run_install(iptables: str, plan: InterceptPlan, dry_run: bool) -> int:
    for rule in install_rules(plan):
        command = [iptables, *rule]
        if dry_run:
            print(shlex.join(command))
            continue
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(
                f"sofamesh-init: {shlex.join(command)} failed: {done.stderr.strip()}",
                file=sys.stderr,
            )
            run_removal(iptables, False)  # fail closed: no half-installed interception
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        plan = plan_of(args)
    except ValueError as e:
        print(f"sofamesh-init: {e}", file=sys.stderr)
        return 2
    try:
        if args.remove:
            run_removal(args.iptables, args.dry_run)
            return 0
        if not args.dry_run:  # what an earlier run installed goes first: one set of rules
            run_removal(args.iptables, False)
        return run_install(args.iptables, plan, args.dry_run)
    except FileNotFoundError:
        print(
            f"sofamesh-init: no {args.iptables} command (Debian: apt-get install iptables)",
            file=sys.stderr,
        )
        return 1
