"""Test oracle: a pandas transcription of Kakushadze (2016), "101 Formulaic Alphas" (appendix A).

A small operator kit with the paper's names, written directly on ``(T, N)`` DataFrames with
pandas / numpy (no code shared with :mod:`factors`), and :data:`PAPER`: alpha number ->
function of the inputs, transcribed from the paper's text (``?:`` -> :func:`where`, ``<`` ->
:func:`lt`, ``||`` -> :func:`or_`, ``==`` -> :func:`eq`, ``^`` -> ``**``, non-integer windows
-> ``floor`` by :func:`_d`). Inputs: ``open high low close vwap volume returns cap amount ind``.

Kit semantics (the paper's glossary): ``rank`` = cross-sectional percentile rank (average ties);
``Ts_Rank`` = percentile rank of today within the last d days (average ties); ``stddev`` with
``ddof=1``; ``decay_linear`` weights d..1 (newest d), normalised to sum 1; ``scale`` = x /
sum|x|; ``Ts_ArgMax`` = days ago of the window's max (0 = today, ties -> the most recent day,
the reading stated in :mod:`factors.alpha101`); ``IndNeutralize`` = x minus its group mean per
date; ``adv{d}`` = ``sum(amount, d) / d``. NaN policy of the time-series operators (the
project's convention, see :mod:`factors.registry`): a window is the column's last d non-NaN
rows (``s.dropna().rolling(d)``, put back on the full index; pairs: rows where both are
non-NaN), so a NaN inside the history does not blank the next d rows. Comparisons give 1.0 / 0.0, NaN if either side is NaN; ``where`` is NaN
where its condition is.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

DF = pd.DataFrame


def _d(d) -> int:
    """Paper: a non-integer number of days d is converted to floor(d)."""
    return int(math.floor(d))


# ------------------------------------------------------------------------ the kit

def rank(x: DF) -> DF:
    return x.rank(axis=1, pct=True, method="average")


def _roll(x: DF, d, stat) -> DF:
    """``stat(rolling)`` over each column's non-NaN rows (``s.dropna().rolling(d)``), put back."""
    n = _d(d)
    return DF({c: stat(x[c].dropna().rolling(n, min_periods=n)).reindex(x.index)
               for c in x.columns}, index=x.index)


def _roll2(x: DF, y: DF, d, stat) -> DF:
    """Two-input ``_roll`` over the rows where both are non-NaN."""
    n = _d(d)
    out = {}
    for c in x.columns:
        ok = x[c].notna() & y[c].notna()
        out[c] = stat(x[c][ok].rolling(n, min_periods=n), y[c][ok]).reindex(x.index)
    return DF(out, index=x.index)


def delay(x: DF, d) -> DF:
    return DF({c: x[c].dropna().shift(_d(d)).reindex(x.index) for c in x.columns},
              index=x.index)


def delta(x: DF, d) -> DF:
    return x - delay(x, d)


def ts_sum(x: DF, d) -> DF:
    return _roll(x, d, lambda r: r.sum())


def stddev(x: DF, d) -> DF:
    return _roll(x, d, lambda r: r.std(ddof=1))


def correlation(x: DF, y: DF, d) -> DF:
    out = _roll2(x, y, d, lambda r, o: r.corr(o))
    return out.where(np.isfinite(out))


def covariance(x: DF, y: DF, d) -> DF:
    return _roll2(x, y, d, lambda r, o: r.cov(o))


def ts_min(x: DF, d) -> DF:
    return _roll(x, d, lambda r: r.min())


def ts_max(x: DF, d) -> DF:
    return _roll(x, d, lambda r: r.max())


def _apply(x: DF, d, fn) -> DF:
    return _roll(x, d, lambda r: r.apply(fn, raw=True))


def ts_argmax(x: DF, d) -> DF:
    return _apply(x, d, lambda a: float(np.argmax(a[::-1])))


def ts_argmin(x: DF, d) -> DF:
    return _apply(x, d, lambda a: float(np.argmin(a[::-1])))


def ts_rank(x: DF, d) -> DF:
    return _roll(x, d, lambda r: r.rank(pct=True, method="average"))


def product(x: DF, d) -> DF:
    return _apply(x, d, np.prod)


def decay_linear(x: DF, d) -> DF:
    w = np.arange(1, _d(d) + 1, dtype=float)
    return _apply(x, d, lambda a: float(a @ w / w.sum()))


def scale(x: DF) -> DF:
    s = x.abs().sum(axis=1)
    return x.div(s.where(s > 0), axis=0)


def signedpower(x: DF, a) -> DF:
    return np.sign(x) * x.abs() ** a


def indneutralize(x: DF, g: DF) -> DF:
    """x minus the mean of its (date, group) cell; NaN x or group excluded."""
    long = DF({"x": x.stack(future_stack=True), "g": g.stack(future_stack=True)})
    long = long[long["x"].notna() & long["g"].notna()]
    date = long.index.get_level_values(0)
    mean = long.groupby([date, long["g"]])["x"].transform("mean")
    return (long["x"] - mean).unstack().reindex(index=x.index, columns=x.columns)


def log(x: DF) -> DF:
    return np.log(x.where(x > 0))


def sign(x: DF) -> DF:
    return np.sign(x)


def _cmp(a, b, op):
    a, b = _frame(a, b), _frame(b, a)
    return op(a, b).astype(float).where(a.notna() & b.notna())


def _frame(a, like):
    return a if isinstance(a, DF) else DF(a, index=like.index, columns=like.columns)


def lt(a, b):
    return _cmp(a, b, lambda p, q: p < q)


def gt(a, b):
    return _cmp(a, b, lambda p, q: p > q)


def eq(a, b):
    return _cmp(a, b, lambda p, q: p == q)


def or_(a: DF, b: DF) -> DF:
    return ((a > 0) | (b > 0)).astype(float).where(a.notna() & b.notna())


def where(c: DF, a, b) -> DF:
    a, b = _frame(a, c), _frame(b, c)
    return a.where(c > 0, b).where(c.notna())


def emax(a: DF, b: DF) -> DF:
    """``max(x, y)`` of two expressions (elementwise)."""
    return np.maximum(a, b)


def emin(a: DF, b: DF) -> DF:
    return np.minimum(a, b)


# ------------------------------------------------------------------------ the alphas

def _alphas(d: dict[str, DF]) -> dict:  # noqa: C901  (one transcription per alpha)
    open, high, low, close = d["open"], d["high"], d["low"], d["close"]   # noqa: A001
    vwap, volume, returns, cap, ind = d["vwap"], d["volume"], d["returns"], d["cap"], d["ind"]

    def adv(n):
        return ts_sum(d["amount"], n) / n

    def IndNeutralize(x, _level):  # noqa: N802  every IndClass level -> our one industry
        return indneutralize(x, ind)

    Ts_Rank, Ts_ArgMax, Ts_ArgMin, SignedPower = ts_rank, ts_argmax, ts_argmin, signedpower
    Log, Sign = log, sign
    abs_ = np.abs
    a = {}
    a[1] = lambda: rank(Ts_ArgMax(SignedPower(where(lt(returns, 0), stddev(returns, 20), close),
                                              2.), 5)) - 0.5
    a[2] = lambda: -1 * correlation(rank(delta(log(volume), 2)), rank(((close - open) / open)), 6)
    a[3] = lambda: -1 * correlation(rank(open), rank(volume), 10)
    a[4] = lambda: -1 * Ts_Rank(rank(low), 9)
    a[5] = lambda: rank((open - (ts_sum(vwap, 10) / 10))) * (-1 * abs_(rank((close - vwap))))
    a[6] = lambda: -1 * correlation(open, volume, 10)
    a[7] = lambda: where(lt(adv(20), volume), ((-1 * ts_rank(abs_(delta(close, 7)), 60))
                                              * sign(delta(close, 7))), (-1 * 1))

    def _a8():
        s = ts_sum(open, 5) * ts_sum(returns, 5)
        return -1 * rank((s - delay(s, 10)))
    a[8] = _a8

    def _a9(n):
        dc = delta(close, 1)
        return where(lt(0, ts_min(dc, n)), dc, where(lt(ts_max(dc, n), 0), dc, (-1 * dc)))
    a[9] = lambda: _a9(5)
    a[10] = lambda: rank(_a9(4))
    a[11] = lambda: ((rank(ts_max((vwap - close), 3)) + rank(ts_min((vwap - close), 3)))
                     * rank(delta(volume, 3)))
    a[12] = lambda: sign(delta(volume, 1)) * (-1 * delta(close, 1))
    a[13] = lambda: -1 * rank(covariance(rank(close), rank(volume), 5))
    a[14] = lambda: (-1 * rank(delta(returns, 3))) * correlation(open, volume, 10)
    a[15] = lambda: -1 * ts_sum(rank(correlation(rank(high), rank(volume), 3)), 3)
    a[16] = lambda: -1 * rank(covariance(rank(high), rank(volume), 5))
    a[17] = lambda: (((-1 * rank(ts_rank(close, 10))) * rank(delta(delta(close, 1), 1)))
                     * rank(ts_rank((volume / adv(20)), 5)))
    a[18] = lambda: -1 * rank(((stddev(abs_((close - open)), 5) + (close - open))
                               + correlation(close, open, 10)))
    a[19] = lambda: ((-1 * sign(((close - delay(close, 7)) + delta(close, 7))))
                     * (1 + rank((1 + ts_sum(returns, 250)))))
    a[20] = lambda: (((-1 * rank((open - delay(high, 1)))) * rank((open - delay(close, 1))))
                     * rank((open - delay(low, 1))))
    a[21] = lambda: where(
        lt(((ts_sum(close, 8) / 8) + stddev(close, 8)), (ts_sum(close, 2) / 2)), (-1 * 1),
        where(lt((ts_sum(close, 2) / 2), ((ts_sum(close, 8) / 8) - stddev(close, 8))), 1,
              where(or_(lt(1, (volume / adv(20))), eq((volume / adv(20)), 1)), 1, (-1 * 1))))
    a[22] = lambda: -1 * (delta(correlation(high, volume, 5), 5) * rank(stddev(close, 20)))
    a[23] = lambda: where(lt((ts_sum(high, 20) / 20), high), (-1 * delta(high, 2)), 0)

    def _a24():
        r = delta((ts_sum(close, 100) / 100), 100) / delay(close, 100)
        return where(or_(lt(r, 0.05), eq(r, 0.05)), (-1 * (close - ts_min(close, 100))),
                     (-1 * delta(close, 3)))
    a[24] = _a24
    a[25] = lambda: rank(((((-1 * returns) * adv(20)) * vwap) * (high - close)))
    a[26] = lambda: -1 * ts_max(correlation(ts_rank(volume, 5), ts_rank(high, 5), 5), 3)
    a[27] = lambda: where(lt(0.5, rank((ts_sum(correlation(rank(volume), rank(vwap), 6), 2)
                                        / 2.0))), (-1 * 1), 1)
    a[28] = lambda: scale(((correlation(adv(20), low, 5) + ((high + low) / 2)) - close))
    a[29] = lambda: (ts_min(product(rank(rank(scale(log(ts_sum(ts_min(rank(rank(
        (-1 * rank(delta((close - 1), 5))))), 2), 1))))), 1), 5)
        + ts_rank(delay((-1 * returns), 6), 5))
    a[30] = lambda: (((1.0 - rank(((sign((close - delay(close, 1)))
                                    + sign((delay(close, 1) - delay(close, 2))))
                                   + sign((delay(close, 2) - delay(close, 3))))))
                      * ts_sum(volume, 5)) / ts_sum(volume, 20))
    a[31] = lambda: ((rank(rank(rank(decay_linear((-1 * rank(rank(delta(close, 10)))), 10))))
                      + rank((-1 * delta(close, 3))))
                     + sign(scale(correlation(adv(20), low, 12))))
    a[32] = lambda: (scale(((ts_sum(close, 7) / 7) - close))
                     + (20 * scale(correlation(vwap, delay(close, 5), 230))))
    a[33] = lambda: rank((-1 * ((1 - (open / close)) ** 1)))
    a[34] = lambda: rank(((1 - rank((stddev(returns, 2) / stddev(returns, 5))))
                          + (1 - rank(delta(close, 1)))))
    a[35] = lambda: ((Ts_Rank(volume, 32) * (1 - Ts_Rank(((close + high) - low), 16)))
                     * (1 - Ts_Rank(returns, 32)))
    a[36] = lambda: (((((2.21 * rank(correlation((close - open), delay(volume, 1), 15)))
                        + (0.7 * rank((open - close))))
                       + (0.73 * rank(Ts_Rank(delay((-1 * returns), 6), 5))))
                      + rank(abs_(correlation(vwap, adv(20), 6))))
                     + (0.6 * rank((((ts_sum(close, 200) / 200) - open) * (close - open)))))
    a[37] = lambda: (rank(correlation(delay((open - close), 1), close, 200))
                     + rank((open - close)))
    a[38] = lambda: (-1 * rank(Ts_Rank(close, 10))) * rank((close / open))
    a[39] = lambda: ((-1 * rank((delta(close, 7)
                                 * (1 - rank(decay_linear((volume / adv(20)), 9))))))
                     * (1 + rank(ts_sum(returns, 250))))
    a[40] = lambda: (-1 * rank(stddev(high, 10))) * correlation(high, volume, 10)
    a[41] = lambda: ((high * low) ** 0.5) - vwap
    a[42] = lambda: rank((vwap - close)) / rank((vwap + close))
    a[43] = lambda: ts_rank((volume / adv(20)), 20) * ts_rank((-1 * delta(close, 7)), 8)
    a[44] = lambda: -1 * correlation(high, rank(volume), 5)
    a[45] = lambda: -1 * ((rank((ts_sum(delay(close, 5), 20) / 20))
                           * correlation(close, volume, 2))
                          * rank(correlation(ts_sum(close, 5), ts_sum(close, 20), 2)))

    def slope():
        return (((delay(close, 20) - delay(close, 10)) / 10)
                - ((delay(close, 10) - close) / 10))
    a[46] = lambda: where(lt(0.25, slope()), (-1 * 1),
                          where(lt(slope(), 0), 1, ((-1 * 1) * (close - delay(close, 1)))))
    a[47] = lambda: (((((rank((1 / close)) * volume) / adv(20))
                       * ((high * rank((high - close))) / (ts_sum(high, 5) / 5))))
                     - rank((vwap - delay(vwap, 5))))
    a[48] = lambda: (IndNeutralize(((correlation(delta(close, 1), delta(delay(close, 1), 1), 250)
                                     * delta(close, 1)) / close), "subindustry")
                     / ts_sum(((delta(close, 1) / delay(close, 1)) ** 2), 250))
    a[49] = lambda: where(lt(slope(), (-1 * 0.1)), 1, ((-1 * 1) * (close - delay(close, 1))))
    a[50] = lambda: -1 * ts_max(rank(correlation(rank(volume), rank(vwap), 5)), 5)
    a[51] = lambda: where(lt(slope(), (-1 * 0.05)), 1, ((-1 * 1) * (close - delay(close, 1))))
    a[52] = lambda: ((((-1 * ts_min(low, 5)) + delay(ts_min(low, 5), 5))
                      * rank(((ts_sum(returns, 240) - ts_sum(returns, 20)) / 220)))
                     * ts_rank(volume, 5))
    a[53] = lambda: -1 * delta((((close - low) - (high - close)) / (close - low)), 9)
    a[54] = lambda: (-1 * ((low - close) * (open ** 5))) / ((low - high) * (close ** 5))
    a[55] = lambda: -1 * correlation(rank(((close - ts_min(low, 12))
                                           / (ts_max(high, 12) - ts_min(low, 12)))),
                                     rank(volume), 6)
    a[56] = lambda: 0 - (1 * (rank((ts_sum(returns, 10) / ts_sum(ts_sum(returns, 2), 3)))
                              * rank((returns * cap))))
    a[57] = lambda: 0 - (1 * ((close - vwap) / decay_linear(rank(ts_argmax(close, 30)), 2)))
    a[58] = lambda: -1 * Ts_Rank(decay_linear(correlation(IndNeutralize(vwap, "sector"), volume,
                                                          3.92795), 7.89291), 5.50322)
    a[59] = lambda: -1 * Ts_Rank(decay_linear(correlation(IndNeutralize(
        ((vwap * 0.728317) + (vwap * (1 - 0.728317))), "industry"), volume, 4.25197),
        16.2289), 8.19648)
    a[60] = lambda: 0 - (1 * ((2 * scale(rank(((((close - low) - (high - close)) / (high - low))
                                               * volume))))
                              - scale(rank(ts_argmax(close, 10)))))
    a[61] = lambda: lt(rank((vwap - ts_min(vwap, 16.1219))),
                       rank(correlation(vwap, adv(180), 17.9282)))
    a[62] = lambda: lt(rank(correlation(vwap, ts_sum(adv(20), 22.4101), 9.91009)),
                       rank(lt((rank(open) + rank(open)),
                               (rank(((high + low) / 2)) + rank(high))))) * -1
    a[63] = lambda: (rank(decay_linear(delta(IndNeutralize(close, "industry"), 2.25164),
                                       8.22237))
                     - rank(decay_linear(correlation(((vwap * 0.318108) + (open * (1 - 0.318108))),
                                                     ts_sum(adv(180), 37.2467), 13.557),
                                         12.2883))) * -1
    a[64] = lambda: lt(rank(correlation(ts_sum(((open * 0.178404) + (low * (1 - 0.178404))),
                                               12.7054), ts_sum(adv(120), 12.7054), 16.6208)),
                       rank(delta(((((high + low) / 2) * 0.178404) + (vwap * (1 - 0.178404))),
                                  3.69741))) * -1
    a[65] = lambda: lt(rank(correlation(((open * 0.00817205) + (vwap * (1 - 0.00817205))),
                                        ts_sum(adv(60), 8.6911), 6.40374)),
                       rank((open - ts_min(open, 13.635)))) * -1
    a[66] = lambda: (rank(decay_linear(delta(vwap, 3.51013), 7.23052))
                     + Ts_Rank(decay_linear(((((low * 0.96633) + (low * (1 - 0.96633))) - vwap)
                                             / (open - ((high + low) / 2))), 11.4157),
                               6.72611)) * -1
    a[67] = lambda: (rank((high - ts_min(high, 2.14593)))
                     ** rank(correlation(IndNeutralize(vwap, "sector"),
                                         IndNeutralize(adv(20), "subindustry"), 6.02936))) * -1
    a[68] = lambda: lt(Ts_Rank(correlation(rank(high), rank(adv(15)), 8.91644), 13.9333),
                       rank(delta(((close * 0.518371) + (low * (1 - 0.518371))), 1.06157))) * -1
    a[69] = lambda: (rank(ts_max(delta(IndNeutralize(vwap, "industry"), 2.72412), 4.79344))
                     ** Ts_Rank(correlation(((close * 0.490655) + (vwap * (1 - 0.490655))),
                                            adv(20), 4.92416), 9.0615)) * -1
    a[70] = lambda: (rank(delta(vwap, 1.29456))
                     ** Ts_Rank(correlation(IndNeutralize(close, "industry"), adv(50), 17.8256),
                                17.9171)) * -1
    a[71] = lambda: emax(Ts_Rank(decay_linear(correlation(Ts_Rank(close, 3.43976),
                                                          Ts_Rank(adv(180), 12.0647), 18.0175),
                                              4.20501), 15.6948),
                         Ts_Rank(decay_linear((rank(((low + open) - (vwap + vwap))) ** 2),
                                              16.4662), 4.4388))
    a[72] = lambda: (rank(decay_linear(correlation(((high + low) / 2), adv(40), 8.93345),
                                       10.1519))
                     / rank(decay_linear(correlation(Ts_Rank(vwap, 3.72469),
                                                     Ts_Rank(volume, 18.5188), 6.86671),
                                         2.95011)))

    def _ol():
        return (open * 0.147155) + (low * (1 - 0.147155))
    a[73] = lambda: emax(rank(decay_linear(delta(vwap, 4.72775), 2.91864)),
                         Ts_Rank(decay_linear(((delta(_ol(), 2.03608) / _ol()) * -1), 3.33829),
                                 16.7411)) * -1
    a[74] = lambda: lt(rank(correlation(close, ts_sum(adv(30), 37.4843), 15.1365)),
                       rank(correlation(rank(((high * 0.0261661) + (vwap * (1 - 0.0261661)))),
                                        rank(volume), 11.4791))) * -1
    a[75] = lambda: lt(rank(correlation(vwap, volume, 4.24304)),
                       rank(correlation(rank(low), rank(adv(50)), 12.4413)))
    a[76] = lambda: emax(rank(decay_linear(delta(vwap, 1.24383), 11.8259)),
                         Ts_Rank(decay_linear(Ts_Rank(correlation(IndNeutralize(low, "sector"),
                                                                  adv(81), 8.14941), 19.569),
                                              17.1543), 19.383)) * -1
    a[77] = lambda: emin(rank(decay_linear(((((high + low) / 2) + high) - (vwap + high)),
                                           20.0451)),
                         rank(decay_linear(correlation(((high + low) / 2), adv(40), 3.1614),
                                           5.64125)))
    a[78] = lambda: (rank(correlation(ts_sum(((low * 0.352233) + (vwap * (1 - 0.352233))),
                                             19.7428), ts_sum(adv(40), 19.7428), 6.83313))
                     ** rank(correlation(rank(vwap), rank(volume), 5.77492)))
    a[79] = lambda: lt(rank(delta(IndNeutralize(((close * 0.60733) + (open * (1 - 0.60733))),
                                                "sector"), 1.23438)),
                       rank(correlation(Ts_Rank(vwap, 3.60973), Ts_Rank(adv(150), 9.18637),
                                        14.6644)))
    a[80] = lambda: (rank(Sign(delta(IndNeutralize(((open * 0.868128) + (high * (1 - 0.868128))),
                                                   "industry"), 4.04545)))
                     ** Ts_Rank(correlation(high, adv(10), 5.11456), 5.53756)) * -1
    a[81] = lambda: lt(rank(Log(product(rank((rank(correlation(vwap, ts_sum(adv(10), 49.6054),
                                                               8.47743)) ** 4)), 14.9655))),
                       rank(correlation(rank(vwap), rank(volume), 5.07914))) * -1
    a[82] = lambda: emin(rank(decay_linear(delta(open, 1.46063), 14.8717)),
                         Ts_Rank(decay_linear(correlation(IndNeutralize(volume, "sector"),
                                                          ((open * 0.634196)
                                                           + (open * (1 - 0.634196))), 17.4842),
                                              6.92131), 13.4283)) * -1
    a[83] = lambda: ((rank(delay(((high - low) / (ts_sum(close, 5) / 5)), 2)) * rank(rank(volume)))
                     / (((high - low) / (ts_sum(close, 5) / 5)) / (vwap - close)))
    a[84] = lambda: SignedPower(Ts_Rank((vwap - ts_max(vwap, 15.3217)), 20.7127),
                                delta(close, 4.96796))
    a[85] = lambda: (rank(correlation(((high * 0.876703) + (close * (1 - 0.876703))), adv(30),
                                      9.61331))
                     ** rank(correlation(Ts_Rank(((high + low) / 2), 3.70596),
                                         Ts_Rank(volume, 10.1595), 7.11408)))
    a[86] = lambda: lt(Ts_Rank(correlation(close, ts_sum(adv(20), 14.7444), 6.00049), 20.4195),
                       rank(((open + close) - (vwap + open)))) * -1
    a[87] = lambda: emax(rank(decay_linear(delta(((close * 0.369701) + (vwap * (1 - 0.369701))),
                                                 1.91233), 2.65461)),
                         Ts_Rank(decay_linear(abs_(correlation(IndNeutralize(adv(81), "industry"),
                                                               close, 13.4132)), 4.89768),
                                 14.4535)) * -1
    a[88] = lambda: emin(rank(decay_linear(((rank(open) + rank(low)) - (rank(high) + rank(close))),
                                           8.06882)),
                         Ts_Rank(decay_linear(correlation(Ts_Rank(close, 8.44728),
                                                          Ts_Rank(adv(60), 20.6966), 8.01266),
                                              6.65053), 2.61957))
    a[89] = lambda: (Ts_Rank(decay_linear(correlation(((low * 0.967285) + (low * (1 - 0.967285))),
                                                      adv(10), 6.94279), 5.51607), 3.79744)
                     - Ts_Rank(decay_linear(delta(IndNeutralize(vwap, "industry"), 3.48158),
                                            10.1466), 15.3012))
    a[90] = lambda: (rank((close - ts_max(close, 4.66719)))
                     ** Ts_Rank(correlation(IndNeutralize(adv(40), "subindustry"), low, 5.38375),
                                3.21856)) * -1
    a[91] = lambda: (Ts_Rank(decay_linear(decay_linear(correlation(IndNeutralize(close, "industry"),
                                                                   volume, 9.74928), 16.398),
                                          3.83219), 4.8667)
                     - rank(decay_linear(correlation(vwap, adv(30), 4.01303), 2.6809))) * -1
    a[92] = lambda: emin(Ts_Rank(decay_linear(lt((((high + low) / 2) + close), (low + open)),
                                              14.7221), 18.8683),
                         Ts_Rank(decay_linear(correlation(rank(low), rank(adv(30)), 7.58555),
                                              6.94024), 6.80584))
    a[93] = lambda: (Ts_Rank(decay_linear(correlation(IndNeutralize(vwap, "industry"), adv(81),
                                                      17.4193), 19.848), 7.54455)
                     / rank(decay_linear(delta(((close * 0.524434) + (vwap * (1 - 0.524434))),
                                               2.77377), 16.2664)))
    a[94] = lambda: (rank((vwap - ts_min(vwap, 11.5783)))
                     ** Ts_Rank(correlation(Ts_Rank(vwap, 19.6462), Ts_Rank(adv(60), 4.02992),
                                            18.0926), 2.70756)) * -1
    a[95] = lambda: lt(rank((open - ts_min(open, 12.4105))),
                       Ts_Rank((rank(correlation(ts_sum(((high + low) / 2), 19.1351),
                                                 ts_sum(adv(40), 19.1351), 12.8742)) ** 5),
                               11.7584))
    a[96] = lambda: emax(Ts_Rank(decay_linear(correlation(rank(vwap), rank(volume), 3.83878),
                                              4.16783), 8.38151),
                         Ts_Rank(decay_linear(Ts_ArgMax(correlation(Ts_Rank(close, 7.45404),
                                                                    Ts_Rank(adv(60), 4.13242),
                                                                    3.65459), 12.6556),
                                              14.0365), 13.4143)) * -1
    a[97] = lambda: (rank(decay_linear(delta(IndNeutralize(((low * 0.721001)
                                                            + (vwap * (1 - 0.721001))),
                                                           "industry"), 3.3705), 20.4523))
                     - Ts_Rank(decay_linear(Ts_Rank(correlation(Ts_Rank(low, 7.87871),
                                                                Ts_Rank(adv(60), 17.255),
                                                                4.97547), 18.5925), 15.7152),
                               6.71659)) * -1
    a[98] = lambda: (rank(decay_linear(correlation(vwap, ts_sum(adv(5), 26.4719), 4.58418),
                                       7.18088))
                     - rank(decay_linear(Ts_Rank(Ts_ArgMin(correlation(rank(open), rank(adv(15)),
                                                                       20.8187), 8.62571),
                                                 6.95668), 8.07206)))
    a[99] = lambda: lt(rank(correlation(ts_sum(((high + low) / 2), 19.8975),
                                        ts_sum(adv(60), 19.8975), 8.8136)),
                       rank(correlation(low, volume, 6.28259))) * -1
    a[100] = lambda: 0 - (1 * (((1.5 * scale(indneutralize(indneutralize(rank(
        ((((close - low) - (high - close)) / (high - low)) * volume)), ind), ind)))
        - scale(indneutralize((correlation(close, rank(adv(20)), 5)
                               - rank(ts_argmin(close, 30))), ind)))
        * (volume / adv(20))))
    a[101] = lambda: (close - open) / ((high - low) + .001)
    return a


def paper_alpha(n: int, data: dict[str, np.ndarray]) -> np.ndarray:
    """Alpha#``n`` by the pandas transcription, on the factor-language panels ``data``.

    ``data`` holds ``open high low close vwap vol ret total_mv amount industry`` as ``(T, N)``
    arrays (the names the formulas use); they are renamed to the paper's.
    """
    names = {"open": "open", "high": "high", "low": "low", "close": "close", "vwap": "vwap",
             "vol": "volume", "ret": "returns", "total_mv": "cap", "amount": "amount",
             "industry": "ind"}
    frames = {p: DF(np.asarray(data[f], dtype=float)) for f, p in names.items()}
    with np.errstate(all="ignore"):
        out = DF(_alphas(frames)[n]()).to_numpy(dtype=float, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


#: The alpha numbers transcribed (all 101).
NUMBERS: tuple[int, ...] = tuple(range(1, 102))
