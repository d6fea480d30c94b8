"""The house plan holds (issue 36): rooms import only rooms below them, no module circle, no private name
used across rooms, no source file over 450 lines, and a model family's package only inside its adapter."""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "irrepprobe"
# bottom to top; rooms on one rank do not import each other
RANKS = [["errors"], ["fileio", "progress", "runtime"], ["data"], ["config"], ["irreps"], ["intervene"],
         ["examples", "models"], ["train"], ["adapters"], ["capture"], ["metrics"], ["report"], ["study"],
         ["experiments"], ["prune", "validate"], ["cli"], ["__main__"]]
RANK = {room: k for k, rooms in enumerate(RANKS) for room in rooms}
FAMILIES = ("sevenn", "mace", "nequip", "allegro", "so3krates_torch")
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path):
    """(module imported, name taken from it or None) for every import of irrepprobe in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((a.name, None) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                yield (full, None) if full in MODULES else (base, a.name)


def _resolve(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


EDGES = defaultdict(set)
PRIVATE = []
for _name, _path in MODULES.items():
    for _target, _taken in _imports(_name, _path):
        _mod = _resolve(_target) if _target.startswith("irrepprobe") else None
        if _mod is None:
            continue
        EDGES[_name].add(_mod)
        if _taken and _taken.startswith("_") and _room(_mod) != _room(_name):
            PRIVATE.append(f"{_name} takes {_taken} from {_mod}")


def test_every_room_has_a_rank():
    rooms = {_room(m) for m in MODULES} - {"__init__"}
    assert rooms <= set(RANK), f"rooms without a place in the plan: {sorted(rooms - set(RANK))}"


def test_no_room_imports_a_room_above_it_or_beside_it():
    up = [f"{a} -> {b}" for a, targets in EDGES.items() for b in targets
          if _room(a) in RANK and _room(b) in RANK and _room(a) != _room(b) and RANK[_room(b)] >= RANK[_room(a)]]
    assert not up, "imports that run up or sideways:\n" + "\n".join(sorted(up))


def test_no_module_circle():
    seen, stack, circles = {}, [], []

    def visit(m):
        seen[m] = "open"
        stack.append(m)
        for t in EDGES.get(m, ()):
            if seen.get(t) == "open":
                circles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in seen:
                visit(t)
        stack.pop()
        seen[m] = "done"
    for m in MODULES:
        if m not in seen:
            visit(m)
    # a package's __init__ importing its own modules is not a circle of concerns
    real = [c for c in circles if not any(MODULES[p].name == "__init__.py" for p in c.split(" -> "))]
    assert not real, "module circles:\n" + "\n".join(real)


def test_no_private_name_crosses_a_room():
    assert not PRIVATE, "\n".join(PRIVATE)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_source_files_stay_short(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines"


def test_family_packages_are_imported_only_inside_their_adapters():
    leaks = []
    for name, path in MODULES.items():
        if name.startswith("irrepprobe.adapters."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                    [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            leaks += [f"{name} imports {m}" for m in mods if m.split(".")[0] in FAMILIES]
    assert not leaks, "\n".join(leaks)

