"""`mining.gp_search.warm_up` loads every numba specialisation a GP run then uses.

Run in a fresh interpreter (this test process has loaded kernels already): after
``warm_up()``, a GP search on another synthetic panel (other shape, masked names, all default
fields, diversity hook) adds no specialisation to any numba dispatcher."""
from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import gc
    import numpy as np, pandas as pd
    from numba.core.registry import CPUDispatcher
    from mining.gp_search import warm_up

    def loaded():
        return {id(d): (d.py_func.__qualname__, len(d.overloads)) for d in gc.get_objects()
                if isinstance(d, CPUDispatcher)}

    warm_up()
    before = loaded()
    from backtest.context import EvalContext
    from mining.gp import GPSettings, terminal
    from mining.gp_engine import evolve
    from mining.gp_diversity import Diversity
    T, N = 120, 30
    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2010-01-01", periods=T)
    px = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    mask = rng.random((T, N)) < 0.9
    ctx = EvalContext.from_arrays(dates, [f"{600000 + i}.SH" for i in range(N)], px, mask,
                                  mask, {"train": (str(dates[0].date()), str(dates[-1].date()))},
                                  horizons=(1,), horizon=1, embargo=2)
    s = GPSettings(population=300, generations=2, seed=1)
    panels = {f: px * rng.lognormal(0, 0.1, (T, N)) for f in s.fields}
    evolve({terminal(k): v for k, v in panels.items()}, ctx, s, split="train",
           diversity=Diversity(ctx, {"close": panels["close"]}, n_dates=20, hof=5))
    after = loaded()
    print(sum(1 for _, n in before.values() if n), sum(n for _, n in before.values()))
    for k, (name, n) in after.items():
        if n > before.get(k, (name, 0))[1]:
            print("NEW", name, before.get(k, (name, 0))[1], n)
''')


def test_warm_up_loads_every_kernel_specialisation_a_gp_search_uses():
    p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.strip().splitlines()
    n_dispatchers, n_loaded = map(int, lines[0].split())    # kernels with a specialisation
    assert n_dispatchers >= 20 and n_loaded > n_dispatchers
    assert [ln for ln in lines[1:] if ln.startswith("NEW")] == []
