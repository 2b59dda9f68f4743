"""Memo of one GP run: operator outputs and program fitness, keyed by program structure.

While the memo is on, the GP functions do not compute: each returns a :class:`Deferred` call
(function and inputs). gplearn's ``_Program.execute`` only hands intermediate results on to the
next function and the root to the metric, so the metric receives the program's whole call tree.
The run's :class:`GPMemo` (referenced by the fitness object only) then

* interns a structural node id for it: ``(function name, input node ids)``, a leaf (a column of
  X) being identified by a BLAKE2b digest of its bytes, computed once per buffer;
* returns the stored fitness when that node was scored before (a duplicate program: nothing is
  computed);
* otherwise evaluates the tree bottom-up, reusing stored operator outputs (LRU by bytes).
  Outputs are read-only; one is kept when it took at least ``min_seconds`` to compute or when
  its node is computed a second time (keeping a panel costs fresh, page-faulted memory).

The kernels are deterministic, so results are identical with and without the memo.

Pickling (``n_jobs > 1``: joblib sends the metric to worker processes) keeps the settings and
drops the contents: every worker task starts with an empty memo of its own, and the counters of
the run's memo cover the parent process only.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Callable

import numpy as np

__all__ = ["Deferred", "GPMemo"]


class Deferred:
    """A deferred call ``fn(*args)``: ``fn`` has ``name`` and ``evaluate(arrays)``; ``args``
    are :class:`Deferred` or 1-D arrays of ``n`` values.

    ``np.asarray(d)`` evaluates it without a memo (array protocol), so it still behaves as the
    vector gplearn's function contract promises if anything reads its values directly.
    """

    __slots__ = ("fn", "args", "shape")

    def __init__(self, fn, args: tuple, n: int):
        self.fn, self.args, self.shape = fn, args, (n,)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.fn.evaluate(tuple(np.asarray(a) for a in self.args))
        return out if dtype is None else out.astype(dtype, copy=False)


class GPMemo:
    """Operator outputs (LRU by bytes) and fitness values of one GP run, one process."""

    _MAX_LEAVES = 32  # leaf buffers whose digest is remembered (held alive so ids stay valid)

    def __init__(self, max_bytes: int, min_seconds: float = 0.0):
        self.max_bytes, self.min_seconds = max_bytes, min_seconds
        self.clear()

    def clear(self) -> None:
        """Drop all contents and reset the counters."""
        self._computed: set[int] = set()
        self._out: OrderedDict[int, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._nodes: dict[tuple, int] = {}
        self._leaves: dict[tuple, tuple[np.ndarray, int]] = {}
        self._fitness: dict[int, float] = {}
        self.stats = {"op_hits": 0, "op_misses": 0, "program_hits": 0, "program_misses": 0,
                      "leaf_hashes": 0, "evictions": 0}

    def __getstate__(self) -> dict:
        return {"max_bytes": self.max_bytes, "min_seconds": self.min_seconds}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_bytes"], state["min_seconds"])

    # ------------------------------------------------------------------ node ids
    def _intern(self, key: tuple) -> int:
        nid = self._nodes.get(key)
        if nid is None:
            nid = self._nodes[key] = len(self._nodes)
        return nid

    def _leaf(self, a: np.ndarray) -> int:
        a = np.asarray(a)
        lk = (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)
        leaf = self._leaves.get(lk)
        if leaf is not None:
            return leaf[1]
        c = np.ascontiguousarray(a)
        digest = hashlib.blake2b(c.view(np.uint8), digest_size=16).digest()
        self.stats["leaf_hashes"] += 1
        nid = self._intern(("leaf", a.dtype.str, a.shape, digest))
        if a.base is not None:  # a view (an X column): remember its buffer, held alive
            if len(self._leaves) >= self._MAX_LEAVES:
                self._leaves.clear()
            self._leaves[lk] = (a, nid)
        return nid

    def _node(self, x, nids: dict[int, int]) -> int:
        """Node id of ``x``; ids of the tree's calls are noted in ``nids`` by object id."""
        if not isinstance(x, Deferred):
            return self._leaf(x)
        nid = nids.get(id(x))
        if nid is None:
            nid = nids[id(x)] = self._intern(
                (x.fn.name,) + tuple(self._node(a, nids) for a in x.args))
        return nid

    def node(self, x) -> int:
        """Structural node id of a :class:`Deferred` call tree or an array."""
        return self._node(x, {})

    # ------------------------------------------------------------------ values
    def _value(self, x, nids: dict[int, int]) -> np.ndarray:
        if not isinstance(x, Deferred):
            return x
        nid = nids[id(x)]
        out = self._out.get(nid)
        if out is not None:
            self._out.move_to_end(nid)
            self.stats["op_hits"] += 1
            return out
        self.stats["op_misses"] += 1
        args = tuple(self._value(a, nids) for a in x.args)
        t0 = time.perf_counter()
        out = x.fn.evaluate(args)
        return self._put(nid, out, time.perf_counter() - t0)

    def value(self, x) -> np.ndarray:
        """Evaluate ``x`` (a :class:`Deferred` tree or an array) through the memo."""
        nids: dict[int, int] = {}
        self._node(x, nids)
        return self._value(x, nids)

    def _put(self, nid: int, out: np.ndarray, seconds: float) -> np.ndarray:
        """Make ``out`` read-only; keep it if worth it (LRU eviction by bytes); return it.

        Keeping an output costs fresh memory (page faults: about 5-9 ms per 6 MB panel on the
        dev VM), so an output is kept only when it took at least ``min_seconds`` to compute or
        when this node is computed for the second time (it recurs).
        """
        out.flags.writeable = False
        keep = seconds >= self.min_seconds or nid in self._computed
        self._computed.add(nid)
        if keep and out.nbytes <= self.max_bytes:
            self._out[nid] = out
            self._bytes += out.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._out.popitem(last=False)
                self._bytes -= old.nbytes
                self.stats["evictions"] += 1
        return out

    # ------------------------------------------------------------------ fitness
    def fitness(self, y_pred, score: Callable[[np.ndarray], float]) -> float:
        """``score(value of y_pred)``, computed once per structural node."""
        nids: dict[int, int] = {}
        nid = self._node(y_pred, nids)
        fit = self._fitness.get(nid)
        if fit is not None:
            self.stats["program_hits"] += 1
            return fit
        self.stats["program_misses"] += 1
        fit = self._fitness[nid] = score(self._value(y_pred, nids))
        return fit
