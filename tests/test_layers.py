"""The layers of the house: every import under src/sofamesh runs down the layers, never up.

Each module belongs to the layer of the longest prefix below that names it; a
module may import its own layer and those listed before it. Imports are read
from the source (`ast`), so those under `if TYPE_CHECKING:` and inside
functions count too. The order, lowest first, and why:

- **core**: the neutral call (`model`), endpoints, time, the chain, counters,
  the shared deadline timer, the `Registry` protocol that discovery
  implements (`registry.base`), and modules bound now and imported on first use
  (`lazy_imports`).
- **protocol registry**: `sofamesh.protocols` itself (not its slices): the one
  list of protocol names, each support named as "module:Class" and imported on
  first use; its imports of the supports are for type checkers only.
- **codecs**: sans-IO protocol machines. **transport**: what every protocol's
  sockets share.
- **upstream**: the concrete level (linkerd): a service resolved to endpoints,
  their health and the balancer. It reads its policy through small protocols
  (`ClusterPolicy`, `ConnectRetries`), so it sits below the config that
  aggregates its settings.
- **config model**: the frozen config, made of the codecs' and upstream's
  settings. **filters**: the foundation's filters (the timeout reads the policy).
- **protocols**: one slice per protocol, the endpoint level: clients and
  listeners, handed the chains they run.
- **registry** backends (etcd speaks HTTP/1.1 through `protocols.http`), then
  **config loading**, which checks registry URLs.
- **governance** (the logical level, over upstream), **runtime** (composes the
  chains), the front doors (**sdk**, **sidecar**, the package's re-exports),
  the **control plane**, the **deployment** tools (Kubernetes injection and its
  webhook, the VM units) and the **cli** over them (the data plane's agent, which
  the front doors start, sits below them), and the **demo** and the **testing**
  plugin (users' tests of SDK and sidecar apps).

Besides the order, upstream, governance and the foundation's filters are
protocol-neutral: they import no protocol slice, and governance and filters no
codec either.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "sofamesh"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "core",
        (
            "sofamesh._version",
            "sofamesh.model",
            "sofamesh.endpoint",
            "sofamesh.clock",
            "sofamesh.chain",
            "sofamesh.stats",
            "sofamesh.deadlines",
            "sofamesh.registry.base",
            "sofamesh.lazy_imports",
        ),
    ),
    # The protocol registry (`sofamesh.protocols` itself, not its slices): names and
    # "module:Class" strings imported on first use, so config, upstream and health can
    # ask which protocols exist without importing a single support.
    ("protocol registry", ("=sofamesh.protocols",)),
    ("codecs", ("sofamesh.codecs",)),
    # Workload identity (SPIFFE IDs, the CA, identity files): what transport's TLS presents.
    ("security", ("sofamesh.security",)),
    ("transport", ("sofamesh.transport",)),
    ("upstream", ("sofamesh.upstream",)),
    (
        "config model",
        (
            "sofamesh.config.model",
            "sofamesh.config.checks",
            "sofamesh.config.structure",
            "sofamesh.config.control_urls",
            "sofamesh.config.telemetry",
        ),
    ),
    # Spans, trace context formats and span export: what the tracing filter runs on.
    ("tracing", ("sofamesh.tracing",)),
    ("filters", ("sofamesh.filters",)),
    ("protocols", ("sofamesh.protocols",)),
    # Access logs and Istio's metrics: the protocols' codes read as Envoy and Istio name them.
    ("observability", ("sofamesh.observability",)),
    ("registry", ("sofamesh.registry",)),
    ("config loading", ("sofamesh.config",)),
    ("governance", ("sofamesh.governance",)),
    ("runtime", ("sofamesh.runtime", "sofamesh.runtime_extras")),
    # Transparent interception: the init rules, original destinations, virtual IPs, the DNS
    # proxy and the transparent listeners the sidecar starts.
    ("intercept", ("sofamesh.intercept",)),
    # The data plane's side of the control-plane session, which the front doors start.
    (
        "control agent",
        ("sofamesh.control.agent", "sofamesh.control.enroll", "sofamesh.control.hosts"),
    ),
    ("front doors", ("sofamesh.sdk", "sofamesh.sidecar", ROOT)),
    ("control plane", ("sofamesh.control",)),
    # Putting a sidecar next to an app (Kubernetes injection, the webhook, systemd units).
    ("deployment", ("sofamesh.deploy",)),
    ("cli", ("sofamesh.cli",)),
    ("demo, testing", ("sofamesh.demo", "sofamesh.testing", "sofamesh.control.demo")),
]

# Packages that stay protocol-neutral, and what they must not import.
NEUTRAL: dict[str, tuple[str, ...]] = {
    "sofamesh.upstream": ("sofamesh.protocols",),
    "sofamesh.governance": ("sofamesh.protocols", "sofamesh.codecs"),
    "sofamesh.filters": ("sofamesh.protocols", "sofamesh.codecs"),
    "sofamesh.tracing": ("sofamesh.protocols",),
}

# (importer, imported) pairs allowed to break the rules below: none today.
KNOWN: set[tuple[str, str]] = set()

# Modules whose upward imports may only be type-only (`if TYPE_CHECKING:`).
TYPE_ONLY_UPWARD = {
    "sofamesh.protocols",  # names its supports for type checkers, imports them by name
    "sofamesh.control.hosts",  # adapts the Mesh and the Sidecar it is handed
}


def within(module: str, prefix: str) -> bool:
    if prefix.startswith("="):  # exactly this module
        return module == prefix[1:]
    if prefix == ROOT:  # the package's own `__init__`, not everything under it
        return module == ROOT
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if within(module, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)  # "=x" outranks the prefix "x"
    return None if best is None else best[1]


def is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def type_only_lines(tree: ast.AST) -> set[int]:
    """The lines inside `if TYPE_CHECKING:` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                end = child.end_lineno or child.lineno
                lines.update(range(child.lineno, end + 1))
    return lines


def imports(path: Path, module: str, *, runtime_only: bool = False) -> Iterator[tuple[str, int]]:
    """Every sofamesh module `path` imports, with the line, wherever the import sits.

    `runtime_only`: leave out imports under `if TYPE_CHECKING:`.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skip = type_only_lines(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up `level - 1` packages
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from . import x` names modules; `from m import x` names things of m.
            # `from . import x` and `from sofamesh import protocols` name modules;
            # `from m import x` names things of m.
            names = [
                f"{base}.{a.name}" if not node.module or is_module(f"{base}.{a.name}") else base
                for a in node.names
            ]
        else:
            continue
        for name in names:
            if name == ROOT or name.startswith(ROOT + "."):
                yield name, node.lineno


def modules() -> list[tuple[Path, str]]:
    return [(p, module_name(p)) for p in sorted((SRC / ROOT).rglob("*.py"))]


def test_every_module_has_a_layer() -> None:
    unplaced = [m for _, m in modules() if layer_of(m) is None]
    assert not unplaced, f"give these modules a layer in tests/test_layers.py: {unplaced}"


def test_imports_run_down_the_layers() -> None:
    problems = []
    for path, module in modules():
        own = layer_of(module)
        assert own is not None
        # Type-only upward imports are allowed for the modules TYPE_ONLY_UPWARD names.
        runtime_only = module in TYPE_ONLY_UPWARD
        for target, line in imports(path, module, runtime_only=runtime_only):
            theirs = layer_of(target)
            if theirs is not None and theirs > own and (module, target) not in KNOWN:
                problems.append(
                    f"{path.relative_to(SRC)}:{line}: {module} ({LAYERS[own][0]}) imports "
                    f"{target} ({LAYERS[theirs][0]}), a layer above it"
                )
    assert not problems, "\n".join(problems)


def test_neutral_packages_import_no_protocol() -> None:
    problems = []
    for path, module in modules():
        for package, banned in NEUTRAL.items():
            if not within(module, package):
                continue
            for target, line in imports(path, module):
                slice_ = target != "sofamesh.protocols"  # asking the registry is allowed
                if (
                    slice_
                    and any(within(target, b) for b in banned)
                    and (module, target) not in KNOWN
                ):
                    problems.append(f"{path.relative_to(SRC)}:{line}: {module} imports {target}")
    assert not problems, "\n".join(problems)


def test_the_check_sees_imports_under_type_checking_and_in_functions(tmp_path: Path) -> None:
    pkg = tmp_path / "sofamesh" / "upstream"
    pkg.mkdir(parents=True)
    source = pkg / "x.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from sofamesh.governance.rules import RulesDocument\n"
        "def f():\n"
        "    import sofamesh.runtime\n"
        "from . import cluster\n"
    )
    found = {name for name, _ in imports(source, "sofamesh.upstream.x")}
    assert found == {"sofamesh.governance.rules", "sofamesh.runtime", "sofamesh.upstream.cluster"}
    layers = [LAYERS[i][0] for n in sorted(found) if (i := layer_of(n)) is not None]
    assert layers == ["governance", "runtime", "upstream"]
