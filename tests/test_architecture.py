"""The import graph points one way and has no cycle; modules stay small or say why.

Layers (README "Architecture"): data < factors < backtest < {mining, models} < CLI, where the
CLI is ``mining.cli`` and ``mining.cli_*``. Every import counts, also one inside a function
body or under ``TYPE_CHECKING``: a lazy import still makes the importing module depend on the
imported one.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "factors", "backtest", "mining", "models", "prompts")
LAYER = {"data": 0, "prompts": 0, "factors": 1, "backtest": 2, "mining": 3, "models": 3}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (a package's ``__init__`` for a package)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(mod: str, path: Path) -> set[str]:
    deps: set[str] = set()
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n.split(".")[0] in PACKAGES:
                target = _resolve(n)
                if target and target != mod:
                    deps.add(target)
    return deps


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(mod: str) -> int:
    if mod == "mining.cli" or mod.startswith("mining.cli_"):
        return 4
    return LAYER[mod.split(".")[0]]


def test_no_upward_import():
    bad = [f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps
           if _layer(b) > _layer(a)]
    assert not bad, "imports pointing up the layers:\n" + "\n".join(sorted(bad))


def test_mining_and_models_do_not_import_each_other():
    bad = [f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps
           if _layer(a) == 3 and _layer(b) == 3 and a.split(".")[0] != b.split(".")[0]]
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycle():
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(GRAPH.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_module_size_or_reason(mod):
    """A module over 500 lines states why at its top (a docstring line ``Size: ...``)."""
    path = MODULES[mod]
    n = len(path.read_text(encoding="utf-8").splitlines())
    if n <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert "Size:" in doc, f"{path.relative_to(ROOT)} has {n} lines and no 'Size:' reason"


def test_no_reexport_shim():
    """No module imports a name only to hand it on (``# noqa: F401`` re-exports)."""
    bad = [str(p.relative_to(ROOT)) for p in MODULES.values()
           if "re-export" in p.read_text(encoding="utf-8")
           and "noqa: F401" in p.read_text(encoding="utf-8")]
    assert not bad, bad
