"""CLI commands: `mine combine`, `mine backtest` (a shell over :mod:`backtest.combine_run` and
:mod:`backtest.backtest_run`). `mine export` is in cli_export.

Each command validates its options (before any data loads), makes one library call and renders
the run record it returns.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from backtest.backtest_run import (
    BacktestRun,
    BacktestRunSettings,
    MicrocapSettings,
    run_backtest,
    run_microcap,
)
from backtest.combine import METHODS
from backtest.combine_compare import CompareResult, run_compare
from backtest.combine_run import (
    NEUTRALIZERS,
    STRATEGIES,
    CombineRun,
    CombineSettings,
    run_combine,
)
from backtest.run_dirs import find_latest_targets
from data.errors import AlphamineError, ConfigError
from data.procs import peak_rss_mb
from mining.cli_app import (
    app,
    check_choice,
    check_date,
    check_out,
    check_positive,
    check_range,
    check_span,
    check_universe,
    config_keys,
    config_line,
    console,
    err_console,
    fail,
    invocation,
    print_json,
    warn,
    warn_unseal_ignored,
)
from mining.cli_app import cfg as _cfg

PRESETS = ("microcap",)


def _pct(v) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"


def _num(v, d: int = 2) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{d}f}"


def _f(v) -> float:
    return math.nan if v is None else float(v)


def check_neutralize(value: Optional[str]) -> tuple[str, ...]:
    """``--neutralize industry,size`` as a tuple (subset of :data:`NEUTRALIZERS`)."""
    parts = tuple(x.strip() for x in (value or "").split(",") if x.strip())
    bad = [x for x in parts if x not in NEUTRALIZERS]
    if bad:
        raise ConfigError(f"--neutralize {value!r}: use a comma list of "
                          f"{', '.join(NEUTRALIZERS)}")
    return parts


def check_rebalance(value: str) -> str:
    """``daily``, ``weekly``, ``monthly`` or a whole number of trading days >= 1."""
    v = str(value).strip()
    if v in ("daily", "weekly", "monthly") or (v.isdigit() and int(v) >= 1):
        return v
    raise ConfigError(f"--rebalance {value!r}: use daily, weekly, monthly or a number of "
                      f"trading days >= 1")


def _date(option: str, value: Optional[str], default: str) -> Optional[str]:
    """``--start`` / ``--end`` (or the ``[backtest]`` default) as YYYY-MM-DD; None when
    neither is set (the library's default window: the end of valid while sealed)."""
    if value is None:
        return check_date(f"[backtest] {option.lstrip('-')}", default) if default else None
    return check_date(option, value)


def _progress(as_json: bool):
    return None if as_json else (lambda m: err_console.print(f"[dim]{escape(m)}…[/]"))


def _prelude(as_json: bool):
    c = _cfg()
    if not as_json:
        console.print(f"[dim]{escape(config_line(c))}[/]")
    return c


def _emit_json(c, record, **extra) -> None:
    print_json({"config": str(c.source) if c.source else None, "store": str(c.store.path),
                **record.to_dict(), **extra})


# --------------------------------------------------------------------------- combine
def _members_table(d: dict) -> Table:
    t = Table(title=f"combination ({d['method']}, {d['universe']}, "
                    f"window {d['window']}, horizon {d['horizon']})")
    t.add_column("name", no_wrap=True)
    t.add_column("formula")
    for c in ("sign", "train RankIC", "valid RankIC", "valid ICIR", "mean weight"):
        t.add_column(c, justify="right", no_wrap=True)
    for m in d["members"]:
        t.add_row(escape(m["name"]), escape(m["formula"]), f"{m['sign']:+.0f}",
                  _num(m["train_rank_ic"], 4), _num(m["valid_rank_ic"], 4),
                  _num(m["valid_rank_icir"], 3), _num(m["mean_weight"], 3))
    return t


def _print_combine(run: CombineRun) -> None:
    d = run.to_dict()
    console.print(_members_table(d))
    for x in d["dropped"]:
        console.print(f"[dim]dropped {escape(x['name'])}: {escape(x['reason'])}[/]")
    console.print(f"{d['strategy']} n={d['n']} rebalance={d['rebalance']}: "
                  f"{d['target_days']} target days, {d['mean_names']:.1f} names on "
                  f"average, {d['start']} to {d['end']} ({d['seconds']}s)")
    console.print(f"[dim]{escape(d['note'])}[/]")
    if d["audit_id"] is not None:
        what = "live targets" if d["live"] else "test split unsealed"
        console.print(f"[yellow]{what}: logged as audit #{d['audit_id']} (`mine audit`)[/]")
    console.print(f"run {d['run_id']}: {escape(d['out_dir'])}")
    console.print(f"targets: {escape(d['files']['targets_parquet'])} (+ .csv); "
                  f"run `mine backtest --targets {escape(d['files']['targets_parquet'])}`")


def _print_compare(res: CompareResult) -> None:
    d = res.to_dict()
    t = Table(title=f"combination methods on {d['split']} ({d['universe']}, {d['start']} to "
                    f"{d['end']}, horizon {d['horizon']}, {len(d['members'])} members)")
    t.add_column("method", no_wrap=True)
    for col in ("RankIC", "ICIR", "turnover (top q)", "long-short annual", "days", "seconds"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in res.rows:
        t.add_row(r.method, _num(r.rank_ic_mean, 4), _num(r.rank_icir, 3), _num(r.turnover, 3),
                  _pct(r.ls_ann_return), str(r.n_days), _num(r.seconds, 1))
    console.print(t)
    for m in d["members"]:
        console.print(f"[dim]member {escape(m['name'])}: {escape(m['formula'])}[/]")


@app.command()
def combine(
        ctx: typer.Context,
        top: Optional[int] = typer.Option(None, "--top", help="Leaderboard members considered, "
                                          ">= 1 (best by valid RankICIR x sign of train "
                                          "RankIC; sign flips and entries below the floor are "
                                          "never used). Default [backtest] top."),
        method: Optional[str] = typer.Option(None, help="ic | icir | equal | shrink (IC "
                                             "weights shrunk toward equal) | gs | sym "
                                             "(orthogonalised members, IC-weighted) | ridge | "
                                             "lgbm (walk-forward combiners) | auto (per date, "
                                             "the method with the best trailing RankIC). "
                                             "Default [backtest] method."),
        universe: Optional[str] = typer.Option(None, help="Universe (leaderboard + stocks). "
                                               "Default [backtest] universe."),
        max_corr: Optional[float] = typer.Option(None, "--max-corr",
                                                 help="Max pairwise |corr| on valid, in "
                                                 "(0, 1]. Default [backtest] max_corr."),
        neutralize: Optional[str] = typer.Option(None, help="industry,size (comma list)."),
        window: Optional[int] = typer.Option(None, help="Trailing RankIC window (days), >= 2. "
                                             "Default [backtest] ic_window."),
        strategy: Optional[str] = typer.Option(None, help="topk (TopK-dropout within "
                                               "--turnover-budget) | topn. Default "
                                               "[backtest] strategy."),
        n: Optional[int] = typer.Option(None, "--n", help="Names held, >= 1. Default "
                                        "[backtest] n."),
        n_drop: Optional[int] = typer.Option(None, "--n-drop", help="topk: upper bound on "
                                             "replacements per rebalance, 0..n. Default "
                                             "[backtest] n_drop."),
        turnover_budget: Optional[float] = typer.Option(
            None, "--turnover-budget", help="topk: annual one-way turnover budget (x NAV), "
            ">= 0 (0 = none); replacements per rebalance = min(n_drop, floor(budget * n * "
            "interval / 252)). Default [backtest] turnover_budget."),
        compare: bool = typer.Option(
            False, "--compare", help="Instead of targets: build the composite of every "
            "method on the same members and print one table on the valid split (RankIC, "
            "ICIR, top-quantile turnover, long-short annual return, days)."),
        rebalance: Optional[str] = typer.Option(
            None, help="daily | weekly | monthly | every k trading days"),
        max_weight: float = typer.Option(0.0, "--max-weight", help="Per-stock cap, in [0, 1] "
                                         "(0 = none)."),
        max_industry_weight: float = typer.Option(0.0, "--max-industry-weight",
                                                  help="Per-industry cap, in [0, 1] "
                                                  "(0 = none)."),
        start: Optional[str] = typer.Option(None, help="Default [backtest] start."),
        end: Optional[str] = typer.Option(None, help="Default [backtest] end, else the end of "
                                          "valid (the test split is sealed)."),
        unseal_test: bool = typer.Option(
            False, "--unseal-test", help="Let the window reach the test split (the weights "
            "then use test-period RankIC; logged with the members, see `mine audit`)."),
        live: bool = typer.Option(
            False, "--live", help="Production: targets through the latest trading day for "
            "`mine export` (logged as a live access; no performance is computed)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: a new "
                                           "run folder under [backtest] out_dir)."),
        force: bool = typer.Option(False, "--force", help="Write into a non-empty --out."),
        include_forced: bool = typer.Option(
            False, "--include-forced", help="Also use forced leaderboard entries (library "
            "factors stored although the gate would reject them)."),
        as_json: bool = typer.Option(False, "--json", help="Print the run as JSON.")) -> None:
    """Combine leaderboard factors into a composite score and target_positions."""
    try:
        c = _prelude(as_json)
        bt = c.backtest
        s = CombineSettings.from_config(
            bt, top=top, method=method, universe=universe, max_corr=max_corr,
            neutral=check_neutralize(neutralize), window=window, strategy=strategy, n=n,
            n_drop=n_drop, rebalance=rebalance, max_weight=max_weight,
            turnover_budget=turnover_budget,
            max_industry_weight=max_industry_weight, out=out, force=force,
            include_forced=include_forced or None, unseal_test=unseal_test or None,
            live=live or None,
            start=_date("--start", start, bt.start), end=_date("--end", end, bt.end))
        if live and end is not None:
            raise ConfigError("--live ends on the latest trading day; drop --end")
        if live and unseal_test:
            raise ConfigError("--live computes production targets, --unseal-test test "
                              "performance: choose one")
        check_choice("--method", s.method, METHODS)
        check_choice("--strategy", s.strategy, STRATEGIES)
        check_universe("--universe", s.universe)
        check_rebalance(s.rebalance)
        for opt, v in (("--top", s.top), ("--n", s.n)):
            check_positive(opt, v)
        if s.window < 2:
            raise ConfigError(f"--window must be >= 2 (a trailing RankIC mean needs two "
                              f"days), got {s.window}")
        check_range("--max-corr", s.max_corr, 0.0, 1.0, lo_open=True)
        check_positive("--n-drop", s.n_drop, zero=True)
        check_positive("--turnover-budget", s.turnover_budget, zero=True)
        if s.strategy == "topk" and n_drop is not None and s.n_drop > s.n:
            raise ConfigError(f"--n-drop {s.n_drop} is more than --n {s.n}: topk replaces at "
                              "most the names it holds (0 <= n_drop <= n)")
        for opt, v in (("--max-weight", s.max_weight),
                       ("--max-industry-weight", s.max_industry_weight)):
            check_range(opt, v, 0.0, 1.0)
        check_span("--start", s.start, "--end", s.end)
        warn_unseal_ignored(c, unseal_test, s.end)
        if not compare and s.strategy == "topk" and s.effective_n_drop() == 0 and s.n_drop:
            warn(f"--turnover-budget {s.turnover_budget:g} with --n {s.n} every "
                 f"{s.rebalance} gives 0 replacements per rebalance (floor(budget x n x "
                 "interval / 252)): the first holdings are never changed")
        if compare:
            for flag, v in (("--live", live), ("--unseal-test", unseal_test),
                            ("--end", end is not None), ("--out", out is not None)):
                if v:
                    raise ConfigError(f"--compare scores the methods on the valid split "
                                      f"(the test split stays sealed); drop {flag}")
            res = run_compare(c, s, model_dir=c.model.out_dir,
                              on_progress=_progress(as_json))
        else:
            check_out("--out", out)
            check_out("[backtest] out_dir", s.out_dir)
            run = run_combine(c, s, model_dir=c.model.out_dir, on_progress=_progress(as_json),
                              argv=invocation(ctx))
    except AlphamineError as e:
        fail(e)
    if compare:
        if as_json:
            print_json({**config_keys(c), **res.to_dict(), "peak_rss_mb": peak_rss_mb()})
        else:
            _print_compare(res)
    elif as_json:
        _emit_json(c, run, peak_rss_mb=peak_rss_mb())
    else:
        _print_combine(run)


# --------------------------------------------------------------------------- backtest
def _perf_table(d: dict) -> Table:
    bm = d["benchmark"]
    t = Table(title=f"{d['strategy']} vs {bm}")
    cols = [("full: strategy", d["performance"]), (f"full: {bm}", d["benchmark_performance"])]
    if d["test_performance"]:
        cols += [("test: strategy", d["test_performance"]),
                 (f"test: {bm}", d["test_benchmark_performance"])]
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
    ds = d.get("deflated_sharpe")
    if ds:        # the whole backtest, deflated for the strategies tried (Bailey & LdP 2014)
        blank = ["-"] * (len(cols) - 1)
        var = ds.get("sr_var")
        for label, value in (
                ("deflated Sharpe (DSR)", _num(_f(ds.get("dsr")), 3)),
                ("strategies tried (N)", str(ds.get("n_trials"))),
                ("SR0: best of N by luck (ann.)",
                 _num(_f(ds.get("sr0")) * math.sqrt(252))),
                (f"Var[SR] daily ({ds.get('sr_var_source')})",
                 "-" if var is None else f"{var:.3g}")):
            t.add_row(label, value, *blank)
    return t


def _yearly_table(d: dict) -> Table:
    t = Table(title="per year (period = evaluation split)")
    for c in ("year", "period", "return", "bench", "excess", "Sharpe", "max DD", "IR"):
        t.add_column(c, justify="right")
    for r in d["yearly"]:
        t.add_row(str(r["year"]), r.get("period", "-"), _pct(_f(r["return"])),
                  _pct(_f(r.get("bench_return"))), _pct(_f(r.get("excess"))),
                  _num(_f(r["sharpe"])), _pct(_f(r["max_drawdown"])), _num(_f(r.get("ir"))))
    return t


def _print_backtest(run: BacktestRun) -> None:
    d = run.to_dict()
    console.print(_perf_table(d))
    console.print(_yearly_table(d))
    console.print(f"trades {d['n_trades']}, rejected {d['n_rejected']} "
                  f"{d['rejected_by_reason'] or ''}; costs (yuan): "
                  + ", ".join(f"{k} {v:,.0f}" for k, v in d["costs"].items())
                  + f"; final NAV {d['final_nav']:,.0f}")
    console.print(f"[dim]{escape(d['note'])}[/]")
    if d["audit_id"] is not None:
        console.print(f"[yellow]test split unsealed: logged as audit #{d['audit_id']} "
                      "(`mine audit`)[/]")
    console.print(f"run {d['run_id']}: saved NAV, trades, rejected, costs, positions, "
                  f"yearly.csv, performance.json to {escape(d['out_dir'])}")


@app.command()
def backtest(
        ctx: typer.Context,
        targets: Optional[Path] = typer.Option(
            None, "--targets", help="target_positions (.parquet or .csv), a run folder holding "
            "targets.parquet, or 'latest' (the newest `mine combine` run)."),
        preset: Optional[str] = typer.Option(None, help="microcap"),
        benchmark: Optional[str] = typer.Option(None, help="Index code, e.g. 000300.SH. "
                                                "Default [backtest] benchmark."),
        start: Optional[str] = typer.Option(None, help="Default [backtest] start."),
        end: Optional[str] = typer.Option(None, help="Default [backtest] end, else the end of "
                                          "valid (the test split is sealed)."),
        unseal_test: bool = typer.Option(
            False, "--unseal-test", help="Let the window reach the test split and report "
            "test performance (logged with what it showed, see `mine audit`)."),
        cash: Optional[float] = typer.Option(None, help="Initial cash, yuan. Default "
                                             "[backtest] init_cash."),
        mv_min: Optional[float] = typer.Option(None, "--mv-min", help="microcap: yuan."),
        mv_max: Optional[float] = typer.Option(None, "--mv-max", help="microcap: yuan."),
        universe: Optional[str] = typer.Option(None, help="microcap: stock universe."),
        hold: Optional[int] = typer.Option(None, help="microcap: names held, >= 1."),
        every: Optional[int] = typer.Option(None, help="microcap: rebalance every k trading "
                                            "days, >= 1."),
        out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: a new "
                                           "run folder under [backtest] out_dir)."),
        force: bool = typer.Option(False, "--force", help="Write into a non-empty --out."),
        as_json: bool = typer.Option(False, "--json", help="Print the run as JSON.")) -> None:
    """Simulate target_positions in an A-share account and report performance."""
    try:
        c = _prelude(as_json)
        if (targets is None) == (preset is None):
            raise ConfigError("give exactly one of --targets FILE or --preset microcap")
        check_choice("--preset", preset, PRESETS)
        if targets is not None and str(targets) == "latest":
            targets = find_latest_targets(c.backtest.out_dir)
        elif targets is not None and Path(targets).is_dir():
            targets = Path(targets) / "targets.parquet"
        if targets is not None and not Path(targets).is_file():
            raise ConfigError(f"--targets {str(targets)!r}: file not found (write one with "
                              f"`mine combine`)")
        check_positive("--cash", cash)
        for opt, v in (("--hold", hold), ("--every", every)):
            check_positive(opt, v)
        for opt, v in (("--mv-min", mv_min), ("--mv-max", mv_max)):
            check_positive(opt, v, zero=True)
        given = [o for o, v in (("--universe", universe), ("--hold", hold), ("--every", every),
                                ("--mv-min", mv_min), ("--mv-max", mv_max)) if v is not None]
        if preset is None and given:
            raise ConfigError(f"{', '.join(given)}: options of --preset microcap, not of "
                              "--targets (the targets file fixes names and weights)")
        bt = c.backtest
        s = BacktestRunSettings.from_config(
            bt, benchmark=benchmark, start=_date("--start", start, bt.start),
            end=_date("--end", end, bt.end), cash=cash, out=out, force=force,
            unseal_test=unseal_test or None)
        check_span("--start", s.start, "--end", s.end)
        warn_unseal_ignored(c, unseal_test, s.end)
        check_out("--out", out)
        check_out("[backtest] out_dir", s.out_dir)
        say = _progress(as_json)
        if preset is not None:
            p = MicrocapSettings.from_config(bt, universe=universe, mv_min=mv_min,
                                             mv_max=mv_max, hold=hold, every=every)
            check_universe("--universe", p.universe)
            if p.mv_min > p.mv_max:
                raise ConfigError(f"--mv-min {p.mv_min:g} is above --mv-max {p.mv_max:g} "
                                  "([backtest] microcap_mv_min / microcap_mv_max by default)")
            run = run_microcap(c, p, s, on_progress=say, argv=invocation(ctx))
        else:
            run = run_backtest(c, targets, s, on_progress=say, argv=invocation(ctx))
    except AlphamineError as e:
        fail(e)
    if as_json:
        _emit_json(c, run)
    else:
        _print_backtest(run)
