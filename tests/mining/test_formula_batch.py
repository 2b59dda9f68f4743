"""`mine eval --file` (issue 15, batch evaluation): one row per formula equal to `mine eval`,
shared sub-expressions computed once, bad lines named before data loads, causality."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from data.errors import ConfigError
from mining.cli import app
from mining.cli_app import load
from mining.formula_batch import evaluate_batch, read_formulas

runner = CliRunner()
FORMULAS = """# a comment line
vol
cs_rank(ts_mean(vol, 5))      # shares ts_mean(vol, 5) with the next two

ts_mean(vol, 5) * 2
-ts_mean(vol, 5) + ts_delta(close, 3)
log(close - close)
"""


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    from panel_warehouse import build_panel_warehouse, report_config
    tmp = tmp_path_factory.mktemp("batch")
    cfg = report_config(tmp, build_panel_warehouse(tmp / "wh"))
    (tmp / "f.txt").write_text(FORMULAS)
    return tmp, cfg


def _cli(cfg, *args):
    return runner.invoke(app, ["--config", str(cfg), "eval", *args])


def test_read_formulas_skips_comments_and_names_the_bad_line():
    got = read_formulas(FORMULAS)
    assert [n for n, _ in got] == [2, 3, 5, 6, 7]
    assert str(got[1][1]) == "cs_rank(ts_mean(vol, 5))"
    with pytest.raises(ConfigError, match=r"^f.txt line 3: "):
        read_formulas("vol\n# x\nts_mean(vol,\n", source="f.txt")
    with pytest.raises(ConfigError, match="no formula"):
        read_formulas("# nothing\n\n")


def test_batch_rows_equal_single_formula_eval(wh):
    tmp, cfg = wh
    r = _cli(cfg, "--file", str(tmp / "f.txt"), "--universe", "all", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert [x["line"] for x in rows] == [2, 3, 5, 6, 7]
    for row in rows[:4]:
        one = _cli(cfg, row["formula"], "--universe", "all", "--json")
        assert one.exit_code == 0, one.output
        assert row["splits"] == json.loads(one.stdout)["splits"]     # train and valid only
        assert set(row["splits"]) == {"train", "valid"} and row["error"] is None
    assert rows[0]["splits"]["train"]["rank_ic_mean"] > 0              # the planted signal


@pytest.mark.parametrize("kind", ["serial", "threads", "processes"])
def test_shared_subexpression_computed_once_and_backends_agree(wh, kind):
    tmp, cfgp = wh
    cfg = load(cfgp)
    formulas = read_formulas(FORMULAS)
    res = evaluate_batch(cfg, formulas, "all", n_jobs=1 if kind == "serial" else 2,
                         executor=kind, count_trials=False)
    ref = evaluate_batch(cfg, formulas, "all", count_trials=False)
    assert [r.metrics() for r in res.rows] == [r.metrics() for r in ref.rows]
    assert res.executor == kind
    if kind != "processes":          # one memo in this process: ts_mean(vol, 5) once
        # nodes: ts_mean, cs_rank, mul, neg, ts_delta, add, sub, log = 8 distinct calls
        assert res.memo["misses"] == 8 and res.memo["hits"] == 2   # 3 uses, 1 computation


def test_an_operator_error_is_one_row_not_the_run(wh):
    tmp, cfgp = wh
    res = evaluate_batch(load(cfgp), read_formulas("vol\nts_mean(vol, 5) + factor(\"nope\")\n"),
                         "all", count_trials=False)
    assert res.rows[0].error is None and res.rows[0].reports
    assert res.rows[1].error and "nope" in res.rows[1].error and not res.rows[1].reports


def test_bad_line_fails_before_data_loads(wh, tmp_path):
    _, cfg = wh
    f = tmp_path / "bad.txt"
    f.write_text("vol\n\nts_mean(vol, 5) +\n")
    r = _cli(cfg, "--file", str(f))
    assert r.exit_code == 2 and "bad.txt line 3:" in r.output
    for extra in (["close"], ["--add"], ["--unseal-test"]):
        r = _cli(cfg, "--file", str(f), *extra)
        assert r.exit_code == 2 and "drop" in r.output


def test_causal_truncating_future_rows_keeps_train_metrics(wh):
    """The batch's train rows do not move when rows after train are cut from the window."""
    from backtest.candidates import make_workspace
    from panel_warehouse import SPLITS
    tmp, cfgp = wh
    cfg = load(cfgp)
    formulas = read_formulas("cs_rank(ts_mean(vol, 5))\nts_delta(close, 3) / ts_std(close, 10)\n")
    full = evaluate_batch(cfg, formulas, "all", count_trials=False)
    ws = make_workspace(cfg, "all", end=SPLITS["valid"][0])
    cut = evaluate_batch(cfg, formulas, "all", ws=ws, count_trials=False)
    for a, b in zip(full.rows, cut.rows):
        assert a.metrics()["train"] == b.metrics()["train"]
    assert np.isfinite(full.rows[0].reports["train"].rank_ic_mean)


def test_trials_are_counted_like_mine_eval(wh):
    from factors.store import FactorStore
    _, cfgp = wh
    cfg = load(cfgp)
    h = cfg.evaluate.horizon
    with FactorStore(cfg.store.path) as s:
        before = s.n_trials("all", h)
    evaluate_batch(cfg, read_formulas("ts_mean(close, 7)\nts_max(vol, 9)\n"), "all")
    with FactorStore(cfg.store.path) as s:
        assert s.n_trials("all", h) == before + 2
