"""``mine signals``: the attack layer's scored buy/sell signals with ATR stops, and their backtest.

Library calls: :func:`backtest.signals_run.signals` (score a day, run the paper book, store
the day in the ``signals`` table, log and notify stop hits) and
:func:`backtest.signals_run.signal_backtest` (``--backtest``: the signal book simulated on a
train/valid window, a run folder like ``mine backtest``'s).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from data.errors import AlphamineError, ConfigError
from mining.cli_app import (
    app,
    cfg as _cfg,
    check_date,
    check_out,
    check_positive,
    check_span,
    check_universe,
    config_keys,
    config_line,
    console,
    err_console,
    fail,
    invocation,
    print_json,
    warn,
)


def _num(v, d: int = 1) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "-"
    return "-" if f != f else f"{f:.{d}f}"


def _signals_table(rows, title: str) -> Table:
    t = Table(title=title)
    for col in ("ts_code", "flag", "reason", "composite", "factor", "valuation", "technical",
                "industry", "entry", "stop", "take-profit"):
        t.add_column(col, justify="left" if col in ("ts_code", "flag", "reason") else "right")
    for r in rows:
        t.add_row(r["ts_code"], r["flag"], r["reason"] or "", _num(r["composite"]),
                  _num(r["factor_score"]), _num(r["valuation_score"]),
                  _num(r["technical_score"]), _num(r["industry_score"]), _num(r["entry"], 2),
                  _num(r["stop"], 2), _num(r["take_profit"], 2))
    return t


@app.command()
def signals(ctx: typer.Context,
            date: Optional[str] = typer.Option(
                None, help="Signal day YYYY-MM-DD (default: the last day of valid; the test "
                "split is sealed); only data up to its close is used."),
            live: bool = typer.Option(
                False, "--live", help="Production: signals on the latest trading day (a day "
                "in the test split: logged as a live access, see `mine audit`)."),
            universe: Optional[str] = typer.Option(
                None, help="Universe scored (default [signals] universe)."),
            top: int = typer.Option(10, help="Also list this many best-scored names, >= 1."),
            no_notify: bool = typer.Option(False, "--no-notify",
                                           help="Log stop hits in alerts_log but send nothing."),
            backtest: bool = typer.Option(
                False, "--backtest", help="Backtest the signal book on --start..--end instead "
                "(A-share simulator rules; a run folder for `mine report backtest`)."),
            start: Optional[str] = typer.Option(None, help="--backtest: first day (default "
                                                "[backtest] start)."),
            end: Optional[str] = typer.Option(None, help="--backtest: last day (default: the "
                                              "end of valid; the test split is sealed)."),
            benchmark: Optional[str] = typer.Option(None, help="--backtest: index code "
                                                    "(default [backtest] benchmark)."),
            out: Optional[Path] = typer.Option(None, "--out", help="--backtest: output folder "
                                               "(default: a new run folder under [backtest] "
                                               "out_dir)."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Attack layer: per-stock sub-scores (factor, valuation, technical, industry) -> composite
    -> buy (with ATR stop-loss / take-profit) / sell / hold ([signals] in mine.toml).

    The day's rows go to the store's signals table; stop hits also go to alerts_log and
    [notify]. With --backtest the signal book is simulated instead (README "Attack layer")."""
    from backtest.signals_run import signal_backtest
    from backtest.signals_run import signals as run_signals
    try:
        check_universe("--universe", universe)
        date = check_date("--date", date)
        start = check_date("--start", start)
        end = check_date("--end", end)
        check_span("--start", start, "--end", end)
        check_positive("--top", top)
        check_out("--out", out)
        if backtest and date is not None:
            raise ConfigError("--date is for a signal day; with --backtest give --start/--end")
        if live and (backtest or date is not None):
            raise ConfigError("--live scores the latest trading day; drop "
                              + ("--backtest" if backtest else "--date"))
        if not backtest:
            given = [o for o, v in (("--start", start), ("--end", end),
                                    ("--benchmark", benchmark), ("--out", out)) if v is not None]
            if given:
                raise ConfigError(f"{', '.join(given)}: options of --backtest")
        c = _cfg()
        if not as_json:
            console.print(f"[dim]{escape(config_line(c))}[/]", soft_wrap=True)
        say = None if as_json else (lambda m: err_console.print(f"[dim]{escape(m)}…[/]"))
        if backtest:
            run, meta = signal_backtest(c, start=start, end=end, universe=universe,
                                        benchmark=benchmark, out=out, on_progress=say,
                                        argv=invocation(ctx))
        else:
            res = run_signals(c, date, universe=universe, notify=not no_notify, live=live,
                              on_progress=say)
    except AlphamineError as e:
        fail(e)
    if backtest:
        if as_json:
            print_json({**config_keys(c), **run.to_dict(), "signals": meta})
            return
        from mining.cli_backtest import _print_backtest
        for n in meta["notes"]:
            console.print(f"[dim]note: {escape(n)}[/]", soft_wrap=True)
        console.print(f"signals: {meta['signals_by_flag']}; stops: {meta['stops_by_reason']}")
        _print_backtest(run)
        return
    if as_json:
        d = res.to_dict()
        d["top"] = _jsonable_top(res.rows, top)
        print_json({**config_keys(c), **d})
        return
    for n in res.notes:
        console.print(f"[dim]note: {escape(n)}[/]", soft_wrap=True)
    rows = res.rows
    act = rows[rows["flag"].ne("hold") | (rows["held"] == 1)].to_dict("records")
    console.print(_signals_table(act, f"signals on {res.date} ({res.universe}; paper book "
                                      f"since {res.book_start})"))
    console.print(_signals_table(rows.head(top).to_dict("records"),
                                 f"top {top} of {int(rows['composite'].notna().sum())} scored"))
    k = res.counts
    console.print(f"buy {k['buy']}, sell {k['sell']}, held "
                  f"{int((rows['held'] == 1).sum())}; {len(rows)} rows written to the signals "
                  f"table (run {res.run_id})")
    if res.alerts_added:
        console.print(f"{res.alerts_added} stop hit(s) logged in alerts_log (`mine alerts`)")
    for ch, d in res.delivery.items():
        if d["error"]:
            warn(f"notify {ch}: {d['failed']} not delivered, kept pending "
                 f"(`mine alerts --send` retries): {d['error']}")
        else:
            console.print(f"notify {ch}: {d['sent']} sent")
    if res.audit_id is not None:
        console.print(f"[yellow]{res.date} is in the test split: logged as live use, audit "
                      f"#{res.audit_id} (`mine audit`)[/]")


def _jsonable_top(rows, top: int) -> list:
    from data.io import to_jsonable
    return to_jsonable(rows.head(top).assign(
        trade_date=rows["trade_date"].astype(str).str[:10]).to_dict("records"))
