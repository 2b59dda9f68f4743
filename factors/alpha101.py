"""WorldQuant Alpha101 as a library set: the 101 formulaic alphas in the factor language.

Source: Z. Kakushadze (2016), "101 Formulaic Alphas", Wilmott 2016(84), arXiv:1601.00991,
appendix A (formulas) and its operator glossary. Every alpha is a
:class:`factors.library.NamedFactor` whose formula goes through the same parser, evaluator and
gate as any factor; ``mine library --set alpha101 [--add]`` lists / adds them. Each one is
tested against a pandas transcription of the paper's text (tests/factors/alpha101_pandas.py).

Inputs (paper -> field of :mod:`data.fields`)
----------------------------------------------
* ``open high low close vwap`` -> the back-adjusted prices of the same name; ``volume`` ->
  ``vol`` (shares); ``returns`` -> ``ret``; ``cap`` -> ``total_mv`` (yuan).
* ``adv{d}`` ("average daily dollar volume for the past d days") is a macro expanded in the
  formula text: ``adv{d}`` -> ``ts_mean(amount, d)``, ``amount`` being the traded value in yuan
  (Tushare amount x 1000; a proxy after 2023-03-17, see :mod:`data.fields`). The formulas
  below are written with the macro (:data:`TEMPLATES`) and stored expanded
  (:data:`ALPHA101`, :func:`expand`).
* ``IndNeutralize(x, IndClass.{sector, industry, subindustry})`` -> ``cs_neutralize(x,
  industry)``: the warehouse has ONE classification level (the ``industry`` field: Shenwan L1,
  dated where ``industry_sw.parquet`` exists, else the static ``stock_basic`` label), so every
  level uses it. The alphas concerned are :data:`INDUSTRY_ALPHAS`.

Operator conventions
--------------------
* Non-integer windows (``7.89291``) are floored (``7``), as the paper prescribes ("d ...
  non-integer ... converted to floor(d)"); the floored integers are written in the formulas.
* ``Ts_ArgMax(x, d)`` / ``Ts_ArgMin(x, d)`` ("which day ts_max(x, d) occurred on") is read as
  the number of days ago, 0 = today, within the last ``d`` observations: exactly our
  ``ts_argmax`` / ``ts_argmin`` (ties -> the most recent day), used unchanged. The other common
  reading, the 1-based position from the oldest day (``rolling(d).apply(np.argmax) + 1``), is
  ``d - ts_argmax(x, d)``; it would change alphas 1, 57, 60, 96, 98 and 100 (each ranks the
  arg-extreme, so that reading reverses the order).
* ``min(x, d)`` with an integer ``d`` (alpha 29) is ``ts_min``; ``min`` / ``max`` of two
  expressions (alphas 71, 73, 76, 77, 82, 87, 88, 92, 96) are elementwise.
* ``a < b`` -> ``lt(a, b)`` (1.0 / 0.0, NaN if either is NaN); ``c ? a : b`` ->
  ``where(c, a, b)``; ``(1 < v) || (v == 1)`` -> ``1.0 - lt(v, 1.0)``; ``a <= 0.05`` written as
  ``(a < 0.05) || (a == 0.05)`` -> ``1.0 - gt(a, 0.05)``; ``x ^ a`` -> ``power(x, a)``;
  ``SignedPower`` -> ``signed_power``; ``product`` -> ``ts_product``; ``scale`` ->
  ``cs_scale``; ``rank`` -> ``cs_rank``; ``Ts_Rank`` -> ``ts_rank``; ``stddev`` -> ``ts_std``
  (``ddof=1``); ``sum`` -> ``ts_sum``; ``correlation`` / ``covariance`` -> ``ts_corr`` /
  ``ts_cov``; ``decay_linear`` -> ``ts_decay_linear``; ``delay`` / ``delta`` -> ``ts_delay`` /
  ``ts_delta``.
* Price-level constants (alpha 46's 0.25, 49's -0.1, 51's -0.05, 101's 0.001) are kept as
  written although back-adjusted prices have an arbitrary level per stock (see ``close`` in
  ``mine fields``): those thresholds are not comparable across stocks here.

Every alpha of the paper is built (:data:`UNAVAILABLE` is empty: no input is missing; the
industry-level substitution above is the only deviation).
"""
from __future__ import annotations

import re

from factors.library import NamedFactor

_REF = "Kakushadze (2016), 101 Formulaic Alphas, arXiv:1601.00991, Alpha#{n}"

#: Alphas whose formula needs an input this data lacks, with the reason (none).
UNAVAILABLE: dict[str, str] = {}

_ADV = re.compile(r"\badv(\d+)\b")


def expand(template: str) -> str:
    """Expand the ``adv{d}`` macro: ``adv20`` -> ``ts_mean(amount, 20)``.

    Parameters
    ----------
    template : str
        Formula text in the factor language plus ``adv{d}`` tokens.

    Returns
    -------
    str
        The formula with every ``adv{d}`` replaced (average daily traded value in yuan over
        the last ``d`` observations, Alpha101's "average daily dollar volume").
    """
    return _ADV.sub(r"ts_mean(amount, \1)", template)


# Shared pieces (written once, as in the paper).
_SLOPE = ("((ts_delay(close, 20) - ts_delay(close, 10)) / 10.0 - "
          "(ts_delay(close, 10) - close) / 10.0)")
_D1 = "ts_delta(close, 1)"
_CLV = "(((close - low) - (high - close)) / (high - low))"


def _ab(d: int) -> str:
    """Alphas 9 / 10: keep the trend when the last ``d`` changes agree in sign, else revert."""
    return (f"where(lt(0.0, ts_min({_D1}, {d})), {_D1}, "
            f"where(lt(ts_max({_D1}, {d}), 0.0), {_D1}, -{_D1}))")


#: Alpha number -> formula template (factor language + ``adv{d}`` macro).
TEMPLATES: dict[int, str] = {
    1: "cs_rank(ts_argmax(signed_power(where(lt(ret, 0.0), ts_std(ret, 20), close), 2.0), 5)) "
       "- 0.5",
    2: "-ts_corr(cs_rank(ts_delta(log(vol), 2)), cs_rank((close - open) / open), 6)",
    3: "-ts_corr(cs_rank(open), cs_rank(vol), 10)",
    4: "-ts_rank(cs_rank(low), 9)",
    5: "cs_rank(open - ts_sum(vwap, 10) / 10.0) * -abs(cs_rank(close - vwap))",
    6: "-ts_corr(open, vol, 10)",
    7: "where(lt(adv20, vol), -ts_rank(abs(ts_delta(close, 7)), 60) * sign(ts_delta(close, 7)), "
       "-1.0)",
    8: "-cs_rank(ts_sum(open, 5) * ts_sum(ret, 5) - ts_delay(ts_sum(open, 5) * ts_sum(ret, 5), "
       "10))",
    9: _ab(5),
    10: f"cs_rank({_ab(4)})",
    11: "(cs_rank(ts_max(vwap - close, 3)) + cs_rank(ts_min(vwap - close, 3))) * "
        "cs_rank(ts_delta(vol, 3))",
    12: "sign(ts_delta(vol, 1)) * -ts_delta(close, 1)",
    13: "-cs_rank(ts_cov(cs_rank(close), cs_rank(vol), 5))",
    14: "-cs_rank(ts_delta(ret, 3)) * ts_corr(open, vol, 10)",
    15: "-ts_sum(cs_rank(ts_corr(cs_rank(high), cs_rank(vol), 3)), 3)",
    16: "-cs_rank(ts_cov(cs_rank(high), cs_rank(vol), 5))",
    17: "-cs_rank(ts_rank(close, 10)) * cs_rank(ts_delta(ts_delta(close, 1), 1)) * "
        "cs_rank(ts_rank(vol / adv20, 5))",
    18: "-cs_rank(ts_std(abs(close - open), 5) + (close - open) + ts_corr(close, open, 10))",
    19: "-sign((close - ts_delay(close, 7)) + ts_delta(close, 7)) * "
        "(1.0 + cs_rank(1.0 + ts_sum(ret, 250)))",
    20: "-cs_rank(open - ts_delay(high, 1)) * cs_rank(open - ts_delay(close, 1)) * "
        "cs_rank(open - ts_delay(low, 1))",
    21: "where(lt(ts_sum(close, 8) / 8.0 + ts_std(close, 8), ts_sum(close, 2) / 2.0), -1.0, "
        "where(lt(ts_sum(close, 2) / 2.0, ts_sum(close, 8) / 8.0 - ts_std(close, 8)), 1.0, "
        "where(1.0 - lt(vol / adv20, 1.0), 1.0, -1.0)))",
    22: "-(ts_delta(ts_corr(high, vol, 5), 5) * cs_rank(ts_std(close, 20)))",
    23: "where(lt(ts_sum(high, 20) / 20.0, high), -ts_delta(high, 2), 0.0)",
    24: "where(1.0 - gt(ts_delta(ts_sum(close, 100) / 100.0, 100) / ts_delay(close, 100), 0.05), "
        "-(close - ts_min(close, 100)), -ts_delta(close, 3))",
    25: "cs_rank(-ret * adv20 * vwap * (high - close))",
    26: "-ts_max(ts_corr(ts_rank(vol, 5), ts_rank(high, 5), 5), 3)",
    27: "where(lt(0.5, cs_rank(ts_sum(ts_corr(cs_rank(vol), cs_rank(vwap), 6), 2) / 2.0)), -1.0, "
        "1.0)",
    28: "cs_scale(ts_corr(adv20, low, 5) + (high + low) / 2.0 - close)",
    29: "ts_min(ts_product(cs_rank(cs_rank(cs_scale(log(ts_sum(ts_min(cs_rank(cs_rank("
        "-cs_rank(ts_delta(close - 1.0, 5)))), 2), 1))))), 1), 5) + "
        "ts_rank(ts_delay(-ret, 6), 5)",
    30: "(1.0 - cs_rank(sign(close - ts_delay(close, 1)) + "
        "sign(ts_delay(close, 1) - ts_delay(close, 2)) + "
        "sign(ts_delay(close, 2) - ts_delay(close, 3)))) * ts_sum(vol, 5) / ts_sum(vol, 20)",
    31: "cs_rank(cs_rank(cs_rank(ts_decay_linear(-cs_rank(cs_rank(ts_delta(close, 10))), 10)))) "
        "+ cs_rank(-ts_delta(close, 3)) + sign(cs_scale(ts_corr(adv20, low, 12)))",
    32: "cs_scale(ts_sum(close, 7) / 7.0 - close) + "
        "20.0 * cs_scale(ts_corr(vwap, ts_delay(close, 5), 230))",
    33: "cs_rank(-power(1.0 - open / close, 1.0))",
    34: "cs_rank((1.0 - cs_rank(ts_std(ret, 2) / ts_std(ret, 5))) + "
        "(1.0 - cs_rank(ts_delta(close, 1))))",
    35: "ts_rank(vol, 32) * (1.0 - ts_rank(close + high - low, 16)) * (1.0 - ts_rank(ret, 32))",
    36: "2.21 * cs_rank(ts_corr(close - open, ts_delay(vol, 1), 15)) + 0.7 * cs_rank(open - close)"
        " + 0.73 * cs_rank(ts_rank(ts_delay(-ret, 6), 5)) + cs_rank(abs(ts_corr(vwap, adv20, 6)))"
        " + 0.6 * cs_rank((ts_sum(close, 200) / 200.0 - open) * (close - open))",
    37: "cs_rank(ts_corr(ts_delay(open - close, 1), close, 200)) + cs_rank(open - close)",
    38: "-cs_rank(ts_rank(close, 10)) * cs_rank(close / open)",
    39: "-cs_rank(ts_delta(close, 7) * (1.0 - cs_rank(ts_decay_linear(vol / adv20, 9)))) * "
        "(1.0 + cs_rank(ts_sum(ret, 250)))",
    40: "-cs_rank(ts_std(high, 10)) * ts_corr(high, vol, 10)",
    41: "power(high * low, 0.5) - vwap",
    42: "cs_rank(vwap - close) / cs_rank(vwap + close)",
    43: "ts_rank(vol / adv20, 20) * ts_rank(-ts_delta(close, 7), 8)",
    44: "-ts_corr(high, cs_rank(vol), 5)",
    45: "-(cs_rank(ts_sum(ts_delay(close, 5), 20) / 20.0) * ts_corr(close, vol, 2) * "
        "cs_rank(ts_corr(ts_sum(close, 5), ts_sum(close, 20), 2)))",
    46: f"where(lt(0.25, {_SLOPE}), -1.0, where(lt({_SLOPE}, 0.0), 1.0, "
        "-(close - ts_delay(close, 1))))",
    47: "cs_rank(1.0 / close) * vol / adv20 * (high * cs_rank(high - close) / "
        "(ts_sum(high, 5) / 5.0)) - cs_rank(vwap - ts_delay(vwap, 5))",
    48: "cs_neutralize(ts_corr(ts_delta(close, 1), ts_delta(ts_delay(close, 1), 1), 250) * "
        "ts_delta(close, 1) / close, industry) / "
        "ts_sum(power(ts_delta(close, 1) / ts_delay(close, 1), 2.0), 250)",
    49: f"where(lt({_SLOPE}, -0.1), 1.0, -(close - ts_delay(close, 1)))",
    50: "-ts_max(cs_rank(ts_corr(cs_rank(vol), cs_rank(vwap), 5)), 5)",
    51: f"where(lt({_SLOPE}, -0.05), 1.0, -(close - ts_delay(close, 1)))",
    52: "(-ts_min(low, 5) + ts_delay(ts_min(low, 5), 5)) * "
        "cs_rank((ts_sum(ret, 240) - ts_sum(ret, 20)) / 220.0) * ts_rank(vol, 5)",
    53: "-ts_delta(((close - low) - (high - close)) / (close - low), 9)",
    54: "-((low - close) * power(open, 5.0)) / ((low - high) * power(close, 5.0))",
    55: "-ts_corr(cs_rank((close - ts_min(low, 12)) / (ts_max(high, 12) - ts_min(low, 12))), "
        "cs_rank(vol), 6)",
    56: "-(cs_rank(ts_sum(ret, 10) / ts_sum(ts_sum(ret, 2), 3)) * cs_rank(ret * total_mv))",
    57: "-((close - vwap) / ts_decay_linear(cs_rank(ts_argmax(close, 30)), 2))",
    58: "-ts_rank(ts_decay_linear(ts_corr(cs_neutralize(vwap, industry), vol, 3), 7), 5)",
    59: "-ts_rank(ts_decay_linear(ts_corr(cs_neutralize(vwap * 0.728317 + "
        "vwap * (1.0 - 0.728317), industry), vol, 4), 16), 8)",
    60: f"-(2.0 * cs_scale(cs_rank({_CLV} * vol)) - cs_scale(cs_rank(ts_argmax(close, 10))))",
    61: "lt(cs_rank(vwap - ts_min(vwap, 16)), cs_rank(ts_corr(vwap, adv180, 17)))",
    62: "lt(cs_rank(ts_corr(vwap, ts_sum(adv20, 22), 9)), cs_rank(lt(cs_rank(open) + "
        "cs_rank(open), cs_rank((high + low) / 2.0) + cs_rank(high)))) * -1.0",
    63: "(cs_rank(ts_decay_linear(ts_delta(cs_neutralize(close, industry), 2), 8)) - "
        "cs_rank(ts_decay_linear(ts_corr(vwap * 0.318108 + open * (1.0 - 0.318108), "
        "ts_sum(adv180, 37), 13), 12))) * -1.0",
    64: "lt(cs_rank(ts_corr(ts_sum(open * 0.178404 + low * (1.0 - 0.178404), 12), "
        "ts_sum(adv120, 12), 16)), cs_rank(ts_delta((high + low) / 2.0 * 0.178404 + "
        "vwap * (1.0 - 0.178404), 3))) * -1.0",
    65: "lt(cs_rank(ts_corr(open * 0.00817205 + vwap * (1.0 - 0.00817205), ts_sum(adv60, 8), 6)),"
        " cs_rank(open - ts_min(open, 13))) * -1.0",
    66: "(cs_rank(ts_decay_linear(ts_delta(vwap, 3), 7)) + ts_rank(ts_decay_linear("
        "(low * 0.96633 + low * (1.0 - 0.96633) - vwap) / (open - (high + low) / 2.0), 11), 6))"
        " * -1.0",
    67: "power(cs_rank(high - ts_min(high, 2)), cs_rank(ts_corr(cs_neutralize(vwap, industry), "
        "cs_neutralize(adv20, industry), 6))) * -1.0",
    68: "lt(ts_rank(ts_corr(cs_rank(high), cs_rank(adv15), 8), 13), "
        "cs_rank(ts_delta(close * 0.518371 + low * (1.0 - 0.518371), 1))) * -1.0",
    69: "power(cs_rank(ts_max(ts_delta(cs_neutralize(vwap, industry), 2), 4)), "
        "ts_rank(ts_corr(close * 0.490655 + vwap * (1.0 - 0.490655), adv20, 4), 9)) * -1.0",
    70: "power(cs_rank(ts_delta(vwap, 1)), ts_rank(ts_corr(cs_neutralize(close, industry), "
        "adv50, 17), 17)) * -1.0",
    71: "max(ts_rank(ts_decay_linear(ts_corr(ts_rank(close, 3), ts_rank(adv180, 12), 18), 4), "
        "15), ts_rank(ts_decay_linear(power(cs_rank(low + open - (vwap + vwap)), 2.0), 16), 4))",
    72: "cs_rank(ts_decay_linear(ts_corr((high + low) / 2.0, adv40, 8), 10)) / "
        "cs_rank(ts_decay_linear(ts_corr(ts_rank(vwap, 3), ts_rank(vol, 18), 6), 2))",
    73: "max(cs_rank(ts_decay_linear(ts_delta(vwap, 4), 2)), ts_rank(ts_decay_linear("
        "ts_delta(open * 0.147155 + low * (1.0 - 0.147155), 2) / "
        "(open * 0.147155 + low * (1.0 - 0.147155)) * -1.0, 3), 16)) * -1.0",
    74: "lt(cs_rank(ts_corr(close, ts_sum(adv30, 37), 15)), cs_rank(ts_corr(cs_rank(high * "
        "0.0261661 + vwap * (1.0 - 0.0261661)), cs_rank(vol), 11))) * -1.0",
    75: "lt(cs_rank(ts_corr(vwap, vol, 4)), cs_rank(ts_corr(cs_rank(low), cs_rank(adv50), 12)))",
    76: "max(cs_rank(ts_decay_linear(ts_delta(vwap, 1), 11)), ts_rank(ts_decay_linear(ts_rank("
        "ts_corr(cs_neutralize(low, industry), adv81, 8), 19), 17), 19)) * -1.0",
    77: "min(cs_rank(ts_decay_linear((high + low) / 2.0 + high - (vwap + high), 20)), "
        "cs_rank(ts_decay_linear(ts_corr((high + low) / 2.0, adv40, 3), 5)))",
    78: "power(cs_rank(ts_corr(ts_sum(low * 0.352233 + vwap * (1.0 - 0.352233), 19), "
        "ts_sum(adv40, 19), 6)), cs_rank(ts_corr(cs_rank(vwap), cs_rank(vol), 5)))",
    79: "lt(cs_rank(ts_delta(cs_neutralize(close * 0.60733 + open * (1.0 - 0.60733), industry), "
        "1)), cs_rank(ts_corr(ts_rank(vwap, 3), ts_rank(adv150, 9), 14)))",
    80: "power(cs_rank(sign(ts_delta(cs_neutralize(open * 0.868128 + high * (1.0 - 0.868128), "
        "industry), 4))), ts_rank(ts_corr(high, adv10, 5), 5)) * -1.0",
    81: "lt(cs_rank(log(ts_product(cs_rank(power(cs_rank(ts_corr(vwap, ts_sum(adv10, 49), 8)), "
        "4.0)), 14))), cs_rank(ts_corr(cs_rank(vwap), cs_rank(vol), 5))) * -1.0",
    82: "min(cs_rank(ts_decay_linear(ts_delta(open, 1), 14)), ts_rank(ts_decay_linear(ts_corr("
        "cs_neutralize(vol, industry), open * 0.634196 + open * (1.0 - 0.634196), 17), 6), 13))"
        " * -1.0",
    83: "cs_rank(ts_delay((high - low) / (ts_sum(close, 5) / 5.0), 2)) * cs_rank(cs_rank(vol)) / "
        "((high - low) / (ts_sum(close, 5) / 5.0) / (vwap - close))",
    84: "signed_power(ts_rank(vwap - ts_max(vwap, 15), 20), ts_delta(close, 4))",
    85: "power(cs_rank(ts_corr(high * 0.876703 + close * (1.0 - 0.876703), adv30, 9)), "
        "cs_rank(ts_corr(ts_rank((high + low) / 2.0, 3), ts_rank(vol, 10), 7)))",
    86: "lt(ts_rank(ts_corr(close, ts_sum(adv20, 14), 6), 20), "
        "cs_rank(open + close - (vwap + open))) * -1.0",
    87: "max(cs_rank(ts_decay_linear(ts_delta(close * 0.369701 + vwap * (1.0 - 0.369701), 1), "
        "2)), ts_rank(ts_decay_linear(abs(ts_corr(cs_neutralize(adv81, industry), close, 13)), "
        "4), 14)) * -1.0",
    88: "min(cs_rank(ts_decay_linear(cs_rank(open) + cs_rank(low) - (cs_rank(high) + "
        "cs_rank(close)), 8)), ts_rank(ts_decay_linear(ts_corr(ts_rank(close, 8), "
        "ts_rank(adv60, 20), 8), 6), 2))",
    89: "ts_rank(ts_decay_linear(ts_corr(low * 0.967285 + low * (1.0 - 0.967285), adv10, 6), 5), "
        "3) - ts_rank(ts_decay_linear(ts_delta(cs_neutralize(vwap, industry), 3), 10), 15)",
    90: "power(cs_rank(close - ts_max(close, 4)), ts_rank(ts_corr(cs_neutralize(adv40, "
        "industry), low, 5), 3)) * -1.0",
    91: "(ts_rank(ts_decay_linear(ts_decay_linear(ts_corr(cs_neutralize(close, industry), vol, "
        "9), 16), 3), 4) - cs_rank(ts_decay_linear(ts_corr(vwap, adv30, 4), 2))) * -1.0",
    92: "min(ts_rank(ts_decay_linear(lt((high + low) / 2.0 + close, low + open), 14), 18), "
        "ts_rank(ts_decay_linear(ts_corr(cs_rank(low), cs_rank(adv30), 7), 6), 6))",
    93: "ts_rank(ts_decay_linear(ts_corr(cs_neutralize(vwap, industry), adv81, 17), 19), 7) / "
        "cs_rank(ts_decay_linear(ts_delta(close * 0.524434 + vwap * (1.0 - 0.524434), 2), 16))",
    94: "power(cs_rank(vwap - ts_min(vwap, 11)), ts_rank(ts_corr(ts_rank(vwap, 19), "
        "ts_rank(adv60, 4), 18), 2)) * -1.0",
    95: "lt(cs_rank(open - ts_min(open, 12)), ts_rank(power(cs_rank(ts_corr(ts_sum((high + low)"
        " / 2.0, 19), ts_sum(adv40, 19), 12)), 5.0), 11))",
    96: "max(ts_rank(ts_decay_linear(ts_corr(cs_rank(vwap), cs_rank(vol), 3), 4), 8), "
        "ts_rank(ts_decay_linear(ts_argmax(ts_corr(ts_rank(close, 7), ts_rank(adv60, 4), 3), "
        "12), 14), 13)) * -1.0",
    97: "(cs_rank(ts_decay_linear(ts_delta(cs_neutralize(low * 0.721001 + vwap * (1.0 - "
        "0.721001), industry), 3), 20)) - ts_rank(ts_decay_linear(ts_rank(ts_corr(ts_rank(low, "
        "7), ts_rank(adv60, 17), 4), 18), 15), 6)) * -1.0",
    98: "cs_rank(ts_decay_linear(ts_corr(vwap, ts_sum(adv5, 26), 4), 7)) - "
        "cs_rank(ts_decay_linear(ts_rank(ts_argmin(ts_corr(cs_rank(open), cs_rank(adv15), 20), "
        "8), 6), 8))",
    99: "lt(cs_rank(ts_corr(ts_sum((high + low) / 2.0, 19), ts_sum(adv60, 19), 8)), "
        "cs_rank(ts_corr(low, vol, 6))) * -1.0",
    100: f"-((1.5 * cs_scale(cs_neutralize(cs_neutralize(cs_rank({_CLV} * vol), industry), "
         "industry)) - cs_scale(cs_neutralize(ts_corr(close, cs_rank(adv20), 5) - "
         "cs_rank(ts_argmin(close, 30)), industry))) * (vol / adv20))",
    101: "(close - open) / (high - low + 0.001)",
}

#: Alphas that use ``IndNeutralize`` (sector / industry / subindustry in the paper; all on our
#: one level, the ``industry`` field).
INDUSTRY_ALPHAS: tuple[int, ...] = tuple(n for n, t in TEMPLATES.items() if "industry" in t)

_NOTES: dict[int, str] = {
    29: "min(x, 5) with an integer 5 read as ts_min. ",
    46: "Threshold 0.25 is in (back-adjusted) price units. ",
    49: "Threshold -0.1 is in (back-adjusted) price units. ",
    51: "Threshold -0.05 is in (back-adjusted) price units. ",
    101: "The 0.001 is in (back-adjusted) price units. ",
}


def _describe(n: int) -> str:
    text = f"WorldQuant Alpha#{n} (Kakushadze 2016). "
    if "adv" in TEMPLATES[n]:
        text += "adv{d} = ts_mean(amount, d) (yuan). "
    if n in INDUSTRY_ALPHAS:
        text += "IndNeutralize on our one industry level (Shenwan L1 / static label). "
    if re.search(r"ts_arg(max|min)", TEMPLATES[n]):
        text += "Ts_ArgMax/ArgMin as days ago (0 = today). "
    return (text + _NOTES.get(n, "")).strip()


#: The 101 alphas, expanded (``adv{d}`` -> ``ts_mean(amount, d)``), names ``alpha001``...
ALPHA101: tuple[NamedFactor, ...] = tuple(
    NamedFactor(f"alpha{n:03d}", expand(t), _describe(n), _REF.format(n=n))
    for n, t in sorted(TEMPLATES.items()))
