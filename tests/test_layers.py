"""The layers of the house: every import under src/sofamesh runs down the layers, never up.

Each module belongs to the layer of the longest prefix below that names it; a
module may import its own layer and those listed before it. Imports are read
from the source (`ast`), so those under `if TYPE_CHECKING:` and inside
functions count too. The order, lowest first, and why:

- **core**: the neutral call (`model`), endpoints, time, the chain, counters,
  the shared deadline timer, and the `Registry` protocol that discovery
  implements (`registry.base`).
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
  and the **demo**.

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
        ),
    ),
    ("codecs", ("sofamesh.codecs",)),
    ("transport", ("sofamesh.transport",)),
    ("upstream", ("sofamesh.upstream",)),
    ("config model", ("sofamesh.config.model", "sofamesh.config.structure")),
    ("filters", ("sofamesh.filters",)),
    ("protocols", ("sofamesh.protocols",)),
    ("registry", ("sofamesh.registry",)),
    ("config loading", ("sofamesh.config",)),
    ("governance", ("sofamesh.governance",)),
    ("runtime", ("sofamesh.runtime",)),
    ("front doors", ("sofamesh.sdk", "sofamesh.sidecar", ROOT)),
    ("demo", ("sofamesh.demo",)),
]

# Packages that stay protocol-neutral, and what they must not import.
NEUTRAL: dict[str, tuple[str, ...]] = {
    "sofamesh.upstream": ("sofamesh.protocols",),
    "sofamesh.governance": ("sofamesh.protocols", "sofamesh.codecs"),
    "sofamesh.filters": ("sofamesh.protocols", "sofamesh.codecs"),
}

# (importer, imported): the one known exception, being made protocol-neutral.
KNOWN: set[tuple[str, str]] = {
    ("sofamesh.governance.filters.response", "sofamesh.protocols.http.mapping"),
    ("sofamesh.governance.filters.response", "sofamesh.codecs.http1"),
}


def within(module: str, prefix: str) -> bool:
    if prefix == ROOT:  # the package's own `__init__`, not everything under it
        return module == ROOT
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if within(module, prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """Every sofamesh module `path` imports, with the line, wherever the import sits."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up `level - 1` packages
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from . import x` names modules; `from m import x` names things of m.
            names = [f"{base}.{a.name}" for a in node.names] if not node.module else [base]
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
        for target, line in imports(path, module):
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
                if any(within(target, b) for b in banned) and (module, target) not in KNOWN:
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
    assert [layer_of(n) for n in sorted(found)] == [9, 10, 3]
