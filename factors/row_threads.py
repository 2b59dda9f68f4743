"""Row-parallel kernels inside one call: a day-by-day kernel's rows split over a few threads.

The executors of :mod:`factors.parallel` run many independent tasks (programs, formulas) at
once. Some stages run one large computation at a time instead, e.g. the selection walk of
``mine gp`` evaluating one candidate on the whole market, and leave the other cores idle.
Kernels whose rows (days) are independent -- :func:`factors.row_order.row_orders`,
:func:`factors.row_order.row_ranks` (``cs_rank``), :func:`backtest.metrics_ic.spearman_from_orders`
-- call :func:`split_rows`, which runs them on contiguous row ranges in :func:`row_threads` threads (the numba kernels release the GIL).
Results are bit-identical to one thread: each row is computed by the same code either way.

The number of threads is a context variable, 1 unless a caller opens
``with row_threads(n):``. Threads of a pool start with an empty context, so tasks running in an
executor's worker threads stay single-threaded (no nested oversubscription).
"""
from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

__all__ = ["row_threads", "split_rows", "current_row_threads"]

_THREADS: contextvars.ContextVar[int] = contextvars.ContextVar("alphamine_row_threads",
                                                               default=1)
#: Rows below which a kernel is not split (thread start-up would cost more than it saves).
MIN_ROWS = 64


@contextmanager
def row_threads(n: int) -> Iterator[None]:
    """Within the block (this thread's context), :func:`split_rows` uses ``n`` threads.

    Parameters
    ----------
    n : int
        Threads, >= 1 (values below 1 mean 1).
    """
    token = _THREADS.set(max(1, int(n)))
    try:
        yield
    finally:
        _THREADS.reset(token)


def current_row_threads() -> int:
    """The thread count :func:`split_rows` uses here."""
    return _THREADS.get()


def split_rows(fn: Callable[[int, int], None], n_rows: int) -> None:
    """Call ``fn(lo, hi)`` on contiguous ranges covering ``[0, n_rows)``.

    One call ``fn(0, n_rows)`` in this thread unless :func:`row_threads` asked for more and
    every range keeps at least :data:`MIN_ROWS` rows; otherwise one range per thread, run
    concurrently. ``fn`` writes its rows' results into preallocated outputs; an exception in
    any range is raised here.
    """
    n = min(_THREADS.get(), n_rows // MIN_ROWS)
    if n <= 1:
        fn(0, n_rows)
        return
    bounds = [n_rows * i // n for i in range(n + 1)]
    with ThreadPoolExecutor(n, thread_name_prefix="alphamine-rows") as pool:
        for f in [pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(n)]:
            f.result()
