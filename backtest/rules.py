"""A-share trading rules shared by the account simulator and the order-plan export.

Every rule here is a small scalar (or vector) helper, so the simulator's numba kernel, the QMT
order plan and the tests agree on one definition.

Rules and sources
-----------------
Boards
    From the code prefix (:func:`data.limits.boards`): ``68`` STAR Market, ``30`` ChiNext,
    otherwise main board.
Lots (SSE and SZSE Trading Rules; SSE STAR Market special trading provisions)
    Main board and ChiNext: buy orders in multiples of 100 shares. STAR: a limit order is at
    least 200 shares, then any whole number of shares. Sells: the same steps, but a remaining
    holding below one lot (the odd lot; below 200 on STAR) is sold in one order, whole.
Stamp tax (sell side only, dated; Ministry of Finance announcements)
    0.3% both sides before 2008-04-24; 0.1% both sides from 2008-04-24; 0.1% on sells only from
    2008-09-19; 0.05% on sells from 2023-08-28 (MOF / STA announcement 2023 No. 39).
    :func:`stamp_tax_rate` returns the sell-side rate; the warehouse starts in 2010, so the
    pre-2008-09-19 buy-side tax is not modelled.
Commission and transfer fee
    Broker commission ``rate x value`` with a minimum per order (typically 5 yuan), both sides;
    exchange transfer fee ``rate x value`` both sides (0.001% of value for SSE and SZSE since
    2022-04-29; earlier rates differed by exchange and are not modelled: one configurable rate).
    Fees are not rounded to the cent.
Price limits
    Limit prices come from :meth:`data.manager.DataManager.limit_prices` (board-, ST- and
    date-aware). At the execution price, a buy at or above limit-up and a sell at or below
    limit-down are rejected (one cannot expect a fill in the queue at the limit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtest.errors import BacktestError
from backtest.settings import BacktestConfig
from data.limits import boards

#: Sell-side stamp-tax rate by effective date (ascending): rate applies from that date on.
STAMP_TAX_TABLE: tuple[tuple[str, float], ...] = (
    ("1900-01-01", 0.003),
    ("2008-04-24", 0.001),
    ("2023-08-28", 0.0005),
)
_STAMP_DATES = pd.DatetimeIndex([d for d, _ in STAMP_TAX_TABLE])
_STAMP_RATES = np.array([r for _, r in STAMP_TAX_TABLE])

#: Minimum buy quantity and step above it, per board (shares).
LOT_RULES: dict[str, tuple[int, int]] = {"main": (100, 100), "chinext": (100, 100),
                                         "star": (200, 1)}
_EPS = 1e-9      # tolerance when flooring share counts computed in floating point


def board(ts_code: str) -> str:
    """Board of one code: ``"main"``, ``"chinext"`` or ``"star"`` (:func:`data.limits.boards`)."""
    return str(boards([ts_code])[0])


def lot_params(codes) -> tuple[np.ndarray, np.ndarray]:
    """Minimum buy quantity and step (shares) per code, as int64 arrays (vector form)."""
    b = boards(list(codes))
    lo = np.array([LOT_RULES[x][0] for x in b], dtype=np.int64)
    st = np.array([LOT_RULES[x][1] for x in b], dtype=np.int64)
    return lo, st


def min_buy_qty(ts_code: str) -> int:
    """Smallest valid buy quantity in shares: 100, or 200 on the STAR Market."""
    return LOT_RULES[board(ts_code)][0]


def _round_lot(q: float, lo: int, step: int) -> int:
    n = math.floor(q + _EPS)
    if n < lo:
        return 0
    return int(lo + ((n - lo) // step) * step)


def round_buy_qty(ts_code: str, shares: float) -> int:
    """Largest valid buy quantity not above ``shares``.

    Main board / ChiNext: a multiple of 100; STAR: 0 below 200, else whole shares.
    Non-finite or non-positive ``shares`` gives 0.
    """
    if not (shares > 0 and math.isfinite(shares)):
        return 0
    lo, step = LOT_RULES[board(ts_code)]
    return _round_lot(float(shares), lo, step)


def round_sell_qty(ts_code: str, shares: float, held: int) -> int:
    """Largest valid sell quantity not above ``min(shares, held)``.

    Selling ``shares >= held`` sells the whole holding (odd lots included: an odd lot is
    sellable only whole). Otherwise: main board / ChiNext a multiple of 100, STAR at least 200
    then whole shares; 0 when no valid quantity fits.
    """
    held = int(held)
    if held <= 0 or not (shares > 0 and math.isfinite(shares)):
        return 0
    if shares + _EPS >= held:
        return held
    lo, step = LOT_RULES[board(ts_code)]
    return _round_lot(float(shares), lo, step)


def stamp_tax_rate(date) -> float:
    """Sell-side stamp-tax rate on ``date`` (fraction of traded value); see the module table."""
    i = int(_STAMP_DATES.searchsorted(pd.Timestamp(date), side="right")) - 1
    return float(_STAMP_RATES[max(i, 0)])


def stamp_tax_rates(dates) -> np.ndarray:
    """Vector form of :func:`stamp_tax_rate` for a sequence of dates (float64 array)."""
    i = _STAMP_DATES.searchsorted(pd.DatetimeIndex(dates), side="right") - 1
    return _STAMP_RATES[np.maximum(i, 0)]


@dataclass(frozen=True)
class CostModel:
    """Trading costs of one fill.

    Attributes
    ----------
    commission : float
        Broker commission rate on traded value, both sides (0.0003 = 0.03%).
    min_commission : float
        Minimum commission per order, yuan.
    transfer_fee : float
        Exchange transfer-fee rate on traded value, both sides.
    slippage_bps : float
        Adverse price move per fill in basis points (buys fill at ``p x (1 + bps/1e4)``,
        sells at ``p x (1 - bps/1e4)``).
    stamp_tax : bool
        Charge the dated sell-side stamp tax (:func:`stamp_tax_rate`); False only for oracles.
    """

    commission: float = 0.0003
    min_commission: float = 5.0
    transfer_fee: float = 0.00001
    slippage_bps: float = 0.0
    stamp_tax: bool = True

    def __post_init__(self):
        for name in ("commission", "min_commission", "transfer_fee", "slippage_bps"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise BacktestError(f"CostModel.{name} must be a finite number >= 0, got {v!r}")

    def fees(self, side: str, value: float, date) -> dict[str, float]:
        """Fees of one fill of ``value`` yuan (after slippage) on ``date``.

        Returns
        -------
        dict
            ``{"commission", "stamp_tax", "transfer_fee"}`` in yuan; all 0 for ``value <= 0``.
            Commission is ``max(rate x value, min_commission)``; stamp tax on sells only.

        Raises
        ------
        BacktestError
            If ``side`` is not ``"buy"`` or ``"sell"``.
        """
        if side not in ("buy", "sell"):
            raise BacktestError(f"side must be 'buy' or 'sell', got {side!r}")
        if not value > 0:
            return {"commission": 0.0, "stamp_tax": 0.0, "transfer_fee": 0.0}
        return {"commission": max(self.commission * value, self.min_commission),
                "stamp_tax": (stamp_tax_rate(date) * value
                              if side == "sell" and self.stamp_tax else 0.0),
                "transfer_fee": self.transfer_fee * value}

    def fill_price(self, side: str, price: float) -> float:
        """Execution price after slippage (against the trader)."""
        s = self.slippage_bps / 1e4
        return price * (1.0 + s) if side == "buy" else price * (1.0 - s)

    @classmethod
    def from_config(cls, bt: BacktestConfig) -> "CostModel":
        """From the ``[backtest]`` config section."""
        return cls(commission=float(bt.commission), min_commission=float(bt.min_commission),
                   transfer_fee=float(bt.transfer_fee), slippage_bps=float(bt.slippage_bps))

    @classmethod
    def zero(cls) -> "CostModel":
        """No costs at all, stamp tax included (for oracles)."""
        return cls(0.0, 0.0, 0.0, 0.0, stamp_tax=False)


def cents(price: float) -> int:
    """Price in integer cents, rounded half-up (the simulator kernel uses the same rule)."""
    return int(math.floor(price * 100.0 + 0.5))


def check_order(side: str, price: float, limit_up: float, limit_down: float,
                has_bar: bool) -> str | None:
    """Whether an order may trade at ``price`` on a day.

    Parameters
    ----------
    side : {"buy", "sell"}
    price : float
        Raw execution price (yuan), before slippage.
    limit_up, limit_down : float
        The day's raw limit prices; NaN = no limit (e.g. a new listing's first days).
    has_bar : bool
        Whether the stock trades that day.

    Returns
    -------
    str or None
        None if allowed, else the reason: ``"suspended"`` (no bar or no valid price),
        ``"limit_up_buy"`` (buy at or above limit-up), ``"limit_down_sell"`` (sell at or below
        limit-down). Prices are compared in integer cents, as the exchange does.
    """
    if side not in ("buy", "sell"):
        raise BacktestError(f"side must be 'buy' or 'sell', got {side!r}")
    if not has_bar or not (price > 0 and math.isfinite(price)):
        return "suspended"
    c = cents(price)
    if side == "buy" and math.isfinite(limit_up) and c >= cents(limit_up):
        return "limit_up_buy"
    if side == "sell" and math.isfinite(limit_down) and c <= cents(limit_down):
        return "limit_down_sell"
    return None


__all__ = ["board", "lot_params", "min_buy_qty", "round_buy_qty", "round_sell_qty",
           "stamp_tax_rate", "stamp_tax_rates", "CostModel", "check_order", "cents",
           "STAMP_TAX_TABLE", "LOT_RULES"]
