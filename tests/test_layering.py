"""The engine (core, jobs, zoo, library) must not import Qt: the CLI and batch jobs run headless."""

import ast
import subprocess
import sys
from pathlib import Path

ENGINE = ["core", "jobs", "zoo", "library"]
PKG = Path(__file__).resolve().parents[1] / "dclip_desktop"


def test_engine_packages_do_not_import_qt():
    modules = [
        f"dclip_desktop.{pkg}.{p.stem}" for pkg in ENGINE for p in sorted((PKG / pkg).glob("*.py")) if p.stem != "__init__"
    ]
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'shiboken6'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"Qt imported by the engine: {out.stdout}"
    assert len(modules) >= 5


# --- the import graph, read from the source ------------------------------------------------------
def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every dclip_desktop module `name` imports, at top level, under TYPE_CHECKING or inside a function:
    a cycle through a lazy import is still a cycle (it only fails later, and in the user's hands)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            targets = subs if all(t in modules for t in subs) else [base]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a module's own packages load first anyway
                found.add(t)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    assert sum(len(v) for v in graph.values()) > 100  # the graph was really read
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# Entry points may set up the process environment (Qt's platform before Qt starts); nothing else may,
# since a value put there outlives the setting that put it (offline mode stayed on after it was turned off).
ENTRY_POINTS = {"dclip_desktop.gui.app", "dclip_desktop.cli.main"}


def _environ_writes(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            targets = [t.value for t in targets if isinstance(t, ast.Subscript)]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("setdefault", "update", "pop", "clear", "popitem"):
                targets = [node.func.value]
            elif node.func.attr in ("putenv", "unsetenv"):
                lines.append(node.lineno)
        if any(ast.unparse(t) in ("os.environ", "environ") for t in targets):
            lines.append(node.lineno)
    return lines


def test_only_entry_points_write_the_environment():
    assert _environ_writes(ast.parse("import os\nos.environ['X'] = '1'\nos.environ.setdefault('Y', '2')\n")) == [2, 3]
    found = {}
    for name, path in _modules().items():
        lines = _environ_writes(ast.parse(path.read_text(encoding="utf-8")))
        if lines and name not in ENTRY_POINTS:
            found[name] = lines
    assert found == {}
