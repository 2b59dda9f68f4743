"""``mine eval --file``: option checks and the one-row-per-formula table (library:
:func:`mining.formula_batch.evaluate_batch`)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.markup import escape
from rich.table import Table

from data.errors import AlphamineError, ConfigError
from mining.cli_app import cfg as _cfg
from mining.cli_app import (with_cluster, check_universe, config_keys, config_line, console, fail, fmt,
                            print_json, warn)

#: Metrics shown per split (``--json`` has every metric of ``mine eval``).
COLUMNS = (("rank_ic_mean", "RankIC"), ("rank_icir", "ICIR"), ("rank_ic_t", "t"),
           ("ls_sharpe", "LS Sharpe"), ("turnover", "turnover"), ("coverage", "coverage"))


def eval_file(formula: Optional[str], file: Optional[Path], universe: str, as_json: bool,
              jobs: Optional[int], *, start, end, add: bool, save, unseal_test: bool,
              cluster: Optional[str] = None) -> None:
    """Validate, evaluate every formula of ``file``, render (exit 2 on bad input)."""
    from mining.formula_batch import evaluate_batch, read_formula_file
    try:
        if file is None:
            raise ConfigError("--jobs and --cluster apply to --file only")
        clash = [o for o, v in (("FORMULA", formula), ("--add", add), ("--save", save),
                                ("--unseal-test", unseal_test), ("--start", start),
                                ("--end", end)) if v]
        if clash:
            raise ConfigError(f"--file evaluates train and valid of the default window: drop "
                              f"{', '.join(clash)}")
        if jobs is not None and jobs < -1:
            raise ConfigError(f"--jobs must be >= 1, or 0 / -1 for all cores, got {jobs}")
        check_universe("--universe", universe)
        formulas = read_formula_file(file)
        cfg = with_cluster(_cfg(), cluster)             # before any data loads
        n_jobs = cfg.gp.n_jobs if jobs is None else jobs
        if not as_json:
            console.print(f"[dim]{escape(config_line(cfg))}[/]", soft_wrap=True)
        res = evaluate_batch(cfg, formulas, universe, n_jobs=n_jobs, executor=cfg.gp.executor)
    except AlphamineError as e:
        fail(e)
    for w in res.warnings:
        warn(w)
    if as_json:
        print_json({**config_keys(cfg), "universe": res.universe, "horizon": res.horizon,
                    "executor": res.executor, "workers": res.n_workers, "memo": res.memo,
                    "seconds": res.seconds, "rows": [r.to_dict() for r in res.rows]})
        return
    t = Table(title=f"{len(res.rows)} formulas ({universe}, horizon {res.horizon})")
    t.add_column("line", justify="right")
    t.add_column("formula", overflow="fold")
    for split in ("train", "valid"):
        for _, label in COLUMNS:
            t.add_column(f"{split} {label}", justify="right")
    for r in res.rows:
        m = r.metrics()
        cells = [fmt((m.get(s) or {}).get(k)) for s in ("train", "valid") for k, _ in COLUMNS]
        if r.error is not None:
            cells = [f"[red]{escape(r.error)}[/]"] + [""] * (len(cells) - 1)
        t.add_row(str(r.line), escape(r.formula), *cells)
    console.print(t)
    console.print(f"[dim]{res.executor} x {res.n_workers} in {res.seconds:.1f} s; test split "
                  f"sealed; each evaluated formula counted as a trial.[/]")
