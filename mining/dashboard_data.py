"""The tables behind ``mine dashboard``: read from the leaderboard file and the run folders only.

Kept apart from the Streamlit script (:mod:`mining.cli_dashboard`) so they are tested without a
browser. Nothing here loads the warehouse or computes a metric: every number comes from the
store (members, trial charges, runs, the test-split audit) or from what a backtest run wrote
(``performance.json``, ``nav.parquet``). A factor's tear sheet is the one thing that needs
data; the app builds it on request with :func:`mining.report_factor.factor_report`, which
counts the look at valid as a trial, like ``mine eval``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

__all__ = ["lineage_text", "leaderboard_frame", "backtest_runs", "nav_frame", "mining_runs",
           "generations", "llm_rounds", "audit_frame", "alerts_frame",
           "reconciliations_frame", "signals_frame", "signal_days"]


_LINEAGE_KEYS = ("generation_best", "rank", "train_fitness", "input", "reference")


def _ancestor(item) -> str:
    """One referenced member or GP parent as text: ``name (#id)``, or its formula."""
    if isinstance(item, dict):
        name, rid = item.get("name"), item.get("id")
        if name is not None:
            return f"{name} (#{rid})" if rid is not None else str(name)
        return str(item.get("formula", item))
    return str(item)


def lineage_text(provenance: dict) -> str:
    """A member's lineage in one line, from its free-form provenance (each part only if present).

    GP numbers (``generation_best``, ``rank``, ``train_fitness``), a distillation's ``input`` /
    ``reference``, the members it references by ``factor("<name>")`` (``references``:
    ``[{"name", "id", "formula"}]``, recorded at acceptance) and GP parent formulas
    (``parents``: formulas or ``{"name", "id", "formula"}`` dicts).
    """
    parts = [f"{k} {provenance[k]:.4g}" if isinstance(provenance[k], float)
             else f"{k} {provenance[k]}" for k in _LINEAGE_KEYS
             if provenance.get(k) is not None]
    for key in ("references", "parents"):
        items = provenance.get(key)
        if items:
            items = items if isinstance(items, list) else [items]
            parts.append(f"{key} " + "; ".join(_ancestor(x) for x in items))
    return ", ".join(parts)


def leaderboard_frame(cfg, universe: str | None = None, sources=(), min_abs_icir: float = 0.0
                      ) -> pd.DataFrame:
    """The leaderboard as :func:`factors.store_records.to_frame` gives it, plus today's
    adjusted p-value, the test looks and the lineage (:func:`lineage_text`), filtered by universe, producers and |valid ICIR|."""
    from factors.audit import AuditLog
    from factors.store import FactorStore
    with FactorStore(cfg.store.path) as store:
        recs = store.top(None, universe=universe)
        current = store.charges(recs, cfg.store.haircut)
        looks = AuditLog(store).looks()
        frame = store.to_frame(recs, current)
    frame["test_looks"] = [looks.get((r.formula, r.universe), 0) for r in recs]
    frame["lineage"] = [lineage_text(r.provenance) for r in recs]
    if sources:
        frame = frame[frame["source"].isin(list(sources))]
    if min_abs_icir > 0 and "valid_rank_icir" in frame:
        frame = frame[frame["valid_rank_icir"].abs() >= min_abs_icir]
    return frame.reset_index(drop=True)


def backtest_runs(cfg) -> pd.DataFrame:
    """Finished ``mine backtest`` run folders under ``[backtest] out_dir`` with their headline
    performance (newest first); hidden (unfinished) folders are skipped."""
    rows = []
    root = Path(cfg.backtest.out_dir)
    for p in sorted(root.glob("*")) if root.is_dir() else []:
        f = p / "performance.json"
        if p.name.startswith(".") or not f.is_file():
            continue
        try:
            d = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        perf = d.get("performance") or {}
        rows.append({"run": p.name, "path": str(p), "strategy": d.get("strategy"),
                     "benchmark": d.get("benchmark"), "start": perf.get("start"),
                     "end": perf.get("end"), "annual_return": perf.get("annual_return"),
                     "sharpe": perf.get("sharpe"), "max_drawdown": perf.get("max_drawdown"),
                     "information_ratio": perf.get("information_ratio"),
                     "dsr": (d.get("deflated_sharpe") or {}).get("dsr"),
                     "test_unsealed": bool(d.get("test_unsealed")),
                     "mtime": f.stat().st_mtime})
    out = pd.DataFrame(rows)
    return out.sort_values("mtime", ascending=False).reset_index(drop=True) if len(out) else out


def nav_frame(paths) -> pd.DataFrame:
    """NAV from 1 of several run folders side by side (columns: folder names)."""
    cols = {}
    for p in paths:
        nav = pd.read_parquet(Path(p) / "nav.parquet").set_index("trade_date")["nav"]
        cols[Path(p).name] = nav / nav.iloc[0]
    return pd.DataFrame(cols)


def mining_runs(cfg, source: str | None = None) -> pd.DataFrame:
    """The producer runs recorded in the store (gp, llm, library, model, manual), newest first:
    status (``interrupted`` for killed ones), counts, trials added, rejections."""
    from factors.store import FactorStore
    with FactorStore(cfg.store.path) as store:
        runs = store.runs(source)
    rows = [{"run_id": r.run_id, "source": r.source, "status": r.status,
             "universe": r.universe, "seed": r.seed, "started_at": r.started_at,
             "finished_at": r.finished_at, "n_tried": r.n_tried, "n_evaluated": r.n_evaluated,
             "n_accepted": r.n_accepted, "n_new_trials": r.n_new_trials,
             "rejections": ", ".join(f"{k} {v}" for k, v in r.rejections.items())}
            for r in runs]
    return pd.DataFrame(rows).iloc[::-1].reset_index(drop=True)


def _summary(cfg, run_id: str) -> dict:
    from factors.store import FactorStore
    with FactorStore(cfg.store.path) as store:
        run = next((r for r in store.runs() if r.run_id == run_id), None)
    return (run.summary or {}) if run is not None else {}


def generations(cfg, run_id: str) -> pd.DataFrame:
    """A GP run's generations (best / median train fitness, best program), from its summary."""
    return pd.DataFrame(_summary(cfg, run_id).get("generations") or [])


def llm_rounds(cfg, run_id: str) -> pd.DataFrame:
    """An LLM run's rounds (proposed, valid %, accepted %, tokens in / out, estimated cost in
    ``[llm] price_*_per_1m`` units), from its summary; empty for runs recorded before rounds
    were kept."""
    return pd.DataFrame(_summary(cfg, run_id).get("rounds") or [])


def audit_frame(cfg) -> pd.DataFrame:
    """The test-split audit log (``mine audit``) as a table."""
    from factors.audit import AuditLog
    from factors.store import FactorStore
    with FactorStore(cfg.store.path) as store:
        rows = [r.to_dict() for r in AuditLog(store).entries()]
    for r in rows:
        r["subject"] = "; ".join(r["subject"].get("formulas", [])) or str(r["subject"])
        r["metrics"] = ", ".join(r["metrics"])
        r["window"] = " to ".join(r["window"])
        r["code_version"] = (r["code_version"].get("commit") or "")[:8]
    return pd.DataFrame(rows)


def alerts_frame(cfg) -> pd.DataFrame:
    """The stable layer's ``alerts_log`` (``mine alerts --all``) as a table, newest first;
    ``values`` as ``key=value`` text, notification channels as text. Empty when no alert."""
    from factors.alerts import AlertLog
    from factors.store import FactorStore
    with FactorStore(cfg.store.path) as store:
        rows = [r.to_dict() for r in AlertLog(store).entries()]
    for r in rows:
        r["values"] = ", ".join(f"{k}={v}" for k, v in r["values"].items())
        r["notify_sent"] = ", ".join(r["notify_sent"])
        r["notify_pending"] = ", ".join(r["notify_pending"])
    cols = ["id", "date", "ts_code", "rule", "period", "severity", "message", "values",
            "acknowledged", "notify_sent", "notify_pending", "notify_error"]
    return pd.DataFrame(rows, columns=cols)


def reconciliations_frame(cfg) -> pd.DataFrame:
    """``mine reconcile`` records (the ``reconciliations`` table), newest first: plan and trade
    dates, counts per fill status, slippage (bps, + = worse for us), fees, cash drift and the
    Markdown report's path. Empty when none."""
    from factors.store import FactorStore
    from factors.trades import TradeLog
    with FactorStore(cfg.store.path) as store:
        recs = TradeLog(store).reconciliations()
    cols = ["id", "plan_date", "trade_date", "n_orders", "filled", "partial", "missing",
            "over", "unplanned", "slip_ref_bps", "slip_sim_bps", "fees_plan", "fees_actual",
            "cash_drift", "trades_file", "report"]
    rows = []
    for r in recs:
        s = r["summary"]
        rows.append({**{k: r[k] for k in ("id", "plan_date", "trade_date", "trades_file",
                                          "report")},
                     **{k: s.get("status", {}).get(k) for k in
                        ("filled", "partial", "missing", "over", "unplanned")},
                     **{k: s.get(k) for k in ("n_orders", "slip_ref_bps", "slip_sim_bps",
                                              "fees_plan", "fees_actual", "cash_drift")}})
    return pd.DataFrame(rows, columns=cols)


def signals_frame(cfg, date: str | None = None) -> pd.DataFrame:
    """The attack layer's ``signals`` table (``mine signals``): the rows of ``date`` (default
    the latest day with rows), best composite first. Empty when the table has no row."""
    from factors.signal_log import SignalLog
    from factors.store import FactorStore
    with FactorStore(cfg.store.path) as store:
        log = SignalLog(store)
        day = date or log.last_date()
        return log.entries(date=day) if day else log.entries()


def signal_days(cfg) -> list[str]:
    """Days with rows in the ``signals`` table, newest first."""
    from factors.store import FactorStore
    with FactorStore(cfg.store.path) as store:
        return [r[0] for r in store._read(
            "SELECT DISTINCT trade_date FROM signals ORDER BY trade_date DESC")]
