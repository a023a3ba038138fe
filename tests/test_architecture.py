"""The rooms of booking/ keep to their docstrings: read with `ast`, nothing imported.

Fails when (a) anything in booking/ imports Rasa (rasa, rasa_sdk, sanic) or the Rasa-side
packages, (b) a room imports a room its `__init__` docstring forbids (RULES below), or (c) two
modules of booking/ and actions/ import each other, directly or round a longer loop. Imports
inside functions count; imports under `if TYPE_CHECKING:` (never run) do not.
See docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("booking", "actions")
RASA = {"rasa", "rasa_sdk", "sanic"}
# The Rasa side of the project and the tools around it: they import booking/, never the other
# way round. (nlu_components.red_flag_rules, plain regular expressions shared with the NLU
# pipeline, is read by the inbox; the check below keeps it free of Rasa.)
RASA_SIDE = {"actions", "connectors", "stack", "simulator"}

ROOMS = ("calls", "messaging", "dialogue", "escalation", "clinics", "scheduling", "reports",
         "outreach", "gateway", "console", "records")
WEB = ("gateway", "console")
# room -> rooms it must not import (each room's docstring says the same in words).
RULES: dict[str, set[str]] = {
    "calls": {*WEB, "dialogue", "escalation", "reports"},
    "messaging": {*WEB, "dialogue", "reports"},
    "dialogue": {*WEB, "messaging", "calls", "escalation", "reports"},
    "escalation": {*WEB, "dialogue", "reports"},
    "clinics": {*WEB, "calls", "dialogue", "escalation", "reports"},
    "scheduling": {*WEB, "calls", "dialogue", "messaging", "escalation", "reports"},
    "reports": set(ROOMS) - {"reports"},
    "outreach": {*WEB, "escalation", "reports"},
    "gateway": {"dialogue", "reports"},
    "console": {"dialogue", "calls"},
    "records": {*WEB, "escalation", "calls", "messaging", "dialogue", "outreach", "reports"},
    # models, db, settings, migrate, field_encryption, batching: shared by every room, so they
    # import none.
    "": set(ROOMS),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {
    module_name(path): path
    for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    if "migrations" not in path.relative_to(ROOT).parts
}


def room_of(module: str) -> str:
    """`booking.calls.recovery` -> "calls"; `booking.models` -> "" (shared); else None."""
    parts = module.split(".")
    if parts[0] != "booking" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ROOMS else ""


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _walk_run(node: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run: all of the tree except `if TYPE_CHECKING:` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk_run(other)
            continue
        yield child
        yield from _walk_run(child)


def imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each import that can run in `module`; `from a import b`
    gives `a.b` when that is a module of ours, else `a`."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _walk_run(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), node.lineno


def test_modules_are_found():
    assert "booking.calls.recovery" in MODULES and "actions.booking" in MODULES
    assert all(room_of(m) is not None for m in MODULES if m.startswith("booking."))


def test_booking_has_no_flat_modules_outside_its_rooms():
    flat = {p.stem for p in (ROOT / "booking").glob("*.py")} - {"__init__"}
    assert flat == {"models", "db", "settings", "migrate", "field_encryption", "batching"}
    for room in ROOMS:
        doc = ast.get_docstring(ast.parse((ROOT / "booking" / room / "__init__.py").read_text()))
        assert doc and "must not import" in doc, f"booking/{room}/__init__.py: say what it owns"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("booking")))
def test_booking_imports_neither_rasa_nor_its_side(module):
    path = MODULES[module]
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):  # TYPE_CHECKING included
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                 else [])
        bad += [f"line {node.lineno}: {n}" for n in names
                if n.split(".")[0] in RASA | RASA_SIDE]
    assert not bad, f"{module} imports the Rasa side: {bad}"


def test_red_flag_rules_shared_with_the_inbox_stay_free_of_rasa():
    tree = ast.parse((ROOT / "nlu_components" / "red_flag_rules.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {n.split(".")[0] for n in names} & (RASA | RASA_SIDE | {"nlu_components"})


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("booking.")))
def test_rooms_import_only_what_their_docstring_allows(module):
    forbidden = RULES[room_of(module)]
    bad = [f"line {line}: {target}" for target, line in imports(module)
           if room_of(target) in forbidden]
    assert not bad, (f"{module} (room {room_of(module) or 'shared'!r}) imports what its room "
                     f"must not: {bad}")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module: {target for target, _ in imports(module)
                     if target in MODULES and target != module}
            for module in MODULES}


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_the_cycle_check_sees_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_are_ignored_and_function_imports_counted():
    tree = ast.parse("import x\nif TYPE_CHECKING:\n    import y\n"
                     "def f():\n    import z\n")
    names = [a.name for n in _walk_run(tree) if isinstance(n, ast.Import) for a in n.names]
    assert names == ["x", "z"]
