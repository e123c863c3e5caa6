"""Eureka's documents (sans-IO): instances, applications, their JSON and XML forms.

Eureka writes one document model two ways. JSON (Jackson, as Eureka configures
it) marks an XML attribute with `@` and an element's text with `$`:

    {"applications": {"versions__delta": "1", "apps__hashcode": "UP_2_",
      "application": [{"name": "ORDERS", "instance": [{"instanceId": "...",
        "port": {"$": 8080, "@enabled": "true"}, ...}]}]}}

XML (XStream) is the same tree: `<port enabled="true">8080</port>`. Without an
`Accept: application/json`, Eureka answers XML, and so do we.
`apps__hashcode` is Eureka's reconciliation hash: each status with its count,
`STATUS_count_`, in status order (`DOWN_1_UP_3_`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from sofamesh.codecs import jsondoc

DEFAULT_DATACENTER = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
EMPTY_METADATA = {"@class": "java.util.Collections$EmptyMap"}


def instance_doc(
    *,
    app: str,
    instance_id: str,
    host: str,
    port: int,
    status: str,
    metadata: dict[str, str],
    lease: tuple[int, int],
    times_ms: tuple[int, int],
) -> dict[str, Any]:
    """An instance as Eureka lists it; `lease` is (renewal interval, duration) in seconds,
    `times_ms` (registration, last renewal) in epoch milliseconds."""
    registered, renewed = times_ms
    url = f"http://{host}:{port}/"
    return {
        "instanceId": instance_id,
        "hostName": host,
        "app": app,
        "ipAddr": host,
        "status": status,
        "overriddenstatus": "UNKNOWN",
        "port": {"$": port, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": DEFAULT_DATACENTER, "name": "MyOwn"},
        "leaseInfo": {
            "renewalIntervalInSecs": lease[0],
            "durationInSecs": lease[1],
            "registrationTimestamp": registered,
            "lastRenewalTimestamp": renewed,
            "evictionTimestamp": 0,
            "serviceUpTimestamp": registered,
        },
        "metadata": dict(metadata) if metadata else dict(EMPTY_METADATA),
        "homePageUrl": url,
        "statusPageUrl": f"{url}info",
        "healthCheckUrl": f"{url}health",
        "vipAddress": app.lower(),
        "secureVipAddress": app.lower(),
        "isCoordinatingDiscoveryServer": "false",
        "lastUpdatedTimestamp": str(renewed),
        "lastDirtyTimestamp": str(registered),
        "actionType": "ADDED",
    }


def hashcode(instances: Iterable[dict[str, Any]]) -> str:
    counts = Counter(str(i.get("status", "UNKNOWN")) for i in instances)
    return "".join(f"{status}_{counts[status]}_" for status in sorted(counts))


def applications_doc(
    apps: dict[str, list[dict[str, Any]]], delta: int, apps_hash: str
) -> dict[str, Any]:
    return {
        "applications": {
            "versions__delta": str(delta),
            "apps__hashcode": apps_hash,
            "application": [application_doc(n, i)["application"] for n, i in sorted(apps.items())],
        }
    }


def application_doc(name: str, instances: list[dict[str, Any]]) -> dict[str, Any]:
    return {"application": {"name": name, "instance": instances}}


def render(doc: dict[str, Any], accept: str) -> tuple[bytes, bytes]:
    """(content type, body): JSON when the client accepts it, else XML as Eureka does."""
    if "json" in accept:
        return b"application/json", json.dumps(doc).encode()
    (root, value), *_ = doc.items()
    return b"application/xml", _xml(root, value).encode()


def _xml(tag: str, value: Any) -> str:
    if isinstance(value, list):
        return "".join(_xml(tag, v) for v in value)
    if not isinstance(value, dict):
        return f"<{tag}>{escape(str(value))}</{tag}>"
    attrs = "".join(f" {k[1:]}={quoteattr(str(v))}" for k, v in value.items() if k[0] == "@")
    if "$" in value:
        return f"<{tag}{attrs}>{escape(str(value['$']))}</{tag}>"
    inner = "".join(_xml(k, v) for k, v in value.items() if k[0] != "@")
    return f"<{tag}{attrs}>{inner}</{tag}>"


def registration(
    body: bytes, content_type: str, max_depth: int = jsondoc.MAX_DEPTH
) -> dict[str, Any]:
    """The `instance` of a register request, JSON or XML, nested at most `max_depth` deep;
    ValueError if it is neither, or deeper."""
    if "xml" in content_type or body.lstrip()[:1] == b"<":
        return _from_xml(body, max_depth)
    doc = jsondoc.loads(body, max_bytes=len(body), max_depth=max_depth)
    inst = doc.get("instance") if isinstance(doc, dict) else None
    if not isinstance(inst, dict):
        raise ValueError('expected {"instance": {...}}')
    return inst


def _from_xml(body: bytes, max_depth: int) -> dict[str, Any]:
    from xml.etree import ElementTree  # only for XML registrations

    if b"<!" in body:  # a DTD or entity declarations: no registration needs one
        raise ValueError("XML with a document type or entity declarations is refused")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:  # a SyntaxError, not a ValueError
        raise ValueError(f"not XML: {exc}") from None
    if root.tag != "instance":
        raise ValueError(f"expected <instance>, got <{root.tag}>")
    return {child.tag: _element(child, max_depth - 1) for child in root}


def _element(node: Any, depth: int) -> Any:
    if depth <= 0:
        raise jsondoc.JsonDocError("the XML document nests too deep")
    if len(node) == 0 and not node.attrib:
        return node.text or ""
    value: dict[str, Any] = {f"@{k}": v for k, v in node.attrib.items()}
    if len(node) == 0:
        value["$"] = node.text or ""
    for child in node:
        value[child.tag] = _element(child, depth - 1)
    return value
