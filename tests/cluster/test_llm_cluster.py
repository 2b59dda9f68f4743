"""The LLM loop with its formula evaluations on the local Ray cluster, against the local
OpenAI-compatible stub (tests/mining/openai_stub.py): a worker dies mid-run (its task kills its
own process), Ray retries the task, and the run ends with exactly the proposals, leaderboard
rows and trial-ledger rows of the same run evaluated locally -- none lost, none doubled."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mining"))
from ashare_synth import build_warehouse  # noqa: E402
from openai_stub import StubServer  # noqa: E402

import cluster_tasks as tasks  # noqa: E402
from backtest.candidates import make_workspace  # noqa: E402
from backtest.context import EvalContext  # noqa: E402
from data.manager import DataManager  # noqa: E402
from factors.store import FactorStore  # noqa: E402
from mining.cli_app import load as load_config  # noqa: E402
from mining.llm import from_config  # noqa: E402
from mining.llm_cache import LLMCache  # noqa: E402
from mining.llm_loop import LLMRunSettings, run_loop  # noqa: E402

#: ~20 s on top of the cluster's start (the executor tests stay in the quick suite; CI runs
#: every test, slow ones included).
pytestmark = pytest.mark.slow

TRAIN = ("2020-08-10", "2020-09-04")
VALID = ("2023-03-06", "2023-03-31")
ROUNDS = [["-ts_mean(turnover, 3)", "close / ts_delay(close, 2)", "ts_std(ret, 5)",
           "ts_foo(close, 5)", "cs_rank(vol)"],
          ["(high - low) / close", "-ts_mean(turnover, 3)", "ts_mean(amount, 4)",
           "-cs_rank(ts_mean(turnover, 5))", "2.0 * -ts_mean(turnover, 3)"]]


def _reply(formulas):
    return json.dumps({"factors": [{"name": f"f{i}", "formula": f, "rationale": f"idea {i}",
                                    "direction": "+"} for i, f in enumerate(formulas)]})


def _config(tmp: Path, wh_root: Path, base_url: str):
    tmp.mkdir(parents=True, exist_ok=True)
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
max_adj_p = 1.0
[llm]
base_url = "{base_url}"
model = "stub-model"
timeout = 5.0
max_retries = 1
retry_wait = 0.01
knowledge_cutoff = "2018-01-01"
cache_path = "{tmp / 'llm_cache.db'}"
""")
    return load_config(p)


def _workspace(cfg):
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


def _run(tmp, wh_root, executor):
    script = [{"content": _reply(r)} for r in ROUNDS]
    with pytest.MonkeyPatch.context() as mp, StubServer(script=script) as srv:
        mp.setenv("OPENAI_API_KEY", "stub")
        cfg = _config(tmp, wh_root, srv.base_url)
        ws = _workspace(cfg)
        s = LLMRunSettings(template="liquidity", universe="all", model="stub-model",
                           rounds=len(ROUNDS), n_per_round=8)
        with LLMCache(cfg.llm.cache_path) as cache, FactorStore(cfg.store.path) as store:
            res = run_loop(ws, store, cache, cfg, s, sender=from_config(cfg),
                           executor=executor)
            members = [(r.name.rsplit("_r", 1)[1], r.formula, r.source) for r in store.members()]
            trials = [(t["formula"], t["n_evals"]) for t in store.trials()]
            runs = [(r.n_tried, r.n_accepted, r.status) for r in store.runs("llm")]
    props = [(p.round, p.formula, p.status, p.canonical, p.train, p.valid, p.note)
             for p in res.proposals]
    return res, props, members, trials, runs


def test_a_worker_lost_mid_run_loses_and_duplicates_no_row(ray_executor, tmp_path, capfd):
    wh_root = build_warehouse(tmp_path / "wh").root
    flags = tmp_path / "flags"
    flags.mkdir()
    _, props_here, members_here, trials_here, runs_here = _run(tmp_path / "here", wh_root, None)
    puts = ray_executor.n_puts
    res, props, members, trials, runs = _run(tmp_path / "ray", wh_root,
                                             tasks.KillingExecutor(ray_executor, flags))
    assert (flags / "killed").exists()                       # a worker did die mid-run
    calls = (flags / "calls").read_text().split()
    n_remote = sum(p[2] not in ("parse_error", "repeat") for p in props)
    assert len(calls) == n_remote + 1                        # the lost task ran once more
    assert props == props_here                               # same statuses and numbers
    assert members == members_here and len(members) == res.stats["accepted"] > 0
    assert len({f for _, f, _ in members}) == len(members)   # no row twice
    assert trials == trials_here and all(n == 1 for _, n in trials)
    assert runs == runs_here == [(len(props), res.stats["accepted"], "done")]
    # the context (dates, codes, 2 masks, 1 label, 2 splits) and each field read by a formula
    # were put once for the run, not once per round or per task
    fields = {"turnover", "close", "ret", "vol", "high", "low", "amount"}
    assert ray_executor.n_puts - puts == 7 + len(fields)
    time.sleep(1.0)                                          # Ray's notice thread catches up
    assert "(raylet)" not in capfd.readouterr().out          # its notices go to stderr
