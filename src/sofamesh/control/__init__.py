"""The control plane: workspaces, users and tokens, versioned rules pushed to data planes,
the service catalog and the sidecar inventory, behind one JSON HTTP API.

`python -m sofamesh.control -c control.yaml` runs it (`sofamesh.control.__main__`);
`sofamesh ctl` (`sofamesh.cli`) is its command line; `sofamesh.control.agent` is the
data plane's side of the session. docs/control-plane.md describes the whole.
"""
