"""Atomic, durable file writes: the one helper every result writer uses.

:func:`atomic_write` (and :func:`write_json_atomic`, :func:`write_csv_atomic` on top of it)
writes one file: a hidden temporary file ``.<name>.<owner>.tmp`` in the target's folder (same
file system, so the rename is atomic), created with mode ``0o666`` and thus the user's umask
(not ``mkstemp``'s 0600), written, fsynced, renamed over the target with ``os.replace``, then
the folder is fsynced. A reader never sees a half-written file; on any error the temporary file
is removed and the target is left as it was. ``<owner>`` is ``<host>-<pid>-<6 hex>``
(:func:`owner_tag`), so a temporary file a killed process left can be told from one being
written (:func:`data.staging.clean_stale` removes the former). Whole folders and groups of
files: :mod:`data.staging`.
The readers :func:`read_parquet` / :func:`read_table` (and :func:`parquet_errors`) turn a
damaged Parquet file into one :class:`data.errors.DataError` naming the file and the repair.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import re
import secrets
import signal
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.procs import HOST

__all__ = ["atomic_write", "write_json_atomic", "write_csv_atomic", "parquet_errors",
           "read_parquet", "read_table", "reason", "REPAIR", "to_jsonable", "crash_point", "owner_tag", "fsync_file", "fsync_dir", "fsync_tree",
           "new_file", "OWNER_RE"]

#: Environment variable of the crash test hook (:func:`crash_point`).
CRASH_ENV = "ALPHAMINE_CRASH_AT"

#: Regular expression of :func:`owner_tag` (groups ``host``, ``pid``, ``hex``).
OWNER_RE = r"(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-(?P<hex>[0-9a-f]{6})"


def owner_tag() -> str:
    """``<host>-<pid>-<6 hex>``: who writes a temporary name (see
    :func:`data.staging.clean_stale`)."""
    return f"{HOST}-{os.getpid()}-{secrets.token_hex(3)}"


_HITS: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Testing hook: SIGKILL this process at the named point when ``$ALPHAMINE_CRASH_AT`` is
    ``name`` (the first time) or ``name#k`` (the k-th time it is reached).

    The crash tests of "Runs land whole" use it to kill a run at exact places (a file written
    but not renamed, a folder staged but not renamed, between two renames...) without timing.
    Without the variable it does nothing.
    """
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    target, _, nth = spec.partition("#")
    if target != name:
        return
    _HITS[name] = _HITS.get(name, 0) + 1
    if _HITS[name] == int(nth or 1):
        if hasattr(signal, "SIGKILL"):
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(137)  # pragma: no cover - platforms without SIGKILL


# ------------------------------------------------------------------------ fsync
def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's content to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to the disk, where the platform can."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems that refuse directory fsync
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file under ``folder``, then every folder (deepest first)."""
    dirs = []
    for root, _dirs, files in os.walk(folder):
        dirs.append(root)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                fsync_file(p)
    for d in reversed(dirs):
        fsync_dir(d)


def new_file(path: Path) -> None:
    """Create an empty file with mode 0o666 minus the umask (what ``open`` would give)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)


# ------------------------------------------------------------------------ one file
def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Write ``path`` atomically and durably through ``write(tmp_path)``.

    Parameters
    ----------
    path : str or PathLike
        The target file; its parent folders are created.
    write : callable
        ``write(tmp)`` writes the full content to the file path ``tmp`` (a str), e.g.
        ``lambda tmp: df.to_parquet(tmp, index=False)``.

    Returns
    -------
    Path
        ``path``, with mode ``0o666 & ~umask`` for a new file (module docstring).

    Raises
    ------
    Whatever ``write`` or the file system raises; the temporary file is removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{owner_tag()}.tmp"
    new_file(tmp)
    try:
        write(str(tmp))
        fsync_file(tmp)
        crash_point("atomic_write")
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return path


def write_csv_atomic(df: pd.DataFrame, path: str | os.PathLike, **to_csv: Any) -> Path:
    """``df.to_csv(path, **to_csv)`` through :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: df.to_csv(tmp, **to_csv))


def to_jsonable(o: Any) -> Any:
    """Plain JSON values: NaN/inf -> None, numpy scalars -> int/float, integral floats kept
    as floats, paths/timestamps/dates -> str, tuples/sets -> lists, dataclasses -> dicts (their
    fields; class variables such as ``RANGES`` are not data)."""
    if isinstance(o, Mapping):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in o]
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return float(o) if math.isfinite(o) else None
    if isinstance(o, np.ndarray):
        return to_jsonable(o.tolist())
    if isinstance(o, (Path, pd.Timestamp, _dt.date)):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):   # fields, not ClassVars
        return {f.name: to_jsonable(getattr(o, f.name)) for f in dataclasses.fields(o)}
    if o is None or isinstance(o, str):
        return o
    return str(o)



def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as strict JSON (:func:`to_jsonable`) to ``path`` atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return atomic_write(path, write)


#: How to repair a warehouse file that cannot be read (``mine data update`` only fetches
#: parts its job table does not have, so it never re-fetches a file that was merged).
REPAIR = ("restore the file from a backup, or re-fetch the warehouse into a new folder with "
          "`mine data bootstrap --root NEW_DIR --start YYYY-MM-DD`")


@contextmanager
def parquet_errors(path: str | os.PathLike, columns=None, repair: str = REPAIR):
    """Turn a failure to read Parquet file ``path`` into one clear :class:`DataError`.

    Truncated, zero-byte, garbage or bit-flipped files make pyarrow raise ``ArrowInvalid`` /
    ``OSError`` (and pandas, decoding a damaged metadata block, ``ValueError`` / ``KeyError``
    / ``TypeError``); the error names the file, what failed and how to repair it. When
    ``columns`` were asked for and the file is readable but lacks some of them, the error
    names the missing columns instead. ``repair`` says how to fix it (default: a warehouse
    file, :data:`REPAIR`). Wrap only the read itself: any of these exceptions raised inside
    the block is reported as the file's fault.
    """
    import pyarrow as pa

    from data.errors import DataError
    try:
        yield
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as e:
        if columns:
            missing = _missing_columns(path, columns)
            if missing:
                raise DataError(f"{path}: no column(s) {', '.join(missing)} in this Parquet "
                                f"file; {repair}") from None
        raise DataError(f"{path}: unreadable Parquet ({reason(e)}); {repair}") from None


def reason(e: BaseException, limit: int = 160) -> str:
    """The first line of a reader's exception, without pyarrow's "Could not open Parquet input
    source '<path>':" prefix (the caller names the file), cut to ``limit`` characters."""
    text = re.sub(r"^Could not open Parquet input source '.*?':\s*", "", str(e).strip())
    why = text.splitlines()[0] if text else type(e).__name__
    return why if len(why) <= limit else why[:limit - 3] + "..."


def _missing_columns(path, columns) -> list[str]:
    """``columns`` absent from the schema of ``path`` ([] when the schema is unreadable)."""
    import pyarrow.parquet as pq
    try:
        names = set(pq.read_schema(path).names)
    except Exception:                      # noqa: BLE001 - the caller reports the file
        return []
    return [c for c in columns if c not in names]


def read_parquet(path: str | os.PathLike, columns=None, *, repair: str = REPAIR,
                 **kwargs) -> pd.DataFrame:
    """``pandas.read_parquet(path, columns=columns, **kwargs)`` with :func:`parquet_errors`
    (``repair``: how to fix the file, default that of a warehouse file).

    Raises
    ------
    DataError
        The file is unreadable (names it and the repair) or lacks one of ``columns``.
    """
    with parquet_errors(path, columns, repair):
        return pd.read_parquet(path, columns=columns, **kwargs)


def read_table(path: str | os.PathLike, columns=None, *, memory_map: bool = True, **kwargs):
    """``pyarrow.parquet.read_table(path, columns=columns, memory_map=memory_map, **kwargs)``
    with :func:`parquet_errors` (a ``pyarrow.Table``).

    Only ``columns`` are decoded. With ``memory_map`` (the default) the file is mapped
    (``pyarrow.memory_map``) instead of being read into a heap buffer first, so loading a
    year of the whole market holds the decoded columns only, not also a copy of the file's
    bytes; the table is the same either way (``tests/data/test_mmap_read.py``).

    Raises
    ------
    DataError
        The file is unreadable (names it and the repair) or lacks one of ``columns``.
    """
    import pyarrow.parquet as pq
    with parquet_errors(path, columns):
        return pq.read_table(path, columns=columns, memory_map=memory_map, **kwargs)
