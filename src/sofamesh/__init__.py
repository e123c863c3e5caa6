"""sofamesh: a pure-Python service-mesh data plane, as an SDK and as a sidecar."""

from sofamesh._version import __version__
from sofamesh.model import Headers, Invocation, Result, Status
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
