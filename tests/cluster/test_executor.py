"""RayExecutor on a real two-node local Ray cluster (conftest.py): the executor contract of
factors/parallel.py -- panels put once, results in order and bit-identical to the serial
reference, a worker killed mid-run retried with every result returned exactly once -- and the
address checks that run before any data loads."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import cluster_tasks as tasks
from data.errors import ConfigError
from factors.cluster import ClusterConfig, ClusterError, RayExecutor, check_cluster, \
    executor_for, parse_address
from factors.parallel import SerialExecutor, make_executor


def _panels(T=60, N=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, N))
    x[rng.random((T, N)) < 0.1] = np.nan
    return {"x": x, "y": rng.standard_normal((T, N))}


def test_results_bit_identical_to_serial_and_in_order(ray_executor):
    panels = _panels()
    items = [1, 2, 3, 5, 8, 13]
    ser = SerialExecutor()
    want = ser.map(tasks.row_stats, items, ser.share(panels))
    got = ray_executor.map(tasks.row_stats, items, ray_executor.share(panels))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.tobytes() == b.tobytes()      # bit for bit, NaN too


def test_panels_are_put_once_per_run_not_per_task(ray_executor):
    panels = _panels(seed=1)
    before = ray_executor.n_puts
    shared = ray_executor.share(panels)
    assert ray_executor.n_puts - before == 2                       # x and y, once each
    out = ray_executor.map(tasks.pid_and_flags, list(range(12)), shared)
    again = ray_executor.share(panels)                             # a later round, same panels
    ray_executor.map(tasks.pid_and_flags, list(range(4)), again)
    assert ray_executor.n_puts - before == 2                       # nothing put again
    assert [o[2] for o in out] == list(range(12))
    assert all(ro for _, ro, _ in out)                             # workers read them read-only
    more = ray_executor.share({**panels, "z": np.ones((3, 3))})
    assert ray_executor.n_puts - before == 3 and more.names == ("x", "y", "z")


def test_a_worker_killed_mid_run_is_retried_and_each_result_returned_once(ray_executor,
                                                                          tmp_path):
    import os
    import signal
    panels = _panels(seed=2)
    shared = ray_executor.share(panels)
    items = [(i, str(tmp_path)) for i in range(6)]
    box = {}
    th = threading.Thread(target=lambda: box.setdefault(
        "out", ray_executor.map(tasks.killed_once, items, shared)))
    th.start()
    pidf = tmp_path / "pid"
    t0 = time.time()
    while not pidf.exists() and time.time() - t0 < 60:
        time.sleep(0.05)
    assert pidf.exists(), "the slow task never started"
    os.kill(int(pidf.read_text()), signal.SIGKILL)                 # the worker dies mid-task
    th.join(timeout=120)
    assert not th.is_alive()
    out = box["out"]
    assert [i for i, _ in out] == list(range(6))                   # every item, once, in order
    assert [s for _, s in out] == [float(np.nansum(panels["x"][i])) for i in range(6)]
    attempts = (tmp_path / "attempts0").read_text().split()
    assert len(attempts) == 2 and attempts[0] != attempts[1]       # retried on a new worker


def test_warm_runs_once_on_every_worker_slot_spread_over_the_nodes(ray_executor, tmp_path):
    import functools
    ray_executor.warm(functools.partial(tasks.record_node, str(tmp_path)))
    t0 = time.time()
    while len(list(tmp_path.glob("[0-9]*[0-9]"))) < ray_executor.n_workers \
            and time.time() - t0 < 60:
        time.sleep(0.05)
    nodes = [p.read_text() for p in tmp_path.glob("[0-9]*[0-9]")]
    assert len(nodes) == ray_executor.n_workers == 2 and len(set(nodes)) == 2


def test_task_exception_is_raised_as_its_own_type_and_not_retried(ray_executor):
    shared = ray_executor.share({"x": np.zeros((2, 2))})
    with pytest.raises(KeyError):
        ray_executor.map(tasks.row_stats, [1], shared)             # panels lack "y"


def test_make_executor_and_executor_for(ray_cluster, ray_executor):
    ex = make_executor("ray", address=ray_cluster.address)
    assert ex.kind == "ray" and ex.n_workers == 2
    ex.close()                                                     # does not own the connection
    assert executor_for(ClusterConfig()) is None                   # run here
    local = SerialExecutor()
    assert executor_for(ClusterConfig(), local=local) is local
    ex = executor_for(ClusterConfig(address="10.0.0.1:1"), ray_cluster.address)
    assert ex.kind == "ray" and ex.address == ray_cluster.address
    assert executor_for(ClusterConfig(address=ray_cluster.address), "") is None


@pytest.mark.parametrize("address, ok", [("", None), ("auto", None), ("h:6379", ("", "h", 6379)),
                                         ("ray://10.0.0.5:10001", ("ray", "10.0.0.5", 10001)),
                                         ("h", False), ("h:0", False), ("http://h:1", False),
                                         ("h:99999", False), ("a b:1", False)])
def test_parse_address(address, ok):
    if ok is False:
        with pytest.raises(ConfigError, match="use HOST:PORT"):
            parse_address(address)
    else:
        assert parse_address(address) == ok


def test_config_rejects_a_bad_address():
    with pytest.raises(ValueError, match="^address 'nowhere': use HOST:PORT"):
        ClusterConfig(address="nowhere")


def test_unreachable_address_is_one_clear_error_fast():
    with socket_closed_port() as port:
        t0 = time.time()
        with pytest.raises(ClusterError, match=f"cluster 127.0.0.1:{port} is unreachable"):
            check_cluster(f"127.0.0.1:{port}", timeout=2.0)
        with pytest.raises(ClusterError, match="unreachable"):
            RayExecutor(f"127.0.0.1:{port}", connect_timeout=2.0)
        assert time.time() - t0 < 10


def test_missing_ray_is_named(monkeypatch):
    import builtins
    real = builtins.__import__

    def imp(name, *a, **k):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("no ray")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", imp)
    with pytest.raises(ClusterError, match=r"Ray is not installed: pip install 'alphamine\[ray\]'"):
        check_cluster("auto")
    assert check_cluster("") == ""                                 # no cluster: no Ray needed


class socket_closed_port:
    """A local port with nothing listening on it (bound, then closed)."""

    def __enter__(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc):
        return False
