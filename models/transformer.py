"""A small CPU-friendly transformer return model over per-stock feature sequences.

torch is an optional extra (``pip install torch==2.13.0`` then ``pip install -e '.[torch]'``):
it is imported lazily, on the first call that needs it; importing this module never does.

Inputs and timing
    A sample ``(t, i)`` is stock ``i`` on row ``t`` of a :class:`models.dataset.PanelDataset`
    (features ``(T, N, F)`` float32, label ``(T, N)``, ``sample_mask``). Its input is the window
    ``features[t-L+1 .. t, i]`` gathered on the fly (:mod:`models.seq`); nothing after ``t`` is
    read, so a prediction at ``t`` only uses data up to the close of ``t``. The label is the
    dataset's (cross-sectionally normalised) forward return of ``ds.horizon`` days from the
    open of ``t + 1``.
Network
    :mod:`models.transformer_net` (settings :class:`~models.transformer_net.TransformerConfig`,
    the ``nn.Module``, ``save_model`` / ``load_model``).
Heads and loss (multi-task, after the AlphaQuant design in ``shared/reference``)
    ``return`` (always): MSE against the dataset label (the whole loss when ``multitask`` is
    off). With ``multitask=True`` two auxiliary
    heads are trained with L1 loss against the cross-sectional percentile ranks (minus 0.5)
    of :func:`models.seq.path_targets` over ``path_horizon`` days from the open of ``t + 1``:
    ``sharpe`` (mean / std of the daily open-to-open returns of the path) and ``drawdown``
    (maximum drawdown of the path). Total loss ``w_r * L_return + w_s * L_sharpe + w_d *
    L_drawdown`` (default weights 0.4 / 0.3 / 0.3 as in the reference). The auxiliary targets
    are labels: for each fit they are computed from prices truncated at the end of the training
    rows, so no training target reads a price of the valid or test rows. Only the return head is
    used for predictions and for early stopping.
Training
    AdamW, cosine annealing of the learning rate over the epochs (``T_max = epochs``), gradient
    clipping; each epoch visits ``dates_per_epoch`` random training dates in date-grouped
    batches (all usable stocks of ``dates_per_batch`` dates). After each epoch the mean daily
    RankIC of the return head on the valid rows (:func:`backtest.metrics_ic.spearman_from_orders`,
    the evaluator's kernel, on ``sample_mask``) decides early stopping; the best epoch's weights
    are kept. Seeded (numpy and torch); ``torch.set_num_threads(threads)``.
Persistence
    :func:`walk_forward_predict` saves each fold's network with
    :func:`models.transformer_net.save_model`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backtest.metrics_ic import finite_mean, spearman_from_orders
from factors.errors import EvaluationError
from factors.ops_cs import cs_rank
from factors.row_order import row_orders
from models.seq import (
    date_batches,
    gather_windows,
    has_data_mask,
    path_targets,
    rows_of,
    usable_samples,
)
from models.transformer_net import (
    TransformerConfig,
    build_model,
    save_model,
    torch_module,
)


def _batch(features, t_idx, i_idx, seq_len, has_data):
    torch = torch_module()
    x, pad = gather_windows(features, t_idx, i_idx, seq_len, has_data)
    pad[:, -1] = False                      # the day itself is always attended (never all-pad)
    return torch.from_numpy(x), torch.from_numpy(pad)


# ---------------------------------------------------------------- predict / score

def predictable_mask(ds, has_data: np.ndarray | None = None) -> np.ndarray:
    """Samples that get a prediction: in ``sample_mask`` or the universe, with data on the day.

    ``has_data`` defaults to :func:`models.seq.has_data_mask`; the universe is
    ``ds.universe_mask`` when the dataset has one (else every stock).

    Returns
    -------
    ndarray of bool, shape (T, N)
    """
    hd = has_data_mask(ds) if has_data is None else has_data
    um = getattr(ds, "universe_mask", None)
    sm = np.asarray(ds.sample_mask, dtype=np.bool_)
    return (sm if um is None else sm | np.asarray(um, dtype=np.bool_)) & hd


def predict(model, ds, rows, cfg: TransformerConfig, *, mask: np.ndarray | None = None,
            has_data: np.ndarray | None = None, dates_per_batch: int = 16) -> np.ndarray:
    """Return-head predictions on ``rows`` as a (T, N) panel.

    Parameters
    ----------
    model : ReturnTransformer
    ds : PanelDataset
    rows : slice, bool ndarray (T,) or int ndarray
        Rows (dates) to predict.
    cfg : TransformerConfig
        Must match the model (``seq_len``, ``threads``).
    mask : ndarray of bool (T, N), optional
        Samples to predict; default :func:`predictable_mask`.
    has_data : ndarray of bool (T, N), optional
        Padding source (:func:`models.seq.has_data_mask`, computed when omitted).
    dates_per_batch : int, default 16

    Returns
    -------
    ndarray of float64, shape (T, N)
        NaN outside ``rows`` and ``mask``. Row ``t`` depends on features of rows ``<= t`` only.
    """
    torch = torch_module()
    torch.set_num_threads(cfg.threads)
    feats = ds.features
    hd = has_data_mask(ds) if has_data is None else has_data
    mask = predictable_mask(ds, hd) if mask is None else np.asarray(mask, dtype=np.bool_)
    out = np.full(mask.shape, np.nan)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for t_idx, i_idx in date_batches(mask, rows, dates_per_batch):
                x, pad = _batch(feats, t_idx, i_idx, cfg.seq_len, hd)
                out[t_idx, i_idx] = model(x, pad)[:, 0].double().numpy()
    finally:
        model.train(was_training)
    return out


def daily_rank_ic(pred: np.ndarray, label: np.ndarray, mask: np.ndarray, rows) -> np.ndarray:
    """Daily Spearman RankIC of ``pred`` with ``label`` on ``mask`` over ``rows``.

    Uses the evaluator's kernels (:func:`factors.row_order.row_orders`,
    :func:`~backtest.metrics_ic.spearman_from_orders`).

    Returns
    -------
    ndarray of float64, shape (len(rows),)
        NaN on days with fewer than 3 names or a constant side.
    """
    r = rows_of(rows, pred.shape[0])
    p = np.ascontiguousarray(pred[r], dtype=np.float64)
    y = np.ascontiguousarray(label[r], dtype=np.float64)
    m = np.ascontiguousarray(mask[r], dtype=np.bool_)
    op, n_p = row_orders(p, m)
    oy, ny = row_orders(y, m)
    return spearman_from_orders(p, op, n_p, y, oy, ny, m)


# ---------------------------------------------------------------- fit

@dataclass
class FitResult:
    """Outcome of :func:`fit`: the best-epoch model and the per-epoch history."""

    model: Any
    config: TransformerConfig
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_ic: float = math.nan
    n_train_samples: int = 0
    seconds: float = 0.0


def _aux_targets(open_adj, ds, train_stop: int, horizon: int) -> np.ndarray:
    """(T, N, 2) cross-sectional ranks - 0.5 of the path Sharpe and drawdown (float32)."""
    o = np.asarray(open_adj, dtype=np.float64)
    if o.shape != ds.label.shape:
        raise EvaluationError(f"open_adj has shape {o.shape}, expected {ds.label.shape} "
                              f"(dates x codes of the dataset)")
    sh, dd = path_targets(o, horizon, end_row=train_stop)
    m = np.asarray(ds.sample_mask, dtype=np.bool_)
    return np.stack([cs_rank(sh, m) - 0.5, cs_rank(dd, m) - 0.5], axis=2).astype(np.float32)


def _slice_stop(rows, T: int) -> int:
    r = rows_of(rows, T)
    return int(r.max()) + 1 if r.size else 0


def fit(ds, train_rows, valid_rows, cfg: TransformerConfig | None = None, *,
        open_adj: np.ndarray | None = None,
        progress: Callable[[dict], None] | None = None) -> FitResult:
    """Train the transformer on ``train_rows`` with early stopping on ``valid_rows``.

    Parameters
    ----------
    ds : PanelDataset
        ``features`` (T, N, F) float32, ``label`` (T, N) float32 (NaN = none),
        ``sample_mask`` (T, N) bool. A sample is used when it is in ``sample_mask``, has a
        finite label and the stock has data on the day (:func:`models.seq.has_data_mask`).
    train_rows, valid_rows : slice, bool ndarray (T,) or int ndarray
        Rows to train on / to score each epoch (the caller keeps an embargo between them).
    cfg : TransformerConfig, optional
    open_adj : ndarray (T, N), optional
        Back-adjusted opens aligned with ``ds``; required when ``cfg.multitask``.
    progress : callable, optional
        Called after each epoch with ``{"epoch", "loss", "valid_ic", "lr", "seconds"}``.

    Returns
    -------
    FitResult
        ``model`` holds the weights of the epoch with the best mean valid RankIC (the last
        epoch when the valid RankIC is never defined).

    Raises
    ------
    EvaluationError
        When the training rows hold no usable sample, or ``open_adj`` is missing or misaligned
        while ``cfg.multitask`` is set.
    ImportError
        When torch is not installed.
    """
    torch = torch_module()
    cfg = cfg or TransformerConfig()
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    feats, label = ds.features, np.asarray(ds.label, dtype=np.float32)
    hd = has_data_mask(ds)
    smask = np.asarray(ds.sample_mask, dtype=np.bool_) & np.isfinite(label) & hd
    tr_t, _ = usable_samples(smask, train_rows)
    if tr_t.size == 0:
        raise EvaluationError("transformer fit: the training rows hold no usable sample "
                              "(sample_mask & finite label)")
    aux = None
    if cfg.multitask:
        if open_adj is None:
            raise EvaluationError("transformer fit: multitask=True needs open_adj (T, N)")
        aux = _aux_targets(open_adj, ds, _slice_stop(train_rows, label.shape[0]),
                           cfg.path_horizon)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(feats.shape[2], cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    # single-task: plain MSE (weight 1); multi-task: the configured weighted sum
    w = torch.tensor(cfg.loss_weights if cfg.multitask else (1.0, 0.0, 0.0),
                     dtype=torch.float32)
    res = FitResult(model=model, config=cfg, n_train_samples=int(tr_t.size))
    best_state, best_ic, stale = None, -math.inf, 0
    for epoch in range(1, cfg.epochs + 1):
        te = time.perf_counter()
        model.train()
        losses, n_seen = [], 0
        for t_idx, i_idx in date_batches(smask, train_rows, cfg.dates_per_batch, rng=rng,
                                         max_dates=cfg.dates_per_epoch):
            x, pad = _batch(feats, t_idx, i_idx, cfg.seq_len, hd)
            y = torch.from_numpy(label[t_idx, i_idx])
            out = model(x, pad)
            loss = w[0] * torch.mean((out[:, 0] - y) ** 2)
            if aux is not None:
                a = torch.from_numpy(aux[t_idx, i_idx])
                ok = torch.isfinite(a)
                for k in (0, 1):
                    if bool(ok[:, k].any()):
                        loss = loss + w[1 + k] * torch.mean(
                            torch.abs(out[ok[:, k], 1 + k] - a[ok[:, k], k]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()) * t_idx.size)
            n_seen += t_idx.size
        lr = opt.param_groups[0]["lr"]
        sched.step()
        pred = predict(model, ds, valid_rows, cfg, mask=smask, has_data=hd)
        ic = finite_mean(daily_rank_ic(pred, label, smask, valid_rows))
        rec = {"epoch": epoch, "loss": sum(losses) / max(n_seen, 1), "valid_ic": ic, "lr": lr,
               "samples": n_seen, "seconds": time.perf_counter() - te}
        res.history.append(rec)
        if progress is not None:
            progress(rec)
        if np.isfinite(ic) and ic > best_ic:
            best_ic, stale, res.best_epoch = ic, 0, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        res.best_epoch = len(res.history)
    model.eval()
    res.best_valid_ic = best_ic if np.isfinite(best_ic) else math.nan
    res.seconds = time.perf_counter() - t0
    return res



# ---------------------------------------------------------------- walk-forward

@dataclass
class WalkForwardResult:
    """Out-of-sample predictions of a walk-forward run and one summary per fold."""

    oos: np.ndarray                                   # (T, N) float64, NaN outside test rows
    folds: list[dict] = field(default_factory=list)
    config: TransformerConfig | None = None
    seconds: float = 0.0


def walk_forward_predict(ds, folds, cfg: TransformerConfig | None = None, *,
                         open_adj: np.ndarray | None = None, save_dir=None,
                         progress: Callable[[dict], None] | None = None) -> WalkForwardResult:
    """Fit one model per fold (train / early-stop on valid) and predict its test rows.

    Parameters
    ----------
    ds : PanelDataset
    folds : sequence of models.walkforward.Fold
        Row slices; the caller's :func:`models.walkforward.walk_forward` keeps an embargo of
        at least ``horizon + 1`` rows between train, valid and test.
    cfg : TransformerConfig, optional
    open_adj : ndarray (T, N), optional
        Back-adjusted opens (needed with ``cfg.multitask``).
    save_dir : path-like, optional
        When given, fold ``k``'s model is saved to ``save_dir / f"fold{k}"``
        (:func:`save_model`, with the fold dates and fit summary as metadata).
    progress : callable, optional
        Called after each epoch with the :func:`fit` record plus ``"fold"`` and ``"n_folds"``.

    Returns
    -------
    WalkForwardResult
        ``oos`` assembled by :func:`models.walkforward.assemble_oos`: every test row is
        predicted by the one model whose train and valid rows precede it.

    Raises
    ------
    EvaluationError
        For an empty fold list or from :func:`fit`.
    """
    from models.walkforward import assemble_oos

    cfg = cfg or TransformerConfig()
    folds = list(folds)
    if not folds:
        raise EvaluationError("walk_forward_predict: no folds")
    t0 = time.perf_counter()
    hd = has_data_mask(ds)
    pmask = predictable_mask(ds, hd)
    parts, summaries = [], []
    for k, fold in enumerate(folds):
        def _prog(rec, k=k):
            if progress is not None:
                progress({**rec, "fold": k, "n_folds": len(folds)})
        res = fit(ds, fold.train, fold.valid, cfg, open_adj=open_adj, progress=_prog)
        pred = predict(res.model, ds, fold.test, cfg, mask=pmask, has_data=hd)
        parts.append((fold, pred))
        summary = {"fold": k, **(fold.describe(ds.dates) if hasattr(fold, "describe") else {}),
                   "best_epoch": res.best_epoch, "epochs_run": len(res.history),
                   "best_valid_ic": res.best_valid_ic, "n_train_samples": res.n_train_samples,
                   "seconds": res.seconds}
        if save_dir is not None:
            path = save_model(res.model, cfg, Path(save_dir) / f"fold{k}",
                              n_features=ds.features.shape[2],
                              meta={**summary, "feature_names": list(ds.feature_names),
                                    "horizon": int(ds.horizon)})
            summary["path"] = str(path)
        summaries.append(summary)
    oos = assemble_oos(parts, T=len(ds.dates))
    return WalkForwardResult(oos=oos, folds=summaries, config=cfg,
                             seconds=time.perf_counter() - t0)
