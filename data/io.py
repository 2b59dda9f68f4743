"""Atomic file writes: the one helper every result writer uses (temp file + ``os.replace``).

:func:`write_json_atomic` writes strict JSON (NaN -> null, numpy scalars as numbers) with it.

A reader never sees a half-written file: the content goes to a temporary file in the target's
folder (same file system, so the rename is atomic) which then replaces the target; on any
error the temporary file is removed and the target is left as it was.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["atomic_write", "parquet_errors", "to_jsonable", "write_json_atomic"]


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
    as floats, paths/timestamps/dates -> str, tuples/sets -> lists, dataclasses -> dicts."""
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
    if hasattr(o, "__dataclass_fields__"):
        return {k: to_jsonable(getattr(o, k)) for k in o.__dataclass_fields__}
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


@contextmanager
def parquet_errors(path: str | os.PathLike):
    """Turn a failure to read Parquet file ``path`` into one clear :class:`DataError`.

    Truncated, zero-byte, garbage or bit-flipped files make pyarrow raise ``ArrowInvalid`` /
    ``OSError``; the error names the file and how to repair it.
    """
    import pyarrow as pa

    from data.errors import DataError
    try:
        yield
    except (pa.ArrowException, OSError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: unreadable Parquet ({why}); restore the file, or delete it "
                        "and re-fetch it with `mine data update --root DIR`") from None
