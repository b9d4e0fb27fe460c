"""Who may import whom, read from the source with `ast` (ARCHITECTURE.md, "Import rules").

Every import statement counts, including ones inside functions: a lazy import hides a
dependency from the reader, not from the design. The contracts:

- no import cycle between modules of aibrix_spec, compiler, runtime_components, benchmarks;
- aibrix_spec imports only pydantic and the standard library;
- compiler imports aibrix_spec, PyYAML, jsonschema, kubernetes-validate (output validation,
  lazily), pydantic and the standard library (and Jinja2 in compiler.report, the html report);
  never runtime_components;
- runtime_components/<x> import aibrix_spec, runtime_components.common, themselves and third-party
  libraries; another component only where a simulator is the point (`ENGINE_SIM_USES`);
- nothing but benchmarks imports benchmarks or tests;
- a render family (compiler/render/<family>.py) imports only shared builders, not another family;
- local_stack (`aibrix-local`) imports aibrix_spec, compiler and runtime_components.common of ours:
  it starts components as processes, never imports them; only benchmarks import local_stack.

Allow-lists are exact: an entry that no longer matches an import fails too, so they only shrink.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTS = ("aibrix_spec", "compiler", "runtime_components", "local_stack", "benchmarks")
OURS = (*ROOTS, "tests")

SPEC_THIRD_PARTY = {"pydantic", "pydantic_core"}
COMPILER_THIRD_PARTY = {"pydantic", "pydantic_core", "yaml", "jsonschema", "kubernetes_validate"}
# `aibrix-compile preflight` talks to a cluster: the one compiler module allowed the Kubernetes
# client and its urllib3 (extra `preflight`, imported inside the subcommand only; the compile
# path never loads it).
COMPILER_CLUSTER_CLIENT = ("compiler.preflight", frozenset({"kubernetes", "urllib3"}))
# `aibrix-compile explain --format html` renders a Jinja2 template: the one compiler module
# allowed it, imported inside the html path only.
COMPILER_REPORT = ("compiler.report", frozenset({"jinja2"}))

# (importing module or package, imported module or package): a simulator is the point.
ENGINE_SIM_USES = {
    # roofline-derived optimizer profiles are discrete-event simulations of the engine model
    ("runtime_components.optimizer.derive", "runtime_components.engine_sim.config"),
    ("runtime_components.optimizer.derive", "runtime_components.engine_sim.des"),
    ("runtime_components.optimizer.derive", "runtime_components.engine_sim.perf"),
}

# compiler/render modules that are shared builders; every other module there is a family.
SHARED_RENDER_BUILDERS = {
    "compiler.render.component_parts",  # metadata, security, RBAC, PDB, NetworkPolicy
    "compiler.render.engine_pod",  # the one engine pod builder
    "compiler.render.envoy_bootstrap",
    "compiler.render.gateway_api",
    "compiler.render.pod_features",  # typed mutators applied to every engine pod
}

# Render families allowed to import another family: none (what one family needs from another
# is plan data). A pair listed here that no longer occurs fails the test.
RENDER_FAMILY_IMPORTS_TO_REMOVE: set[tuple[str, str]] = set()

# Import cycles tolerated: none. A cycle listed here that no longer occurs fails the test.
CYCLES_TO_REMOVE: set[frozenset[str]] = set()


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted name of the imported module (or the package a name was taken from)
    where: str  # path:line, for messages


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    modules = {}
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


MODULES = _sources()


def _resolve(importer: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imports() -> Iterator[Import]:
    for importer, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(importer, alias.name, where)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(importer, path, node)
                for alias in node.names:
                    # `from pkg import module` imports the module; `from module import name` the module.
                    submodule = f"{base}.{alias.name}"
                    yield Import(importer, submodule if submodule in MODULES else base, where)


IMPORTS = list(_imports())


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _component(name: str) -> str | None:
    """`runtime_components.<x>` for a module inside component x."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "runtime_components" and len(parts) > 1 else None


def _our_module(target: str) -> str | None:
    """The module of ours `target` names (itself or its closest known parent), else None."""
    parts = target.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative; components of more than one module only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for imp in IMPORTS:
        target = _our_module(imp.target)
        if target is not None and target != imp.importer:
            graph[imp.importer].add(target)
    return graph


def _cycle_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One concrete cycle through the component's smallest module, for the message."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & component):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return sorted(component)


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    cycles = _strongly_connected(graph)
    new = [c for c in cycles if frozenset(c) not in CYCLES_TO_REMOVE]
    assert not new, "import cycles (break each by moving the shared part into its own module):\n" + "\n".join(
        "  " + " -> ".join(_cycle_path(graph, c)) for c in new)
    gone = CYCLES_TO_REMOVE - {frozenset(c) for c in cycles}
    assert not gone, f"these cycles are gone: remove them from CYCLES_TO_REMOVE: {sorted(map(sorted, gone))}"


def _third_party(target: str) -> bool:
    top = target.split(".")[0]
    return top not in sys.stdlib_module_names and top not in OURS


def _violations(rule: str) -> list[str]:
    found = []
    for imp in IMPORTS:
        message = _check(rule, imp)
        if message:
            found.append(f"{imp.where}: {imp.importer} imports {imp.target}: {message}")
    return sorted(found)


def _check(rule: str, imp: Import) -> str | None:
    importer, target = imp.importer, imp.target
    top = target.split(".")[0]
    if rule == "spec" and _within(importer, "aibrix_spec"):
        if _third_party(target) and top not in SPEC_THIRD_PARTY:
            return "aibrix_spec imports only pydantic and the standard library"
        if top in OURS and top != "aibrix_spec":
            return "aibrix_spec imports nothing of ours"
    if rule == "compiler" and _within(importer, "compiler"):
        allowed = COMPILER_THIRD_PARTY
        for module, extra in (COMPILER_CLUSTER_CLIENT, COMPILER_REPORT):
            allowed = allowed | (extra if importer == module else set())
        if _third_party(target) and top not in allowed:
            return f"the compiler's third-party imports are {sorted(COMPILER_THIRD_PARTY)}"
        if top in OURS and top not in ("aibrix_spec", "compiler"):
            return "the compiler imports only aibrix_spec of ours"
    if rule == "components" and _within(importer, "runtime_components"):
        if top in ("compiler", "benchmarks", "tests"):
            return "runtime components never import the compiler, benchmarks or tests"
        mine, theirs = _component(importer), _component(target)
        if top == "runtime_components" and theirs not in (None, mine, "runtime_components.common"):
            if not any(_within(importer, a) and _within(target, b) for a, b in ENGINE_SIM_USES):
                return "components import only aibrix_spec, runtime_components.common and themselves"
        if mine == "runtime_components.common" and top == "runtime_components" and theirs != mine:
            return "runtime_components.common imports no component"
    if rule == "benchmarks" and top in ("benchmarks", "tests") and not _within(importer, "benchmarks"):
        return "only benchmarks import benchmarks or tests"
    if rule == "local" and _within(importer, "local_stack") and top in OURS:
        if top not in ("aibrix_spec", "compiler", "local_stack") and not _within(target, "runtime_components.common"):
            return "local_stack imports aibrix_spec, compiler and runtime_components.common; it starts components as processes"
    if rule == "local" and top == "local_stack" and not _within(importer, "local_stack") \
            and not _within(importer, "benchmarks"):
        return "only benchmarks (and tests) import local_stack"
    return None


def test_aibrix_spec_imports_only_pydantic_and_the_standard_library() -> None:
    assert _violations("spec") == []


def test_compiler_imports_only_its_declared_dependencies() -> None:
    assert _violations("compiler") == []


def test_runtime_components_import_only_spec_common_and_themselves() -> None:
    assert _violations("components") == []


def test_nothing_imports_benchmarks_or_tests() -> None:
    assert _violations("benchmarks") == []


def test_local_stack_starts_components_without_importing_them() -> None:
    assert _violations("local") == []


def test_engine_sim_exceptions_are_all_used() -> None:
    used = {(a, b) for a, b in ENGINE_SIM_USES
            for imp in IMPORTS if _within(imp.importer, a) and _within(imp.target, b)}
    assert used == ENGINE_SIM_USES, f"unused entries in ENGINE_SIM_USES: {sorted(ENGINE_SIM_USES - used)}"


def test_render_families_import_only_shared_builders() -> None:
    pairs = set()
    for imp in IMPORTS:
        target = _our_module(imp.target)
        if (target and _within(imp.importer, "compiler.render") and _within(target, "compiler.render")
                and imp.importer != "compiler.render" and target != "compiler.render"
                and target != imp.importer and target not in SHARED_RENDER_BUILDERS):
            pairs.add((imp.importer, target))
    new = sorted(pairs - RENDER_FAMILY_IMPORTS_TO_REMOVE)
    assert not new, f"a render family imports another family (put the shared part in a builder or the plan): {new}"
    gone = sorted(RENDER_FAMILY_IMPORTS_TO_REMOVE - pairs)
    assert not gone, f"remove from RENDER_FAMILY_IMPORTS_TO_REMOVE, they no longer occur: {gone}"


def test_the_contract_checks_can_fail() -> None:
    """The rules see relative and lazy imports (a checker that sees nothing passes everything)."""
    source = "def f():\n    from ..engine_sim import des\n"
    node = ast.parse(source).body[0].body[0]  # type: ignore[attr-defined]
    path = REPO / "runtime_components" / "gateway" / "core.py"
    target = _resolve("runtime_components.gateway.core", path, node)
    assert target == "runtime_components.engine_sim"
    assert _check("components", Import("runtime_components.gateway.core", target + ".des", "x:1"))
    assert _check("spec", Import("aibrix_spec.stack", "yaml", "x:1"))
    assert _check("compiler", Import("compiler.plan", "runtime_components.common.tokens", "x:1"))
    assert _check("local", Import("local_stack.runner", "runtime_components.gateway.app", "x:1"))
    assert not _check("local", Import("local_stack.runner", "runtime_components.common.processes", "x:1"))
    assert _check("local", Import("compiler.cli", "local_stack.runner", "x:1"))
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
