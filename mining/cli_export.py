"""CLI command: `mine export` -- one day's targets and order plan for QMT (a shell over
:func:`backtest.export.run_export`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from backtest.export import ExportRun, ExportSettings, run_export
from data.errors import AlphamineError, ConfigError
from mining.cli_app import (
    app,
    check_choice,
    check_date,
    check_out,
    check_positive,
    config_line,
    console,
    fail,
    print_json,
)
from mining.cli_app import cfg as _cfg

FORMATS = ("qmt",)


def _money(v: float) -> str:
    return f"{v:,.2f}"


def _print_export(run: ExportRun, show: int) -> None:
    plan, s, d = run.plan, run.summary, run.date
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
        f"targets {escape(str(run.targets_path))}: {run.n_names} names on {d.date()}\n"
        f"{s['n_orders']} orders ({s['n_sell']} sell, {s['n_buy']} buy); "
        f"gross sell {_money(s['gross_sell'])}, gross buy {_money(s['gross_buy'])}, "
        f"est. fees {_money(s['est_fees'])}, est. cash after {_money(s['cash_after'])} yuan\n"
        f"flagged: {s['n_flagged']} ({fl}); skipped below --min-order-value: "
        f"{s['n_skipped']}")
    for k, p in run.files.items():
        console.print(f"wrote {k}: {escape(str(p))}")


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
        help="target_positions file (default: the targets of the latest `mine combine` run "
             "under [backtest] out_dir, see its 'latest' file)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Output folder (default: <[backtest] out_dir>/export)."),
    cash_reserve: float = typer.Option(
        0.0, "--cash-reserve", help="Fraction of equity kept as cash (0..1)."),
    min_order_value: float = typer.Option(
        0.0, "--min-order-value",
        help="Skip orders below this value, yuan (whole-holding sells excepted)."),
    show: int = typer.Option(40, "--show", help="Plan rows printed (0 = all)."),
    force: bool = typer.Option(False, "--force", help="Replace the day's files in the output "
                               "folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the export as JSON."),
) -> None:
    """Write the day's targets and a lot-rounded, limit-aware order plan for QMT."""
    try:
        c = _cfg()
        if not as_json:
            console.print(f"[dim]{escape(config_line(c))}[/]")
        check_choice("--format", fmt.lower(), FORMATS)
        check_positive("--cash", cash, zero=True)
        check_positive("--min-order-value", min_order_value, zero=True)
        check_positive("--show", show, zero=True)
        if not 0.0 <= cash_reserve < 1.0:
            raise ConfigError(f"--cash-reserve must be in [0, 1), got {cash_reserve}")
        for opt, p in (("--targets", targets), ("--positions", positions)):
            if p is not None and not Path(p).is_file():
                raise ConfigError(f"{opt} {str(p)!r}: file not found")
        check_out("--out", out)
        if out is None:
            check_out("[backtest] out_dir", c.backtest.out_dir)
        s = ExportSettings(cash=cash, date=check_date("--date", date), positions=positions,
                           targets=targets, out_dir=Path(c.backtest.out_dir), out=out,
                           cash_reserve=cash_reserve, min_order_value=min_order_value,
                           force=force)
        run = run_export(c, s)
    except AlphamineError as e:
        fail(e)
    if as_json:
        print_json({"config": str(c.source) if c.source else None, "store": str(c.store.path),
                    **run.to_dict()})
    else:
        _print_export(run, show)
