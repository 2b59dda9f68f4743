"""The library of named factors, as data: name, formula, one-line description, reference.

Every formula is written in the factor language (see :mod:`factors.expr_parse`) and goes through the
same parser and evaluator as mined factors. Fields are back-adjusted prices unless ``raw_*``
(see :mod:`data.fields`). Where a source formula depends on the price *level* (which is arbitrary
for back-adjusted prices, whose base factor differs across stocks) it is normalised by the price,
and the deviation is stated in ``description``.

Factors the sample data cannot support are listed in :data:`UNAVAILABLE` with the reason; they
are never faked.
"""
from __future__ import annotations

from dataclasses import dataclass

from data.errors import AlphamineError


@dataclass(frozen=True)
class NamedFactor:
    """A named factor: formula text plus documentation."""

    name: str
    formula: str
    description: str
    reference: str


# RLSF building blocks (StockFactor, "Restorable Liquidity Shock Factor"), made causal.
_AT = "((turnover - ts_median(turnover, 252)) / ts_mad(turnover, 252))"
_AT_W = f"max(min({_AT}, 3), -3)"                      # +-3 winsorised abnormal turnover
_AMP = "((high - low) / close)"
_SI = f"({_AMP} / ({_AT_W} + 0.000001))"               # shock impact
_RR = f"(abs(close - ts_delay(close, 3)) / (ts_delay({_AMP}, 3) + 0.000001))"  # backward reversion
_LQI = f"(ts_delay({_SI}, 3) * {_RR})"

_TR = ("max(max(high - low, abs(high - ts_delay(close, 1))), "
       "abs(low - ts_delay(close, 1)))")                # Wilder's true range

LIBRARY: tuple[NamedFactor, ...] = (
    NamedFactor(
        "mom_60", "close / ts_delay(close, 60) - 1",
        "60-day price momentum on adjusted close.",
        "framework-design.md: mom_60 = adj_close / adj_close.shift(60) - 1"),
    NamedFactor(
        "size_micro", "-log(total_mv)",
        "Micro-cap size factor: minus log of (estimated) total market value in yuan.",
        "data README: use log(total_share x close); microcap-strategy.md"),
    NamedFactor(
        "rlsf", f"-ts_ema({_LQI}, 32)",
        "Restorable Liquidity Shock Factor, causal: abnormal turnover (252-day median/MAD, "
        "winsorised +-3) gives shock impact amp/AT; the reversion term looks BACK 3 days "
        "(|C_t - C_t-3| / amp_t-3) instead of the original's look-ahead C_t+3; EWMA lambda=0.94 "
        "as span 32; turnover uses total (not free-float) shares.",
        "stockfactor-gp-llm.md (RLSF, steps A-D), reversion term reversed for causality"),
    NamedFactor(
        "alpha1_gp",
        "log(abs(ts_delay(amount, 1))) / sign(ts_delay(vol, 20)) * ts_ema(high / ts_delay(high, 20), 10)",
        "GP-found Alpha1 of StockFactor: log|amount lag 1| / sign(volume lag 20) x EMA(high / "
        "high lag 20); the source does not give the EMA span, 10 is used.",
        "stockfactor-gp-llm.md: Alpha1 = mul(div(log(abs(total_turnover_Lag1)), "
        "SIGN(volume_Lag20)), EMA(div(high, high_Lag20)))"),
    NamedFactor(
        "ret", "log(close / ts_delay(close, 1))",
        "RET: one-day log return.", "alphaquant-design-zh.md basic factor 1"),
    NamedFactor(
        "pressure", "abs(open - close) / (high - low)",
        "PRESSURE: candle body over range. The source's sign branch "
        "(where(body > 0, body, -body)) is a no-op because body >= 0, so it is the body ratio.",
        "alphaquant-design-zh.md basic factor 2"),
    NamedFactor(
        "fomo", "(close - open) / (high - low)",
        "FOMO: signed candle body over range.", "alphaquant-design-zh.md basic factor 3"),
    NamedFactor(
        "dev", "abs(close / ts_mean(close, 20) - 1)",
        "DEV: distance from the 20-day moving average, as a fraction of the average (the source's "
        "|close - ma20| depends on the arbitrary adjusted price level).",
        "alphaquant-design-zh.md basic factor 4"),
    NamedFactor(
        "vol_20", "ts_std(ret, 20)",
        "VOL: 20-day standard deviation of daily returns.",
        "alphaquant-design-zh.md basic factor 5"),
    NamedFactor(
        "amp", "(high - low) / close",
        "AMP: daily amplitude (high - low) / close.", "alphaquant-design-zh.md basic factor 6"),
    NamedFactor(
        "rsi_14",
        "100 - 100 / (1 + ts_ema(max(ts_delta(close, 1), 0), 27) / "
        "ts_ema(max(-ts_delta(close, 1), 0), 27))",
        "Wilder's RSI(14): Wilder smoothing alpha = 1/14 is an EMA of span 27 (the source's "
        "100 - 100/(1+|diff|) is not RSI).",
        "Wilder (1978), New Concepts in Technical Trading Systems"),
    NamedFactor(
        "macd", "(ts_ema(close, 12) - ts_ema(close, 26)) / close",
        "MACD line EMA12 - EMA26, divided by close to be comparable across stocks.",
        "Appel (1979); alphaquant-design-zh.md advanced factor 2"),
    NamedFactor(
        "boll_width", "4 * ts_std(close, 20) / close",
        "Bollinger band width (upper - lower) / close with bands ma20 +- 2 std20.",
        "Bollinger (2001); alphaquant-design-zh.md advanced factors 3 and 7"),
    NamedFactor(
        "atr_14", f"ts_ema({_TR}, 27) / close",
        "ATR(14) with the true range max(H-L, |H-C_t-1|, |L-C_t-1|) and Wilder smoothing (span "
        "27), divided by close (the source's 'prev_high - prev_low' is not the true range).",
        "Wilder (1978)"),
    NamedFactor(
        "mom_20", "close / ts_delay(close, 20) - 1",
        "20-day momentum (the source's close - close[t-20] depends on the price level).",
        "alphaquant-design-zh.md advanced factor 6"),
)

#: Factors from the reference documents that this data cannot support, with the reason.
UNAVAILABLE: dict[str, str] = {
    "northbound_flow": "needs Stock Connect (northbound) holdings/flows, not in the warehouse",
    "market_sentiment": "needs external sentiment data (news/northbound), not in the warehouse",
    "industry_fund_flow": "needs order-flow / money-flow data, not in the warehouse",
}


def get_factor(name: str) -> NamedFactor:
    """Return the library factor called ``name``.

    Raises
    ------
    AlphamineError
        If the name is unknown or listed as unavailable (the message says why).
    """
    for f in LIBRARY:
        if f.name == name:
            return f
    if name in UNAVAILABLE:
        raise AlphamineError(f"factor {name!r} is unavailable: {UNAVAILABLE[name]}")
    raise AlphamineError(f"unknown library factor {name!r}; known: "
                         f"{', '.join(f.name for f in LIBRARY)}")

