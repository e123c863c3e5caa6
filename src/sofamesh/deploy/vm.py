"""`sofamesh vm install` / `uninstall`: the sidecar as systemd services on a virtual machine.

Install writes, under `--root` (default `/`):

    /etc/sofamesh/mesh.yaml                      the mesh config (checked first)
    /etc/systemd/system/sofamesh-sidecar.service the sidecar
    /etc/systemd/system/sofamesh-init.service    the interception rules (unless --no-interception)
    /etc/sysusers.d/sofamesh.conf                the sidecar's system user (systemd-sysusers)
    /etc/sofamesh/install-manifest.json          what was written, with each file's SHA-256

and runs nothing: it prints the `systemd-sysusers` and `systemctl` commands to
run. It refuses to replace a file it did not write (unless `--force`); writing
over its own earlier install is an upgrade. Uninstall removes exactly the files
of the manifest, and the directories install created if they are empty; a file
changed since (an edited config) is kept and named.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from sofamesh._version import __version__
from sofamesh.config import ConfigError, MeshConfig, load_config
from sofamesh.deploy.initcmd import init_argv
from sofamesh.deploy.settings import DNS_PORT, INBOUND_PORT, OUTBOUND_PORT, PROXY_UID
from sofamesh.deploy.units import (
    INIT_UNIT,
    SIDECAR_UNIT,
    USER,
    UnitSettings,
    init_unit,
    sidecar_unit,
    sysusers,
)

MANIFEST = "/etc/sofamesh/install-manifest.json"
UNIT_DIR = "/etc/systemd/system"

Files = dict[str, tuple[bytes, int]]  # absolute path on the target -> content, mode


class InstallError(Exception):
    """An install or uninstall that cannot go ahead; the message says why."""


def plan(args: argparse.Namespace) -> Files:
    """Every file an install writes, from the command line."""
    source = Path(args.config)
    try:
        config = load_config(source, env={})
    except ConfigError as exc:
        raise InstallError(f"{source}: {exc}") from None
    target = f"/etc/sofamesh/mesh{source.suffix if source.suffix == '.json' else '.yaml'}"
    init: tuple[str, ...] = ()
    if not args.no_interception:
        options = _init_options(args, _own_ports(config))
        init = tuple(init_argv(options, (args.python, "-m", "sofamesh.intercept")))
    units = UnitSettings(
        python=args.python,
        config=target,
        user=args.user,
        init_argv=init,
        drain_timeout=config.drain_timeout,
    )
    files: Files = {
        target: (source.read_bytes(), 0o644),
        f"{UNIT_DIR}/{SIDECAR_UNIT}": (sidecar_unit(units).encode(), 0o644),
        f"/etc/sysusers.d/{args.user}.conf": (sysusers(args.user, args.uid).encode(), 0o644),
    }
    if init:
        files[f"{UNIT_DIR}/{INIT_UNIT}"] = (init_unit(units).encode(), 0o644)
    return files


def _own_ports(config: MeshConfig) -> list[int]:
    """The sidecar's own listening ports that callers dial directly (its explicit inbound
    listeners, the admin): never redirected, whatever `--inbound-ports` takes."""
    ports = [lc.listen.port for lc in config.inbound]
    if config.admin is not None:
        ports.append(config.admin.port)
    return ports


def _init_options(args: argparse.Namespace, own_ports: list[int]) -> dict[str, Any]:
    given = [p for p in args.exclude_inbound_ports.split(",") if p.strip()]
    excluded = ",".join(dict.fromkeys([*given, *map(str, own_ports)]))
    return {
        "outbound_port": OUTBOUND_PORT,
        "inbound_port": INBOUND_PORT,
        "proxy_uid": args.uid,
        "proxy_gid": args.uid,
        "inbound_ports": args.inbound_ports,
        "exclude_inbound_ports": excluded,
        "exclude_outbound_ports": args.exclude_outbound_ports,
        "exclude_outbound_cidrs": args.exclude_outbound_cidrs,
        "dns": args.dns,
        "dns_port": DNS_PORT if args.dns else None,
    }


def install(root: Path, files: Files, *, force: bool = False) -> list[str]:
    """Write `files` under `root` and the manifest; the paths written."""
    previous = _read_manifest(root)
    owned = {f["path"] for f in previous.get("files", [])}
    taken = [p for p in files if _at(root, p).exists() and p not in owned]
    if taken and not force:
        raise InstallError(f"would replace files it did not write (--force to): {taken}")
    created = list(previous.get("dirs", []))
    for path, (content, mode) in files.items():
        created += _make_parents(root, path)
        _write(_at(root, path), content, mode)
    manifest = {
        "version": __version__,
        "files": [{"path": p, "sha256": _digest(c)} for p, (c, _m) in files.items()],
        "dirs": sorted(set(created)),
    }
    _write(_at(root, MANIFEST), json.dumps(manifest, indent=2).encode() + b"\n", 0o644)
    return [*files, MANIFEST]


def uninstall(root: Path) -> tuple[list[str], list[str]]:
    """Remove what the manifest lists: (the paths removed, changed files kept)."""
    manifest = _read_manifest(root)
    if not manifest:
        raise InstallError(f"nothing to uninstall: no {_at(root, MANIFEST)}")
    removed, kept = [], []
    for entry in manifest["files"]:
        path = _at(root, entry["path"])
        if not path.exists():
            continue
        if _digest(path.read_bytes()) != entry["sha256"]:
            kept.append(entry["path"])
            continue
        path.unlink()
        removed.append(entry["path"])
    _at(root, MANIFEST).unlink()
    removed.append(MANIFEST)
    for d in sorted(manifest.get("dirs", []), key=len, reverse=True):
        try:
            _at(root, d).rmdir()
        except OSError:  # not empty (something of someone else's), or gone
            continue
        removed.append(d)
    return removed, kept


def _at(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _read_manifest(root: Path) -> dict[str, Any]:
    path = _at(root, MANIFEST)
    try:
        found: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InstallError(f"{path}: unreadable: {exc}") from None
    return found


def _make_parents(root: Path, path: str) -> list[str]:
    """Create the missing directories above `path`; the ones created, as target paths."""
    made = []
    parent = Path(path).parent
    for d in reversed([parent, *parent.parents]):
        if not _at(root, str(d)).is_dir():
            _at(root, str(d)).mkdir(mode=0o755)
            made.append(str(d))
    return made


def _write(path: Path, content: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    os.chmod(tmp, mode)  # whatever the umask took away
    os.replace(tmp, path)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("vm", help="run the sidecar as systemd services on a VM")
    sub = p.add_subparsers(dest="vm_command", required=True)
    inst = sub.add_parser("install", help="write the units, the config and the system user")
    inst.add_argument("--config", required=True, help="the mesh config to install")
    inst.add_argument("--root", default="/", help="install under this directory (default /)")
    inst.add_argument("--python", default=sys.executable, help="the Python that has sofamesh")
    inst.add_argument("--user", default=USER, help=f"the sidecar's system user ({USER})")
    inst.add_argument("--uid", type=int, default=PROXY_UID, help=f"its uid and gid ({PROXY_UID})")
    inst.add_argument("--no-interception", action="store_true", help="no iptables rules")
    inst.add_argument("--inbound-ports", default="*", help='ports to intercept ("*" all)')
    inst.add_argument("--exclude-inbound-ports", default="22", help="default 22 (ssh)")
    inst.add_argument("--exclude-outbound-ports", default="")
    inst.add_argument("--exclude-outbound-cidrs", default="")
    inst.add_argument("--dns", action="store_true", help="send DNS to the sidecar's DNS proxy")
    inst.add_argument("--force", action="store_true", help="replace files it did not write")
    inst.set_defaults(run=run)
    uninst = sub.add_parser("uninstall", help="remove exactly what install wrote")
    uninst.add_argument("--root", default="/")
    uninst.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    try:
        if args.vm_command == "install":
            written = install(root, plan(args), force=args.force)
            print("\n".join(f"wrote {p}" for p in written))
            print(_NEXT_INSTALL)
        else:
            removed, kept = uninstall(root)
            print("\n".join(f"removed {p}" for p in removed))
            for p in kept:
                print(f"kept {p}: changed since install", file=sys.stderr)
    except (InstallError, OSError) as exc:
        print(f"sofamesh vm {args.vm_command}: {exc}", file=sys.stderr)
        return 1
    return 0


_NEXT_INSTALL = """\
next, as root: systemd-sysusers && systemctl daemon-reload && \
systemctl enable --now sofamesh-sidecar.service"""
