"""Output folders of ``mine combine`` / ``mine backtest``: one fresh folder per run, a ``latest``
pointer, and the search for the newest targets file (``mine export``).

Every run writes to a new folder ``<out_dir>/<kind>-<YYYYmmddTHHMMSS>-<6 hex>`` (``kind`` is
e.g. ``combine-ic-csi300``, ``backtest-<targets folder>`` or ``microcap``), so no run
overwrites another. A run that writes targets (``mine combine``, the micro-cap preset) then
points ``<out_dir>/latest`` (a one-line text file: the folder's name, or its absolute path
when it is outside ``out_dir``) at its folder; :func:`find_latest_targets` follows it. An
explicit output folder that already holds files is refused unless ``force``.
"""
from __future__ import annotations

import datetime as _dt
import os
import secrets
from pathlib import Path

from backtest.errors import BacktestError
from data.io import atomic_write

__all__ = ["LATEST", "new_run_id", "run_folder", "write_latest", "read_latest",
           "find_latest_targets"]

#: Name of the pointer file in ``[backtest] out_dir``.
LATEST = "latest"


def new_run_id() -> str:
    """``YYYYmmddTHHMMSS-<6 hex>``: local time of the start plus a random suffix."""
    return f"{_dt.datetime.now():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in str(s)) or "run"


def run_folder(out_dir: str | os.PathLike, kind: str, explicit: str | os.PathLike | None = None,
               *, force: bool = False) -> tuple[Path, str]:
    """Create and return ``(folder, run_id)`` for a new run.

    Without ``explicit``: a new folder ``<out_dir>/<kind>-<run_id>`` (never an existing one).
    With ``explicit``: that folder; refused when it already holds files unless ``force``.

    Raises
    ------
    BacktestError
        ``explicit`` is a file, or a non-empty folder without ``force``.
    """
    run_id = new_run_id()
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.exists() and not p.is_dir():
            raise BacktestError(f"--out {str(p)!r} is a file, not a folder")
        if p.is_dir() and any(p.iterdir()) and not force:
            raise BacktestError(f"--out {str(p)!r} already holds results; choose another "
                                f"folder, leave --out out for a fresh run folder, or pass "
                                f"--force to write over them")
        p.mkdir(parents=True, exist_ok=True)
        return p, run_id
    root = Path(out_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    while True:
        p = root / f"{'-'.join(_safe(k) for k in kind.split('-'))}-{run_id}"
        try:
            p.mkdir()
            return p, run_id
        except FileExistsError:            # same second and same suffix: draw again
            run_id = new_run_id()


def write_latest(out_dir: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Point ``<out_dir>/latest`` at ``folder`` (relative when inside ``out_dir``)."""
    root, f = Path(out_dir).expanduser(), Path(folder).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    try:
        text = str(f.resolve().relative_to(root.resolve()))
    except ValueError:
        text = str(f.resolve())
    return atomic_write(root / LATEST, lambda tmp: Path(tmp).write_text(text + "\n"))


def read_latest(out_dir: str | os.PathLike) -> Path | None:
    """The folder ``<out_dir>/latest`` names, or None (no pointer, or its folder is gone)."""
    root = Path(out_dir).expanduser()
    p = root / LATEST
    if not p.is_file():
        return None
    name = p.read_text().strip()
    if not name:
        return None
    f = Path(name) if Path(name).is_absolute() else root / name
    return f if f.is_dir() else None


def find_latest_targets(out_dir: str | os.PathLike) -> Path:
    """The newest targets file under ``out_dir`` (what ``mine combine`` writes).

    First the run folder ``<out_dir>/latest`` names (its ``targets.parquet``, else
    ``targets.csv``). Without a usable pointer (older layouts): ``out_dir`` is searched
    recursively for ``*targets*.parquet`` (else ``*targets*.csv``), skipping the ``export/``
    subfolder (the per-day files of ``mine export``), and the most recently modified wins.

    Raises
    ------
    BacktestError
        If there is none: run ``mine combine`` first or pass ``--targets``.
    """
    root = Path(out_dir)
    latest = read_latest(root)
    if latest is not None:
        for ext in ("parquet", "csv"):
            if (latest / f"targets.{ext}").is_file():
                return latest / f"targets.{ext}"
    if root.is_dir():
        for ext in ("parquet", "csv"):
            found = [(p.stat().st_mtime, str(p)) for p in root.rglob(f"*targets*.{ext}")
                     if "export" not in p.relative_to(root).parts[:-1]
                     and not p.name.startswith(".")]
            if found:
                return Path(max(found)[1])
    raise BacktestError(f"no targets file (*targets*.parquet / *targets*.csv) under "
                        f"{str(root)!r}: run `mine combine` first or pass --targets")


def discard_if_empty(folder: str | os.PathLike) -> None:
    """Remove ``folder`` when a failed run left it empty (no stray empty run folders)."""
    p = Path(folder)
    try:
        if p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    except OSError:
        pass
