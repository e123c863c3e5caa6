"""What an injection puts in a pod: defaults, overridden per workload by `sofamesh.io/` annotations.

`InjectSettings` is the injector's own configuration (command-line flags of
`sofamesh inject` and `sofamesh injector`); `for_pod` reads the pod template's
annotations over it. Every annotation is in `ANNOTATIONS`, with its meaning, and
docs/deployment.md lists the same table. A bad annotation value is an
`InjectError` naming the annotation: an injection never guesses.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from sofamesh._version import __version__

PREFIX = "sofamesh.io/"
INJECT = PREFIX + "inject"
STATUS = PREFIX + "status"  # set by the injection: what it added, and by which version

# Ports of the sidecar in an injected pod (Istio's numbers, so operators recognise them).
ADMIN_PORT = 15000
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
DNS_PORT = 15053
PROXY_UID = 1337  # the uid (and gid) the sidecar runs as; the init rules exclude its traffic

ANNOTATIONS: dict[str, str] = {
    "inject": '"false" leaves the pod alone (the default is to inject)',
    "status": "set by the injection (JSON: version and what was added); present means injected",
    "image": "the sidecar's and the init container's image",
    "config-map": "the ConfigMap holding `mesh.yaml`, mounted at /etc/sofamesh",
    "app": "the app name (SOFAMESH_APP); default: label `app.kubernetes.io/name`, `app`, or the "
    "workload's name",
    "registry": "the registry URL (SOFAMESH_REGISTRY), over the ConfigMap's",
    "control-token-secret": "a Secret whose key `token` becomes SOFAMESH_CONTROL_TOKEN",
    "identity-secret": "a Secret with cert.pem, key.pem, bundle.pem (`sofamesh ca issue`), "
    "mounted at /var/run/sofamesh/identity",
    "interception": '"iptables" (default): the init container redirects traffic; "none": no '
    "init container (the app calls the outbound listener itself)",
    "inbound-ports": 'ports whose incoming traffic goes to the sidecar ("*" all, the default: '
    "the containers' declared ports)",
    "exclude-inbound-ports": "incoming ports left alone",
    "exclude-outbound-ports": "outgoing destination ports left alone",
    "exclude-outbound-cidrs": "outgoing destination networks left alone",
    "dns": "\"true\": the app's DNS queries go to the sidecar's DNS proxy",
    "proxy-cpu": "the sidecar's CPU request (default 100m)",
    "proxy-memory": "the sidecar's memory request (default 128Mi)",
    "proxy-cpu-limit": "its CPU limit (default none)",
    "proxy-memory-limit": "its memory limit (default 512Mi)",
}


class InjectError(ValueError):
    """A workload the injection refuses (a bad annotation, a malformed object)."""


_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|E|Ei|P|Pi)?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


@attrs.frozen(kw_only=True)
class InjectSettings:
    """One pod's injection: the injector's defaults with the pod's annotations over them."""

    image: str = f"sofamesh/sofamesh:{__version__}"
    config_map: str = "sofamesh-mesh"
    app: str = ""
    registry: str = ""
    control_token_secret: str = ""
    identity_secret: str = ""
    interception: str = "iptables"
    inbound_ports: str = ""  # "" = the containers' declared ports
    exclude_inbound_ports: str = ""
    exclude_outbound_ports: str = ""
    exclude_outbound_cidrs: str = ""
    dns: bool = False
    proxy_cpu: str = "100m"
    proxy_memory: str = "128Mi"
    proxy_cpu_limit: str = ""
    proxy_memory_limit: str = "512Mi"

    def for_pod(self, annotations: Mapping[str, str]) -> InjectSettings:
        """These settings with the pod's `sofamesh.io/` annotations applied, each checked."""
        changes: dict[str, Any] = {}
        for name, check in _CHECKS.items():
            value = annotations.get(PREFIX + name)
            if value is not None:
                changes[name.replace("-", "_")] = check(PREFIX + name, str(value))
        return attrs.evolve(self, **changes)


def opted_out(annotations: Mapping[str, str]) -> bool:
    value = str(annotations.get(INJECT, "true")).strip().lower()
    if value not in ("true", "false", "enabled", "disabled"):
        raise InjectError(f'{INJECT}: expected "true" or "false", got {value!r}')
    return value in ("false", "disabled")


def _text(key: str, value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise InjectError(f"{key}: expected a non-empty value without spaces, got {value!r}")
    return value


def _name(key: str, value: str) -> str:
    if not _NAME.match(value):
        raise InjectError(f"{key}: not a Kubernetes object name: {value!r}")
    return value


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def check(key: str, value: str) -> str:
        if value not in allowed:
            raise InjectError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
        return value

    return check


def _ports(key: str, value: str) -> str:
    items = [p.strip() for p in value.split(",") if p.strip()]
    if items == ["*"]:
        return "*"
    for p in items:
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise InjectError(f"{key}: expected ports 1-65535, comma-separated, got {p!r}")
    return ",".join(items)


def _cidrs(key: str, value: str) -> str:
    items = [c.strip() for c in value.split(",") if c.strip()]
    for c in items:
        try:
            ipaddress.ip_network(c, strict=False)
        except ValueError:
            raise InjectError(f"{key}: not a CIDR: {c!r}") from None
    return ",".join(items)


def _flag(key: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise InjectError(f'{key}: expected "true" or "false", got {value!r}')
    return value.lower() == "true"


def _quantity(key: str, value: str) -> str:
    if not _QUANTITY.match(value):
        raise InjectError(f"{key}: not a Kubernetes quantity: {value!r}")
    return value


_CHECKS: dict[str, Callable[[str, str], Any]] = {
    "image": _text,
    "config-map": _name,
    "app": _name,
    "registry": _text,
    "control-token-secret": _name,
    "identity-secret": _name,
    "interception": _choice("iptables", "none"),
    "inbound-ports": _ports,
    "exclude-inbound-ports": _ports,
    "exclude-outbound-ports": _ports,
    "exclude-outbound-cidrs": _cidrs,
    "dns": _flag,
    "proxy-cpu": _quantity,
    "proxy-memory": _quantity,
    "proxy-cpu-limit": _quantity,
    "proxy-memory-limit": _quantity,
}
