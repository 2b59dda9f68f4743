"""Alpha158-style feature set, as data: Qlib's Alpha158 re-expressed in the factor language.

Source: Qlib ``qlib/contrib/data/loader.py`` (``Alpha158DL.get_feature_config``, default config:
k-bar, price window 0 for OPEN HIGH LOW VWAP, rolling windows 5 10 20 30 60) and the rolling
kernels of ``qlib/data/_libs/rolling.pyx`` (Slope / Rsquare / Resi). Every feature is a
:class:`factors.library.NamedFactor` whose formula goes through the same parser and evaluator
as any factor (no second formula engine). Prices are back-adjusted (``open high low close vwap``),
volume is ``vol`` (lots, raw: Qlib divides volume by its adjustment factor; the ratios below only
differ on split days).

Re-expressions (exact, derived here; tested against ``numpy.polyfit`` in tests/models):

* Slope of ``y`` on time ``k = 1..d`` over the window: with ``DL = ts_decay_linear(y, d)``
  (weights ``d..1`` newest to oldest, i.e. weight ``k``) and ``M = ts_mean(y, d)``,
  ``slope = 6 (DL - M) / (d - 1)``.
* R-squared of that regression: ``corr(y, k)^2 = (slope * sqrt(d (d + 1) / 12) / ts_std(y, d))^2``.
* Residual of the latest point (Qlib ``Resi``): ``y - fitted_d = y + 2 M - 3 DL``.
* ``IdxMax(x, d)`` (1-based position from the oldest) is ``d - ts_argmax(x, d)``.

Differences from Qlib, documented rather than hidden:

* QTLU / QTLD use the dedicated operators ``ts_qtlu`` / ``ts_qtld`` (rolling 80% / 20%
  quantile, linear interpolation exactly as pandas ``rolling(d).quantile(q)``, which Qlib's
  ``Quantile`` uses); the level is fixed per operator since windows are the only non-panel
  arguments. All 158 of Qlib's features are built (:data:`UNSUPPORTED` is empty).
* Warm-up: our rolling operators output NaN for the first ``d - 1`` observations
  (min_periods = window); Qlib's use ``min_periods=1``. Those rows are NaN -> 0 after the
  dataset's normalisation and flagged in ``feature_valid``.
* Ties in IMAX / IMIN / IMXD: ours pick the most recent extreme, numpy's ``argmax`` the oldest.
"""
from __future__ import annotations

from data.errors import ConfigError
from factors.library import LIBRARY, NamedFactor

#: Rolling windows of Alpha158 (trading days).
WINDOWS: tuple[int, ...] = (5, 10, 20, 30, 60)
_EPS = "1e-12"
_REF = "Qlib Alpha158DL.get_feature_config"

#: Qlib features the factor language cannot express, with the reason (none left).
UNSUPPORTED: dict[str, str] = {}


def _f(name: str, formula: str, description: str) -> NamedFactor:
    return NamedFactor(name, formula, description, _REF)


def _kbar() -> list[NamedFactor]:
    rng = f"(high - low + {_EPS})"
    return [
        _f("KMID", "(close - open) / open", "candle body over open"),
        _f("KLEN", "(high - low) / open", "day range over open"),
        _f("KMID2", f"(close - open) / {rng}", "candle body over range"),
        _f("KUP", "(high - max(open, close)) / open", "upper shadow over open"),
        _f("KUP2", f"(high - max(open, close)) / {rng}", "upper shadow over range"),
        _f("KLOW", "(min(open, close) - low) / open", "lower shadow over open"),
        _f("KLOW2", f"(min(open, close) - low) / {rng}", "lower shadow over range"),
        _f("KSFT", "(2.0 * close - high - low) / open", "close position in the range, over open"),
        _f("KSFT2", f"(2.0 * close - high - low) / {rng}", "close position in the range"),
    ]


def _price() -> list[NamedFactor]:
    return [_f(f"{p.upper()}0", f"{p} / close", f"{p} over close") for p in
            ("open", "high", "low", "vwap")]


def _rolling(d: int) -> list[NamedFactor]:
    dc = "(close - ts_delay(close, 1))"
    dv = "(vol - ts_delay(vol, 1))"
    mean, dl = f"ts_mean(close, {d})", f"ts_decay_linear(close, {d})"
    slope_k = repr(6.0 / (d - 1))
    r2_k = repr(6.0 / (d - 1) * (d * (d + 1) / 12.0) ** 0.5)
    absdc = f"(ts_sum(abs({dc}), {d}) + {_EPS})"
    absdv = f"(ts_sum(abs({dv}), {d}) + {_EPS})"
    up, dn = f"ts_sum(max({dc}, 0.0), {d})", f"ts_sum(max(-{dc}, 0.0), {d})"
    vup, vdn = f"ts_sum(max({dv}, 0.0), {d})", f"ts_sum(max(-{dv}, 0.0), {d})"
    cntp, cntn = (f"ts_mean(gt(close, ts_delay(close, 1)), {d})",
                  f"ts_mean(lt(close, ts_delay(close, 1)), {d})")
    wv = "(abs(close / ts_delay(close, 1) - 1.0) * vol)"
    return [
        _f(f"ROC{d}", f"ts_delay(close, {d}) / close", f"close {d} days ago over close"),
        _f(f"MA{d}", f"{mean} / close", f"{d}-day mean close over close"),
        _f(f"STD{d}", f"ts_std(close, {d}) / close", f"{d}-day close std over close"),
        _f(f"BETA{d}", f"(({dl} - {mean}) * {slope_k}) / close",
           f"slope of close on time over {d} days, over close"),
        _f(f"RSQR{d}", f"power((({dl} - {mean}) * {r2_k}) / ts_std(close, {d}), 2.0)",
           f"R-squared of close on time over {d} days"),
        _f(f"RESI{d}", f"(close + 2.0 * {mean} - 3.0 * {dl}) / close",
           f"residual of today's close from the {d}-day time trend, over close"),
        _f(f"MAX{d}", f"ts_max(high, {d}) / close", f"{d}-day max high over close"),
        _f(f"MIN{d}", f"ts_min(low, {d}) / close", f"{d}-day min low over close"),
        _f(f"QTLU{d}", f"ts_qtlu(close, {d}) / close", f"{d}-day 80% quantile of close over close"),
        _f(f"QTLD{d}", f"ts_qtld(close, {d}) / close", f"{d}-day 20% quantile of close over close"),
        _f(f"RANK{d}", f"ts_rank(close, {d})", f"percentile of close within {d} days"),
        _f(f"RSV{d}", f"(close - ts_min(low, {d})) / (ts_max(high, {d}) - ts_min(low, {d}) + "
                      f"{_EPS})", f"close position in the {d}-day range"),
        _f(f"IMAX{d}", f"1.0 - ts_argmax(high, {d}) / {float(d)!r}",
           f"Aroon-up: position of the {d}-day high (1 = today)"),
        _f(f"IMIN{d}", f"1.0 - ts_argmin(low, {d}) / {float(d)!r}",
           f"Aroon-down: position of the {d}-day low (1 = today)"),
        _f(f"IMXD{d}", f"(ts_argmin(low, {d}) - ts_argmax(high, {d})) / {float(d)!r}",
           f"days from the {d}-day low to the high, over {d}"),
        _f(f"CORR{d}", f"ts_corr(close, log(vol + 1.0), {d})",
           f"{d}-day correlation of close and log volume"),
        _f(f"CORD{d}", f"ts_corr(close / ts_delay(close, 1), log(vol / ts_delay(vol, 1) + 1.0), "
                       f"{d})", f"{d}-day correlation of price change and volume change"),
        _f(f"CNTP{d}", cntp, f"share of up days in {d} days"),
        _f(f"CNTN{d}", cntn, f"share of down days in {d} days"),
        _f(f"CNTD{d}", f"{cntp} - {cntn}", f"up-day share minus down-day share, {d} days"),
        _f(f"SUMP{d}", f"{up} / {absdc}", f"RSI-like gains over total moves, {d} days"),
        _f(f"SUMN{d}", f"{dn} / {absdc}", f"losses over total moves, {d} days"),
        _f(f"SUMD{d}", f"({up} - {dn}) / {absdc}", f"gains minus losses over moves, {d} days"),
        _f(f"VMA{d}", f"ts_mean(vol, {d}) / (vol + {_EPS})", f"{d}-day mean volume over volume"),
        _f(f"VSTD{d}", f"ts_std(vol, {d}) / (vol + {_EPS})", f"{d}-day volume std over volume"),
        _f(f"WVMA{d}", f"ts_std({wv}, {d}) / (ts_mean({wv}, {d}) + {_EPS})",
           f"volume-weighted |return| volatility, {d} days"),
        _f(f"VSUMP{d}", f"{vup} / {absdv}", f"volume increases over total changes, {d} days"),
        _f(f"VSUMN{d}", f"{vdn} / {absdv}", f"volume decreases over total changes, {d} days"),
        _f(f"VSUMD{d}", f"({vup} - {vdn}) / {absdv}", f"volume RSI, {d} days"),
    ]


def _alpha158() -> tuple[NamedFactor, ...]:
    out = _kbar() + _price()
    # Qlib orders the rolling block by family, then window.
    per_window = [_rolling(d) for d in WINDOWS]
    for fam in range(len(per_window[0])):
        out += [block[fam] for block in per_window]
    return tuple(out)


#: The Alpha158-style features (all 158 of Qlib's), Qlib's order.
ALPHA158: tuple[NamedFactor, ...] = _alpha158()

#: Named feature sets: name -> features. ``alpha158`` adds the library factors (``lib_*``).
FEATURE_SETS: dict[str, tuple[NamedFactor, ...]] = {
    "alpha158": ALPHA158 + tuple(NamedFactor(f"lib_{f.name}", f.formula, f.description,
                                             f.reference) for f in LIBRARY),
    "qlib158": ALPHA158,
    "library": LIBRARY,
}

#: Suffix that adds the leaderboard pool to a feature set (``alpha158+pool``): every accepted
#: member of the workspace's universe and horizon becomes a feature ``pool_<name>`` with the
#: formula ``factor("<name>")`` (:func:`models.dataset.pool_features`).
POOL_SUFFIX = "+pool"
#: Every accepted ``feature_set`` value: the named sets and each with :data:`POOL_SUFFIX`.
FEATURE_SET_NAMES: tuple[str, ...] = tuple(FEATURE_SETS) + tuple(
    f"{k}{POOL_SUFFIX}" for k in FEATURE_SETS)


def feature_set(name: str) -> tuple[NamedFactor, ...]:
    """Return the named feature set.

    Parameters
    ----------
    name : str
        One of :data:`FEATURE_SETS` (``alpha158`` = Alpha158-style + library factors,
        ``qlib158`` = Alpha158-style only, ``library`` = library factors only).

    Raises
    ------
    ConfigError
        For an unknown name (the message lists the known ones).
    """
    try:
        return FEATURE_SETS[name]
    except KeyError:
        hint = (f" ({name!r} adds the leaderboard pool: build it with "
                "models.dataset.build_dataset, which knows the workspace)"
                if name in FEATURE_SET_NAMES else "")
        raise ConfigError(f"unknown feature set {name!r}; known: "
                          f"{', '.join(FEATURE_SETS)}{hint}") from None
