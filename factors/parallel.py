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

import multiprocessing as mp
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any, Protocol

import numpy as np

from factors.allocator import keep_freed_memory

__all__ = ["Executor", "SerialExecutor", "ThreadExecutor", "ProcessExecutor", "SharedPanels",
           "make_executor", "resolve_jobs", "EXECUTOR_KINDS", "LOCAL_KINDS", "AUTO_KIND"]

#: The backends of this machine (``[gp] executor``, ``mine gp --executor``); a cluster is chosen by
#: an address instead (``[cluster] address``, ``--cluster``).
LOCAL_KINDS = ("auto", "serial", "threads", "processes")
#: Backends :func:`make_executor` knows (``"auto"``: :data:`AUTO_KIND` with several workers,
#: ``serial`` with one).
EXECUTOR_KINDS = LOCAL_KINDS + ("ray",)
#: What ``"auto"`` picks with more than one worker. Measured with ``bench/parallel_bench.py``
#: (csi300 GP workload, 2 workers, 2026-11-30, a 2-core VM at load average 10-12, so wall
#: times are noise): threads 0-7 % more CPU than serial (one shared memo, no fork), processes
#: 12-18 % more (a memo per worker, pool start); the hot path is numba / NumPy kernels that
#: release the GIL, so threads it is (docs/bench.md).
AUTO_KIND = "threads"


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




def _readonly_views(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for k, a in arrays.items():
        v = np.asarray(a).view()
        v.setflags(write=False)
        out[k] = v
    return out


def _chunks(n: int, n_workers: int, per_worker: int = 4) -> list[range]:
    """Contiguous index ranges: about ``per_worker`` chunks per worker (load balance vs
    per-task overhead)."""
    if n == 0:
        return []
    size = max(1, -(-n // (n_workers * per_worker)))
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


class ThreadExecutor:
    """A thread pool in this process: ``share`` hands out read-only views (no copy).

    The kernels release the GIL (numba ``nogil=True``, NumPy's sorts and ufuncs), so tasks
    run in parallel as far as their Python glue allows. ``fn`` must be thread-safe.

    Parameters
    ----------
    n_jobs : int
        Threads (>= 1).
    """

    kind = "threads"

    def __init__(self, n_jobs: int):
        self.n_workers = int(n_jobs)
        self._pool: ThreadPoolExecutor | None = None

    def share(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _readonly_views(arrays)

    def map(self, fn: Callable[[Mapping[str, np.ndarray], Any], Any], items: Sequence[Any],
            shared: Mapping[str, np.ndarray]) -> list:
        items = list(items)
        if self.n_workers == 1 or len(items) <= 1:
            return [fn(shared, it) for it in items]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.n_workers, thread_name_prefix="alphamine")
        # one task per item: a free thread takes the next item, so a generation does not end
        # with one thread finishing a long chunk alone (submitting costs ~20 us an item)
        futs = [self._pool.submit(fn, shared, it) for it in items]
        return [f.result() for f in futs]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> ThreadExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class SharedPanels:
    """Picklable handle of panels in POSIX shared memory: ``(name, block, shape, dtype)``
    per array and the run key (workers attach once per key and cache the views)."""

    key: str
    specs: tuple[tuple[str, str, tuple[int, ...], str], ...]


_ATTACHED: dict[str, tuple[list, dict[str, np.ndarray]]] = {}   # worker side, by run key
_ATTACH_LOCK = threading.Lock()


def attach(handle: SharedPanels) -> dict[str, np.ndarray]:
    """The read-only arrays of ``handle`` in this process (attached once per run key; the
    previous run's blocks are released when a new key arrives)."""
    with _ATTACH_LOCK:
        got = _ATTACHED.get(handle.key)
        if got is not None:
            return got[1]
        for key in list(_ATTACHED):            # one run at a time per worker process
            for shm in _ATTACHED.pop(key)[0]:
                shm.close()
        shms, arrays = [], {}
        for name, block, shape, dtype in handle.specs:
            shm = shared_memory.SharedMemory(name=block)
            shms.append(shm)
            a = np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf)
            a.setflags(write=False)
            arrays[name] = a
        _ATTACHED[handle.key] = (shms, arrays)
        return arrays


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """Worker initializer: a daemon thread ends this worker when its parent is gone (a killed
    run must not leave workers holding the shared blocks); panel memory stays in the worker
    (:func:`factors.allocator.keep_freed_memory`)."""
    keep_freed_memory()
    def watch() -> None:
        while True:
            time.sleep(every)
            if os.getppid() != parent:
                os._exit(0)
    threading.Thread(target=watch, daemon=True, name="alphamine-parent-watch").start()


def _run_chunk_shared(fn, handle: SharedPanels, items) -> list:
    panels = attach(handle)
    return [fn(panels, it) for it in items]


class ProcessExecutor:
    """Worker processes over ``multiprocessing.shared_memory``.

    ``share`` copies each panel once into a shared block and returns a :class:`SharedPanels`
    handle; ``map`` sends ``(fn, handle, items)`` in a few chunks per worker (the handle is a
    few names: no panel is pickled per task); workers attach by name once per run. A worker
    that dies (``BrokenProcessPool``) is replaced and the chunks without a result are
    resubmitted (at most ``retries`` times each); results already received are kept, so each
    item's result is returned exactly once.

    Parameters
    ----------
    n_jobs : int
        Worker processes (>= 1).
    start_method : str
        ``multiprocessing`` start method; ``"fork"`` (default on Linux) shares the parent's
        compiled numba kernels.
    retries : int
        Resubmissions of one chunk after lost workers before ``map`` raises.
    """

    kind = "processes"

    def __init__(self, n_jobs: int, start_method: str | None = None, retries: int = 2):
        self.n_workers = int(n_jobs)
        if start_method is None:
            start_method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        self._ctx = mp.get_context(start_method)
        self.retries = int(retries)
        self._pool: ProcessPoolExecutor | None = None
        self._blocks: dict[str, list[shared_memory.SharedMemory]] = {}
        self.lost_workers = 0

    def share(self, arrays: Mapping[str, np.ndarray]) -> SharedPanels:
        key = uuid.uuid4().hex
        blocks, specs = [], []
        try:
            for name, a in arrays.items():
                a = np.ascontiguousarray(a)
                shm = shared_memory.SharedMemory(create=True, size=max(a.nbytes, 1))
                blocks.append(shm)
                np.ndarray(a.shape, dtype=a.dtype, buffer=shm.buf)[...] = a
                specs.append((name, shm.name, tuple(a.shape), a.dtype.str))
        except BaseException:
            for shm in blocks:
                shm.close()
                shm.unlink()
            raise
        self._blocks[key] = blocks
        return SharedPanels(key, tuple(specs))

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.n_workers, mp_context=self._ctx,
                                   initializer=_exit_with_parent, initargs=(os.getpid(),))

    def map(self, fn: Callable[[Mapping[str, np.ndarray], Any], Any], items: Sequence[Any],
            shared: SharedPanels) -> list:
        items = list(items)
        ranges = _chunks(len(items), self.n_workers)
        results: dict[int, list] = {}
        tries = [0] * len(ranges)
        while len(results) < len(ranges):
            if self._pool is None:
                self._pool = self._new_pool()
            todo = [j for j in range(len(ranges)) if j not in results]
            futs = {j: self._pool.submit(_run_chunk_shared, fn, shared,
                                         [items[i] for i in ranges[j]]) for j in todo}
            broken = False
            for j, f in futs.items():
                try:
                    results[j] = f.result()
                except BrokenProcessPool:
                    broken = True
                    tries[j] += 1
                    if tries[j] > self.retries:
                        raise
            if broken:                            # a worker died: new pool, resubmit the rest
                self.lost_workers += 1
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        return [x for j in range(len(ranges)) for x in results[j]]

    def release(self, shared: SharedPanels) -> None:
        """Free the shared blocks of one ``share`` (``close`` frees them all)."""
        for shm in self._blocks.pop(shared.key, []):
            shm.close()
            shm.unlink()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for key in list(self._blocks):
            for shm in self._blocks.pop(key):
                shm.close()
                shm.unlink()

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def resolve_jobs(n_jobs: int) -> int:
    """Workers for ``n_jobs``: itself when >= 1; 0 or -1 = every core (``os.cpu_count()``).

    Raises
    ------
    ValueError
        For ``n_jobs < -1``.
    """
    if n_jobs < -1:
        raise ValueError(f"n_jobs must be >= 1, or 0 / -1 for all cores, got {n_jobs}")
    return int(n_jobs) if n_jobs >= 1 else max(1, os.cpu_count() or 1)


def make_executor(kind: str = "serial", n_jobs: int = 1, address: str | None = None) -> Executor:
    """The executor for ``kind`` (one of :data:`EXECUTOR_KINDS`).

    Parameters
    ----------
    kind : str
        Backend name; ``"auto"`` is ``serial`` for one worker and :data:`AUTO_KIND` otherwise.
    n_jobs : int
        Workers on this machine (ignored by ``serial``); 0 or -1 = all cores.
    address : str or None
        Cluster address for cluster backends (ignored by local ones); ``"ray"`` needs one
        (:class:`factors.cluster.RayExecutor`).

    Raises
    ------
    ValueError
        For an unknown ``kind`` or ``n_jobs < -1``.
    ConfigError, ClusterError
        ``"ray"`` without an address, with a bad or unreachable one, or without Ray installed.
    """
    n = resolve_jobs(n_jobs)
    if kind == "auto":
        kind = "serial" if n == 1 else AUTO_KIND
    if kind == "serial":
        return SerialExecutor()
    if kind == "threads":
        return ThreadExecutor(n)
    if kind == "processes":
        return ProcessExecutor(n)
    if kind == "ray":
        from factors.cluster import RayExecutor
        return RayExecutor(address or "")
    raise ValueError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTOR_KINDS)}")
