"""CLI commands: `mine model lgbm|transformer` (issue 5).

``model_app`` is the ``mine model`` sub-app; each model adds its command to it.
"""
from __future__ import annotations

import json
import time
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from mining import cli_app
from mining.cli_model_common import (feature_and_event_hooks, oos_table, optional_store,
                                     run_progress)

model_app = typer.Typer(add_completion=False, no_args_is_help=True,
                        help="Return models (LightGBM, transformer) as factor producers: "
                             "walk-forward OOS predictions -> evaluator -> leaderboard.")




def _summary_table(run) -> Table:
    fmt = cli_app.fmt
    s = run.settings
    t = Table(title=f"LightGBM run {run.run_id} ({s.universe}, {s.feature_set}, "
                    f"{s.preset or 'walk-forward'})")
    t.add_column("fold")
    for col in ("train", "valid", "test", "best iter", "valid IC", "train rows", "seconds"):
        t.add_column(col, justify="right")
    for f in run.folds:
        t.add_row(str(f["fold"]), f["train"], f["valid"], f["test"], str(f["best_iteration"]),
                  fmt(f["valid_ic"]), str(f["n_train"]), fmt(f["seconds"], 1))
    return t


def _oos_table(run) -> Table:
    from models.lgbm_run import QLIB_PUBLISHED
    preset = run.settings.preset == "qlib-alpha158"
    return oos_table(run, QLIB_PUBLISHED if preset else None)


def _candidates_table(run) -> Table:
    fmt = cli_app.fmt
    t = Table(title="candidates (common evaluator + gate; valid = OOS predictions; --json "
                    "for the gate's reasons)")
    for col in ("formula", "gate", "train RankIC", "valid RankIC", "valid ICIR"):
        t.add_column(col, overflow="fold", justify="left" if col == "formula" else "right")
    for r in run.leaderboard:
        colour = "green" if r["accepted"] else "red"
        t.add_row(escape(r["formula"][:160]), f"[{colour}]{r.get('kind') or 'error'}[/]",
                  fmt(r.get("train_rank_ic")), fmt(r.get("valid_rank_ic")),
                  fmt(r.get("valid_rank_icir")))
    return t


@model_app.command("lgbm")
def lgbm(universe: Optional[str] = typer.Option(None, help="Universe (default: mine.toml model section)."),
         start: Optional[str] = typer.Option(None, help="First date of training rows."),
         end: Optional[str] = typer.Option(None, help="Last OOS prediction date (default: "
                                           "model.last_test in mine.toml)."),
         first_test: Optional[str] = typer.Option(None, "--first-test",
                                                  help="First OOS prediction date."),
         retrain_months: Optional[int] = typer.Option(None, "--retrain-months",
                                                      help="Refit every K months."),
         feature_set: Optional[str] = typer.Option(None, "--feature-set",
                                                   help="alpha158 | qlib158 | library"),
         rounds: Optional[int] = typer.Option(None, help="Max boosting rounds."),
         seed: Optional[int] = typer.Option(None),
         feature_norm: Optional[str] = typer.Option(None, "--feature-norm",
                                                    help="cs (per-date robust z-score, "
                                                    "default) | global (Qlib's "
                                                    "RobustZScoreNorm on the train period; "
                                                    "fixed split only)."),
         preset: Optional[str] = typer.Option(None, help="qlib-alpha158: Qlib's benchmark "
                                              "protocol (single fit, close-to-close label)."),
         submit: Optional[bool] = typer.Option(None, "--submit/--no-submit",
                                               help="Send the prediction panel and SHAP "
                                               "formulas to the leaderboard (default: yes; "
                                               "no for --preset)."),
         as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")
         ) -> None:
    """Train LightGBM walk-forward on Alpha158-style features; OOS predictions -> leaderboard."""
    from models.lgbm_run import PRESETS, LGBMSettings, run_lgbm
    base = cli_app
    console = base.console
    try:
        cfg = base.cfg()
        over = dict(universe=universe, start=start, last_test=end, first_test=first_test,
                    retrain_months=retrain_months, feature_set=feature_set, rounds=rounds,
                    seed=seed, feature_norm=feature_norm)
        if preset:
            if preset not in PRESETS:
                raise base.AlphamineError(f"unknown preset {preset!r}; known: "
                                          f"{', '.join(PRESETS)}")
            over = {**PRESETS[preset], **{k: v for k, v in over.items()
                                          if k in ("seed", "rounds", "feature_norm")
                                          and v is not None}}
        settings = LGBMSettings.from_config(cfg, **over)
        do_submit = (not preset) if submit is None else submit
        quiet = as_json
        t0 = time.perf_counter()
        with run_progress(console, quiet) as progress:
            on_feature, on_event = feature_and_event_hooks(progress, quiet)
            fold_tasks: dict[int, int] = {}

            def on_round(k, it, l2, ic):
                if k not in fold_tasks:
                    fold_tasks[k] = progress.add_task(f"fold {k} rounds",
                                                      total=settings.rounds, info="")
                progress.update(fold_tasks[k], completed=it,
                                info=f"valid l2 {l2:.5f} IC {ic:+.4f}")

            def on_fold(k, info):
                if k in fold_tasks:
                    progress.update(fold_tasks[k], total=info["best_iteration"] +
                                    settings.early_stopping, completed=info["best_iteration"]
                                    + settings.early_stopping)
                if not console.is_terminal and not quiet:
                    progress.console.print(f"fold {k}: test {info['test']} best iter "
                                           f"{info['best_iteration']} valid IC "
                                           f"{info['valid_ic']:+.4f} ({info['seconds']:.0f}s)")

            with optional_store(cfg, do_submit) as store:
                run = run_lgbm(cfg, settings, store=store, submit=do_submit, on_event=on_event,
                               on_feature=on_feature, on_round=on_round, on_fold=on_fold)
    except base.AlphamineError as e:
        base.fail(e)
        return
    if as_json:
        print(json.dumps(run.to_dict(), indent=2, default=base.to_jsonable))
        return
    console.print(_summary_table(run))
    console.print(_oos_table(run))
    if run.leaderboard:
        console.print(_candidates_table(run))
    if run.shap:
        top = ", ".join(f"{n} {v:.4f}" for n, v in run.shap["top_features"][:8])
        console.print(f"SHAP mean |value| top: {escape(top)}")
    tm = run.timings
    where = (f"formula model(\"{run.run_id}\")" if run.leaderboard else
             "not submitted to the leaderboard (--submit to do so)")
    console.print(f"run {run.run_id}: dataset {tm['dataset_s']:.0f}s, training "
                  f"{tm['train_s']:.0f}s, total {time.perf_counter() - t0:.0f}s "
                  f"({tm['cpu_s']:.0f}s CPU); predictions {escape(run.pred_path)}; {where}")


# `mine model transformer` lives in its own module (torch is an optional extra)
from mining.cli_transformer import transformer as _transformer  # noqa: E402

model_app.command("transformer")(_transformer)


def register(app: typer.Typer) -> None:
    """Add the ``mine model`` sub-app to the ``mine`` app."""
    app.add_typer(model_app, name="model")
