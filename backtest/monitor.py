"""The stable layer (稳定层): rules over point-in-time quarterly fundamentals that raise alerts.

The layer never trades: an alert is a prompt for a person to review a holding (reference
``system-dev-doc-zh.md`` sections 二 and 四: dividend yield too low for two quarters, valuation
soaring, results down two quarters running, then a person decides). ``mine monitor`` runs
:func:`run_monitor`, stores the alerts in ``alerts_log`` (:mod:`factors.alerts`) and sends the
notifications (:mod:`backtest.notify`).

Inputs (long tables from :class:`data.manager.DataManager`, each row with ``visible_date``):
valuation snapshots per quarter end (``pe``, ``pb``, ``dv_ratio``), dividend plans, and the
financial reports when the warehouse has them (``fina_indicator`` / ``income``). Point in
time: a monitor run "at ``date``" uses only rows with ``visible_date <= date`` (a quarter's
report is unseen before the open day after its announcement; a valuation snapshot before its
anchor day), so truncating the tables after ``date`` never changes its alerts. The monitor
reads fundamentals only and computes no return, IC or performance, so it is outside the rule
of :mod:`backtest.seal` and runs on any date, the test split's included (it is a production
tool, like ``mine combine --live``, but shows no performance to log).

Rules (:data:`RULES`; thresholds in ``[monitor]`` of ``mine.toml``, :class:`MonitorConfig`)
--------------------------------------------------------------------------------------------
``low_yield``       ``dv_ratio`` (trailing dividend yield, %; NaN = no dividend = 0) below
                    ``min_dv_ratio`` for ``low_yield_quarters`` consecutive quarters.
``pe_high``         ``pe`` above the ``pctl`` quantile of its own previous ``pctl_years`` x 4
``pb_high``         quarters (at least ``pctl_min_quarters`` of them); a loss-maker's pe (NaN)
                    never triggers.
``pe_jump``         ``pe`` / ``pb`` up more than ``max_jump`` (fraction) from the previous
``pb_jump``         quarter end (估值快速飙升); both values positive, quarters adjacent.
``profit_decline``  net profit down ``profit_quarters`` reported quarters running. Source, first
                    available: ``fina_indicator.netprofit_yoy`` < 0 (year on year, %);
                    ``income.n_income`` below the same period a year earlier; else (the
                    embedded snapshot) the proxy ``total_mv / pe`` -- tushare's ``pe`` is the
                    static (last annual report) PE, so this is last year's net profit and it
                    changes once a year: the rule then reads "the last ``profit_quarters``
                    changes of reported annual profit were declines".
``dividend_cut``    a fiscal year's total cash dividend (all plans of the year, in yuan: per
                    share x base share, so splits do not count) below the previous year's by
                    more than ``dividend_cut`` (fraction), decided when the year's annual plan
                    (end_date 12-31) is announced; the latest stage of each plan seen so far
                    counts, a plan voted down or stopped counts 0.

Alerts fire at the onset (``repeat = false``: a condition that holds for several quarters is
reported once, in its first quarter) and are keyed by ``(ts_code, rule, period)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

__all__ = ["RULES", "SEVERITY", "MonitorConfig", "MonitorResult", "find_alerts",
           "run_monitor", "rule_low_yield", "rule_valuation_high", "rule_valuation_jump",
           "rule_profit_decline", "rule_dividend_cut"]

#: Rule names, in display order.
RULES = ("low_yield", "pe_high", "pb_high", "pe_jump", "pb_jump", "profit_decline",
         "dividend_cut")
#: Severity of each rule's alerts (jumps over twice ``max_jump`` are ``high``).
SEVERITY = {"low_yield": "low", "pe_high": "medium", "pb_high": "medium", "pe_jump": "medium",
            "pb_jump": "medium", "profit_decline": "high", "dividend_cut": "high"}
_COLS = ["date", "ts_code", "rule", "period", "severity", "message", "values"]


@dataclass(frozen=True)
class MonitorConfig:
    """``[monitor]``: the stable layer's rules and thresholds (module docstring)."""

    #: Accepted values of the numeric keys (checked by the config loader).
    RANGES: ClassVar[dict] = {"min_dv_ratio": (0, 100), "low_yield_quarters": (1, 40),
                              "pctl": (0, 1, True), "pctl_years": (1, 20),
                              "pctl_min_quarters": (2, 80), "max_jump": (0, None, True),
                              "profit_quarters": (1, 12), "dividend_cut": (0, 1, True)}

    universe: str = "csi300"
    rules: tuple = RULES
    min_dv_ratio: float = 1.0
    low_yield_quarters: int = 2
    pctl: float = 0.9
    pctl_years: int = 5
    pctl_min_quarters: int = 12
    max_jump: float = 0.5
    profit_quarters: int = 2
    dividend_cut: float = 0.2
    repeat: bool = False

    def __post_init__(self) -> None:
        bad = [r for r in self.rules if r not in RULES]
        if bad:
            raise ValueError(f"rules: unknown rule(s) {', '.join(map(str, bad))}; use "
                             f"{', '.join(RULES)}")


@dataclass
class MonitorResult:
    """Alerts of one monitor run.

    Attributes
    ----------
    alerts : DataFrame
        Columns ``date`` (ISO day the triggering numbers became visible), ``ts_code``,
        ``rule``, ``period`` (ISO quarter / report period / fiscal year end), ``severity``,
        ``message``, ``values`` (dict of the numbers behind it); sorted by date, ts_code, rule.
    counts : dict
        Rule -> number of alerts (every rule evaluated, zeros included).
    date, start : str
        The monitor day and the first day of the window (``None``: the latest state only).
    n_codes : int
        Stocks monitored.
    profit_source : str
        Which data the ``profit_decline`` rule used.
    """

    alerts: pd.DataFrame
    counts: dict
    date: str
    start: str | None
    n_codes: int
    profit_source: str
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.date, "start": self.start, "n_codes": self.n_codes,
                "profit_source": self.profit_source, "counts": self.counts,
                "notes": self.notes, "alerts": self.alerts.to_dict("records")}


# ------------------------------------------------------------------------------ helpers
def _new_group(df: pd.DataFrame, period: str, months: int | None) -> pd.Series:
    """True where a row starts a new run: another stock, or (``months``) a gap in periods."""
    new = df["ts_code"].ne(df["ts_code"].shift())
    if months is not None:
        prev = df[period].shift() + pd.offsets.MonthEnd(months)
        new |= df[period].ne(prev)
    return new


def _run_length(flag: pd.Series, new: pd.Series) -> pd.Series:
    """Length of the run of consecutive True ending at each row (0 where False); ``new``
    breaks runs."""
    brk = (~flag) | new
    return flag.astype(int).groupby(brk.cumsum()).cumsum()


def _onset(hit: pd.Series, new: pd.Series) -> pd.Series:
    """``hit`` and not hit in the previous row of the same run."""
    return hit & ~(hit.shift(fill_value=False) & ~new)


def _iso(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).dt.strftime("%Y-%m-%d")


def _events(df: pd.DataFrame, hit: pd.Series, rule: str, period: str, msg, vals) -> pd.DataFrame:
    """Rows of ``df`` evaluated by a rule with ``hit`` -> alert frame (+ ``hit`` and ``latest``
    for the selection in :func:`find_alerts`)."""
    out = pd.DataFrame({"date": df["visible_date"].to_numpy(), "ts_code": df["ts_code"].to_numpy(),
                        "rule": rule, "period": df[period].to_numpy(),
                        "hit": hit.to_numpy(bool)})
    sub = df.loc[hit.to_numpy(bool)]
    out["severity"] = SEVERITY[rule]
    out["message"] = ""
    out["values"] = None
    idx = np.flatnonzero(hit.to_numpy(bool))
    out.loc[idx, "message"] = [msg(r) for r in sub.itertuples(index=False)]
    out.loc[idx, "values"] = pd.Series([vals(r) for r in sub.itertuples(index=False)],
                                       index=idx, dtype=object)
    return out


def _f(x: float, d: int = 2) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), d + 2)


# ------------------------------------------------------------------------------ rules
def rule_low_yield(val: pd.DataFrame, min_dv_ratio: float, quarters: int,
                   repeat: bool = False) -> pd.DataFrame:
    """``low_yield``: dividend yield below ``min_dv_ratio`` % for ``quarters`` adjacent quarters.

    Parameters
    ----------
    val : DataFrame
        Valuation rows (:meth:`data.manager.DataManager.valuation_quarterly`) visible at the
        monitor day, sorted by ts_code, quarter. ``dv_ratio`` NaN with a market value = 0 %.
    min_dv_ratio : float
        Threshold in % (tushare ``dv_ratio`` unit).
    quarters : int
        Consecutive quarters required.
    repeat : bool
        False: alert only in the quarter the run reaches ``quarters``.

    Returns
    -------
    DataFrame
        One row per valuation row, ``hit`` marking alerts (columns of :func:`find_alerts`).
    """
    dv = val["dv_ratio"].where(val["dv_ratio"].notna() | val["total_mv"].isna(), 0.0)
    low = (dv < min_dv_ratio).fillna(False)
    run = _run_length(low, _new_group(val, "quarter", 3))
    hit = run >= quarters if repeat else run == quarters
    tmp = val.assign(dv=dv)
    return _events(tmp, hit, "low_yield", "quarter",
                   lambda r: f"dividend yield {r.dv:.2f}% < {min_dv_ratio:g}% for "
                             f"{quarters} quarters",
                   lambda r: {"dv_ratio": _f(r.dv), "min_dv_ratio": min_dv_ratio,
                              "quarters": quarters})


def rule_valuation_high(val: pd.DataFrame, field_: str, pctl: float, window: int,
                        min_quarters: int, repeat: bool = False) -> pd.DataFrame:
    """``pe_high`` / ``pb_high``: the value above its own trailing quantile.

    The quantile ``pctl`` (linear interpolation) of the stock's previous ``window`` quarter
    ends (the current one excluded; NaN -- a loss-maker's pe -- skipped, at least
    ``min_quarters`` values). Only positive values trigger.

    Returns
    -------
    DataFrame
        As :func:`rule_low_yield`.
    """
    x = val[field_].where(val[field_] > 0)
    hist = x.groupby(val["ts_code"], sort=False).transform(
        lambda s: s.shift(1).rolling(window, min_periods=min_quarters).quantile(pctl))
    high = (x > hist).fillna(False)
    new = _new_group(val, "quarter", None)
    hit = high if repeat else _onset(high, new)
    tmp = val.assign(x=x, hist=hist)
    return _events(tmp, hit, f"{field_}_high", "quarter",
                   lambda r: f"{field_} {r.x:.2f} above its {window // 4}-year "
                             f"{pctl * 100:g}th percentile {r.hist:.2f}",
                   lambda r: {field_: _f(r.x), "threshold": _f(r.hist), "pctl": pctl,
                              "window_quarters": window})


def rule_valuation_jump(val: pd.DataFrame, field_: str, max_jump: float,
                        repeat: bool = False) -> pd.DataFrame:
    """``pe_jump`` / ``pb_jump``: up more than ``max_jump`` (fraction) within one quarter.

    Both quarter ends must be adjacent and positive. Severity ``high`` above twice
    ``max_jump``. ``repeat`` is accepted for symmetry (a jump is an event; every one counts).

    Returns
    -------
    DataFrame
        As :func:`rule_low_yield`.
    """
    x = val[field_].where(val[field_] > 0)
    new = _new_group(val, "quarter", 3)
    prev = x.shift().where(~new)
    chg = x / prev - 1.0
    hit = (chg > max_jump).fillna(False)
    tmp = val.assign(x=x, prev=prev, chg=chg)
    out = _events(tmp, hit, f"{field_}_jump", "quarter",
                  lambda r: f"{field_} {r.prev:.2f} -> {r.x:.2f} (+{r.chg * 100:.0f}%) in a "
                            f"quarter",
                  lambda r: {field_: _f(r.x), f"{field_}_prev": _f(r.prev),
                             "change": _f(r.chg), "max_jump": max_jump})
    out.loc[(chg > 2 * max_jump).to_numpy(bool), "severity"] = "high"
    return out


def _latest_versions(rows: pd.DataFrame) -> pd.DataFrame:
    """The last visible version of each (ts_code, end_date) (rows sorted by visible_date)."""
    return rows.drop_duplicates(["ts_code", "end_date"], keep="last").reset_index(drop=True)


def rule_profit_decline(reports: pd.DataFrame, quarters: int, source: str,
                        repeat: bool = False) -> pd.DataFrame:
    """``profit_decline``: net profit down ``quarters`` reported periods running.

    Parameters
    ----------
    reports : DataFrame
        ``source == "fina_indicator"``: report rows with ``netprofit_yoy`` (%);
        ``"income"``: report rows with ``n_income`` (yuan, year to date), compared with the
        same period a year earlier; ``"snapshot"``: valuation rows (``pe``, ``total_mv``),
        proxy ``total_mv / pe`` = last annual net profit, one "report" per change. Rows
        visible at the monitor day only (:func:`find_alerts` filters).
    quarters : int
        Consecutive declining periods required.
    source : {"fina_indicator", "income", "snapshot"}

    Returns
    -------
    DataFrame
        As :func:`rule_low_yield` (``period`` = report end date).
    """
    if source == "snapshot":
        v = reports.sort_values(["ts_code", "quarter"], kind="mergesort")
        e = (v["total_mv"] / v["pe"].where(v["pe"] > 0)).rename("e")
        v = v.assign(e=e).dropna(subset=["e"]).reset_index(drop=True)
        prev = v.groupby("ts_code", sort=False)["e"].shift()
        v = v.assign(prev=prev, chg=v["e"] / prev - 1.0)
        v = v.loc[v["chg"].abs() > 0.005].reset_index(drop=True)    # an annual report landed
        v = v.rename(columns={"quarter": "end_date"})
        down = v["chg"] < 0
        unit = "annual net profit (total_mv / pe)"
    else:
        v = _latest_versions(reports).sort_values(["ts_code", "end_date"], kind="mergesort")
        v = v.reset_index(drop=True)
        if source == "fina_indicator":
            v = v.assign(chg=v["netprofit_yoy"] / 100.0, e=np.nan, prev=np.nan)
        else:
            last_year = v[["ts_code", "end_date", "n_income"]].assign(
                end_date=v["end_date"] + pd.offsets.DateOffset(years=1))
            last_year = last_year.rename(columns={"n_income": "prev"})
            v = v.merge(last_year, on=["ts_code", "end_date"], how="left")
            v = v.assign(e=v["n_income"],
                         chg=(v["n_income"] - v["prev"]) / v["prev"].abs())
        down = (v["chg"] < 0)
        unit = "net profit year on year"
    down = down.fillna(False)
    run = _run_length(down, v["ts_code"].ne(v["ts_code"].shift()))
    hit = run >= quarters if repeat else run == quarters
    return _events(v, hit, "profit_decline", "end_date",
                   lambda r: f"{unit} down {quarters} reports running "
                             f"(latest {r.chg * 100:+.1f}%)",
                   lambda r: {"change": _f(r.chg), "net_profit": _f(r.e),
                              "net_profit_prev": _f(r.prev), "reports": quarters,
                              "source": source})


def rule_dividend_cut(plans: pd.DataFrame, cut: float) -> pd.DataFrame:
    """``dividend_cut``: a fiscal year's cash dividend below the previous year's by > ``cut``.

    Parameters
    ----------
    plans : DataFrame
        Dividend plan stages (:meth:`data.manager.DataManager.dividend_plans`) visible at the
        monitor day, sorted by ts_code, end_date, visible_date.
    cut : float
        Fraction in (0, 1].

    Returns
    -------
    DataFrame
        As :func:`rule_low_yield`: one row per fiscal year with an annual plan, ``period`` the
        year end, ``date`` the day the annual plan became visible.
    """
    if plans.empty:
        return pd.DataFrame(columns=_COLS + ["hit"])
    last = _latest_versions(plans)
    first = plans.drop_duplicates(["ts_code", "end_date"], keep="first")
    last = last.assign(year=last["end_date"].dt.year)
    total = last.groupby(["ts_code", "year"])["cash_total"].sum(min_count=1)
    ann = first.loc[(first["end_date"].dt.month == 12) & (first["end_date"].dt.day == 31)]
    fy = pd.DataFrame({"ts_code": ann["ts_code"].to_numpy(),
                       "year": ann["end_date"].dt.year.to_numpy(),
                       "visible_date": ann["visible_date"].to_numpy(),
                       "end_date": ann["end_date"].to_numpy()})
    fy["total"] = total.reindex(pd.MultiIndex.from_frame(fy[["ts_code", "year"]])).to_numpy()
    has = set(zip(fy["ts_code"], fy["year"]))
    prev = total.reindex(pd.MultiIndex.from_arrays([fy["ts_code"], fy["year"] - 1])).to_numpy()
    prev_annual = np.array([(c, y - 1) in has for c, y in zip(fy["ts_code"], fy["year"])],
                           dtype=bool)
    fy["prev"] = np.where(prev_annual, prev, np.nan)
    fy["chg"] = fy["total"] / fy["prev"] - 1.0
    fy = fy.sort_values(["ts_code", "year"]).reset_index(drop=True)
    hit = ((fy["prev"] > 0) & (fy["chg"] < -cut)).fillna(False)
    return _events(fy, hit, "dividend_cut", "end_date",
                   lambda r: f"FY{r.year} cash dividend {r.total / 1e8:.2f} yi yuan, "
                             f"{r.chg * 100:+.0f}% vs FY{r.year - 1}",
                   lambda r: {"cash_total": _f(r.total, 0), "cash_total_prev": _f(r.prev, 0),
                              "change": _f(r.chg), "max_cut": cut})


# ------------------------------------------------------------------------------ driver
def find_alerts(valuation: pd.DataFrame, plans: pd.DataFrame, reports: pd.DataFrame | None,
                cfg: MonitorConfig, date, start=None, profit_source: str = "snapshot"
                ) -> tuple[pd.DataFrame, dict]:
    """Every rule of ``cfg.rules`` at ``date`` on the given tables (the pure core of
    :func:`run_monitor`).

    Parameters
    ----------
    valuation, plans : DataFrame
        :meth:`~data.manager.DataManager.valuation_quarterly`,
        :meth:`~data.manager.DataManager.dividend_plans` rows (any dates: rows visible after
        ``date`` are dropped here).
    reports : DataFrame or None
        :meth:`~data.manager.DataManager.report_rows` of ``profit_source`` (None for the
        snapshot proxy).
    cfg : MonitorConfig
    date : date-like
        Monitor day.
    start : date-like, optional
        First day of the window: alerts that became visible in ``[start, date]``. None: the
        latest state only (each stock's last visible period of each rule).
    profit_source : {"fina_indicator", "income", "snapshot"}

    Returns
    -------
    (DataFrame, dict)
        Alerts (columns of :class:`MonitorResult`) and the count per rule.
    """
    d = pd.Timestamp(date)
    val = valuation.loc[valuation["visible_date"] <= d].sort_values(
        ["ts_code", "quarter"], kind="mergesort").reset_index(drop=True)
    pl = plans.loc[plans["visible_date"] <= d].reset_index(drop=True)
    w = cfg.pctl_years * 4
    parts = {}
    for rule in cfg.rules:
        if rule == "low_yield":
            parts[rule] = rule_low_yield(val, cfg.min_dv_ratio, cfg.low_yield_quarters,
                                         cfg.repeat)
        elif rule in ("pe_high", "pb_high"):
            parts[rule] = rule_valuation_high(val, rule[:2], cfg.pctl, w, cfg.pctl_min_quarters,
                                              cfg.repeat)
        elif rule in ("pe_jump", "pb_jump"):
            parts[rule] = rule_valuation_jump(val, rule[:2], cfg.max_jump, cfg.repeat)
        elif rule == "profit_decline":
            src = val if profit_source == "snapshot" else reports.loc[
                reports["visible_date"] <= d]
            parts[rule] = rule_profit_decline(src, cfg.profit_quarters, profit_source,
                                              cfg.repeat)
        elif rule == "dividend_cut":
            parts[rule] = rule_dividend_cut(pl, cfg.dividend_cut)
    out = []
    for rule, ev in parts.items():
        if ev.empty:
            continue
        if start is None:      # the latest state: each stock's last evaluated period
            last = ev.groupby("ts_code")["period"].transform("max")
            ev = ev.loc[ev["period"] == last]
        else:
            ev = ev.loc[pd.to_datetime(ev["date"]) >= pd.Timestamp(start)]
        out.append(ev.loc[ev["hit"]])
    alerts = (pd.concat(out, ignore_index=True) if out
              else pd.DataFrame(columns=_COLS + ["hit"]))
    alerts = alerts.drop(columns="hit")
    if not alerts.empty:
        alerts["date"] = _iso(alerts["date"])
        alerts["period"] = _iso(alerts["period"])
        alerts = alerts.sort_values(["date", "ts_code", "rule"], kind="mergesort")
    alerts = alerts[_COLS].reset_index(drop=True)
    counts = {r: int((alerts["rule"] == r).sum()) for r in cfg.rules}
    return alerts, counts


def run_monitor(dm, cfg: MonitorConfig, date, *, start=None, codes=None,
                universe: str | None = None) -> MonitorResult:
    """Load the fundamentals of the monitored stocks and apply the rules (:func:`find_alerts`).

    Parameters
    ----------
    dm : DataManager
    cfg : MonitorConfig
    date : date-like
        Monitor day (inside the warehouse's calendar).
    start : date-like, optional
        Window start (alerts visible in ``[start, date]``); None: the latest state.
    codes : list of str, optional
        A watchlist; otherwise the point-in-time members of ``universe`` (default
        ``cfg.universe``) on any day of ``[start or date, date]``.
    universe : str, optional

    Returns
    -------
    MonitorResult

    Raises
    ------
    DataError, UniverseError
        Dates outside the data, unknown universe.
    """
    d = pd.Timestamp(date)
    notes = []
    if codes is None:
        u = universe or cfg.universe
        codes = list(dm.universe_codes(u, start or d, d))
    codes = sorted(set(map(str, codes)))
    val = dm.valuation_quarterly(codes)
    plans = dm.dividend_plans(codes)
    reports, source = None, "snapshot"
    if "profit_decline" in cfg.rules:
        if dm.has_dataset("fina_indicator"):
            source = "fina_indicator"
            reports = dm.report_rows(source, ["netprofit_yoy"], codes)
        elif dm.has_dataset("income"):
            source = "income"
            reports = dm.report_rows(source, ["n_income"], codes)
        else:
            notes.append("profit_decline: no fina_indicator / income in the warehouse; using "
                         "the proxy total_mv / pe (last annual net profit)")
    alerts, counts = find_alerts(val, plans, reports, cfg, d, start, source)
    return MonitorResult(alerts=alerts, counts=counts, date=d.date().isoformat(),
                         start=None if start is None else pd.Timestamp(start).date().isoformat(),
                         n_codes=len(codes), profit_source=source, notes=notes)
