"""sofamesh: a pure-Python service-mesh data plane, as an SDK and as a sidecar."""

__version__ = "0.1.0"

from sofamesh.model import Headers, Invocation, Result, Status  # noqa: E402
from sofamesh.sdk import Mesh, Provider, open_mesh  # noqa: E402

__all__ = ["Headers", "Invocation", "Mesh", "Provider", "Result", "Status", "__version__", "open_mesh"]
