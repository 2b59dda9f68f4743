"""The LLM loop end to end: the real `openai` client against a local OpenAI-compatible server.

The server (tests/mining/openai_stub.py) runs on 127.0.0.1 in a thread and speaks real JSON over
HTTP; the scripted replies cover good JSON, fenced JSON, prose, unknown operators, injection
attempts, 429 then success, 500, a timeout and an empty reply. Evaluation uses the synthetic
warehouse (tests/data/ashare_synth.py) with a 1-day-horizon context so its short splits are
not emptied by the 20-day decay embargo.
"""
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ashare_synth import build_warehouse  # noqa: E402
from openai_stub import StubServer  # noqa: E402

from backtest.candidates import evaluate_candidate, make_workspace  # noqa: E402
from backtest.context import EvalContext  # noqa: E402
from data.errors import ConfigError  # noqa: E402
from data.manager import DataManager  # noqa: E402
from factors.expr_parse import parse  # noqa: E402
from factors.store import FactorStore  # noqa: E402
from mining.cli_app import load as load_config  # noqa: E402
from mining.errors import LLMError  # noqa: E402
from mining.llm import OpenAIChat, endpoint_problem, from_config  # noqa: E402
from mining.llm_cache import LLMCache  # noqa: E402
from mining.llm_loop import FAILURE_KINDS, LLMRunSettings, cutoff_warnings, run_loop  # noqa: E402

SECRET = "sk-test-NEVER-STORE-ME-1234567890"
TEST_CANARY = 0.0987654
TRAIN = ("2020-08-10", "2020-09-04")
VALID = ("2023-03-06", "2023-03-31")


@pytest.fixture(scope="module")
def wh_root(tmp_path_factory):
    return build_warehouse(tmp_path_factory.mktemp("ashare_llm")).root


def _config(tmp, wh_root, base_url="", **over):
    llm = {"base_url": base_url, "model": "stub-model", "timeout": 0.4, "max_retries": 1,
           "retry_wait": 0.01, "knowledge_cutoff": "2018-01-01",
           "cache_path": str(tmp / "llm_cache.db"), "prompts_dir": str(tmp / "prompts"), **over}
    llm_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in llm.items())
    p = tmp / "mine.toml"
    p.write_text(f"""
[data]
root = "{wh_root}"
cache_dir = "{tmp / 'cache'}"
[evaluate]
train = {json.dumps(list(TRAIN))}
valid = {json.dumps(list(VALID))}
test = ["2025-07-28", "2025-08-15"]
embargo = 1
min_listed_days = 0
[store]
path = "{tmp / 'lb.db'}"
min_valid_rank_ic = 0.0
max_corr = 0.95
max_adj_p = 1.0          # 20 valid days: no formula here is significant; the loop is under test
[llm]
{llm_lines}
""")
    return load_config(p)


def _workspace(cfg):
    """Workspace on the synthetic warehouse with a horizon-1-only context (see module doc)."""
    dm = DataManager(cfg.data.root)
    ws = make_workspace(cfg, "all", dm=dm)
    c = ws.ctx
    opn = dm.panels(["open"], ws.start, ws.end, codes=c.codes)["open"]
    opn = opn.reindex(index=c.dates, columns=c.codes).to_numpy(dtype=float)
    trad = dm.tradable_mask(ws.start, ws.end, c.codes, min_listed_days=0)
    ws.ctx = EvalContext.from_arrays(c.dates, c.codes, opn, c.universe_mask, trad,
                                     {"train": TRAIN, "valid": VALID}, horizons=(1,),
                                     horizon=1, embargo=1, universe="all")
    return ws


def _reply(*formulas, fenced=False):
    body = json.dumps({"factors": [{"name": f"f{i}", "formula": f, "rationale": f"idea {i}",
                                    "direction": "+"} for i, f in enumerate(formulas)]})
    return f"Here you go:\n```json\n{body}\n```\nGood luck." if fenced else body


CANARY = "/tmp/alphamine_llm_injection_canary"
ROUND1 = ["close / ts_delay(close, 2)", "-ts_mean(turnover, 3)", "ts_std(ret, 5)",
          "ts_foo(close, 5)"]                                   # unknown operator
ROUND2 = ["cs_rank(vol)",                                        # already a member: duplicate
          "(high - low) / close",
          f"__import__('os').system('touch {CANARY}')",          # injection: call by name
          "close.__class__",                                     # injection: attribute access
          "-ts_mean(turnover, 3)"]                               # repeat of round 1
ROUND8 = ["log(neg(abs(close)))",                                # all NaN: no valid metrics
          "2.0 * -ts_mean(turnover, 3)"]                         # corr 1 with round 1's #2
SCRIPT = [
    {"content": _reply(*ROUND1)},                                # 1 plain JSON
    {"status": 429}, {"content": _reply(*ROUND2, fenced=True)},  # 2 429 then fenced JSON
    {"content": "Liquidity is important. I suggest looking at turnover."},   # 3 prose
    {"status": 500}, {"status": 500},                            # 4 500 twice: http_error
    {"sleep": 1.0}, {"sleep": 1.0},                              # 5 timeout twice
    {"content": ""},                                             # 6 empty reply
    {"content": '```json\n{"factors": [{"name": "x", "formula": \n```'},     # 7 bad JSON
    {"content": _reply(*ROUND8)},                                # 8
]
ROUNDS = 8


def _seed_store(cfg, ws):
    with FactorStore(cfg.store.path) as store:
        from backtest.candidates import submit
        ev = evaluate_candidate(ws, "cs_rank(vol)")
        submit(ws, store, ev, name="vol_rank", source="library", cfg=cfg, provenance={},
               force=True)
        # an unsealed test metric with a recognisable value: it must never reach the model
        store.record_test("cs_rank(vol)", "all", 1, {"rank_ic_mean": TEST_CANARY})


def _run(cfg, ws, sender=None, replay_of=None, rounds=ROUNDS):
    s = LLMRunSettings(template="liquidity", universe="all", model=cfg.llm.model,
                       rounds=rounds, n_per_round=8, temperature=cfg.llm.temperature,
                       max_tokens=cfg.llm.max_tokens)
    with LLMCache(cfg.llm.cache_path) as cache, FactorStore(cfg.store.path) as store:
        res = run_loop(ws, store, cache, cfg, s, sender=sender, replay_of=replay_of)
        members = {r.formula: r for r in store.members()}
    return res, members


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory, wh_root):
    """One scripted run shared by the tests below (they only read its results)."""
    if os.path.exists(CANARY):
        os.remove(CANARY)
    tmp_path = tmp_path_factory.mktemp("llm_run")
    with pytest.MonkeyPatch.context() as mp, StubServer(script=[dict(s) for s in SCRIPT]) as srv:
        mp.setenv("OPENAI_API_KEY", SECRET)
        cfg = _config(tmp_path, wh_root, srv.base_url)
        ws = _workspace(cfg)
        _seed_store(cfg, ws)
        res, members = _run(cfg, ws, sender=from_config(cfg))
        requests = list(srv.requests)
    return cfg, ws, res, members, requests


def test_scripted_run_counts_every_failure_kind(scripted_run):
    cfg, ws, res, members, requests = scripted_run
    s = res.stats
    assert s["calls"] == ROUNDS
    assert len(requests) == ROUNDS + 3                   # + retries of 429, 500, timeout
    assert all(r["_auth"] and r["model"] == "stub-model" for r in requests)
    assert s["retries"] == {"http_429": 1, "http_500": 1, "timeout": 1}
    c = s["counts"]
    assert set(c) == set(FAILURE_KINDS)
    assert (c["http_error"], c["timeout"], c["empty"], c["no_json"], c["bad_json"]) == \
        (1, 1, 1, 1, 1)
    assert c["parse_error"] == 3 and c["repeat"] == 1 and c["eval_error"] == 0
    assert c["duplicate"] == 1 and c["no_valid_metrics"] == 1 and c["correlation"] == 1
    # train and valid RankIC of opposite signs on this synthetic data: close / ts_delay(close,
    # 2), ts_std(ret, 5) and (high - low) / close (the gate decides direction on train)
    assert c["sign_flip"] == 3 and c["below_floor"] == 0
    assert s["proposed"] == len(ROUND1) + len(ROUND2) + len(ROUND8)
    assert s["valid_formulas"] == s["proposed"] - 3
    by_formula = {p.formula: p for p in res.proposals}
    assert "unknown operator 'ts_foo'" in by_formula["ts_foo(close, 5)"].note
    assert "column 1" in by_formula["ts_foo(close, 5)"].note
    assert "attribute access" in by_formula["close.__class__"].note
    inj = by_formula[f"__import__('os').system('touch {CANARY}')"]
    assert inj.status == "parse_error" and "__import__" in inj.note
    assert not os.path.exists(CANARY)                     # nothing was executed
    assert any("token 'ts_foo'" in e for e in s["parse_errors"])
    # every evaluated formula with a finite train RankIC has a claimed "+" direction
    with_train = [p for p in res.proposals if p.train is not None and p.train != 0]
    assert s["direction_claimed"] == len(with_train)
    assert s["direction_right"] == sum(p.train > 0 for p in with_train)


def test_leaderboard_holds_exactly_the_gated_factors(scripted_run):
    cfg, ws, res, members, _ = scripted_run
    accepted = {p.canonical for p in res.proposals if p.status == "accepted"}
    assert accepted == {"ts_mean(turnover, 3)"}       # oriented; the others flip sign
    assert set(members) == accepted | {"cs_rank(vol)"}
    for p in res.proposals:
        if p.status == "accepted":
            rec = members[p.canonical]
            assert rec.source == "llm"
            prov = rec.provenance
            assert prov["run_id"] == res.run_id and prov["template"] == "liquidity"
            assert prov["model"] == "stub-model" and prov["round"] in (1, 2)
            assert prov["rationale"].startswith("idea")
            assert "test" not in rec.metrics
            # the stored metrics are the common evaluator's, for the stored orientation
            ev = evaluate_candidate(ws, parse(p.canonical))
            assert rec.metric("valid", "rank_ic_mean") == pytest.approx(
                ev.reports["valid"].rank_ic_mean)
    assert res.stats["accepted"] == 1 and res.stats["accepted_pct"] == round(100 / 11, 1)
    with FactorStore(cfg.store.path) as store:
        run = next(r for r in store.runs("llm") if r.run_id == res.run_id)
    assert run.status == "done" and run.n_accepted == 1 and run.n_tried == 11


def test_feedback_and_prompts_carry_no_test_numbers_nor_the_key(scripted_run):
    cfg, ws, res, members, requests = scripted_run
    assert ws.end <= cfg.evaluate.valid[1]                # the test period is never loaded
    first = requests[0]["messages"]
    assert first[0]["role"] == "system" and "资深量化研究员" in first[1]["content"]
    assert "cs_rank(vol)" in first[1]["content"]          # the leaderboard example
    last = requests[-1]["messages"]
    fb = [m["content"] for m in last if m["role"] == "user"][1:]
    assert any("Round 1 results" in m and "unknown operator 'ts_foo'" in m for m in fb)
    assert any("could not be used: no_json" in m for m in fb)
    assert all("test" not in m.lower().replace("latest", "") for m in fb)
    sent = json.dumps(requests, ensure_ascii=False)
    assert "0.0987" not in sent and "0.099" not in sent
    blob = Path(cfg.llm.cache_path).read_bytes()
    assert SECRET.encode() not in blob
    assert SECRET not in json.dumps(res.stats)


def test_replay_is_identical_with_the_server_stopped(scripted_run, tmp_path, monkeypatch):
    cfg, ws, res, members, _ = scripted_run
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # a fresh leaderboard in the original's starting state, same cache, no server, no sender
    cfg2 = cfg.replace(store=replace(cfg.store, path=tmp_path / "lb_replay.db"))
    _seed_store(cfg2, ws)
    res2, members2 = _run(cfg2, ws, replay_of=res.run_id)
    assert res2.run_id != res.run_id
    assert res2.stats["drift"] == 0 and res2.stats["calls_cached"] == ROUNDS
    assert res2.stats["tokens_in_paid"] == 0 and res2.stats["cost_paid"] == 0
    strip = lambda p: (p.round, p.formula, p.status, p.canonical, p.train, p.valid, p.note)  # noqa
    assert [strip(p) for p in res2.proposals] == [strip(p) for p in res.proposals]
    for k in ("counts", "proposed", "valid_formulas", "accepted", "novel", "tokens_in",
              "tokens_out", "retries"):
        assert res2.stats[k] == res.stats[k], k
    assert set(members2) == set(members)
    # replaying more rounds than recorded is a clear cache-miss error
    with pytest.raises(LLMError, match="replay cache miss"):
        _run(cfg2, ws, replay_of=res.run_id, rounds=ROUNDS + 1)
    with pytest.raises(LLMError, match="no recorded calls"):
        _run(cfg2, ws, replay_of="20990101T000000Z-abcdef")


def test_rerun_is_served_from_the_cache(tmp_path, wh_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    with StubServer() as srv:                  # demo responder: deterministic per round
        cfg = _config(tmp_path, wh_root, srv.base_url)
        ws = _workspace(cfg)
        res, _ = _run(cfg, ws, sender=from_config(cfg), rounds=2)
        n = len(srv.requests)
        assert n == 2 and res.stats["calls_cached"] == 0 and res.stats["tokens_in_paid"] > 0
        cfg2 = cfg.replace(store=replace(cfg.store, path=tmp_path / "lb2.db"))
        res2, _ = _run(cfg2, ws, sender=from_config(cfg2), rounds=2)
        assert len(srv.requests) == n           # no new request reached the server
        assert res2.stats["calls_cached"] == 2 and res2.stats["tokens_in_paid"] == 0
        assert [(p.formula, p.status, p.valid) for p in res2.proposals] == \
            [(p.formula, p.status, p.valid) for p in res.proposals]
        # use_cache=False (`--no-cache`) asks the endpoint again
        s = LLMRunSettings(template="liquidity", universe="all", model=cfg.llm.model, rounds=1)
        with LLMCache(cfg.llm.cache_path) as cache, FactorStore(tmp_path / "lb3.db") as st:
            res3 = run_loop(ws, st, cache, cfg2, s, sender=from_config(cfg2), use_cache=False)
        assert len(srv.requests) == n + 1 and res3.stats["calls_cached"] == 0


def test_unreachable_endpoint_is_counted_not_fatal(tmp_path, wh_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    with StubServer() as srv:                  # take a free port, then close it
        url = srv.base_url
    cfg = _config(tmp_path, wh_root, url)
    res, members = _run(cfg, _workspace(cfg), sender=from_config(cfg), rounds=2)
    assert res.stats["counts"]["http_error"] == 2 and res.stats["calls_failed"] == 2
    assert res.stats["retries"] == {"connection": 2} and members == {}
    with LLMCache(cfg.llm.cache_path) as cache:
        assert cache.run(res.run_id)["status"] == "done"
        assert [c["outcome"] for c in cache.calls(res.run_id)] == ["http_error"] * 2


def test_non_retryable_status_fails_at_once(tmp_path, wh_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    with StubServer(script=[{"status": 401}, {"status": 401}]) as srv:
        cfg = _config(tmp_path, wh_root, srv.base_url, max_retries=3)
        ws = _workspace(cfg)
        res, members = _run(cfg, ws, sender=from_config(cfg), rounds=1)
        assert len(srv.requests) == 1
    assert res.stats["counts"]["http_error"] == 1 and res.stats["retries"] == {}
    assert members == {}


def test_missing_endpoint_names_the_settings(tmp_path, wh_root, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = _config(tmp_path, wh_root, "")
    msg = endpoint_problem(cfg)
    assert "[llm] base_url" in msg and "[llm] model" not in msg and "$OPENAI_API_KEY" in msg
    cfg = cfg.replace(llm=replace(cfg.llm, model=""))
    assert "[llm] model" in endpoint_problem(cfg)
    with pytest.raises(ConfigError, match="no LLM endpoint configured"):
        from_config(cfg)
    with pytest.raises(ConfigError):
        OpenAIChat(cfg.llm, "k")


def test_knowledge_cutoff_warning(tmp_path, wh_root):
    cfg = _config(tmp_path, wh_root, "", knowledge_cutoff="2023-10-01")
    w = cutoff_warnings(cfg)
    assert len(w) == 1 and "2023-10-01" in w[0] and "memory" in w[0]
    assert cutoff_warnings(cfg.replace(llm=replace(cfg.llm, knowledge_cutoff="2018-01-01"))) == []
    assert "not set" in cutoff_warnings(cfg.replace(llm=replace(cfg.llm,
                                                                  knowledge_cutoff="")))[0]
    with pytest.raises(ConfigError, match="knowledge_cutoff"):
        cutoff_warnings(cfg.replace(llm=replace(cfg.llm, knowledge_cutoff="soon")))


def test_evaluation_error_is_counted(tmp_path, wh_root, monkeypatch):
    """A formula the data cannot evaluate (simulated: adj_factor fails to load) is counted."""
    from factors.errors import EvaluationError
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    script = [{"content": _reply("cs_rank(adj_factor)", "ts_std(ret, 5)") + " " * 10}]
    with StubServer(script=script) as srv:
        cfg = _config(tmp_path, wh_root, srv.base_url)
        ws = _workspace(cfg)
        real = ws.values

        def values(expr, **kw):
            if "adj_factor" in str(expr):
                raise EvaluationError("field 'adj_factor' could not be loaded (simulated)")
            return real(expr, **kw)

        monkeypatch.setattr(ws, "values", values)
        res, members = _run(cfg, ws, sender=from_config(cfg), rounds=1)
    assert res.stats["counts"]["eval_error"] == 1 and res.stats["evaluated"] == 1
    bad = next(p for p in res.proposals if "adj_factor" in p.formula)
    assert bad.status == "eval_error" and "simulated" in bad.note
    assert set(members) == {p.canonical for p in res.accepted}


def test_replay_of_a_no_cache_run_serves_its_own_replies(tmp_path, wh_root, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    script = [{"content": _reply("ts_std(ret, 5)")}, {"content": _reply("-ts_mean(turnover, 3)")}]
    s = LLMRunSettings(template="free", universe="all", model="stub-model", rounds=1)
    with StubServer(script=script) as srv:
        cfg = _config(tmp_path, wh_root, srv.base_url)
        ws = _workspace(cfg)
        with LLMCache(cfg.llm.cache_path) as cache:
            with FactorStore(tmp_path / "a.db") as st:
                a = run_loop(ws, st, cache, cfg, s, sender=from_config(cfg))
            with FactorStore(tmp_path / "b.db") as st:     # same request, sampled again
                b = run_loop(ws, st, cache, cfg, s, sender=from_config(cfg), use_cache=False)
            assert len(srv.requests) == 2
            with FactorStore(tmp_path / "c.db") as st:
                ra = run_loop(ws, st, cache, cfg, s, replay_of=a.run_id)
            with FactorStore(tmp_path / "d.db") as st:
                rb = run_loop(ws, st, cache, cfg, s, replay_of=b.run_id)
            assert cache.get(cache.calls(a.run_id)[0]["key"]).content == script[1]["content"]
    assert [p.formula for p in a.proposals] == [p.formula for p in ra.proposals] == \
        ["ts_std(ret, 5)"]
    assert [p.formula for p in b.proposals] == [p.formula for p in rb.proposals] == \
        ["-ts_mean(turnover, 3)"]


def test_a_proposal_may_reference_a_member_and_its_lineage_is_stored(tmp_path, wh_root,
                                                                     monkeypatch):
    """The prompt lists the pool's gaps and referable names; a proposal built on a member by
    factor("<name>") is evaluated through the workspace and stored with its references."""
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    ref = '-ts_mean(turnover, 3) + 0.000001 * factor("vol_rank")'
    script = [{"content": _reply(ref, 'factor("vol_rank")', 'factor("nope") * 2.0')}]
    with StubServer(script=script) as srv:
        cfg = _config(tmp_path, wh_root, srv.base_url)
        ws = _workspace(cfg)
        _seed_store(cfg, ws)                      # member vol_rank = cs_rank(vol)
        res, members = _run(cfg, ws, sender=from_config(cfg), rounds=1)
        prompt = srv.requests[0]["messages"][1]["content"]
    assert 'factor("vol_rank")' in prompt and "volume/liquidity" in prompt
    assert "size/value missing" in prompt               # the pool: one liquidity member
    by = {p.formula: p for p in res.proposals}
    assert by[ref].status == "accepted", by[ref].note
    rec = members[by[ref].canonical]
    vol_rank = members["cs_rank(vol)"]
    assert rec.provenance["references"] == [{"name": "vol_rank", "id": vol_rank.id,
                                             "formula": "cs_rank(vol)"}]
    assert by['factor("vol_rank")'].status == "correlation"     # |corr| 1 with vol_rank
    assert by['factor("nope") * 2.0'].status == "eval_error"
    assert "no leaderboard member named 'nope' in universe all" in by['factor("nope") * 2.0'].note
