"""The standalone front door: `python -m sofamesh.sidecar -c mesh.yaml`."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sofamesh.sidecar.app import Sidecar


def __getattr__(name: str) -> Any:
    # On first use: `python -m sofamesh.sidecar` sets up its process (`footprint`)
    # before the mesh's modules load.
    if name == "Sidecar":
        from sofamesh.sidecar.app import Sidecar

        return Sidecar
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Sidecar"]
