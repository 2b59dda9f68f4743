"""``mine monitor`` (the stable layer's rules -> ``alerts_log`` -> notifications) and
``mine alerts`` (list, acknowledge, send pending notifications).

Library calls: :func:`backtest.monitor_run.monitor`, :func:`backtest.monitor_run.send_alerts`,
:class:`factors.alerts.AlertLog`. The layer never trades.
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
    check_choice,
    check_date,
    check_positive,
    check_span,
    check_universe,
    config_keys,
    config_line,
    console,
    fail,
    print_json,
    warn,
)


def _delivery_lines(delivery: dict) -> None:
    for ch, d in delivery.items():
        if d["error"]:
            warn(f"notify {ch}: {d['failed']} alert(s) not delivered, kept pending "
                 f"(`mine alerts --send` retries): {d['error']}")
        else:
            console.print(f"notify {ch}: {d['sent']} alert(s) sent")


def _alerts_table(rows, title: str) -> Table:
    t = Table(title=title)
    for col in ("id", "date", "ts_code", "rule", "period", "severity", "message", "ack",
                "notified"):
        t.add_column(col)
    for r in rows:
        if isinstance(r, dict):
            r = type("R", (), {**r, "id": "-", "acknowledged": False, "notify_sent": [],
                               "notify_pending": []})
        note = ", ".join(r.notify_sent) + (f" (pending {', '.join(r.notify_pending)})"
                                           if r.notify_pending else "")
        t.add_row(str(r.id), r.date, r.ts_code, r.rule, r.period, r.severity,
                  escape(r.message), "yes" if r.acknowledged else "", note or "-")
    return t


@app.command()
def monitor(watchlist: Optional[Path] = typer.Option(
                None, help="File of ts_codes to monitor (one per line); instead of --universe."),
            universe: Optional[str] = typer.Option(
                None, help="Universe whose point-in-time members are monitored "
                "(default [monitor] universe)."),
            date: Optional[str] = typer.Option(
                None, help="Monitor day YYYY-MM-DD (default: the last day of the data); "
                "only numbers visible on that day are used."),
            start: Optional[str] = typer.Option(
                None, help="Report every alert that became visible in [start, date] "
                "(default: the latest state at --date only)."),
            no_notify: bool = typer.Option(False, "--no-notify",
                                           help="Log the alerts but send nothing."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Stable layer: fundamentals rules ([monitor] in mine.toml) -> alerts_log -> [notify].

    Rules: low_yield, pe_high, pb_high, pe_jump, pb_jump, profit_decline, dividend_cut
    (README "Stable layer"). Alerts are prompts for a person: nothing is traded."""
    from backtest.monitor_run import read_watchlist
    from backtest.monitor_run import monitor as run
    try:
        if watchlist is not None and universe is not None:
            raise ConfigError("--watchlist and --universe: give one of them")
        check_universe("--universe", universe)
        date = check_date("--date", date)
        start = check_date("--start", start)
        check_span("--start", start, "--date", date)
        codes = read_watchlist(watchlist) if watchlist is not None else None
        cfg = _cfg()
        if not as_json:
            console.print(f"[dim]{escape(config_line(cfg))}[/]", soft_wrap=True)
        res = run(cfg, date, start=start, codes=codes, universe=universe,
                  notify=not no_notify)
    except AlphamineError as e:
        fail(e)
    if as_json:
        print_json({**config_keys(cfg), **res.to_dict()})
        return
    r = res.result
    for n in r.notes:
        console.print(f"[dim]note: {escape(n)}[/]", soft_wrap=True)
    window = f"{r.start} to {r.date}" if r.start else f"state at {r.date}"
    console.print(_alerts_table(r.alerts.to_dict("records"),
                                f"stable-layer alerts, {r.n_codes} stocks, {window}"))
    console.print("alerts per rule: " + ", ".join(f"{k} {v}" for k, v in r.counts.items()))
    console.print(f"{len(res.added)} new in alerts_log, {res.duplicates} already logged")
    _delivery_lines(res.delivery)


@app.command()
def alerts(ack: Optional[int] = typer.Option(None, "--ack", help="Acknowledge alert ID (> 0)."),
           show_all: bool = typer.Option(False, "--all",
                                         help="Include acknowledged alerts."),
           rule: Optional[str] = typer.Option(None, help="Only this rule."),
           send: bool = typer.Option(False, "--send",
                                     help="Deliver the pending notifications ([notify])."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the stable layer's alerts and the attack layer's stop hits (alerts_log),
    acknowledge one, send pending ones."""
    from backtest.monitor import RULES
    from backtest.monitor_run import send_alerts
    from backtest.signals_run import STOP_RULES
    from factors.alerts import AlertLog
    from factors.store import FactorStore
    try:
        check_positive("--ack", ack)
        check_choice("--rule", rule, RULES + STOP_RULES)
        cfg = _cfg()
        acked = None
        delivery = send_alerts(cfg) if send else {}
        with FactorStore(cfg.store.path) as store:
            log = AlertLog(store)
            if ack is not None:
                acked = log.ack(ack)
            rows = log.entries(acknowledged=None if show_all else False, rule=rule)
    except AlphamineError as e:
        fail(e)
    if as_json:
        print_json({**config_keys(cfg), "acknowledged": acked.to_dict() if acked else None,
                    "delivery": delivery, "alerts": [r.to_dict() for r in rows]})
        return
    console.print(f"[dim]{escape(config_line(cfg))}[/]", soft_wrap=True)
    if acked is not None:
        console.print(f"alert {acked.id} acknowledged ({acked.ts_code} {acked.rule} "
                      f"{acked.period})")
    _delivery_lines(delivery)
    if not rows:
        console.print("no alert" + ("" if show_all else " to acknowledge") +
                      ": run `mine monitor`")
        return
    console.print(_alerts_table(rows, f"alerts ({len(rows)}"
                                      f"{'' if show_all else ' not acknowledged'})"))
