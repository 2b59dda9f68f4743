"""A Ray cluster as an executor (kind ``"ray"``): the contract of :mod:`factors.parallel`.

``[cluster] address`` (or ``--cluster ADDRESS``) names a running Ray cluster (``ray start
--head`` on one machine, ``ray start --address HEAD:PORT`` on the others; ``docs/cluster.md``).
:class:`RayExecutor` connects with ``ray.init(address=...)`` and then:

* ``share(arrays)`` puts every panel in the Ray object store with ``ray.put``, once per run: an
  array already put by this executor (the same object) is not put again, so sharing the
  panels of a later round puts only the new ones (:attr:`RayExecutor.n_puts` counts them);
* the work runs in one Ray actor per worker slot (``cluster CPUs // num_cpus``, spread over
  the nodes): a long-lived process that keeps its state between calls (the GP memo of
  subtree outputs, loaded numba kernels);
* ``map(fn, items, shared)`` gives each actor a contiguous block of the items, in order
  (callers put items that share work next to each other: the GP sorts programs by formula,
  so a program tends to meet the memo that computed its relatives), and sends each actor
  chunks of about ``1 / (2 x actors)`` of what is left (guided self-scheduling,
  Polychronopoulos & Kuck 1987), one chunk in flight per actor; an actor whose block is done
  takes the far end of the largest block left (work stealing), so the last chunks are single
  items and no actor idles while another has a queue. A chunk carries the object references
  as top-level arguments, so each actor reads the panels zero-copy from its node's object
  store (fetched over the network once per node, never once per task) and calls
  ``fn(panels, item)`` for its items. Results come back in item order;
* ``warm(fn)`` starts the actors and runs ``fn()`` once in each, without waiting: a run calls
  it before loading its data, so worker start-up (imports, numba kernels loaded from the
  cache) overlaps the load instead of delaying the first generation;
* an actor whose process or node dies is restarted by Ray and the chunk it was running is
  sent again (at most ``max_retries`` times per chunk; an actor Ray gives up on leaves its
  items to the others); an exception raised by ``fn`` itself is not retried (``fn`` is
  deterministic: it would raise again) and is re-raised on the driver as its own type.
  ``map`` returns one result per item: a re-sent chunk's results are returned exactly once,
  and only the driver writes rows (leaderboard, files), so a lost worker neither loses nor
  duplicates a row.

Everything Ray runs is pure computation on the shared panels; the driver keeps the
leaderboard, the caches, the files and progress output. Ray is an optional extra
(``pip install 'alphamine[ray]'``); this module imports it only when a cluster is used.
"""
from __future__ import annotations

import re
import socket
from contextlib import contextmanager
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from data.errors import AlphamineError, ConfigError
from factors.allocator import keep_freed_memory
from factors.dispatch import Blocks

__all__ = ["ClusterConfig", "ClusterError", "RayExecutor", "RayShared", "parse_address",
           "check_cluster", "executor_for", "open_cluster", "cluster_settings", "RAY_EXTRA_HINT"]

#: How to install the optional extra (quoted in errors).
RAY_EXTRA_HINT = "pip install 'alphamine[ray]'"

_ADDRESS_RE = re.compile(r"^(?:(?P<scheme>ray)://)?(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\])"
                         r":(?P<port>[0-9]{1,5})$")


class ClusterError(AlphamineError):
    """The cluster cannot be used: unreachable, Ray missing, or a task lost past its retries."""


def parse_address(address: str, what: str = "cluster address") -> tuple[str, str, int] | None:
    """Split a cluster address into ``(scheme, host, port)``.

    Parameters
    ----------
    address : str
        ``""`` (no cluster: run locally), ``"auto"`` (the cluster started on this machine),
        ``"HOST:PORT"`` (the head node's GCS port, default 6379) or ``"ray://HOST:PORT"``
        (Ray Client, default port 10001).
    what : str
        How the address is named in the error (``"--cluster"``, ``"[cluster] address"``).

    Returns
    -------
    tuple or None
        ``None`` for ``""`` and ``"auto"``; else ``("", host, port)`` or ``("ray", host,
        port)``.

    Raises
    ------
    ConfigError
        Anything else (the message shows the accepted forms).
    """
    a = str(address).strip()
    if a in ("", "auto"):
        return None
    m = _ADDRESS_RE.match(a)
    if not m or not 0 < int(m["port"]) < 65536:
        raise ConfigError(f"{what} {address!r}: use HOST:PORT (the head node, e.g. "
                          f"10.0.0.5:6379), ray://HOST:PORT, auto, or \"\" for no cluster")
    return m["scheme"] or "", m["host"].strip("[]"), int(m["port"])


@dataclass(frozen=True)
class ClusterConfig:
    """``[cluster]``: where batch evaluations, GP fitness and model folds run.

    ``address`` ``""`` runs everything on this machine; otherwise a Ray cluster address
    (:func:`parse_address`). ``connect_timeout`` bounds the reachability check before
    connecting (seconds); ``max_retries`` is how often Ray re-runs a task whose worker was lost.
    """

    #: Accepted values of the numeric keys (checked by the config loader).
    RANGES: ClassVar[dict] = {"connect_timeout": (0, 600, True), "max_retries": (0, 100)}

    address: str = ""
    connect_timeout: float = 10.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        try:
            parse_address(self.address, "address")
        except ConfigError as e:
            raise ValueError(str(e)) from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError(f"a cluster address is set but Ray is not installed: "
                           f"{RAY_EXTRA_HINT}") from None
    return ray


def check_cluster(address: str, timeout: float = 10.0, what: str = "cluster address") -> str:
    """Check ``address`` before any data loads: its form, the head reachable, Ray installed.

    Parameters
    ----------
    address : str
        See :func:`parse_address`; ``""`` passes (no cluster).
    timeout : float, default 10.0
        Seconds allowed for a TCP connection to ``HOST:PORT``.
    what : str
        How the address is named in errors (``"--cluster"``, ``"[cluster] address"``).

    Returns
    -------
    str
        The address, stripped.

    Raises
    ------
    ConfigError
        Malformed address.
    ClusterError
        Nothing accepts connections at ``HOST:PORT`` within ``timeout``, or Ray is not
        installed.
    """
    parsed = parse_address(address, what)
    a = str(address).strip()
    if a == "":
        return a
    if parsed is not None:
        _, host, port = parsed
        try:
            with socket.create_connection((host, port), timeout=timeout):
                pass
        except OSError as e:
            why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
            raise ClusterError(f"{what}: cluster {a} is unreachable ({why}, waited at most "
                               f"{timeout:g} s): start its head with `ray start --head --port "
                               f"{port}` or fix --cluster / [cluster] address") from None
    _import_ray()
    return a


def _notices_to_stderr() -> None:
    """Route Ray's driver-side notices (e.g. "(raylet) A worker died ...", printed by a
    background thread) to stderr: stdout carries ``--json`` output. Ray's private printer is
    wrapped when present; otherwise nothing changes."""
    try:
        from ray._private import worker as w
    except ImportError:  # pragma: no cover - layout of another Ray version
        return
    orig = getattr(w, "print_to_stdstream", None)
    if orig is None or getattr(orig, "_to_stderr", False):
        return

    def to_stderr(data, *a, **k):
        return orig({**data, "is_err": True}, *a, **k)
    to_stderr._to_stderr = True  # type: ignore[attr-defined]
    w.print_to_stdstream = to_stderr


@dataclass(frozen=True)
class RayShared:
    """Handle returned by :meth:`RayExecutor.share`: panel names and their object refs."""

    names: tuple[str, ...]
    refs: tuple


class _Worker:
    """The body of one Ray actor: runs chunks of a map on the panels it is handed."""

    def __init__(self) -> None:
        keep_freed_memory()                     # factors.allocator

    def run(self, fn: Callable, names: tuple[str, ...], items: list, *arrays) -> list:
        """``[fn({name: array}, item) for item in items]`` (Ray resolved ``arrays``)."""
        panels = dict(zip(names, arrays))
        return [fn(panels, it) for it in items]

    def warm(self, fn: Callable) -> None:
        """Run ``fn()`` here (start-up work, e.g. :func:`mining.gp_search.warm_up`)."""
        fn()


def _gone(actor) -> bool:
    """Whether Ray has given ``actor`` up (state DEAD: out of restarts, or no node for it)."""
    try:
        from ray.util.state import get_actor
        info = get_actor(actor._actor_id.hex())
    except Exception:  # noqa: BLE001 - no state API here: treat it as coming back
        return False
    return info is not None and getattr(info, "state", "") == "DEAD"


class RayExecutor:
    """The :class:`factors.parallel.Executor` contract on a Ray cluster (see the module doc).

    Parameters
    ----------
    address : str
        The cluster (:func:`parse_address`; ``"auto"`` or ``HOST:PORT`` or ``ray://...``).
    max_retries : int, default 3
        Times one chunk is sent again after its actor's process or node died.
    connect_timeout : float, default 10.0
        Seconds for the reachability check (:func:`check_cluster`).
    num_cpus : float, default 1
        CPUs an actor reserves on its node; there are ``cluster CPUs // num_cpus`` actors.
    runtime_env : dict, optional
        Passed to ``ray.init`` (e.g. ``{"env_vars": {...}}``); default none: every node runs
        the same Python environment with alphamine installed.

    Raises
    ------
    ConfigError, ClusterError
        As :func:`check_cluster`; ``ray.init`` failing is a ClusterError naming the address.

    Notes
    -----
    A process holds one Ray connection: an executor created while one is open reuses it (and
    leaves it open on :meth:`close`); the executor that connected disconnects on close. The
    actors start on the first :meth:`warm` or :meth:`map` and end on :meth:`close`.
    """

    kind = "ray"

    def __init__(self, address: str, *, max_retries: int = 3, connect_timeout: float = 10.0,
                 num_cpus: float = 1, runtime_env: dict | None = None):
        address = check_cluster(address, connect_timeout)
        if not address:
            raise ConfigError("RayExecutor needs a cluster address (\"auto\", HOST:PORT or "
                              "ray://HOST:PORT)")
        ray = _import_ray()
        self.address = address
        self.max_retries = int(max_retries)
        self.n_puts = 0
        self._put: dict[int, tuple[np.ndarray, Any]] = {}    # id(array) -> (array, ref)
        self._owns = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                         runtime_env=runtime_env, configure_logging=True)
            except Exception as e:  # noqa: BLE001 - Ray raises many kinds; one line names it
                raise ClusterError(f"cannot connect to the Ray cluster {address}: "
                                   f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                                   ) from None
            self._owns = True
        _notices_to_stderr()
        # restarted by Ray when their process or node dies; map sends the lost chunk again
        self._actor_cls = ray.remote(_Worker).options(
            num_cpus=num_cpus, max_restarts=-1, max_task_retries=0,
            scheduling_strategy="SPREAD")
        self._actors: list = []
        self.n_workers = max(int(ray.cluster_resources().get("CPU", 1) // max(num_cpus, 1e-9)),
                             1)

    def share(self, arrays: Mapping[str, np.ndarray]) -> RayShared:
        """Put each panel in the object store (an array this executor put before is reused).

        Returns a :class:`RayShared` handle for :meth:`map`.
        """
        import ray
        names, refs = [], []
        for k, a in arrays.items():
            hit = self._put.get(id(a))
            if hit is None or hit[0] is not a:
                arr = np.asarray(a)
                hit = (a, ray.put(arr))
                self._put[id(a)] = hit
                self.n_puts += 1
            names.append(str(k))
            refs.append(hit[1])
        return RayShared(tuple(names), tuple(refs))

    def _workers(self) -> list:
        if not self._actors:
            self._actors = [self._actor_cls.remote() for _ in range(self.n_workers)]
        return self._actors

    def warm(self, fn: Callable[[], Any]) -> None:
        """Start the actors and run ``fn()`` once in each, without waiting; results and
        errors are dropped (work that needs what failed fails in :meth:`map`)."""
        for a in self._workers():
            a.warm.remote(fn)

    def map(self, fn: Callable[[Mapping[str, np.ndarray], Any], Any], items: Sequence[Any],
            shared: RayShared) -> list:
        """``[fn(panels, item) for item in items]`` on the actors (module docstring), in item
        order.

        Raises
        ------
        Exception
            The first exception raised by ``fn`` (its own type, not retried).
        ClusterError
            A chunk lost more than ``max_retries`` times, or no actor left.
        """
        import ray
        from ray import exceptions as rex
        if not isinstance(shared, RayShared):
            raise TypeError("RayExecutor.map needs the handle returned by its share()")
        items = list(items)
        actors = self._workers()
        state = Blocks(len(items), len(actors))
        out: list = [None] * len(items)
        lost: dict[int, int] = {}                  # first index of a chunk -> times lost
        live = set(range(len(actors)))
        flight: dict = {}                          # ref -> (actor, chunk)

        def send(k: int) -> None:
            chunk = state.take(k, len(live))
            if chunk:
                ref = actors[k].run.remote(fn, shared.names, [items[i] for i in chunk],
                                           *shared.refs)
                flight[ref] = (k, chunk)

        for k in sorted(live):
            send(k)
        try:
            while flight:
                (ref,), _ = ray.wait(list(flight), num_returns=1)
                k, chunk = flight.pop(ref)
                try:
                    got = ray.get(ref)
                except rex.RayActorError as e:     # the process or node died mid-chunk
                    lost[chunk[0]] = lost.get(chunk[0], 0) + 1
                    if lost[chunk[0]] > self.max_retries:
                        raise ClusterError(
                            f"a task on the Ray cluster {self.address} was lost after "
                            f"{self.max_retries} retries: {type(e).__name__}") from None
                    state.retry.append(chunk)
                    if _gone(actors[k]):           # not coming back: the others take over
                        live.discard(k)
                        if not live:
                            raise ClusterError(f"every worker of the Ray cluster "
                                               f"{self.address} was lost") from None
                        busy = {a for a, _ in flight.values()}
                        for j in sorted(live - busy):
                            send(j)
                        continue
                except rex.RayTaskError as e:
                    raise e.as_instanceof_cause() from None
                except (rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError,
                        rex.RaySystemError) as e:
                    raise ClusterError(f"a task on the Ray cluster {self.address} was lost: "
                                       f"{type(e).__name__}") from None
                else:
                    for i, r in zip(chunk, got):
                        out[i] = r
                send(k)
        except BaseException:
            for r in flight:
                ray.cancel(r)
            raise
        return out

    def close(self) -> None:
        """End the actors, drop the shared panels and disconnect (if this executor
        connected)."""
        import ray
        if ray.is_initialized():
            for a in self._actors:
                try:
                    ray.kill(a)
                except Exception:  # noqa: BLE001 - the cluster or this session is gone
                    pass
        self._actors = []
        self._put.clear()
        if self._owns:
            ray.shutdown()
            self._owns = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def executor_for(cluster: ClusterConfig, address: str | None = None, *, local=None):
    """The executor a run uses: a :class:`RayExecutor` when a cluster address is set.

    Parameters
    ----------
    cluster : ClusterConfig
        ``[cluster]``.
    address : str, optional
        ``--cluster`` (wins over ``[cluster] address``; ``""`` forces a local run).
    local : Executor, optional
        What runs without a cluster (e.g. ``factors.parallel.make_executor("threads", 2)``);
        default ``None``: the caller's own in-process path.

    Returns
    -------
    Executor or None
        Close it (or use it as a context manager) when the run ends.

    Raises
    ------
    ConfigError, ClusterError
        As :class:`RayExecutor`.
    """
    a = cluster.address if address is None else address
    if str(a).strip():
        return RayExecutor(str(a).strip(), max_retries=cluster.max_retries,
                           connect_timeout=cluster.connect_timeout)
    return local


def cluster_settings(cfg) -> ClusterConfig:
    """``cfg.cluster`` of a :class:`data.config.Config`, or the defaults (no cluster) when the
    configuration was built without a ``[cluster]`` section."""
    c = getattr(cfg, "cluster", None)
    return c if isinstance(c, ClusterConfig) else ClusterConfig()


@contextmanager
def open_cluster(cluster: ClusterConfig) -> Iterator[RayExecutor | None]:
    """``with open_cluster(cfg.cluster) as ex``: a connected :class:`RayExecutor` when
    ``cluster.address`` is set (closed at the end of the block), else ``None`` (run here).

    Raises
    ------
    ConfigError, ClusterError
        As :class:`RayExecutor`.
    """
    if not cluster.address.strip():
        yield None
        return
    ex = executor_for(cluster)
    try:
        yield ex
    finally:
        ex.close()
