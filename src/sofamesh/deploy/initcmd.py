"""The `sofamesh-init` command line, written in one place for the pod's init container and the
VM's oneshot unit.

`INIT_FLAGS` maps each option to its flag; `init_argv` renders a set of options
(`None`, `""` and `False` leave a flag out, `True` is a bare flag).
"""

from __future__ import annotations

from collections.abc import Mapping

INIT_COMMAND = ("sofamesh-init",)

INIT_FLAGS: dict[str, str] = {
    "outbound_port": "--outbound-port",  # the sidecar's transparent outbound listener
    "inbound_port": "--inbound-port",  # its transparent inbound listener
    "proxy_uid": "--proxy-uid",  # the sidecar's own traffic is not redirected (owner match)
    "proxy_gid": "--proxy-gid",
    "inbound_ports": "--inbound-ports",  # "*" or a comma-separated list
    "exclude_inbound_ports": "--exclude-inbound-ports",
    "exclude_outbound_ports": "--exclude-outbound-ports",
    "exclude_outbound_cidrs": "--exclude-outbound-cidrs",
    "dns": "--dns",  # the app's DNS queries (udp/53) go to the sidecar's DNS proxy...
    "dns_port": "--dns-port",  # ...on this port
    "remove": "--remove",  # delete the rules this command installs
}

InitOptions = Mapping[str, str | int | bool | None]


def init_argv(options: InitOptions, command: tuple[str, ...] = INIT_COMMAND) -> list[str]:
    """`command` and its flags for `options` (keys of `INIT_FLAGS`, in its order)."""
    unknown = set(options) - set(INIT_FLAGS)
    if unknown:
        raise ValueError(f"unknown sofamesh-init options: {sorted(unknown)}")
    argv = list(command)
    for key, flag in INIT_FLAGS.items():
        value = options.get(key)
        if value is None or value is False or value == "":
            continue
        argv.append(flag)
        if value is not True:
            argv.append(str(value))
    return argv
