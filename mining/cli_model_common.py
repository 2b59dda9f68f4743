"""Printing and progress helpers shared by ``mine model lgbm`` and ``mine model transformer``.

CLI-only (rich); the run objects come from :mod:`models.lgbm_run` / :mod:`models.transformer_run`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mining import cli_app
from models.run_common import (
    EpochDone,
    FeatureProgress,
    FoldDone,
    ModelEvent,
    ModelMessage,
    RoundProgress,
)


def oos_table(run, published: dict | None = None) -> Table:
    """OOS test metrics of ``run`` (members and eligible); ``published``: Qlib's column."""
    fmt = cli_app.fmt
    t = Table(title="OOS test metrics (daily, mean and mean/std)"
              + (" vs Qlib's published LightGBM/Alpha158" if published else ""))
    t.add_column("metric")
    t.add_column("universe members", justify="right")
    t.add_column("eligible (tradable t+1)", justify="right")
    if published:
        t.add_column("Qlib published", justify="right")
    for k in ("IC", "ICIR", "RankIC", "RankICIR"):
        row = [k, fmt(run.oos["members"][k]), fmt(run.oos["eligible"][k])]
        if published:
            row.append(fmt(published[k]))
        t.add_row(*row)
    t.add_row("days", str(run.oos["members"]["days"]), str(run.oos["eligible"]["days"]),
              *([""] if published else []))
    t.add_row("names / day", fmt(run.oos["members"]["names_per_day"], 1),
              fmt(run.oos["eligible"]["names_per_day"], 1), *([""] if published else []))
    return t


def run_progress(console, quiet: bool) -> Progress:
    """The progress display of a model run (disabled when ``quiet``)."""
    return Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(),
                    TextColumn("{task.completed}/{task.total} {task.fields[info]}"),
                    TimeElapsedColumn(), console=console, disable=quiet)


@contextmanager
def model_progress(console, quiet: bool) -> Iterator[Callable[[ModelEvent], None]]:
    """An ``on_progress`` callback rendering :data:`models.run_common.ModelEvent` events:
    a features bar, one bar per fold (rounds or epochs), message lines (and, when the console
    is not a terminal, one line per finished fold / epoch). Nothing is shown when ``quiet``."""
    with run_progress(console, quiet) as progress:
        feat_task = progress.add_task("features", total=None, info="")
        folds: dict[int, int] = {}
        lines = not console.is_terminal and not quiet

        def on_progress(ev: ModelEvent) -> None:
            if isinstance(ev, ModelMessage):
                if not quiet:
                    progress.console.print(escape(ev.text))
            elif isinstance(ev, FeatureProgress):
                progress.update(feat_task, total=ev.total, completed=ev.done, info=ev.name)
            elif isinstance(ev, RoundProgress):
                if ev.fold not in folds:
                    folds[ev.fold] = progress.add_task(f"fold {ev.fold} rounds", total=ev.total,
                                                       info="")
                progress.update(folds[ev.fold], completed=ev.iteration,
                                info=f"valid l2 {ev.valid_l2:.5f} IC {ev.valid_ic:+.4f}")
            elif isinstance(ev, FoldDone):
                if ev.fold in folds:
                    progress.update(folds[ev.fold], total=ev.rounds_run, completed=ev.rounds_run)
                if lines:
                    i = ev.info
                    progress.console.print(f"fold {ev.fold}: test {i['test']} best iter "
                                           f"{i['best_iteration']} valid IC "
                                           f"{i['valid_ic']:+.4f} ({i['seconds']:.0f}s)")
            elif isinstance(ev, EpochDone):
                if ev.fold not in folds:
                    folds[ev.fold] = progress.add_task(
                        f"fold {ev.fold + 1}/{ev.n_folds} epochs", total=ev.total, info="")
                progress.update(folds[ev.fold], completed=ev.epoch,
                                info=f"loss {ev.loss:.4f} valid RankIC {ev.valid_ic:+.4f} "
                                     f"({ev.seconds:.0f}s)")
                if lines:
                    progress.console.print(f"fold {ev.fold} epoch {ev.epoch}: loss "
                                           f"{ev.loss:.4f} valid RankIC {ev.valid_ic:+.4f} "
                                           f"({ev.seconds:.0f}s)")

        yield on_progress


def check_model_options(**values) -> None:
    """Validate shared model options before anything loads: dates (in order: start <=
    first_test <= end), a known universe and feature set, positive numbers (``seed`` may be
    0). Raises ConfigError."""
    from data.universe import UNIVERSES
    from factors.alpha158 import FEATURE_SET_NAMES
    d = {k: cli_app.check_date("--" + k.replace("_", "-"), values.pop(k, None))
         for k in ("start", "first_test", "end")}
    for a, b in (("start", "first_test"), ("first_test", "end"), ("start", "end")):
        cli_app.check_span("--" + a.replace("_", "-"), d[a], "--" + b.replace("_", "-"), d[b])
    cli_app.check_choice("--universe", values.pop("universe", None), UNIVERSES)
    cli_app.check_choice("--feature-set", values.pop("feature_set", None),
                         FEATURE_SET_NAMES)
    cli_app.check_positive("--seed", values.pop("seed", None), zero=True)
    for k, v in values.items():
        cli_app.check_positive("--" + k.replace("_", "-"), v)


def run_model_cli(kind: str, overrides: dict, *, submit, as_json: bool, render,
                  argv: list[str] | None = None, cfg=None) -> None:
    """The body every ``mine model KIND`` command shares: config line, one
    :func:`models.run.run_model` call with the progress display, then ``--json`` or
    ``render(run)``. ``overrides`` must already be validated; ``argv`` is the command line
    (:func:`mining.cli_app.invocation`) for the run's manifest; ``cfg`` the configuration
    when the command changed it (e.g. ``--cluster``, :func:`mining.cli_app.with_cluster`)."""
    from models.run import run_model
    console = cli_app.console
    try:
        cfg = cfg if cfg is not None else cli_app.cfg()
        if not as_json:
            console.print(f"[dim]{escape(cli_app.config_line(cfg))}[/]")
        with model_progress(console, as_json) as on_progress:
            run = run_model(cfg, kind, overrides, submit=submit, on_progress=on_progress,
                            argv=argv)
    except (cli_app.AlphamineError, ImportError) as e:
        cli_app.fail(e)
        return
    if as_json:
        cli_app.print_json({"config": str(cfg.source) if cfg.source else None,
                            "store": str(cfg.store.path), **run.to_dict()})
        return
    render(run)
