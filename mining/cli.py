"""The ``mine`` console script (typer + rich). The only place that prints."""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from data.config import Config, load_config
from data.errors import AlphamineError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="alphamine: factor mining and evaluation for Chinese A-shares.")
console = Console()
err_console = Console(stderr=True)

_STATE: dict = {"config_path": None}


@app.callback()
def _main(config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Path to mine.toml (default: ./mine.toml).")) -> None:
    _STATE["config_path"] = config


def _cfg() -> Config:
    return load_config(_STATE["config_path"])


def _fail(e: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {escape(str(e))}")
    raise typer.Exit(2)


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


# --------------------------------------------------------------------------- ops / fields
@app.command()
def ops(kind: Optional[str] = typer.Option(None, help="elementwise | ts | cs")) -> None:
    """List the factor language's operators with their one-line docs."""
    from factors.operators import all_ops
    t = Table(title="operators")
    t.add_column("signature", no_wrap=True)
    for col in ("kind", "min window", "GP windows", "doc"):
        t.add_column(col)
    for op in all_ops():
        if kind and op.kind != kind:
            continue
        t.add_row(escape(op.signature + (f"  [{op.infix}]" if op.infix else "")), op.kind,
                  str(op.min_window) if op.n_windows else "",
                  ",".join(map(str, op.gp_windows)) if op.gp else "not in GP", escape(op.doc))
    console.print(t)


@app.command()
def fields() -> None:
    """List the factor language's fields with units and derivation."""
    from data.fields import FIELDS
    t = Table(title="fields")
    t.add_column("name", no_wrap=True)
    for col in ("unit", "doc"):
        t.add_column(col)
    for f in FIELDS.values():
        t.add_row(f.name, escape(f.unit), escape(f.doc))
    console.print(t)


# --------------------------------------------------------------------------- eval
def _report_table(formula: str, reports: dict) -> Table:
    t = Table(title=formula)
    t.add_column("metric")
    for split in reports:
        t.add_column(split, justify="right")
    keys = ["n_days", "rank_ic_mean", "rank_ic_std", "rank_icir", "rank_ic_t", "rank_ic_pos",
            "ic_mean", "icir", "ls_ann_return", "ls_sharpe", "ls_cum_return", "ls_max_drawdown",
            "turnover", "rank_autocorr", "coverage"]
    dicts = {s: r.to_dict() for s, r in reports.items()}
    for k in keys:
        t.add_row(k, *[_fmt(d.get(k)) for d in dicts.values()])
    for h in (1, 5, 10, 20):
        t.add_row(f"rank_ic h={h}", *[_fmt((d.get("ic_decay") or {}).get(str(h),
                  (d.get("ic_decay") or {}).get(h))) for d in dicts.values()])
    q = [d.get("quantile_ann_returns") or [] for d in dicts.values()]
    t.add_row("quantile ann. ret (q1..qN)",
              *[" ".join(_fmt(v, 3) for v in qq) for qq in q])
    return t


@app.command("eval", context_settings={"ignore_unknown_options": True})
def eval_(formula: str = typer.Argument(..., help='Factor formula, e.g. "-ts_corr(vol, close, 10)"'),
          universe: str = typer.Option("csi300", help="csi300 | csi500 | csi800 | csi1000 | all"),
          start: Optional[str] = typer.Option(None, help="First date (default: train start)."),
          end: Optional[str] = typer.Option(None, help="Last date (default: end of valid)."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
          unseal_test: bool = typer.Option(
              False, "--unseal-test", help="Also evaluate the test split (recorded in the "
              "leaderboard if the formula is a member).")) -> None:
    """Evaluate one formula with the common evaluator, per split."""
    from factors.expr import parse
    from factors.store import FactorStore
    from mining.pipeline import evaluate_candidate, make_workspace
    try:
        cfg = _cfg()
        expr = parse(formula)
        splits = ("train", "valid", "test") if unseal_test else ("train", "valid")
        with console.status("loading data and evaluating...", spinner="dots") if not as_json \
                else _nullctx():
            ws = make_workspace(cfg, universe, start, end, include_test=unseal_test)
            ev = evaluate_candidate(ws, expr, splits=splits)
        if unseal_test:
            with FactorStore(cfg.store.path) as store:
                if store.get(str(expr), universe, cfg.evaluate.horizon) is not None:
                    store.record_test(str(expr), universe, cfg.evaluate.horizon,
                                      ev.reports["test"].to_dict())
    except AlphamineError as e:
        _fail(e)
        return
    if as_json:
        out = {"formula": str(expr), "universe": universe, "horizon": cfg.evaluate.horizon,
               "splits": ev.metrics(), "test_unsealed": unseal_test}
        print(json.dumps(out, indent=2, allow_nan=False, default=_json_default))
    else:
        console.print(_report_table(escape(str(expr)), ev.reports))
        if not unseal_test:
            console.print("[dim]test split sealed; pass --unseal-test to evaluate it "
                          "(recorded).[/]")


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _json_default(o):
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.integer):
        return int(o)
    return str(o)


# --------------------------------------------------------------------------- leaderboard
def _leaderboard_table(records, title: str = "leaderboard") -> Table:
    t = Table(title=title)
    for col in ("id", "name", "source", "formula", "train RankIC", "train ICIR", "valid RankIC",
                "valid ICIR", "valid LS Sharpe", "valid turnover", "tried"):
        t.add_column(col, overflow="fold")
    for r in records:
        tr, va = r.metrics.get("train", {}), r.metrics.get("valid", {})
        t.add_row(str(r.id), r.name, r.source, escape(r.formula), _fmt(tr.get("rank_ic_mean")),
                  _fmt(tr.get("rank_icir"), 3), _fmt(va.get("rank_ic_mean")),
                  _fmt(va.get("rank_icir"), 3), _fmt(va.get("ls_sharpe"), 2),
                  _fmt(va.get("turnover"), 3), str(r.n_tried))
    return t


@app.command()
def leaderboard(top: int = typer.Option(20, "--top", help="Rows to show."),
                sort: str = typer.Option("valid.rank_icir", help="split.metric, created_at, name"),
                universe: Optional[str] = typer.Option(None, help="Only this universe."),
                source: Optional[str] = typer.Option(None, help="library | gp | llm | model"),
                as_json: bool = typer.Option(False, "--json"),
                as_csv: bool = typer.Option(False, "--csv")) -> None:
    """Show the factor leaderboard."""
    from factors.store import FactorStore
    try:
        cfg = _cfg()
        with FactorStore(cfg.store.path) as store:
            recs = store.top(top, sort=sort, universe=universe, source=source)
            frame = store.to_frame(recs)
    except AlphamineError as e:
        _fail(e)
        return
    if as_json:
        print(frame.to_json(orient="records", indent=2))
    elif as_csv:
        sys.stdout.write(frame.to_csv(index=False))
    else:
        console.print(_leaderboard_table(recs, f"leaderboard (top {top} by {sort})"))


# --------------------------------------------------------------------------- library
@app.command()
def library(universe: str = typer.Option("csi300"),
            add: bool = typer.Option(False, "--add", help="Evaluate and store every library "
                                     "factor (source=library, no gate).")) -> None:
    """List the named factor library (and optionally evaluate + store it)."""
    from factors.library import LIBRARY, UNAVAILABLE
    t = Table(title="factor library")
    for col in ("name", "formula", "description"):
        t.add_column(col, overflow="fold")
    for f in LIBRARY:
        t.add_row(f.name, escape(f.formula), escape(f.description))
    for name, why in UNAVAILABLE.items():
        t.add_row(name, "[dim]unavailable[/]", why)
    console.print(t)
    if not add:
        return
    from factors.store import FactorStore
    from mining.pipeline import evaluate_candidate, make_workspace, submit
    try:
        cfg = _cfg()
        ws = make_workspace(cfg, universe)
        with FactorStore(cfg.store.path) as store:
            run_id = store.start_run("library", config={}, seed=None, universe=universe,
                                     data_root=str(cfg.data.root))
            for f in LIBRARY:
                ev = evaluate_candidate(ws, f.formula)
                d = submit(ws, store, ev, name=f.name, source="library", cfg=cfg,
                           provenance={"run_id": run_id, "reference": f.reference},
                           n_tried=len(LIBRARY), description=f.description, force=True)
                console.print(f"{f.name}: valid RankIC "
                              f"{_fmt(ev.reports['valid'].rank_ic_mean)} -> {d.reason}")
            store.finish_run(run_id, n_tried=len(LIBRARY))
    except AlphamineError as e:
        _fail(e)


# --------------------------------------------------------------------------- gp
@app.command()
def gp(universe: Optional[str] = typer.Option(None, help="Universe (default from mine.toml)."),
       start: Optional[str] = typer.Option(None, help="First date of GP data."),
       end: Optional[str] = typer.Option(None, help="Last date evaluated (default: end of "
                                         "valid; GP fitness only ever sees train)."),
       population: Optional[int] = typer.Option(None),
       generations: Optional[int] = typer.Option(None),
       seed: Optional[int] = typer.Option(None),
       n_jobs: Optional[int] = typer.Option(None, "--n-jobs"),
       top: Optional[int] = typer.Option(None, help="At most this many factors are added: "
                                         "distinct programs go through the evaluator and the "
                                         "gate in train-fitness order.")) -> None:
    """Mine factors by genetic programming (gplearn) on the real data."""
    from factors.store import FactorStore
    from mining.gp import GPSettings, run_gp
    from mining.pipeline import evaluate_candidate, make_workspace, submit
    try:
        cfg = _cfg()
        g = cfg.gp
        g = replace(g, **{k: v for k, v in dict(
            universe=universe, start=start, population=population, generations=generations,
            seed=seed, n_jobs=n_jobs, top=top).items() if v is not None})
        t0 = time.perf_counter()
        with console.status(f"loading {g.universe} panels...", spinner="dots"):
            ws = make_workspace(cfg, g.universe, g.start, end)
            ws.load(g.fields)
            gp_ctx = ws.ctx.restrict(ws.ctx.dates[0], cfg.evaluate.train[1])
            n_train = len(gp_ctx.dates)
            panels = {f: ws.field(f)[:n_train] for f in g.fields}
        console.print(f"[bold]{g.universe}[/]: {len(ws.ctx.codes)} stocks x {n_train} train days "
                      f"({ws.ctx.dates[0].date()} .. {gp_ctx.dates[-1].date()}), fields "
                      f"{', '.join(g.fields)}; loaded in {time.perf_counter() - t0:.1f}s")
        settings = GPSettings(population=g.population, generations=g.generations,
                              tournament_size=g.tournament_size, parsimony=g.parsimony,
                              max_depth=g.max_depth, seed=g.seed, n_jobs=g.n_jobs)
        store = FactorStore(cfg.store.path)
        run_cfg = {"gp": {k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in asdict(g).items()},
                   "evaluate": {k: (list(v) if isinstance(v, tuple) else v)
                                for k, v in asdict(cfg.evaluate).items()}}
        run_id = store.start_run("gp", config=run_cfg, seed=g.seed, universe=g.universe,
                                 data_root=str(cfg.data.root))
        try:
            with Progress(TextColumn("[bold]GP[/] gen {task.completed}/{task.total}"),
                          BarColumn(), TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                          console=console) as progress:
                task = progress.add_task("gp", total=g.generations, stats="")

                def on_gen(s) -> None:
                    stats = (f"train |RankIC|xcov best {s.best:.4f} median {s.median:.4f} "
                             f"({s.seconds:.0f}s)")
                    progress.update(task, advance=1, stats=stats)
                    if not console.is_terminal:  # logs get one line per generation
                        progress.console.print(f"gen {s.generation}/{g.generations}: {stats}  "
                                               f"best {escape(s.best_formula)}")

                res = run_gp(panels, gp_ctx, settings, on_generation=on_gen)
            console.print(f"scored {res.n_programs_scored} programs "
                          f"({len(res.candidates)} distinct) in {res.seconds:.0f}s "
                          f"= {res.n_programs_scored / res.seconds:.1f}/s")
            # Walk down the distinct programs in train-fitness order (selection on train only)
            # until `top` pass the gate or the evaluation budget is spent.
            n_acc = n_eval = 0
            rejections: dict[str, int] = {}
            budget = max(5 * g.top, 50)
            for rank, (expr, fit) in enumerate(res.candidates):
                if n_acc >= g.top or n_eval >= budget:
                    break
                n_eval += 1
                ev = evaluate_candidate(ws, expr, orient=True)
                gen = next((i + 1 for i, s in enumerate(res.generations)
                            if s.best_formula == str(expr)), None)
                d = submit(ws, store, ev, name=f"gp_{run_id[-6:]}_{rank:02d}", source="gp",
                           cfg=cfg, n_tried=len(res.candidates), provenance={
                               "run_id": run_id, "seed": g.seed, "train_fitness": fit,
                               "generation_best": gen, "rank": rank,
                               "config": run_cfg, "data_root": str(cfg.data.root)})
                n_acc += d.accepted
                if d.accepted:
                    va = ev.reports["valid"]
                    console.print(f"  [green]accepted[/] #{rank} train RankIC "
                                  f"{_fmt(ev.reports['train'].rank_ic_mean)} valid RankIC "
                                  f"{_fmt(va.rank_ic_mean)}  {escape(ev.formula)}")
                else:
                    rejections[d.kind] = rejections.get(d.kind, 0) + 1
            console.print(f"evaluated {n_eval} programs: {n_acc} accepted, rejected "
                          + (", ".join(f"{v} {k}" for k, v in rejections.items()) or "none"))
            store.finish_run(run_id, n_tried=len(res.candidates), summary={
                "n_programs_scored": res.n_programs_scored, "n_accepted": n_acc,
                "n_evaluated": n_eval, "rejections": rejections,
                "seconds": time.perf_counter() - t0,
                "generations": [asdict(s) for s in res.generations]})
        except KeyboardInterrupt:
            store.finish_run(run_id, n_tried=0, status="interrupted")
            raise
        recs = store.top(g.top, sort="valid.rank_icir", universe=g.universe)
        console.print(_leaderboard_table(recs, f"leaderboard ({g.universe}, by valid RankICIR)"))
        console.print(f"run {run_id}: {n_acc} accepted of {n_eval} evaluated "
                      f"({len(res.candidates)} distinct programs tried), "
                      f"{time.perf_counter() - t0:.0f}s total")
        store.close()
    except AlphamineError as e:
        _fail(e)


# --------------------------------------------------------------------------- other producers
# Each capability registers its commands on ``app`` from its own module.
from mining import cli_backtest, cli_export, cli_llm, cli_model  # noqa: E402

for _mod in (cli_backtest, cli_export, cli_llm, cli_model):
    _mod.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
