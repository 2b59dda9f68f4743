"""CLI commands: ``mine report factor`` (a shell over :mod:`mining.report_factor`)."""
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
