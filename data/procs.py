"""Is a process still running? The owner checks behind stale-file cleanup and interrupted runs.

Work that may be cut short (a run folder being written, a leaderboard run with status
``running``) is tagged with its owner: this host's name (:data:`HOST`) and the writing process's
id. Later, another process decides whether the owner is gone with :func:`process_alive`: on
the same host by asking the kernel (``kill(pid, 0)``; on Linux ``/proc/<pid>/stat`` also tells
a zombie and, through the process start time, a pid that was reused by a newer process). An
owner on another host cannot be asked; callers fall back to the age of what it left.
"""
from __future__ import annotations

import os
import re
import resource
import sys
import socket
import time

__all__ = ["HOST", "process_alive", "process_start", "PROCESS_START", "peak_rss_mb"]

#: This host's name reduced to ``[A-Za-z0-9_]`` (it goes into file names), at most 32 chars.
HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:32] or "host"

#: Seconds of slack when comparing a process start time with a timestamp (clock ticks, file
#: system time granularity).
_SLACK_S = 2.0


def _boot_time() -> float | None:
    try:
        with open("/proc/stat", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


_BTIME = _boot_time()


def _proc_stat(pid: int) -> tuple[str, float | None] | None:
    """``(state, start time in epoch seconds)`` of ``pid`` from ``/proc`` (Linux), or None."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
        rest = text[text.rindex(")") + 2:].split()     # fields 3.. (comm may hold spaces)
        state, ticks = rest[0], int(rest[19])            # field 3: state, 22: starttime
    except (OSError, ValueError, IndexError):
        return None
    if _BTIME is None:
        return state, None
    return state, _BTIME + ticks / os.sysconf("SC_CLK_TCK")


def process_start(pid: int) -> float | None:
    """Start time of process ``pid`` (epoch seconds), None where the platform does not say."""
    st = _proc_stat(pid)
    return None if st is None else st[1]


#: When this process started (epoch seconds; the import time where /proc is unavailable).
PROCESS_START: float = process_start(os.getpid()) or time.time()


def process_alive(pid: int | None, *, not_after: float | None = None) -> bool:
    """True when process ``pid`` is running on this host.

    Parameters
    ----------
    pid : int or None
        None or a non-positive id is never alive.
    not_after : float, optional
        Epoch seconds at which the owner was known to run (e.g. when it created a file, or
        started a leaderboard run): a process with that id that started later is another
        process that reused the id, so the owner is gone.

    A zombie (exited, not yet reaped) counts as gone; a process of another user counts as
    alive.
    """
    if pid is None or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    st = _proc_stat(int(pid))
    if st is None:
        return True
    state, started = st
    if state in ("Z", "X"):
        return False
    if not_after is not None and started is not None and started > not_after + _SLACK_S:
        return False
    return True


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage(RUSAGE_SELF)``).

    What ``mine gp / eval / combine --json`` report as ``peak_rss_mb`` (README "Full market").
    The kernel's high-water mark of the process's resident pages: it covers every allocation
    (numpy, Arrow, numba) and never decreases. ``ru_maxrss`` is in KiB on Linux and in bytes
    on macOS.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
