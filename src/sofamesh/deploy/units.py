"""The systemd units of a VM install: the sidecar, and the interception rules before it.

`sofamesh-init.service` is a oneshot that installs the rules (`ExecStart`) and
removes them when stopped (`ExecStop`); it is `PartOf` the sidecar, so stopping
the sidecar removes them, while a crash and restart of the sidecar keeps them
(the app's traffic fails closed meanwhile instead of leaving the mesh).

The sidecar runs as its own system user, whose uid the rules exclude; the
hardening leaves it what it needs (sockets, reading its config and identity,
writing its runtime and state directories) and takes everything else.
`MemoryDenyWriteExecute` is left out: cffi (used by `cryptography`) maps
writable executable memory for its callbacks on some platforms.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

import attrs

SIDECAR_UNIT = "sofamesh-sidecar.service"
INIT_UNIT = "sofamesh-init.service"
USER = "sofamesh"
# Secrets for the sidecar's environment (SOFAMESH_CONTROL_TOKEN): systemd reads this file as
# root before dropping to the sidecar's user, so it can be 0600 root's; the admin writes it.
ENV_FILE = "/etc/sofamesh/sidecar.env"

_HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
"""


@attrs.frozen(kw_only=True)
class UnitSettings:
    python: str  # the interpreter that has sofamesh installed
    config: str  # the mesh config, under /etc/sofamesh
    user: str = USER
    init_argv: tuple[str, ...] = ()  # the rules' command; () when not intercepting
    drain_timeout: float = 10.0


def _line(argv: Sequence[str]) -> str:
    """A command line as systemd reads it: shell-quoted, and `%` (its specifiers) and `$`
    (its variables) doubled so they stay literal."""
    return shlex.join(argv).replace("%", "%%").replace("$", "$$")


def sidecar_unit(s: UnitSettings) -> str:
    after = f"network-online.target {INIT_UNIT}" if s.init_argv else "network-online.target"
    # Without its rules the sidecar does not start: a failed interception is seen, not skipped.
    requires = f"Requires={INIT_UNIT}\n" if s.init_argv else ""
    start = _line([s.python, "-m", "sofamesh.sidecar", "--config", s.config])
    return f"""\
[Unit]
Description=sofamesh sidecar
Wants=network-online.target
{requires}After={after}

[Service]
Type=exec
User={s.user}
Group={s.user}
ExecStart={start}
Environment=SOFAMESH_CONFIG={s.config} TMPDIR=/run/sofamesh SOFAMESH_STATE_DIR=/var/lib/sofamesh
EnvironmentFile=-{ENV_FILE}
Restart=on-failure
RestartSec=1
TimeoutStopSec={int(s.drain_timeout) + 5}
RuntimeDirectory=sofamesh
RuntimeDirectoryMode=0700
StateDirectory=sofamesh
StateDirectoryMode=0700
UMask=0077
LimitNOFILE=65536
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
SystemCallFilter=@system-service
{_HARDENING}
[Install]
WantedBy=multi-user.target
"""


def init_unit(s: UnitSettings) -> str:
    start = _line(s.init_argv)
    stop = _line([*s.init_argv, "--remove"])
    return f"""\
[Unit]
Description=sofamesh traffic interception (iptables rules for {SIDECAR_UNIT})
Before={SIDECAR_UNIT}
After=network-pre.target
PartOf={SIDECAR_UNIT}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={start}
ExecStop={stop}
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6
ReadWritePaths=/run
{_HARDENING}
[Install]
WantedBy={SIDECAR_UNIT}
"""


def sysusers(user: str, uid: int) -> str:
    """systemd-sysusers' line for the sidecar's user (and its group, same id)."""
    return f'u {user} {uid} "sofamesh sidecar" /var/lib/sofamesh /usr/sbin/nologin\n'
