"""Filling and updating a warehouse from a provider, incrementally and crash-safe.

:func:`bootstrap` and :func:`update` fetch every missing part (see :mod:`data.ingest_plan`)
through a provider (anything with ``query(api_name, params, fields) -> DataFrame`` and a
``name``, e.g. :class:`data.tushare.TushareProvider` from :func:`make_provider`).

Protocol, per dataset:

1. **Fetch and stage.** Each part is fetched, put in canonical form
   (:func:`data.datasets.canonical_table`) and written atomically and durably
   (:func:`data.datasets.write_parquet`: temp file, fsync, ``os.replace``, fsync of the folder)
   to ``<root>/_staging/<dataset>/<part>.parquet``; then, in one transaction, the job table
   marks it done with its row count and the staged file's sha256. An empty reply of
   ``daily``/``adj_factor``/``daily_basic``/``stk_limit`` on an open day of a listed market is
   an error: the part is marked failed and the run's result lists it. The opt-in datasets of
   ``[tushare] extra_datasets`` (:data:`data.datasets.OPTIONAL_DATASETS`, e.g. ``moneyflow``)
   are fetched after :data:`UPDATE_ORDER`, only when listed there; an empty reply of theirs is
   stored as a part with no rows.
2. **Merge.** The done, unmerged parts are folded into the dataset's files (one per year or
   one table) as an upsert on the key (existing rows with the same key replaced, staged parts
   applied in part order, rows sorted by key), each file written atomically; then the parts are
   marked merged and the staged files deleted. A merge interrupted anywhere is redone from the
   staged files with the same result; a crash during a fetch only loses that part.

Nothing prints; progress goes to ``on_progress(dataset, done, total, failed)``.
"""
from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import pandas as pd

from data.datasets import (
    DATASETS,
    DAY_REQUIRED,
    SNAPSHOT_ORDER,
    Dataset,
    canonical_table,
    file_sha256,
    write_parquet,
)
from data.errors import ConfigError, DataError
from data.ingest_plan import Part, plan_dataset
from data.ingest_store import merge_dataset, read_dataset, staged_path, sweep_tmp
from data.jobs import JOBS_FILE, JobTable
from data.tushare import TushareConfig, TushareProvider, calls_per_minute

__all__ = [
    "PROVIDERS",
    "UPDATE_ORDER",
    "IngestError",
    "IngestRun",
    "Provider",
    "bootstrap",
    "expected_end",
    "make_provider",
    "plan_bootstrap",
    "tushare_settings",
    "update",
]

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: Datasets of ``update`` after the slowly changing tables, in order.
UPDATE_ORDER = ("daily", "daily_basic", "stk_limit", "suspend_d", "index_daily",
                "index_weight", "dividend", "fina_indicator", "income", "balancesheet",
                "cashflow")
#: A run stops after this many failed parts in a row (the provider is likely down).
MAX_CONSECUTIVE_FAILURES = 5


class IngestError(DataError):
    """A part could not be fetched (its message names the dataset and part)."""


class Provider(Protocol):
    """What the ingest needs from a data source."""

    name: str
    # optional: ``endpoints`` (a set of endpoint names); datasets needing others are skipped

    def query(self, api_name: str, params: dict | None = None,
              fields: tuple[str, ...] | list[str] = ()) -> pd.DataFrame: ...


@dataclass
class IngestRun:
    """The result of :func:`bootstrap` / :func:`update`.

    Attributes
    ----------
    command : str
        ``"bootstrap"`` or ``"update"``.
    root : Path
        The warehouse.
    start, end : str
        The warehouse's first date and this run's end date (``YYYY-MM-DD``).
    dry_run : bool
        True: nothing was called; ``calls`` is the plan.
    calls : dict
        Calls per endpoint (made, or planned on a dry run).
    parts : dict
        Per dataset: ``{"planned": n, "done": n, "failed": n}``.
    failed : list of str
        ``"<dataset> <part>: <error>"`` per failed part.
    skipped : list of str
        Datasets not fetched because the provider does not serve their endpoints (e.g.
        everything but ``trade_cal``, ``stock_basic`` and ``daily`` with AKShare).
    status : str
        ``ok``, ``failed`` (some parts failed) or ``aborted`` (too many failures in a row).
    calls_per_minute : int
        The rate used for ``est_seconds``.
    est_seconds : float
        Estimated time of the calls at that rate.
    """

    command: str
    root: Path
    start: str
    end: str
    dry_run: bool = False
    calls: dict[str, int] = field(default_factory=dict)
    parts: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    status: str = "ok"
    calls_per_minute: int = 200
    est_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no part failed."""
        return self.status == "ok"


def tushare_settings(cfg) -> dict[str, Any]:
    """``[tushare]`` values the ingest uses: token variable, indices, calls per minute, and the
    opt-in datasets to fetch after :data:`UPDATE_ORDER` (``extra_datasets``)."""
    t: TushareConfig = cfg.tushare
    return {"token_env": t.token_env, "indices": tuple(t.indices),
            "calls_per_minute": t.calls_per_minute or calls_per_minute(t.points),
            "extra_datasets": tuple(t.extra_datasets)}


#: Provider names :func:`make_provider` accepts.
PROVIDERS = ("tushare", "akshare")


def make_provider(cfg, token: str | None = None, name: str = "tushare"):
    """The provider ``name`` of ``cfg``: ``"tushare"`` (token from ``token`` or the
    ``[tushare] token_env``) or ``"akshare"`` (free, no token; daily bars, adj_factor,
    calendar and the listed stocks only, see :mod:`data.akshare_provider`).

    Raises
    ------
    ConfigError
        An unknown ``name``; no Tushare token in the environment variable (the message
        names it); ``akshare`` not installed (the message names the extra).
    """
    if name not in PROVIDERS:
        raise ConfigError(f"unknown provider {name!r}: choose one of {', '.join(PROVIDERS)}")
    if name == "akshare":
        from data.akshare_provider import AKShareProvider
        return AKShareProvider()
    env = tushare_settings(cfg)["token_env"]
    token = token or os.environ.get(env)
    if not token:
        raise ConfigError(f"no Tushare token: set the environment variable ${env} "
                          f"(never put it in mine.toml)")
    return TushareProvider(cfg.tushare, token)


def expected_end(open_days: pd.DatetimeIndex, now: _dt.datetime) -> pd.Timestamp:
    """The last open day whose data is complete at ``now`` (Asia/Shanghai, 17:00 cutoff)."""
    now = now.astimezone(SHANGHAI) if now.tzinfo else now
    cutoff = pd.Timestamp(now.date())
    if now.hour < 17:
        cutoff -= pd.Timedelta(days=1)
    days = open_days[open_days <= cutoff]
    if not len(days):
        raise DataError(f"the trade calendar has no open day on or before {cutoff.date()}")
    return days[-1]


def _scrub(msg: str, token_env: str) -> str:
    tok = os.environ.get(token_env) or ""
    return msg.replace(tok, "***") if len(tok) >= 6 else msg


class _Runner:
    """One bootstrap/update: the job table, counted calls and per-dataset bookkeeping."""

    def __init__(self, cfg, provider, root: Path, command: str, jobs: JobTable,
                 on_progress: Callable | None):
        self.cfg, self.provider, self.root, self.jobs = cfg, provider, root, jobs
        self.settings = tushare_settings(cfg)
        self.on_progress = on_progress or (lambda *a: None)
        self.run = IngestRun(command, root, "", "",
                             calls_per_minute=self.settings["calls_per_minute"])
        self.streak = 0

    def open_days(self) -> pd.DatetimeIndex:
        cal = read_dataset(self.root, DATASETS["trade_cal"])
        if cal is None or cal.empty:
            return pd.DatetimeIndex([])
        return pd.DatetimeIndex(cal.loc[cal["is_open"] == 1, "cal_date"]).sort_values()

    def listed_on(self, day: str) -> bool:
        sb = read_dataset(self.root, DATASETS["stock_basic"])
        if sb is None or sb.empty:
            return True
        d = pd.Timestamp(day)
        # a provider without list dates (AKShare) leaves them null: count those as listed
        ok = (sb["list_date"].isna() | (sb["list_date"] <= d)) & (sb["delist_date"].isna() | (sb["delist_date"] > d))
        return bool(ok.any())

    def query(self, endpoint: str, params: dict, fields) -> pd.DataFrame:
        self.run.calls[endpoint] = self.run.calls.get(endpoint, 0) + 1
        return self.provider.query(endpoint, params, list(fields))

    def fetch(self, ds: Dataset, part: Part) -> pd.DataFrame:
        frames = []
        must = part.day is not None and any(ep in DAY_REQUIRED for ep, _, _ in part.calls) \
            and self.listed_on(part.day)
        for ep, params, fields in part.calls:
            df = self.query(ep, params, fields)
            if df is None or not isinstance(df, pd.DataFrame):
                raise IngestError(f"{ep} returned {type(df).__name__}, not a table")
            if must and ep in DAY_REQUIRED and df.empty:
                raise IngestError(f"{ep} returned no rows for open day "
                                  f"{pd.Timestamp(part.day).date()}")
            frames.append(df)
        if ds.name == "daily":
            d, a = (f.astype({"trade_date": str}) if len(f) else f for f in frames)
            if len(a):
                d = d.merge(a[["ts_code", "trade_date", "adj_factor"]],
                            on=["ts_code", "trade_date"], how="left")
            return d
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def do_dataset(self, name: str, parts: list[Part]) -> None:
        ds = DATASETS[name]
        stat = self.run.parts.setdefault(name, {"planned": 0, "done": 0, "failed": 0})
        stat["planned"] += len(parts)
        self.on_progress(name, 0, len(parts), 0)
        for i, part in enumerate(parts, 1):
            if self.streak >= MAX_CONSECUTIVE_FAILURES:
                self.run.status = "aborted"
                break
            try:
                table = canonical_table(ds, self.fetch(ds, part))
                path = write_parquet(staged_path(self.root, name, part.part), table)
                self.jobs.mark_done(name, part.part, table.num_rows, file_sha256(path))
                stat["done"] += 1
                self.streak = 0
            except Exception as e:  # noqa: BLE001 - any provider failure fails the part only
                msg = _scrub(f"{type(e).__name__}: {e}", self.settings["token_env"])
                self.jobs.mark_failed(name, part.part, msg)
                self.run.failed.append(f"{name} {part.part}: {msg}")
                stat["failed"] += 1
                self.streak += 1
            self.on_progress(name, i, len(parts), stat["failed"])
        merge_dataset(self.root, ds, self.jobs)

    def serves(self, name: str) -> bool:
        """Whether the provider serves every endpoint of dataset ``name`` (a provider without
        an ``endpoints`` attribute serves all)."""
        served = getattr(self.provider, "endpoints", None)
        return served is None or set(DATASETS[name].endpoints) <= set(served)

    def datasets(self, names, start: pd.Timestamp, end: pd.Timestamp) -> None:
        for name in names:
            if self.run.status == "aborted":
                return
            if not self.serves(name):
                if name not in self.run.skipped:
                    self.run.skipped.append(name)
                continue
            if name == "trade_cal":
                open_days = pd.DatetimeIndex([])
            else:
                open_days = self.open_days()
            parts = plan_dataset(DATASETS[name], start=start, end=end, open_days=open_days,
                                 done=self.jobs.done_parts(name),
                                 indices=self.settings["indices"])
            merge_dataset(self.root, DATASETS[name], self.jobs)  # finish an interrupted merge
            self.do_dataset(name, parts)


def _open_jobs(root: Path, *, create: bool, explicit: bool, force: bool) -> JobTable:
    if (root / JOBS_FILE).exists():
        return JobTable(root)
    empty = not root.exists() or not any(root.iterdir())
    if create and (force or (explicit and empty)):
        return JobTable(root)
    if not create:
        raise DataError(f"{str(root)!r} has no {JOBS_FILE}: it was not filled by the ingest "
                        f"(run `mine data bootstrap --root DIR --start DATE` first)")
    raise DataError(f"refusing to write into {str(root)!r}: it has no {JOBS_FILE} (not an "
                    f"ingest warehouse; the shipped snapshot is read-only). Give --root a new "
                    f"or empty folder, or --force to adopt this one")


def _execute(command: str, cfg, provider, root: Path, jobs: JobTable, start: pd.Timestamp,
             end: pd.Timestamp | None, now, names_first, on_progress) -> IngestRun:
    sweep_tmp(root)
    r = _Runner(cfg, provider, root, command, jobs, on_progress)
    run_id = jobs.start_run(command)
    try:
        today = pd.Timestamp((now() if now else _dt.datetime.now(SHANGHAI)).date())
        cal_end = max(today, end) if end is not None else today
        r.datasets(("trade_cal",), start, cal_end)
        if r.run.status != "aborted":
            days = r.open_days()
            end = expected_end(days, now() if now else _dt.datetime.now(SHANGHAI)) \
                if end is None else (days[days <= end][-1] if (days <= end).any() else end)
            r.run.start, r.run.end = str(start.date()), str(pd.Timestamp(end).date())
            r.datasets(tuple(names_first) + UPDATE_ORDER + r.settings["extra_datasets"],
                       start, pd.Timestamp(end))
        if r.run.failed and r.run.status == "ok":
            r.run.status = "failed"
    except BaseException:
        jobs.finish_run(run_id, "error", r.run.calls)
        raise
    jobs.finish_run(run_id, r.run.status, r.run.calls)
    r.run.est_seconds = 60.0 * sum(r.run.calls.values()) / r.run.calls_per_minute
    return r.run


def bootstrap(cfg, provider: Provider, *, start, end=None, root=None, force: bool = False,
              now: Callable[[], _dt.datetime] | None = None,
              on_progress: Callable | None = None) -> IngestRun:
    """Fill a new warehouse from ``start``: calendar, stock list (listed, delisted, paused),
    name changes, industries, then everything :func:`update` fetches.

    Parameters
    ----------
    cfg : Config
        ``[data] root`` (when ``root`` is None) and ``[tushare]`` (indices, rate).
    provider : Provider
        The data source.
    start, end : date-like
        First date; last date (default: the last open day complete at ``now``).
    root : path, optional
        The warehouse; given explicitly it may be a new or empty folder.
    force : bool
        Adopt a non-empty folder without ``_jobs.sqlite``.
    now : callable, optional
        Clock returning an aware datetime (default: now in Asia/Shanghai).
    on_progress : callable, optional
        ``on_progress(dataset, done, total, failed)``.

    Raises
    ------
    DataError
        The root is not an ingest warehouse (and not new/empty with explicit ``root``).
    """
    explicit = root is not None
    root = Path(root if explicit else cfg.data.root).expanduser()
    jobs = _open_jobs(root, create=True, explicit=explicit, force=force)
    try:
        start = pd.Timestamp(start)
        jobs.set_meta("start", str(start.date()))
        return _execute("bootstrap", cfg, provider, root, jobs, start,
                        None if end is None else pd.Timestamp(end), now,
                        SNAPSHOT_ORDER[1:], on_progress)
    finally:
        jobs.close()


class _NoJobs:
    """The job table of a warehouse that does not exist yet (a bootstrap dry run)."""

    @staticmethod
    def done_parts(name: str) -> set:
        return set()


def plan_bootstrap(cfg, *, start, end=None,
                   now: Callable[[], _dt.datetime] | None = None) -> IngestRun:
    """What :func:`bootstrap` from ``start`` would call, without calling or writing anything.

    Open days are estimated as weekdays (exchange holidays, about 10 a year, are not known
    before ``trade_cal`` is fetched, so the estimate is a few percent high).

    Returns
    -------
    IngestRun
        ``dry_run=True``; ``calls`` per endpoint and ``est_seconds`` at the configured rate.
    """
    return _dry_run(cfg, None, _NoJobs(), pd.Timestamp(start),
                    None if end is None else pd.Timestamp(end), now, command="bootstrap")


def _dry_run(cfg, root: Path | None, jobs, start: pd.Timestamp, end, now,
             command: str = "update") -> IngestRun:
    s = tushare_settings(cfg)
    cal = None if root is None else read_dataset(root, DATASETS["trade_cal"])
    known = pd.DatetimeIndex([]) if cal is None else \
        pd.DatetimeIndex(cal.loc[cal["is_open"] == 1, "cal_date"]).sort_values()
    today = pd.Timestamp((now() if now else _dt.datetime.now(SHANGHAI)).date())
    last = known.max() if len(known) else start - pd.Timedelta(days=1)
    guess = pd.bdate_range(last + pd.Timedelta(days=1), max(today, end or today))
    days = known.append(guess)
    if end is None:
        end = expected_end(days, now() if now else _dt.datetime.now(SHANGHAI))
    run = IngestRun(command, root, str(start.date()), str(pd.Timestamp(end).date()),
                    dry_run=True, calls_per_minute=s["calls_per_minute"])
    for name in SNAPSHOT_ORDER + UPDATE_ORDER + s["extra_datasets"]:
        e = max(today, end) if name == "trade_cal" else end
        parts = plan_dataset(DATASETS[name], start=start, end=e, open_days=days,
                             done=jobs.done_parts(name), indices=s["indices"])
        run.parts[name] = {"planned": len(parts), "done": 0, "failed": 0}
        for p in parts:
            for ep, _, _ in p.calls:
                run.calls[ep] = run.calls.get(ep, 0) + 1
    run.est_seconds = 60.0 * sum(run.calls.values()) / run.calls_per_minute
    return run


def update(cfg, provider: Provider | None, *, end=None, root=None, dry_run: bool = False,
           now: Callable[[], _dt.datetime] | None = None,
           on_progress: Callable | None = None) -> IngestRun:
    """Fetch everything missing up to ``end`` into a bootstrapped warehouse.

    Parameters
    ----------
    cfg : Config
        ``[data] root`` (when ``root`` is None) and ``[tushare]``.
    provider : Provider or None
        The data source (unused, may be None, with ``dry_run``).
    end : date-like, optional
        Last date (default: the last open day whose data is complete at ``now``: before
        17:00 Asia/Shanghai, the previous open day).
    root : path, optional
        The warehouse (default ``[data] root``); it must hold ``_jobs.sqlite``.
    dry_run : bool
        Make no call: return the plan (calls per endpoint, estimated time).
    now, on_progress : callable, optional
        As in :func:`bootstrap`.

    Raises
    ------
    DataError
        The root was not bootstrapped.
    """
    root = Path(root if root is not None else cfg.data.root).expanduser()
    jobs = _open_jobs(root, create=False, explicit=True, force=False)
    try:
        start = jobs.get_meta("start")
        if start is None:
            raise DataError(f"{str(root)!r}: the job table has no start date; run "
                            f"`mine data bootstrap` first")
        start = pd.Timestamp(start)
        end = None if end is None else pd.Timestamp(end)
        if dry_run:
            return _dry_run(cfg, root, jobs, start, end, now)
        return _execute("update", cfg, provider, root, jobs, start, end, now,
                        SNAPSHOT_ORDER[1:], on_progress)
    finally:
        jobs.close()

