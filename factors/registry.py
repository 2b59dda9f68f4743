"""The operator registry: :class:`Operator`, the :func:`register` decorator and :data:`REGISTRY`.

Every operator is a plain Python function registered with :func:`register` in one of the
``factors/ops_*.py`` modules; :mod:`factors.operators` imports those modules (it discovers them,
so a new module needs no edit elsewhere) and is where consumers get :func:`~factors.operators.get_op`
and :func:`~factors.operators.all_ops`. The parser's whitelist, the GP function set, the LLM
prompt's operator table, ``mine ops`` and the registry-wide invariant tests all read the
registry, so adding an operator touches exactly one file. This module imports no operator
module.

Adding an operator
------------------
Write one function in any ``factors/ops_*.py`` module (or in your own module, imported before
use) and decorate it; :func:`register` reads everything else from the function:

* name: the function's ``__name__`` (``name=`` only for names that clash with a builtin, e.g.
  ``abs``, or are not identifiers);
* kind: ``ts_*`` -> ``"ts"``, ``cs_*`` -> ``"cs"``, anything else -> ``"elementwise"``;
* panel inputs: the positional parameters before the first window parameter;
* windows: the parameters named ``window`` (or ``window<suffix>``), ``ts`` operators only;
* a ``cs`` operator takes the universe mask as keyword ``mask``;
* the one-line doc: the first line of the (required, numpydoc) docstring.

::

    @register                               # elementwise: the body is the implementation
    def clip1(x):
        \"\"\"Clip to [-1, 1]. ...\"\"\"
        return np.clip(x, -1.0, 1.0)

    @njit(cache=True)
    def _k_range(v, w, o):                  # 1-D rolling kernel on a compact finite series
        ...

    @register(min_window=2, kernel=_k_range)
    def ts_range(x, window):                # ts with a kernel: only the declaration + docstring
        \"\"\"Rolling max - min. ...\"\"\"

A ``ts`` operator registered with ``kernel=k`` gets its implementation from
:func:`factors._ts_driver.rolling_function`: window validation, 1-D/2-D handling and a numba
driver compiled for ``k`` (see that module for the driver design); the decorated function's
body is not used. Without ``kernel`` the body is the implementation (any kind).

Calling conventions (all arrays are ``float64`` of shape ``(T, N)``: time on axis 0, stocks on
axis 1; NaN means missing) -- :meth:`Operator.apply` holds this dispatch:

* ``elementwise``: ``func(*panels) -> ndarray``.
* ``ts`` (time series, along axis 0, per stock): ``func(*panels, *windows) -> ndarray``;
  windows are positive Python ints. NaN policy: NaN inputs are skipped: the window covers the
  stock's last ``window`` valid observations (its own trading days, as in Qlib), the output at
  a NaN input is NaN and the first ``window - 1`` valid observations are NaN (warm-up,
  min_periods = window).
* ``cs`` (cross-sectional, along axis 1, per date): ``func(*panels, mask=mask)`` where
  ``mask`` is a boolean ``(T, N)`` universe mask or ``None`` (all stocks). Entries outside the
  mask are NaN in the output and ignored by the statistics.

Operators never mutate their inputs and always return a new array of the input's shape.
Registrations can be undone (:func:`unregister`, :func:`scope`), e.g. for test-only operators.
"""
from __future__ import annotations

import builtins
import inspect
import keyword
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from factors._ts_driver import rolling_function

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
    input_names : tuple of str
        Names of the panel parameters, in order.
    window_names : tuple of str
        Names of the trailing positive-integer window parameters (``ts`` only).
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
    kernel : numba dispatcher or None
        The 1-D rolling kernel ``k(v, w, o)`` (``k(a, b, w, o)`` for two inputs) of a ``ts``
        operator registered with ``kernel=``.
    driver : numba dispatcher or None
        The 2-D driver compiled for ``kernel``: ``driver(x, w)`` or ``driver(x, y, w)``.
    """

    name: str
    kind: Kind
    input_names: tuple[str, ...]
    window_names: tuple[str, ...]
    min_window: int
    func: Callable = field(repr=False, compare=False)
    doc: str = ""
    infix: str | None = None
    gp: bool = True
    gp_windows: tuple[int, ...] = ()
    kernel: Callable | None = field(default=None, repr=False, compare=False)
    driver: Callable | None = field(default=None, repr=False, compare=False)

    @property
    def n_inputs(self) -> int:
        """Number of panel arguments."""
        return len(self.input_names)

    @property
    def n_windows(self) -> int:
        """Number of trailing window arguments."""
        return len(self.window_names)

    @property
    def never_inf(self) -> bool:
        """True when no output can hold ``+-inf``: the rolling kernels' driver writes NaN for
        every non-finite result (:mod:`factors._ts_driver`), so the evaluators skip their
        ``+-inf`` pass after such an operator."""
        return self.kernel is not None

    @property
    def signature(self) -> str:
        """Human-readable call signature, e.g. ``ts_corr(x, y, window)``."""
        return f"{self.name}({', '.join(self.input_names + self.window_names)})"

    def apply(self, panels: Sequence, windows: Sequence[int] = (), mask=None) -> np.ndarray:
        """Call the operator with the calling convention of its kind.

        Parameters
        ----------
        panels : sequence of ndarray
            The ``n_inputs`` panel arguments.
        windows : sequence of int, optional
            The ``n_windows`` window arguments.
        mask : bool ndarray (T, N), optional
            Universe mask, handed to ``cs`` operators and ignored by the others.

        Returns
        -------
        ndarray of float64

        Raises
        ------
        ValueError
            If the numbers of panels or windows do not match the operator, or the operator
            rejects its arguments.
        """
        if len(panels) != self.n_inputs or len(windows) != self.n_windows:
            raise ValueError(f"{self.name} takes {self.n_inputs} panel(s) and {self.n_windows} "
                             f"window(s), as in {self.signature}; got {len(panels)} and "
                             f"{len(windows)}")
        if self.kind == "ts":
            out = self.func(*panels, *windows)
        elif self.kind == "cs":
            out = self.func(*panels, mask=mask)
        else:
            out = self.func(*panels)
        return np.asarray(out, dtype=np.float64)


#: name -> Operator, filled by the ``@register`` decorators (see :mod:`factors.operators`).
REGISTRY: dict[str, Operator] = {}


def _kind_of(name: str) -> Kind:
    return "ts" if name.startswith("ts_") else "cs" if name.startswith("cs_") else "elementwise"


def _split_params(name: str, kind: Kind, func: Callable) -> tuple[tuple[str, ...],
                                                                   tuple[str, ...]]:
    """Panel and window parameter names of ``func``; ValueError if inconsistent with ``kind``."""
    params = list(inspect.signature(func).parameters.values())
    P = inspect.Parameter
    if any(p.kind in (P.VAR_POSITIONAL, P.VAR_KEYWORD) for p in params):
        raise ValueError(f"operator {name!r}: *args/**kwargs are not allowed")
    has_mask = any(p.name == "mask" for p in params)
    if kind == "cs" and not has_mask:
        raise ValueError(f"cross-sectional operator {name!r} must accept the keyword 'mask'")
    if kind != "cs" and has_mask:
        raise ValueError(f"operator {name!r}: only cs_* operators take 'mask'")
    params = [p for p in params if p.name != "mask"]
    if any(p.kind is P.KEYWORD_ONLY for p in params):
        raise ValueError(f"operator {name!r}: keyword-only parameters other than 'mask' are "
                         "not allowed")
    is_window = [p.name.startswith("window") for p in params]
    n_in = is_window.index(True) if True in is_window else len(params)
    if not all(is_window[n_in:]):
        raise ValueError(f"operator {name!r}: window parameters must come after every panel "
                         "parameter")
    inputs = tuple(p.name for p in params[:n_in])
    windows = tuple(p.name for p in params[n_in:])
    if kind == "ts" and not windows:
        raise ValueError(f"time-series operator {name!r} needs a 'window' parameter")
    if kind != "ts" and windows:
        raise ValueError(f"operator {name!r}: only ts_* operators take windows ({windows})")
    if not inputs:
        raise ValueError(f"operator {name!r} needs at least one panel parameter")
    if any(p.default is not P.empty for p in params):
        raise ValueError(f"operator {name!r}: panel and window parameters take no default")
    return inputs, windows


def register(func: Callable | None = None, *, name: str | None = None, min_window: int = 1,
             infix: str | None = None, gp: bool = True,
             gp_windows: tuple[int, ...] | None = None, kernel: Callable | None = None):
    """Register a function as an operator; usable bare (``@register``) or with options.

    Parameters
    ----------
    func : callable
        The operator (given when used bare).
    name : str, optional
        Formula name when the function's ``__name__`` cannot be it: a builtin's name (the
        function is then ``abs_``) or a non-identifier.
    min_window : int
        Smallest allowed window (``ts`` only).
    infix : str, optional
        Infix symbol for the parser and ``unparse``.
    gp : bool
        Whether genetic programming may use the operator.
    gp_windows : tuple of int, optional
        Windows offered to GP; default :data:`DEFAULT_GP_WINDOWS` for ``ts`` operators.
        Windows below ``min_window`` are dropped.
    kernel : numba dispatcher, optional
        1-D rolling kernel of a ``ts`` operator (see the module docstring); the implementation
        is then generated and the function's body is not used.

    Returns
    -------
    callable
        The implementation (the function itself, or the generated one for ``kernel=``).

    Raises
    ------
    ValueError
        If the name is taken, badly overridden or its prefix does not match the signature
        (``ts_*`` without a window, ``cs_*`` without ``mask``, windows elsewhere), the function
        has no docstring, ``kernel`` is given for a non-``ts`` operator or ``min_window < 1``.
    TypeError
        If ``kernel`` is not a numba ``@njit`` function.
    """
    def deco(fn: Callable) -> Callable:
        op_name = fn.__name__ if name is None else name
        if name is not None and name.isidentifier() and not keyword.iskeyword(name) \
                and not hasattr(builtins, name):
            raise ValueError(f"operator {name!r}: name= is only for builtin clashes and "
                             "non-identifiers; name the function instead")
        if op_name in REGISTRY:
            raise ValueError(f"operator {op_name!r} registered twice")
        kind = _kind_of(op_name)
        doc = inspect.getdoc(fn) or ""
        if not doc:
            raise ValueError(f"operator {op_name!r} needs a numpydoc docstring")
        inputs, windows = _split_params(op_name, kind, fn)
        if min_window < 1:
            raise ValueError(f"operator {op_name!r}: min_window must be >= 1")
        if kind != "ts" and (min_window != 1 or gp_windows is not None):
            raise ValueError(f"operator {op_name!r}: min_window/gp_windows are for ts_* only")
        if gp and len(windows) > 1:
            raise ValueError(f"operator {op_name!r}: GP handles one window; pass gp=False")
        impl, driver = fn, None
        if kernel is not None:
            if kind != "ts":
                raise ValueError(f"operator {op_name!r}: kernel= is for ts_* operators only")
            impl, driver = rolling_function(op_name, fn, kernel, len(inputs), len(windows),
                                            min_window)
        gpw = gp_windows if gp_windows is not None else (DEFAULT_GP_WINDOWS if windows else ())
        REGISTRY[op_name] = Operator(
            name=op_name, kind=kind, input_names=inputs, window_names=windows,
            min_window=min_window, func=impl, doc=doc.splitlines()[0].strip(), infix=infix,
            gp=gp, gp_windows=tuple(w for w in gpw if w >= min_window), kernel=kernel,
            driver=driver)
        return impl

    return deco if func is None else deco(func)


def unregister(name: str) -> Operator:
    """Remove operator ``name`` from the registry and return it.

    Raises
    ------
    KeyError
        If no such operator is registered.
    """
    return REGISTRY.pop(name)


@contextmanager
def scope() -> Iterator[None]:
    """Undo, on exit, every registration made inside the block (test-only operators).

    Import :mod:`factors.operators` before entering, so that the built-in operators are not
    registered (and then removed) inside the block.
    """
    before = dict(REGISTRY)
    try:
        yield
    finally:
        REGISTRY.clear()
        REGISTRY.update(before)
