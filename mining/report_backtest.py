"""``mine report backtest``: a backtest report as one self-contained HTML file (plotly).

:func:`backtest_report` reads a finished ``mine backtest`` run folder (``nav.parquet`` with the
benchmark close and excess NAV, ``trades``, ``rejected``, ``costs``, ``positions``,
``yearly.csv``, ``performance.json``; :mod:`backtest.backtest_run`) and draws it. Nothing is
simulated or measured again: a report shows the numbers the run already wrote, so it neither
reads the warehouse nor touches the sealed test split (a run that reached it was unsealed and
logged when it ran).

Charts: NAV against the benchmark (both from 1) and the excess NAV; drawdown (underwater);
monthly returns heatmap; 60-day rolling Sharpe; traded value and costs by type per month;
holdings count and cash weight; rejected orders by reason; the per-year table and the headline
performance (with the deflated Sharpe ratio when the run has one).
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from data.errors import ConfigError
from data.io import atomic_write
from mining.report_factor import _plotly

__all__ = ["BacktestReportRun", "render_backtest_report", "backtest_report"]

_FILES = ("nav", "trades", "rejected", "costs", "positions")


@dataclass
class BacktestReportRun:
    """Result of :func:`backtest_report`."""

    run_dir: Path
    path: Path
    seconds: float
    figures: list[Any] = field(repr=False, default_factory=list)


def _pct(v) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.2f}%"


def _num(v, d: int = 2) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{d}f}"


def render_backtest_report(frames: dict[str, pd.DataFrame], perf: dict,
                           yearly: pd.DataFrame) -> tuple[str, list]:
    """The report's HTML text and figures from a run folder's tables.

    Raises
    ------
    ConfigError
        plotly is not installed.
    """
    go, make_subplots = _plotly()
    nav = frames["nav"].sort_values("trade_date").set_index("trade_date")
    figs = []
    v = nav["nav"] / nav["nav"].iloc[0]
    fig = go.Figure()
    fig.add_scatter(x=v.index, y=v, name="strategy")
    if "bench_close" in nav and nav["bench_close"].notna().any():
        b = nav["bench_close"] / nav["bench_close"].dropna().iloc[0]
        fig.add_scatter(x=b.index, y=b, name=perf.get("benchmark", "benchmark"))
    if "excess_nav" in nav:
        fig.add_scatter(x=nav.index, y=nav["excess_nav"], name="excess NAV",
                        line={"dash": "dot"})
    fig.update_layout(title="NAV against the benchmark (from 1) and excess NAV")
    figs.append(fig)

    dd = v / v.cummax() - 1.0
    fig = go.Figure(go.Scatter(x=dd.index, y=dd, fill="tozeroy", name="drawdown"))
    fig.update_layout(title="Drawdown (underwater)", yaxis_tickformat=".0%")
    figs.append(fig)

    r = v.pct_change()
    mo = (1 + r.fillna(0)).groupby([r.index.year, r.index.month]).prod() - 1
    piv = mo.unstack()
    fig = go.Figure(go.Heatmap(z=piv.to_numpy(), x=[str(c) for c in piv.columns],
                               y=[str(i) for i in piv.index], colorscale="RdYlGn", zmid=0.0,
                               texttemplate="%{z:.1%}", colorbar={"title": "return"}))
    fig.update_layout(title="Monthly returns", xaxis_title="month", yaxis_title="year")
    figs.append(fig)

    rs = r.rolling(60, min_periods=40)
    sharpe = rs.mean() / rs.std() * np.sqrt(252)
    fig = go.Figure(go.Scatter(x=sharpe.index, y=sharpe, name="rolling Sharpe"))
    fig.update_layout(title="60-day rolling Sharpe ratio (annualised)")
    figs.append(fig)

    tr = frames["trades"]
    costs = frames["costs"].set_index("trade_date")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if len(tr):
        tv = tr.set_index("trade_date")["value"].abs().groupby(pd.Grouper(freq="ME")).sum()
        fig.add_bar(x=tv.index, y=tv, name="traded value (yuan)", opacity=0.4)
    cm = costs.groupby(pd.Grouper(freq="ME")).sum()
    for c in cm.columns:
        fig.add_scatter(x=cm.index, y=cm[c], name=c, secondary_y=True)
    fig.update_layout(title="Traded value per month and costs by type (right axis, yuan)")
    figs.append(fig)

    pos = frames["positions"]
    held = pos[pos["quantity"] > 0].groupby("trade_date").size().reindex(nav.index, fill_value=0)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_scatter(x=held.index, y=held, name="names held")
    fig.add_scatter(x=nav.index, y=nav["cash"] / nav["nav"], name="cash weight",
                    secondary_y=True)
    fig.update_layout(title="Holdings count and cash weight (right axis)")
    figs.append(fig)

    rej = frames["rejected"]
    counts = rej["reason"].value_counts() if len(rej) else pd.Series(dtype=int)
    fig = go.Figure(go.Bar(x=list(counts.index) or ["none"], y=list(counts.values) or [0]))
    fig.update_layout(title=f"Rejected orders by reason ({int(counts.sum())} in all)")
    figs.append(fig)

    p, ds = perf.get("performance", {}), perf.get("deflated_sharpe") or {}
    head = (f"<tr><td>{html.escape(str(p.get('start')))} to {html.escape(str(p.get('end')))}"
            f"</td><td>{_pct(p.get('annual_return'))}</td><td>{_num(p.get('sharpe'))}</td>"
            f"<td>{_pct(p.get('max_drawdown'))}</td><td>{_num(p.get('information_ratio'))}</td>"
            f"<td>{_num(p.get('turnover'), 1)}</td><td>{_num(ds.get('dsr'), 3)} "
            f"(N={ds.get('n_trials', '-')})</td></tr>")
    cols = [c for c in ("year", "period", "return", "bench_return", "excess", "sharpe",
                        "max_drawdown", "ir") if c in yearly]
    rows = "".join("<tr>" + "".join(
        f"<td>{_pct(row[c]) if c in ('return', 'bench_return', 'excess', 'max_drawdown') else (_num(row[c]) if c in ('sharpe', 'ir') else html.escape(str(row[c])))}</td>"
        for c in cols) + "</tr>" for _, row in yearly.iterrows())
    parts = [f"<div class='chart'>{f.to_html(full_html=False, include_plotlyjs=(i == 0))}</div>"
             for i, f in enumerate(figs)]
    title = f"{perf.get('strategy', 'strategy')} vs {perf.get('benchmark', '')}"
    note = html.escape(perf.get("note", ""))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}.note{color:#666}</style></head><body>"
        f"<h1>Backtest report</h1><h2>{html.escape(title)}</h2>"
        "<table><tr><th>window</th><th>annual return</th><th>Sharpe</th><th>max drawdown</th>"
        f"<th>IR</th><th>turnover</th><th>deflated Sharpe</th></tr>{head}</table>"
        f"<p class='note'>{note}</p>" + "".join(parts)
        + "<h3>Per year</h3><table><tr>" + "".join(f"<th>{c}</th>" for c in cols)
        + f"</tr>{rows}</table></body></html>")
    return page, figs


def backtest_report(run_dir: Path, out: Optional[Path] = None, *,
                    force: bool = False) -> BacktestReportRun:
    """Draw the backtest run in ``run_dir`` into ``out`` (default ``<run_dir>/report.html``).

    Raises
    ------
    ConfigError
        plotly missing, not a finished backtest run folder (a file is missing), ``out``
        exists and ``force`` is not set.
    """
    from backtest.run_dirs import check_finished

    _plotly()
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{str(run_dir)!r} is not a folder (give a `mine backtest` run folder)")
    check_finished(run_dir / "nav.parquet", "run folder")
    missing = [f"{n}.parquet" for n in _FILES if not (run_dir / f"{n}.parquet").is_file()]
    missing += [f for f in ("performance.json", "yearly.csv") if not (run_dir / f).is_file()]
    if missing:
        raise ConfigError(f"{str(run_dir)!r} is not a finished `mine backtest` run folder "
                          f"(missing {', '.join(missing)})")
    out = Path(out) if out is not None else run_dir / "report.html"
    if out.exists() and not force:
        raise ConfigError(f"{str(out)!r} exists; pass --force to replace it or --out for "
                          "another file")
    frames = {n: pd.read_parquet(run_dir / f"{n}.parquet") for n in _FILES}
    perf = json.loads((run_dir / "performance.json").read_text(encoding="utf-8"))
    yearly = pd.read_csv(run_dir / "yearly.csv")
    page, figs = render_backtest_report(frames, perf, yearly)
    atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return BacktestReportRun(run_dir, out, round(time.perf_counter() - t0, 1), figs)
