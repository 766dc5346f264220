"""The house's arrows, read from the imports of src/: no circle anywhere, the domain on the
storage seam only, engines on the seam and never on the opener or each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "shared_context_server"
SRC = Path(__file__).parents[1] / "src" / PACKAGE


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module of the package that `path` imports, anywhere in it (a function-level
    import, or one only for type checking, is still an arrow)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            found.add(base)
            # `from pkg import module` names a module too
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith(PACKAGE)}


MODULES = {_module(path): path for path in sorted(SRC.rglob("*.py"))}
GRAPH = {
    name: {target for target in _imports(path) if target in MODULES and target != name}
    for name, path in MODULES.items()
}


def _cycle() -> list[str] | None:
    """One import circle among the package's modules (packages' __init__ excluded: they
    hold no code here), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(GRAPH):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_no_module_imports_itself_back_through_any_other() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


def _importers(prefix: str) -> dict[str, set[str]]:
    return {name: GRAPH[name] for name in MODULES if name.startswith(prefix)}


def test_the_domain_reaches_storage_only_through_the_seam() -> None:
    reaching = {
        name: sorted(t for t in targets if t.startswith(f"{PACKAGE}.storage"))
        for name, targets in _importers(f"{PACKAGE}.blackboard").items()
    }
    seam = f"{PACKAGE}.storage.seam"
    wrong = {n: [t for t in ts if not t.startswith(seam)] for n, ts in reaching.items()}
    assert {n: ts for n, ts in wrong.items() if ts} == {}


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_an_engine_imports_the_seam_never_the_opener_nor_the_other_engine(engine: str) -> None:
    other = "postgres" if engine == "sqlite" else "sqlite"
    forbidden = (f"{PACKAGE}.storage.opener", f"{PACKAGE}.storage.{other}", f"{PACKAGE}.blackboard")
    for name, targets in _importers(f"{PACKAGE}.storage.{engine}").items():
        assert not [t for t in targets if t.startswith(forbidden)], name


def test_the_seam_imports_no_engine_nor_the_domain() -> None:
    engines = tuple(f"{PACKAGE}.storage.{e}" for e in ("sqlite", "postgres", "opener"))
    for name, targets in _importers(f"{PACKAGE}.storage.seam").items():
        assert not [t for t in targets if t.startswith((*engines, f"{PACKAGE}.blackboard"))], name
