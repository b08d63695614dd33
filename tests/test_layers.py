"""The package's layers, kept by a test (docs/architecture.md draws them).

Every `import` in `cnnbench/` is read with `ast`, inside functions too, and each module is mapped
to its layer by its path. The test fails on:

- an upward edge: a module importing one of a higher layer (`core` < `stats` < `results` <
  `models` < `accuracy` < `backends` < `measure` < `suite` < `run` < `compare`, `report`,
  `history` < `commands` < `cli` < the package's own `__init__`);
- a cycle between modules, whatever their layers;
- a private name (`_name`) of one module imported or reached as an attribute by another, or a
  private module (`_data.py`) imported from outside its package;
- an import of a cnnbench module inside a function where nothing heavy is saved by it: a function
  may defer an import only when the module it imports pulls in a heavy package at import time
  (torch, onnxruntime, matplotlib, ..., `HEAVY` below), directly or through its own
  module-level imports; everything else is imported at the top, where a reader sees it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cnnbench"

# Lowest first; packages of one rank may import each other (a cycle still fails).
LAYERS: dict[str, int] = {
    "core": 0,
    "stats": 1,
    "results": 2,
    "models": 3,
    "accuracy": 4,
    "backends": 5,
    "measure": 6,
    "suite": 7,
    "run": 8,
    "compare": 9,
    "report": 9,
    "history": 9,
    "select": 9,
    "commands": 10,
    "cli": 11,
    "api": 12,  # cnnbench/api.py: the Python API (measure, run, load, compare, profile)
    "": 13,  # cnnbench/__init__.py: the public API, above everything it exposes
}

# Third-party packages whose import costs what a CLI call must not pay up front: a function may
# import (directly, or through a cnnbench module that imports them at its top) only these late.
HEAVY = frozenset(
    {
        "torch", "torchvision", "torchao", "onnx", "onnxruntime", "onnxscript", "onnxconverter_common",
        "openvino", "nncf", "tensorrt", "timm", "fvcore", "matplotlib", "numpy", "scipy", "sklearn",
        "PIL", "sqlalchemy", "psycopg", "pynvml", "rich", "yaml", "psutil", "mlperf_loadgen", "pandas",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, dotted
    target: str  # imported module, dotted
    names: tuple[str, ...]  # names taken from it (from-imports)
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> tuple[str, int]:
    first = module.split(".")[1] if module.count(".") else ""
    if first not in LAYERS:
        raise AssertionError(f"{module}: not in a layer (add its package to LAYERS in tests/test_layers.py)")
    return first, LAYERS[first]


def _resolve(dotted: str) -> str | None:
    """The cnnbench module a dotted name lives in (a module, or a name inside one)."""
    mods = modules()
    while dotted and dotted not in mods:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return True
    return False


def _is_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


@lru_cache(maxsize=None)
def parsed(module: str) -> ast.Module:
    return ast.parse(modules()[module].read_text(encoding="utf-8"), filename=str(modules()[module]))


@lru_cache(maxsize=None)
def edges(module: str) -> tuple[Edge, ...]:
    """Every import of a cnnbench module in `module` (TYPE_CHECKING-only imports excluded: they
    never run)."""
    tree = parsed(module)
    parents = _parents(tree)
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _is_type_checking(node, parents):
            continue
        inner = _in_function(node, parents)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "cnnbench" or alias.name.startswith("cnnbench."):
                    target = _resolve(alias.name)
                    if target and target != module:
                        out.append(Edge(module, target, (), node.lineno, inner))
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
        if base != "cnnbench" and not base.startswith("cnnbench."):
            continue
        for alias in node.names:
            full = f"{base}.{alias.name}"
            if full in modules():  # `from cnnbench.pkg import module`
                out.append(Edge(module, full, (), node.lineno, inner))
            else:
                target = _resolve(base)
                if target and target != module:
                    out.append(Edge(module, target, (alias.name,), node.lineno, inner))
    return tuple(out)


def _third_party_top_level(module: str) -> set[str]:
    """The third-party packages `module` imports at its top (not inside functions or TYPE_CHECKING)."""
    tree = parsed(module)
    parents = _parents(tree)
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _in_function(node, parents):
            continue
        if _is_type_checking(node, parents) or (isinstance(node, ast.ImportFrom) and node.level):
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        found.update(n.split(".")[0] for n in names)
    return found


@lru_cache(maxsize=None)
def heavy_at_import(module: str) -> frozenset[str]:
    """The HEAVY packages importing `module` pulls in: its own top-level imports, and those of
    every cnnbench module they import at their top in turn (parent packages included: importing
    a.b.c runs a and a.b)."""
    seen, todo = {module}, [module]
    while todo:
        m = todo.pop()
        parts = m.split(".")
        deps = {e.target for e in edges(m) if not e.in_function} | {".".join(parts[:i]) for i in range(1, len(parts))}
        for dep in deps - seen:
            seen.add(dep)
            todo.append(dep)
    return frozenset(set().union(*(_third_party_top_level(m) for m in seen)) & HEAVY)


def all_edges() -> list[Edge]:
    return [e for m in modules() for e in edges(m)]


def test_every_module_is_in_a_layer_and_few_stay_at_the_root():
    for m in modules():
        layer_of(m)
    root = [m for m, p in modules().items() if p.parent == PACKAGE and p.name != "__init__.py"]
    assert len(root) <= 12, root


def test_no_module_imports_a_higher_layer():
    upward = []
    for e in all_edges():
        (src_layer, src_rank), (dst_layer, dst_rank) = layer_of(e.source), layer_of(e.target)
        if dst_rank > src_rank:
            upward.append(f"{e.source}:{e.line} ({src_layer}) imports {e.target} ({dst_layer})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    graph: dict[str, set[str]] = defaultdict(set)
    for e in all_edges():
        graph[e.source].add(e.target)
    assert not find_cycles(graph)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_crosses_a_module_boundary():
    crossing = []
    for e in all_edges():
        crossing += [f"{e.source}:{e.line} imports {e.target}.{n}" for n in e.names if _private(n)]
        leaf = e.target.rsplit(".", 1)[-1]
        if _private(leaf) and e.target.rpartition(".")[0] != e.source.rpartition(".")[0]:
            crossing.append(f"{e.source}:{e.line} imports the private module {e.target} from outside its package")
    for module in modules():
        aliases = {}  # local name -> cnnbench module, for `from cnnbench.pkg import mod [as x]`
        for node in ast.walk(parsed(module)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnnbench"):
                for a in node.names:
                    if f"{node.module}.{a.name}" in modules():
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(parsed(module)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                if _private(node.attr) and aliases[node.value.id] != module:
                    crossing.append(f"{module}:{node.lineno} reaches {aliases[node.value.id]}.{node.attr}")
    assert not crossing, "private names across modules:\n" + "\n".join(crossing)


def test_imports_inside_functions_only_defer_heavy_modules():
    needless = []
    for e in all_edges():
        if e.in_function and not heavy_at_import(e.target):
            needless.append(f"{e.source}:{e.line} imports {e.target} inside a function (light: import it at the top)")
    assert not needless, "\n".join(needless)


def test_the_cli_and_the_package_stay_light():
    """`bench.py --help` and `import cnnbench` must not import torch (or any other HEAVY package)."""
    assert not heavy_at_import("cnnbench.cli")
    assert not heavy_at_import("cnnbench")
    assert "torch" not in heavy_at_import("cnnbench.commands.run")


# -- the checker itself, on a small tree it must judge -------------------------------------------


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """Point the checker at a throwaway package, and restore it after."""

    def make(files: dict[str, str]) -> None:
        root = tmp_path / "cnnbench"
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", root)
        for cached in (modules, parsed, edges, heavy_at_import):
            cached.cache_clear()

    yield make
    for cached in (modules, parsed, edges, heavy_at_import):
        cached.cache_clear()


def test_the_checker_catches_an_upward_import_inside_a_function(fake_package):
    fake_package({
        "__init__.py": "", "core/__init__.py": "", "run/__init__.py": "",
        "core/low.py": "def f():\n    from cnnbench.run import high\n",
        "run/high.py": "X = 1\n",
    })  # fmt: skip
    with pytest.raises(AssertionError, match=r"cnnbench.core.low:2 \(core\) imports cnnbench.run.high \(run\)"):
        test_no_module_imports_a_higher_layer()


def test_the_checker_catches_a_cycle_a_private_name_and_a_needless_late_import(fake_package):
    fake_package({
        "__init__.py": "", "core/__init__.py": "",
        "core/a.py": "from cnnbench.core.b import _hidden\n",
        "core/b.py": "import torch\n\ndef g():\n    from cnnbench.core import a\n    from cnnbench.core import c\n    return c._x\n",
        "core/c.py": "_x = 1\n",
    })  # fmt: skip
    with pytest.raises(AssertionError):
        test_the_import_graph_has_no_cycle()
    with pytest.raises(AssertionError, match=r"imports cnnbench.core.b._hidden[\s\S]*reaches cnnbench.core.c._x"):
        test_no_private_name_crosses_a_module_boundary()
    # b imports torch at its top, so a late import of b would be fine; c is light: flagged.
    with pytest.raises(AssertionError, match=r"cnnbench.core.b:5 imports cnnbench.core.c inside a function"):
        test_imports_inside_functions_only_defer_heavy_modules()


def _modules_after(*argv: str) -> set[str]:
    """The modules a fresh interpreter has loaded after `bench.py ARGV` (its output discarded)."""
    import subprocess
    import sys

    code = (
        "import contextlib, io, runpy, sys\n"
        f"sys.argv = ['bench.py', *{list(argv)!r}]\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    try:\n        runpy.run_path('bench.py', run_name='__main__')\n"
        "    except SystemExit:\n        pass\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_help_imports_no_command_and_a_command_only_its_own():
    """The CLI reads each command's HELP from its source: `--help` imports no command module and
    nothing heavy; `show --help` imports `show` and what it imports, not `run`'s machinery."""
    top = _modules_after("--help")
    assert not {m for m in top if m.startswith("cnnbench.commands.")}, top
    assert not {m.split(".")[0] for m in top} & HEAVY
    show = _modules_after("show", "--help")
    assert "cnnbench.commands.show" in show and "cnnbench.commands.run" not in show
    assert "cnnbench.run.server" not in show and "torch" not in show
