"""``mine report leaderboard``: the factor pool as one self-contained HTML file (plotly).

The page shows three things:

* the members' correlation heatmap: the gate's own measure
  (:func:`backtest.evaluate.factor_corr`, the mean daily cross-sectional rank correlation on
  the valid split), with members ordered by average-linkage clustering on ``1 - |corr|``;
* the metrics table, sortable in the page by clicking a header;
* each member's lineage: producer, run, trials counted at acceptance, adjusted p-value,
  forced or not, test looks, for GP the generation and train fitness, and the parent
  formulas of a member whose producer recorded them (``provenance["parents"]``).

The workspace is the sealed default window (train and valid), so the test split is never
loaded. Members whose values cannot be computed, e.g. ``model("...")`` panels that were
deleted, are listed but left out of the heatmap.
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from data.errors import AlphamineError, ConfigError
from data.io import atomic_write
from mining.dashboard_data import lineage_text
from mining.report_factor import _plotly

__all__ = ["LeaderboardReportRun", "leaderboard_report"]

_SORT_JS = """<script>
document.querySelectorAll('table.sortable th').forEach(function (th, i) {
  th.style.cursor = 'pointer';
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.from(body.rows), asc = th.dataset.asc !== '1';
    rows.sort(function (a, b) {
      var x = a.cells[i].dataset.v ?? a.cells[i].textContent;
      var y = b.cells[i].dataset.v ?? b.cells[i].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    th.dataset.asc = asc ? '1' : '0';
  });
});
</script>"""


@dataclass
class LeaderboardReportRun:
    """Result of :func:`leaderboard_report`."""

    universe: str
    path: Path
    n_members: int
    n_in_heatmap: int
    seconds: float
    figures: list[Any] = field(repr=False, default_factory=list)


def _order(corr: np.ndarray) -> np.ndarray:
    """Leaf order of average-linkage clustering on ``1 - |corr|`` (NaN as uncorrelated)."""
    n = corr.shape[0]
    if n < 3:
        return np.arange(n)
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform
    d = 1.0 - np.abs(np.nan_to_num(corr, nan=0.0))
    np.fill_diagonal(d, 0.0)
    return leaves_list(linkage(squareform(np.clip(d, 0.0, None), checks=False), "average"))


def _cell(v, d: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "<td data-v=''>-</td>"
    if isinstance(v, (int, float)):
        text = f"{v:.{-d}g}" if d < 0 else f"{v:.{d}f}"      # d < 0: significant digits
        return f"<td data-v='{v}'>{text}</td>"
    return f"<td>{html.escape(str(v))}</td>"


def leaderboard_report(cfg, universe: str, out: Optional[Path] = None, *, top: int = 30,
                       force: bool = False) -> LeaderboardReportRun:
    """Write the leaderboard page of ``universe`` (its best ``top`` members by valid ICIR).

    Default ``out``: ``<[backtest] out_dir>/reports/leaderboard-<universe>.html``.

    Raises
    ------
    ConfigError
        plotly missing, ``out`` exists without ``force``, no member in ``universe``.
    AlphamineError
        From the data (unknown universe, missing data).
    """
    from backtest.candidates import make_workspace
    from backtest.evaluate import factor_corr
    from factors.audit import AuditLog
    from factors.expr_parse import parse
    from factors.store import FactorStore

    go, _ = _plotly()
    t0 = time.perf_counter()
    out = Path(out) if out is not None else (Path(cfg.backtest.out_dir) / "reports"
                                             / f"leaderboard-{universe}.html")
    if out.exists() and not force:
        raise ConfigError(f"{str(out)!r} exists; pass --force to replace it or --out for "
                          "another file")
    with FactorStore(cfg.store.path) as store:
        recs = [r for r in store.top(top, universe=universe)
                if r.horizon == cfg.evaluate.horizon]
        current = store.charges(recs, cfg.store.haircut)
        looks = AuditLog(store).looks(universe)
    if not recs:
        raise ConfigError(f"no leaderboard member of universe {universe!r} (horizon "
                          f"{cfg.evaluate.horizon}); run `mine library --add` or `mine gp`")
    ws = make_workspace(cfg, universe, model_dir=cfg.model.out_dir)      # train + valid only
    values, skipped = {}, []
    for r in recs:
        try:
            values[r.id] = ws.values(parse(r.formula))
        except AlphamineError as e:
            skipped.append((r, str(e)))
    ids = [r.id for r in recs if r.id in values]
    n = len(ids)
    corr = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            corr[i, j] = corr[j, i] = factor_corr(values[ids[i]], values[ids[j]], ws.ctx,
                                                  split="valid")
    order = _order(corr)
    by_id = {r.id: r for r in recs}
    labels = [f"#{ids[k]} {by_id[ids[k]].name}" for k in order]
    cm = corr[np.ix_(order, order)]
    fig = go.Figure(go.Heatmap(z=cm, x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu",
                               text=[[by_id[ids[k]].formula for k in order]] * n,
                               hovertemplate="%{y} vs %{x}: %{z:.2f}<extra></extra>",
                               colorbar={"title": "corr"}))
    fig.update_layout(title=f"Correlation on valid (mean daily rank correlation; gate "
                            f"|corr| < {cfg.store.max_corr}), clustered",
                      height=max(450, 28 * n + 200), yaxis_autorange="reversed")
    figs = [fig]

    head = ("<tr><th>id</th><th>name</th><th>producer</th><th>train RankIC</th>"
            "<th>valid RankIC</th><th>valid ICIR</th><th>valid t</th><th>tried</th>"
            "<th>adj p</th><th>adj p now</th><th>forced</th><th>test looks</th><th>run</th>"
            "<th>lineage</th><th>formula</th></tr>")
    rows = []
    for r in recs:
        tr, va = r.metrics.get("train", {}), r.metrics.get("valid", {})
        prov = r.provenance
        lineage = lineage_text(prov)
        now = current.get(r.id)
        rows.append("<tr>" + _cell(r.id, 0) + _cell(r.name) + _cell(r.source)
                    + _cell(tr.get("rank_ic_mean")) + _cell(va.get("rank_ic_mean"))
                    + _cell(va.get("rank_icir"), 3) + _cell(va.get("rank_ic_t"), 2)
                    + _cell(r.n_tried, 0) + _cell(r.adj_p, -2)
                    + _cell(None if now is None else now.adj_p, -2)
                    + _cell("yes" if prov.get("forced") else "")
                    + _cell(looks.get((r.formula, r.universe), 0), 0)
                    + _cell(r.run_id or "") + _cell(lineage)
                    + f"<td style='text-align:left'><code>{html.escape(r.formula)}</code></td>"
                    + "</tr>")
    skipped_html = "".join(f"<li><code>{html.escape(r.formula)}</code>: {html.escape(why)}</li>"
                           for r, why in skipped)
    chart = figs[0].to_html(full_html=False, include_plotlyjs=True)
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>leaderboard {html.escape(universe)}</title><style>body{{font-family:sans-serif;"
        "margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;"
        "text-align:right}th{background:#f3f3f3}.note{color:#666}</style></head><body>"
        f"<h1>Leaderboard: {html.escape(universe)}</h1><p class='note'>{len(recs)} members "
        f"(best {top} by valid ICIR), horizon {cfg.evaluate.horizon}; the test split is sealed "
        "and not loaded. Click a column header to sort.</p>"
        f"<div class='chart'>{chart}</div>"
        + (f"<p class='note'>Not in the heatmap:</p><ul>{skipped_html}</ul>" if skipped else "")
        + f"<h3>Members and lineage</h3><table class='sortable'><thead>{head}</thead><tbody>"
        + "".join(rows) + "</tbody></table>" + _SORT_JS + "</body></html>")
    atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return LeaderboardReportRun(universe, out, len(recs), n, round(time.perf_counter() - t0, 1),
                                figs)
