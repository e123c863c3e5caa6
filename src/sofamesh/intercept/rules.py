"""The iptables rules of transparent interception, as argument lists (no process is run here).

Modelled on Istio's istio-iptables: every rule lives in chains of our own in the `nat`
table, reached by one jump from a built-in chain, so removal is exact (delete the jumps,
flush and delete our chains) and never touches anyone else's rules.

    OUTPUT (tcp)  -> SOFAMESH_OUTPUT: the sidecar's uid/gid, loopback, excluded ports and
                     CIDRs RETURN; everything else -> SOFAMESH_REDIRECT (-> outbound port)
    OUTPUT (udp 53, with --dns) -> SOFAMESH_DNS: the sidecar's uid/gid RETURN (its own
                     upstream queries); everything else -> REDIRECT to the DNS proxy port
    PREROUTING (tcp) -> SOFAMESH_INBOUND: excluded ports RETURN; the app's ports (or all)
                     -> SOFAMESH_IN_REDIRECT (-> inbound port)

The owner match is what keeps the sidecar's own upstream connections from looping back
into it; a plan without a uid or gid to exclude is refused.
"""

from __future__ import annotations

import ipaddress

import attrs

TABLE = "nat"
OUTPUT = "SOFAMESH_OUTPUT"
REDIRECT = "SOFAMESH_REDIRECT"
INBOUND = "SOFAMESH_INBOUND"
IN_REDIRECT = "SOFAMESH_IN_REDIRECT"
DNS = "SOFAMESH_DNS"
CHAINS = (OUTPUT, REDIRECT, INBOUND, IN_REDIRECT, DNS)
# (built-in chain, the match of its jump, our chain): the jumps `remove` deletes.
JUMPS = (
    ("OUTPUT", ("-p", "tcp"), OUTPUT),
    ("OUTPUT", ("-p", "udp", "--dport", "53"), DNS),
    ("PREROUTING", ("-p", "tcp"), INBOUND),
)
ALL_PORTS = "*"


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"port must be within 1..65535, got {value}")
    return value


def parse_ports(text: str) -> tuple[int, ...]:
    """`"8080,9090"` -> (8080, 9090); "" -> ()."""
    ports = []
    for part in text.split(","):
        part = part.strip()
        if part:
            if not part.isdigit():
                raise ValueError(f"not a port: {part!r}")
            ports.append(_port(int(part)))
    return tuple(ports)


def parse_cidrs(text: str) -> tuple[str, ...]:
    """`"10.0.0.0/8, 192.168.1.1"` -> normalised IPv4 networks."""
    nets = []
    for part in text.split(","):
        part = part.strip()
        if part:
            nets.append(str(ipaddress.IPv4Network(part, strict=False)))
    return tuple(nets)


@attrs.frozen
class InterceptPlan:
    """What to intercept and what to leave alone (the `sofamesh-init` options)."""

    outbound_port: int = 15001
    inbound_port: int = 15006
    proxy_uids: tuple[int, ...] = (1337,)
    proxy_gids: tuple[int, ...] = ()
    inbound_ports: tuple[int, ...] | str = ()  # or ALL_PORTS
    exclude_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_cidrs: tuple[str, ...] = ()
    exclude_inbound_ports: tuple[int, ...] = ()
    dns: bool = False
    dns_port: int = 15053

    def __attrs_post_init__(self) -> None:
        if not self.proxy_uids and not self.proxy_gids:
            raise ValueError("no proxy uid or gid to exclude: the sidecar's traffic would loop")
        for port in (self.outbound_port, self.inbound_port, self.dns_port):
            _port(port)


def install_rules(plan: InterceptPlan) -> list[list[str]]:
    """The iptables argument lists that install `plan`, in order (run after `remove_rules`)."""
    rules = [["-t", TABLE, "-N", chain] for chain in CHAINS]
    rules.append(_append(REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", plan.outbound_port))
    rules.append(
        _append(IN_REDIRECT, "-p", "tcp", "-j", "REDIRECT", "--to-ports", plan.inbound_port)
    )
    rules += _outbound(plan)
    rules += _inbound(plan)
    if plan.dns:
        rules += _dns(plan)
    for builtin, match, chain in JUMPS:
        if chain != DNS or plan.dns:
            rules.append(["-t", TABLE, "-A", builtin, *match, "-j", chain])
    return rules


def _append(chain: str, *args: object) -> list[str]:
    return ["-t", TABLE, "-A", chain, *(str(a) for a in args)]


def _owners(chain: str, plan: InterceptPlan) -> list[list[str]]:
    uids = [
        _append(chain, "-m", "owner", "--uid-owner", u, "-j", "RETURN") for u in plan.proxy_uids
    ]
    gids = [
        _append(chain, "-m", "owner", "--gid-owner", g, "-j", "RETURN") for g in plan.proxy_gids
    ]
    return uids + gids


def _outbound(plan: InterceptPlan) -> list[list[str]]:
    rules = _owners(OUTPUT, plan)
    # The app's hops to its sidecar (and to itself) on loopback are never redirected.
    rules.append(_append(OUTPUT, "-o", "lo", "-j", "RETURN"))
    rules += [
        _append(OUTPUT, "-p", "tcp", "--dport", p, "-j", "RETURN")
        for p in plan.exclude_outbound_ports
    ]
    rules += [_append(OUTPUT, "-d", cidr, "-j", "RETURN") for cidr in plan.exclude_outbound_cidrs]
    rules.append(_append(OUTPUT, "-p", "tcp", "-j", REDIRECT))
    return rules


def _inbound(plan: InterceptPlan) -> list[list[str]]:
    # The sidecar's own inbound port is never redirected to itself.
    excluded = (plan.inbound_port, *plan.exclude_inbound_ports)
    rules = [_append(INBOUND, "-p", "tcp", "--dport", p, "-j", "RETURN") for p in excluded]
    if plan.inbound_ports == ALL_PORTS:
        rules.append(_append(INBOUND, "-p", "tcp", "-j", IN_REDIRECT))
    else:
        rules += [
            _append(INBOUND, "-p", "tcp", "--dport", p, "-j", IN_REDIRECT)
            for p in plan.inbound_ports
        ]
    return rules


def _dns(plan: InterceptPlan) -> list[list[str]]:
    rules = _owners(DNS, plan)
    rules.append(_append(DNS, "-p", "udp", "-j", "REDIRECT", "--to-ports", plan.dns_port))
    return rules


def remove_rules() -> list[list[str]]:
    """The argument lists that remove everything `install_rules` adds; each may fail harmlessly
    (nothing installed), so the runner ignores their errors."""
    rules = [["-t", TABLE, "-D", builtin, *match, "-j", chain] for builtin, match, chain in JUMPS]
    rules += [["-t", TABLE, "-F", chain] for chain in CHAINS]
    rules += [["-t", TABLE, "-X", chain] for chain in CHAINS]
    return rules
