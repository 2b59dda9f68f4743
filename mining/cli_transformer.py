"""CLI command ``mine model transformer`` (issue 5), registered on ``mining.cli_model.model_app``.

Kept apart from :mod:`mining.cli_model` so that the optional torch extra stays optional: nothing
here imports torch; a missing torch is reported with the install command.
"""
from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from mining import cli_app
from mining.cli_model_common import check_model_options, oos_table, run_model_cli


def _folds_table(run) -> Table:
    fmt = cli_app.fmt
    s = run.settings
    t = Table(title=f"Transformer run {run.run_id} ({s.universe}, {s.feature_set}, "
                    f"{s.net.seq_len}-day sequences, walk-forward)")
    t.add_column("fold")
    for col in ("train", "valid", "test", "best epoch", "epochs run", "valid RankIC",
                "train samples", "seconds"):
        t.add_column(col, justify="right")
    for f in run.folds:
        t.add_row(str(f["fold"]), f["train"], f["valid"], f["test"], str(f["best_epoch"]),
                  str(f["epochs_run"]), fmt(f["best_valid_ic"]), str(f["n_train_samples"]),
                  fmt(f["seconds"], 1))
    return t


def _leaderboard_table(run) -> Table:
    fmt = cli_app.fmt
    t = Table(title="candidate (common evaluator + gate; valid = OOS predictions)")
    t.add_column("name")
    t.add_column("formula", no_wrap=True, overflow="ellipsis")
    for col in ("status", "valid RankIC", "valid ICIR", "reason"):
        t.add_column(col)
    for r in run.leaderboard:
        colour = "green" if r["accepted"] else "red"
        t.add_row(escape(r["name"]), escape(r["formula"]),
                  f"[{colour}]{'accepted' if r['accepted'] else 'rejected'}[/]",
                  fmt(r.get("valid_rank_ic")), fmt(r.get("valid_rank_icir")),
                  escape(str(r.get("reason", ""))[:90]))
    return t


def transformer(
        ctx: typer.Context,
        universe: Optional[str] = typer.Option(None, help="Universe (default: mine.toml "
                                               "model section)."),
        start: Optional[str] = typer.Option(None, help="First date of the dataset "
                                            "(default 2014-06-01)."),
        end: Optional[str] = typer.Option(None, help="Last OOS prediction date (default: "
                                          "model.last_test in mine.toml)."),
        first_test: Optional[str] = typer.Option(None, "--first-test",
                                                 help="First OOS prediction date."),
        retrain_months: Optional[int] = typer.Option(None, "--retrain-months",
                                                     help="Refit every K months."),
        train_years: Optional[int] = typer.Option(None, "--train-years",
                                                  help="Rolling training window (default 3)."),
        feature_set: Optional[str] = typer.Option(None, "--feature-set",
                                                  help="alpha158 | qlib158 | library, each "
                                                  "optionally +pool (leaderboard members as "
                                                  "factor(\"name\") features)"),
        epochs: Optional[int] = typer.Option(None, help="Max epochs per fold (default 10)."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len",
                                              help="Days per input sequence (default 20)."),
        d_model: Optional[int] = typer.Option(None, "--d-model",
                                              help="Transformer width (default 32)."),
        dates_per_epoch: Optional[int] = typer.Option(None, "--dates-per-epoch",
                                                      help="Random training dates per epoch "
                                                      "(default 200)."),
        multitask: Optional[bool] = typer.Option(None, "--multitask/--no-multitask",
                                                 help="Add the Sharpe and drawdown heads "
                                                 "(default off)."),
        threads: Optional[int] = typer.Option(None, help="torch threads (default: "
                                              "model.num_threads)."),
        seed: Optional[int] = typer.Option(None),
        submit: bool = typer.Option(True, "--submit/--no-submit",
                                    help="Send the prediction panel to the leaderboard."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")
) -> None:
    """Train the transformer walk-forward on feature sequences; OOS predictions -> leaderboard."""
    try:
        check_model_options(universe=universe, start=start, end=end, first_test=first_test,
                            retrain_months=retrain_months, train_years=train_years,
                            feature_set=feature_set, epochs=epochs, seq_len=seq_len,
                            d_model=d_model, dates_per_epoch=dates_per_epoch, threads=threads,
                            seed=seed)
    except cli_app.AlphamineError as e:
        cli_app.fail(e)
    over = dict(universe=universe, start=start, last_test=end, first_test=first_test,
                retrain_months=retrain_months, train_years=train_years, feature_set=feature_set,
                epochs=epochs, seq_len=seq_len, d_model=d_model, dates_per_epoch=dates_per_epoch,
                multitask=multitask, threads=threads, seed=seed)
    run_model_cli("transformer", over, submit=submit, as_json=as_json, render=_render,
                  argv=cli_app.invocation(ctx))


def _render(run) -> None:
    console = cli_app.console
    console.print(_folds_table(run))
    console.print(oos_table(run))
    if run.leaderboard:
        console.print(_leaderboard_table(run))
    tm = run.timings
    console.print(f"run {run.run_id}: dataset {tm['dataset_s']:.0f}s, training "
                  f"{tm['train_s']:.0f}s, total {tm['total_s']:.0f}s; predictions "
                  f"{escape(run.pred_path)}; leaderboard formula model(\"{run.run_id}\")")
