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


def feature_and_event_hooks(progress: Progress, quiet: bool
                            ) -> tuple[Callable[[int, int, str], None], Callable[[str], None]]:
    """``on_feature`` (a "features" bar) and ``on_event`` (prints unless ``quiet``) hooks."""
    feat_task = progress.add_task("features", total=None, info="")

    def on_feature(done, total, name):
        progress.update(feat_task, total=total, completed=done, info=name)

    def on_event(msg):
        if not quiet:
            progress.console.print(escape(msg))

    return on_feature, on_event


@contextmanager
def optional_store(cfg, submit: bool) -> Iterator:
    """The leaderboard :class:`~factors.store.FactorStore` when ``submit``, else ``None``."""
    from factors.store import FactorStore
    store = FactorStore(cfg.store.path) if submit else None
    try:
        yield store
    finally:
        if store is not None:
            store.close()
