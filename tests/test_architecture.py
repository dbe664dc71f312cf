"""The house stays as ARCHITECTURE.md draws it: no import circles, few floors, imports at the top,
short functions, and the two rooms that must stay bare (the schema, the statistics) bare.

Read from the source with ``ast`` (nothing is imported), so a violation names the file and line."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cpt_utils"
MAX_FUNCTION_LINES = 80
MAX_FLOORS = 10


def _modules() -> dict[str, Path]:
    """Dotted name (``cpt_utils.config.schema``) → file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _resolve(module: str, node: ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    """The cpt modules an import statement names (``from . import x`` names the module ``x``)."""
    if node.level:
        package = module if known[module].name == "__init__.py" else module.rsplit(".", 1)[0]
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("cpt_utils"):
        return []
    names = []
    for alias in node.names:
        candidate = f"{target}.{alias.name}"
        names.append(candidate if candidate in known else target)
    return names


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported module, line, at top level?) for every runtime cpt import of a file."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue  # annotations only: no runtime arrow
            if isinstance(child, ast.ImportFrom):
                found.extend((t, child.lineno, top) for t in _resolve(module, child, known))
            elif isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, top) for a in child.names if a.name.startswith("cpt_utils"))
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            visit(child, top and not nested)

    visit(tree, True)
    return found


def _room(module: str) -> str:
    """A sub-package is one room (as farm-studio draws it): ``cpt_utils.config.load`` → ``cpt_utils.config``."""
    parts = module.split(".")
    return ".".join(parts[:2])


@cache
def _graph() -> dict[str, set[str]]:
    known = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        if module == "cpt_utils":
            continue
        room = _room(module)
        arrows = {_room(t) for t, _, _ in _imports(module, path, known)} - {room, "cpt_utils"}
        graph.setdefault(room, set()).update(arrows)
    return graph


def _floors(graph: dict[str, set[str]]) -> dict[str, int]:
    floors: dict[str, int] = {}

    def floor(room: str, stack: tuple[str, ...] = ()) -> int:
        if room in stack:
            raise AssertionError(f"import circle: {' → '.join(stack[stack.index(room):] + (room,))}")
        if room not in floors:
            floors[room] = 1 + max((floor(r, stack + (room,)) for r in graph.get(room, ())), default=0)
        return floors[room]

    for room in graph:
        floor(room)
    return floors


def test_no_circles_and_at_most_ten_floors():
    floors = _floors(_graph())
    top = max(floors.values())
    assert top <= MAX_FLOORS, sorted(floors.items(), key=lambda kv: -kv[1])[:6]


def test_intra_package_imports_sit_at_the_top():
    """A file's header says what it depends on. The one exception is marked ``# lazy:`` with its reason
    (the ``cpt`` command imports a subcommand's module only when that subcommand runs)."""
    known = _modules()
    inside = []
    for module, path in known.items():
        lines = path.read_text().splitlines()
        inside += [f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
                   for target, line, top in _imports(module, path, known)
                   if not top and "# lazy:" not in lines[line - 1]]
    assert not inside, inside


def test_no_function_over_eighty_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def test_the_schema_and_the_statistics_stand_on_nothing_above_them():
    known = _modules()
    schema = {t for t, _, _ in _imports("cpt_utils.config.schema", known["cpt_utils.config.schema"], known)}
    assert not schema, f"config/schema.py imports {schema}: the schema must import nothing of cpt"
    floors = _floors(_graph())
    for target in {_room(t) for t, _, _ in _imports("cpt_utils.analysis", known["cpt_utils.analysis"], known)}:
        assert floors[target] <= 2, f"analysis imports {target} (floor {floors[target]}): statistics only"


def test_the_circle_check_sees_a_circle():
    """The check itself can fail: a made-up graph with a loop is refused."""
    try:
        _floors({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    except AssertionError as err:
        assert "a → b → c → a" in str(err)
    else:
        raise AssertionError("a circle went unnoticed")
