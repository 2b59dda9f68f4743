"""Benchmark timing: wall-clock and process CPU seconds of one call.

CPU time (``time.process_time``, all threads of this process) is reported next to wall time
because the benchmark machine is shared: other jobs inflate wall time, much less CPU time. Every
kernel compared here is single-threaded, so on a quiet machine the two agree.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Took:
    """Seconds spent: ``wall`` (perf_counter) and ``cpu`` (process_time)."""

    wall: float
    cpu: float

    def __add__(self, other: "Took") -> "Took":
        return Took(self.wall + other.wall, self.cpu + other.cpu)

    def __sub__(self, other: "Took") -> "Took":
        return Took(self.wall - other.wall, self.cpu - other.cpu)


ZERO = Took(0.0, 0.0)


def timed(fn: Callable[[], Any]) -> tuple[Took, Any]:
    """Run ``fn()`` once; return (its Took, its result)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return Took(time.perf_counter() - w, time.process_time() - c), out


def best_of(fn: Callable[[], Any], n: int = 3) -> tuple[Took, Any]:
    """Run ``fn()`` ``n`` times; return (minimum wall and minimum CPU seconds, last result)."""
    best_w = best_c = float("inf")
    out = None
    for _ in range(n):
        t, out = timed(fn)
        best_w, best_c = min(best_w, t.wall), min(best_c, t.cpu)
    return Took(best_w, best_c), out
