"""`sofamesh ctl`: the control plane for operators and scripts.

    sofamesh ctl [--server URL] [--token T] [-o table|json] COMMAND

`--server` defaults to `$SOFAMESH_SERVER` (else http://127.0.0.1:15080), `--token`
to `$SOFAMESH_TOKEN`, `--ca` (the CA file an https:// server is verified against) to
`$SOFAMESH_CA`. Exit status: 0 success, 2 a refused document or bad input
(every problem printed), 3 not authenticated or not allowed, 1 anything else.
docs/control-plane.md documents each command's JSON output.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

import yaml

from sofamesh.cli.client import BAD_INPUT, OK, Client, CtlError
from sofamesh.cli.output import Column, emit, when
from sofamesh.cli.top import run_top

WS = "/api/v1/workspaces"

SERVICE_COLUMNS: list[Column] = [
    ("SERVICE", lambda s: s["name"]),
    ("PROVIDERS", lambda s: [f"{p['app']}@{p['address']}" for p in s["providers"]]),
    ("CONSUMERS", lambda s: [c["app"] for c in s["consumers"]]),
    ("RPS", lambda s: s["metrics"]["rps"]),
    ("SUCCESS", lambda s: s["metrics"]["success_rate"]),
    ("P99MS", lambda s: s["metrics"]["p99_ms"]),
]
SIDECAR_COLUMNS: list[Column] = [
    ("ID", lambda r: r["id"]),
    ("APP", lambda r: r["app"]),
    ("MODE", lambda r: r["mode"]),
    (
        "STATUS",
        lambda r: r["status"] + ("" if r["status"] != "lost" else f" ({when(r['last_seen'])})"),
    ),
    ("HEALTH", lambda r: r["health"]),
    ("VERSION", lambda r: r["version"]),
    ("POD", lambda r: r["pod"]),
    ("PHASE", lambda r: r["pod_phase"]),
    ("STARTED", lambda r: when(r["started_at"])),
    ("INJECTED", lambda r: when(r["injected_at"])),
    ("RULES", lambda r: r["rules_version"]),
    ("SYNC", lambda r: r["sync"] + (f": {r['sync_error']}" if r.get("sync_error") else "")),
    ("MTLS", lambda r: (r.get("tls") or {}).get("mode")),
    ("IDENTITY", lambda r: (r.get("tls") or {}).get("spiffe_id")),
    ("CERT", lambda r: _cert(r.get("tls") or {})),
]


def _cert(tls: dict[str, Any]) -> str:
    """`OK until 2026-12-04 06:13:19`, `EXPIRED 2026-...`: the state the inventory flags."""
    state = tls.get("cert_state")
    if state is None:
        return "-"
    return f"{state} {'since' if state == 'EXPIRED' else 'until'} {when(tls.get('not_after'))}"


HISTORY_COLUMNS: list[Column] = [
    ("VERSION", lambda v: v["version"]),
    ("AUTHOR", lambda v: v["author"]),
    ("TIME", lambda v: when(v["time"])),
    ("MESSAGE", lambda v: v["message"]),
]
WORKSPACE_COLUMNS: list[Column] = [
    ("NAME", lambda w: w["name"]),
    ("CREATED", lambda w: when(w["created"])),
    ("BY", lambda w: w["created_by"]),
]


def add_parser(groups: Any) -> None:
    p = groups.add_parser("ctl", help="the control plane", description=__doc__.split("\n")[0])
    p.add_argument("--server", default=os.environ.get("SOFAMESH_SERVER", "http://127.0.0.1:15080"))
    p.add_argument(
        "--ca",
        default=os.environ.get("SOFAMESH_CA"),
        help="CA file that verifies an https:// server (default: $SOFAMESH_CA, else the system's)",
    )
    p.add_argument("--token", default=os.environ.get("SOFAMESH_TOKEN"))
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.set_defaults(run=run)
    cmds = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_access(cmds)
    _add_views(cmds)
    _add_rules(cmds)


def _add_access(cmds: Any) -> None:
    login = cmds.add_parser("login", help="log in; prints a token")
    login.add_argument("-u", "--user", required=True)
    login.add_argument("-p", "--password", help="default: read from stdin")
    ws = cmds.add_parser("workspaces", help="list or create workspaces")
    ws.add_argument("action", choices=["list", "create"], nargs="?", default="list")
    ws.add_argument("name", nargs="?")
    users = cmds.add_parser("users", help="create a user")
    users.add_argument("action", choices=["create"])
    users.add_argument("name")
    users.add_argument("--role", required=True, help="admin, owner, editor or viewer")
    users.add_argument("-w", "--workspace")
    users.add_argument("-p", "--password", help="default: generated and printed once")
    tokens = cmds.add_parser("tokens", help="create a workspace token")
    tokens.add_argument("action", choices=["create"])
    tokens.add_argument("-w", "--workspace", required=True)
    tokens.add_argument("--role", required=True, help="owner, editor, viewer or dataplane")
    tokens.add_argument("--name", default="")
    tokens.add_argument(
        "--app",
        action="append",
        default=[],
        help="dataplane: the app it is for (repeatable; the identities the CA gives it)",
    )


def _add_views(cmds: Any) -> None:
    for name in ("services", "sidecars"):
        sub = cmds.add_parser(name, help=f"the workspace's {name}")
        sub.add_argument("-w", "--workspace", required=True)
    act = cmds.add_parser("sidecar", help="mark a data plane failed or ok, or drain it")
    act.add_argument("action", choices=["fail", "ok", "drain"])
    act.add_argument("id")
    act.add_argument("-w", "--workspace", required=True)
    top = cmds.add_parser("top", help="live golden metrics, refreshing")
    top.add_argument("-w", "--workspace", required=True)
    top.add_argument("--interval", type=float, default=2.0)
    top.add_argument("--count", type=int, default=0, help="stop after N refreshes (0: never)")


def _add_rules(cmds: Any) -> None:
    rules = cmds.add_parser("rules", help="the workspace's rules document and its versions")
    rules.add_argument("action", choices=["get", "apply", "history", "diff", "rollback"])
    rules.add_argument("versions", nargs="*", help="diff: A B; rollback: VERSION; get: [VERSION]")
    rules.add_argument("-w", "--workspace", required=True)
    rules.add_argument("-f", "--file", help="apply: the rules document (YAML or JSON; - = stdin)")
    rules.add_argument("-m", "--message", default="")
    rules.add_argument("--shadow", action="store_true", help="apply every enforcing rule in shadow")


def run(args: argparse.Namespace) -> int:
    try:
        client = Client(args.server, args.token, cafile=args.ca)
        return COMMANDS[args.command](client, args)
    except CtlError as e:
        print(f"error: {e.message}", file=sys.stderr)
        for problem in e.problems:
            print(f"  - {problem}", file=sys.stderr)
        return e.exit_status


def _bad(message: str) -> CtlError:
    return CtlError(message, BAD_INPUT)


def login(client: Client, args: argparse.Namespace) -> int:
    password = args.password
    if password is None:
        password = getpass.getpass() if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    reply = client.call("POST", "/api/v1/login", {"user": args.user, "password": password})
    if args.output == "json":
        emit(reply, "json")
    else:
        print(reply["token"])
    return OK


def workspaces(client: Client, args: argparse.Namespace) -> int:
    if args.action == "create":
        if not args.name:
            raise _bad("workspaces create NAME: name the workspace")
        emit(client.call("POST", WS, {"name": args.name}), args.output, WORKSPACE_COLUMNS)
    else:
        emit(client.call("GET", WS), args.output, WORKSPACE_COLUMNS)
    return OK


def users(client: Client, args: argparse.Namespace) -> int:
    body = {"name": args.name, "role": args.role, "workspace": args.workspace}
    if args.password:
        body["password"] = args.password
    emit(client.call("POST", "/api/v1/users", body), args.output, None)
    return OK


def tokens(client: Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"role": args.role, "name": args.name}
    if args.app:
        body["apps"] = args.app
    reply = client.call("POST", f"{WS}/{args.workspace}/tokens", body)
    if args.output == "json":
        emit(reply, "json")
    else:
        print(reply["token"])
    return OK


def services(client: Client, args: argparse.Namespace) -> int:
    emit(client.call("GET", f"{WS}/{args.workspace}/services"), args.output, SERVICE_COLUMNS)
    return OK


def sidecars(client: Client, args: argparse.Namespace) -> int:
    emit(client.call("GET", f"{WS}/{args.workspace}/sidecars"), args.output, SIDECAR_COLUMNS)
    return OK


def sidecar(client: Client, args: argparse.Namespace) -> int:
    path = f"{WS}/{args.workspace}/sidecars/{args.id}/actions"
    emit(client.call("POST", path, {"action": args.action}), args.output, None)
    return OK


def rules(client: Client, args: argparse.Namespace) -> int:
    base = f"{WS}/{args.workspace}/rules"
    action, versions = args.action, args.versions
    wanted = {"get": (0, 1), "apply": (0, 0), "history": (0, 0), "diff": (2, 2), "rollback": (1, 1)}
    low, high = wanted[action]
    if not low <= len(versions) <= high:
        raise _bad(f"rules {action} takes {low}..{high} versions, got {len(versions)}")
    if action == "get":
        _get_rules(client, base, versions, args.output)
    elif action == "apply":
        body = {
            "document": _read_document(args.file),
            "message": args.message,
            "shadow": args.shadow,
        }
        emit(client.call("POST", base, body), args.output, HISTORY_COLUMNS)
    elif action == "history":
        emit(client.call("GET", f"{base}/history"), args.output, HISTORY_COLUMNS)
    elif action == "diff":
        reply = client.call("GET", f"{base}/diff?from={versions[0]}&to={versions[1]}")
        if args.output == "json":
            emit(reply, "json")
        else:
            sys.stdout.write(reply["diff"])
    else:
        body = {"version": versions[0], "message": args.message}
        emit(client.call("POST", f"{base}/rollback", body), args.output, HISTORY_COLUMNS)
    return OK


def _get_rules(client: Client, base: str, versions: list[str], fmt: str) -> None:
    entry = client.call("GET", f"{base}/versions/{versions[0]}" if versions else base)
    if fmt == "json":
        emit(entry, "json")
        return
    sys.stdout.write(f"# {entry['version']} by {entry['author']}: {entry['message']}\n")
    sys.stdout.write(yaml.safe_dump(entry["document"], sort_keys=False))


def _read_document(path: str | None) -> Any:
    if not path:
        raise _bad("rules apply -f FILE: name the rules document")
    try:
        text = sys.stdin.read() if path == "-" else open(path).read()  # noqa: SIM115
    except OSError as e:
        raise _bad(f"{path}: cannot read: {e.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _bad(f"{path}: not valid YAML or JSON: {e}") from None


def top(client: Client, args: argparse.Namespace) -> int:
    return run_top(client, args.workspace, args.interval, args.count, args.output)


COMMANDS = {
    "login": login,
    "workspaces": workspaces,
    "users": users,
    "tokens": tokens,
    "services": services,
    "sidecars": sidecars,
    "sidecar": sidecar,
    "rules": rules,
    "top": top,
}
