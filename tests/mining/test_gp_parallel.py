"""Batch GP fitness through the executors (issue 15): same results as the program-by-program
engine (recorded in data/gp_golden.json by tests/mining/gp_golden.py), whatever the backend."""
from __future__ import annotations

import json

import pytest

from factors.parallel import make_executor
from tests.mining import gp_golden


@pytest.fixture(scope="module")
def golden():
    return json.loads(gp_golden.GOLDEN.read_text())


@pytest.mark.parametrize("case", sorted(gp_golden.CASES))
def test_serial_batch_engine_reproduces_the_recorded_runs(golden, case):
    assert gp_golden.record(gp_golden.run(case)) == golden[case]


@pytest.mark.parametrize("case, kind", [
    ("tournament", "threads"), ("tournament", "processes"), ("max_corr", "threads"),
    ("max_corr", "processes"), ("marginal", "processes"), ("nsga2", "threads")])
def test_two_workers_give_the_serial_results(golden, case, kind):
    with make_executor(kind, 2) as ex:
        got = gp_golden.record(gp_golden.run(case, executor=ex))
    assert got == golden[case]


def test_batch_scoring_is_causal():
    """Cutting the rows after train (+ embargo) from the context and the panels changes
    nothing: fitness, hook sample and hall of fame read train rows only."""
    from dataclasses import replace

    from factors.expr_tree import Field
    from mining.gp_diversity import Diversity
    from mining.gp_engine import evolve
    ctx, panels, planted = gp_golden.data()
    cut = ctx.restrict(ctx.dates[0], ctx.dates[112])
    n = len(cut.dates)
    settings = replace(gp_golden.BASE, generations=2)
    out = []
    for c, k in ((ctx, len(ctx.dates)), (cut, n)):
        div = Diversity(c, {"planted": planted[:k]}, n_dates=20, hof=5)
        with make_executor("threads", 2) as ex:
            res = evolve({Field(f): v[:k] for f, v in panels.items()}, c, settings,
                         diversity=div, executor=ex)
        out.append(gp_golden.record(res))
    assert out[0] == out[1] and out[0]["candidates"]


def test_mine_gp_jobs_2_accepts_what_jobs_1_accepts(tmp_path):
    """`mine gp --jobs 2 --executor processes` end to end (panel warehouse, fresh
    leaderboards): the same formulas reach the leaderboard with the same metrics."""
    from panel_warehouse import SPLITS, build_panel_warehouse, report_config
    from typer.testing import CliRunner

    from factors.store import FactorStore
    from mining.cli import app
    wh = build_panel_warehouse(tmp_path / "wh")
    got = []
    for jobs, kind in (("1", "serial"), ("2", "processes")):
        tmp = tmp_path / kind
        tmp.mkdir()
        cfgp = report_config(tmp, wh)
        cfgp.write_text(cfgp.read_text() + f"""[gp]
universe = "all"
start = "{SPLITS['train'][0]}"
population = 30
generations = 2
top = 3
seed = 5
max_depth = 3
fields = ["close", "open", "vol", "ret"]
""")
        r = CliRunner().invoke(app, ["--config", str(cfgp), "gp", "--jobs", jobs,
                                     "--executor", kind, "--json"])
        assert r.exit_code == 0, r.output
        with FactorStore(tmp / "lb.db") as s:
            got.append(sorted((x.formula, json.dumps(x.metrics, sort_keys=True))
                              for x in s.members() if x.source == "gp"))
    assert got[0] and got[0] == got[1]
