"""Pool-aware GP (issue 14): the diversity hook, seeds, the diverse selection walk and lineage.

Tiny synthetic panels; the engine (:mod:`mining.gp_engine`) is replaced by a stub where its
interface is exercised, and `mine gp` runs end to end on the panel warehouse.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from backtest.candidates import Workspace
from backtest.context import EvalContext
from factors.expr_parse import parse
from factors.expr_tree import Field
from factors.parallel import SerialExecutor
from factors.store import FactorStore
from factors.store_records import FactorRecord
from mining import gp_run, gp_search
from mining.cli_app import load
from mining.gp import GPGeneration, GPResult, GPSettings
from mining.gp_diversity import Diversity, diverse_walk
from mining.gp_seeds import seed_formulas

T, N = 150, 25
DATES = pd.bdate_range("2016-01-01", periods=T)
TRAIN = (str(DATES[0].date()), str(DATES[89].date()))
VALID = (str(DATES[95].date()), str(DATES[-1].date()))


def _ctx(opn: np.ndarray) -> EvalContext:
    codes = pd.Index([f"{600000 + i}.SH" for i in range(N)])
    return EvalContext.from_arrays(DATES, codes, opn, np.ones((T, N), bool),
                                   np.ones((T, N), bool), {"train": TRAIN, "valid": VALID},
                                   horizons=(1,), horizon=1, embargo=2, universe="csi300")


def _panels(seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    opn = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    close = opn * np.exp(rng.normal(0, 0.01, (T, N)))
    fwd = np.full((T, N), np.nan)
    fwd[:-2] = opn[2:] / opn[1:-1] - 1
    return {"open": opn, "close": close, "vol": rng.lognormal(10, 1, (T, N)),
            "ret": np.vstack([np.full((1, N), np.nan), close[1:] / close[:-1] - 1]),
            "vwap": np.nan_to_num(fwd) + rng.normal(0, 0.03, (T, N))}   # a planted signal


def _ws(*_a, **_k) -> Workspace:
    p = _panels()
    ws = Workspace(dm=None, ctx=_ctx(p["open"]), universe="csi300", start=TRAIN[0],
                   end=VALID[1])
    for k, v in p.items():
        a = np.ascontiguousarray(v, dtype=np.float64)
        a.setflags(write=False)
        ws._panels[k] = a
    return ws


@pytest.fixture
def data():
    p = _panels()
    return _ctx(p["open"]), p


# ----------------------------------------------------------------------------- signature
def test_signature_same_for_monotone_transform_and_negation(data):
    ctx, p = data
    d = Diversity(ctx, n_dates=40)
    x = p["vol"]
    s = d.signature(x)
    assert d.signature(np.log(x) * 3 + 1) == s
    assert d.signature(-x) == s
    assert d.signature(-np.sqrt(x)) == s
    assert d.signature(p["close"]) != s
    assert d.signature(x[:, ::-1].copy()) != s          # the same numbers, other names


# ----------------------------------------------------------------------------- penalty
def test_penalty_empty_pool_self_and_independent(data):
    ctx, p = data
    assert Diversity(ctx).penalty(p["vol"]) == 0.0
    d = Diversity(ctx, {"vol": p["vol"]})
    assert d.penalty(p["vol"]) == pytest.approx(1.0)
    assert d.penalty(-np.log(p["vol"])) == pytest.approx(1.0)
    assert d.penalty(p["vol"] * np.exp(0.05 * np.random.default_rng(0).normal(size=(T, N)))
                     ) > 0.9
    assert d.penalty(p["close"]) < 0.25
    assert 0.0 <= d.penalty(p["ret"]) < 0.25


def test_marginal_penalty_is_the_pool_ic_gain(data):
    ctx, p = data
    empty = Diversity(ctx, mode="marginal")
    assert empty.penalty(p["vwap"]) == 0.0
    d = Diversity(ctx, {"vwap": p["vwap"]}, mode="marginal")
    assert d.penalty(p["vwap"]) == pytest.approx(1.0, abs=1e-6)  # adds nothing to the pool
    rng = np.random.default_rng(9)
    fwd = ctx.fwd[1]
    other = np.nan_to_num(fwd) + rng.normal(0, 0.03, (T, N))     # the signal, other noise
    assert d.penalty(other) < 0.95
    d2 = Diversity(ctx, {"close": p["close"]}, mode="marginal")
    assert d2.penalty(p["vwap"]) < 0.3                          # pool without the signal
    d2.admit("vol", p["vol"], 0.5)              # the hall of fame joins the pool
    d2.admit("vwap", p["vwap"], 0.6)
    both = Diversity(ctx, {"close": p["close"], "vol": p["vol"], "vwap": p["vwap"]},
                     mode="marginal")
    assert d2.penalty(other) == pytest.approx(both.penalty(other), abs=1e-12)
    assert d2.penalty(p["vwap"]) < 0.3          # its own entry is left out


def test_hall_of_fame_keeps_fit_diverse_programs(data):
    ctx, p = data
    d = Diversity(ctx, hof=2, threshold=0.7)
    rng = np.random.default_rng(1)
    d.admit("vol", p["vol"], 0.5)
    d.admit("vol_noisy", p["vol"] * np.exp(0.01 * rng.normal(size=(T, N))), 0.4)
    assert [h.expr for h in d.hall] == ["vol"]                  # correlated and less fit
    d.admit("close", p["close"], 0.3)
    assert [h.expr for h in d.hall] == ["vol", "close"]
    d.admit("log_vol", np.log(p["vol"]), 0.6)                   # fitter twin replaces it
    assert [h.expr for h in d.hall] == ["log_vol", "close"]
    d.admit("ret", p["ret"], 0.2)                               # full and not fitter
    assert [h.expr for h in d.hall] == ["log_vol", "close"]
    d.admit("vwap", p["vwap"], 0.9)
    assert [h.expr for h in d.hall] == ["vwap", "log_vol"]
    assert d.penalty(p["vwap"]) < 0.25            # not penalised for its own entry ...
    assert d.penalty(-p["vol"]) < 0.25            # (same signature as log_vol: itself)
    near = p["vol"] * np.exp(0.05 * rng.normal(size=(T, N)))
    assert d.penalty(near) > 0.9                  # ... but for the others
    pooled = Diversity(ctx, {"vol": p["vol"]}, hof=3)
    pooled.admit("vol2", p["vol"] ** 2, 1.0)                    # the pool already has it
    assert pooled.hall == []


def test_train_rows_only(data):
    """Causality: rows after the end of train (valid labels, later values) change nothing."""
    ctx, p = data
    lo, hi = ctx.split_bounds("train")
    p2 = {k: v.copy() for k, v in p.items()}
    rng = np.random.default_rng(5)
    for v in p2.values():
        v[hi:] = rng.normal(size=v[hi:].shape)
    opn2 = p["open"].copy()
    opn2[hi + 3:] *= np.exp(rng.normal(0, 0.2, opn2[hi + 3:].shape))  # later labels differ
    ctx2 = _ctx(opn2)
    assert ctx2.split_bounds("train") == (lo, hi)
    for mode in ("max_corr", "marginal"):
        a = Diversity(ctx, {"close": p["close"]}, mode=mode, hof=3)
        b = Diversity(ctx2, {"close": p2["close"]}, mode=mode, hof=3)
        assert b.rows.max() < hi
        for k in ("vol", "vwap", "ret"):
            assert a.signature(p[k]) == b.signature(p2[k])
            assert a.penalty(p[k]) == b.penalty(p2[k])
            a.admit(k, p[k], 0.1)
            b.admit(k, p2[k], 0.1)
        assert [h.expr for h in a.hall] == [h.expr for h in b.hall]
    short = Diversity(ctx)                            # panels ending with train are enough
    assert short.signature(p["vol"][:hi]) == short.signature(p["vol"])


# ----------------------------------------------------------------------------- walk
def test_diverse_walk_skips_duplicates_and_train_correlated(data):
    ctx, p = data
    d = Diversity(ctx, {"close": p["close"]})
    cands = [("vol", 0.9), ("log_vol", 0.8), ("neg_vol", 0.7), ("vol_noisy", 0.6),
             ("close_x2", 0.5), ("vwap", 0.4), ("ret", 0.3)]
    rng = np.random.default_rng(2)
    vals = {"vol": p["vol"], "log_vol": np.log(p["vol"]), "neg_vol": -p["vol"],
            "vol_noisy": p["vol"] * np.exp(0.05 * rng.normal(size=(T, N))),
            "close_x2": 2 * p["close"], "vwap": p["vwap"], "ret": p["ret"]}
    sent = []
    w = diverse_walk(cands, vals.__getitem__, d, 0.7, lambda r, e, f: sent.append(e),
                     stop=lambda: False)
    assert sent == ["vol", "vwap", "ret"] == [e for _, e, _ in w.picked]
    assert (w.skipped_duplicate, w.skipped_train_corr) == (2, 2)
    for a, b in combinations(sent, 2):
        assert d.corr_many(vals[a], [vals[b]])[0] < 0.7
    stopped = []
    diverse_walk(cands, vals.__getitem__, d, 0.7, lambda r, e, f: stopped.append(e),
                 stop=lambda: len(stopped) >= 1)
    assert stopped == ["vol"]
    plain = diverse_walk(cands, vals.__getitem__, None, 0.7, lambda *a: None,
                         stop=lambda: False)
    assert len(plain.picked) == len(cands) and plain.skipped_train_corr == 0


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setattr(gp_run, "make_workspace", _ws)
    base = load(None)
    cfg = base.replace(evaluate=replace(base.evaluate, train=TRAIN, valid=VALID, embargo=2),
                       store=replace(base.store, path=tmp_path / "a.db", min_valid_rank_ic=0.0),
                       model=replace(base.model, out_dir=tmp_path / "models"))
    g = GPSettings(universe="csi300", start=TRAIN[0], population=30, generations=2, top=10,
                   seed=5, n_jobs=1, max_depth=3, fields=("close", "vol", "ret", "vwap"),
                   cache_mb=0.0, engine="gplearn")
    return cfg, g


_FORMULAS = ["vwap", "log(vwap + 10)", "-vwap", "vwap + 0.1 * ts_delta(vwap, 1)", "vol",
             "ts_mean(vol, 2)",
             "close", "close * 2", "ret"]


def _fixed_result(*_a, **_k) -> GPResult:
    cands = [(parse(f), 1.0 - 0.01 * i) for i, f in enumerate(_FORMULAS)]
    return GPResult(cands, [GPGeneration(1, 1.0, 0.5, _FORMULAS[0], 0.0, len(cands))],
                    len(cands), 0.0)


def test_mine_gp_never_sends_skipped_programs_to_valid(setup, monkeypatch):
    """The walk sends no two train-correlated programs to valid and charges no trial for a
    skipped one (the store's trial ledger counts exactly the evaluated ones)."""
    cfg, g = setup
    monkeypatch.setattr(gp_search, "run_gp", _fixed_result)
    with FactorStore(cfg.store.path) as s:
        before = s.n_trials("csi300", 1)
    events = []
    rec = gp_run.mine_gp(cfg, g, on_progress=events.append)
    sent = [e.formula for e in events if isinstance(e, gp_run.CandidateDecision)]
    with FactorStore(cfg.store.path) as s:
        after = s.n_trials("csi300", 1)
        run = next(r for r in s.runs("gp") if r.run_id == rec.run_id)
    assert after - before == rec.n_evaluated == len(sent) == 5
    # log(vwap + 10), -vwap, close * 2: rank-identical to one sent; vwap + 0.1 * ts_delta(vwap,
    # 1): corr 0.99 with vwap on train; ts_mean(vol, 2): corr 0.64 with vol, below 0.7: sent
    assert [f.lstrip("-") for f in sent] == ["vwap", "vol", "ts_mean(vol, 2)", "close", "ret"]
    assert rec.skipped_duplicate == 3 and rec.skipped_train_corr == 1
    assert run.summary["skipped_duplicate"] == 3 and run.summary["skipped_train_corr"] == 1
    assert run.summary["engine"] == "gplearn"
    done = events[-1]
    assert isinstance(done, gp_run.GPDone) and done.skipped_duplicate == 3
    ws = _ws()
    d = Diversity(ws.ctx.restrict(ws.ctx.dates[0], TRAIN[1]))
    vals = {f: ws.values(parse(f)) for f in sent}           # as stored: oriented on train
    for a, b in combinations(sent, 2):
        assert d.corr_many(vals[a], [vals[b]])[0] < cfg.store.max_corr
    # a second run: the members are the pool, nothing correlated with one goes to valid
    events = []
    rec2 = gp_run.mine_gp(cfg, g, on_progress=events.append)
    sent2 = [e.formula for e in events if isinstance(e, gp_run.CandidateDecision)]
    with FactorStore(cfg.store.path) as s:
        members = [m.formula for m in s.members(universe="csi300")]
    assert set(members) <= set(sent) and not set(sent2) & set(members)
    assert rec2.n_evaluated == len(sent2) == len(set(sent) - set(members))
    assert rec2.skipped_train_corr + rec2.skipped_duplicate == len(_FORMULAS) - len(sent2)


@dataclass
class _Program:
    expr: object
    parents: tuple


def test_engine_gets_seeds_and_hook_and_parents_are_recorded(setup, monkeypatch):
    cfg, g = setup
    with FactorStore(cfg.store.path) as s:
        for i, f in enumerate(["ts_delta(close, 1)", "cs_rank(open)"]):
            s.add(FactorRecord(formula=f, name=f"m{i}", source="library", universe="csi300",
                               horizon=1, metrics={"valid": {"rank_ic_mean": 0.02}}), {},
                  force=True)
    seen = {}

    def evolve(terminals, ctx, settings, *, split="train", seeds=(), diversity=None,
               on_generation=None, executor=None):
        seen.update(terminals=sorted(str(t) for t in terminals), seeds=[str(x) for x in seeds],
                    diversity=diversity, n_rows=len(ctx.dates))
        res = _fixed_result()
        res.programs = [_Program(parse("vwap"), ("vol", "ts_mean(vwap, 3)"))]
        return res

    monkeypatch.setattr(gp_search, "evolve", evolve)
    rec = gp_run.mine_gp(cfg, replace(g, engine="alphamine"))
    assert rec.engine == "alphamine" and rec.n_seeds == 1
    assert seen["seeds"] == ["ts_delta(close, 1)"]          # open is not a GP field
    assert seen["terminals"] == sorted(g.fields) and seen["n_rows"] == 90
    assert isinstance(seen["diversity"], Diversity) and len(seen["diversity"].pool_names) == 2
    with FactorStore(cfg.store.path) as s:
        by = {r.formula: r for r in s.members(universe="csi300") if r.source == "gp"}
        run = next(r for r in s.runs("gp") if r.run_id == rec.run_id)
    assert by["vwap"].provenance["parents"] == ["vol", "ts_mean(vwap, 3)"]
    assert all("parents" not in r.provenance for f, r in by.items() if f != "vwap")
    assert run.summary["seeds_skipped"] == {"fields": 1} and run.summary["n_pool"] == 2


# ----------------------------------------------------------------------------- seeds
def test_seed_formulas(tmp_path):
    with FactorStore(tmp_path / "s.db") as s:
        for i, f in enumerate(["ts_delta(close, 1)", "vol / ts_mean(vol, 5)",
                               "cs_rank(total_mv)", 'model("lgbm-x")']):
            s.add(FactorRecord(formula=f, name=f"m{i}", source="manual", universe="csi300",
                               horizon=1, metrics={"valid": {"rank_ic_mean": 0.02}}), {},
                  force=True)
        s.add(FactorRecord(formula="close", name="other", source="manual", universe="csi500",
                           horizon=1, metrics={}), {}, force=True)
        seeds = seed_formulas(s, "csi300", 1, "leaderboard", ("close", "vol"))
        assert [str(x) for x in seeds] == ["ts_delta(close, 1)", "vol / ts_mean(vol, 5)"]
        assert seeds.skipped == {"fields": 1, "model": 1}
        assert seed_formulas(s, "csi300", 1, "none", ("close",)) == []
        lib = seed_formulas(None, "csi300", 1, "library", ("close", "high", "low"))
        assert lib and all(set(map(str, _fields(x))) <= {"close", "high", "low"} for x in lib)
        both = seed_formulas(s, "csi300", 1, "both", ("close", "vol", "high", "low"))
        assert len(both) == 2 + len(lib) - len({str(x) for x in lib} & {
            "ts_delta(close, 1)", "vol / ts_mean(vol, 5)"})
        with pytest.raises(ValueError, match="seed_from"):
            seed_formulas(s, "csi300", 1, "members", ("close",))


def _fields(expr):
    from factors.expr_tree import fields
    return fields(expr)


# ----------------------------------------------------------------------------- end to end
def test_mine_gp_cli_end_to_end_on_the_panel_warehouse(tmp_path):
    """`mine gp` with the default engine (alphamine, seeds and diversity hook): the walk's
    skipped counts are printed and recorded."""
    from panel_warehouse import SPLITS, build_panel_warehouse, report_config
    from typer.testing import CliRunner

    from mining.cli import app
    cfgp = report_config(tmp_path, build_panel_warehouse(tmp_path / "wh"))
    cfgp.write_text(cfgp.read_text() + f"""[gp]
universe = "all"
start = "{SPLITS['train'][0]}"
population = 30
generations = 2
top = 3
seed = 5
max_depth = 3
fields = ["close", "open", "vol", "ret"]
cache_mb = 0.0
""")
    r = CliRunner().invoke(app, ["--config", str(cfgp), "gp", "--seed-from", "both",
                                 "--diversity", "max_corr", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["engine"] == "alphamine" and out["n_evaluated"] >= 1
    assert out["skipped_train_corr"] + out["skipped_duplicate"] >= 0
    with FactorStore(tmp_path / "lb.db") as s:
        recs = [x for x in s.members() if x.source == "gp"]
        run = next(x for x in s.runs("gp") if x.run_id == out["run_id"])
    assert recs and run.summary["skipped_duplicate"] == out["skipped_duplicate"]
    # the engine records where each program came from: bred ones carry their parents
    assert all(isinstance(x.provenance.get("parents", []), list) for x in recs)
    r = CliRunner().invoke(app, ["--config", str(cfgp), "gp", "--seed", "6"])
    assert r.exit_code == 0, r.output
    assert "skipped on train before valid" in r.output and "duplicates skipped" in r.output


def test_pool_may_be_an_iterator_of_pairs_read_once(data):
    """A lazily evaluated pool (what gp_search.build_diversity hands over, one member panel
    at a time) gives the same hook as a dict, and each panel is read exactly once."""
    ctx, p = data
    seen = []

    def lazy():
        for k in ("close", "vol"):
            seen.append(k)
            yield k, p[k]
    a, b = Diversity(ctx, {"close": p["close"], "vol": p["vol"]}), Diversity(ctx, lazy())
    assert seen == ["close", "vol"] and b.pool_names == a.pool_names
    x = p["vwap"] + p["vol"]
    assert b.penalty(x) == a.penalty(x) and b.penalty(p["vol"]) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- kept ranks
def _search(ctx, p, executor=None):
    from mining.gp import terminal
    from mining.gp_engine import evolve
    s = GPSettings(population=40, generations=2, seed=3, max_depth=3, elite=2)
    hook = Diversity(ctx, {"close": p["close"]}, n_dates=20, hof=3)
    return evolve({terminal(k): v for k, v in p.items()}, ctx, s, diversity=hook,
                  executor=executor)


def test_search_keeps_sample_ranks_and_the_walk_reads_them(data):
    from factors.expr_eval import evaluate
    from factors.parallel import make_executor
    ctx, p = data
    res = _search(ctx, p)
    kept = res.sample_ranks
    assert kept and set(kept) <= {e for e, _ in res.candidates}
    d = Diversity(ctx, {"close": p["close"]}, n_dates=20)
    values = {e: evaluate(e, p, mask=ctx.universe_mask) for e, _ in res.candidates}
    for e, r in kept.items():                       # the oriented candidate's own ranks
        assert r.dtype == np.float32 and np.array_equal(r, d.sample_ranks(values[e]))
    for kind in ("threads", "processes"):           # same ranks from pool threads, and sent
        with make_executor(kind, 2) as ex:          # back by worker processes
            par = _search(ctx, p, ex).sample_ranks
        assert par.keys() == kept.keys() and all(np.array_equal(par[e], kept[e]) for e in kept)
    calls = []

    def values_of(e):
        calls.append(e)
        return values[e]
    plain = diverse_walk(res.candidates, values_of, d, 0.7, lambda *a: None, stop=lambda: False)
    n_plain = len(calls)
    calls.clear()
    fast = diverse_walk(res.candidates, values_of, d, 0.7, lambda *a: None, stop=lambda: False,
                        ranks_of=kept.get)
    assert fast == plain and plain.picked           # the same decisions ...
    assert len(calls) == n_plain - len(kept)        # ... without evaluating the kept ones


def test_kept_sample_ranks_are_bounded_to_the_fittest(data, monkeypatch):
    from mining import gp_engine
    ctx, p = data
    one = 20 * N * 4                                # (sample dates, names) float32
    monkeypatch.setattr(gp_engine, "KEEP_RANKS_MB", 3 * one / 2**20)
    res = _search(ctx, p)
    fits = dict(res.candidates)
    third = sorted(fits.values(), reverse=True)[2]
    assert 0 < len(res.sample_ranks) <= 3
    assert all(fits[e] >= third for e in res.sample_ranks)
    sent = []                                       # workers send back only what is kept

    class Counting(SerialExecutor):
        def map(self, fn, items, shared):
            out = super().map(fn, items, shared)
            sent.extend(o[5] is not None for o in out)
            return out
    again = _search(ctx, p, Counting())
    assert again.sample_ranks.keys() == res.sample_ranks.keys()
    assert 3 <= sum(sent) < len(sent)


def test_keep_floor_is_exactly_what_keep_drops(data, monkeypatch):
    """A program sent back only when fitter than the floor: the floor at any moment is the
    fitness below or at which :meth:`_keep` would drop a new arrival at once."""
    from mining import gp_engine
    monkeypatch.setattr(gp_engine, "KEEP_RANKS_MB", 2 * 8 / 2**20)
    run = gp_engine._Run.__new__(gp_engine._Run)
    run._kept, run._kept_heap, run._kept_bytes, run.scores = {}, [], 0, {}
    r = np.zeros(2, np.float32)                     # 8 bytes: room for two
    assert run._keep_floor() == -np.inf
    run._keep(Field("a"), 0.3, r)
    assert run._keep_floor() == -np.inf
    run.scores[Field("a")] = 1
    run._keep(Field("b"), 0.5, r)
    assert run._keep_floor() == 0.3
    run.scores[Field("b")] = 1
    run._keep(Field("c"), 0.3, r)                   # as fit as the floor: dropped at once
    assert set(run._kept) == {Field("a"), Field("b")}
    run._keep(Field("d"), 0.4, r)                   # fitter: stays, the floor drops out
    assert set(run._kept) == {Field("b"), Field("d")} and run._keep_floor() == 0.4
