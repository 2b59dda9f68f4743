"""Fixed-seed GP runs whose results were recorded at the commit before batch fitness (issue 15).

``python tests/mining/gp_golden.py`` rewrites ``data/gp_golden.json``; it was run once on the
serial engine (program-by-program scoring) so the batch engine must reproduce it exactly.
The ``max_corr`` and ``marginal`` cases were recorded again on 2026-12-01, when the diversity
hook's dot products and least-squares solve moved from BLAS / LAPACK to fixed-order kernels
(:mod:`mining.gp_linalg`): BLAS summed in a CPU-dependent order, so those two cases differed in
the last bits between AVX2 and AVX-512 hosts (and ``max_corr`` then evolved differently). The
file is now the same whichever OpenBLAS kernel runs (checked with ``OPENBLAS_CORETYPE=Haswell``
and SkylakeX); ``tournament`` and ``nsga2`` are unchanged since the first recording.
"""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from factors.expr_tree import Field  # noqa: E402
from factors.operators import get_op  # noqa: E402
from mining.gp import GPSettings  # noqa: E402
from mining.gp_diversity import Diversity  # noqa: E402
from mining.gp_engine import evolve  # noqa: E402

GOLDEN = Path(__file__).with_name("data") / "gp_golden.json"
BASE = GPSettings(population=60, generations=3, seed=7, max_depth=3, elite=4)
CASES = {"tournament": {}, "nsga2": {"selection": "nsga2"},
         "max_corr": {"diversity": "max_corr"}, "marginal": {"diversity": "marginal"}}


def data(seed: int = 0):
    """A small context and close / vol / ret panels (the label is ``-ts_mean(ret, 5)``+noise)."""
    import pandas as pd

    from backtest.context import EvalContext
    T, N = 160, 30
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=T)
    codes = pd.Index([f"{600000 + i}.SH" for i in range(N)])
    ret = rng.normal(0, 0.02, (T, N))
    close = 10 * np.exp(np.cumsum(ret, axis=0))
    vol = rng.lognormal(10, 1, (T, N))
    planted = -get_op("ts_mean").apply([ret], (5,))
    fwd = 0.01 * np.nan_to_num(planted / 0.01) + rng.normal(0, 0.01, (T, N))
    opn = np.full((T, N), 10.0)
    for t in range(T - 2):
        opn[t + 2] = opn[t + 1] * (1 + fwd[t])
    ctx = EvalContext.from_arrays(dates, codes, opn, np.ones((T, N), bool), np.ones((T, N), bool),
                                  splits={"train": (dates[0], dates[109]),
                                          "valid": (dates[115], dates[-1])},
                                  horizons=(1,), horizon=1, embargo=2)
    return ctx, {"close": close, "vol": vol, "ret": ret}, planted


def run(case: str, **kw):
    """The GPResult of ``case`` (extra keyword arguments go to ``evolve``)."""
    ctx, panels, planted = data()
    opts = dict(CASES[case])
    mode = opts.pop("diversity", None)
    div = None
    if mode is not None:
        div = Diversity(ctx, {"planted": planted}, n_dates=20, hof=5, mode=mode)
    settings = replace(BASE, **opts)
    return evolve({Field(k): v for k, v in panels.items()}, ctx, settings, diversity=div, **kw)


def record(res) -> dict:
    """Formulas, fitness (hex floats, exact) and the generation summaries of a result."""
    return {"candidates": [[str(e), float(f).hex()] for e, f in res.candidates],
            "generations": [[g.best_formula, float(g.best).hex(), float(g.median).hex()]
                            for g in res.generations],
            "n_programs_scored": res.n_programs_scored}


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({c: record(run(c)) for c in CASES}, indent=0) + "\n")
    print(f"wrote {GOLDEN}")
