"""Atomic file writes: the one helper every result writer uses (temp file + ``os.replace``).

:func:`write_json_atomic` writes strict JSON (NaN -> null, numpy scalars as numbers) with it.

A reader never sees a half-written file: the content goes to a temporary file in the target's
folder (same file system, so the rename is atomic) which then replaces the target; on any
error the temporary file is removed and the target is left as it was.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["atomic_write", "write_json_atomic"]


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


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON (NaN -> null) to ``path`` atomically."""
    def clean(o):
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating, float)):
            return float(o) if np.isfinite(o) else None
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, (Path, pd.Timestamp)):
            return str(o)
        return o

    text = json.dumps(clean(obj), indent=2, ensure_ascii=False)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return atomic_write(path, write)
