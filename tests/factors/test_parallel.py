"""Local executors (factors.parallel): order, bit-identity with serial, shared panels, retries."""
from __future__ import annotations

import os

import numpy as np
import pytest

from factors.parallel import (EXECUTOR_KINDS, ProcessExecutor, SerialExecutor, SharedPanels,
                              ThreadExecutor, make_executor, resolve_jobs)


def _task(panels, item):
    """A deterministic task reading the shared panels: a weighted row sum, and the worker."""
    i, w = item
    x = panels["x"][i % panels["x"].shape[0]]
    return float(np.nansum(x * w) + panels["y"].sum()), os.getpid()


def _write(panels, item):
    panels["x"][0, 0] = 1.0


def _die_once(panels, item):
    """Kills its worker process the first time item 3 runs (a marker file remembers it)."""
    marker = panels["marker"].tobytes().decode()
    if item == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return item * 10


@pytest.fixture
def panels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 8))
    x[3, 2] = np.nan
    return {"x": x, "y": np.arange(5, dtype=np.int64)}


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_results_in_item_order_and_bit_identical_to_serial(panels, kind):
    items = [(i, 0.5 + i) for i in range(57)]
    with SerialExecutor() as ser:
        want = [r[0] for r in ser.map(_task, items, ser.share(panels))]
    with make_executor(kind, 2) as ex:
        h = ex.share(panels)
        got = ex.map(_task, items, h)
        again = ex.map(_task, items[:5], h)      # the same handle serves several maps
    assert [r[0] for r in got] == want and [r[0] for r in again] == want[:5]
    pids = {r[1] for r in got}
    assert (pids == {os.getpid()}) == (kind == "threads")


def test_processes_share_panels_by_name_not_per_task(panels):
    with ProcessExecutor(2) as ex:
        h = ex.share(panels)
        assert isinstance(h, SharedPanels)
        assert all(len(spec) == 4 for spec in h.specs)   # names only: no array in the handle
        assert len(__import__("pickle").dumps(h)) < 500
        with pytest.raises(ValueError, match="read-only"):
            ex.map(_write, [0], h)


def test_shared_panels_are_read_only_everywhere(panels):
    for ex in (SerialExecutor(), ThreadExecutor(2)):
        with ex, pytest.raises(ValueError, match="read-only"):
            ex.map(_write, [0, 1], ex.share(panels))


def test_a_lost_worker_is_retried_and_each_result_returned_once(tmp_path):
    marker = str(tmp_path / "died")
    with ProcessExecutor(2) as ex:
        h = ex.share({"marker": np.frombuffer(marker.encode(), dtype=np.uint8)})
        out = ex.map(_die_once, list(range(20)), h)
        assert ex.lost_workers == 1
    assert os.path.exists(marker)
    assert out == [i * 10 for i in range(20)]


def test_make_executor_kinds_and_jobs():
    assert set(EXECUTOR_KINDS) >= {"auto", "serial", "threads", "processes"}
    assert make_executor("auto", 1).kind == "serial"
    with make_executor("auto", 2) as ex:
        assert ex.kind in ("threads", "processes") and ex.n_workers == 2
    assert resolve_jobs(0) == resolve_jobs(-1) == (os.cpu_count() or 1)
    with pytest.raises(ValueError, match="n_jobs"):
        make_executor("threads", -2)
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("gpu", 2)


def test_close_unlinks_the_shared_blocks(panels):
    from multiprocessing import shared_memory
    ex = ProcessExecutor(2)
    h = ex.share(panels)
    ex.close()
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=h.specs[0][1])


def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A run killed mid-way leaves no worker behind (they would hold the shared blocks)."""
    import subprocess
    import sys
    import time
    script = tmp_path / "run.py"
    script.write_text(
        "import os, sys, numpy as np\n"
        "from factors.parallel import ProcessExecutor\n"
        "def pid(panels, item):\n"
        "    return os.getpid()\n"
        "ex = ProcessExecutor(2)\n"
        "h = ex.share({'x': np.zeros(3)})\n"
        "print(' '.join(map(str, sorted(set(ex.map(pid, list(range(40)), h))))), flush=True)\n"
        "os.kill(os.getpid(), 9)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, timeout=120)
    pids = [int(x) for x in out.stdout.split()]
    assert pids, out.stderr

    def alive(p):
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            return False
        return True
    deadline = time.time() + 15
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)


def test_guided_chunks_cover_every_item_once_largest_first():
    from factors.dispatch import guided_chunks
    for n, w in [(0, 2), (1, 2), (6, 2), (800, 2), (801, 7), (5, 16)]:
        parts = guided_chunks(n, w)
        assert [i for r in parts for i in r] == list(range(n))         # each item once, in order
        sizes = [len(r) for r in parts]
        assert sizes == sorted(sizes, reverse=True) and (not sizes or sizes[-1] == 1)
    assert len(guided_chunks(800, 2)) == 21                           # not 800 tasks


def test_blocks_hand_out_each_item_once_owners_first_then_stealing():
    from factors.dispatch import Blocks
    b = Blocks(100, 2)
    first = b.take(0, 2)
    assert first == list(range(25))                    # front of its own block, 100 / 4 items
    chunks = [first]
    while True:                                        # worker 0 keeps asking, worker 1 never
        c = b.take(0, 2)
        if not c:
            break
        chunks.append(c)
    taken = [i for c in chunks for i in c]
    assert sorted(taken) == list(range(100))           # it stole all of worker 1's block ...
    stolen = next(c for c in chunks if c[0] >= 50)
    assert stolen[-1] == 99                            # ... from the far end
    assert [len(c) for c in chunks][-1] == 1
    b = Blocks(10, 3)
    b.retry.append([7, 8])                             # a lost chunk goes out first
    assert b.take(2, 3) == [7, 8]
