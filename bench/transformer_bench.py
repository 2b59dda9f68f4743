"""Transformer throughput: training and inference samples per second at the default size.

Usage::

    python bench/transformer_bench.py                    # CSI300 real data, 2016-2018
    python bench/transformer_bench.py --synthetic        # random features, CSI300-like shapes
    python bench/transformer_bench.py --threads 1 --d-model 64

A *sample* is one (date, stock) sequence of ``seq_len`` days x F features. Training throughput
is measured over ``--steps`` optimiser steps on date-grouped batches (all usable stocks of
``dates_per_batch`` dates; gathering the windows is included), after 2 warm-up steps.
Inference throughput is :func:`models.transformer.predict` over the last year of rows.
Both are wall-clock on a machine that may be shared: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.dataset import PanelDataset  # noqa: E402
from models.seq import date_batches, has_data_mask  # noqa: E402
from models.transformer import TransformerConfig, _batch, _torch, build_model, predict  # noqa: E402


def real_dataset(universe: str, start: str, end: str) -> PanelDataset:
    from backtest.candidates import make_workspace
    from mining.cli_app import load as load_config
    from models.dataset import build_dataset
    cfg = load_config()
    ws = make_workspace(cfg, universe, start, end)
    return build_dataset(ws, cfg.model.feature_set, horizon=cfg.evaluate.horizon)


def synthetic_dataset(T: int = 731, N: int = 420, F: int = 163, per_day: int = 273,
                      seed: int = 0) -> PanelDataset:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, N, F), dtype=np.float32)
    mask = np.zeros((T, N), dtype=bool)
    for t in range(T):
        mask[t, rng.choice(N, per_day, replace=False)] = True
    lab = np.where(mask, rng.random((T, N)) - 0.5, np.nan).astype(np.float32)
    return PanelDataset(dates=pd.bdate_range("2016-01-01", periods=T),
                        codes=pd.Index([f"{i:06d}.SZ" for i in range(N)]), features=X,
                        feature_names=[f"f{k}" for k in range(F)], label=lab, sample_mask=mask,
                        horizon=1, feature_valid=np.ones((T, N, F), dtype=bool),
                        universe_mask=mask.copy())


def bench_train(ds, cfg: TransformerConfig, steps: int) -> tuple[float, int]:
    torch = _torch()
    torch.set_num_threads(cfg.threads)
    hd = has_data_mask(ds)
    model = build_model(ds.features.shape[2], cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    rows = slice(0, len(ds.dates) - 260)
    batches = date_batches(ds.sample_mask, rows, cfg.dates_per_batch,
                           rng=np.random.default_rng(0))
    n, t0 = 0, None
    for k, (t_idx, i_idx) in enumerate(batches):
        if k == 2:
            t0, n = time.perf_counter(), 0
        if k == steps + 2:
            break
        x, pad = _batch(ds.features, t_idx, i_idx, cfg.seq_len, hd)
        y = torch.from_numpy(ds.label[t_idx, i_idx])
        loss = torch.mean((model(x, pad)[:, 0] - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        n += t_idx.size
    return n / (time.perf_counter() - t0), n


def bench_predict(ds, cfg: TransformerConfig) -> tuple[float, int]:
    model = build_model(ds.features.shape[2], cfg)
    rows = slice(len(ds.dates) - 250, len(ds.dates))
    hd = has_data_mask(ds)
    predict(model, ds, slice(rows.start, rows.start + 5), cfg, mask=ds.sample_mask, has_data=hd)
    t0 = time.perf_counter()
    out = predict(model, ds, rows, cfg, mask=ds.sample_mask, has_data=hd)
    return int(np.isfinite(out).sum()) / (time.perf_counter() - t0), int(np.isfinite(out).sum())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--universe", default="csi300")
    ap.add_argument("--start", default="2016-01-01")
    ap.add_argument("--end", default="2018-12-31")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--d-model", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=None)
    a = ap.parse_args(argv)
    cfg = TransformerConfig()
    over = {k: v for k, v in (("threads", a.threads), ("d_model", a.d_model),
                              ("seq_len", a.seq_len)) if v is not None}
    cfg = cfg.replace(**over)
    t0 = time.perf_counter()
    ds = synthetic_dataset() if a.synthetic else real_dataset(a.universe, a.start, a.end)
    build_s = time.perf_counter() - t0
    T, N, F = ds.features.shape
    src = "synthetic" if a.synthetic else f"{a.universe} {a.start}..{a.end}"
    print(f"data: {src}  T={T} N={N} F={F}  usable/day={ds.sample_mask.sum(1).mean():.0f}  "
          f"built in {build_s:.1f}s")
    print(f"config: seq_len={cfg.seq_len} d_model={cfg.d_model} layers={cfg.n_layers} "
          f"heads={cfg.n_heads} d_ff={cfg.d_ff} dates_per_batch={cfg.dates_per_batch} "
          f"threads={cfg.threads}")
    tr, n_tr = bench_train(ds, cfg, a.steps)
    inf, n_inf = bench_predict(ds, cfg)
    la = os.getloadavg()
    print(f"train:     {tr:9.0f} samples/s  ({n_tr} samples, {a.steps} steps)")
    print(f"inference: {inf:9.0f} samples/s  ({n_inf} samples)")
    print(f"load average (1/5/15 min): {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
