"""CLI command: `mine reconcile` -- broker fills vs the order plan vs the simulator (a shell over
:func:`backtest.reconcile_run.run_reconcile`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from backtest.reconcile_run import ReconcileRun, ReconcileSettings, run_reconcile
from data.errors import AlphamineError, ConfigError
from mining.cli_app import (
    app,
    cfg as _cfg,
    check_date,
    check_out,
    check_positive,
    config_keys,
    config_line,
    console,
    fail,
    fmt,
    print_json,
)

_STATUS = {"filled": "[green]filled[/]", "partial": "[yellow]partial[/]",
           "missing": "[red]missing[/]", "over": "[red]over[/]",
           "unplanned": "[red]unplanned[/]", "not_sent": "[dim]not sent[/]"}


def _print(run: ReconcileRun, show: int) -> None:
    r, s = run.result, run.result.summary
    t = Table(title=f"fills of {run.trade_date.date()} vs the plan of {run.plan_date.date()} "
                    f"(slippage bps: + = worse for us)")
    for c in ("ts_code", "side", "planned", "filled", "status", "ref", "fill", "sim",
              "slip ref", "slip sim", "fees", "fees plan", "drift"):
        t.add_column(c, justify="left" if c in ("ts_code", "side", "status") else "right")
    rows = r.orders if show <= 0 else r.orders.head(show)
    for o in rows.itertuples(index=False):
        t.add_row(o.ts_code, o.side, f"{o.planned_qty:,}", f"{o.filled_qty:,}",
                  _STATUS.get(o.fill_status, o.fill_status), fmt(o.ref_price, 2),
                  fmt(o.fill_price, 3), fmt(o.sim_price, 3), fmt(o.slip_ref_bps, 1),
                  fmt(o.slip_sim_bps, 1),
                  fmt(o.fees_reported if o.fees_reported == o.fees_reported else o.fees_model,
                      2), fmt(o.fees_plan, 2),
                  f"{o.drift_shares:+,}" if o.drift_shares else "0")
    console.print(t)
    if len(rows) < len(r.orders):
        console.print(f"... {len(r.orders) - len(rows)} more rows in the report")
    c = Table(title="costs, yuan (actual = broker-reported total when given, else the cost "
                    "model on the fills)")
    for col in ("item", "plan", "model", "sim", "reported", "actual-plan", "actual-sim"):
        c.add_column(col, justify="left" if col == "item" else "right")
    for item, v in r.costs.iterrows():
        c.add_row(item, *(fmt(v[k], 2) for k in ("plan", "model", "sim", "reported",
                                                   "actual_minus_plan", "actual_minus_sim")))
    console.print(c)
    st = ", ".join(f"{v} {k}" for k, v in s["status"].items() if v)
    console.print(
        f"{s['n_orders']} planned orders: {st}; fill rate by value "
        f"{fmt(s['fill_rate_value'], 4)}\n"
        f"slippage vs reference {fmt(s['slip_ref_bps'], 1)} bps "
        f"({fmt(s['slip_ref_yuan'], 2)} yuan), vs simulator {fmt(s['slip_sim_bps'], 1)} bps\n"
        f"positions drift: {s['n_drift']} order(s), gross {fmt(s['drift_value_gross'], 2)} "
        f"yuan; cash drift {fmt(s['cash_drift'], 2)} yuan")
    if len(run.sim_rejected):
        console.print("simulator replay rejected: " + ", ".join(
            f"{x.ts_code} {x.side} {x.volume:,} ({x.reason})"
            for x in run.sim_rejected.itertuples(index=False)))
    for n in run.notes:
        console.print(f"[dim]note: {escape(n)}[/]", soft_wrap=True)
    if run.stored:
        d = run.stored
        console.print(f"store: {d['broker_added']} fill(s) added, {d['broker_already']} "
                      f"already recorded; reconciliation #{d['reconciliation_id']}")
    for k, p in run.files.items():
        console.print(f"wrote {k}: {escape(str(p))}")


@app.command()
def reconcile(
    trades: Path = typer.Option(
        ..., "--trades",
        help="Broker fills CSV: ts_code, side, volume, price, time; or the QMT adapter's "
             "query_stock_trades export (--trades-out)."),
    plan: Optional[Path] = typer.Option(
        None, "--plan",
        help="Export folder (or an orders_YYYYMMDD.csv) of `mine export` "
             "(default: <[backtest] out_dir>/export)."),
    date: Optional[str] = typer.Option(
        None, "--date", help="Plan date YYYY-MM-DD (default: the latest plan in --plan)."),
    show: int = typer.Option(40, "--show", help="Order rows printed (0 = all)."),
    no_store: bool = typer.Option(False, "--no-store",
                                  help="Do not record the fills in the store."),
    live: bool = typer.Option(
        False, "--live", help="Allow an execution day in the test split (production fills; "
        "logged as a live access, see `mine audit`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the reconciliation as JSON."),
) -> None:
    """Reconcile broker fills with the order plan and the simulator: missing / partial fills,
    slippage (bps, + = worse for us), cost differences, positions drift."""
    try:
        date = check_date("--date", date)
        check_positive("--show", show, zero=True)
        if not Path(trades).is_file():
            raise ConfigError(f"--trades {str(trades)!r}: file not found")
        if plan is not None and not Path(plan).exists():
            raise ConfigError(f"--plan {str(plan)!r}: not found")
        c = _cfg()
        if plan is None:
            check_out("[backtest] out_dir", c.backtest.out_dir)
        if not as_json:
            console.print(f"[dim]{escape(config_line(c))}[/]", soft_wrap=True)
        run = run_reconcile(c, ReconcileSettings(
            trades=Path(trades), plan=plan, date=date, out_dir=Path(c.backtest.out_dir),
            store=not no_store, live=live))
    except AlphamineError as e:
        fail(e)
    if as_json:
        print_json({**config_keys(c), **run.to_dict()})
    else:
        _print(run, show)
