"""A-share account simulator: cash, positions, fills, costs and rejections, day by day.

Timing
    ``targets`` is long: ``trade_date, ts_code, target_weight[, strategy_name]``. Weights of
    ``trade_date = t`` are decided with data up to the close of ``t`` and executed on the first
    trading day of the market data strictly after ``t`` (the next open, or that day's VWAP with
    ``execution="vwap"``). A stock absent from a date's targets has target 0 on that date; a
    day whose preceding target date is absent keeps the holdings (no rebalance). When several
    target dates map to the same execution day (e.g. weekend dates), the latest one is used.
    Targets dated on or after the last market day are never executed.
Rebalance day
    1. Corporate actions before the open (see below). All holdings are sellable (T+1: shares
       bought on day ``t`` become sellable on the next trading day).
    2. ``nav_exec`` = cash + holdings marked at the execution price (last close when there is
       no bar); target quantity = ``target_weight x nav_exec / execution price``.
    3. Sells first (cash from sales usable the same day), then buys. An order on a stock with
       no bar is rejected (``suspended``); a buy at or above limit-up (``limit_up_buy``) or a
       sell at or below limit-down (``limit_down_sell``) at the raw execution price is rejected;
       an order above ``participation x day's volume`` is cut to it and the rest is logged
       (``participation``). Rejections are rows of :attr:`SimResult.rejected`, never dropped.
    4. Quantities: ``lots`` mode (default) rounds per :mod:`backtest.rules` (100-share lots,
       STAR >= 200 then 1-share steps, odd lots sellable whole); a new position that rounds to
       0 is logged ``below_min_lot``. ``lots=False``: whole shares; ``fractional=True``:
       exact fractional quantities (oracles).
    5. Buys are scaled by one common factor so their value plus fees fits in the cash, then
       each is capped by the cash left (``insufficient_cash`` if it falls to 0): cash is never
       negative.
    6. Fills at ``price x (1 +- slippage_bps / 1e4)`` against the trader; commission
       ``max(rate x value, min_commission)`` per order, transfer fee on both sides, stamp tax on
       sells at the dated rate (:func:`backtest.rules.stamp_tax_rate`).
    7. ``nav`` = cash + holdings marked at the raw close (last close while suspended).
Corporate actions (``corporate_actions=True``)
    On a stock's bar day where ``adj_factor`` differs from its previous value, the position's
    value is preserved as ``adj_factor`` says, with ratio ``r = adj_t / adj_prev``. Fractional
    mode: ``quantity *= r`` exactly. Lot / whole-share modes: the new quantity is
    ``floor(quantity x (1 + stk_div))`` with ``stk_div`` the bonus + transferred shares per
    share from ``dividend.parquet`` (bonus shares; capped at ``floor(quantity x r)``), or
    ``floor(quantity x r)`` when the market data carries no dividend table; the rest of the
    value, ``(quantity x r - new quantity) x last close / r`` (the cash dividend, and any
    fraction of a share), is credited as cash on the ex-date. Not modelled: dividend income
    tax, the delay between ex-date and pay date.
Causality
    Day ``t`` reads only market rows ``<= t`` and targets dated before ``t``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from backtest import _sim_kernel as K
from backtest.errors import BacktestError
from backtest.rules import CostModel, lot_params, stamp_tax_rates
from data.io import atomic_write

_MARKET_FIELDS = ("open", "close", "vwap", "pre_close", "vol", "limit_up", "limit_down",
                  "adj_factor")


@dataclass(frozen=True)
class SimConfig:
    """Simulator settings.

    Attributes
    ----------
    init_cash : float
        Starting cash, yuan.
    execution : {"open", "vwap"}
        Fill price on the execution day: raw open or raw VWAP.
    costs : CostModel
    participation : float or None
        Max share of the day's volume per order (None or 0 = no cap).
    lots, fractional, price_limits, t_plus_1, corporate_actions : bool
        Rule switches (module docstring). ``fractional=True`` overrides ``lots``.
    """

    init_cash: float = 1_000_000.0
    execution: str = "open"
    costs: CostModel = field(default_factory=CostModel)
    participation: float | None = 0.1
    lots: bool = True
    fractional: bool = False
    price_limits: bool = True
    t_plus_1: bool = True
    corporate_actions: bool = True

    def __post_init__(self):
        if self.execution not in ("open", "vwap"):
            raise BacktestError(f"execution must be 'open' or 'vwap', got {self.execution!r}")
        if not (np.isfinite(self.init_cash) and self.init_cash > 0):
            raise BacktestError(f"init_cash must be a positive number, got {self.init_cash!r}")
        if self.participation is not None and not (0 <= self.participation <= 1):
            raise BacktestError(f"participation must be in [0, 1] or None, got "
                                f"{self.participation!r}")

    @classmethod
    def from_config(cls, bt, **overrides) -> "SimConfig":
        """From the ``[backtest]`` section (:class:`data.config.BacktestConfig`)."""
        kw = dict(init_cash=float(bt.init_cash), execution=str(bt.execution),
                  costs=CostModel.from_config(bt), participation=float(bt.participation))
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def frictionless(cls, init_cash: float = 1_000_000.0, execution: str = "open"
                     ) -> "SimConfig":
        """Costs and constraints off, fractional shares (the evaluator oracle's setting)."""
        return cls(init_cash=init_cash, execution=execution, costs=CostModel.zero(),
                   participation=None, lots=False, fractional=True, price_limits=False,
                   t_plus_1=True, corporate_actions=True)


@dataclass
class MarketData:
    """Raw market arrays on trading days, ``(T, N)`` float64 (NaN = no bar / no limit).

    Attributes
    ----------
    dates : DatetimeIndex (T,); codes : Index (N,)
    open, close, vwap, pre_close : raw prices, yuan (vwap = amount / vol, or the (O+H+L+C)/4
        proxy after 2023-03-17)
    vol : shares traded
    limit_up, limit_down : raw limit prices, yuan (NaN = no limit)
    has_bar : bool, the stock trades that day
    adj_factor : cumulative backward adjustment factor (only ratios matter)
    bonus : bonus + transferred shares per share on ex-dates (0 elsewhere), or None when no
        dividend table is available (see the module docstring).
    """

    dates: pd.DatetimeIndex
    codes: pd.Index
    open: np.ndarray
    close: np.ndarray
    vwap: np.ndarray
    pre_close: np.ndarray
    vol: np.ndarray
    limit_up: np.ndarray
    limit_down: np.ndarray
    has_bar: np.ndarray
    adj_factor: np.ndarray
    bonus: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.dates), len(self.codes))

    @classmethod
    def from_arrays(cls, dates, codes, open, close, vwap=None, pre_close=None, vol=None,
                    limit_up=None, limit_down=None, has_bar=None, adj_factor=None,
                    bonus=None) -> "MarketData":
        """Build from small arrays (tests, hand-made scenarios).

        Defaults: ``vwap = open``, ``pre_close`` = previous close, ``vol`` = 1e12 shares
        (no participation bind), no price limits, ``has_bar`` = finite close, ``adj_factor``
        = 1, ``bonus`` None.

        Raises
        ------
        BacktestError
            On misaligned shapes or unsorted dates.
        """
        dates = pd.DatetimeIndex(dates, name="trade_date").as_unit("ns")
        codes = pd.Index([str(c) for c in codes], name="ts_code")
        T, N = len(dates), len(codes)
        if not (dates.is_monotonic_increasing and dates.is_unique):
            raise BacktestError("MarketData: dates must be strictly increasing")
        if codes.has_duplicates:
            raise BacktestError("MarketData: duplicate codes")

        def arr(x, name, default):
            a = default if x is None else np.array(x, dtype=np.float64)
            a = np.ascontiguousarray(a, dtype=np.float64)
            if a.shape != (T, N):
                raise BacktestError(f"MarketData: {name} has shape {a.shape}, expected "
                                    f"{(T, N)}")
            return a

        o = arr(open, "open", None)
        c = arr(close, "close", None)
        prev = np.vstack([np.full((1, N), np.nan), c[:-1]]) if T else c
        bar = (np.isfinite(c) if has_bar is None
               else np.ascontiguousarray(has_bar, dtype=np.bool_))
        if bar.shape != (T, N):
            raise BacktestError(f"MarketData: has_bar has shape {bar.shape}, expected {(T, N)}")
        return cls(dates=dates, codes=codes, open=o, close=c,
                   vwap=arr(vwap, "vwap", o.copy()),
                   pre_close=arr(pre_close, "pre_close", prev),
                   vol=arr(vol, "vol", np.full((T, N), 1e12)),
                   limit_up=arr(limit_up, "limit_up", np.full((T, N), np.nan)),
                   limit_down=arr(limit_down, "limit_down", np.full((T, N), np.nan)),
                   has_bar=bar, adj_factor=arr(adj_factor, "adj_factor", np.ones((T, N))),
                   bonus=None if bonus is None else arr(bonus, "bonus", None))

    @classmethod
    def from_dm(cls, dm, codes, start=None, end=None) -> "MarketData":
        """Load from a :class:`data.manager.DataManager` (raw prices, limits, dividends).

        Raises
        ------
        DataError
            From the data manager (dates outside the data, missing files).
        """
        codes = pd.Index([str(c) for c in codes], name="ts_code")
        p = dm.panels(["raw_open", "raw_close", "pre_close", "vol", "adj_factor"], start, end,
                      codes=codes)
        dates = p["raw_close"].index
        up, down = dm.limit_prices(start, end, codes=codes)
        vwap = dm.raw_vwap(start, end, codes=codes)
        div = dm.dividends(start, end, codes=codes)
        bonus = np.zeros((len(dates), len(codes)))
        if len(div):
            ti = dates.get_indexer(pd.DatetimeIndex(div["ex_date"]))
            ci = codes.get_indexer(div["ts_code"])
            ok = (ti >= 0) & (ci >= 0)
            bonus[ti[ok], ci[ok]] = div["stk_div"].to_numpy(np.float64)[ok]
        close = p["raw_close"].to_numpy(np.float64)
        return cls(dates=pd.DatetimeIndex(dates, name="trade_date").as_unit("ns"), codes=codes,
                   open=p["raw_open"].to_numpy(np.float64), close=close,
                   vwap=vwap.to_numpy(np.float64), pre_close=p["pre_close"].to_numpy(np.float64),
                   vol=p["vol"].to_numpy(np.float64), limit_up=up.to_numpy(np.float64),
                   limit_down=down.to_numpy(np.float64), has_bar=np.isfinite(close),
                   adj_factor=p["adj_factor"].to_numpy(np.float64), bonus=bonus)

    def truncate(self, end) -> "MarketData":
        """The rows with ``date <= end`` (causality tests)."""
        k = int(self.dates.searchsorted(pd.Timestamp(end), side="right"))
        kw = {f: getattr(self, f)[:k] for f in _MARKET_FIELDS}
        return MarketData(dates=self.dates[:k], codes=self.codes, has_bar=self.has_bar[:k],
                          bonus=None if self.bonus is None else self.bonus[:k], **kw)


@dataclass
class SimResult:
    """Outputs of :func:`simulate` (yuan unless stated).

    Attributes
    ----------
    nav : Series, index trade_date — cash + holdings at the raw close.
    nav_exec : Series — cash + holdings at the execution price, before trading (after the
        day's corporate actions).
    cash : Series — cash at the end of the day (>= 0).
    positions : DataFrame — trade_date, ts_code, quantity, sellable, price (raw close mark),
        value; one row per held stock per day.
    trades : DataFrame — trade_date, ts_code, side ("buy"/"sell"), quantity, price (fill after
        slippage), value, commission, stamp_tax, transfer_fee, slippage.
    rejected : DataFrame — trade_date, ts_code, side, quantity (shares not traded), reason.
    costs : DataFrame — index trade_date; commission, stamp_tax, transfer_fee, slippage.
    corporate : DataFrame — trade_date, ts_code, ratio, quantity_before, quantity_after, cash.
    """

    nav: pd.Series
    nav_exec: pd.Series
    cash: pd.Series
    positions: pd.DataFrame
    trades: pd.DataFrame
    rejected: pd.DataFrame
    costs: pd.DataFrame
    corporate: pd.DataFrame = field(default_factory=pd.DataFrame)

    def save(self, out_dir, benchmark: pd.Series | None = None) -> None:
        """Write ``nav.parquet``, ``positions``, ``trades``, ``rejected``, ``costs`` and
        ``corporate`` Parquet files into ``out_dir`` (created), each atomically.

        Parameters
        ----------
        out_dir : path
        benchmark : Series, optional
            Benchmark index close on the NAV days (:func:`backtest.metrics.benchmark_nav`).
            With it ``nav.parquet`` also holds ``bench_close`` and ``excess_nav``.

        Notes
        -----
        ``nav.parquet`` columns: trade_date, nav, nav_exec, cash, and with a benchmark
        ``bench_close`` (the index close, forward-filled over missing days) and ``excess_nav``
        = ``(nav / nav[0]) / (bench_close / bench_close[0])``: the ratio of the two
        normalised curves (the relative wealth against holding the index), not the
        cumulative product of daily return differences. ``bench_close[0]`` is the first
        finite close; NaN before it.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        nav = pd.DataFrame({"nav": self.nav, "nav_exec": self.nav_exec, "cash": self.cash})
        if benchmark is not None:
            b = pd.Series(benchmark, dtype="float64").reindex(nav.index)
            nav["bench_close"] = b
            fin = b[np.isfinite(b)]
            b0 = fin.iloc[0] if len(fin) else np.nan
            nav["excess_nav"] = (nav["nav"] / nav["nav"].iloc[0]) / (b / b0)
        frames = {"nav": nav.reset_index(),
                  "positions": self.positions, "trades": self.trades,
                  "rejected": self.rejected, "costs": self.costs.reset_index(),
                  "corporate": self.corporate}
        for name, df in frames.items():
            atomic_write(out / f"{name}.parquet",
                         lambda tmp, df=df: df.to_parquet(tmp, index=False))


def targets_to_matrix(targets: pd.DataFrame, market: MarketData
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Execution-day weight matrix ``W`` (T, N) and rebalance flags (T,) from long targets.

    Raises
    ------
    BacktestError
        Missing columns, non-finite or negative weights, a date whose weights sum above 1,
        duplicate (trade_date, ts_code) rows, several strategies, or codes absent from the
        market data (the message names them).
    """
    need = {"trade_date", "ts_code", "target_weight"}
    if not isinstance(targets, pd.DataFrame) or not need <= set(targets.columns):
        have = list(targets.columns) if isinstance(targets, pd.DataFrame) else type(targets)
        raise BacktestError(f"targets need columns trade_date, ts_code, target_weight; got {have}")
    T, N = market.shape
    W = np.zeros((T, N))
    rebal = np.zeros(T, dtype=np.bool_)
    if len(targets) == 0:
        return W, rebal
    if "strategy_name" in targets and targets["strategy_name"].nunique() > 1:
        raise BacktestError(f"targets hold several strategies "
                            f"({', '.join(map(str, targets['strategy_name'].unique()[:5]))}); "
                            f"simulate one at a time")
    d = pd.DatetimeIndex(pd.to_datetime(targets["trade_date"])).as_unit("ns")
    w = pd.to_numeric(targets["target_weight"], errors="coerce").to_numpy(np.float64)
    codes = targets["ts_code"].astype(str).to_numpy()
    if not np.isfinite(w).all():
        raise BacktestError(f"targets: non-finite target_weight on {int((~np.isfinite(w)).sum())}"
                            f" rows (first at {d[~np.isfinite(w)][0].date()})")
    if (w < 0).any():
        raise BacktestError(f"targets: negative target_weight (short positions are not "
                            f"supported), first on {d[w < 0][0].date()}")
    key = pd.DataFrame({"d": d, "c": codes})
    if key.duplicated().any():
        first = key[key.duplicated()].iloc[0]
        raise BacktestError(f"targets: duplicate row for {first['c']} on {first['d'].date()}")
    sums = pd.Series(w).groupby(d.asi8).sum()
    if (sums > 1.0 + 1e-9).any():
        bad = pd.Timestamp(sums.index[np.argmax(sums.to_numpy() > 1.0 + 1e-9)])
        raise BacktestError(f"targets: weights on {bad.date()} sum to "
                            f"{sums.max():.6f} > 1 (no leverage)")
    ci = market.codes.get_indexer(codes)
    if (ci < 0).any():
        miss = pd.unique(codes[ci < 0])
        raise BacktestError(f"targets: {len(miss)} code(s) not in the market data, e.g. "
                            f"{', '.join(miss[:5])}")
    # execution day = first market day strictly after the target date
    mdates = market.dates.as_unit("ns")
    ex = mdates.searchsorted(d, side="right")
    udates = np.unique(d.asi8)
    uex = mdates.searchsorted(pd.DatetimeIndex(udates).as_unit("ns"), side="right")
    keep = uex < T
    chosen = pd.Series(udates[keep]).groupby(uex[keep]).max()     # latest date per exec day
    sel = (ex < T) & (d.asi8 == chosen.reindex(ex).to_numpy())
    rebal[chosen.index.to_numpy()] = True
    W[ex[sel], ci[sel]] = w[sel]
    return W, rebal


def _frame(buf: np.ndarray, cols, market: MarketData) -> pd.DataFrame:
    df = pd.DataFrame(buf, columns=list(cols))
    out = pd.DataFrame({"trade_date": market.dates[df["t"].to_numpy(np.int64)],
                        "ts_code": market.codes[df["j"].to_numpy(np.int64)].astype(str)})
    if "side" in df:
        out["side"] = np.where(df["side"].to_numpy() > 0, "buy", "sell")
    for c in cols:
        if c not in ("t", "j", "side", "reason"):
            out[c] = df[c].to_numpy()
    if "reason" in df:
        out["reason"] = np.asarray(K.REASONS, dtype=object)[df["reason"].to_numpy(np.int64)]
    return out


def simulate(targets: pd.DataFrame, market: MarketData, config: SimConfig | None = None
             ) -> SimResult:
    """Simulate an A-share cash account following ``targets`` (rules: module docstring).

    Parameters
    ----------
    targets : DataFrame
        Long ``trade_date, ts_code, target_weight[, strategy_name]``; weights >= 0 summing to
        <= 1 per date (the rest is cash); one strategy.
    market : MarketData
        Raw market arrays covering the execution days.
    config : SimConfig, optional
        Default :class:`SimConfig` ().

    Returns
    -------
    SimResult

    Raises
    ------
    BacktestError
        Bad targets (see :func:`targets_to_matrix`) or bad settings.
    """
    cfg = config or SimConfig()
    W, rebal = targets_to_matrix(targets, market)
    px = market.open if cfg.execution == "open" else market.vwap
    lo, st = lot_params(market.codes)
    mode = K.FRACTIONAL if cfg.fractional else (K.LOTS if cfg.lots else K.WHOLE)
    c = cfg.costs
    stamp = (stamp_tax_rates(market.dates) if c.stamp_tax
             else np.zeros(len(market.dates)))
    has_bonus = market.bonus is not None
    bonus = market.bonus if has_bonus else np.zeros((1, 1))
    nav, nav_e, cash, costs, tr, rj, ps, cp = K.simulate_kernel(
        px, market.close, market.vol, market.limit_up, market.limit_down,
        np.ascontiguousarray(market.has_bar, dtype=np.bool_), market.adj_factor, bonus, W,
        rebal, stamp, lo.astype(np.float64), st.astype(np.float64),
        float(cfg.init_cash), float(c.commission), float(c.min_commission),
        float(c.transfer_fee), float(c.slippage_bps), float(cfg.participation or 0.0), mode,
        bool(cfg.price_limits), bool(cfg.t_plus_1), bool(cfg.corporate_actions), has_bonus)
    idx = market.dates.rename("trade_date")
    return SimResult(
        nav=pd.Series(nav, index=idx, name="nav"),
        nav_exec=pd.Series(nav_e, index=idx, name="nav_exec"),
        cash=pd.Series(cash, index=idx, name="cash"),
        positions=_frame(ps, K.POS_COLS, market),
        trades=_frame(tr, K.TRADE_COLS, market),
        rejected=_frame(rj, K.REJECT_COLS, market),
        costs=pd.DataFrame(costs[:, :4], index=idx,
                           columns=["commission", "stamp_tax", "transfer_fee", "slippage"]),
        corporate=_frame(cp, K.CORP_COLS, market))


__all__ = ["SimConfig", "SimResult", "MarketData", "simulate", "targets_to_matrix"]
