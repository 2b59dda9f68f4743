"""Strategies: score panels -> ``target_positions`` (the input of the simulator and the export).

target_positions
    The output of every strategy here; its contract (columns, units, one row per held name
    per rebalance day) is defined once in :mod:`backtest.targets`, with its files.

Candidates (buy side)
    The SCORE of day ``t`` uses data up to the close of ``t``. A name may be ENTERED (bought or
    added to) by the weights of decision day ``t`` iff it is in the point-in-time universe at
    ``t`` and buyable at the open of the execution day ``t + 1``: a bar (not suspended), listed
    at least ``min_listed_days``, raw open strictly below limit-up -- a stock opening at
    limit-down, even one-price locked, is buyable (:func:`eligible_mask`;
    :meth:`data.manager.DataManager.tradable_mask` with ``side="buy"``, rule in
    :mod:`data.limits`). The open of ``t + 1`` is set by the 09:15-09:25 call auction, before
    continuous trading starts, so this filter is known when the orders go out. On the last
    row, whose execution day is not in the data (the live case), only the decision day's bar
    and listing age are checked; the broker / the simulator rejects a limit-up open there.
    Names already held need not be buyable to stay (``keep`` of :func:`topn_weights`;
    TopK-dropout keeps its holdings by construction). Whether each order fills (suspension,
    limit prices, volume) remains the simulator's business (:mod:`backtest.simulate`).

Rebalance schedules (:func:`rebalance_mask`)
    ``"daily"``; ``"weekly"`` / ``"monthly"``: the last trading day of each calendar week /
    month (orders go out on the first day of the next); an integer ``k``: rows ``0, k, 2k...``.

Everything is vectorised over the rebalance rows except TopK-dropout and TopN with ``keep``,
whose holdings depend on the previous ones (a loop over rebalance days, vectors inside).
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from backtest.errors import BacktestError



# --------------------------------------------------------------------------- schedule / masks

def rebalance_mask(dates, rebalance: int | str = "weekly") -> np.ndarray:
    """Rebalance days among ``dates`` (module docstring).

    Parameters
    ----------
    dates : DatetimeIndex, length T
        Trading days, ascending.
    rebalance : int or {"daily", "weekly", "monthly"}
        Schedule; an int ``k >= 1`` means every ``k`` trading days from the first row.

    Returns
    -------
    ndarray of bool, shape (T,)

    Raises
    ------
    BacktestError
        Unknown schedule or ``k < 1``.
    """
    dates = pd.DatetimeIndex(dates)
    T = len(dates)
    if isinstance(rebalance, str) and rebalance.isdigit():
        rebalance = int(rebalance)
    if isinstance(rebalance, (int, np.integer)) and not isinstance(rebalance, bool):
        if rebalance < 1:
            raise BacktestError(f"rebalance every k days needs k >= 1, got {rebalance}")
        return (np.arange(T) % int(rebalance)) == 0
    if rebalance == "daily":
        return np.ones(T, bool)
    if rebalance in ("weekly", "monthly"):
        if T == 0:
            return np.zeros(0, bool)
        key = (dates.to_period("W") if rebalance == "weekly" else dates.to_period("M"))
        key = np.asarray(key.asi8)
        out = np.ones(T, bool)
        out[:-1] = key[1:] != key[:-1]
        return out
    raise BacktestError(f"unknown rebalance schedule {rebalance!r}; use daily, weekly, "
                        f"monthly or a number of trading days")


def eligible_mask(dm, universe: str, dates, codes, *, min_listed_days: int = 60) -> np.ndarray:
    """Names that may be entered by the weights of each decision day, ``(T, N)`` bool.

    ``universe_mask[t] & tradable_mask(side="buy", min_listed_days)[t + 1]`` of the
    :class:`data.manager.DataManager` (module docstring, "Candidates"): in the universe at
    ``t``, buyable at the open of ``t + 1``. The last row has no ``t + 1`` in ``dates``: it
    checks the bar and listing age of ``t`` itself.

    ``dates`` (length T) are consecutive trading days (``dm.calendar(start, end)``), ``codes``
    (length N) the columns.

    Raises
    ------
    UniverseError, DataError
        From the data manager.
    """
    return _entry_mask(dm, dates, codes, dm.universe_mask(universe, dates, codes),
                       min_listed_days)


def _entry_mask(dm, dates, codes, base: np.ndarray, min_listed_days: int) -> np.ndarray:
    """``base[t] & buyable at the open of t+1`` (last row: bar and listing age at t)."""
    dates = pd.DatetimeIndex(dates)
    out = np.asarray(base, dtype=bool).copy()
    if len(dates) == 0:
        return out
    s, e = dates[0], dates[-1]
    buy = dm.tradable_mask(s, e, codes, min_listed_days=min_listed_days, side="buy")
    out[:-1] &= buy[1:]
    out[-1] &= dm.tradable_mask(e, e, codes, min_listed_days=min_listed_days, side="any")[0]
    return out


# --------------------------------------------------------------------------- weights

def _ranked(score: np.ndarray, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column order per row, best first, and the number of eligible finite names per row."""
    s = np.where(eligible & np.isfinite(score), score, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")
    return order, np.isfinite(s).sum(axis=1)


def _topn_rows(score: np.ndarray, cand: np.ndarray, n: int, fixed: bool) -> np.ndarray:
    """TopN weights of each row of ``score`` among the candidates ``cand`` (both (R, N))."""
    order, cnt = _ranked(score, cand)
    k = np.minimum(cnt, n)
    take = np.arange(score.shape[1])[None, :] < k[:, None]
    w = np.zeros(score.shape)
    with np.errstate(all="ignore"):
        per = np.full(k.shape, 1.0 / n) if fixed else 1.0 / np.maximum(k, 1)
        np.put_along_axis(w, order, np.where(take, per[:, None], 0.0), axis=1)
    return w


def topn_weights(score, eligible, n: int, rebalance_rows, *, fixed: bool = False,
                 keep=None) -> np.ndarray:
    """TopN equal weight: on each rebalance day hold the ``n`` best candidates at ``1/n``.

    Parameters
    ----------
    score : ndarray (T, N)
        Higher = better; non-finite = no view.
    eligible : ndarray of bool (T, N)
        Names that may be entered (:func:`eligible_mask`).
    n : int
        Names held. With fewer than ``n`` candidates each gets ``1/count`` (or ``1/n`` with
        ``fixed=True``, the rest staying in cash).
    rebalance_rows : ndarray of bool (T,)
    fixed : bool, default False
    keep : ndarray of bool (T, N), optional
        Names that may STAY when held (weight > 0 on the previous rebalance row) even if not
        ``eligible`` that day, e.g. a holding that opens at limit-up cannot be bought but can
        be kept. The candidates of a rebalance row are then ``eligible | (held & keep)``.
        Default: a holding stays only while eligible (stateless; rows independent).

    Returns
    -------
    ndarray (T, N)
        Weights on rebalance rows (rows sum to 1, or 0 with no candidate); NaN rows elsewhere
        (= hold). Row ``t`` reads rows ``<= t`` only.

    Raises
    ------
    BacktestError
        ``n < 1`` or shape mismatch.
    """
    score = np.asarray(score, dtype=np.float64)
    eligible = np.asarray(eligible, dtype=bool)
    rb = np.asarray(rebalance_rows, dtype=bool)
    if n < 1:
        raise BacktestError(f"TopN needs n >= 1, got {n}")
    if score.shape != eligible.shape or rb.shape != (score.shape[0],):
        raise BacktestError(f"shape mismatch: score {score.shape}, eligible {eligible.shape}, "
                            f"rebalance rows {rb.shape}")
    if keep is not None:
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != score.shape:
            raise BacktestError(f"shape mismatch: score {score.shape}, keep {keep.shape}")
    W = np.full(score.shape, np.nan)
    rows = np.flatnonzero(rb)
    if rows.size == 0:
        return W
    if keep is None:
        W[rows] = _topn_rows(score[rows], eligible[rows], n, fixed)
        return W
    held = np.zeros(score.shape[1], dtype=bool)
    for t in rows:                          # the holdings of one row feed the next
        w = _topn_rows(score[t:t + 1], (eligible[t] | (held & keep[t]))[None], n, fixed)[0]
        W[t] = w
        held = w > 0
    return W


def topk_dropout_weights(score, eligible, k: int, n_drop: int, rebalance_rows) -> np.ndarray:
    """TopK with dropout (Qlib ``TopkDropoutStrategy``): hold ``k`` names at ``1/k``; on each
    rebalance sell at most ``n_drop`` of the worst-ranked holdings and buy as many of the best
    names not held.

    Procedure on a rebalance day (Qlib's ``generate_trade_decision``, equal weights): ``today`` =
    the best ``n_drop + k - |held|`` eligible names not held; rank ``held + today`` by score
    (held names without a finite score rank last); sell the held names among the ``n_drop``
    worst of that ranking; buy the first ``|sold| + k - |held|`` of ``today``. ``eligible``
    restricts the entries only: a holding stays, eligible or not, until it is dropped.

    Parameters
    ----------
    score, eligible, rebalance_rows
        As in :func:`topn_weights`.
    k : int
        Names held.
    n_drop : int
        Maximum replacements per rebalance (``0 <= n_drop <= k``).

    Returns
    -------
    ndarray (T, N)
        Weights ``1/k`` on held names on rebalance rows, NaN rows elsewhere.

    Raises
    ------
    BacktestError
        Bad ``k`` / ``n_drop`` or shapes.
    """
    score = np.asarray(score, dtype=np.float64)
    eligible = np.asarray(eligible, dtype=bool)
    rb = np.asarray(rebalance_rows, dtype=bool)
    if k < 1 or not 0 <= n_drop <= k:
        raise BacktestError(f"TopK-dropout needs k >= 1 and 0 <= n_drop <= k, got k={k}, "
                            f"n_drop={n_drop}")
    if score.shape != eligible.shape or rb.shape != (score.shape[0],):
        raise BacktestError(f"shape mismatch: score {score.shape}, eligible {eligible.shape}")
    T, N = score.shape
    W = np.full((T, N), np.nan)
    held = np.zeros(N, bool)
    for t in np.flatnonzero(rb):
        s = score[t]
        cand = eligible[t] & np.isfinite(s) & ~held
        cidx = np.flatnonzero(cand)
        cidx = cidx[np.argsort(-s[cidx], kind="stable")]
        n_held = int(held.sum())
        today = cidx[:max(0, n_drop + k - n_held)]
        hidx = np.flatnonzero(held)
        comb = np.concatenate([hidx, today])
        key = np.where(np.isfinite(s[comb]), s[comb], -np.inf)
        comb = comb[np.argsort(-key, kind="stable")]
        worst = set(comb[len(comb) - n_drop:].tolist()) if n_drop else set()
        sell = [i for i in hidx if i in worst]
        n_buy = len(sell) + k - n_held
        buy = today[:max(0, n_buy)]
        held[sell] = False
        held[buy] = True
        W[t] = np.where(held, 1.0 / k, 0.0)
    return W


#: Trading days per year behind the turnover budget.
ANNUAL_DAYS = 252
#: Trading days between rebalances of the named schedules (budget arithmetic only).
SCHEDULE_DAYS = {"daily": 1, "weekly": 5, "monthly": 21}


def rebalance_interval(rebalance: int | str) -> int:
    """Trading days between rebalances: ``k`` for every-``k``-days, 1 / 5 / 21 for daily /
    weekly / monthly.

    Raises
    ------
    BacktestError
        Unknown schedule or ``k < 1``.
    """
    if isinstance(rebalance, str) and rebalance.isdigit():
        rebalance = int(rebalance)
    if isinstance(rebalance, (int, np.integer)) and not isinstance(rebalance, bool):
        if rebalance < 1:
            raise BacktestError(f"rebalance every k days needs k >= 1, got {rebalance}")
        return int(rebalance)
    if rebalance in SCHEDULE_DAYS:
        return SCHEDULE_DAYS[rebalance]
    raise BacktestError(f"unknown rebalance schedule {rebalance!r}")


def budget_n_drop(turnover_budget: float, k: int, rebalance: int | str,
                  n_drop: int | None = None) -> int:
    """Replacements per rebalance that keep TopK-dropout within an annual turnover budget.

    One replacement sells ``1/k`` of NAV and buys ``1/k``: one-way turnover ``1/k``. With
    ``252 / interval`` rebalances a year (:func:`rebalance_interval`), the expected annual
    one-way turnover is ``n_drop / k * 252 / interval``; the budget gives

        ``n_drop = floor(turnover_budget * k * interval / 252)``,

    capped by ``k`` and by the explicit ``n_drop`` (``[backtest] n_drop`` / ``--n-drop``: an
    upper bound). ``turnover_budget <= 0`` means no budget (``n_drop`` alone, capped by ``k``).

    Parameters
    ----------
    turnover_budget : float
        Annual one-way turnover, in multiples of NAV (e.g. 10 = 10x a year).
    k : int
        Names held (>= 1).
    rebalance : int or str
        Schedule (:func:`rebalance_mask`).
    n_drop : int, optional
        Upper bound (default ``k``).

    Returns
    -------
    int
        ``0 <= n_drop <= k``.

    Raises
    ------
    BacktestError
        ``k < 1``, negative ``n_drop`` or an unknown schedule.
    """
    if k < 1 or (n_drop is not None and n_drop < 0):
        raise BacktestError(f"need k >= 1 and n_drop >= 0, got k={k}, n_drop={n_drop}")
    cap = k if n_drop is None else min(int(n_drop), k)
    if not turnover_budget or turnover_budget <= 0:
        return cap
    by_budget = int(np.floor(turnover_budget * k * rebalance_interval(rebalance) / ANNUAL_DAYS
                             + 1e-9))
    return max(0, min(cap, by_budget))


def apply_caps(W, *, max_weight: float | None = None, industry=None,
               max_industry_weight: float | None = None, iters: int = 100) -> np.ndarray:
    """Cap weights per stock and per industry, redistributing the excess (water-filling).

    Each iteration clips names above ``max_weight``, scales industries above
    ``max_industry_weight`` down to the cap, and hands the weight removed to the names still
    below both caps, in proportion to their weights. Rows keep their total when the caps
    allow it; otherwise the rest stays in cash.

    Parameters
    ----------
    W : ndarray (T, N)
        Non-negative weights; NaN rows (no rebalance) pass through.
    max_weight : float, optional
        Per-stock cap in (0, 1].
    industry : ndarray of int (N,) or (T, N), optional
        Group codes (:func:`factors.processing.industry_codes`), or dated codes per row
        (:meth:`data.manager.DataManager.industry`); needed for the industry cap.
    max_industry_weight : float, optional
        Per-industry cap in (0, 1].
    iters : int, default 100

    Returns
    -------
    ndarray (T, N)

    Raises
    ------
    BacktestError
        Caps outside (0, 1] or an industry cap without industry codes.
    """
    W = np.array(W, dtype=np.float64)
    for nm, v in (("max_weight", max_weight), ("max_industry_weight", max_industry_weight)):
        if v is not None and not 0.0 < v <= 1.0:
            raise BacktestError(f"{nm} must be in (0, 1], got {v}")
    if max_industry_weight is not None and industry is None:
        raise BacktestError("an industry cap needs industry codes")
    if max_weight is None and max_industry_weight is None:
        return W
    rows = np.flatnonzero(~np.isnan(W).all(axis=1))
    w = np.nan_to_num(W[rows])
    total = w.sum(axis=1)
    mw = np.inf if max_weight is None else max_weight
    if max_industry_weight is not None:
        g = np.asarray(industry, dtype=np.int64)
        if g.ndim == 2:                     # dated groups: each rebalance row its own groups
            g = g[rows]
        n_g = int(g.max()) + 1 if g.size else 1
        key = (np.arange(len(rows))[:, None] * n_g + g if g.ndim == 2
               else np.broadcast_to(np.arange(len(rows))[:, None] * n_g + g, w.shape))
        key = key.ravel()

        def group_total(v: np.ndarray) -> np.ndarray:   # each cell's industry total that row
            return np.bincount(key, weights=v.ravel(), minlength=len(rows) * n_g)[key] \
                .reshape(v.shape)
    eps = 1e-12
    for _ in range(iters):
        w = np.minimum(w, mw)
        room = np.full(w.shape, True)
        if max_industry_weight is not None:
            ind = group_total(w)
            w = w * np.where(ind > max_industry_weight, max_industry_weight
                             / np.where(ind > 0, ind, 1.0), 1.0)
            room = group_total(w) < max_industry_weight - 1e-9
        deficit = total - w.sum(axis=1)
        free = (w > 0) & (w < mw - 1e-9) & room
        base = np.where(free, w, 0.0)
        bs = base.sum(axis=1)
        go = (deficit > eps) & (bs > 0)
        if not go.any():
            break
        w[go] += base[go] / bs[go, None] * deficit[go, None]
    W[rows] = w
    return W


# --------------------------------------------------------------------------- frames and files

def to_targets(W, dates, codes, strategy_name: str) -> pd.DataFrame:
    """Long ``target_positions`` from a weight panel (non-NaN rows = rebalance days).

    Returns
    -------
    DataFrame
        Columns :data:`backtest.targets.TARGET_COLUMNS`, sorted by (trade_date, ts_code), weights > 0 only.
    """
    W = np.asarray(W, dtype=np.float64)
    t, i = np.nonzero(np.nan_to_num(W) > 0)
    df = pd.DataFrame({"trade_date": pd.DatetimeIndex(dates)[t].astype("datetime64[ns]"),
                       "ts_code": np.asarray(codes, dtype=object)[i],
                       "target_weight": W[t, i],
                       "strategy_name": strategy_name})
    return df.sort_values(["trade_date", "ts_code"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- micro-cap preset

def microcap_targets(dm, start, end, *, mv_min: float = 2e9, mv_max: float = 3e9,
                     hold: int = 3, every: int = 5, universe: str = "all",
                     strategy_name: str = "microcap") -> pd.DataFrame:
    """The micro-cap strategy of ``reference/microcap-strategy.md`` as ``target_positions``.

    Every ``every`` trading days (rows ``0, every, 2*every...`` of ``[start, end]``): take the
    names of ``universe`` with a bar that day (not suspended), not ST, and estimated total
    market value (``total_mv``, yuan) in ``[mv_min, mv_max]``; hold the ``hold`` smallest at
    ``1/hold`` each (sell everything else; with fewer qualifying names the rest stays in cash,
    as the reference's ``cash / Num`` allocation does). A name not yet held must also be
    buyable at the next open (raw open below limit-up, module docstring "Candidates"; no
    listing-age rule here); a holding that still qualifies stays even when it is not. Costs
    (0.03% commission both sides, 5-yuan minimum, 0.1% stamp tax on sells -- dated: 0.05% from
    2023-08-28) are the simulator's.

    Parameters
    ----------
    dm : DataManager
    start, end : str
        Decision window.
    mv_min, mv_max : float, default 2e9, 3e9
        Market-value range in yuan: 20-30 亿 as in the reference's Chinese text (its English
        text says 2亿-30亿, i.e. ``mv_min=2e8``).
    hold : int, default 3
    every : int, default 5
    universe : str, default "all"
        The English text says "from CSI300 components", which contradicts the range (CSI300
        members are far larger); the JoinQuant query it describes has no index filter.
    strategy_name : str

    Returns
    -------
    DataFrame
        ``target_positions`` (module docstring).

    Notes
    -----
    ST status is dated (:meth:`data.manager.DataManager.st_mask`, ``namechange``) and
    ``total_mv`` the real ``daily_basic`` value where the warehouse has them; on the embedded
    snapshot ST is ``is_st_latest`` (current status only: names ST today are excluded on every
    past date; the run's note says so, :func:`backtest.caveats.st_caveat`), ``total_mv`` an
    estimate (``daily_basic_est``) and the universe holds only survivors (``dm.notices``).
    "Sell all, then buy with equal cash" becomes equal target weights: a name still selected
    is topped up / trimmed to ``1/hold`` rather than sold and bought back (saves the costs of
    the round trip, otherwise identical).

    Raises
    ------
    BacktestError
        ``mv_min > mv_max`` or ``hold < 1``.
    """
    if not 0 <= mv_min <= mv_max:
        raise BacktestError(f"need 0 <= mv_min <= mv_max, got {mv_min}, {mv_max}")
    if hold < 1:
        raise BacktestError(f"hold must be >= 1, got {hold}")
    dates = dm.calendar(start, end)
    codes = dm.universe_codes(universe, start, end)
    p = dm.panels(["total_mv", "close"], start, end, codes=codes)
    mv = p["total_mv"].to_numpy()
    bar = np.isfinite(p["close"].to_numpy())
    st = dm.st_mask(start, end, codes=codes)
    elig = dm.universe_mask(universe, dates, codes) & bar & ~st
    with np.errstate(invalid="ignore"):
        elig &= (mv >= mv_min) & (mv <= mv_max)
    buy = _entry_mask(dm, dates, codes, elig, 0)     # new entries: buyable at t+1's open
    W = topn_weights(-mv, buy, hold, rebalance_mask(dates, every), fixed=True, keep=elig)
    return to_targets(W, dates, codes, strategy_name)


__all__ = ["rebalance_mask", "eligible_mask", "topn_weights", "topk_dropout_weights",
           "rebalance_interval", "budget_n_drop", "ANNUAL_DAYS",
           "apply_caps", "to_targets", "microcap_targets"]
