"""`sofamesh inject`: multi-document YAML in, the same documents out, pod templates injected.

Documents keep their order; kinds without a pod template, opted-out and
already injected ones come out as they went in (re-serialised: the same objects,
comments dropped). A `List` (what `kubectl get -o yaml` prints) has its items
injected. Empty documents are dropped.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import yaml

from sofamesh.deploy.inject import inject
from sofamesh.deploy.settings import InjectError, InjectSettings


def inject_documents(
    documents: Iterable[Any], settings: InjectSettings, now: datetime.datetime
) -> list[Any]:
    out = []
    for doc in documents:
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == "List":
            doc = {**doc, "items": [inject(i, settings, now) for i in doc.get("items") or []]}
        out.append(inject(doc, settings, now))
    return out


def inject_yaml(text: str, settings: InjectSettings, now: datetime.datetime) -> str:
    """The YAML stream `text` with every pod template injected."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise InjectError(f"not YAML: {exc}") from None
    injected = inject_documents(documents, settings, now)
    return yaml.dump_all(injected, Dumper=_Dumper, sort_keys=False, explicit_start=True)


class _Dumper(yaml.SafeDumper):
    """Writes every object in full: a reader of the manifests should not chase anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "inject",
        help="add the sidecar to the pods of Kubernetes manifests (as istioctl kube-inject)",
    )
    p.add_argument("-f", "--filename", required=True, help="the manifests (YAML), - for stdin")
    p.add_argument("-o", "--output", default="-", help="where to write them (default stdout)")
    add_settings_flags(p)
    p.set_defaults(run=run)


def add_settings_flags(p: argparse.ArgumentParser) -> None:
    """The injection's defaults, which each pod's `sofamesh.io/` annotations override."""
    default = InjectSettings()
    p.add_argument("--image", default=default.image, help="the sidecar's image")
    p.add_argument(
        "--config-map", default=default.config_map, help="the ConfigMap holding mesh.yaml"
    )
    p.add_argument("--registry", default="", help="the registry URL for every sidecar")


def settings_from(args: argparse.Namespace) -> InjectSettings:
    return InjectSettings(image=args.image, config_map=args.config_map, registry=args.registry)


def run(args: argparse.Namespace) -> int:
    try:
        text = _read(args.filename)
        result = inject_yaml(text, settings_from(args), datetime.datetime.now(datetime.UTC))
        _write(args.output, result)
    except (OSError, InjectError) as exc:
        print(f"sofamesh inject: {exc}", file=sys.stderr)
        return 1
    return 0


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    with open(name, encoding="utf-8") as f:
        return f.read()


def _write(name: str, text: str) -> None:
    if name == "-":
        _out(sys.stdout, text)
        return
    with open(name, "w", encoding="utf-8") as f:
        _out(f, text)


def _out(f: TextIO, text: str) -> None:
    f.write(text)
    f.flush()
