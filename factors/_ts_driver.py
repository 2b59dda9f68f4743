"""2-D drivers for the ``ts_*`` operators, compiled per 1-D rolling kernel.

A ``ts`` operator registered with ``kernel=k`` (:func:`factors.registry.register`) gets its
implementation from :func:`rolling_function`, which compiles a driver for ``k``:

* one input, ``k(v, w, o)``: ``v`` the stock's compact finite series (length ``n``), ``w`` the
  window, ``o`` the output (length ``n``, fully written by ``k``);
* two inputs, ``k(a, b, w, o)``: ``a`` and ``b`` compacted over the rows where both are finite.

NaN policy (that of every ``ts`` operator, see :mod:`factors.registry`): a stock's observations
are its finite entries; the kernel sees only those, its results are scattered back to the rows
they came from; every other row, and every non-finite result, is NaN. Causal by construction
when the kernel is: output row ``t`` only reads observations at rows ``<= t``.

Observation counters and positions are ``np.uintp``: numba adds negative-index wrap-around
code to every signed index, and the compaction stores through its counter each step.

Layout: a C-ordered ``(T, N)`` panel has its columns copied in blocks of 16 into contiguous
rows (read and written a cache line at a time), each column is compacted branch-free, the
kernel runs on the compact series (directly on the block row when the column has no gap). A
panel stored column by column (Fortran order, :func:`is_column_layout`) skips both copies: a
second driver runs on its transpose, each stock's series already contiguous, and the result
is Fortran-ordered too. The two copies are most of the time of a cheap kernel (a
2187 x 580 panel: ``ts_delay`` 15.7 ms blocked vs 6.1 ms by columns, ``ts_mean(10)`` 33.5
vs 15.4 ms, ``np.asfortranarray`` 6.7 ms), so the evaluators (:mod:`factors.expr_eval`,
:mod:`mining.gp_eval`) hand ``ts_*`` operators column-ordered panels and keep chains of them
in that layout; values are identical in both layouts (the same kernel on the same series).

Why one driver per kernel, made by copying a template function
---------------------------------------------------------------
The driver is the template below (:func:`_unary_template`, :func:`_binary_template`) whose
global ``_KERNEL`` is bound to the operator's kernel: :func:`make_driver` builds a new Python
function from the template's code object with its own globals dict, and ``njit(cache=True)``
compiles it; the kernel call is resolved at compile time and inlined like any numba call, so
nothing is dispatched at run time and the previous central ``_dispatch(code, ...)`` branch
(and its op-code constants) is gone. Alternatives measured (numba 0.68, fresh processes, warm
disk cache): a closure over the kernel (``def make(k): @njit(cache=True) def drive(...)``) and
a generic driver taking the kernel as an argument both **miss the disk cache in every new
process** (numba keys closures and dispatcher-typed signatures on the kernel dispatcher's
per-process uuid), so each process recompiles every driver (seconds) and the cache directory
grows; the template copy hits the cache. The cache index file is named after the driver's
``__qualname__``, which holds the kernel's module, name and a hash of its source file, so
drivers of different kernels never share an entry and editing the kernel's file recompiles
its driver (numba itself only watches the driver's file, this one); the superseded
entries stay in ``__pycache__`` until deleted. Edits to helpers that a
kernel calls in a third file are not detected (numba's usual cache limitation).

Speed and numbers: the kernels and the driver loop are those of the former single
``ts_unary(x, w, code)``; outputs are bit-identical and per-operator times equal within noise.
Cold start with a warm cache loads one small driver per operator used instead of one large
driver holding every kernel. Measured on a shared 2-core machine, interleaved runs: all 21 ts
operators on a 2500 x 1500 panel (w=20) 3.15-3.24 CPU s before, 2.93-2.98 after; a fresh
process importing the factor language and evaluating a formula with 9 ts ops and ``cs_rank``
1.22-1.63 s before, 1.05-2.15 s after (median 1.60 vs 1.62; the registry now imports numba when
:mod:`factors.operators` is imported, the first evaluation is correspondingly faster).
"""
from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Callable

import numpy as np
from numba import njit

from factors.row_threads import split_rows

NAN = np.nan
_BLOCK = 16


@njit(cache=True, nogil=True)
def _load_block(x, j0, nb, col):
    for t in range(x.shape[0]):
        for b in range(nb):
            col[b, t] = x[t, j0 + b]


@njit(cache=True, nogil=True)
def _store_block(out, j0, nb, col):
    for t in range(out.shape[0]):
        for b in range(nb):
            r = col[b, t]
            out[t, j0 + b] = r if np.isfinite(r) else NAN


def _unary_template(x, w, out):  # pragma: no cover  (compiled copies run, see make_driver)
    """Apply ``_KERNEL`` with window ``w`` to each column of C-ordered ``x`` (T, N)."""
    T, N = x.shape
    col = np.empty((_BLOCK, T))
    vals = np.empty(T)
    res = np.empty(T)
    pos = np.empty(T, np.uintp)
    for j0 in range(0, N, _BLOCK):
        nb = min(_BLOCK, N - j0)
        _load_block(x, j0, nb, col)
        for b in range(nb):
            c = col[b]
            n = np.uintp(0)
            for t in range(T):  # branch-free compaction of the finite observations
                val = c[t]
                vals[n] = val
                pos[n] = t
                n += np.uintp(np.isfinite(val))
            if n == T:
                _KERNEL(vals, w, c)  # noqa: F821  (bound per driver)
                continue
            if n > 0:
                _KERNEL(vals[:n], w, res[:n])  # noqa: F821
            c[:] = NAN
            for k in range(n):
                c[pos[k]] = res[k]
        _store_block(out, j0, nb, col)
    return out


def _binary_template(x, y, w, out):  # pragma: no cover  (compiled copies run)
    """Apply ``_KERNEL`` to matching columns of ``x`` and ``y`` over their joint observations."""
    T, N = x.shape
    cx = np.empty((_BLOCK, T))
    cy = np.empty((_BLOCK, T))
    va = np.empty(T)
    vb = np.empty(T)
    res = np.empty(T)
    pos = np.empty(T, np.uintp)
    for j0 in range(0, N, _BLOCK):
        nb = min(_BLOCK, N - j0)
        _load_block(x, j0, nb, cx)
        _load_block(y, j0, nb, cy)
        for b in range(nb):
            c = cx[b]
            d = cy[b]
            n = np.uintp(0)
            for t in range(T):
                p = c[t]
                q = d[t]
                va[n] = p
                vb[n] = q
                pos[n] = t
                n += np.uintp(np.isfinite(p) and np.isfinite(q))
            if n > 0:
                _KERNEL(va[:n], vb[:n], w, res[:n])  # noqa: F821  (bound per driver)
            c[:] = NAN
            for k in range(n):
                c[pos[k]] = res[k]
        _store_block(out, j0, nb, cx)
    return out


def _unary_cols_template(xt, w, out):  # pragma: no cover  (compiled copies run)
    """Apply ``_KERNEL`` to each row of C-ordered ``xt`` (N, T): one stock's series per row."""
    N, T = xt.shape
    vals = np.empty(T)
    res = np.empty(T)
    pos = np.empty(T, np.uintp)
    for j in range(N):
        c = xt[j]
        o = out[j]
        n = np.uintp(0)
        for t in range(T):
            val = c[t]
            vals[n] = val
            pos[n] = t
            n += np.uintp(np.isfinite(val))
        if n == T:
            _KERNEL(vals, w, o)  # noqa: F821  (bound per driver)
        else:
            if n > 0:
                _KERNEL(vals[:n], w, res[:n])  # noqa: F821
            o[:] = NAN
            for k in range(n):
                o[pos[k]] = res[k]
        for t in range(T):
            if not np.isfinite(o[t]):
                o[t] = NAN
    return out


def _binary_cols_template(xt, yt, w, out):  # pragma: no cover  (compiled copies run)
    """Apply ``_KERNEL`` to matching rows of ``xt`` and ``yt`` (N, T) over joint observations."""
    N, T = xt.shape
    va = np.empty(T)
    vb = np.empty(T)
    res = np.empty(T)
    pos = np.empty(T, np.uintp)
    for j in range(N):
        c = xt[j]
        d = yt[j]
        o = out[j]
        n = np.uintp(0)
        for t in range(T):
            p = c[t]
            q = d[t]
            va[n] = p
            vb[n] = q
            pos[n] = t
            n += np.uintp(np.isfinite(p) and np.isfinite(q))
        o[:] = NAN
        if n > 0:
            _KERNEL(va[:n], vb[:n], w, res[:n])  # noqa: F821  (bound per driver)
            for k in range(n):
                r = res[k]
                o[pos[k]] = r if np.isfinite(r) else NAN
    return out


def _source_tag(kernel) -> str | None:
    """``module_name_hash`` of the kernel's source file, or None when it has no file."""
    py = getattr(kernel, "py_func", None)
    if py is None:
        raise TypeError(f"kernel {kernel!r} must be a numba @njit function")
    if inspect.getmodule(py) is None:  # not in sys.modules: numba cannot reload it from disk
        return None
    try:
        with open(inspect.getfile(py), "rb") as fh:
            digest = hashlib.blake2b(fh.read(), digest_size=6).hexdigest()
    except (OSError, TypeError):
        return None
    mod = (py.__module__ or "m").replace(".", "_")
    return f"{mod}_{py.__qualname__.replace('.', '_')}_{digest}"


def make_driver(kernel, n_inputs: int, columns: bool = False) -> Callable:
    """Compile-on-first-call 2-D driver for 1-D rolling ``kernel`` (see the module docstring).

    Parameters
    ----------
    kernel : numba dispatcher
        ``k(v, w, o)`` for ``n_inputs=1``, ``k(a, b, w, o)`` for ``n_inputs=2``.
    n_inputs : {1, 2}
    columns : bool, default False
        Build the driver of the column layout instead: ``driver(xt, w, out)`` on C-ordered
        ``(N, T)`` arrays (the transposes of Fortran-ordered panels).

    Returns
    -------
    numba dispatcher
        ``driver(x, w, out)`` or ``driver(x, y, w, out)`` on C-ordered float64 ``(T, N)`` panels
        writing the preallocated ``out`` of that shape (allocated by NumPy: with the output
        allocated inside the numba kernel, a whole-market ``ts_mean`` spent 74 of its 183 ms
        in system time, page faults; 11 ms this way. Not huge pages: ``AnonHugePages`` stays
        0 on the measuring VM); ``(N, T)`` with ``columns``.

    Raises
    ------
    ValueError
        If ``n_inputs`` is not 1 or 2.
    TypeError
        If ``kernel`` is not a numba function.
    """
    if n_inputs not in (1, 2):
        raise ValueError(f"rolling kernels take 1 or 2 input series, not {n_inputs}")
    if columns:
        template = _unary_cols_template if n_inputs == 1 else _binary_cols_template
    else:
        template = _unary_template if n_inputs == 1 else _binary_template
    tag = _source_tag(kernel)
    g = dict(template.__globals__)
    g["_KERNEL"] = kernel
    fn = types.FunctionType(template.__code__, g, template.__name__)
    fn.__qualname__ = f"ts_{'cols' if columns else 'driver'}_{tag or 'nofile'}"
    fn.__doc__ = template.__doc__
    return njit(cache=tag is not None, nogil=True)(fn)


def _window(name: str, window, lo: int) -> int:
    """Validate ``window`` against ``lo`` (the operator's ``min_window``); return it as int."""
    if isinstance(window, (bool, np.bool_)) or not isinstance(window, (int, np.integer)):
        raise ValueError(f"{name}: window must be an integer, got {window!r}")
    if window < lo:
        raise ValueError(f"{name}: window {window} is below the minimum window {lo}")
    return int(window)


def is_column_layout(x) -> bool:
    """True for a 2-D float64 array stored column by column (Fortran order, not also C)."""
    return (isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype == np.float64
            and x.flags.f_contiguous and not x.flags.c_contiguous)


def _panel(name: str, x) -> tuple[np.ndarray, bool]:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim == 1:
        return a.reshape(-1, 1), True
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a (T, N) panel or a (T,) series, got shape {a.shape}")
    return a, False


def rolling_function(name: str, decl: Callable, kernel, n_inputs: int, n_windows: int,
                     min_window: int) -> tuple[Callable, Callable]:
    """The implementation of ``ts`` operator ``name`` declared by ``decl`` with ``kernel``.

    Parameters
    ----------
    name : str
        Operator name (error messages).
    decl : callable
        The declared function; its name, docstring and signature are copied.
    kernel : numba dispatcher
        1-D rolling kernel (module docstring).
    n_inputs : {1, 2}
    n_windows : int
        Must be 1.
    min_window : int

    Returns
    -------
    func : callable
        ``func(*panels, window)``: accepts ``(T, N)`` panels or ``(T,)`` series of any numeric
        dtype, returns a new float64 array of that shape; ValueError for a non-integer window,
        a window below ``min_window``, a non 1-D/2-D input or (two inputs) differing shapes.
    driver : numba dispatcher
        The compiled 2-D driver.

    Raises
    ------
    ValueError
        If ``n_windows != 1`` or ``n_inputs`` is not 1 or 2.
    """
    if n_windows != 1:
        raise ValueError(f"{name}: a rolling kernel takes exactly one window")
    driver = make_driver(kernel, n_inputs)
    cols = make_driver(kernel, n_inputs, columns=True)
    if n_inputs == 1:
        def func(x, window):
            w = _window(name, window, min_window)
            if is_column_layout(x):
                out = np.empty(x.shape, order="F")
                xt, ot = x.T, out.T                # stocks are independent: split them
                split_rows(lambda lo, hi: cols(xt[lo:hi], w, ot[lo:hi]), xt.shape[0])
                return out
            a, squeeze = _panel(name, x)
            out = np.empty(a.shape)
            driver(a, w, out)
            return out[:, 0] if squeeze else out
    else:
        def func(x, y, window):
            w = _window(name, window, min_window)
            if is_column_layout(x) or is_column_layout(y):
                if np.shape(x) != np.shape(y):
                    raise ValueError(f"{name}: x and y shapes differ: {np.shape(x)} vs "
                                     f"{np.shape(y)}")
                out = np.empty(np.shape(x), order="F")
                xt = np.asfortranarray(x, dtype=np.float64).T
                yt = np.asfortranarray(y, dtype=np.float64).T
                ot = out.T
                split_rows(lambda lo, hi: cols(xt[lo:hi], yt[lo:hi], w, ot[lo:hi]),
                           xt.shape[0])
                return out
            a, squeeze = _panel(name, x)
            b, _ = _panel(name, y)
            if a.shape != b.shape:
                raise ValueError(f"{name}: x and y shapes differ: {np.shape(x)} vs {np.shape(y)}")
            out = np.empty(a.shape)
            driver(a, b, w, out)
            return out[:, 0] if squeeze else out
    for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
        setattr(func, attr, getattr(decl, attr))
    func.__wrapped__ = decl
    return func, driver
