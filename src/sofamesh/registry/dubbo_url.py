"""Dubbo registry URLs, sans-IO: an `Endpoint` to a provider URL and back.

Dubbo (2.7 and 3.x, interface-level registration) announces each provider as
one ZooKeeper node whose *name* is the whole provider URL, encoded by Java's
`URLEncoder.encode(url, "UTF-8")`::

    /dubbo/com.foo.BarService/providers/dubbo%3A%2F%2F10.0.0.5%3A20880%2Fcom.foo.BarService%3F...

    dubbo://10.0.0.5:20880/com.foo.BarService?anyhost=true&application=bar
        &interface=com.foo.BarService&methods=get,put&side=provider&timestamp=1700000000000
        &version=1.0.0&weight=100

Parameters are written in key order (Dubbo's `URL.toFullString` sorts them) and
their values are not encoded inside the URL (Dubbo does not decode them); we
percent-encode only `%`, `&`, `=` and `#` in values so our metadata survives.

The mapping (docs/registries.md has the same table):

| Endpoint  | Dubbo URL                         |
|-----------|-----------------------------------|
| service   | path, and the `interface` parameter (which wins when both are there) |
| protocol  | scheme (`dubbo`, `tri`, `http`, `bolt`, ...) |
| host:port | host:port (IPv6 in brackets)      |
| app       | `application`                     |
| version   | `version`                         |
| zone      | `zone`                            |
| weight    | `weight` (Dubbo's default is also 100) |
| tags      | `dubbo.tag` (Dubbo's tag routing), several joined by `,` |
| meta      | every other parameter, as is (`group`, `methods`, `timeout`, ...) |

A Dubbo service is named in the mesh by Dubbo's service key, `group/interface:version`
(what the Dubbo protocol slice routes on); Dubbo's layout keys nodes by interface alone,
with the version and group as parameters. So a `dubbo` endpoint whose service is such a
key is written under its interface with those parameters, and `provider_for` reads a
provider node back as an endpoint of the key it serves (a Dubbo app's own providers too).

Bookkeeping parameters (`side`, `interface`, `anyhost`, `timestamp`, `pid`,
`category`, `dynamic`, `dubbo`, `release`, ...) are written for Dubbo's sake and
not carried into `meta` when read.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, unquote_plus

import attrs

from sofamesh.endpoint import Endpoint

BOOKKEEPING = frozenset(
    {
        "side",
        "interface",
        "anyhost",
        "timestamp",
        "pid",
        "category",
        "dynamic",
        "dubbo",
        "release",
        "register",
        "deprecated",
        "generic",
        "check",
        "bind.ip",
        "bind.port",
    }
)
MAPPED = {"application": "app", "version": "version", "zone": "zone"}
TAG_KEY = "dubbo.tag"  # Dubbo's CommonConstants.TAG_KEY
RESERVED = BOOKKEEPING | set(MAPPED) | {"weight", TAG_KEY}
DUBBO_PROTOCOL_VERSION = "2.0.2"  # the `dubbo` parameter Dubbo 2.7 and 3 providers write

# Java's URLEncoder leaves these bytes alone and turns a space into '+'.
_JAVA_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_")


def java_url_encode(text: str) -> str:
    """`java.net.URLEncoder.encode(text, "UTF-8")`, which Dubbo's `URL.encode` calls."""
    out: list[str] = []
    for byte in text.encode("utf-8"):
        if byte in _JAVA_SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def java_url_decode(text: str) -> str:
    """`java.net.URLDecoder.decode(text, "UTF-8")`."""
    return unquote_plus(text, errors="strict")


def _value(text: str) -> str:
    return quote(text, safe="".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "%&=#"))


def format_url(scheme: str, host: str, port: int | None, path: str, params: dict[str, str]) -> str:
    """A Dubbo URL string, parameters sorted by key."""
    where = f"[{host}]" if ":" in host else host
    if port is not None:
        where += f":{port}"
    query = "&".join(f"{k}={_value(v)}" for k, v in sorted(params.items()))
    return f"{scheme}://{where}/{path}" + (f"?{query}" if query else "")


def parse_url(url: str) -> tuple[str, str, int | None, str, dict[str, str]]:
    """(scheme, host, port, path, params) of a Dubbo URL; ValueError if it is not one."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise ValueError(f"not a URL: {url[:100]!r}")
    rest, _, query = rest.partition("?")
    where, _, path = rest.partition("/")
    host, port = _split_host(where)
    params: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key:
            params[key] = unquote(value)
    return scheme, host, port, path, params


def _split_host(where: str) -> tuple[str, int | None]:
    if where.startswith("["):
        host, _, rest = where[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif where.count(":") == 1:
        host, _, port_text = where.partition(":")
    else:
        host, port_text = where, ""
    if not host:
        raise ValueError("no host")
    if port_text and not (port_text.isdigit() and int(port_text) < 65536):
        raise ValueError(f"bad port {port_text!r}")
    return host, int(port_text) if port_text else None


def split_service_key(key: str) -> tuple[str, str, str]:
    """(group, interface, version) of Dubbo's service key `group/interface:version`."""
    group, sep, rest = key.partition("/")
    if not sep:
        group, rest = "", key
    interface, _, version = rest.partition(":")
    return group, interface, version


def service_key(interface: str, version: str = "", group: str = "") -> str:
    """Dubbo's service key (as `protocols.dubbo.mapping.service_key`)."""
    key = f"{group}/{interface}" if group else interface
    return f"{key}:{version}" if version else key


def interface_of(service: str) -> str:
    """The interface a service's nodes live under: a service key's middle part."""
    return split_service_key(service)[1] or service


def provider_for(ep: Endpoint, service: str) -> Endpoint | None:
    """`ep`, read from the nodes of `service`'s interface, as an endpoint of `service`;
    None if it provides another version or group (or another service)."""
    if ep.service == service:
        return ep
    if ep.protocol != "dubbo":
        return None
    group = dict(ep.meta).get("group", "")
    if service_key(ep.service, ep.version, group) != service:
        return None
    return attrs.evolve(ep, service=service, meta=dict(ep.meta))


def endpoint_to_url(ep: Endpoint, *, timestamp_ms: int, pid: int) -> str:
    """The provider URL Dubbo tooling reads for `ep`."""
    params = {k: v for k, v in ep.meta if k not in RESERVED}
    path = ep.service
    keyed = ep.protocol == "dubbo" and interface_of(ep.service) != ep.service
    if keyed:  # a Dubbo service key: the interface, with its version and group
        group, path, version = split_service_key(ep.service)
        params.update({"group": group} if group else {})
    params.update(
        {
            "anyhost": "false",
            "dynamic": "true",
            "side": "provider",
            "interface": path,
            "dubbo": DUBBO_PROTOCOL_VERSION,
            "timestamp": str(timestamp_ms),
            "pid": str(pid),
            "weight": str(ep.weight),
        }
    )
    for dubbo_name, field in MAPPED.items():
        if value := getattr(ep, field):
            params[dubbo_name] = value
    if ep.tags:
        params[TAG_KEY] = ",".join(sorted(ep.tags))
    if keyed and version:
        params["version"] = version  # what Dubbo consumers match; ep.version is not kept
    return format_url(ep.protocol, ep.host, ep.port, path, params)


def url_to_endpoint(url: str) -> Endpoint:
    """The endpoint a provider URL describes; ValueError if it does not describe one."""
    scheme, host, port, path, params = parse_url(url)
    if port is None or port == 0:
        raise ValueError("a provider URL needs a port")
    service = params.get("interface") or path
    if not service:
        raise ValueError("a provider URL needs an interface")
    try:
        weight = min(max(int(params.get("weight", "100")), 0), 10_000)
    except ValueError:
        weight = 100
    tags = [t for t in params.get(TAG_KEY, "").split(",") if t]
    return Endpoint(
        service=service,
        host=host,
        port=port,
        protocol=scheme,
        weight=weight,
        tags=tags,
        meta={k: v for k, v in params.items() if k not in RESERVED},
        **{field: params.get(name, "") for name, field in MAPPED.items()},
    )


def consumer_url(service: str, host: str, *, app: str, timestamp_ms: int, pid: int) -> str:
    """What a Dubbo consumer registers under `consumers/` (shown by Dubbo Admin)."""
    group, interface, version = split_service_key(service)
    if not interface:
        group, interface, version = "", service, ""
    params = {
        "application": app,
        "category": "consumers",
        "check": "false",
        "interface": interface,
        "side": "consumer",
        "dubbo": DUBBO_PROTOCOL_VERSION,
        "timestamp": str(timestamp_ms),
        "pid": str(pid),
    }
    params.update({"group": group} if group else {})
    params.update({"version": version} if version else {})
    return format_url("consumer", host, None, interface, params)
