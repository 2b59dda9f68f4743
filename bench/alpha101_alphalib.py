"""The py-alpha-lib side of bench/alpha101_bench.py, run by a Python >= 3.12 interpreter.

    python3.12 bench/alpha101_alphalib.py IN.npz TREES.json OUT_DIR

Not importable by the project (py-alpha-lib needs Python >= 3.12; the project runs on 3.11):
:mod:`alpha101_bench` writes the panels (``(T, N)`` float64, already masked to the universe)
and the 101 formulas as operator trees, starts this script, and reads back the outputs and
the wall and CPU (all threads) seconds spent per alpha (one ``.npy`` per alpha in OUT_DIR), measured here, after the panels are loaded and laid out.

Each paper operator is rendered with py-alpha-lib's own operator (``alpha.*``, Rust), with
``FLAG_SKIP_NAN`` (a window is the stock's last ``d`` non-NaN observations, as in alphamine):

* ``rank`` -> ``CC_RANK`` (percentile, ties averaged); ``Ts_Rank(x, d)`` -> ``RANK(x, d) / d``
  (``RANK`` is the 1-based position in the window with **min** ties, alphamine averages ties);
* ``Ts_ArgMax`` / ``Ts_ArgMin`` -> ``HHVBARS`` / ``LLVBARS`` (days since the window's extreme,
  0 = today, ties -> the most recent day: the reading of :mod:`factors.alpha101`);
* ``correlation`` / ``covariance`` -> ``CORR2`` / ``COV``; ``stddev`` -> ``STDDEV``; ``sum``
  -> ``SUM``; ``adv{d}`` = ``MA(amount, d)``; ``decay_linear`` -> ``LWMA``; ``product`` ->
  ``PRODUCT``; ``ts_min`` / ``ts_max`` -> ``LLV`` / ``HHV``; ``delay`` / ``delta`` -> ``REF``;
* ``scale`` and ``IndNeutralize`` (``x`` minus its date x industry mean) are numpy on the
  ``(N, T)`` layout, because py-alpha-lib's ``ExecContext.SCALE`` divides by the sum over the
  whole panel, not per date;
* elementwise operators are numpy, as in py-alpha-lib's own ``ExecContext``.

Warm-up: py-alpha-lib's rolling operators emit values on partial windows (the first ``d - 1``
observations), alphamine emits NaN there; the agreement check compares entries where both
sides are finite.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

import alpha


def _scale(x, T, N):
    m = x.reshape(N, T)
    s = np.nansum(np.abs(m), axis=0)
    with np.errstate(all="ignore"):
        return (m / np.where(s > 0, s, np.nan)).reshape(-1)


def _neutralize(x, g, T, N):
    xm, gm = x.reshape(N, T), g.reshape(N, T)
    ok = np.isfinite(xm) & np.isfinite(gm)
    codes, inv = np.unique(gm[ok], return_inverse=True)  # industry codes -> 0..k-1
    gi = np.zeros((N, T), np.int64)
    gi[ok] = inv
    k = max(len(codes), 1)
    t = np.broadcast_to(np.arange(T), (N, T))
    key = (t * k + gi)[ok]
    s = np.bincount(key, weights=xm[ok], minlength=T * k)
    c = np.bincount(key, minlength=T * k)
    out = np.full((N, T), np.nan)
    out[ok] = xm[ok] - s[key] / c[key]
    return out.reshape(-1)


def _cmp(a, b, fn):
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(a) | np.isnan(b), np.nan, fn(a, b).astype(np.float64))


def _power(a, b):
    with np.errstate(all="ignore"):
        return np.power(a, b)


def operators(T, N):
    """Factor-language operator name -> function of (args, windows) on flat (N*T,) arrays."""
    def ts(fn):
        return lambda a, w: fn(a[0], w[0])
    return {
        "ts_sum": ts(alpha.SUM), "ts_mean": ts(alpha.MA), "ts_std": ts(alpha.STDDEV),
        "ts_min": ts(alpha.LLV), "ts_max": ts(alpha.HHV), "ts_product": ts(alpha.PRODUCT),
        "ts_decay_linear": ts(alpha.LWMA), "ts_delay": ts(alpha.REF),
        "ts_delta": lambda a, w: a[0] - alpha.REF(a[0], w[0]),
        "ts_rank": lambda a, w: alpha.RANK(a[0], w[0]) / w[0],
        "ts_argmax": ts(alpha.HHVBARS), "ts_argmin": ts(alpha.LLVBARS),
        "ts_corr": lambda a, w: alpha.CORR2(a[0], a[1], w[0]),
        "ts_cov": lambda a, w: alpha.COV(a[0], a[1], w[0]),
        "cs_rank": lambda a, w: alpha.CC_RANK(a[0]),
        "cs_scale": lambda a, w: _scale(a[0], T, N),
        "cs_neutralize": lambda a, w: _neutralize(a[0], a[1], T, N),
        "abs": lambda a, w: np.abs(a[0]), "neg": lambda a, w: -a[0],
        "sign": lambda a, w: np.sign(a[0]),
        "log": lambda a, w: np.log(np.where(a[0] > 0, a[0], np.nan)),
        "add": lambda a, w: a[0] + a[1], "sub": lambda a, w: a[0] - a[1],
        "mul": lambda a, w: a[0] * a[1], "div": lambda a, w: a[0] / a[1],
        "power": lambda a, w: _power(a[0], a[1]),
        "signed_power": lambda a, w: np.sign(a[0]) * _power(np.abs(a[0]), a[1]),
        "max": lambda a, w: np.maximum(a[0], a[1]), "min": lambda a, w: np.minimum(a[0], a[1]),
        "lt": lambda a, w: _cmp(a[0], a[1], np.less),
        "gt": lambda a, w: _cmp(a[0], a[1], np.greater),
        "where": lambda a, w: np.where(np.isnan(a[0]), np.nan,
                                       np.where(a[0] > 0, a[1], a[2])),
    }


def run(tree, fields, ops, size):
    """Evaluate one operator tree (no memo across alphas; shared sub-trees within one are
    computed once, as a user's Python function would hold them in variables)."""
    memo = {}

    def ev(node):
        key = json.dumps(node)
        if key in memo:
            return memo[key]
        kind = node[0]
        if kind == "f":
            out = fields[node[1]]
        elif kind == "c":
            out = np.full(size, float(node[1]))
        else:
            out = ops[node[1]]([ev(a) for a in node[3]], node[2])
        memo[key] = out
        return out
    with np.errstate(all="ignore"):
        return ev(tree)


def main() -> None:
    src, trees_path, dst = sys.argv[1:4]
    z = np.load(src)
    T, N = z["close"].shape
    fields = {k: np.ascontiguousarray(z[k].T).reshape(-1) for k in z.files}
    alpha.set_ctx(groups=N, flags=alpha.FLAG_SKIP_NAN)
    ops = operators(T, N)
    with open(trees_path) as fh:
        trees = json.load(fh)
    run(trees[0][1], fields, ops, N * T)  # warm-up (thread pool, page faults)
    secs = {}
    for name, tree in trees:
        t, c = time.perf_counter(), time.process_time()
        out = run(tree, fields, ops, N * T)
        secs[name] = (time.perf_counter() - t, time.process_time() - c)
        np.save(f"{dst}/{name}.npy", np.asarray(out, dtype=np.float64).reshape(N, T).T)
        del out
    print(json.dumps(secs))


if __name__ == "__main__":
    main()
