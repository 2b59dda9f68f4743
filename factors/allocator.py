"""Keep freed panel memory inside the process instead of handing it back to the OS (glibc).

A ``(T, N)`` float64 panel is 8-10 MB (a CSI300 GP window of 2,187 x 580, one full-market
year of 243 x 4,428). glibc's ``malloc`` serves a block that large with a fresh ``mmap`` and
unmaps it when it is freed (or trims the heap's top), so the next panel of the same size
page-faults all of its pages in again: formula evaluation allocates one or more panels per
operator, so a run spends a tenth of its time in the kernel zeroing pages. Setting glibc's
``M_MMAP_THRESHOLD`` to its maximum (32 MiB on 64-bit) and ``M_TRIM_THRESHOLD`` high makes
such blocks come from the heap and freed ones stay there for the next operator: no page
faults once the heap has grown to the run's working set. The cost is that the process keeps
its peak heap (resident memory does not shrink back after a large intermediate is freed);
panels above 32 MiB (full-market multi-year panels) are still mapped and unmapped as before.

Threads: glibc gives each new thread its own arena, whose 64 MiB sub-heaps are unmapped as
soon as they are empty, so the pool threads of a GP run (a fresh pool per run) page-faulted
their panels in all over again (75,000 faults, 0.7 s of system time in a 5 s run of
``bench/parallel_bench.py``'s threads). ``M_ARENA_MAX = 1`` keeps every thread on the main heap:
439-3,148 faults and 0.1 s. The arena's lock costs nothing measurable here: the kernels
allocate a few large blocks, not many small ones.

Measured on this 2-core host (2026-12-01, three alternated pairs of runs, the second pass of
the 101 Alpha101 formulas over the full market in 2021, outputs kept): 8.0-9.1 s with 40,000
minor page faults and 0.8-1.1 s of system time by default; 7.0-8.0 s with 7 faults and no
system time with the thresholds set (the same settings through ``GLIBC_TUNABLES``). A serial
GP run (120 x 3 on the CSI300 window): 11.5-12.6 s -> 10.2-11.8 s.

:func:`keep_freed_memory` is called once per process by the ``mine`` command, by the worker
processes and Ray actors of :mod:`factors.parallel` and :mod:`factors.cluster`, and by the
benchmarks that time what ``mine`` does. Set ``ALPHAMINE_MALLOC=default`` to leave the
allocator as it is. On a C library without ``mallopt`` (musl, macOS, Windows) it does nothing.
"""
from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory"]

#: glibc's ``mallopt`` parameters (``<malloc.h>``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: The largest mmap threshold glibc accepts on 64-bit (``HEAP_MAX_SIZE / 2``).
_MMAP_THRESHOLD = 32 * 1024 * 1024
#: Keep up to 2 GiB of free memory at the heap's top (``mallopt`` takes an ``int``).
_TRIM_THRESHOLD = 2 ** 31 - 1

_DONE: list[bool] = []


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds and keep one arena for this process (once; later
    calls are free). Call it before starting threads.

    Returns
    -------
    bool
        True when all three are set (now or by an earlier call); False on a C library
        without ``mallopt``, off Linux, or with ``ALPHAMINE_MALLOC=default`` in the
        environment. Never raises.
    """
    if _DONE:
        return _DONE[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("ALPHAMINE_MALLOC", "") != "default":
        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):       # not glibc
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            mallopt.restype = ctypes.c_int
            ok = (mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
                  and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
                  and mallopt(_M_ARENA_MAX, 1) == 1)
    _DONE.append(ok)
    return ok
