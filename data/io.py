"""Atomic file writes: the one helper every result writer uses (temp file + ``os.replace``).

:func:`write_json_atomic` writes strict JSON (NaN -> null, numpy scalars as numbers) with it.
The readers :func:`read_parquet` / :func:`read_table` (and :func:`parquet_errors`) turn a
damaged Parquet file into one :class:`data.errors.DataError` naming the file and the repair.

A reader never sees a half-written file: the content goes to a temporary file in the target's
folder (same file system, so the rename is atomic) which then replaces the target; on any
error the temporary file is removed and the target is left as it was.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["atomic_write", "parquet_errors", "read_parquet", "read_table", "reason", "REPAIR",
           "to_jsonable", "write_json_atomic"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Write ``path`` atomically through ``write(tmp_path)``.

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
        ``path``.

    Raises
    ------
    Whatever ``write`` or the file system raises; the temporary file is removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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


def read_table(path: str | os.PathLike, columns=None, **kwargs):
    """``pyarrow.parquet.read_table(path, columns=columns, **kwargs)`` with
    :func:`parquet_errors` (a ``pyarrow.Table``).

    Raises
    ------
    DataError
        The file is unreadable (names it and the repair) or lacks one of ``columns``.
    """
    import pyarrow.parquet as pq
    with parquet_errors(path, columns):
        return pq.read_table(path, columns=columns, **kwargs)
