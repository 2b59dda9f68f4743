"""``[backtest]`` settings: combination, strategies, the account simulator and export.

Read from ``mine.toml`` by :func:`data.config.load_config`; consumed by :mod:`backtest.combine`,
:mod:`backtest.strategies`, :mod:`backtest.rules` (costs), :mod:`backtest.simulate` and
:mod:`backtest.export`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from data.config import WORK_DIR

__all__ = ["BacktestConfig"]


@dataclass(frozen=True)
class BacktestConfig:
    """``[backtest]``: combination, strategies, the account simulator and export (issue 3)."""

    #: Accepted values of the numeric keys (checked by the config loader).
    RANGES: ClassVar[dict] = {
        "init_cash": (0, None, True), "commission": (0, 1), "min_commission": (0, None),
        "transfer_fee": (0, 1), "slippage_bps": (0, None), "participation": (0, 1, True),
        "top": (1, None), "ic_window": (2, None), "max_corr": (0, 1, True), "n": (1, None),
        "n_drop": (0, None), "microcap_mv_min": (0, None), "microcap_mv_max": (0, None),
        "microcap_hold": (1, None), "microcap_every": (1, None), "turnover_budget": (0, None),
        "refit": (1, None), "min_train": (1, None), "ridge_alpha": (0, None),
        "num_threads": (1, None)}

    universe: str = "csi300"
    start: str = "2019-01-01"           # default backtest window: valid (test sealed)
    end: str = ""                       # "": end of valid (sealed), of test (--unseal-test)
    init_cash: float = 1_000_000.0      # yuan
    execution: str = "open"             # fill price: "open" (next open) or "vwap"
    commission: float = 0.0003          # rate on traded value, both sides
    min_commission: float = 5.0         # yuan per order
    transfer_fee: float = 0.00001       # rate on traded value, both sides
    slippage_bps: float = 5.0           # adverse price move per fill, basis points
    participation: float = 0.1          # max share of the day's volume per order
    benchmark: str = "000300.SH"
    out_dir: Path = WORK_DIR / "backtest"
    # combination and strategy defaults (`mine combine`)
    top: int = 10                       # leaderboard members considered (valid.rank_icir order)
    method: str = "ic"                  # ic | icir | equal | shrink | gs | sym | ridge | lgbm
    ic_window: int = 60                 # trailing days of RankIC behind the weights
    max_corr: float = 0.7               # |corr| on valid between members stays below
    strategy: str = "topk"              # topk (dropout, turnover budget) | topn
    n: int = 50                         # names held
    rebalance: str = "5"                # daily | weekly | monthly | every k trading days
    n_drop: int = 10                    # topk: upper bound on replacements per rebalance
    turnover_budget: float = 10.0       # topk: annual one-way turnover (x NAV); 0 = none
    refit: int = 250                    # ridge / lgbm combiner: trading days between refits
    min_train: int = 250                # ridge / lgbm: label days before the first fit
    ridge_alpha: float = 0.1            # ridge penalty, share of the mean feature variance
    num_threads: int = 2                # lgbm combiner threads
    # micro-cap preset (`mine backtest --preset microcap`; reference/microcap-strategy.md)
    microcap_universe: str = "all"
    microcap_mv_min: float = 2e9        # yuan (20 亿)
    microcap_mv_max: float = 3e9        # yuan (30 亿)
    microcap_hold: int = 3
    microcap_every: int = 5
