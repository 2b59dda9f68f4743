"""CLI commands: ``mine report factor | backtest | leaderboard`` (shells over
:mod:`mining.report_factor`, :mod:`mining.report_backtest`, :mod:`mining.report_leaderboard`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from data.errors import AlphamineError
from mining.cli_app import app, check_universe, config_line, console, fail, print_json
from mining.cli_app import cfg as _cfg

report_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Self-contained HTML reports (plotly; pip install "
                              "'alphamine[report]').")
app.add_typer(report_app, name="report")


@report_app.command("factor", context_settings={"ignore_unknown_options": True})
def report_factor(
        formula: str = typer.Argument(..., help='Factor formula, e.g. "-ts_median(ret, 5)"'),
        universe: str = typer.Option("csi300", help="csi300 | csi500 | csi800 | csi1000 | all"),
        out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default: "
                                           "<[backtest] out_dir>/reports/factor-...html)."),
        unseal_test: bool = typer.Option(False, "--unseal-test", help="Also evaluate and draw "
                                         "the test split (logged, see `mine audit`)."),
        force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Factor tear sheet: IC series, histogram, monthly heatmap, decay, quantile curves,
    long-short NAV, turnover, coverage, per-year table (one HTML file, opens offline)."""
    from mining.report_factor import factor_report
    try:
        check_universe("--universe", universe)
        if out is not None and Path(out).is_dir():
            raise AlphamineError(f"--out {str(out)!r} is a folder; give an .html file")
        c = _cfg()
        if not as_json:
            console.print(f"[dim]{escape(config_line(c))}[/]", soft_wrap=True)
        run = factor_report(c, formula, universe, out, unseal_test=unseal_test, force=force)
    except AlphamineError as e:
        fail(e)
    if as_json:
        print_json({"formula": run.formula, "universe": run.universe, "path": str(run.path),
                    "splits": run.splits, "charts": len(run.figures), "seconds": run.seconds})
    else:
        console.print(f"wrote {escape(str(run.path))} ({len(run.figures)} charts, splits "
                      f"{', '.join(run.splits)}, {run.seconds}s)")


@report_app.command("backtest")
def report_backtest(
        run: Path = typer.Argument(..., help="A `mine backtest` run folder, or 'latest-backtest' "
                                   "for the newest one under [backtest] out_dir."),
        out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default: "
                                           "<run folder>/report.html)."),
        force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Backtest report: NAV vs benchmark and excess NAV, drawdown, monthly returns, rolling
    Sharpe, turnover and costs, holdings and cash, rejected orders, per-year table."""
    from mining.report_backtest import backtest_report
    try:
        c = _cfg()
        if str(run) == "latest-backtest":
            from mining.dashboard_data import backtest_runs
            runs = backtest_runs(c)                    # finished runs, newest first
            if runs.empty:
                raise AlphamineError(f"no backtest run under {str(c.backtest.out_dir)!r}; "
                                     "run `mine backtest` first")
            run = Path(runs.path.iloc[0])
        res = backtest_report(run, out, force=force)
    except AlphamineError as e:
        fail(e)
    if as_json:
        print_json({"run_dir": str(res.run_dir), "path": str(res.path),
                    "charts": len(res.figures), "seconds": res.seconds})
    else:
        console.print(f"wrote {escape(str(res.path))} ({len(res.figures)} charts, "
                      f"{res.seconds}s)")


@report_app.command("leaderboard")
def report_leaderboard(
        universe: str = typer.Option("csi300", help="Universe of the members."),
        top: int = typer.Option(30, "--top", help="Members drawn (best by valid ICIR), >= 1."),
        out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default: "
                                           "<[backtest] out_dir>/reports/leaderboard-U.html)."),
        force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """The factor pool: clustered correlation heatmap on valid, sortable metrics table and each
    member's lineage (producer, run, trials, adjusted p, forced, test looks)."""
    from mining.cli_app import check_positive
    from mining.report_leaderboard import leaderboard_report
    try:
        check_universe("--universe", universe)
        check_positive("--top", top)
        if out is not None and Path(out).is_dir():
            raise AlphamineError(f"--out {str(out)!r} is a folder; give an .html file")
        c = _cfg()
        if not as_json:
            console.print(f"[dim]{escape(config_line(c))}[/]", soft_wrap=True)
        res = leaderboard_report(c, universe, out, top=top, force=force)
    except AlphamineError as e:
        fail(e)
    if as_json:
        print_json({"universe": res.universe, "path": str(res.path), "members": res.n_members,
                    "in_heatmap": res.n_in_heatmap, "seconds": res.seconds})
    else:
        console.print(f"wrote {escape(str(res.path))} ({res.n_members} members, "
                      f"{res.n_in_heatmap} in the heatmap, {res.seconds}s)")


@app.command()
def dashboard(port: int = typer.Option(8501, "--port", help="Port on 127.0.0.1."),
              dry_run: bool = typer.Option(False, "--dry-run", help="Print the command, do not "
                                           "start the server.")) -> None:
    """Start the Streamlit dashboard on 127.0.0.1 (leaderboard, backtests, mining runs, audit);
    it reads the leaderboard file and the run folders of this configuration."""
    import os
    import sys

    from data.errors import ConfigError
    try:
        if not 1024 <= port <= 65535:
            raise ConfigError(f"--port must be in 1024..65535, got {port}")
        try:
            import streamlit  # noqa: F401
        except ImportError:
            raise ConfigError("the dashboard needs streamlit: pip install "
                              "'alphamine[report]'") from None
        c = _cfg()
    except AlphamineError as e:
        fail(e)
    script = Path(__file__).resolve().parent / "cli_dashboard.py"
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.address",
           "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    env = {**os.environ, "ALPHAMINE_CONFIG": str(c.source) if c.source else ""}
    console.print(f"[dim]{escape(config_line(c))}[/]", soft_wrap=True)
    console.print(f"dashboard on http://127.0.0.1:{port} (Ctrl-C stops it)")
    if dry_run:
        console.print(escape(" ".join(cmd)))
        return
    sys.stdout.flush()
    # Become the server (no child left behind when this process is stopped or killed).
    os.execve(sys.executable, cmd, env)
