"""Module-level task functions for the cluster tests (Ray workers import them by name: the
test cluster's nodes get this folder on their PYTHONPATH, see conftest.py)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def row_stats(panels, item):
    """A deterministic evaluation on shared panels: z-scored rolling sum of ``x * y`` rows."""
    k = int(item)
    x, y = panels["x"], panels["y"]
    c = np.nancumsum(x * y, axis=0)
    v = c[k:] - c[:-k]
    mu = np.nanmean(v, axis=1, keepdims=True)
    sd = np.nanstd(v, axis=1, keepdims=True)
    return (v - mu) / np.where(sd > 0, sd, np.nan)


def pid_and_flags(panels, item):
    """Where the task ran and whether the panels arrived read-only."""
    return os.getpid(), not panels["x"].flags.writeable, int(item)


def killed_once(panels, item):
    """Item 0's first attempt records its pid and sleeps (the test kills it); every attempt
    appends to ``attempts`` so the test can count them. Returns ``(item, sum of row item)``."""
    i, folder = item
    folder = Path(folder)
    with open(folder / f"attempts{i}", "a") as f:
        f.write(f"{os.getpid()}\n")
    if i == 0 and not (folder / "pid").exists():
        (folder / "pid.tmp").write_text(str(os.getpid()))
        os.replace(folder / "pid.tmp", folder / "pid")
        time.sleep(120)
    return i, float(np.nansum(panels["x"][i]))


class SelfKill:
    """Wrap a task function: the first attempt of the first task kills its worker process
    (SIGKILL, as if the machine died); the retry and every other task call ``fn``."""

    def __init__(self, fn, folder):
        self.fn, self.folder = fn, str(folder)

    def __call__(self, panels, item):
        flag = Path(self.folder) / "killed"
        with open(Path(self.folder) / "calls", "a") as f:
            f.write(f"{os.getpid()}\n")
        try:
            fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return self.fn(panels, item)
        os.close(fd)
        os.kill(os.getpid(), 9)
        return None                       # pragma: no cover - never reached


class KillingExecutor:
    """An executor wrapper for the tests: maps ``SelfKill(fn)`` on ``inner`` (a RayExecutor),
    so one worker dies during the run."""

    def __init__(self, inner, folder):
        self.inner, self.folder = inner, folder
        self.kind, self.n_workers = inner.kind, inner.n_workers

    def share(self, arrays):
        return self.inner.share(arrays)

    def map(self, fn, items, shared):
        return self.inner.map(SelfKill(fn, self.folder), items, shared)

    def close(self):
        pass


def record_node(folder):
    """A warm-up: write this worker's node id to ``folder/<pid>`` (atomically)."""
    import ray
    path = Path(folder) / str(os.getpid())
    path.with_suffix(".tmp").write_text(ray.get_runtime_context().get_node_id())
    os.replace(path.with_suffix(".tmp"), path)
