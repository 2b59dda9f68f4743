"""Transformer return model (models/transformer.py) and its sequence sampler (models/seq.py).

Tiny synthetic PanelDatasets; torch tests skip when the optional extra is missing.
"""
from __future__ import annotations

import json
import os

# before torch is first imported: libgomp reads it at load time. With active spinning, 2 torch
# threads on a machine whose cores are busy ran ~10x slower (see models/transformer.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from data.errors import ConfigError
from factors.errors import EvaluationError, StoreError
from models.dataset import PanelDataset
from models.seq import (
    date_batches,
    gather_windows,
    has_data_mask,
    path_targets,
    usable_samples,
)
from models.transformer_net import TransformerConfig


def make_ds(T=120, N=24, F=5, seed=0, signal=1.0, noise=1.0, lag_feature=True):
    """Label = feature 0 today (+ feature 1 three days ago) + noise, ranked to [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, N, F)).astype(np.float32)
    valid = np.ones((T, N, F), dtype=bool)
    X[:15, 0] = 0.0                         # stock 0 not listed for the first 15 days
    valid[:15, 0] = False
    raw = signal * X[:, :, 0] + noise * rng.standard_normal((T, N))
    if lag_feature:
        raw[3:] += 0.5 * signal * X[:-3, :, 1]
    mask = valid.any(axis=2).copy()
    mask[-2:] = False                       # no label on the last rows
    ranks = np.argsort(np.argsort(np.where(mask, raw, np.inf), axis=1), axis=1)
    m = mask.sum(axis=1, keepdims=True)
    lab = np.where(mask, ranks / np.maximum(m - 1, 1) - 0.5, np.nan).astype(np.float32)
    return PanelDataset(dates=pd.bdate_range("2020-01-01", periods=T),
                        codes=pd.Index([f"{600000 + i:06d}.SH" for i in range(N)]),
                        features=X, feature_names=[f"f{k}" for k in range(F)], label=lab,
                        sample_mask=mask, horizon=1, feature_valid=valid,
                        universe_mask=np.ones((T, N), dtype=bool))


SMALL = dict(seq_len=6, d_model=16, n_heads=2, d_ff=32, epochs=3, dates_per_epoch=40,
             dates_per_batch=4, dropout=0.0)


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# ---------------------------------------------------------------- seq (numpy only)

def test_gather_windows_values_and_padding():
    ds = make_ds(T=30, N=4, F=3)
    hd = has_data_mask(ds)
    t = np.array([2, 20, 29])
    i = np.array([1, 0, 3])
    x, pad = gather_windows(ds.features, t, i, 5, hd)
    assert x.shape == (3, 5, 3) and x.dtype == np.float32 and pad.shape == (3, 5)
    # sample at t=2 has rows -2, -1 before the data: padded and zeroed
    assert pad[0].tolist() == [True, True, False, False, False]
    assert np.all(x[0, :2] == 0)
    np.testing.assert_array_equal(x[0, 2:], ds.features[0:3, 1])
    np.testing.assert_array_equal(x[1], ds.features[16:21, 0])
    assert not pad[1].any()
    np.testing.assert_array_equal(x[2], ds.features[25:30, 3])
    # stock 0 has no data before row 15: window of (16, 0) pads rows 12..14
    x2, pad2 = gather_windows(ds.features, np.array([16]), np.array([0]), 5, hd)
    assert pad2[0].tolist() == [True, True, True, False, False]
    with pytest.raises(EvaluationError, match="seq_len"):
        gather_windows(ds.features, t, i, 0)


def test_gather_windows_nan_features_are_zero_and_padded_without_has_data():
    f = np.ones((6, 2, 2), dtype=np.float32)
    f[3, 1] = np.nan
    f[4, 1, 0] = np.nan
    x, pad = gather_windows(f, np.array([5]), np.array([1]), 4)
    assert pad[0].tolist() == [False, True, False, False]
    assert np.isfinite(x).all() and x[0, 2, 0] == 0 and x[0, 2, 1] == 1


def test_usable_samples_and_date_batches_cover_each_sample_once():
    rng = np.random.default_rng(1)
    mask = rng.random((40, 7)) < 0.6
    mask[5] = False
    t, i = usable_samples(mask, slice(0, 30))
    assert np.all(mask[t, i]) and t.size == mask[:30].sum()
    assert np.all(np.diff(t) >= 0)
    seen = np.concatenate([tt * 7 + ii for tt, ii in date_batches(mask, slice(0, 30), 3,
                                                                  rng=np.random.default_rng(0))])
    assert np.array_equal(np.sort(seen), np.sort(t * 7 + i))
    sub = list(date_batches(mask, slice(0, 30), 2, rng=np.random.default_rng(0), max_dates=5))
    assert sum(len(np.unique(tt)) for tt, _ in sub) == 5
    assert all(len(np.unique(tt)) <= 2 for tt, _ in sub)
    with pytest.raises(EvaluationError):
        usable_samples(mask, np.array([40]))


def test_path_targets_by_hand_and_truncation():
    o = np.array([[10.0], [10.0], [11.0], [9.9], [10.89], [12.0], [12.0]])
    sh, dd = path_targets(o, 3)
    # t = 0: path o[1..4] = 10, 11, 9.9, 10.89 -> returns 0.1, -0.1, 0.1
    r = np.array([0.1, -0.1, 0.1])
    assert sh[0, 0] == pytest.approx(r.mean() / r.std())
    assert dd[0, 0] == pytest.approx(0.1)               # 11 -> 9.9
    assert np.isnan(sh[-4:]).all() and np.isnan(dd[-4:]).all()
    # truncating prices at row 5 blanks every path that reaches row 5, keeps the others
    sh5, dd5 = path_targets(o, 3, end_row=5)
    assert sh5[0, 0] == sh[0, 0] and dd5[0, 0] == dd[0, 0]
    assert np.isnan(sh5[1:]).all() and np.isnan(dd5[1:]).all()
    sh1, dd1 = path_targets(o, 1)
    assert np.isnan(sh1).all() and dd1[1, 0] == pytest.approx(0.1)   # 11 -> 9.9
    with pytest.raises(EvaluationError):
        path_targets(o, 0)


# ---------------------------------------------------------------- config

def test_config_validation_and_dict_roundtrip():
    cfg = TransformerConfig(multitask=True, loss_weights=[1, 0.5, 0.5])
    assert TransformerConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.n_outputs == 3 and TransformerConfig().n_outputs == 1
    assert TransformerConfig().d_ff <= 128                  # never the PyTorch default 2048
    for bad in (dict(d_model=30, n_heads=4), dict(seq_len=0), dict(pooling="max"),
                dict(dropout=1.0), dict(loss_weights=(0, 1, 1)), dict(epochs=True)):
        with pytest.raises(ConfigError):
            TransformerConfig(**bad)
    with pytest.raises(ConfigError, match="unknown"):
        TransformerConfig.from_dict({"width": 3})


# ---------------------------------------------------------------- model

@pytest.mark.parametrize("multitask,pooling", [(False, "last"), (True, "mean")])
def test_forward_shapes(torch, multitask, pooling):
    from models.transformer_net import build_model
    cfg = TransformerConfig(**{**SMALL, "multitask": multitask, "pooling": pooling})
    model = build_model(5, cfg)
    x = torch.randn(7, cfg.seq_len, 5)
    pad = torch.zeros(7, cfg.seq_len, dtype=torch.bool)
    pad[0, :3] = True
    out = model(x, pad)
    assert out.shape == (7, 3 if multitask else 1)
    assert torch.isfinite(out).all()
    layer = model.encoder.layers[0]
    assert layer.linear1.out_features == cfg.d_ff and layer.self_attn.batch_first


def test_fit_learns_planted_signal(torch):
    from models.transformer import daily_rank_ic, fit, predict
    ds = make_ds(T=160, N=40, seed=3)
    cfg = TransformerConfig(**{**SMALL, "epochs": 4, "dates_per_epoch": 80})
    hist = []
    res = fit(ds, slice(0, 110), slice(114, 158), cfg, progress=hist.append)
    assert [h["epoch"] for h in hist] == list(range(1, len(hist) + 1))
    assert res.best_valid_ic > 0.3, res.history
    # the LR follows a cosine over the epochs (a valid schedule, T_max = epochs)
    assert hist[0]["lr"] == pytest.approx(cfg.lr)
    assert hist[1]["lr"] == pytest.approx(cfg.lr * 0.5 * (1 + np.cos(np.pi / cfg.epochs)))
    pred = predict(res.model, ds, slice(114, 158), cfg)
    assert np.isnan(pred[:114]).all()
    ic = daily_rank_ic(pred, ds.label, ds.sample_mask, slice(114, 158))
    assert np.nanmean(ic) == pytest.approx(res.best_valid_ic)


def test_fit_on_pure_noise_stays_near_zero(torch):
    from models.transformer import fit
    ds = make_ds(T=120, N=40, seed=4, signal=0.0)
    res = fit(ds, slice(0, 80), slice(84, 118), TransformerConfig(**SMALL))
    assert abs(res.best_valid_ic) < 0.15


def test_predictions_are_causal(torch):
    from models.transformer import fit, predict
    ds = make_ds(T=90, N=16, seed=5)
    cfg = TransformerConfig(**{**SMALL, "epochs": 1})
    model = fit(ds, slice(0, 50), slice(53, 70), cfg).model
    base = predict(model, ds, slice(0, 90), cfg)
    assert np.isnan(base[:15, 0]).all() and np.isfinite(base[15:88]).all()   # no data -> NaN
    cut = 60
    f2 = ds.features.copy()
    f2[cut + 1:] = np.random.default_rng(9).standard_normal(f2[cut + 1:].shape)
    v2 = ds.feature_valid.copy()
    v2[cut + 1:, 3] = False
    ds2 = PanelDataset(**{**ds.__dict__, "features": f2, "feature_valid": v2})
    pert = predict(model, ds2, slice(0, 90), cfg)
    np.testing.assert_array_equal(base[:cut + 1], pert[:cut + 1])
    assert not np.allclose(base[cut + 1:], pert[cut + 1:], equal_nan=True)


def test_seeded_determinism(torch):
    from models.transformer import fit, predict
    ds = make_ds(T=80, N=16, seed=6)
    cfg = TransformerConfig(**{**SMALL, "dropout": 0.1, "epochs": 2})
    a = fit(ds, slice(0, 50), slice(53, 78), cfg)
    b = fit(ds, slice(0, 50), slice(53, 78), cfg)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    pa, pb = (predict(r.model, ds, slice(53, 80), cfg) for r in (a, b))
    np.testing.assert_array_equal(pa, pb)
    c = fit(ds, slice(0, 50), slice(53, 78), TransformerConfig(**{**SMALL, "dropout": 0.1,
                                                                    "epochs": 2, "seed": 7}))
    assert not np.array_equal(pa, predict(c.model, ds, slice(53, 80), cfg), equal_nan=True)


def test_save_load_roundtrip(torch, tmp_path, monkeypatch):
    from models import transformer as tr
    from models import transformer_net as net
    ds = make_ds(T=70, N=12, seed=7)
    cfg = TransformerConfig(**{**SMALL, "epochs": 1, "multitask": False})
    res = tr.fit(ds, slice(0, 40), slice(43, 68), cfg)
    d = net.save_model(res.model, cfg, tmp_path / "m", n_features=5, meta={"run": "x"})
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.pt"]
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real_load(*a, **k))
    model, cfg2, meta = net.load_model(d)
    assert calls and all(k.get("weights_only") is True for k in calls)
    assert cfg2 == cfg and meta == {"run": "x"} and not model.training
    np.testing.assert_array_equal(tr.predict(res.model, ds, slice(0, 70), cfg),
                                  tr.predict(model, ds, slice(0, 70), cfg2))
    # mismatched config -> StoreError naming the directory
    doc = json.loads((d / "config.json").read_text())
    doc["config"]["d_model"] = 32
    (d / "config.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="do not match"):
        net.load_model(d)
    with pytest.raises(StoreError):
        net.load_model(tmp_path / "missing")


def test_multitask_heads(torch):
    from models.transformer import _aux_targets, fit
    ds = make_ds(T=90, N=20, seed=8)
    rng = np.random.default_rng(0)
    opn = 10 * np.cumprod(1 + 0.01 * rng.standard_normal(ds.label.shape), axis=0)
    cfg = TransformerConfig(**{**SMALL, "multitask": True, "epochs": 2})
    with pytest.raises(EvaluationError, match="open_adj"):
        fit(ds, slice(0, 55), slice(58, 88), cfg)
    with pytest.raises(EvaluationError, match="shape"):
        fit(ds, slice(0, 55), slice(58, 88), cfg, open_adj=opn[:-1])
    res = fit(ds, slice(0, 55), slice(58, 88), cfg, open_adj=opn)
    assert res.model.heads.out_features == 3 and np.isfinite(res.best_valid_ic)
    # aux targets read no price at or after the end of the training rows
    aux = _aux_targets(opn, ds, 55, cfg.path_horizon)
    assert np.isnan(aux[55 - 1 - cfg.path_horizon:]).all()
    assert np.isfinite(aux[: 55 - 1 - cfg.path_horizon][ds.sample_mask[: 55 - 1 - cfg.path_horizon]]).all()
    opn2 = opn.copy()
    opn2[55:] *= 3.0
    np.testing.assert_array_equal(aux, _aux_targets(opn2, ds, 55, cfg.path_horizon))
    single = fit(ds, slice(0, 55), slice(58, 88), TransformerConfig(**{**SMALL, "epochs": 1}))
    assert single.model.heads.out_features == 1


def test_fit_errors(torch):
    from models.transformer import fit
    ds = make_ds(T=40, N=6)
    with pytest.raises(EvaluationError, match="no usable sample"):
        fit(ds, slice(38, 40), slice(30, 36), TransformerConfig(**SMALL))


def test_walk_forward_predict_is_out_of_sample(torch, tmp_path):
    from models.transformer import walk_forward_predict
    from models.transformer_net import load_model
    from models.walkforward import walk_forward
    ds = make_ds(T=200, N=14, seed=10)
    folds = walk_forward(ds.dates, str(ds.dates[120].date()), str(ds.dates[-1].date()),
                         retrain_months=2, valid_months=1, embargo=2, horizon=1)
    assert len(folds) >= 2
    cfg = TransformerConfig(**{**SMALL, "epochs": 1, "dates_per_epoch": 20})
    events = []
    res = walk_forward_predict(ds, folds, cfg, save_dir=tmp_path, progress=events.append)
    test_rows = np.zeros(200, dtype=bool)
    for f in folds:
        test_rows[f.test] = True
    assert np.isnan(res.oos[~test_rows]).all()
    assert np.isfinite(res.oos[test_rows][ds.sample_mask[test_rows]]).all()
    assert {e["fold"] for e in events} == set(range(len(folds)))
    assert len(res.folds) == len(folds) and all("train" in s for s in res.folds)
    model, _, meta = load_model(tmp_path / "fold0")
    assert meta["feature_names"] == ds.feature_names
    # changing features and labels after fold 0's test block leaves fold 0's predictions alone
    end0 = folds[0].test.stop
    f2 = ds.features.copy()
    f2[end0:] *= -1
    lab2 = ds.label.copy()
    lab2[end0:] = -lab2[end0:]
    ds2 = PanelDataset(**{**ds.__dict__, "features": f2, "label": lab2})
    res2 = walk_forward_predict(ds2, folds[:1], cfg)
    np.testing.assert_array_equal(res.oos[:end0], res2.oos[:end0])


def test_on_built_dataset(torch, make_ws):
    """End to end on the dataset builder's synthetic workspace (alpha158 features)."""
    from models.dataset import build_dataset
    from models.transformer import fit
    synth_ws = make_ws()
    ds = build_dataset(synth_ws, "alpha158", horizon=1)
    cfg = TransformerConfig(**{**SMALL, "epochs": 1, "multitask": True})
    res = fit(ds, slice(0, 150), slice(153, 250), cfg, open_adj=synth_ws.field("open"))
    assert res.n_train_samples > 0 and len(res.history) == 1


# ---------------------------------------------------------------- run + CLI

def _run_cfg(tmp_path, ws):
    from backtest.context import EvalConfig
    from data.config import Config, DataConfig
    from factors.store import StoreConfig
    from models.settings import ModelConfig
    d = ws.ctx.dates
    return Config(data=DataConfig(), store=StoreConfig(path=tmp_path / "lb.db", min_valid_rank_ic=0.01),
                  model=ModelConfig(out_dir=tmp_path / "models", num_threads=1),
                  evaluate=EvalConfig(train=(str(d[0].date()), str(d[150].date())),
                                      valid=(str(d[151].date()), str(d[220].date())),
                                      test=(str(d[221].date()), str(d[-1].date()))))


def test_run_transformer_end_to_end_on_synthetic(torch, make_ws, tmp_path):
    from backtest.candidates import load_prediction_panel
    from factors.store import FactorStore
    from models.transformer_run import TransformerSettings, run_transformer
    ws = make_ws(T=260, N=30, plant=0.8)
    cfg = _run_cfg(tmp_path, ws)
    ws.model_dir = cfg.model.out_dir
    d = ws.ctx.dates
    s = TransformerSettings.from_config(
        cfg, universe="synth", feature_set="library", first_test=str(d[151].date()),
        last_test=str(d[220].date()), retrain_months=2, valid_months=2,
        **{**SMALL, "epochs": 3, "dates_per_epoch": 60})
    assert s.net.threads == 1 and s.net.seq_len == SMALL["seq_len"]
    from models.run_common import EpochDone, ModelMessage
    events = []
    with FactorStore(cfg.store.path) as store:
        run = run_transformer(cfg, s, ws=ws, store=store, on_progress=events.append)
        recs = store.top(50, universe="synth")
    epochs = [e for e in events if isinstance(e, EpochDone)]
    assert any(isinstance(e, ModelMessage) for e in events)
    rid = run.run_id
    assert rid.startswith("transformer-") and len(run.folds) >= 2
    assert {e.fold for e in epochs} == set(range(len(run.folds)))
    assert all(e.total == 3 and e.n_folds == len(run.folds) for e in epochs)
    assert run.leaderboard[0]["formula"] == f'model("{rid}")'
    assert any(r.formula == f'model("{rid}")' and r.source == "model" for r in recs)
    assert run.leaderboard[0]["accepted"], run.leaderboard
    for k in range(len(run.folds)):
        assert (cfg.model.out_dir / rid / f"fold{k}" / "model.pt").is_file()
    assert (cfg.model.out_dir / rid / "run.json").is_file()
    # the saved panel is what the evaluator loads, and it is NaN outside the OOS rows
    panel = load_prediction_panel(cfg.model.out_dir, rid, ws.ctx.dates, ws.ctx.codes)
    assert np.isnan(panel[:140]).all() and np.isfinite(panel[151:221]).any()
    assert run.oos["eligible"]["RankIC"] > 0.1, run.oos
    with pytest.raises(ConfigError, match="sealed test"):
        run_transformer(cfg, TransformerSettings(last_test=str(d[-1].date())), ws=ws,
                        submit=False)


def _cli_setup(make_ws, tmp_path, monkeypatch):
    import models.run_common
    ws = make_ws(T=260, N=30, plant=0.8)
    d = ws.ctx.dates
    (tmp_path / "mine.toml").write_text(f"""
[evaluate]
train = ["{d[0].date()}", "{d[150].date()}"]
valid = ["{d[151].date()}", "{d[220].date()}"]
test = ["{d[221].date()}", "{d[-1].date()}"]
[store]
path = "{tmp_path / 'lb.db'}"
[model]
universe = "synth"
feature_set = "library"
out_dir = "{tmp_path / 'models'}"
first_test = "{d[151].date()}"
last_test = "{d[220].date()}"
retrain_months = 2
valid_months = 2
num_threads = 1
""")
    ws.model_dir = tmp_path / "models"
    monkeypatch.setattr(models.run_common, "make_workspace", lambda *a, **k: ws)
    return ["--config", str(tmp_path / "mine.toml"), "model", "transformer", "--epochs", "1",
            "--seq-len", "5", "--d-model", "16", "--dates-per-epoch", "20"]


def test_cli_model_transformer_json(torch, make_ws, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mining.cli import app
    args = _cli_setup(make_ws, tmp_path, monkeypatch)
    runner = CliRunner()
    r = runner.invoke(app, args + ["--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["run_id"].startswith("transformer-")
    assert out["settings"]["net"]["seq_len"] == 5 and out["settings"]["net"]["d_model"] == 16
    assert out["leaderboard"][0]["formula"] == f'model("{out["run_id"]}")'
    r = runner.invoke(app, args + ["--no-submit"])
    assert r.exit_code == 0, r.output
    assert "valid RankIC" in r.output and "OOS test metrics" in r.output
    r = runner.invoke(app, args + ["--d-model", "30"])     # 30 not divisible by 4 heads
    assert r.exit_code == 2 and "d_model" in r.output


def test_missing_torch_gives_the_install_line(make_ws, tmp_path, monkeypatch):
    import sys

    from typer.testing import CliRunner

    from mining.cli import app
    from models import transformer as tr
    from models import transformer_net
    monkeypatch.setitem(sys.modules, "torch", None)        # `import torch` -> ImportError
    monkeypatch.setattr(transformer_net, "_NET_CLASS", None)
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0"):
        tr.fit(make_ds(T=30, N=4), slice(0, 20), slice(23, 28))
    r = CliRunner().invoke(app, _cli_setup(make_ws, tmp_path, monkeypatch) + ["--no-submit"])
    assert r.exit_code == 2
    assert "pip install torch==2.13.0" in r.output and "[torch]" in r.output


@pytest.mark.slow
def test_real_csi300_fit_predict_and_causality(torch):
    """One short fit on a real CSI300 year; predictions at <= t ignore features after t."""
    from backtest.candidates import make_workspace
    from mining.cli_app import load as load_config
    from models.dataset import build_dataset
    from models.transformer import fit, predict
    try:
        ws = make_workspace(load_config(), "csi300", "2018-01-01", "2018-12-31")
    except Exception as exc:  # pragma: no cover - the warehouse is optional
        pytest.skip(f"real data unavailable: {exc}")
    ds = build_dataset(ws, "alpha158")
    cfg = TransformerConfig(epochs=1, dates_per_epoch=24, threads=2)
    res = fit(ds, slice(0, 170), slice(173, 240), cfg)
    assert res.n_train_samples > 40_000 and np.isfinite(res.best_valid_ic)
    rows = slice(150, 243)
    base = predict(res.model, ds, rows, cfg)
    assert 250 <= np.isfinite(base[rows]).sum(axis=1).mean() <= 300
    f2 = ds.features.copy()
    f2[201:] = 0.0
    pert = predict(res.model, PanelDataset(**{**ds.__dict__, "features": f2}), rows, cfg)
    np.testing.assert_array_equal(base[:201], pert[:201])
    assert not np.array_equal(base[201:243], pert[201:243], equal_nan=True)
