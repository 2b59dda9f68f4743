"""Benchmark (not a test): dataset build + LightGBM training on CSI300 x Alpha158-style features.

    python bench/model_bench.py [--start 2010-01-01 --train-end 2017-12-31 --valid-end 2018-12-31
                                 --rounds 100 --feature-set alpha158 --threads 2]

Reports, each as wall seconds and process CPU seconds:

1. workspace load and :func:`models.dataset.build_dataset` (all features through the factor
   language, robust z-score, ranked label) on the train + valid window;
2. alphamine's training path: ``PanelDataset.arrays`` (train / valid rows) + :func:`models.lgbm.
   fit_lgbm` (LightGBM Dataset construction, per-round valid l2 and mean daily IC, history);
3. raw LightGBM on the same arrays: ``lgb.train(params, lgb.Dataset(X, y), valid_sets=[...])``
   with the same parameters and the same number of rounds (early stopping disabled in both so
   the work is identical);

and the overhead ratio ``(2) / (3) - 1`` (goal <= 20%). The machine is shared: compare the CPU
columns when the load average is high.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backtest.candidates import make_workspace  # noqa: E402
from mining.cli_app import load as load_config  # noqa: E402
from models.dataset import build_dataset  # noqa: E402
from models.lgbm import fit_lgbm, lgbm_params  # noqa: E402


class Timer:
    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *a):
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--universe", default="csi300")
    ap.add_argument("--start", default="2010-01-01")
    ap.add_argument("--train-end", default="2017-12-31")
    ap.add_argument("--valid-end", default="2018-12-31")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--feature-set", default="alpha158")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="training repetitions (best kept)")
    a = ap.parse_args()
    import lightgbm as lgb
    cfg = load_config()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; lightgbm "
          f"{lgb.__version__}")
    with Timer() as t_ws:
        ws = make_workspace(cfg, a.universe, a.start, a.valid_end)
    with Timer() as t_ds:
        ds = build_dataset(ws, a.feature_set)
    T, N, F = ds.shape
    print(f"workspace: {N} stocks x {T} days: {t_ws.wall:.1f}s wall / {t_ws.cpu:.1f}s CPU")
    print(f"dataset build ({F} features, {int(ds.sample_mask.sum())} usable rows): "
          f"{t_ds.wall:.1f}s wall / {t_ds.cpu:.1f}s CPU")
    lo = int(ds.dates.searchsorted(np.datetime64(a.train_end), side="right"))
    train, valid = slice(0, lo - 2), slice(lo, len(ds.dates) - 2)   # embargo 2 rows
    params = lgbm_params(seed=42, num_threads=a.threads)
    best_ours = best_raw = (np.inf, np.inf)
    for _ in range(a.repeat):
        with Timer() as t_ours:
            X, y, _, _ = ds.arrays(train)
            Xv, yv, tv, _ = ds.arrays(valid)
            fit = fit_lgbm(X, y, Xv, yv, tv, params=params, num_boost_round=a.rounds,
                           early_stopping_rounds=a.rounds + 1, feature_names=ds.feature_names)
        with Timer() as t_raw:
            dtrain = lgb.Dataset(X, label=y)
            booster = lgb.train(params, dtrain, num_boost_round=a.rounds,
                                valid_sets=[lgb.Dataset(Xv, label=yv, reference=dtrain)])
        best_ours = min(best_ours, (t_ours.wall, t_ours.cpu))
        best_raw = min(best_raw, (t_raw.wall, t_raw.cpu))
    assert booster.current_iteration() == len(fit.history["l2"]) == a.rounds
    pr = booster.predict(Xv[:5000])
    po = fit.booster.predict(Xv[:5000], num_iteration=a.rounds)
    agree = (f"max |diff| {np.abs(pr - po).max():.2e}, corr {np.corrcoef(pr, po)[0, 1]:.4f} on "
             f"5000 valid rows")
    print(f"training rows: train {len(y)}, valid {len(yv)} x {F} features, {a.rounds} rounds, "
          f"{a.threads} threads")
    print(f"alphamine (arrays + fit_lgbm with per-round IC): {best_ours[0]:.1f}s wall / "
          f"{best_ours[1]:.1f}s CPU")
    print(f"raw lightgbm (lgb.train on the same arrays):     {best_raw[0]:.1f}s wall / "
          f"{best_raw[1]:.1f}s CPU")
    print(f"overhead: {100 * (best_ours[0] / best_raw[0] - 1):+.1f}% wall, "
          f"{100 * (best_ours[1] / best_raw[1] - 1):+.1f}% CPU (goal <= 20%)")
    print(f"predictions alphamine vs raw: {agree}")
    print(f"end to end (dataset + alphamine training): {t_ds.wall + best_ours[0]:.1f}s wall")


if __name__ == "__main__":
    main()
