"""CLI commands: ``mine data bootstrap | update | status`` (a shell over :mod:`data.ingest`).

Each command validates its options before anything is read, makes one library call and
renders its result. ``--provider akshare`` (bootstrap, update) uses the free AKShare provider
(:mod:`data.akshare_provider`: calendar, listed stocks, daily bars and adj_factor; the other
datasets are skipped). The Tushare token comes only from the environment variable named by
``[tushare] token_env`` (default ``TUSHARE_TOKEN``); without it the fetching commands exit 2
naming the variable (``update --dry-run`` needs none). Exit codes: 0 all parts done, 1 some
parts failed (each named, with its day), 2 usage/configuration/data errors.
"""
from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from data import ingest
from data.check import check_warehouse
from data.errors import AlphamineError, ConfigError
from data.ingest_store import status as _status
from mining.cli_app import (
    EXIT_OK,
    EXIT_PROBLEMS,
    app,
    check_date,
    console,
    err_console,
    fail,
    print_json,
)
from mining.cli_app import cfg as _cfg
from mining.cli_data_check import render_check

data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="Fill, update and inspect your own warehouse from Tushare (or AKShare).")
app.add_typer(data_app, name="data")

_ROOT_HELP = "Warehouse folder. Default [data] root."


def _root(c, root: Path | None) -> Path:
    return Path(root).expanduser() if root is not None else Path(c.data.root)


_PROVIDER_HELP = ("Data source: tushare (token in $TUSHARE_TOKEN; everything) or akshare "
                  "(free, `pip install -e \".[akshare]\"`; calendar, listed stocks, daily bars "
                  "and adj_factor only, not survivorship-free).")


def _check_provider(name: str) -> str:
    if name not in ingest.PROVIDERS:
        raise ConfigError(f"--provider must be one of {', '.join(ingest.PROVIDERS)}, "
                          f"got {name!r}")
    return name


def _provider(c, name: str = "tushare"):
    if name != "tushare":
        return ingest.make_provider(c, name=name)
    env = ingest.tushare_settings(c)["token_env"]
    if not os.environ.get(env):
        raise ConfigError(f"no Tushare token: set the environment variable ${env} "
                          f"(never put it in mine.toml)")
    return ingest.make_provider(c)


def _progress(as_json: bool):
    """One line per dataset when it finishes (stderr), nothing with --json."""
    if as_json:
        return None
    tty = err_console.is_terminal

    def show(dataset: str, done: int, total: int, failed: int) -> None:
        if done == total:
            bad = f", [red]{failed} failed[/]" if failed else ""
            err_console.print(f"[dim]{escape(dataset)}: {total} parts{bad}[/]")
        elif tty:
            err_console.print(f"[dim]{escape(dataset)} {done}/{total}[/]", end="\r")
    return show


def _render_run(run: ingest.IngestRun, as_json: bool) -> None:
    if as_json:
        print_json({**{k: getattr(run, k) for k in run.__dataclass_fields__}, "ok": run.ok})
    else:
        t = Table(title=f"{run.command} {run.root} ({run.start} to {run.end})"
                        + (" — dry run" if run.dry_run else ""))
        for col in ("dataset", "parts", "done", "failed"):
            t.add_column(col, justify="left" if col == "dataset" else "right")
        for name, p in run.parts.items():
            t.add_row(name, str(p["planned"]), str(p["done"]), str(p["failed"]))
        console.print(t)
        calls = sum(run.calls.values())
        verb = "would make" if run.dry_run else "made"
        console.print(f"{verb} {calls} calls ({', '.join(f'{k} {v}' for k, v in run.calls.items()) or 'none'}); "
                      f"~{run.est_seconds / 60:.1f} min at {run.calls_per_minute} calls/min")
        if run.skipped:
            console.print(f"skipped (not served by the provider): {', '.join(run.skipped)}")
        for f in run.failed:
            err_console.print(f"[red]failed:[/] {escape(f)}", soft_wrap=True)
    if not run.ok:
        if not as_json:
            err_console.print(f"[bold red]error:[/] {len(run.failed)} part(s) failed"
                              + (" (run aborted)" if run.status == "aborted" else "")
                              + f"; rerun `mine data update --root {escape(str(run.root))}`")
        raise typer.Exit(EXIT_PROBLEMS)
    raise typer.Exit(EXIT_OK)


@data_app.command()
def bootstrap(
        root: Path | None = typer.Option(None, "--root", help=_ROOT_HELP + " Must be a new "
                                            "or empty folder, or an ingest warehouse."),
        start: str = typer.Option(..., "--start", help="First date (YYYY-MM-DD)."),
        end: str | None = typer.Option(None, "--end", help="Last date. Default: the last "
                                          "trading day complete now (17:00 Asia/Shanghai)."),
        force: bool = typer.Option(False, "--force", help="Adopt a non-empty folder without "
                                   "_jobs.sqlite."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Make no call and write nothing: "
                                     "print the calls per endpoint and the estimated time at "
                                     "the [tushare] points tier."),
        provider: str = typer.Option("tushare", "--provider", help=_PROVIDER_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the run as JSON.")) -> None:
    """Fill a new warehouse from --start: calendar, stock list, names, industries, indices,
    daily market data, dividends and fundamentals."""
    try:
        provider = _check_provider(provider)
        start = check_date("--start", start)
        end = check_date("--end", end)
        c = _cfg()
        if dry_run:
            _render_run(ingest.plan_bootstrap(c, start=start, end=end), as_json)
            return
        run = ingest.bootstrap(c, _provider(c, provider), start=start, end=end, root=root,
                               force=force,
                               on_progress=_progress(as_json))
    except AlphamineError as e:
        fail(e)
    _render_run(run, as_json)


@data_app.command()
def update(
        root: Path | None = typer.Option(None, "--root", help=_ROOT_HELP),
        end: str | None = typer.Option(None, "--end", help="Last date. Default: the last "
                                          "trading day complete now (17:00 Asia/Shanghai)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Make no call: print the calls "
                                     "per endpoint and the estimated time."),
        provider: str = typer.Option("tushare", "--provider", help=_PROVIDER_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the run as JSON.")) -> None:
    """Fetch everything missing up to --end into a bootstrapped warehouse."""
    try:
        provider = _check_provider(provider)
        end = check_date("--end", end)
        c = _cfg()
        run = ingest.update(c, None if dry_run else _provider(c, provider), end=end,
                            root=_root(c, root), dry_run=dry_run,
                            on_progress=_progress(as_json))
    except AlphamineError as e:
        fail(e)
    _render_run(run, as_json)


@data_app.command()
def status(
        root: Path | None = typer.Option(None, "--root", help=_ROOT_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Per dataset: files, rows, date range, gaps (open days without rows), job state."""
    try:
        c = _cfg()
        r = _root(c, root)
        if not r.is_dir():
            raise ConfigError(f"--root {str(r)!r} is not a folder")
        rows = _status(r)
    except AlphamineError as e:
        fail(e)
    if as_json:
        print_json({"root": str(r), "datasets": rows})
        return
    t = Table(title=f"warehouse {r}")
    for col in ("dataset", "files", "rows", "first", "last", "gaps", "done", "failed",
                "last job"):
        t.add_column(col, justify="left" if col in ("dataset", "first", "last", "last job")
                     else "right", no_wrap=True)
    for s in rows:
        t.add_row(s.dataset, str(s.files), str(s.rows), s.first or "-", s.last or "-",
                  str(len(s.gaps)), str(s.done), str(s.failed), s.last_job or "-")
    console.print(t)
    for s in rows:
        for f in s.failed_parts:
            err_console.print(f"[red]failed:[/] {escape(s.dataset)} {escape(f)}", soft_wrap=True)


@data_app.command()
def check(
        root: Path | None = typer.Option(None, "--root", help=_ROOT_HELP),
        start: str | None = typer.Option(None, help="First trade date of the bar checks."),
        end: str | None = typer.Option(None, help="Last trade date of the bar checks."),
        stale_days: int = typer.Option(2, "--stale-days", help="Open days a dated dataset "
                                       "may lag the calendar."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Health report: missing days, duplicate keys, OHLC violations, adj_factor jumps without an
    event, moves beyond the price limit, stale datasets. Exit code 1 when anything is found."""
    try:
        c = _cfg()
        start_, end_ = check_date("--start", start), check_date("--end", end)
        if stale_days < 0:
            raise ConfigError(f"--stale-days must be >= 0, got {stale_days}")
        r = _root(c, root)
        if not r.is_dir():
            raise ConfigError(f"--root {str(r)!r} is not a folder")
        report = check_warehouse(r, start=start_, end=end_, stale_days=stale_days)
    except AlphamineError as e:
        fail(e)
    raise typer.Exit(render_check(report, as_json))
