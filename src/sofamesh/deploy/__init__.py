"""Putting a sidecar next to an app: Kubernetes injection (a command and an admission webhook)
and a systemd install for virtual machines.

- `settings.py`: the injection's defaults and the `sofamesh.io/...` annotations that change them.
- `template.py`: the containers, volumes and environment an injected pod gains.
- `inject.py`: finding every pod template in a workload and injecting it, once.
- `manifests.py`: multi-document YAML in and out (`sofamesh inject`).
- `patch.py`, `review.py`, `webhook.py`: the mutating admission webhook (`sofamesh injector`).
- `vm.py`, `units.py`: `sofamesh vm install` / `uninstall`.
"""
