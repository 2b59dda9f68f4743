"""``mine reconcile``: broker fills vs the order plan of ``mine export`` vs the simulator.

:func:`run_reconcile` reads the fills file first (:func:`backtest.reconcile.read_fills`; a bad
file stops here, before anything else is read), finds the plan (``orders_YYYYMMDD.csv`` in
the export folder), replays the plan's orders with the simulator's fill rules on the
execution day (the first trading day after the plan's date;
:func:`backtest.reconcile.simulate_plan`), reconciles (:func:`backtest.reconcile.reconcile`),
writes ``reconcile_YYYYMMDD.json`` and ``reconcile_YYYYMMDD.md`` next to the plan (as one
group, :func:`data.staging.write_together`: both old or both new) and records the fills (``source`` broker and sim) and the reconciliation in the
store (:class:`factors.trades.TradeLog`; importing the same file again adds no row).

Fills are matched to the execution day: rows dated another day are left out (and counted in
the notes); rows carrying only a clock time are taken as the execution day's.

Sealed test split: reconciliation measures execution (fills against the plan and the
replay), never returns or performance. An execution day in ``[evaluate] test`` (live trading
is) needs ``settings.live`` (``--live``): reading its prices is then logged as a ``live``
access (:func:`backtest.seal.unseal`, listed by ``mine audit``) and said in the notes;
without it the run is refused before any price is read.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from backtest.errors import BacktestError, SealedError
from backtest.orders import PLAN_COLUMNS
from backtest.reconcile import (
    COST_COLUMNS,
    FILL_COLUMNS,
    Reconciliation,
    read_fills,
    reconcile,
    simulate_plan,
)
from backtest.rules import CostModel
from backtest.settings import BacktestConfig
from data.io import to_jsonable
from data.staging import clean_stale, write_together

__all__ = ["ReconcileSettings", "ReconcileRun", "find_plan", "read_plan", "run_reconcile",
           "report_markdown"]

_ORDERS = re.compile(r"^orders_(\d{8})\.csv$")


@dataclass(frozen=True)
class ReconcileSettings:
    """What ``mine reconcile`` reconciles."""
    trades: Path                                # the broker fills file
    plan: Optional[Path] = None                 # export folder or orders file; None: default
    date: Optional[str] = None                  # plan date; None: the latest plan there
    out_dir: Path = BacktestConfig.out_dir      # [backtest] out_dir (default plan folder)
    store: bool = True                          # record the fills and the reconciliation
    live: bool = False                          # an execution day in the test split (logged)


def find_plan(plan: Path | None, out_dir: Path, date: str | None = None) -> Path:
    """The orders file to reconcile against.

    ``plan`` is an ``orders_YYYYMMDD.csv`` file, or a folder (default ``<out_dir>/export``)
    in which the file of ``date`` (default: the latest date) is taken.

    Raises
    ------
    BacktestError
        No such folder or file, no plan of that date (the message lists the dates there).
    """
    p = Path(plan) if plan is not None else Path(out_dir) / "export"
    if p.is_file():
        return p
    if not p.is_dir():
        raise BacktestError(f"plan folder {str(p)!r} not found: run `mine export` first or "
                            f"pass --plan")
    clean_stale(p)
    tags = sorted(m.group(1) for f in p.iterdir() if (m := _ORDERS.match(f.name)))
    if not tags:
        raise BacktestError(f"no orders_YYYYMMDD.csv in {str(p)!r}: run `mine export` first")
    tag = tags[-1] if date is None else pd.Timestamp(date).strftime("%Y%m%d")
    if tag not in tags:
        raise BacktestError(f"no plan of {pd.Timestamp(date).date()} in {str(p)!r}; plans "
                            f"there: {', '.join(tags[-5:])}")
    return p / f"orders_{tag}.csv"


def read_plan(path: Path) -> tuple[pd.DataFrame, pd.Timestamp]:
    """An orders file of ``mine export`` and its date (from ``orders_YYYYMMDD.csv``)."""
    m = _ORDERS.match(Path(path).name)
    if m is None:
        raise BacktestError(f"plan {str(path)!r}: expected a file named orders_YYYYMMDD.csv")
    try:
        df = pd.read_csv(path, dtype={"ts_code": str, "side": str, "status": str,
                                      "reason": str}, keep_default_na=False,
                         na_values={"ref_price": [""], "est_value": [""]})
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise BacktestError(f"plan {str(path)!r} is not a readable CSV ({e})") from None
    miss = [c for c in PLAN_COLUMNS if c not in df.columns]
    if miss:
        raise BacktestError(f"plan {str(path)!r}: missing column(s) {', '.join(miss)}")
    return df, pd.Timestamp(m.group(1))


@dataclass
class ReconcileRun:
    """Result of :func:`run_reconcile`; :meth:`to_dict` is ``--json`` and the JSON report."""
    plan_path: Path
    plan_date: pd.Timestamp
    trade_date: pd.Timestamp
    trades_path: Path
    fmt: str
    result: Reconciliation = field(repr=False)
    sim_rejected: pd.DataFrame = field(repr=False)
    notes: list[str]
    files: dict[str, Path]
    stored: dict

    def to_dict(self) -> dict:
        r = self.result
        return {"plan": str(self.plan_path), "plan_date": str(self.plan_date.date()),
                "trade_date": str(self.trade_date.date()), "trades": str(self.trades_path),
                "format": self.fmt, "summary": r.summary,
                "costs": r.costs.rename_axis("item").reset_index().to_dict("records"),
                "orders": r.orders.to_dict("records"),
                "sim_rejected": self.sim_rejected.to_dict("records"), "notes": self.notes,
                "files": {k: str(v) for k, v in self.files.items()}, "stored": self.stored}


def _md_table(df: pd.DataFrame, digits: int = 2) -> str:
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "-" if not np.isfinite(v) else f"{v:,.{digits}f}"
        return str(v)
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    rows = ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, sep, *rows])


def report_markdown(run: ReconcileRun) -> str:
    """The reconciliation as a Markdown page (summary, costs, orders, replay rejections)."""
    s, r = run.result.summary, run.result
    fmt = (lambda v, d=2: "-" if v is None else f"{v:,.{d}f}")
    lines = [f"# Reconciliation of the plan of {run.plan_date.date()} "
             f"(traded {run.trade_date.date()})", "",
             f"- plan: `{run.plan_path}`", f"- fills: `{run.trades_path}` ({run.fmt} format)",
             f"- orders: {s['n_orders']}; " + ", ".join(f"{k} {v}" for k, v in
                                                       s["status"].items()),
             f"- fill rate (value): {fmt(s['fill_rate_value'], 4)}",
             f"- slippage vs reference: {fmt(s['slip_ref_bps'])} bps "
             f"({fmt(s['slip_ref_yuan'])} yuan); vs simulator: {fmt(s['slip_sim_bps'])} bps",
             f"- fees: plan {fmt(s['fees_plan'])}, actual {fmt(s['fees_actual'])}, "
             f"simulator {fmt(s['fees_sim'])} yuan",
             f"- positions drift: {s['n_drift']} order(s), gross "
             f"{fmt(s['drift_value_gross'])} yuan; cash drift {fmt(s['cash_drift'])} yuan",
             f"- sign convention: {s['sign_convention']}", "", "## Costs (yuan)", "",
             _md_table(r.costs.rename_axis("item").reset_index()), "", "## Orders", "",
             _md_table(r.orders)]
    if len(run.sim_rejected):
        lines += ["", "## Simulator replay: rejected", "", _md_table(run.sim_rejected)]
    if run.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in run.notes]
    return "\n".join(lines) + "\n"


def _day_fills(fills: pd.DataFrame, exec_day, plan_date, notes: list[str]):
    dated = sorted(set(fills["trade_date"]) - {""})
    if exec_day is None:
        if len(dated) != 1:
            raise BacktestError(
                f"the warehouse has no trading day after {plan_date.date()} and the fills "
                + ("carry no date: add a trade_date column" if not dated else
                   f"span {len(dated)} days ({', '.join(dated[:3])}): pass one day's fills"))
        exec_day = pd.Timestamp(dated[0])
        notes.append(f"no market data after {plan_date.date()}: execution day taken from "
                     f"the fills ({exec_day.date()}); simulator comparison skipped")
    day = str(pd.Timestamp(exec_day).date())
    keep = fills["trade_date"].isin([day, ""])
    if (~keep).any():
        notes.append(f"{int((~keep).sum())} fill(s) dated another day than {day} left out")
    out = fills.loc[keep].copy()
    out["trade_date"] = day
    return out.reset_index(drop=True), pd.Timestamp(exec_day)


def run_reconcile(cfg, settings: ReconcileSettings) -> ReconcileRun:
    """Reconcile a broker fills file against an order plan and the simulator's replay.

    ``cfg`` needs ``data``, ``backtest`` (costs, participation, execution) and ``store``.

    Returns
    -------
    ReconcileRun

    Raises
    ------
    AlphamineError
        A bad fills file (first, naming row and column), no plan, a plan file without the
        plan columns, fills that cannot be dated (see :func:`_day_fills`); an execution day
        in the test split without ``settings.live`` (:class:`~backtest.errors.SealedError`).
    """
    from backtest.seal import in_test, unseal
    from backtest.simulate import MarketData, SimConfig
    from data.manager import DataManager
    from factors.store import FactorStore
    from factors.trades import TradeLog

    s = settings
    fills, fmt = read_fills(s.trades)
    plan_path = find_plan(s.plan, s.out_dir, s.date)
    plan, plan_date = read_plan(plan_path)
    if s.date is not None and pd.Timestamp(s.date) != plan_date:
        raise BacktestError(f"--date {s.date}: the plan file {plan_path.name} is of "
                            f"{plan_date.date()}")
    notes: list[str] = []
    dm = DataManager.from_config(cfg)
    cal = dm.calendar()
    after = cal[cal > plan_date]
    exec_day = after[0] if len(after) else None
    fills, exec_day = _day_fills(fills, exec_day, plan_date, notes)
    plan_id = str(plan_path.expanduser().absolute())
    if in_test(cfg, exec_day):        # execution prices of a sealed day: --live, logged
        if not s.live:
            raise SealedError(f"the fills' execution day {exec_day.date()} lies in the sealed "
                              f"test split (from {cfg.evaluate.test[0]}): pass --live to "
                              "reconcile a production day (recorded, see `mine audit`)")
        acc = unseal(cfg, purpose="live", universe=None,
                     subject={"plan": plan_id, "trades": str(Path(s.trades).absolute())},
                     window=(str(exec_day.date()), str(exec_day.date())))
        notes.append(f"the execution day {exec_day.date()} lies in the test split: this read "
                     f"of its prices and fills is logged as a live access (audit "
                     f"#{acc.audit_id}, `mine audit`); no return or performance is computed")
    sim = SimConfig.from_config(cfg.backtest)
    cost = CostModel.from_config(cfg.backtest)
    sim_fills, rejected = None, pd.DataFrame(columns=["ts_code", "side", "volume", "reason"])
    codes = sorted(set(plan.loc[plan["status"] == "ok", "ts_code"].astype(str)))
    if exec_day in cal:
        if codes:
            mk = MarketData.from_dm(dm, codes, exec_day, exec_day)
            sim_fills, rejected = simulate_plan(plan, mk, exec_day, cost, sim.participation,
                                                sim.execution, sim.price_limits)
        else:
            sim_fills = pd.DataFrame(columns=FILL_COLUMNS + list(COST_COLUMNS))
    res = reconcile(plan, fills, exec_day, cost, sim_fills)
    tag = plan_date.strftime("%Y%m%d")
    folder = plan_path.parent
    files = {"json": folder / f"reconcile_{tag}.json", "markdown": folder / f"reconcile_{tag}.md"}
    run = ReconcileRun(plan_path=plan_path, plan_date=plan_date, trade_date=exec_day,
                       trades_path=Path(s.trades), fmt=fmt, result=res, sim_rejected=rejected,
                       notes=notes, files=files, stored={})
    if s.store:
        digest = hashlib.sha256(Path(s.trades).read_bytes()).hexdigest()
        with FactorStore(cfg.store.path) as store:
            log = TradeLog(store)
            added, dup = log.add(fills.to_dict("records"), "broker", plan_id,
                                 file=str(Path(s.trades).absolute()))
            n_sim = log.add(sim_fills.to_dict("records"), "sim", plan_id)[0] \
                if sim_fills is not None else 0
            rid = log.record(plan_id=plan_id, plan_date=str(plan_date.date()),
                             trade_date=str(exec_day.date()), trades_file=str(s.trades),
                             trades_digest=digest, summary=res.summary,
                             report=str(files["markdown"]))
        run.stored = {"broker_added": added, "broker_already": dup, "sim_rows": n_sim,
                      "reconciliation_id": rid}
    doc = json.dumps(to_jsonable(run.to_dict()), indent=2, ensure_ascii=False,
                     allow_nan=False)
    md = report_markdown(run)
    write_together(folder, {
        files["json"].name: lambda tmp: Path(tmp).write_text(doc, encoding="utf-8"),
        files["markdown"].name: lambda tmp: Path(tmp).write_text(md, encoding="utf-8")},
        label=f"reconcile_{tag}")
    return run
