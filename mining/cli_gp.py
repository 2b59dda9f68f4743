"""``mine gp``: genetic-programming search, rendered (the run itself is
:func:`mining.gp_run.mine_gp`)."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from data.errors import AlphamineError, ConfigError
from data.procs import peak_rss_mb
from factors.parallel import LOCAL_KINDS
from factors.store import FactorStore
from mining.cli_app import (CLUSTER_HELP, with_cluster,
    app,
    check_choice,
    check_date,
    check_positive,
    check_range,
    check_span,
    check_universe,
    config_keys,
    config_line,
    console,
    fail,
    fmt,
    invocation,
    print_json,
)
from mining.cli_app import cfg as _cfg
from mining.cli_factors import print_leaderboard
from mining.gp import ENGINES, SELECTIONS, GPGeneration
from mining.gp_diversity import DIVERSITY_MODES
from mining.gp_seeds import SEED_SOURCES
from mining.gp_run import CandidateDecision, GPDone, GPLoaded, GPScored, mine_gp


class _Renderer:
    """Turns :func:`mine_gp` progress events into the spinner, the bar and the log lines."""

    def __init__(self, universe: str, generations: int):
        self.generations = generations
        self.status = console.status(f"loading {universe} panels...", spinner="dots")
        self.progress: Progress | None = None
        self.task = None

    def start(self) -> None:
        self.status.start()

    def stop(self) -> None:
        self.status.stop()
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def __call__(self, ev) -> None:
        if isinstance(ev, GPLoaded):
            self.status.stop()
            console.print(f"[bold]{ev.universe}[/]: {ev.n_stocks} stocks ({ev.n_train_stocks} "
                          f"of them in the universe in train) x {ev.n_train_days} train days "
                          f"({ev.first_date} .. {ev.last_train_date}), fields "
                          f"{', '.join(ev.fields)}; loaded in {ev.seconds:.1f}s")
            self.progress = Progress(
                TextColumn("[bold]GP[/] gen {task.completed}/{task.total}"), BarColumn(),
                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console)
            self.task = self.progress.add_task("gp", total=self.generations, stats="")
            self.progress.start()
        elif isinstance(ev, GPGeneration):
            stats = (f"train |RankIC|xcov best {ev.best:.4f} median {ev.median:.4f} "
                     f"({ev.seconds:.0f}s)")
            if self.progress is not None:
                self.progress.update(self.task, advance=1, stats=stats)
                if not console.is_terminal:  # logs get one line per generation
                    self.progress.console.print(
                        f"gen {ev.generation}/{self.generations}: {stats}  "
                        f"best {escape(ev.best_formula)}", soft_wrap=True)
        elif isinstance(ev, GPScored):
            if self.progress is not None:
                self.progress.stop()
                self.progress = None
            rate = ev.n_programs_scored / ev.seconds if ev.seconds > 0 else float("nan")
            computed = (f", {ev.n_computed} computed = {ev.n_computed / ev.seconds:.1f}/s"
                        if ev.n_computed and ev.seconds > 0 else "")
            console.print(f"scored {ev.n_programs_scored} programs ({ev.n_distinct} distinct "
                          f"factors{computed}) in {ev.seconds:.0f}s = {rate:.1f}/s")
        elif isinstance(ev, CandidateDecision) and ev.accepted:
            console.print(f"  [green]accepted[/] #{ev.rank} train RankIC "
                          f"{fmt(ev.train_rank_ic)} valid RankIC {fmt(ev.valid_rank_ic)}  "
                          f"{escape(ev.formula)}", soft_wrap=True)
        elif isinstance(ev, GPDone):
            console.print(f"evaluated {ev.n_evaluated} programs: {ev.n_accepted} accepted, "
                          "rejected " + (", ".join(f"{v} {k}" for k, v in ev.rejections.items())
                                         or "none") + f"; skipped on train before valid: "
                          f"{ev.skipped_train_corr} correlated, {ev.skipped_duplicate} "
                          "duplicates")


@app.command()
def gp(ctx: typer.Context,
       universe: Optional[str] = typer.Option(None, help="Universe (default from mine.toml)."),
       start: Optional[str] = typer.Option(None, help="First date of GP data."),
       end: Optional[str] = typer.Option(None, help="Last date evaluated (default: end of "
                                         "valid; GP fitness only ever sees train)."),
       population: Optional[int] = typer.Option(None, help="Programs per generation, >= 1 "
                                                "(default [gp] population)."),
       generations: Optional[int] = typer.Option(None, help="Generations, >= 1 (default "
                                                 "[gp] generations)."),
       seed: Optional[int] = typer.Option(None, help="Random seed, 0..2**32-1 (default [gp] "
                                          "seed)."),
       n_jobs: Optional[int] = typer.Option(None, "--jobs", "--n-jobs", help="Workers "
                                            "scoring programs: >= 1, or 0 / -1 for all cores "
                                            "(default [gp] n_jobs)."),
       executor: Optional[str] = typer.Option(None, help="alphamine engine's workers: auto, "
                                              "serial, threads or processes (default [gp] "
                                              "executor)."),
       cluster: Optional[str] = typer.Option(None, "--cluster", metavar="ADDRESS",
                                             help=CLUSTER_HELP + " Each generation's programs "
                                             "are scored there instead of by --executor."),
       top: Optional[int] = typer.Option(None, help="At most this many factors are added, "
                                         ">= 1: distinct programs go through the evaluator "
                                         "and the gate in train-fitness order."),
       engine: Optional[str] = typer.Option(None, help="Search engine: alphamine (own GP "
                                            "engine) | gplearn (default [gp] engine)."),
       selection: Optional[str] = typer.Option(None, help="alphamine engine's selection: "
                                               "tournament | nsga2 (default [gp] "
                                               "selection)."),
       seed_from: Optional[str] = typer.Option(None, "--seed-from", help="Warm start from: "
                                               "leaderboard, library, both or none (default "
                                               "[gp] seed_from)."),
       diversity: Optional[str] = typer.Option(None, help="Diversity penalty vs members and "
                                               "hall of fame: max_corr, marginal or none "
                                               "(default [gp] diversity)."),
       as_json: bool = typer.Option(False, "--json", help="Print the run record as JSON "
                                    "(no progress output).")) -> None:
    """Mine factors by genetic programming (alphamine's engine or gplearn) on the real data."""
    try:
        check_universe("--universe", universe)
        start, end = check_date("--start", start), check_date("--end", end)
        check_span("--start", start, "--end", end)
        for name, v in (("--population", population), ("--generations", generations),
                        ("--top", top)):
            check_positive(name, v)
        check_range("--seed", seed, 0, 2**32 - 1)
        check_choice("--engine", engine, ENGINES)
        check_choice("--selection", selection, SELECTIONS)
        check_choice("--seed-from", seed_from, SEED_SOURCES)
        check_choice("--diversity", diversity, DIVERSITY_MODES)
        if n_jobs is not None and n_jobs < -1:
            raise ConfigError(f"--jobs must be >= 1, or 0 / -1 for all cores, got {n_jobs}")
        check_choice("--executor", executor, LOCAL_KINDS)
        cfg = with_cluster(_cfg(), cluster)             # before any data loads
        g = replace(cfg.gp, **{k: v for k, v in dict(
            universe=universe, start=start, population=population, generations=generations,
            seed=seed, n_jobs=n_jobs, top=top, engine=engine, selection=selection,
            seed_from=seed_from, diversity=diversity, executor=executor).items()
            if v is not None})
    except AlphamineError as e:
        fail(e)
    if as_json:
        try:
            rec = mine_gp(cfg, g, end=end, argv=invocation(ctx))
        except AlphamineError as e:
            fail(e)
        print_json({**config_keys(cfg), **_record_json(rec), "peak_rss_mb": peak_rss_mb()})
        return
    console.print(f"[dim]{escape(config_line(cfg))}[/]", soft_wrap=True)
    render = _Renderer(g.universe, g.generations)
    render.start()
    try:
        rec = mine_gp(cfg, g, end=end, on_progress=render, argv=invocation(ctx))
    except AlphamineError as e:
        render.stop()
        fail(e)
    finally:
        render.stop()
    if rec.leaderboard:
        print_leaderboard(rec.leaderboard, f"leaderboard ({g.universe}, by valid RankICIR)")
    console.print(f"run {rec.run_id}: {rec.n_accepted} accepted of {rec.n_evaluated} evaluated "
                  f"({rec.n_distinct} distinct programs tried; {rec.skipped_train_corr} "
                  f"train-correlated and {rec.skipped_duplicate} duplicates skipped; engine "
                  f"{rec.engine}, {rec.n_seeds} seeds), {rec.seconds:.0f}s total")


def _record_json(rec) -> dict:
    out = {k: getattr(rec, k) for k in rec.__dataclass_fields__ if k != "leaderboard"}
    out["leaderboard"] = json.loads(FactorStore.to_frame(rec.leaderboard)
                                    .to_json(orient="records"))
    return out
