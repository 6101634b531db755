"""The import contract of the package, checked on its source (the `ast` of every module; every
import counts, at module level or inside a function, except those under `if TYPE_CHECKING:`).

- Layers: core ← readers, detectors ← analysis ← report, exporters ← cli. A module imports only
  from its own layer or below; readers and detectors do not import each other (a format is
  one reader module + one registry line, a detector one module + one registry line).
- Nobody imports the CLI (`losslens.cli`), bar `python -m losslens`.
- No module imports another module's private names (`from .x import _y`, `x._y`).
- No import circles between modules.
- The package root (`losslens/__init__.py`, the library's facade) may be imported for
  `__version__` and `read` only.
- One exception to the layers, by name: a record's display hooks (`_repr_html_`, `to_json`:
  a Frame or an Analysis shows itself in Jupyter) import the report layer lazily, inside them.
- No module over MAX_LINES lines, bar the listed ones being split.

import-linter would check the layers and circles but not private names; this is 100 lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "losslens"

#: Layer of each module: the first prefix that matches (longest first). A new top-level module
#: that no prefix names is in the analysis layer.
LAYERS = {
    "losslens.errors": 0, "losslens.events": 0, "losslens.records": 0, "losslens.roles": 0,
    "losslens.frame": 0, "losslens.textsafe": 0, "losslens.limits": 0,
    "losslens.readers": 1, "losslens.detectors": 1, "losslens.synthetic": 1,
    "losslens.report": 3, "losslens.exporters": 3,
    "losslens.cli": 4, "losslens.__main__": 4,
}
ANALYSIS = 2
NAMES = {0: "core", 1: "readers/detectors", 2: "analysis", 3: "report/exporters", 4: "cli"}
#: Methods that may import the report layer from below it (display hooks, imported lazily).
DISPLAY_HOOKS = {"_repr_html_", "_repr_markdown_", "to_json"}
#: What may be imported from the package root.
ROOT_NAMES = {"__version__", "read"}
MAX_LINES = 620
#: Circles left to their owners (remove once broken; the guard's core/worker one is: the
#: worker process's side lives in guard/serve.py).
KNOWN_CIRCLES: list[list[str]] = []
#: Modules over MAX_LINES, being split by their owners (remove an entry once it is under).
OVER: set[str] = set()  # wandb.py, table.py, tensorboard.py and replay/probes.py are split now


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    return ANALYSIS


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _display_hook_nodes(tree: ast.AST) -> set[int]:
    return {id(n) for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name in DISPLAY_HOOKS
            for n in ast.walk(node)}


def imports(module: str, hooks: bool = True) -> list[tuple[str, str | None, int]]:
    """(imported module, name taken from it or None, line) for every import of `module`
    (without those inside display hooks when `hooks` is False)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree) | (set() if hooks else _display_hook_nodes(tree))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, str | None, int]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names
                    if a.name.split(".")[0] == "losslens"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "losslens":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub, None, node.lineno) if sub in MODULES
                           else (target, a.name, node.lineno))
    return out


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(PACKAGE.parent)}:{line}"


def test_layers_and_the_cli():
    bad = []
    for module in MODULES:
        mine = layer(module)
        for target, name, line in imports(module, hooks=False):
            if target == "losslens":
                if name not in ROOT_NAMES and module != "losslens":
                    bad.append(f"{_where(module, line)} imports {name!r} from the package root")
                continue
            if target.startswith("losslens.cli") and not (module.startswith("losslens.cli")
                                                          or module == "losslens.__main__"):
                bad.append(f"{_where(module, line)} imports the CLI ({target})")
            if module == "losslens":
                continue  # the facade: any layer but the CLI
            theirs = layer(target)
            if theirs > mine:
                bad.append(f"{_where(module, line)}: {NAMES[mine]} imports {target} "
                           f"({NAMES[theirs]})")
            for a, b in (("losslens.readers", "losslens.detectors"),
                         ("losslens.detectors", "losslens.readers")):
                if module.startswith(a) and target.startswith(b):
                    bad.append(f"{_where(module, line)}: {a} imports {target}")
    assert bad == []


def test_no_private_names_of_another_module():
    bad = []
    for module, path in MODULES.items():
        aliases = {}
        for target, name, line in imports(module):
            if name and name.startswith("_") and not name.startswith("__") and target != module:
                bad.append(f"{_where(module, line)} imports {target}.{name}")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):  # `import losslens.x as y` / `from . import x`, then y._z
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[-1]] = a.name
        modules = {alias for alias, name in aliases.items()
                   if any(m == name or m.endswith("." + name) for m in MODULES)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                bad.append(f"{_where(module, node.lineno)} uses {node.value.id}.{node.attr}")
    assert bad == []


def test_no_import_circles():
    # the facade (package root: `__version__` and `read` only, first test) and the display
    # hooks (lazy, by name) stand apart
    graph = {m: {t for t, _, _ in imports(m, hooks=False)
                 if t in MODULES and t != m and t != "losslens"}
             for m in MODULES if m != "losslens"}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for m in MODULES:
        if m not in index and m in graph:
            visit(m)
    assert [c for c in circles if c not in KNOWN_CIRCLES] == []


def test_modules_stay_small():
    big = {str(p.relative_to(PACKAGE.parent)): n for p in MODULES.values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert {k: v for k, v in big.items() if k not in OVER} == {}


@pytest.mark.parametrize("source, check, message", [
    ("from .cli import app\n", test_layers_and_the_cli, "imports the CLI"),
    ("from .report.markdown import render\n", test_layers_and_the_cli,
     "analysis imports losslens.report.markdown"),
    ("from .readers import _walk\n", test_no_private_names_of_another_module,
     "imports losslens.readers._walk"),
    ("from . import frame\nframe._build_run\n", test_no_private_names_of_another_module,
     "uses frame._build_run"),
    ("from . import pipeline\n", test_no_import_circles, "_contract_probe"),
])
def test_the_contract_catches_a_violation(monkeypatch, source, check, message):
    """The checks above can fail: a probe module (in the analysis layer) that breaks each."""
    fake = PACKAGE / "_contract_probe.py"
    fakes = {fake: source}
    monkeypatch.setitem(MODULES, "losslens._contract_probe", fake)
    if check is test_no_import_circles:  # and the pipeline imports the probe back
        pipeline = MODULES["losslens.pipeline"]
        fakes[pipeline] = pipeline.read_text(encoding="utf-8") + "\nfrom . import _contract_probe\n"
    monkeypatch.setattr(Path, "read_text", _reading(fakes))
    with pytest.raises(AssertionError, match=message):
        check()


def _reading(fakes):
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        return fakes[self] if self in fakes else real(self, *args, **kwargs)

    return read_text
