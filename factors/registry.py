"""The operator registry: the single source of truth for the factor language's operators.

Every operator is a plain Python function registered with :func:`register` in one of the
``factors/ops_*.py`` modules. The parser's whitelist, the GP function set, the LLM prompt's
operator table, ``mine ops`` and the registry-wide invariant tests all read :data:`REGISTRY`, so
adding an operator touches exactly one file.

Calling conventions (all arrays are ``float64`` of shape ``(T, N)``: time on axis 0, stocks on
axis 1; NaN means missing):

* ``kind="elementwise"``: ``func(*panels) -> ndarray``.
* ``kind="ts"`` (time series, along axis 0, per stock): ``func(*panels, *windows) -> ndarray``;
  windows are positive Python ints. NaN inputs are skipped: the window covers the stock's last
  ``window`` valid observations (its own trading days, as in Qlib), the output at a NaN input is
  NaN and the first ``window - 1`` valid observations are NaN (warm-up, min_periods = window).
* ``kind="cs"`` (cross-sectional, along axis 1, per date): ``func(*panels, mask=mask)`` where
  ``mask`` is a boolean ``(T, N)`` universe mask or ``None`` (all stocks). Entries outside the
  mask are NaN in the output and ignored by the statistics.

Operators never mutate their inputs and always return a new array of the input's shape.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Literal

Kind = Literal["elementwise", "ts", "cs"]

#: Windows offered to genetic programming for ``ts_*`` operators when none are given.
DEFAULT_GP_WINDOWS: tuple[int, ...] = (5, 10, 20, 40, 60)


@dataclass(frozen=True)
class Operator:
    """One registered operator.

    Attributes
    ----------
    name : str
        Name used in formulas (``ts_mean``, ``cs_rank``, ``add``...).
    kind : {"elementwise", "ts", "cs"}
    n_inputs : int
        Number of panel arguments.
    n_windows : int
        Number of trailing positive-integer window arguments (0 or 1).
    min_window : int
        Smallest allowed window (e.g. 2 for ``ts_std``).
    func : callable
        The implementation, see the module docstring for its calling convention.
    doc : str
        One-line summary (first line of the function docstring).
    infix : str or None
        Infix symbol (``+ - * /``) used by the parser and ``unparse``; ``None`` for calls.
    gp : bool
        Whether genetic programming may use the operator.
    gp_windows : tuple of int
        Windows offered to genetic programming (``ts_*`` only).
    """

    name: str
    kind: Kind
    n_inputs: int
    n_windows: int
    min_window: int
    func: Callable = field(repr=False, compare=False)
    doc: str = ""
    infix: str | None = None
    gp: bool = True
    gp_windows: tuple[int, ...] = ()

    @property
    def signature(self) -> str:
        """Human-readable call signature, e.g. ``ts_corr(x, y, window)``."""
        names = ["x", "y", "z"][: self.n_inputs] if self.n_inputs <= 3 else [
            f"x{i}" for i in range(self.n_inputs)]
        if self.name == "where":
            names = ["cond", "x", "y"]
        args = names + (["window"] if self.n_windows else [])
        return f"{self.name}({', '.join(args)})"


#: name -> Operator, filled by the ``@register`` decorators when :mod:`factors.ops` is imported.
REGISTRY: dict[str, Operator] = {}


def register(name: str, *, kind: Kind, n_inputs: int, n_windows: int = 0, min_window: int = 1,
             infix: str | None = None, gp: bool = True,
             gp_windows: tuple[int, ...] | None = None) -> Callable[[Callable], Callable]:
    """Register ``func`` as operator ``name`` (decorator).

    Raises
    ------
    ValueError
        If the name is taken, does not follow the ``ts_``/``cs_`` prefix rule for its kind, or the
        function has no docstring.
    """
    if kind == "ts" and not name.startswith("ts_"):
        raise ValueError(f"time-series operator {name!r} must be named ts_*")
    if kind == "cs" and not name.startswith("cs_"):
        raise ValueError(f"cross-sectional operator {name!r} must be named cs_*")
    if kind == "elementwise" and name.startswith(("ts_", "cs_")):
        raise ValueError(f"elementwise operator {name!r} must not use the ts_/cs_ prefix")

    def deco(func: Callable) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"operator {name!r} registered twice")
        doc = inspect.getdoc(func) or ""
        if not doc:
            raise ValueError(f"operator {name!r} needs a numpydoc docstring")
        windows = (gp_windows if gp_windows is not None
                   else (DEFAULT_GP_WINDOWS if n_windows else ()))
        REGISTRY[name] = Operator(
            name=name, kind=kind, n_inputs=n_inputs, n_windows=n_windows,
            min_window=min_window, func=func, doc=doc.splitlines()[0].strip(), infix=infix,
            gp=gp, gp_windows=tuple(w for w in windows if w >= min_window))
        return func

    return deco


def get_op(name: str) -> Operator:
    """Return the operator called ``name``.

    Raises
    ------
    KeyError
        If no such operator is registered (the message lists the known ones).
    """
    _ensure_loaded()
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def all_ops() -> list[Operator]:
    """All registered operators, sorted by kind then name."""
    _ensure_loaded()
    order = {"elementwise": 0, "ts": 1, "cs": 2}
    return sorted(REGISTRY.values(), key=lambda o: (order[o.kind], o.name))


def _ensure_loaded() -> None:
    # Importing the ops modules runs their @register decorators.
    from factors import ops  # noqa: F401
