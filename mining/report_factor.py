"""``mine report factor``: a factor tear sheet as one self-contained HTML file (plotly).

:func:`factor_report` evaluates the formula through :func:`mining.formula_run.evaluate_formula`
(the seal, the audit and the trial ledger apply as for ``mine eval``; its daily series are
written by ``--save`` into a scratch folder) and :func:`render_factor_report` draws the saved
tables (:mod:`backtest.factor_series`). Rendering only reads those tables: nothing here
computes a metric the evaluator does not already compute.

Charts, train and valid marked, the test split's dates shaded (and empty unless unsealed): daily RankIC with its 20-day
rolling mean and the cumulative RankIC; RankIC histogram; monthly mean RankIC heatmap; RankIC
decay by label horizon; cumulative return per quantile, raw and demeaned (daily mean forward
return of each bucket divided by the horizon, compounded); long-short NAV; top-bucket turnover
(20-day mean); coverage (names with a factor and a label per day); a per-year table.

plotly is an optional dependency (``pip install alphamine[report]``); the page embeds
plotly.js, so it opens without a network.
"""
from __future__ import annotations

import html
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from data.errors import ConfigError
from data.io import atomic_write

__all__ = ["FactorReportRun", "render_factor_report", "factor_report"]

SPLIT_COLOURS = {"train": "#1f77b4", "valid": "#ff7f0e", "test": "#7f7f7f"}


def _plotly():
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError:
        raise ConfigError("reports need plotly: pip install 'alphamine[report]'") from None
    return go, make_subplots


@dataclass
class FactorReportRun:
    """Result of :func:`factor_report`: the HTML file and the figures drawn in it."""

    formula: str
    universe: str
    path: Path
    splits: list[str]
    seconds: float
    figures: list[Any] = field(repr=False, default_factory=list)


def _shade_test(fig, meta: dict) -> None:
    """Grey band over the test split's dates (``meta["windows"]["test"]``), labelled sealed
    while the split was not evaluated: the band is then empty by construction."""
    win = (meta.get("windows") or {}).get("test")
    if not win:
        return
    sealed = "test" not in (meta.get("splits") or {})
    kw = {"row": "all", "col": "all"} if getattr(fig, "_grid_ref", None) else {}
    fig.add_vrect(x0=win[0], x1=win[1], fillcolor=SPLIT_COLOURS["test"], opacity=0.12,
                  line_width=0, annotation_text="test (sealed)" if sealed else "test",
                  annotation_position="top left", **kw)


def _per_year(ric: pd.DataFrame, ls: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Mean RankIC, ICIR and long-short return (compounded, per horizon-day step) by year."""
    r = ric.assign(year=ric.trade_date.dt.year)
    g = r.groupby(["year", "split"]).rank_ic
    out = pd.DataFrame({"rank_ic_mean": g.mean(), "rank_icir": g.mean() / g.std(ddof=1),
                        "days": g.count()})
    lsy = ls.assign(year=ls.trade_date.dt.year)
    out["long_short_return"] = lsy.groupby(["year", "split"]).long_short.apply(
        lambda s: float(np.prod(1.0 + s.dropna().to_numpy() / horizon) - 1.0))
    return out.reset_index()


def render_factor_report(frames: dict[str, pd.DataFrame], meta: dict) -> tuple[str, list]:
    """The tear sheet's HTML text and its figures, from the saved series tables.

    Parameters
    ----------
    frames : dict of str to DataFrame
        ``rank_ic``, ``quantile_returns``, ``long_short``, ``turnover``, ``ic_decay``,
        ``factor_data`` as written by :func:`backtest.factor_series.save_series`.
    meta : dict
        ``report.json`` of the same folder (formula, universe, horizon, split metrics).

    Raises
    ------
    ConfigError
        plotly is not installed.
    """
    go, make_subplots = _plotly()
    h = int(meta.get("horizon") or 1)
    ric = frames["rank_ic"].sort_values("trade_date")
    splits = list(dict.fromkeys(ric.split))
    figs = []

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for sp in splits:
        d = ric[ric.split == sp]
        c = SPLIT_COLOURS.get(sp, "#333")
        fig.add_bar(x=d.trade_date, y=d.rank_ic, name=f"{sp} daily RankIC", marker_color=c,
                    opacity=0.35)
        fig.add_scatter(x=d.trade_date, y=d.rank_ic.rolling(20, min_periods=5).mean(),
                        name=f"{sp} 20-day mean", line={"color": c})
        fig.add_scatter(x=d.trade_date, y=d.rank_ic.fillna(0).cumsum(), name=f"{sp} cumulative",
                        line={"color": c, "dash": "dot"}, secondary_y=True)
    fig.update_layout(title="Daily RankIC, 20-day mean, cumulative RankIC (right axis)")
    figs.append(fig)

    fig = go.Figure()
    for sp in splits:
        fig.add_histogram(x=ric[ric.split == sp].rank_ic.dropna(), name=sp, opacity=0.6,
                          marker_color=SPLIT_COLOURS.get(sp), nbinsx=50)
    fig.update_layout(title="Distribution of the daily RankIC", barmode="overlay")
    figs.append(fig)

    m = ric.assign(year=ric.trade_date.dt.year, month=ric.trade_date.dt.month)
    piv = m.pivot_table(index="year", columns="month", values="rank_ic", aggfunc="mean")
    fig = go.Figure(go.Heatmap(z=piv.to_numpy(), x=[str(c) for c in piv.columns],
                               y=[str(i) for i in piv.index], colorscale="RdBu", zmid=0.0,
                               colorbar={"title": "RankIC"}))
    fig.update_layout(title="Monthly mean RankIC", xaxis_title="month", yaxis_title="year")
    figs.append(fig)

    dec = frames["ic_decay"]
    fig = go.Figure()
    for sp in splits:
        d = dec[dec.split == sp]
        fig.add_bar(x=[f"{x}d" for x in d.horizon], y=d.rank_ic_mean, name=sp,
                    marker_color=SPLIT_COLOURS.get(sp))
    fig.update_layout(title="RankIC decay by label horizon", barmode="group")
    figs.append(fig)

    qr = frames["quantile_returns"].sort_values("trade_date")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("raw", "demeaned across quantiles"))
    for sp in splits:
        w = qr[qr.split == sp].pivot(index="trade_date", columns="quantile", values="return")
        step = w.fillna(0.0) / h
        demeaned = step.sub(step.mean(axis=1), axis=0)
        for q in w.columns:
            show = sp == splits[0]
            fig.add_scatter(x=w.index, y=(1 + step[q]).cumprod(), name=f"Q{q}",
                            legendgroup=f"Q{q}", showlegend=show, row=1, col=1)
            fig.add_scatter(x=w.index, y=(1 + demeaned[q]).cumprod(), name=f"Q{q}",
                            legendgroup=f"Q{q}", showlegend=False, row=1, col=2)
    fig.update_layout(title=f"Cumulative return per quantile (h = {h} days, compounded "
                            f"per split)")
    figs.append(fig)

    ls = frames["long_short"].sort_values("trade_date")
    fig = go.Figure()
    for sp in splits:
        d = ls[ls.split == sp]
        fig.add_scatter(x=d.trade_date, y=(1 + d.long_short.fillna(0) / h).cumprod(), name=sp,
                        line={"color": SPLIT_COLOURS.get(sp)})
    fig.update_layout(title="Long-short NAV (top minus bottom quantile)")
    figs.append(fig)

    to = frames["turnover"].sort_values("trade_date")
    fig = go.Figure()
    for sp in splits:
        d = to[to.split == sp]
        fig.add_scatter(x=d.trade_date, y=d.turnover.rolling(20, min_periods=5).mean(),
                        name=sp, line={"color": SPLIT_COLOURS.get(sp)})
    fig.update_layout(title="Top-quantile turnover (20-day mean)")
    figs.append(fig)

    fd = frames["factor_data"]
    cov = fd.groupby(level=0).size()
    fig = go.Figure(go.Scatter(x=cov.index, y=cov.to_numpy(), name="names"))
    fig.update_layout(title="Coverage: names with a factor value and a label per day")
    figs.append(fig)

    for i in (0, 4, 5, 6, 7):                   # the charts with a date axis
        _shade_test(figs[i], meta)

    yt = _per_year(ric, ls, h)
    rows = "".join(
        f"<tr><td>{r.year}</td><td>{html.escape(str(r.split))}</td><td>{r.days}</td>"
        f"<td>{r.rank_ic_mean:.4f}</td><td>{r.rank_icir:.3f}</td>"
        f"<td>{100 * r.long_short_return:.2f}%</td></tr>" for r in yt.itertuples())
    metrics = meta.get("splits", {})
    head = "".join(
        f"<tr><td>{html.escape(sp)}</td><td>{v.get('n_days')}</td>"
        f"<td>{_f(v.get('rank_ic_mean'), 4)}</td><td>{_f(v.get('rank_icir'), 3)}</td>"
        f"<td>{_f(v.get('rank_ic_t'), 2)}</td><td>{_f(v.get('ls_sharpe'), 2)}</td>"
        f"<td>{_f(v.get('turnover'), 3)}</td></tr>" for sp, v in metrics.items())
    sealed = "" if "test" in meta.get("splits", {}) else (
        "<p class='note'>The test split is sealed: it is neither evaluated nor drawn "
        "(<code>--unseal-test</code> draws it and logs the look, see <code>mine audit</code>)."
        "</p>")
    parts = [f"<div class='chart'>{f.to_html(full_html=False, include_plotlyjs=(i == 0))}</div>"
             for i, f in enumerate(figs)]
    title = f"{meta.get('formula', '')} ({meta.get('universe', '')}, horizon {h})"
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}.note{color:#666}</style></head><body>"
        f"<h1>Factor tear sheet</h1><h2><code>{html.escape(title)}</code></h2>{sealed}"
        "<table><tr><th>split</th><th>days</th><th>RankIC</th><th>RankICIR</th>"
        f"<th>t (NW)</th><th>LS Sharpe</th><th>turnover</th></tr>{head}</table>"
        + "".join(parts) +
        "<h3>Per year</h3><table><tr><th>year</th><th>split</th><th>days</th><th>RankIC</th>"
        f"<th>ICIR</th><th>long-short</th></tr>{rows}</table></body></html>")
    return page, figs


def _f(v, d: int) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{d}f}"


def factor_report(cfg, formula: str, universe: str, out: Optional[Path] = None, *,
                  unseal_test: bool = False, force: bool = False) -> FactorReportRun:
    """Evaluate ``formula`` and write its tear sheet to ``out``.

    Default ``out``: ``<[backtest] out_dir>/reports/factor-<universe>-<hash>.html``. The
    evaluation is :func:`mining.formula_run.evaluate_formula` (sealed test split unless
    ``unseal_test``, which logs the look; the look at valid is a counted trial).

    Raises
    ------
    ConfigError
        plotly missing; ``out`` exists and ``force`` is not set.
    AlphamineError
        From the evaluation (bad formula, universe, data).
    """
    import hashlib
    import json

    from mining.formula_run import evaluate_formula

    _plotly()                                   # fail before any data loads
    t0 = time.perf_counter()
    if out is None:
        tag = hashlib.sha256(f"{formula}|{universe}".encode()).hexdigest()[:10]
        out = Path(cfg.backtest.out_dir) / "reports" / f"factor-{universe}-{tag}.html"
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{str(out)!r} exists; pass --force to replace it or --out for "
                          "another file")
    with tempfile.TemporaryDirectory(prefix="alphamine-report-") as tmp:
        res = evaluate_formula(cfg, formula, universe, unseal_test=unseal_test,
                               save=Path(tmp) / "series")
        folder = Path(tmp) / "series"
        frames = {k: pd.read_parquet(folder / f"{k}.parquet")
                  for k in ("rank_ic", "quantile_returns", "long_short", "turnover",
                            "ic_decay", "factor_data")}
        meta = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    page, figs = render_factor_report(frames, meta)

    def write(tmp_path: str) -> None:
        Path(tmp_path).write_text(page, encoding="utf-8")
    atomic_write(out, write)
    return FactorReportRun(res.formula, universe, out, list(res.reports),
                           round(time.perf_counter() - t0, 1), figs)
