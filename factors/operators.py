"""The operator catalogue: every built-in operator, loaded, and the look-ups consumers use.

Importing this module imports every ``factors/ops_*.py`` module (found with :mod:`pkgutil`, so
a new operator module needs no edit here), whose ``@register`` decorators fill
:data:`factors.registry.REGISTRY`. The parser, evaluator, ``unparse``, GP, the LLM prompt and
the CLI read operators through :func:`get_op` and :func:`all_ops`. How to add an operator is
described in :mod:`factors.registry`.
"""
from __future__ import annotations

import importlib
import pkgutil

import factors
from factors.registry import REGISTRY, Operator

#: Names of the operator modules loaded on import (``factors.ops_*``), sorted.
OPERATOR_MODULES: tuple[str, ...] = tuple(sorted(
    f"factors.{m.name}" for m in pkgutil.iter_modules(factors.__path__)
    if m.name.startswith("ops_")))
for _module in OPERATOR_MODULES:
    importlib.import_module(_module)

_KIND_ORDER = {"elementwise": 0, "ts": 1, "cs": 2}


def get_op(name: str) -> Operator:
    """Return the operator called ``name``.

    Raises
    ------
    KeyError
        If no such operator is registered (the message lists the known ones).
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def all_ops() -> list[Operator]:
    """All registered operators, sorted by kind then name."""
    return sorted(REGISTRY.values(), key=lambda o: (_KIND_ORDER[o.kind], o.name))
