"""Benchmark helper: "plain gplearn", the GP setup a user would write without alphamine.

gplearn's own :class:`~gplearn.genetic.SymbolicRegressor` with its built-in function set, fed
a long (date x stock) frame of the same fields over the same train rows (eligible names with
finite fields and label; gplearn rejects NaN), target = the horizon-1 label, fitness = |mean
daily RankIC| computed the obvious pandas way: a DataFrame groupby on date with
``.corr(method="spearman")``.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from gplearn.fitness import make_fitness
from gplearn.genetic import SymbolicRegressor
from timing import Took, timed

#: gplearn's built-in functions (no time-series or cross-sectional operators exist there).
BUILTIN_FUNCTIONS = ("add", "sub", "mul", "div", "sqrt", "log", "abs", "neg", "inv", "max",
                     "min")


def long_frame(panels: dict[str, np.ndarray], ctx, split: str = "train", h: int = 1
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, date codes) of the split's eligible rows with all fields and the label finite."""
    lo, hi = ctx.split_bounds(split)
    names = list(panels)
    ok = ctx.eligible[lo:hi] & np.isfinite(ctx.fwd[h][lo:hi])
    for n in names:
        ok &= np.isfinite(panels[n][lo:hi])
    X = np.column_stack([panels[n][lo:hi][ok] for n in names])
    y = ctx.fwd[h][lo:hi][ok]
    day = np.broadcast_to(np.arange(hi - lo)[:, None], ok.shape)[ok]
    return X, y, day


def run_plain_gplearn(X: np.ndarray, y: np.ndarray, day: np.ndarray, population: int,
                      generations: int, seed: int = 1) -> tuple[Took, int, float]:
    """Fit plain gplearn; return (time, programs scored, best |mean daily RankIC|)."""

    def mean_daily_rank_ic(y_true, y_pred, w):
        if len(y_true) != len(day):  # make_fitness' own sanity call with a short vector
            return 0.0
        df = pd.DataFrame({"day": day, "pred": y_pred, "y": y_true})
        c = df.groupby("day")[["pred", "y"]].corr(method="spearman")
        ic = c.xs("pred", level=1)["y"].mean()
        return float(abs(ic)) if np.isfinite(ic) else 0.0

    metric = make_fitness(function=mean_daily_rank_ic, greater_is_better=True, wrap=False)
    est = SymbolicRegressor(population_size=population, generations=generations,
                            tournament_size=min(10, population), stopping_criteria=np.inf,
                            function_set=BUILTIN_FUNCTIONS, metric=metric,
                            init_depth=(2, 4), parsimony_coefficient=0.0002, max_samples=1.0,
                            n_jobs=1, verbose=0, random_state=seed)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        took, _ = timed(lambda: est.fit(X, y))
    best = max(p.raw_fitness_ for p in est._programs[-1] if p is not None)
    return took, population * generations, float(best)
