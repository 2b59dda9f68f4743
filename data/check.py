"""Health report of a warehouse (``mine data check``): findings per check, never a repair.

Works on the embedded snapshot layout (``daily/daily_YYYY.parquet``, ``trade_cal.parquet``,
``stock_basic.parquet``, ``dividend.parquet``, ...) and on the Tushare contract layout
(``suspend_d/``, ``namechange.parquet``, ``stk_limit/``, ...), using whatever datasets are
present: a check that needs a missing dataset is listed in :attr:`CheckReport.skipped` with the
reason. Everything is vectorised over the whole daily table (only the needed columns are read).

Checks (``Finding.check``)
--------------------------
``calendar``
    ``trade_cal`` strictly ascending by ``cal_date``, ``is_open`` in {0, 1}, and a non-missing
    ``pretrade_date`` equal to the previous open day (error).
``duplicates``
    Rows sharing the dataset's key (:data:`KEYS`) in every dataset with a known key (error).
``ohlc``
    ``low > min(open, close)``, ``high < max(open, close)``, ``low > high``, a missing or
    non-positive price, ``vol < 0``, ``amount < 0`` (error; price tolerance half a cent).
``adj_factor``
    Day-over-day relative change of ``adj_factor`` beyond ``adj_tol`` with no ex-date of an
    implemented dividend / bonus-share event in ``dividend.parquet`` between the two bars
    (warning).
``price_limit``
    ``close`` beyond the limit-up / limit-down of :func:`data.limits.limit_cents` (board, ST,
    ChiNext reform, no limit on a listing's first days: exchange rules as coded there) by more
    than ``limit_tol`` yuan (warning; info for the first bar after a suspension, whose special
    rules are not modelled, and for an ST 5% breach judged on current-only ST status).
``missing_days``
    Open days between a stock's first bar (or ``list_date``) and its last bar (or the day before
    ``delist_date``; the end of the daily data for listed stocks) with no bar and no
    ``suspend_d`` record (error); without ``suspend_d``, gaps longer than ``gap_days`` open days
    as "possible suspension or gap" (info). Bars on a closed day (error).
``stale``
    Latest date of each dated dataset (:data:`DATED`) behind the last open day of ``trade_cal``
    (and ``today`` when given) by more than ``stale_days`` open days (warning; index weights are
    monthly and get :data:`MONTHLY_SLACK` extra days).
"""
from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.check_daily import NAT, check_daily, days, read
from data.errors import DataError

__all__ = [
    "CHECKS",
    "DATED",
    "KEYS",
    "SEVERITIES",
    "CheckReport",
    "Finding",
    "check_warehouse",
    "discover",
]

SEVERITIES = ("error", "warning", "info")
CHECKS = ("calendar", "duplicates", "ohlc", "adj_factor", "price_limit", "missing_days",
          "stale")

#: Key columns per dataset (the contract's keys; ``source`` is added to ``index_member`` keys
#: when present, because the snapshot holds two CSI300 lists).
KEYS: dict[str, tuple[str, ...]] = {
    "trade_cal": ("exchange", "cal_date"), "stock_basic": ("ts_code",),
    "daily": ("ts_code", "trade_date"), "daily_basic": ("ts_code", "trade_date"),
    "daily_basic_est": ("ts_code", "trade_date"), "stk_limit": ("ts_code", "trade_date"),
    "moneyflow": ("ts_code", "trade_date"),
    "suspend_d": ("ts_code", "trade_date"), "namechange": ("ts_code", "start_date"),
    "index_daily": ("ts_code", "trade_date"),
    "index_weight": ("index_code", "con_code", "trade_date"),
    "index_member": ("index_code", "con_code", "in_date", "source"),
    "industry_sw": ("ts_code", "in_date"), "index_basic": ("ts_code",),
    "dividend": ("ts_code", "end_date", "ann_date", "div_proc"),
    "fina_indicator": ("ts_code", "end_date", "ann_date"),
    "income": ("ts_code", "end_date", "ann_date", "f_ann_date"),
    "balancesheet": ("ts_code", "end_date", "ann_date", "f_ann_date"),
    "cashflow": ("ts_code", "end_date", "ann_date", "f_ann_date"),
    "valuation_quarterly": ("ts_code", "snapshot_date"),
}
#: Dated datasets checked for staleness, and their date column (event tables such as
#: ``suspend_d`` and ``dividend`` may legitimately end early and are not judged).
DATED = {"daily": "trade_date", "daily_basic": "trade_date", "daily_basic_est": "trade_date",
         "stk_limit": "trade_date", "moneyflow": "trade_date", "index_daily": "trade_date",
         "index_weight": "trade_date"}
#: Extra open days allowed for monthly datasets.
MONTHLY_SLACK = {"index_weight": 25}
_YEAR = re.compile(r"_(\d{4})$")


@dataclass(frozen=True)
class Finding:
    """One problem: which check, how bad, where (``ts_code`` / ``trade_date`` may be None)."""

    check: str
    severity: str
    ts_code: str | None
    trade_date: pd.Timestamp | None
    detail: str


@dataclass
class CheckReport:
    """Result of :func:`check_warehouse`.

    Attributes
    ----------
    root : str
    findings : list of Finding
        At most ``max_findings`` per check (``counts`` holds the true numbers).
    checked : list of str
        Checks that ran (fully or partly).
    skipped : dict of str -> str
        Check (or ``check:dataset`` part) -> why it was skipped.
    counts : dict of str -> dict of str -> int
        Check -> severity -> number of findings.
    notes : list of str
        Caveats of checks that ran on partial information.
    rows : dict of str -> int
        Rows read per dataset.
    elapsed_s : float
    """

    root: str
    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    max_findings: int = 100_000

    @property
    def ok(self) -> bool:
        """True when no error or warning was found (info findings are allowed)."""
        return not any(n for c in self.counts.values()
                       for s, n in c.items() if s in ("error", "warning"))

    def worst(self, check: str) -> str | None:
        """Worst severity found by ``check`` (None when it found nothing)."""
        c = self.counts.get(check, {})
        return next((s for s in SEVERITIES if c.get(s)), None)

    def add(self, check: str, severity: str, codes, days, details) -> None:
        """Record findings given parallel sequences (days as int day numbers or None)."""
        codes, details = list(codes), list(details)
        days = list(days) if days is not None else [None] * len(codes)
        if not codes:
            return
        c = self.counts.setdefault(check, {})
        room = self.max_findings - min(sum(c.values()), self.max_findings)
        c[severity] = c.get(severity, 0) + len(codes)
        for code, day, det in list(zip(codes, days, details))[:room]:
            ts = None if day is None else pd.Timestamp(np.datetime64(int(day), "D"))
            self.findings.append(Finding(check, severity, code, ts, det))


# ------------------------------------------------------------------------------- reading

def discover(root: str | Path) -> dict[str, list[Path]]:
    """Datasets of a warehouse: name -> parquet files.

    A top-level ``name.parquet`` or ``name_YYYY.parquet`` belongs to ``name``; a folder
    ``name/`` of parquet files belongs to ``name``.
    """
    out: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(Path(root).iterdir()):
        if p.name.startswith((".", "_")):
            continue
        if p.is_file() and p.suffix == ".parquet":
            out[_YEAR.sub("", p.stem)].append(p)
        elif p.is_dir():
            files = sorted(p.glob("*.parquet"))
            if files:
                out[p.name].extend(files)
    return dict(out)


# ---------------------------------------------------------------------------- small checks

def _calendar(rep: CheckReport, cal: pd.DataFrame) -> np.ndarray:
    """Calendar sanity; returns the sorted open day numbers."""
    if "exchange" in cal and cal["exchange"].nunique() > 1:
        cal = cal[cal["exchange"].astype(str) == "SSE"]
    d = days(cal["cal_date"])
    bad = np.flatnonzero(np.diff(d) <= 0)
    if bad.size:
        rep.add("calendar", "error", [None], [d[bad[0] + 1]],
                [(f"trade_cal not strictly ascending by cal_date ({bad.size} place(s); "
                  f"first after {np.datetime64(int(d[bad[0]]), 'D')})")])
    is_open = pd.to_numeric(cal["is_open"], errors="coerce").to_numpy()
    wrong = ~np.isin(is_open, [0, 1])
    rep.add("calendar", "error", [None] * int(wrong.sum()), d[wrong],
            ["is_open not 0/1"] * int(wrong.sum()))
    order = np.argsort(d, kind="stable")
    d, is_open = d[order], is_open[order]
    opn = np.unique(d[is_open == 1])
    if "pretrade_date" in cal:
        pre = days(cal["pretrade_date"])[order]
        if (pre == NAT).all():
            rep.notes.append("calendar: pretrade_date is empty; not checked")
        else:
            k = np.searchsorted(opn, d, side="left") - 1      # previous open day
            expect = np.where(k >= 0, opn[np.maximum(k, 0)], NAT)
            wrong = (expect != NAT) & (pre != expect)
            rep.add("calendar", "error", [None] * int(wrong.sum()), d[wrong],
                    [f"pretrade_date {_d(p)} != previous open day {_d(e)}"
                     for p, e in zip(pre[wrong], expect[wrong])])
    return opn


def _d(day) -> str:
    return "NaT" if day == NAT else str(np.datetime64(int(day), "D"))


def _int_codes(s: pd.Series) -> np.ndarray:
    """Non-negative int64 codes of one key column (NaN/NaT -> 0, others from 1)."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        d = days(s.to_numpy())
        return np.where(d == NAT, 0, d - d[d != NAT].min() + 1 if (d != NAT).any() else 0)
    if not isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype("category")
    return s.cat.codes.to_numpy().astype(np.int64) + 1


def _duplicates(rep: CheckReport, name: str, files: list[Path], last: dict[str, int]) -> int:
    """Duplicate keys of one dataset; records its last date for :func:`_stale`."""
    key = KEYS.get(name)
    if key is None:
        rep.skipped[f"duplicates:{name}"] = "no key known for this dataset"
        return 0
    cols = list(key) + ([DATED[name]] if name in DATED and DATED[name] not in key else [])
    df = read(files, cols, dictionary=tuple(c for c in key if "date" not in c))
    if name in DATED and DATED[name] in df and len(df):
        last[name] = int(days(df[DATED[name]].to_numpy()).max())
    cols = [c for c in key if c in df.columns]
    if len(cols) < len([c for c in key if c != "source"]):
        rep.skipped[f"duplicates:{name}"] = f"key columns {key} not all present"
        return len(df)
    k = np.zeros(len(df), np.int64)
    for c in cols:
        v = _int_codes(df[c])
        k = k * (int(v.max(initial=0)) + 1) + v
    dup = np.zeros(len(k), bool)
    if len(k) > 1 and not (np.diff(k) > 0).all():          # fast path: sorted and unique
        o = np.argsort(k, kind="stable")
        dup[o[1:]] = k[o[1:]] == k[o[:-1]]
    if dup.any():
        sub = df.loc[dup, cols]
        code_col = next((c for c in ("ts_code", "con_code") if c in cols), None)
        date_col = next((c for c in ("trade_date", "cal_date") if c in cols), None)
        codes = sub[code_col].astype(str) if code_col else [None] * len(sub)
        dd = days(sub[date_col].to_numpy()) if date_col else None
        det = [f"{name}: duplicate key " + ", ".join(f"{c}={_fmt(v)}" for c, v in zip(cols, r))
               for r in sub.itertuples(index=False)]
        rep.add("duplicates", "error", codes, dd, det)
    return len(df)


def _fmt(v) -> str:
    return str(v.date()) if isinstance(v, pd.Timestamp) else str(v)


def _open_between(opn: np.ndarray, after: int, upto: int) -> int:
    """Open days in ``(after, upto]``."""
    return int(np.searchsorted(opn, upto, "right") - np.searchsorted(opn, after, "right"))


def _stale(rep: CheckReport, ds: dict[str, list[Path]], opn: np.ndarray, cal_end: int,
           stale_days: int, today: int | None, last: dict[str, int]) -> None:
    last_open = int(opn[-1])
    if today is not None:
        if cal_end < today:
            rep.add("stale", "warning", [None], [cal_end],
                    [f"trade_cal ends {_d(cal_end)}, before today {_d(today)}"])
            extra = pd.bdate_range(_d(cal_end + 1), _d(today))
            opn = np.concatenate([opn, days(extra)])
        last_open = int(opn[np.searchsorted(opn, today, "right") - 1])
    for name, col in DATED.items():
        if name not in ds:
            continue
        if name in last:
            end = last[name]
        else:
            d = read(ds[name], [col])
            if col not in d or d.empty:
                rep.skipped[f"stale:{name}"] = f"no {col} column or no rows"
                continue
            end = int(days(d[col]).max())
        behind = _open_between(opn, end, last_open)
        if behind > stale_days + MONTHLY_SLACK.get(name, 0):
            rep.add("stale", "warning", [None], [end],
                    [f"{name} ends {_d(end)}: {behind} open day(s) behind {_d(last_open)}"])


# ------------------------------------------------------------------------------ entry point

def check_warehouse(root: str | Path, *, start=None, end=None, stale_days: int = 2,
                    today=None, gap_days: int = 10, adj_tol: float = 1e-6,
                    limit_tol: float = 0.01, max_findings: int = 100_000) -> CheckReport:
    """Check a warehouse and report what is wrong with it (see the module docstring).

    Parameters
    ----------
    root : path
        Warehouse folder.
    start, end : date-like, optional
        Restrict the daily-bar checks to this range of trade dates.
    stale_days : int
        Open days a dated dataset may lag the calendar's last open day (or ``today``).
    today : date-like, optional
        Also judge staleness against this day.
    gap_days : int
        Without ``suspend_d``: gaps longer than this many open days are reported (info).
    adj_tol : float
        Relative day-over-day ``adj_factor`` change regarded as a jump.
    limit_tol : float
        Yuan beyond a price limit tolerated (rounding).
    max_findings : int
        Findings kept per check (counts stay exact).

    Returns
    -------
    CheckReport

    Raises
    ------
    DataError
        ``root`` is not a folder.
    """
    t0 = time.perf_counter()
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"warehouse {root} is not a folder")
    rep = CheckReport(root=str(root), max_findings=max_findings)
    ds = discover(root)
    if not ds:
        raise DataError(f"{root} holds no warehouse dataset (*.parquet): nothing to check; fill "
                        "one with `mine data bootstrap --root DIR --start YYYY-MM-DD`")
    day = (lambda v: None if v is None else int(days([v])[0]))
    start_d, end_d, today_d = day(start), day(end), day(today)

    opn = None
    if "trade_cal" in ds:
        cal = read(ds["trade_cal"])
        rep.rows["trade_cal"] = len(cal)
        opn = _calendar(rep, cal)
        cal_end = int(days(cal["cal_date"]).max())
        rep.checked.append("calendar")
        if not opn.size:
            rep.add("calendar", "error", [None], None, ["trade_cal has no open day"])
            opn = None
    else:
        rep.skipped["calendar"] = "trade_cal.parquet missing"

    rep.checked.append("duplicates")
    last: dict[str, int] = {}
    for name, files in ds.items():
        if name == "daily":
            continue
        rep.rows[name] = _duplicates(rep, name, files, last)
    if "daily" in ds:
        daily_end = check_daily(rep, root, ds, opn, start_d, end_d, gap_days=gap_days,
                                adj_tol=adj_tol, limit_tol=limit_tol)
    else:
        for c in ("ohlc", "adj_factor", "price_limit", "missing_days"):
            rep.skipped[c] = "daily/ missing"

    if opn is None:
        rep.skipped["stale"] = "trade_cal.parquet missing or empty"
    else:
        if daily_end is not None:
            last["daily"] = daily_end
        _stale(rep, ds, opn, cal_end, stale_days, today_d, last)
        rep.checked.append("stale")
    rep.checked = [c for c in CHECKS if c in rep.checked]
    rep.elapsed_s = time.perf_counter() - t0
    return rep
