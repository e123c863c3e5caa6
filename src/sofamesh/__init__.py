"""sofamesh: a pure-Python service-mesh data plane, as an SDK and as a sidecar."""

from typing import TYPE_CHECKING, Any

from sofamesh._version import __version__
from sofamesh.model import Headers, Invocation, Result, Status

if TYPE_CHECKING:
    from sofamesh.sdk import Mesh, Provider, open_mesh

__all__ = [
    "Headers",
    "Invocation",
    "Mesh",
    "Provider",
    "Result",
    "Status",
    "__version__",
    "open_mesh",
]

_SDK = ("Mesh", "Provider", "open_mesh")


def __getattr__(name: str) -> Any:
    # The SDK loads on first use: a sidecar, which imports this package too, never needs it.
    if name in _SDK:
        from sofamesh import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
