"""What an injected pod gains: the sidecar, the init container, volumes and environment.

The sidecar is a Kubernetes *native sidecar* (an init container with
`restartPolicy: Always`, KEP-753, on by default since Kubernetes 1.29): the
kubelet starts it right after `sofamesh-init`, waits for its `startupProbe`
(the sidecar's `/ready`) before starting the next init container or any app
container, keeps it running beside them, and stops it after them, so a Job's pod
still completes. docs/deployment.md argues the choice against a postStart hook.

The admin API stays on loopback (it can drain the sidecar), where the kubelet's
HTTP probes cannot reach, so the probes run `PROBE_SCRIPT` inside the container:
a few lines of the standard library's `socket` under `python -I -S`, about 0.03 s
of CPU a run, where importing sofamesh to probe would cost 0.6 s (every 10 s, in
every pod).
"""

from __future__ import annotations

from typing import Any

from sofamesh.deploy.initcmd import init_argv
from sofamesh.deploy.settings import (
    ADMIN_PORT,
    DNS_PORT,
    INBOUND_PORT,
    OUTBOUND_PORT,
    PROXY_UID,
    InjectSettings,
)

SIDECAR = "sofamesh-proxy"
INIT = "sofamesh-init"
CONFIG_VOLUME = "sofamesh-config"
TMP_VOLUME = "sofamesh-tmp"
IDENTITY_VOLUME = "sofamesh-identity"
CONFIG_DIR = "/etc/sofamesh"
CONFIG_FILE = CONFIG_DIR + "/mesh.yaml"
IDENTITY_DIR = "/var/run/sofamesh/identity"
TMP_DIR = "/var/tmp"  # the token file, the last good rules, a file:// registry: all scratch

Obj = dict[str, Any]

# Exit 0 when GET /ready on 127.0.0.1:PORT (argv[1]) answers 200; the reason otherwise.
PROBE_SCRIPT = """\
import socket,sys
try:
 s=socket.create_connection(('127.0.0.1',int(sys.argv[1])),2)
 s.sendall(b'GET /ready HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n')
 ok=s.recv(64)[9:12]==b'200'
except OSError as e:sys.exit(f'sofamesh sidecar not ready: {e}')
sys.exit(0 if ok else 'sofamesh sidecar not ready')
"""


def sidecar_container(s: InjectSettings, app: str, injected_at: str) -> Obj:
    container: Obj = {
        "name": SIDECAR,
        "image": s.image,
        "command": ["python", "-m", "sofamesh.sidecar"],
        "args": ["--config", CONFIG_FILE],
        "restartPolicy": "Always",
        "ports": [
            {"name": "sofamesh-admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
            {"name": "sofamesh-out", "containerPort": OUTBOUND_PORT, "protocol": "TCP"},
            {"name": "sofamesh-in", "containerPort": INBOUND_PORT, "protocol": "TCP"},
        ],
        "env": _env(s, app, injected_at),
        "resources": _resources(s),
        "securityContext": {
            "runAsUser": PROXY_UID,
            "runAsGroup": PROXY_UID,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # Ready within 10 minutes of starting (Istio's figure), checked every second.
        "startupProbe": _probe(period=1, failures=600),
        "readinessProbe": _probe(period=10, failures=3),
        "volumeMounts": _mounts(s),
    }
    return container


def _probe(*, period: int, failures: int) -> Obj:
    command = ["python", "-I", "-S", "-c", PROBE_SCRIPT, str(ADMIN_PORT)]
    return {
        "exec": {"command": command},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 3,
    }


def init_container(s: InjectSettings, app_ports: list[int]) -> Obj:
    inbound = s.inbound_ports or ",".join(str(p) for p in app_ports)
    argv = init_argv(
        {
            "outbound_port": OUTBOUND_PORT,
            "inbound_port": INBOUND_PORT,
            "proxy_uid": PROXY_UID,
            "proxy_gid": PROXY_UID,
            "inbound_ports": inbound,
            "exclude_inbound_ports": s.exclude_inbound_ports,
            "exclude_outbound_ports": s.exclude_outbound_ports,
            "exclude_outbound_cidrs": s.exclude_outbound_cidrs,
            "dns": s.dns,
            "dns_port": DNS_PORT if s.dns else None,
        }
    )
    return {
        "name": INIT,
        "image": s.image,
        "command": argv[:1],
        "args": argv[1:],
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        # iptables needs root and these two capabilities, nothing else (Istio's istio-init too).
        "securityContext": {
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
    }


def volumes(s: InjectSettings) -> list[Obj]:
    found: list[Obj] = [
        {"name": CONFIG_VOLUME, "configMap": {"name": s.config_map}},
        {"name": TMP_VOLUME, "emptyDir": {}},
    ]
    if s.identity_secret:
        found.append({"name": IDENTITY_VOLUME, "secret": {"secretName": s.identity_secret}})
    return found


def _mounts(s: InjectSettings) -> list[Obj]:
    mounts: list[Obj] = [
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": TMP_VOLUME, "mountPath": TMP_DIR},
    ]
    if s.identity_secret:
        mounts.append({"name": IDENTITY_VOLUME, "mountPath": IDENTITY_DIR, "readOnly": True})
    return mounts


def _field(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def _env(s: InjectSettings, app: str, injected_at: str) -> list[Obj]:
    # The names the control agent reads (`control/agent.py`): the pod's identity as the
    # Downward API gives it, and when it was injected.
    env: list[Obj] = [
        _field("POD_NAME", "metadata.name"),
        _field("POD_NAMESPACE", "metadata.namespace"),
        _field("NODE_NAME", "spec.nodeName"),
        _field("POD_IP", "status.podIP"),
        _field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
        {"name": "SOFAMESH_INJECTED_AT", "value": injected_at},
        {"name": "SOFAMESH_APP", "value": app},
        {"name": "SOFAMESH_CONFIG", "value": CONFIG_FILE},
        {"name": "TMPDIR", "value": TMP_DIR},
    ]
    if s.registry:
        env.append({"name": "SOFAMESH_REGISTRY", "value": s.registry})
    if s.control_token_secret:
        ref = {"secretKeyRef": {"name": s.control_token_secret, "key": "token"}}
        env.append({"name": "SOFAMESH_CONTROL_TOKEN", "valueFrom": ref})
    return env


def _resources(s: InjectSettings) -> Obj:
    limits = {"cpu": s.proxy_cpu_limit, "memory": s.proxy_memory_limit}
    resources: Obj = {"requests": {"cpu": s.proxy_cpu, "memory": s.proxy_memory}}
    if any(limits.values()):
        resources["limits"] = {k: v for k, v in limits.items() if v}
    return resources
