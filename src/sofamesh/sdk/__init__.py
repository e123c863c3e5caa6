"""The in-process front door: `open_mesh`, the httpx transport, ASGI providers."""

from sofamesh.sdk.mesh import Mesh, Provider, open_mesh

__all__ = ["Mesh", "Provider", "open_mesh"]
