"""The SDK's and the registry's public API say what they return, and modules keep to
each other's public names."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import sofamesh.sdk.mesh
from sofamesh.registry import OpenedRegistry, open_registry
from sofamesh.sdk.bolt import BoltConsumer
from sofamesh.sdk.dubbo import DubboConsumer
from sofamesh.sdk.grpc import MeshChannel
from sofamesh.sdk.httpx import MeshTransport
from sofamesh.sdk.mesh import Mesh, Provider

SRC = Path(sofamesh.sdk.mesh.__file__).resolve().parents[1]
# The packages that must not reach into another module's private names.
CHECKED = ["sdk", "registry", "sidecar", "demo", "stats.py"]


def test_public_methods_return_real_types() -> None:
    names = {
        "MeshChannel": MeshChannel,
        "BoltConsumer": BoltConsumer,
        "DubboConsumer": DubboConsumer,
        "MeshTransport": MeshTransport,
    }
    wanted = {
        "grpc_channel": MeshChannel,
        "bolt_consumer": BoltConsumer,
        "dubbo_consumer": DubboConsumer,
        "httpx_transport": MeshTransport,
        "request": sofamesh.sdk.mesh.HttpResponse,
        "invoke": sofamesh.sdk.mesh.Result,
    }
    for name, expected in wanted.items():
        hints = typing.get_type_hints(getattr(Mesh, name), localns=names)
        assert hints["return"] is expected, name
    for name, member in inspect.getmembers(Mesh, inspect.isfunction):
        if not name.startswith("_"):
            assert typing.get_type_hints(member, localns=names)["return"] is not typing.Any, name
    serve = typing.get_type_hints(Mesh.provide.__wrapped__)["return"]  # type: ignore[attr-defined]
    assert typing.get_args(serve) == (Provider,)
    assert typing.get_type_hints(open_registry)["return"] is OpenedRegistry


def _sources() -> list[Path]:
    return [
        p for c in CHECKED for p in ([SRC / c] if c.endswith(".py") else (SRC / c).rglob("*.py"))
    ]


def test_no_module_imports_another_modules_private_names() -> None:
    found = [
        f"{p.relative_to(SRC)}: {line.strip()}"
        for p in _sources()
        for line in p.read_text().splitlines()
        if re.match(r"\s*from sofamesh\S* import .*\b_[a-z]", line)
    ]
    assert found == []


def test_no_module_reaches_into_another_objects_private_members() -> None:
    # `x._name` where x is not self/cls: allowed only on a class of the same module.
    found = []
    for p in _sources():
        text = "\n".join(
            line for line in p.read_text().splitlines() if not line.startswith(("from ", "import "))
        )
        local = set(re.findall(r"^class (\w+)", text, re.M))
        for m in re.finditer(r"\b(\w+)\.(_[a-z]\w*)\b", text):
            owner, attr = m.groups()
            if owner in ("self", "cls", "sys", "os") or _defined_here(attr, text, local):
                continue
            found.append(f"{p.relative_to(SRC)}: {m.group(0)}")
    assert found == []


def _defined_here(attr: str, text: str, local: set[str]) -> bool:
    """A private method or attribute of a class in the same module (its own business)."""
    return bool(local) and bool(re.search(rf"(def {attr}\b|self\.{attr}\b)", text))
