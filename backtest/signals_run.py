"""``mine signals`` and its backtest as library calls: scores -> signal book -> store / run folder.

:func:`load_book_inputs` loads what the book needs on a window (scores with their warm-up,
raw market data, ATR, eligibility, industries). :func:`signals` runs the paper book up to one
day and stores that day's cross-section in the ``signals`` table (a stop hit that day is also
an alert in ``alerts_log``, notified when ``[signals] notify``). :func:`signal_backtest` runs
the book over a window of the train/valid splits and writes a ``mine backtest``-like run
folder (NAV, trades, ``performance.json``, ``yearly.csv``; ``mine report backtest`` reads it)
plus ``signals.parquet`` and ``stops.parquet``. Neither prints.

Sealing: the backtest's window must end before the test split (:func:`backtest.seal.check_window`).
``mine signals`` defaults to the last day of valid. A test-split day is production use and
needs ``live=True`` (``--live``, like ``mine combine --live``): the latest day of the data,
logged (:func:`backtest.seal.unseal`, purpose ``live``, listed by ``mine audit``), no
performance shown; any other test-split day is refused (:class:`backtest.errors.SealedError`).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from backtest.errors import BacktestError, SealedError
from backtest.signals import (
    SUBSCORES,
    SignalsConfig,
    SignalScores,
    composite,
    factor_score,
    industry_score,
    technical_score,
    valuation_panels,
    valuation_score,
    wilder_atr,
)

__all__ = ["BookInputs", "load_book_inputs", "SignalsRun", "signals", "signal_backtest",
           "combine_score_panel", "day_frame", "WARMUP_DAYS", "STOP_RULES"]

#: ``alerts_log`` rules of the stop hits that :func:`signals` logs.
STOP_RULES = ("stop_loss", "take_profit")

Progress = Optional[Callable[[str], None]]

#: Trading days loaded before a window so every indicator is warm (EMA 26 + 9, ATR, windows).
WARMUP_DAYS = 80


@dataclass
class BookInputs:
    """Aligned ``(T, N)`` inputs of :func:`backtest.signal_book.run_book` on a window."""

    scores: SignalScores
    market: object                 # backtest.simulate.MarketData
    high: np.ndarray
    low: np.ndarray
    atr: np.ndarray                # raw yuan
    eligible: np.ndarray
    industry: np.ndarray
    member: np.ndarray


def combine_score_panel(run_dir: Path, dates, codes) -> np.ndarray:
    """The composite score of a ``mine combine`` run folder (``score.parquet``) on
    ``dates x codes`` (NaN where the run has none).

    Raises
    ------
    BacktestError
        The folder has no ``score.parquet``.
    """
    p = Path(run_dir) / "score.parquet"
    if not p.is_file():
        raise BacktestError(f"{run_dir} is not a finished `mine combine` run (no score.parquet)")
    sc = pd.read_parquet(p, columns=["trade_date", "ts_code", "score"])
    sc = sc[sc["ts_code"].isin(set(codes))
            & pd.to_datetime(sc["trade_date"]).between(dates[0], dates[-1])]
    wide = sc.pivot(index="trade_date", columns="ts_code", values="score")
    wide.index = pd.DatetimeIndex(wide.index)
    return wide.reindex(index=pd.DatetimeIndex(dates), columns=pd.Index(codes)).to_numpy(
        np.float64)


def _combine_dir(cfg) -> tuple[Path | None, str]:
    from backtest.run_dirs import read_latest
    sc = cfg.signals
    if sc.combine_run:
        p = Path(sc.combine_run).expanduser()
        if not p.is_absolute():
            p = Path(cfg.backtest.out_dir) / p
        if not (p / "score.parquet").is_file():
            raise BacktestError(f"[signals] combine_run {sc.combine_run!r}: no score.parquet "
                                f"in {p}")
        return p, f"factor score from {p.name}"
    p = read_latest(cfg.backtest.out_dir)
    if p is None or not (p / "score.parquet").is_file():
        return None, ("factor score skipped: no `mine combine` run under "
                      f"{cfg.backtest.out_dir} (run `mine combine`; weights renormalised)")
    return p, f"factor score from the latest combine run {p.name}"


def load_book_inputs(cfg, dm, universe: str, start, end, say=None) -> BookInputs:
    """Scores and market data on the trading days ``[start, end]`` (indicators warmed up on
    :data:`WARMUP_DAYS` earlier days), columns = every code in ``universe`` during the window.

    Raises
    ------
    DataError, UniverseError
        From the data manager.
    BacktestError
        No trading day in the window, or an unreadable ``[signals] combine_run``.
    """
    from backtest.simulate import MarketData

    say = say or (lambda m: None)
    sc: SignalsConfig = cfg.signals
    cal = dm.calendar()
    i0 = int(cal.searchsorted(pd.Timestamp(start)))
    i1 = int(cal.searchsorted(pd.Timestamp(end), side="right"))
    if i1 <= i0:
        raise BacktestError(f"no trading day between {start} and {end}")
    w0 = cal[max(0, i0 - WARMUP_DAYS)]
    dates = cal[max(0, i0 - WARMUP_DAYS):i1]
    codes = dm.universe_codes(universe, cal[i0], cal[i1 - 1])
    say(f"loading {universe} data ({len(codes)} stocks, {len(dates)} days)")
    p = dm.panels(["close", "high", "low", "vol", "raw_high", "raw_low", "adj_factor"], w0,
                  cal[i1 - 1], codes=codes)
    member = dm.universe_mask(universe, dates, codes)
    ind = dm.industry(1, dates, codes)
    close = p["close"].to_numpy(np.float64)
    notes = []
    flow = {}
    if dm.has_dataset("moneyflow"):
        q = dm.panels(["net_mf_amount", "amount"], w0, cal[i1 - 1], codes=codes)
        flow = {"net_mf": q["net_mf_amount"].to_numpy(np.float64),
                "amount": q["amount"].to_numpy(np.float64)}
        notes.append(f"industry score = relative strength and fund flow (Tushare moneyflow "
                     f"net_mf_amount / amount of the industry over {sc.industry_window} days)")
    else:
        notes.append("fund flow skipped: the warehouse has no Tushare moneyflow (opt in with "
                     "[tushare] extra_datasets = [\"moneyflow\"], then `mine data update`); "
                     "industry score = relative strength only")
    say("scoring")
    scores = {
        "technical": technical_score(close, p["vol"].to_numpy(np.float64), member,
                                     volume_window=sc.volume_window,
                                     breakout_window=sc.breakout_window),
        "industry": industry_score(close, ind, member, window=sc.industry_window, **flow)}
    pe, pb, src = valuation_panels(dm, dates, codes)
    scores["valuation"] = valuation_score(pe, pb, ind, member)
    notes.append(f"valuation from {src}" if np.isfinite(pb).any() else
                 "valuation skipped: the warehouse has no pe/pb (daily_basic or "
                 "valuation_quarterly); weights renormalised")
    cdir, note = _combine_dir(cfg)
    notes.append(note)
    if cdir is None:
        scores["factor"] = np.full(close.shape, np.nan)
    else:
        raw = combine_score_panel(cdir, dates, codes)
        scores["factor"] = factor_score(raw, member)
        if not np.isfinite(scores["factor"][-1]).any():
            notes.append(f"the combine run {cdir.name} has no score on {dates[-1].date()}: "
                         "factor score missing that day (weights renormalised)")
    scores = {k: scores[k] for k in SUBSCORES}
    comp = composite(scores, sc.weights)
    listed = dm.tradable_mask(w0, cal[i1 - 1], codes,
                              min_listed_days=cfg.evaluate.min_listed_days, side="any")
    atr_adj = wilder_atr(p["high"].to_numpy(np.float64), p["low"].to_numpy(np.float64), close,
                         sc.atr_window)
    atr = atr_adj / p["adj_factor"].to_numpy(np.float64)
    market = MarketData.from_dm(dm, codes, w0, cal[i1 - 1])
    k = i0 - max(0, i0 - WARMUP_DAYS)                 # first row of the window
    cut = slice(k, None)
    mk = MarketData(**{f: (None if getattr(market, f) is None else getattr(market, f)[cut])
                       for f in ("dates", "open", "close", "vwap", "pre_close", "vol",
                                 "limit_up", "limit_down", "has_bar", "adj_factor", "bonus")},
                    codes=market.codes)
    ss = SignalScores(dates=dates[cut], codes=codes,
                      scores={n: s[cut] for n, s in scores.items()}, composite=comp[cut],
                      notes=notes)
    return BookInputs(scores=ss, market=mk, high=p["raw_high"].to_numpy(np.float64)[cut],
                      low=p["raw_low"].to_numpy(np.float64)[cut], atr=atr[cut],
                      eligible=(member & listed)[cut], industry=ind[cut], member=member[cut])


def _run(inputs: BookInputs, cfg):
    from backtest.signal_book import run_book
    from backtest.simulate import SimConfig
    sim = SimConfig.from_config(cfg.backtest, execution="open")
    return run_book(inputs.market, inputs.high, inputs.low, inputs.scores.composite,
                    inputs.atr, inputs.eligible, inputs.industry, cfg.signals, sim)


def day_frame(inputs: BookInputs, book, universe: str, row: int = -1) -> pd.DataFrame:
    """The cross-section of one day (default the last): every universe member with its
    sub-scores, plus the book's flag, reason and prices; columns of
    :data:`factors.signal_log.COLUMNS`, sorted by composite (highest first)."""
    s = inputs.scores
    day = s.dates[row]
    mem = inputs.member[row]
    df = pd.DataFrame({"trade_date": day, "ts_code": s.codes.astype(str),
                       "universe": universe, "composite": s.composite[row]})
    for n in SUBSCORES:
        df[f"{n}_score"] = s.scores[n][row]
    df["atr"] = inputs.atr[row]
    df["flag"], df["reason"], df["held"] = "hold", "", 0
    df["entry"] = df["stop"] = df["take_profit"] = np.nan
    sig = book.signals[book.signals["trade_date"] == day].drop_duplicates("ts_code",
                                                                           keep="last")
    if len(sig):
        pos = pd.Index(df["ts_code"]).get_indexer(sig["ts_code"])
        for col in ("flag", "reason", "entry", "stop", "take_profit"):
            df.loc[pos, col] = sig[col].to_numpy()
    pos = book.sim.positions
    df["held"] = df["ts_code"].isin(set(pos.loc[pos["trade_date"] == day, "ts_code"])).astype(int)
    keep = mem | df["flag"].ne("hold").to_numpy() | (df["held"] == 1).to_numpy()
    df = df[keep]
    return df.sort_values("composite", ascending=False, na_position="last").reset_index(drop=True)


@dataclass
class SignalsRun:
    """What one ``mine signals`` did."""

    run_id: str
    date: str
    universe: str
    book_start: str
    rows: pd.DataFrame
    notes: list
    stops: pd.DataFrame
    alerts_added: int = 0
    delivery: dict = field(default_factory=dict)
    audit_id: Optional[int] = None

    @property
    def counts(self) -> dict:
        return {f: int((self.rows["flag"] == f).sum()) for f in ("buy", "sell", "hold")}

    def to_dict(self) -> dict:
        from data.io import to_jsonable
        act = self.rows[self.rows["flag"].ne("hold") | (self.rows["held"] == 1)]
        return {"run_id": self.run_id, "date": self.date, "universe": self.universe,
                "book_start": self.book_start, "counts": self.counts, "notes": self.notes,
                "n_scored": int(self.rows["composite"].notna().sum()),
                "signals": to_jsonable(act.assign(trade_date=self.date).to_dict("records")),
                "stops": to_jsonable(self.stops.assign(
                    trade_date=self.stops["trade_date"].astype(str)).to_dict("records")),
                "alerts_added": self.alerts_added, "delivery": self.delivery,
                "audit_id": self.audit_id}


def _stop_alerts(stops: pd.DataFrame) -> list[dict]:
    out = []
    for r in stops.itertuples(index=False):
        d = str(pd.Timestamp(r.trade_date).date())
        how = "not filled (limit-locked), retried next day" if not np.isfinite(r.fill) \
            else f"sold at {r.fill:.2f}"
        out.append({"date": d, "ts_code": r.ts_code, "rule": r.reason, "period": d,
                    "severity": "high" if r.reason == "stop_loss" else "medium",
                    "message": f"{r.reason.replace('_', ' ')} hit: stop {r.stop:.2f}, "
                               f"take-profit {r.take_profit:.2f}, entry {r.entry:.2f}; {how}",
                    "values": {"stop": r.stop, "take_profit": r.take_profit,
                               "entry": r.entry, "fill": r.fill}})
    return out


def signals(cfg, date=None, *, universe: str | None = None, notify: bool = True,
            live: bool = False, dm=None, on_progress: Progress = None) -> SignalsRun:
    """Score the universe on ``date``, run the paper book up to it and store the day.

    The paper book starts flat ``[signals] lookback`` trading days before ``date`` and
    follows the rules of :func:`backtest.signal_book.run_book`; the day's rows (every member,
    with its flag) replace that day's rows of the ``signals`` table. Stop-loss and
    take-profit hits on ``date`` are added to ``alerts_log`` (rules ``stop_loss`` /
    ``take_profit``) and, with ``notify`` and ``[signals] notify``, sent on ``[notify]
    channels`` (:func:`backtest.notify.send_pending`).

    Parameters
    ----------
    cfg : Config
        ``[data]``, ``[store]``, ``[evaluate]``, ``[backtest]`` (costs, combine run folder),
        ``[signals]``, ``[notify]``.
    date : date-like, optional
        Default: the last day of valid (``[evaluate] valid[1]``, clipped to the data). Only
        data up to it is read. Must be before the test split unless ``live``.
    universe : str, optional
        Default ``[signals] universe``.
    live : bool
        Production: the latest day of the data (``date`` must be None), a logged live access
        when it lies in the test split.

    Returns
    -------
    SignalsRun

    Raises
    ------
    SealedError
        A test-split ``date`` without ``live``.
    DataError, UniverseError, StoreError, BacktestError
        Also ``live`` with a ``date``.
    """
    from backtest.notify import send_pending
    from backtest.run_dirs import new_run_id
    from backtest.seal import in_test, unseal
    from data.manager import DataManager
    from factors.alerts import AlertLog
    from factors.signal_log import SignalLog
    from factors.store import FactorStore

    say = on_progress or (lambda m: None)
    dm = dm or DataManager.from_config(cfg)
    universe = universe or cfg.signals.universe
    if live and date is not None:
        raise BacktestError("--live scores the latest trading day; drop --date")
    cal = dm.calendar()
    if live:
        day = cal[-1]
    else:
        day = pd.Timestamp(date if date is not None else cfg.evaluate.valid[1])
        if in_test(cfg, day):
            raise SealedError(f"mine signals on {day.date()}: the day lies in the sealed test "
                              f"split (from {cfg.evaluate.test[0]}); give a --date up to "
                              f"{cfg.evaluate.valid[1]}, or --live for production signals on "
                              "the latest day (recorded, see `mine audit`)")
    i = int(cal.searchsorted(day, side="right")) - 1
    if i < 0:
        raise BacktestError(f"--date {day.date()} is before the first day of the data")
    day = cal[i]
    start = cal[max(0, i - cfg.signals.lookback)]
    run_id = new_run_id()
    access = None
    if in_test(cfg, day):
        access = unseal(cfg, purpose="live", universe=universe,
                        subject={"run_id": run_id, "command": "signals"},
                        window=(str(start.date()), str(day.date())))
    inputs = load_book_inputs(cfg, dm, universe, start, day, say)
    say("running the paper book")
    book = _run(inputs, cfg)
    rows = day_frame(inputs, book, universe)
    stops = book.stops[book.stops["trade_date"] == day].reset_index(drop=True)
    run = SignalsRun(run_id=run_id, date=str(day.date()), universe=universe,
                     book_start=str(inputs.scores.dates[0].date()), rows=rows,
                     notes=list(inputs.scores.notes), stops=stops,
                     audit_id=None if access is None else access.audit_id)
    channels = cfg.notify.channels if (notify and cfg.signals.notify) else ()
    with FactorStore(cfg.store.path) as store:
        SignalLog(store).write(rows, run_id)
        if len(stops):
            added, _ = AlertLog(store).add(_stop_alerts(stops), channels)
            run.alerts_added = len(added)
        if channels:
            run.delivery = send_pending(AlertLog(store), cfg.notify)
    return run


def signal_backtest(cfg, *, start: str | None = None, end: str | None = None,
                    universe: str | None = None, benchmark: str | None = None,
                    out_dir=None, out=None, dm=None, on_progress: Progress = None,
                    argv: Optional[Sequence[str]] = None):
    """Backtest the signal book on ``[start, end]`` (default ``[backtest] start`` to the end of
    valid) and write a run folder like ``mine backtest``'s.

    Returns
    -------
    (backtest.backtest_run.BacktestRun, dict)
        The run (``strategy`` = ``signals_<universe>``; its folder also holds
        ``signals.parquet``, every decision, ``stops.parquet``, every stop / take-profit hit,
        and ``signals.json``) and ``signals.json``'s content (settings, counts, notes).

    Raises
    ------
    SealedError
        A window reaching the test split (checked before any data is read).
    DataError, UniverseError, BacktestError
    """
    from backtest.backtest_run import BacktestRunSettings, measure, write_run_manifest
    from backtest.run_dirs import run_folder
    from backtest.seal import check_window, default_end
    from data.manager import DataManager
    from data.manifest import RunRecorder

    say = on_progress or (lambda m: None)
    universe = universe or cfg.signals.universe
    bt = cfg.backtest
    start = start or bt.start
    end = end or bt.end or default_end(cfg, False)
    check_window(cfg, end, None, "mine signals --backtest")
    dm = dm or DataManager.from_config(cfg)
    end = min(end, str(dm.calendar()[-1].date()))
    s = BacktestRunSettings.from_config(bt, start=start, end=end, benchmark=benchmark,
                                        out_dir=Path(out_dir) if out_dir else None,
                                        out=Path(out) if out else None, selected=True)
    dm.index_daily(s.benchmark, start, end)           # unknown benchmark: DataError first
    manifest = RunRecorder("backtest", cfg, argv=argv, settings=s, window=(start, end))
    folder = run_folder(s.out_dir, f"signals_{universe}", s.out)
    try:
        t0 = time.perf_counter()
        inputs = load_book_inputs(cfg, dm, universe, start, end, say)
        t1 = time.perf_counter()
        say("simulating the signal book")
        book = _run(inputs, cfg)
        t2 = time.perf_counter()
        from backtest.targets import write_frame
        write_frame(book.signals, folder.path / "signals")
        write_frame(book.stops, folder.path / "stops")
        pos = book.sim.positions
        nav = book.sim.nav
        tg = pd.DataFrame({"trade_date": pos["trade_date"], "ts_code": pos["ts_code"],
                           "target_weight": pos["value"].to_numpy()
                           / nav.reindex(pos["trade_date"]).to_numpy(),
                           "strategy_name": f"signals_{universe}", "universe": universe})
        run = measure(cfg, dm, book.sim, tg, s, folder.path, folder.final, folder.run_id,
                      strategy=f"signals_{universe}",
                      seconds={"load": round(t1 - t0, 2), "simulate": round(t2 - t1, 2)},
                      extra_notes=inputs.scores.notes)
        meta = {"universe": universe, "signals": _cfg_dict(cfg.signals),
                "stops_by_reason": {str(k): int(v) for k, v in
                                    book.stops["reason"].value_counts().items()},
                "signals_by_flag": {str(k): int(v) for k, v in
                                    book.signals["flag"].value_counts().items()},
                "notes": inputs.scores.notes}
        (folder.path / "signals.json").write_text(json.dumps(meta, indent=1),
                                                  encoding="utf-8")
        folder.commit()
    except BaseException:
        folder.discard()
        raise
    write_run_manifest(manifest, run, files=("signals", "stops"))
    return run, meta


def _cfg_dict(sc: SignalsConfig) -> dict:
    from dataclasses import asdict
    return asdict(sc)
