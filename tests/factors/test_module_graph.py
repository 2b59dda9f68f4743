"""No import cycle among the modules of ``factors/``, counting imports inside function bodies."""
from __future__ import annotations

import ast
from pathlib import Path

import factors

PKG = Path(factors.__file__).parent


def _imports(path: Path) -> set[str]:
    """``factors.*`` modules imported anywhere in ``path`` (top level or function bodies)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            if node.module == "factors":
                out |= {f"factors.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("factors.") and (PKG / f"{m[8:]}.py").exists()}


def test_no_import_cycles_in_factors():
    graph = {f"factors.{p.stem}": _imports(p) for p in PKG.glob("*.py")}

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph.get(start, ()))
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return seen

    cycles = sorted(m for m in graph if m in reach(m))
    assert not cycles, f"modules importing themselves back: {cycles}"


def test_no_reexport_shims():
    assert not (PKG / "ops.py").exists() and not (PKG / "_kernels.py").exists()
    assert "factors._kernels_ts" not in _imports(PKG / "_kernels_cs.py")
    assert "factors.operators" not in _imports(PKG / "registry.py")
    for p in PKG.glob("ops_*.py"):
        assert "factors.operators" not in _imports(p), p.name
