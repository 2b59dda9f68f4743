"""CLI commands: `mine combine`, `mine backtest` (issue 3). `mine export` is in cli_export.

``mine combine`` turns the leaderboard into a composite score (:mod:`backtest.combine`) and
``target_positions`` (:mod:`backtest.strategies`); ``mine backtest`` runs the account simulator
(:mod:`backtest.simulate`) on a targets file or on the micro-cap preset and prints the
performance (:mod:`backtest.metrics`) next to the benchmark index.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from data.io import atomic_write

from mining import cli_app

SURVIVORSHIP_NOTE = ("the sample warehouse holds only stocks still listed in 2026-05 (survivors): "
                     "delisted names are missing, so results look too good, above all for small "
                     "and micro caps")
IN_SAMPLE_NOTE = ("leaderboard members are selected on valid metrics and the backtest window "
                  "overlaps valid ({valid}): that part is in-sample for the selection; the test "
                  "split ({test}) is reported separately")




def _pct(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"


def _num(v, d: int = 2) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{d}f}"


def _split_neutral(s: Optional[str]) -> tuple[str, ...]:
    if not s:
        return ()
    return tuple(x.strip() for x in s.split(",") if x.strip())


# --------------------------------------------------------------------------- combine

def run_combine(cfg, *, top, method, universe, max_corr, neutral, window, strategy, n, n_drop,
                rebalance, max_weight, max_industry_weight, start, end, out: Path) -> dict:
    """Composite score + targets written under ``out``; returns the summary dict."""
    from backtest.combine import combine_from_store, warmup_start
    from backtest.strategies import (apply_caps, eligible_mask, rebalance_mask, to_targets,
                                     topk_dropout_weights, topn_weights, write_frame,
                                     write_targets)
    from data.errors import BacktestError
    from data.manager import DataManager
    from factors.processing import industry_codes
    from factors.store import FactorStore
    from backtest.candidates import make_workspace

    if strategy not in ("topn", "topk"):
        raise BacktestError(f"unknown strategy {strategy!r}; use topn or topk")
    dm = DataManager.from_config(cfg)
    t0 = time.perf_counter()
    ws = make_workspace(cfg, universe, warmup_start(dm, start), end, dm=dm,
                        model_dir=cfg.model.out_dir)
    with FactorStore(cfg.store.path) as store:
        res = combine_from_store(ws, store, top=top, method=method, max_corr=max_corr,
                                 neutral=neutral, window=window, start=start)
    dates, codes = res.score.index, res.score.columns
    elig = eligible_mask(dm, universe, dates, codes,
                         min_listed_days=cfg.evaluate.min_listed_days)
    rb = rebalance_mask(dates, rebalance)
    score = res.score.to_numpy()
    if strategy == "topn":
        W = topn_weights(score, elig, n, rb)
        name = f"{method}_top{n}"
    else:
        W = topk_dropout_weights(score, elig, n, n_drop, rb)
        name = f"{method}_top{n}_drop{n_drop}"
    if max_weight or max_industry_weight:
        ind = industry_codes(dm.stock_basic().set_index("ts_code")["industry_ts"]
                             .reindex(codes).tolist())
        W = apply_caps(W, max_weight=max_weight or None, industry=ind,
                       max_industry_weight=max_industry_weight or None)
    targets = to_targets(W, dates, codes, f"combine_{name}_{universe}")
    out.mkdir(parents=True, exist_ok=True)
    sc = res.score.stack().rename("score").reset_index()
    sc.columns = ["trade_date", "ts_code", "score"]
    write_frame(sc, out / "score")
    write_frame(res.weights.reset_index(names="trade_date"), out / "factor_weights")
    pq, csv = write_targets(targets, out / "targets")
    held = targets.groupby("trade_date").size()
    summary = {
        "universe": universe, "method": method, "window": window, "horizon": res.horizon,
        "neutralize": list(neutral), "strategy": strategy, "n": n, "rebalance": str(rebalance),
        "start": str(dates[0].date()), "end": str(dates[-1].date()),
        "members": [dict(m.to_dict(), mean_weight=float(res.weights[m.name].mean()))
                    for m in res.members],
        "dropped": [{"name": a, "reason": b} for a, b in res.dropped],
        "rebalance_days": int(rb.sum()), "target_days": int(held.size),
        "mean_names": float(held.mean()) if held.size else 0.0,
        "files": {"targets_parquet": str(pq), "targets_csv": str(csv),
                  "score": str(out / "score.parquet"),
                  "factor_weights": str(out / "factor_weights.parquet")},
        "seconds": round(time.perf_counter() - t0, 1),
        "note": IN_SAMPLE_NOTE.format(valid=" to ".join(cfg.evaluate.valid),
                                      test=" to ".join(cfg.evaluate.test)),
    }
    text = json.dumps(summary, indent=2, default=str)
    atomic_write(out / "combine.json", lambda tmp: Path(tmp).write_text(text))
    return summary


def _members_table(summary: dict) -> Table:
    t = Table(title=f"combination ({summary['method']}, {summary['universe']}, "
                    f"window {summary['window']}, horizon {summary['horizon']})")
    for c in ("name", "formula", "sign", "train RankIC", "valid RankIC", "valid ICIR",
              "mean weight"):
        t.add_column(c, overflow="fold")
    for m in summary["members"]:
        t.add_row(escape(m["name"]), escape(m["formula"]), f"{m['sign']:+.0f}",
                  _num(m["train_rank_ic"], 4), _num(m["valid_rank_ic"], 4),
                  _num(m["valid_rank_icir"], 3), _num(m["mean_weight"], 3))
    return t


# --------------------------------------------------------------------------- backtest

def run_backtest(cfg, targets: pd.DataFrame, *, benchmark: str, start: str, end: str,
                 cash: Optional[float], out: Path, dm=None, selected: bool = True) -> dict:
    """Simulate ``targets`` on ``[start, end]``, save results under ``out``, return summary."""
    from backtest.metrics import benchmark_nav, performance, yearly_table
    from backtest.simulate import MarketData, SimConfig, simulate
    from data.errors import BacktestError
    from data.manager import DataManager

    dm = dm or DataManager.from_config(cfg)
    dm.index_daily(benchmark, start, end)            # unknown code -> DataError listing them
    tg = targets[(targets.trade_date >= pd.Timestamp(start))
                 & (targets.trade_date <= pd.Timestamp(end))]
    if tg.empty:
        raise BacktestError(f"no targets dated between {start} and {end}")
    t0 = time.perf_counter()
    codes = sorted(tg.ts_code.unique())
    first = str(tg.trade_date.min().date())
    market = MarketData.from_dm(dm, codes, first, end)
    t1 = time.perf_counter()
    sim_cfg = SimConfig.from_config(cfg.backtest)
    if cash:
        sim_cfg = replace(sim_cfg, init_cash=float(cash))
    res = simulate(tg, market, sim_cfg)
    t2 = time.perf_counter()
    res.save(out)
    bench = benchmark_nav(dm, benchmark, res.nav.index)
    perf = performance(res.nav, trades=res.trades, benchmark=bench, benchmark_name=benchmark)
    bperf = performance(bench)
    ev = cfg.evaluate
    splits = {"train": ev.train, "valid": ev.valid, "test": ev.test}
    test = res.nav[res.nav.index >= pd.Timestamp(ev.test[0])]
    test_perf = test_bench = None
    if len(test) > 2 and res.nav.index[0] < pd.Timestamp(ev.test[0]):
        prev = res.nav[res.nav.index < pd.Timestamp(ev.test[0])]
        base = pd.concat([prev.iloc[-1:], test]) if len(prev) else test
        bb = benchmark_nav(dm, benchmark, base.index)
        test_perf = performance(base, benchmark=bb, benchmark_name=benchmark).to_dict()
        test_bench = performance(bb).to_dict()
    yt = yearly_table(res.nav, bench, splits=splits)
    yt.to_csv(out / "yearly.csv")
    costs = res.costs.sum()
    summary = {
        "strategy": str(tg["strategy_name"].iloc[0]) if "strategy_name" in tg else "custom",
        "benchmark": benchmark, "init_cash": sim_cfg.init_cash,
        "performance": perf.to_dict(), "benchmark_performance": bperf.to_dict(),
        "test_performance": test_perf, "test_benchmark_performance": test_bench,
        "yearly": json.loads(yt.reset_index().to_json(orient="records")),
        "n_trades": int(len(res.trades)), "n_rejected": int(len(res.rejected)),
        "rejected_by_reason": {str(k): int(v) for k, v in
                               res.rejected["reason"].value_counts().items()}
        if len(res.rejected) else {},
        "costs": {k: float(v) for k, v in costs.items()},
        "final_nav": float(res.nav.iloc[-1]),
        "seconds": {"load": round(t1 - t0, 2), "simulate": round(t2 - t1, 2)},
        "out_dir": str(out),
        "note": ((IN_SAMPLE_NOTE.format(valid=" to ".join(ev.valid), test=" to ".join(ev.test))
                  + "; ") if selected else "") + SURVIVORSHIP_NOTE,
    }
    text = json.dumps(summary, indent=2, default=str)
    atomic_write(out / "performance.json", lambda tmp: Path(tmp).write_text(text))
    return summary


def _perf_table(summary: dict) -> Table:
    bm = summary["benchmark"]
    t = Table(title=f"{summary['strategy']} vs {bm}")
    cols = [("full: strategy", summary["performance"]),
            (f"full: {bm}", summary["benchmark_performance"])]
    if summary["test_performance"]:
        cols += [("test: strategy", summary["test_performance"]),
                 (f"test: {bm}", summary["test_benchmark_performance"])]
    t.add_column("metric")
    for name, _ in cols:
        t.add_column(name, justify="right")
    rows = [("period", lambda p: f"{p['start']} to {p['end']}"),
            ("annual return", lambda p: _pct(_f(p["annual_return"]))),
            ("annual volatility", lambda p: _pct(_f(p["annual_vol"]))),
            ("Sharpe", lambda p: _num(_f(p["sharpe"]))),
            ("max drawdown", lambda p: _pct(_f(p["max_drawdown"]))),
            ("max DD peak -> trough", lambda p: f"{p['max_dd_peak']} -> {p['max_dd_trough']}"),
            ("Calmar", lambda p: _num(_f(p["calmar"]))),
            ("win rate (daily)", lambda p: _pct(_f(p["win_rate"]))),
            ("turnover (annual, one-sided)", lambda p: _num(_f(p["turnover"]))),
            ("excess return (annual)", lambda p: _pct(_f(p["excess_return"]))),
            ("information ratio", lambda p: _num(_f(p["information_ratio"])))]
    for label, fn in rows:
        t.add_row(label, *[fn(p) for _, p in cols])
    return t


def _f(v) -> float:
    return math.nan if v is None else float(v)


def _yearly_table(summary: dict) -> Table:
    t = Table(title="per year (period = evaluation split)")
    for c in ("year", "period", "return", "bench", "excess", "Sharpe", "max DD", "IR"):
        t.add_column(c, justify="right")
    for r in summary["yearly"]:
        t.add_row(str(r["year"]), r.get("period", "-"), _pct(_f(r["return"])),
                  _pct(_f(r.get("bench_return"))), _pct(_f(r.get("excess"))),
                  _num(_f(r["sharpe"])), _pct(_f(r["max_drawdown"])), _num(_f(r.get("ir"))))
    return t


def _print_backtest(console, summary: dict) -> None:
    console.print(_perf_table(summary))
    console.print(_yearly_table(summary))
    c = summary["costs"]
    console.print(f"trades {summary['n_trades']}, rejected {summary['n_rejected']} "
                  f"{summary['rejected_by_reason'] or ''}; costs (yuan): "
                  + ", ".join(f"{k} {v:,.0f}" for k, v in c.items())
                  + f"; final NAV {summary['final_nav']:,.0f}")
    console.print(f"[dim]{escape(summary['note'])}[/]")
    console.print(f"saved NAV, trades, rejected, costs, positions, yearly.csv, "
                  f"performance.json to {escape(summary['out_dir'])}")


# --------------------------------------------------------------------------- register

def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``mine`` app."""

    @app.command()
    def combine(
            top: Optional[int] = typer.Option(None, "--top", help="Leaderboard members considered "
                                              "(best by valid RankICIR)."),
            method: Optional[str] = typer.Option(None, help="ic | icir | equal"),
            universe: Optional[str] = typer.Option(None, help="Universe (leaderboard + stocks)."),
            max_corr: Optional[float] = typer.Option(None, "--max-corr",
                                                     help="Max pairwise |corr| on valid."),
            neutralize: Optional[str] = typer.Option(None, help="industry,size (comma list)."),
            window: Optional[int] = typer.Option(None, help="Trailing RankIC window (days)."),
            strategy: Optional[str] = typer.Option(None, help="topn | topk (with dropout)."),
            n: Optional[int] = typer.Option(None, "--n", help="Names held."),
            n_drop: Optional[int] = typer.Option(None, "--n-drop", help="topk: replacements."),
            rebalance: Optional[str] = typer.Option(
                None, help="daily | weekly | monthly | every k trading days"),
            max_weight: float = typer.Option(0.0, "--max-weight", help="Per-stock cap (0=none)."),
            max_industry_weight: float = typer.Option(0.0, "--max-industry-weight",
                                                      help="Per-industry cap (0=none)."),
            start: Optional[str] = typer.Option(None, help="Default [backtest] start."),
            end: Optional[str] = typer.Option(None, help="Default [backtest] end."),
            out: Optional[Path] = typer.Option(None, "--out", help="Output folder."),
            as_json: bool = typer.Option(False, "--json")) -> None:
        """Combine leaderboard factors into a composite score and target_positions."""
        cli = cli_app
        from data.errors import AlphamineError
        try:
            cfg = cli.cfg()
            bt = cfg.backtest
            universe_ = universe or bt.universe
            method_ = method or bt.method
            out_ = out or (bt.out_dir / f"combine_{method_}_{universe_}")
            summary = run_combine(
                cfg, top=top or bt.top, method=method_, universe=universe_,
                max_corr=max_corr or bt.max_corr, neutral=_split_neutral(neutralize),
                window=window or bt.ic_window, strategy=strategy or bt.strategy, n=n or bt.n,
                n_drop=bt.n_drop if n_drop is None else n_drop,
                rebalance=rebalance or bt.rebalance, max_weight=max_weight,
                max_industry_weight=max_industry_weight, start=start or bt.start,
                end=end or bt.end, out=Path(out_))
        except AlphamineError as e:
            cli.fail(e)
            return
        if as_json:
            print(json.dumps(summary, indent=2, default=str))
            return
        con = cli.console
        con.print(_members_table(summary))
        for d in summary["dropped"]:
            con.print(f"[dim]dropped {escape(d['name'])}: {escape(d['reason'])}[/]")
        con.print(f"{summary['strategy']} n={summary['n']} rebalance={summary['rebalance']}: "
                  f"{summary['target_days']} target days, {summary['mean_names']:.1f} names on "
                  f"average, {summary['start']} to {summary['end']} ({summary['seconds']}s)")
        con.print(f"[dim]{escape(summary['note'])}[/]")
        con.print(f"targets: {escape(summary['files']['targets_parquet'])} (+ .csv); "
                  f"run `mine backtest --targets {escape(summary['files']['targets_parquet'])}`")

    @app.command()
    def backtest(
            targets: Optional[Path] = typer.Option(None, "--targets",
                                                   help="target_positions (.parquet or .csv)."),
            preset: Optional[str] = typer.Option(None, help="microcap"),
            benchmark: Optional[str] = typer.Option(None, help="Index code, e.g. 000300.SH."),
            start: Optional[str] = typer.Option(None, help="Default [backtest] start."),
            end: Optional[str] = typer.Option(None, help="Default [backtest] end."),
            cash: Optional[float] = typer.Option(None, help="Initial cash, yuan."),
            mv_min: Optional[float] = typer.Option(None, "--mv-min", help="microcap: yuan."),
            mv_max: Optional[float] = typer.Option(None, "--mv-max", help="microcap: yuan."),
            universe: Optional[str] = typer.Option(None, help="microcap: stock universe."),
            hold: Optional[int] = typer.Option(None, help="microcap: names held."),
            every: Optional[int] = typer.Option(None, help="microcap: rebalance every k days."),
            out: Optional[Path] = typer.Option(None, "--out", help="Output folder."),
            as_json: bool = typer.Option(False, "--json")) -> None:
        """Simulate target_positions in an A-share account and report performance."""
        cli = cli_app
        from backtest.strategies import microcap_targets, read_targets, write_targets
        from data.errors import AlphamineError, BacktestError
        from data.manager import DataManager
        try:
            cfg = cli.cfg()
            bt = cfg.backtest
            start_, end_ = start or bt.start, end or bt.end
            dm = DataManager.from_config(cfg)
            last = str(dm.calendar()[-1].date())
            end_ = min(end_, last)
            if (targets is None) == (preset is None):
                raise BacktestError("give exactly one of --targets FILE or --preset microcap")
            if preset is not None:
                if preset != "microcap":
                    raise BacktestError(f"unknown preset {preset!r}; available: microcap")
                tg = microcap_targets(
                    dm, start_, end_, mv_min=bt.microcap_mv_min if mv_min is None else mv_min,
                    mv_max=bt.microcap_mv_max if mv_max is None else mv_max,
                    hold=hold or bt.microcap_hold, every=every or bt.microcap_every,
                    universe=universe or bt.microcap_universe)
                out_ = Path(out or bt.out_dir / "microcap")
                out_.mkdir(parents=True, exist_ok=True)
                write_targets(tg, out_ / "targets")
            else:
                tg = read_targets(targets)
                out_ = Path(out or bt.out_dir / f"{Path(targets).parent.name}_{Path(targets).stem}")
            summary = run_backtest(cfg, tg, benchmark=benchmark or bt.benchmark, start=start_,
                                   end=end_, cash=cash, out=out_, dm=dm,
                                   selected=preset is None)
        except AlphamineError as e:
            cli.fail(e)
            return
        if as_json:
            print(json.dumps(summary, indent=2, default=str))
            return
        _print_backtest(cli.console, summary)
