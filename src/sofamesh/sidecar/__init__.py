"""The standalone front door: `python -m sofamesh.sidecar -c mesh.yaml`."""

from sofamesh.sidecar.app import Sidecar

__all__ = ["Sidecar"]
