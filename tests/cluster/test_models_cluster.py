"""Walk-forward LightGBM folds as tasks on the local Ray cluster: the out-of-sample
predictions and saved boosters are identical to fitting the folds here."""
from __future__ import annotations

import numpy as np
import pandas as pd

from models.dataset import PanelDataset
from models.lgbm import lgbm_params, run_walk_forward
from models.walkforward import walk_forward


def _dataset(T=240, N=25, F=6, seed=0) -> PanelDataset:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, N, F)).astype(np.float32)
    y = (0.5 * X[..., 0] - 0.3 * X[..., 2] + rng.standard_normal((T, N))).astype(np.float32)
    umask = np.ones((T, N), bool)
    umask[:, -1] = False
    sample = umask & (rng.random((T, N)) > 0.05)
    y[~sample] = np.nan
    return PanelDataset(dates=pd.bdate_range("2015-01-01", periods=T),
                        codes=pd.Index([f"{600000 + i:06d}.SH" for i in range(N)]),
                        features=X, feature_names=[f"f{i}" for i in range(F)], label=y,
                        sample_mask=sample, horizon=1, universe_mask=umask)


def test_folds_on_the_cluster_match_local(ray_executor, tmp_path):
    ds = _dataset()
    folds = walk_forward(ds.dates, "2015-07-01", "2015-11-30", retrain_months=2,
                         valid_months=2, embargo=2, horizon=1)
    kw = dict(params=lgbm_params(seed=3, num_leaves=15, learning_rate=0.1, lambda_l1=0.0,
                                 lambda_l2=0.0, num_threads=1),
              num_boost_round=30, early_stopping_rounds=5)
    local = run_walk_forward(ds, folds, model_dir=tmp_path / "local", **kw)
    puts = ray_executor.n_puts
    remote = run_walk_forward(ds, folds, model_dir=tmp_path / "ray", executor=ray_executor,
                              **kw)
    assert ray_executor.n_puts - puts == 4            # features, label, 2 masks: once per run
    assert len(folds) >= 2
    assert local.pred.tobytes() == remote.pred.tobytes()
    assert [f.best_iteration for f in local.fits] == [f.best_iteration for f in remote.fits]
    for a, b in zip(local.model_paths, remote.model_paths):
        assert a.read_text() == b.read_text()
    assert np.isfinite(remote.pred[folds[0].test][ds.universe_mask[folds[0].test]]).all()
