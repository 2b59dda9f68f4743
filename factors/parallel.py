"""Run one function over many items, with the panels shared once per run.

The contract every executor keeps (serial here; threads and worker processes on one machine,
and a Ray cluster, plug in through :func:`make_executor`):

* ``share(arrays)`` is called once per run with the read-only ``(T, N)`` panels the tasks need
  and returns an opaque handle. A backend moves the panels once (shared memory, the Ray object
  store), never once per task.
* ``map(fn, items, shared)`` calls ``fn(panels, item)`` for every item, where ``panels`` is the
  mapping passed to ``share``, and returns the results **in item order**. ``fn`` is a
  module-level function (picklable by reference), deterministic, and must not write to the
  panels. Results are bit-identical to :class:`SerialExecutor`'s whatever the backend.
* A task whose worker is lost is retried by the backend; ``map`` returns each result exactly
  once, so a caller that writes rows from the returned list never duplicates or loses one.
* ``close()`` frees the workers and the shared copies; executors are context managers.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

__all__ = ["Executor", "SerialExecutor", "make_executor", "EXECUTOR_KINDS"]

#: Backends :func:`make_executor` knows.
EXECUTOR_KINDS = ("serial", "ray")


class Executor(Protocol):
    """What the GP, batch evaluation, the LLM loop and model folds call (see the module doc)."""

    kind: str
    n_workers: int

    def share(self, arrays: Mapping[str, np.ndarray]) -> Any: ...

    def map(self, fn: Callable[[Mapping[str, np.ndarray], Any], Any], items: Sequence[Any],
            shared: Any) -> list: ...

    def close(self) -> None: ...


class SerialExecutor:
    """Every task in the calling thread, in order: the reference the other backends match."""

    kind = "serial"
    n_workers = 1

    def share(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for k, a in arrays.items():
            v = np.asarray(a).view()
            v.setflags(write=False)
            out[k] = v
        return out

    def map(self, fn: Callable[[Mapping[str, np.ndarray], Any], Any], items: Sequence[Any],
            shared: Mapping[str, np.ndarray]) -> list:
        return [fn(shared, it) for it in items]

    def close(self) -> None:
        return None

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_executor(kind: str = "serial", n_jobs: int = 1, address: str | None = None) -> Executor:
    """The executor for ``kind`` (one of :data:`EXECUTOR_KINDS`).

    Parameters
    ----------
    kind : str
        Backend name.
    n_jobs : int
        Workers on this machine (ignored by ``serial``).
    address : str or None
        Cluster address for cluster backends (ignored by local ones); ``"ray"`` needs one
        (:class:`factors.cluster.RayExecutor`).

    Raises
    ------
    ValueError
        For an unknown ``kind`` or ``n_jobs < 1``.
    ConfigError, ClusterError
        ``"ray"`` without an address, with a bad or unreachable one, or without Ray installed.
    """
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    if kind == "serial":
        return SerialExecutor()
    if kind == "ray":
        from factors.cluster import RayExecutor
        return RayExecutor(address or "")
    raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTOR_KINDS)}")
