"""CLI commands: `mine model lgbm|transformer` (issue 5).

``model_app`` is the ``mine model`` sub-app, added to :data:`mining.cli_app.app` at import
time; each model adds its command to it. Command bodies validate options and make one
:func:`models.run.run_model` call (:func:`mining.cli_model_common.run_model_cli`).
"""
from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from mining import cli_app
from mining.cli_model_common import check_model_options, oos_table, run_model_cli

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
    t.add_column("formula", no_wrap=True, overflow="ellipsis")
    for col in ("gate", "train RankIC", "valid RankIC", "valid ICIR"):
        t.add_column(col, justify="right")
    for r in run.leaderboard:
        colour = "green" if r["accepted"] else "red"
        t.add_row(escape(r["formula"][:160]), f"[{colour}]{r.get('kind') or 'error'}[/]",
                  fmt(r.get("train_rank_ic")), fmt(r.get("valid_rank_ic")),
                  fmt(r.get("valid_rank_icir")))
    return t


@model_app.command("lgbm")
def lgbm(ctx: typer.Context,
         universe: Optional[str] = typer.Option(None, help="Universe (default: mine.toml model section)."),
         start: Optional[str] = typer.Option(None, help="First date of training rows."),
         end: Optional[str] = typer.Option(None, help="Last OOS prediction date (default: "
                                           "model.last_test in mine.toml)."),
         first_test: Optional[str] = typer.Option(None, "--first-test",
                                                  help="First OOS prediction date."),
         retrain_months: Optional[int] = typer.Option(None, "--retrain-months",
                                                      help="Refit every K months."),
         feature_set: Optional[str] = typer.Option(None, "--feature-set",
                                                   help="alpha158 | qlib158 | library, each "
                                                   "optionally +pool (leaderboard members "
                                                   "as factor(\"name\") features)"),
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
         cluster: Optional[str] = typer.Option(None, "--cluster", metavar="ADDRESS",
                                               help=cli_app.CLUSTER_HELP + " Each "
                                               "walk-forward fold is one task."),
         as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")
         ) -> None:
    """Train LightGBM walk-forward on Alpha158-style features; OOS predictions -> leaderboard."""
    from models.lgbm_run import PRESETS
    try:
        cli_app.check_choice("--preset", preset, PRESETS)
        check_model_options(universe=universe, start=start, end=end, first_test=first_test,
                            retrain_months=retrain_months, feature_set=feature_set,
                            rounds=rounds, seed=seed)
        cli_app.check_choice("--feature-norm", feature_norm, ("cs", "global"))
        cfg = cli_app.with_cluster(cli_app.cfg(), cluster)      # before any data loads
    except cli_app.AlphamineError as e:
        cli_app.fail(e)
    over = dict(universe=universe, start=start, last_test=end, first_test=first_test,
                retrain_months=retrain_months, feature_set=feature_set, rounds=rounds,
                seed=seed, feature_norm=feature_norm, preset=preset)
    run_model_cli("lgbm", over, submit=submit, as_json=as_json, render=_render,
                  argv=cli_app.invocation(ctx), cfg=cfg)


def _render(run) -> None:
    console = cli_app.console
    console.print(_summary_table(run))
    console.print(_oos_table(run))
    if run.leaderboard:
        console.print(_candidates_table(run))
    if run.shap:
        top = ", ".join(f"{n} {v:.4f}" for n, v in run.shap["top_features"][:8])
        ex = run.shap.get("explained", {})
        where = f" ({ex['model']}, rows {ex['shap_rows']})" if ex else ""
        console.print(f"SHAP mean |value| top{escape(where)}: {escape(top)}")
    tm = run.timings
    where = (f"formula model(\"{run.run_id}\")" if run.leaderboard else
             "not submitted to the leaderboard (--submit to do so)")
    console.print(f"run {run.run_id}: dataset {tm['dataset_s']:.0f}s, training "
                  f"{tm['train_s']:.0f}s, total {tm['total_s']:.0f}s "
                  f"({tm['cpu_s']:.0f}s CPU); predictions {escape(run.pred_path)}; {where}")


# `mine model transformer` lives in its own module (torch is an optional extra)
from mining.cli_transformer import transformer as _transformer  # noqa: E402

model_app.command("transformer")(_transformer)

cli_app.app.add_typer(model_app, name="model")
