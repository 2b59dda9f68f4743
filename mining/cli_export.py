"""CLI command: `mine export` -- one day's targets and order plan for QMT (issue 3)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _money(v: float) -> str:
    return f"{v:,.2f}"


def register(app: typer.Typer) -> None:
    """Add ``mine export`` to the ``mine`` app."""

    @app.command()
    def export(
        fmt: str = typer.Option("qmt", "--format", help="Export format (only 'qmt')."),
        date: Optional[str] = typer.Option(
            None, "--date", help="Targets date YYYY-MM-DD (default: the latest in the file)."),
        positions: Optional[Path] = typer.Option(
            None, "--positions",
            help="Current holdings CSV/Parquet: ts_code, quantity[, sellable] (default: none)."),
        cash: float = typer.Option(..., "--cash", help="Available cash, yuan."),
        targets: Optional[Path] = typer.Option(
            None, "--targets",
            help="target_positions file (default: the newest *targets* file that `mine "
                 "combine` wrote under [backtest] out_dir)."),
        out: Optional[Path] = typer.Option(
            None, "--out", help="Output folder (default: <[backtest] out_dir>/export)."),
        cash_reserve: float = typer.Option(
            0.0, "--cash-reserve", help="Fraction of equity kept as cash (0..1)."),
        min_order_value: float = typer.Option(
            0.0, "--min-order-value",
            help="Skip orders below this value, yuan (whole-holding sells excepted)."),
        show: int = typer.Option(40, "--show", help="Plan rows printed (0 = all)."),
    ) -> None:
        """Write the day's targets and a lot-rounded, limit-aware order plan for QMT."""
        from rich.markup import escape
        from rich.table import Table

        from backtest.export import (export_day, find_latest_targets, read_positions,
                                     reference_quotes, targets_for)
        from backtest.strategies import read_targets
        from backtest.rules import CostModel
        from data.errors import AlphamineError, ConfigError
        from data.manager import DataManager
        from mining.cli_app import cfg as _cfg, console, fail as _fail

        try:
            if fmt.lower() != "qmt":
                raise ConfigError(f"--format {fmt!r} is not supported; use --format qmt")
            cfg = _cfg()
            tpath = targets if targets is not None else find_latest_targets(cfg.backtest.out_dir)
            tg = read_targets(tpath)
            day = targets_for(tg, tg["trade_date"].max() if date is None else date)
            d = day["trade_date"].iloc[0]
            pos = read_positions(positions)
            dm = DataManager.from_config(cfg)
            codes = sorted(set(day["ts_code"]) | set(pos.index))
            quotes = reference_quotes(dm, d, codes)
            out_dir = out if out is not None else Path(cfg.backtest.out_dir) / "export"
            res = export_day(tg, d, pos, cash, quotes, out_dir,
                             CostModel.from_config(cfg.backtest), cash_reserve, min_order_value)
        except AlphamineError as e:
            _fail(e)
            return
        plan, s = res["plan"], res["summary"]
        t = Table(title=f"order plan {d.date()} (reference: close of {d.date()}, raw yuan)")
        for c, j in (("ts_code", "left"), ("side", "left"), ("qty", "right"),
                     ("price", "right"), ("value", "right"), ("fees", "right"),
                     ("status", "left"), ("reason", "left")):
            t.add_column(c, justify=j, no_wrap=c != "reason")
        rows = plan if show <= 0 else plan.head(show)
        for r in rows.itertuples(index=False):
            st = {"ok": "[green]ok[/]", "flagged": "[yellow]flag[/]"}.get(r.status, "skip")
            t.add_row(r.ts_code, r.side, f"{r.quantity:,}", f"{r.ref_price:.2f}",
                      f"{r.est_value:,.0f}", f"{r.est_fees:,.2f}", st, escape(r.reason))
        console.print(t)
        if len(rows) < len(plan):
            console.print(f"... {len(plan) - len(rows)} more rows in the orders file")
        fl = ", ".join(f"{v} {k}" for k, v in s["flagged"].items()) or "none"
        console.print(
            f"targets {escape(str(tpath))}: {len(day)} names on {d.date()}\n"
            f"{s['n_orders']} orders ({s['n_sell']} sell, {s['n_buy']} buy); "
            f"gross sell {_money(s['gross_sell'])}, gross buy {_money(s['gross_buy'])}, "
            f"est. fees {_money(s['est_fees'])}, est. cash after {_money(s['cash_after'])} yuan\n"
            f"flagged: {s['n_flagged']} ({fl}); skipped below --min-order-value: "
            f"{s['n_skipped']}")
        for k, p in res["files"].items():
            console.print(f"wrote {k}: {escape(str(p))}")
