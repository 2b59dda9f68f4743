"""A real local Ray cluster for the cluster tests: a head node and one worker node on
127.0.0.1 (one CPU each), started with ``ray start`` in a temporary folder and connected to by
address, as a user would. Torn down at the end of the session: the processes the fixture
started (its two process groups, and any process whose command line names its temporary
folder) are stopped by pid; nothing else on the machine is touched.

Skipped when Ray (the optional extra ``.[ray]``) is not installed. The cluster is stopped as
soon as the last test of this folder has run, so the rest of the suite runs without it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_naming(text: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append(int(p.name))
    return out


class LocalCluster:
    """Handles of the test cluster: ``address`` (``127.0.0.1:PORT``), ``temp`` (its folder)."""

    def __init__(self):
        self.temp = tempfile.mkdtemp(prefix="amray", dir="/tmp")   # short: unix socket paths
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.groups: list[int] = []
        self.stopped = False
        self.log = open(Path(self.temp) / "start.log", "w")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), str(ROOT / "tests" / "data"),
                                             env.get("PYTHONPATH", "")])
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        self.env = env

    def _start(self, args: list[str]) -> None:
        p = subprocess.Popen(["ray", "start", *args, "--num-cpus", "1", "--disable-usage-stats",
                              "--object-store-memory", str(200 * 2**20)],
                             env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.groups.append(p.pid)
        if p.wait(timeout=180) != 0:
            raise RuntimeError(f"ray start failed: see {self.log.name}")

    def start(self) -> "LocalCluster":
        self._start(["--head", "--node-ip-address", "127.0.0.1", "--port", str(self.port),
                     "--include-dashboard=false", "--temp-dir", self.temp])
        self._start(["--address", self.address, "--node-ip-address", "127.0.0.1"])
        return self

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        import ray
        if ray.is_initialized():
            ray.shutdown()
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
            for g in self.groups:
                try:
                    os.killpg(g, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            for pid in _pids_naming(self.temp):
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            t0 = time.time()
            while time.time() - t0 < wait and _pids_naming(self.temp):
                time.sleep(0.2)
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


_LIVE: list[LocalCluster] = []


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Stop the cluster after the last test of this folder (not at the end of the session)."""
    if nextitem is None or HERE not in Path(str(nextitem.path)).parents:
        for cl in _LIVE:
            cl.stop()


@pytest.fixture(scope="session")
def ray_cluster():
    """The running two-node cluster; the test process is connected to it (``ray.init``)."""
    pytest.importorskip("ray")
    if shutil.which("ray") is None:
        pytest.skip("the `ray` command is not on PATH")
    cl = LocalCluster()
    _LIVE.append(cl)
    try:
        cl.start()
        yield cl
    finally:
        cl.stop()


@pytest.fixture(scope="session")
def ray_executor(ray_cluster):
    """One :class:`factors.cluster.RayExecutor` connected by address for the whole session."""
    from factors.cluster import RayExecutor
    ex = RayExecutor(ray_cluster.address, max_retries=3, connect_timeout=5.0)
    yield ex
    ex.close()
