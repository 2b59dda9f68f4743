"""The ingest's files: staging, the idempotent merge, the derived index membership, status.

See :mod:`data.ingest` for the protocol. :func:`merge_dataset` folds the staged parts of a
dataset into its files as an upsert on the key; :func:`status` summarises a warehouse.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from data.datasets import DATASETS, Dataset, canonical_table, write_parquet
from data.io import parquet_errors
from data.jobs import JOBS_FILE, JobTable

__all__ = [
    "INDEX_MEMBER",
    "STAGING",
    "DatasetStatus",
    "merge_dataset",
    "read_dataset",
    "staged_path",
    "status",
    "sweep_tmp",
]

STAGING = "_staging"
#: ``index_member.parquet``: membership intervals derived from ``index_weight``.
INDEX_MEMBER = Dataset("index_member", "index_member.parquet", (),
                       ("index_code", "con_code", "in_date", "out_date", "source"),
                       ("index_code", "con_code", "in_date"), "derived",
                       strings=("index_code", "con_code", "source"))
#: Per-day datasets whose gaps (open days without rows) status reports.
_GAP_DATASETS = ("daily", "daily_basic", "stk_limit", "moneyflow")


def staged_path(root: Path, dataset: str, part: str) -> Path:
    """``<root>/_staging/<dataset>/<part>.parquet`` (``/`` in the part becomes ``_``)."""
    return Path(root) / STAGING / dataset / f"{part.replace('/', '_')}.parquet"


def sweep_tmp(root: Path) -> None:
    """Remove temp files left by a killed writer (``.<name>.<pid>.tmp``)."""
    root = Path(root)
    if root.exists():
        for p in root.rglob(".*.tmp"):
            p.unlink(missing_ok=True)


def _files(root: Path, ds: Dataset) -> list[Path]:
    if "{year}" not in ds.path:
        p = Path(root) / ds.path
        return [p] if p.exists() else []
    folder, _, pattern = ds.path.rpartition("/")
    stem = pattern.split("{year}")[0]
    return sorted(p for p in (Path(root) / folder).glob(f"{stem}*.parquet")
                  if p.stem[len(stem):].isdigit())


def read_dataset(root: Path, ds: Dataset, columns=None) -> pd.DataFrame | None:
    """All rows of ``ds`` in ``root`` (None when it has no file)."""
    files = _files(root, ds)
    if not files:
        return None
    return pd.concat([_read(f, columns) for f in files], ignore_index=True)


def _read(path: Path, columns=None) -> pd.DataFrame:
    with parquet_errors(path):
        return pq.read_table(path, columns=columns).to_pandas()


def _upsert(ds: Dataset, frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(ds.columns))
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(subset=list(ds.key), keep="last")


def merge_dataset(root: Path, ds: Dataset, jobs: JobTable) -> int:
    """Fold the done, unmerged staged parts of ``ds`` into its files; returns parts merged.

    Idempotent: each target file becomes ``upsert(existing, staged parts in part order)``,
    written atomically; only then are the parts marked merged and the staged files deleted.
    """
    root = Path(root)
    todo = jobs.unmerged(ds.name)
    if not todo:
        _clear_staging(root, ds.name)
        return 0
    staged = [_read(staged_path(root, ds.name, p)) for p, _ in todo]
    new = pd.concat([s for s in staged if len(s)] or [staged[0]], ignore_index=True)
    if "{year}" in ds.path:
        years = pd.DatetimeIndex(new[ds.year_col]).year
        groups = {int(y): new[years == y] for y in np.unique(years)}
    else:
        groups = {None: new}
    for year, rows in groups.items():
        target = root / (ds.path.format(year=year) if year is not None else ds.path)
        old = _read(target) if target.exists() else None
        frames = ([canonical_table(ds, old).to_pandas()] if old is not None else []) + [rows]
        if old is None and not len(rows) and year is not None:
            continue
        write_parquet(target, canonical_table(ds, _upsert(ds, frames)))
    if ds.name == "index_weight":
        _rebuild_index_member(root)
    jobs.mark_merged(ds.name, [p for p, _ in todo])
    _clear_staging(root, ds.name)
    return len(todo)


def _clear_staging(root: Path, name: str) -> None:
    folder = root / STAGING / name
    if folder.exists():
        for p in folder.glob("*.parquet"):
            p.unlink(missing_ok=True)
        for f in (folder, folder.parent):
            try:
                f.rmdir()
            except OSError:  # not empty
                pass


def _rebuild_index_member(root: Path) -> None:
    w = read_dataset(root, DATASETS["index_weight"], ["index_code", "con_code", "trade_date"])
    out = []
    if w is not None and len(w):
        for idx, g in w.groupby("index_code", sort=True):
            snaps = np.sort(g["trade_date"].unique())
            pos = {d: i for i, d in enumerate(snaps)}
            for con, gc in g.groupby("con_code", sort=True):
                have = np.sort(np.array([pos[d] for d in gc["trade_date"].unique()]))
                runs = np.split(have, np.flatnonzero(np.diff(have) > 1) + 1)
                for r in runs:
                    nxt = r[-1] + 1
                    out.append((idx, con, snaps[r[0]], snaps[nxt] if nxt < len(snaps) else None,
                                "index_weight"))
    df = pd.DataFrame(out, columns=list(INDEX_MEMBER.columns))
    write_parquet(root / INDEX_MEMBER.path, canonical_table(INDEX_MEMBER, df))


@dataclass
class DatasetStatus:
    """One dataset of a warehouse (:func:`status`).

    Attributes
    ----------
    dataset, path : str
        Name and file (pattern) relative to the root.
    files, rows : int
        Files present and rows in them.
    first, last : str or None
        First and last date (``YYYY-MM-DD``) of the dataset's date column.
    gaps : list of str
        Open days between ``first`` and ``last`` without rows (per-day market datasets).
    last_job : str or None
        When the job table last changed a part of it (UTC ISO).
    done, pending, failed : int
        Parts per status in the job table.
    failed_parts : list of str
        ``"<part>: <error>"`` of failed parts.
    """

    dataset: str
    path: str
    files: int = 0
    rows: int = 0
    first: str | None = None
    last: str | None = None
    gaps: list[str] = field(default_factory=list)
    last_job: str | None = None
    done: int = 0
    pending: int = 0
    failed: int = 0
    failed_parts: list[str] = field(default_factory=list)


def _date_col(ds: Dataset) -> str | None:
    for c in (ds.year_col, "end_date", "start_date", "in_date", "list_date"):
        if c in ds.columns:
            return c
    return None


def status(root: Path) -> list[DatasetStatus]:
    """Per dataset of the layout: files, rows, date range, gaps and the job table's view.

    Reads only the date column of each file; works on any warehouse (``_jobs.sqlite`` is
    optional and never created).
    """
    root = Path(root)
    summary = {}
    if (root / JOBS_FILE).exists():
        jobs = JobTable(root, create=False)
        try:
            summary = jobs.summary()
        finally:
            jobs.close()
    cal = read_dataset(root, DATASETS["trade_cal"], ["cal_date", "is_open"])
    open_days = pd.DatetimeIndex([]) if cal is None else \
        pd.DatetimeIndex(cal.loc[cal["is_open"] == 1, "cal_date"]).sort_values()
    out = []
    for ds in list(DATASETS.values()) + [INDEX_MEMBER]:
        st = DatasetStatus(ds.name, ds.path)
        files = _files(root, ds)
        st.files = len(files)
        st.rows = 0
        for f in files:
            with parquet_errors(f):
                st.rows += pq.ParquetFile(f).metadata.num_rows
        col = _date_col(ds)
        if files and col:
            d = read_dataset(root, ds, [col])[col].dropna()
            if len(d):
                st.first, st.last = str(d.min().date()), str(d.max().date())
                if ds.name in _GAP_DATASETS:
                    want = open_days[(open_days >= d.min()) & (open_days <= d.max())]
                    st.gaps = [str(x.date()) for x in want.difference(pd.DatetimeIndex(d))]
        j = summary.get(ds.name, {})
        st.last_job, st.failed_parts = j.get("last"), j.get("failed_parts", [])
        st.done, st.pending, st.failed = (j.get(k, 0) for k in ("done", "pending", "failed"))
        out.append(st)
    return out
