"""Trials counted and charged (issue 11): the trial ledger, p-values, BHY / Holm / Bonferroni
adjusted p-values and the gate's ``haircut`` rule. Small stores, hand-made records."""
from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest
from scipy.stats import t as student_t

import factors.store_schema as fs
from data.config import section_from_dict
from data.errors import ConfigError
from factors.errors import StoreError
from factors.store import FactorStore, StoreConfig
from factors.store_records import FactorRecord, gate, to_frame
from factors.trials import (
    HAIRCUTS,
    adjust_pvalues,
    one_sided_p,
    trial_key,
    trial_pvalue,
)

N_DAYS = 700


def rec(formula, *, t=8.0, ic=0.03, train=None, universe="csi300", horizon=1, source="gp",
        run_id=None) -> FactorRecord:
    """A record whose valid RankIC has t-statistic ``t`` over N_DAYS days (train agrees)."""
    valid = {"rank_ic_mean": ic, "rank_icir": 0.3, "rank_ic_t": t, "n_ic_days": N_DAYS}
    tr = ic * 1.5 if train is None else train
    return FactorRecord(formula=formula, name=formula[:12], source=source, universe=universe,
                        horizon=horizon, metrics={"train": {"rank_ic_mean": tr}, "valid": valid},
                        provenance={} if run_id is None else {"run_id": run_id})


@pytest.fixture
def store(tmp_path):
    with FactorStore(tmp_path / "lb.db") as s:
        yield s


def _noise(store, k, *, start=0, universe="csi300", horizon=1, t=0.0):
    """Count ``k`` distinct formulas with valid t = ``t`` (p = 0.5 for t = 0) as trials."""
    for i in range(start, start + k):
        store.record_trial(f"noise_{i}", universe, horizon,
                           {"train": {"rank_ic_mean": 0.01},
                            "valid": {"rank_ic_mean": 0.0, "rank_ic_t": t,
                                      "n_ic_days": N_DAYS}}, source="gp")


# ------------------------------------------------------------------ p-values
def test_one_sided_p_is_student_t_upper_tail():
    assert one_sided_p(2.0, 11) == pytest.approx(student_t.sf(2.0, 10), rel=1e-12)
    assert one_sided_p(0.0, 50) == pytest.approx(0.5)
    assert one_sided_p(1.6448536269514722, 10**7) == pytest.approx(0.05, abs=1e-6)
    assert math.isnan(one_sided_p(math.nan, 100)) and math.isnan(one_sided_p(2.0, 1))


def test_trial_pvalue_is_oriented_by_the_train_sign():
    def m(train, t, n=101):
        return {"train": {"rank_ic_mean": train},
                "valid": {"rank_ic_mean": 0.01, "rank_ic_t": t, "n_ic_days": n}}

    t, p, n = trial_pvalue(m(0.02, 3.0))
    assert (t, n) == (3.0, 101) and p == pytest.approx(student_t.sf(3.0, 100))
    # a negative factor (library, not oriented) with valid agreeing: same evidence
    assert trial_pvalue(m(-0.02, -3.0))[:2] == (3.0, p)
    # valid against the train direction: p near 1
    assert trial_pvalue(m(0.02, -3.0))[1] == pytest.approx(1 - p)
    # no train direction: two-sided
    assert trial_pvalue(m(None, -3.0))[1] == pytest.approx(2 * p)
    # unmeasured: counted with p = 1
    assert trial_pvalue({"valid": {"rank_ic_mean": 0.01}}) == (None, 1.0, None)
    assert trial_pvalue(m(0.02, 3.0, n=1))[1] == 1.0


def test_trial_key_merges_a_formula_and_its_negation():
    assert trial_key("-ts_mean(close, 5)") == trial_key("ts_mean(close, 5)") == \
        "ts_mean(close, 5)"
    assert trial_key("-(-(close / open))") == "close / open"
    assert trial_key("-close + open") == "(-close) + open"        # outer op is +, kept
    assert trial_key("  not a formula ") == "not a formula"


# ------------------------------------------------------------------ adjusted p-values
P4 = [0.01, 0.04, 0.03, 0.005]


def test_bonferroni_hand_computed():
    assert adjust_pvalues(P4, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust_pvalues([0.3, 0.01], "bonferroni") == pytest.approx([0.6, 0.02])
    assert adjust_pvalues([0.3, 0.01, 0.5, 0.9], "bonferroni")[[0, 2, 3]] == \
        pytest.approx([1.0, 1.0, 1.0])


def test_holm_hand_computed():
    # sorted 0.005 0.01 0.03 0.04 -> (m-j+1)p = .02 .03 .06 .04 -> running max .02 .03 .06 .06
    assert adjust_pvalues(P4, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_bhy_hand_computed():
    # m = 4, c(4) = 25/12, m c(m) = 25/3; m c p_(k) / k = .0417 .0417 .0833 .0833
    assert adjust_pvalues(P4, "bhy") == pytest.approx(
        [0.01 * 25 / 3 / 2, 0.04 * 25 / 3 / 4, 0.03 * 25 / 3 / 3, 0.005 * 25 / 3])
    # the step-up minimum: rank 2 takes rank 3's smaller value
    # m = 3, m c(3) = 5.5: raw .0055, .05225, .03667 -> .0055, .03667, .03667
    assert adjust_pvalues([0.001, 0.02, 0.019], "bhy") == pytest.approx(
        [0.0055, 5.5 * 0.02 / 3, 5.5 * 0.02 / 3])
    assert adjust_pvalues([0.5, 0.9], "bhy") == pytest.approx([1.0, 1.0])


def test_adjustments_edge_cases():
    assert adjust_pvalues([], "bhy").size == 0
    assert adjust_pvalues([0.02], "bhy") == pytest.approx([0.02])       # a family of one
    assert adjust_pvalues([0.02, np.nan], "bonferroni") == pytest.approx([0.04, 1.0])
    assert adjust_pvalues(P4, "none") == pytest.approx(P4)
    with pytest.raises(ValueError, match="haircut"):
        adjust_pvalues(P4, "fdr")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        adjust_pvalues([1.5], "holm")
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 40)
    for method in HAIRCUTS:
        a = adjust_pvalues(p, method)
        assert ((a >= p - 1e-15) & (a <= 1)).all()
        assert (np.diff(a[np.argsort(p)]) >= -1e-15).all()        # monotone in p


@pytest.mark.parametrize("method", ["bhy", "holm", "bonferroni"])
def test_haircut_rises_with_the_count(method):
    """Adding trials that are no stronger than the candidate never lowers its adjusted p;
    BHY and Bonferroni raise it with every trial until it reaches 1."""
    p0 = 1e-4
    adj = [adjust_pvalues([p0] + [0.5] * k, method)[0] for k in range(0, 60)]
    assert adj[0] == pytest.approx(p0)
    assert all(b >= a for a, b in zip(adj, adj[1:]))
    if method != "holm":                  # Holm: (m - 1 + 1) p0 = m p0 for the smallest too
        assert all(b > a for a, b in zip(adj, adj[1:]) if a < 1)
    assert adj[-1] > 20 * p0


# ------------------------------------------------------------------ the ledger
def test_n_tried_accumulates_across_runs_and_producers(store):
    gp = store.start_run("gp", config={}, seed=1, universe="csi300", data_root="/d")
    a = store.add(rec("ts_mean(close, 5)", run_id=gp), {})
    b = store.add(rec("ts_std(vol, 10)", run_id=gp), {})
    low = store.add(rec("cs_rank(turnover)", ic=0.001, run_id=gp), {})   # rejected: counted
    assert a.accepted and b.accepted and low.kind == "below_floor"
    assert (a.n_tried, b.n_tried, low.n_tried) == (1, 2, 3)
    store.finish_run(gp, n_tried=40)
    llm = store.start_run("llm", config={}, seed=None, universe="csi300", data_root="/d")
    # the negation of a GP formula is the same trial: counted once (stored as its own row)
    neg = store.add(rec("-ts_mean(close, 5)", run_id=llm, source="llm"), {})
    assert neg.n_tried == 3
    c = store.add(rec("ts_max(high, 20)", run_id=llm, source="llm"), {})
    assert c.accepted and c.n_tried == 4
    store.finish_run(llm, n_tried=2)
    # another universe / horizon is another family
    assert store.add(rec("ts_max(high, 20)", universe="csi500"), {}).n_tried == 1
    assert store.add(rec("ts_max(high, 20)", horizon=5), {}).n_tried == 1
    got = {r.formula: r.n_tried for r in store.members("csi300", 1)}
    assert got == {"ts_mean(close, 5)": 1, "ts_std(vol, 10)": 2, "-ts_mean(close, 5)": 3,
                   "ts_max(high, 20)": 4}
    assert store.n_trials("csi300", 1) == 4
    runs = {r.source: r for r in store.runs()}
    assert runs["gp"].n_new_trials == 3 and runs["llm"].n_new_trials == 1
    rows = {r["trial_key"]: r for r in store.trials("csi300", 1)}
    first = rows["ts_mean(close, 5)"]
    assert first["source"] == "gp" and first["run_id"] == gp and first["n_evals"] == 2
    assert first["formula"] == "ts_mean(close, 5)" and first["first_seen_at"] <= \
        first["last_seen_at"]


def test_the_same_candidate_evaluated_twice_counts_once(store):
    r = rec("ts_mean(close, 5)")
    assert store.add(r, {}).n_tried == 1
    d = store.add(r, {r.formula: 0.0})
    assert d.kind == "duplicate" and d.n_tried == 1
    ch = store.record_trial(r.formula, "csi300", 1, r.metrics, source="manual")
    assert ch.n_tried == 1 and store.n_trials("csi300", 1) == 1
    (row,) = store.trials()
    assert row["n_evals"] == 3 and row["source"] == "gp"


def test_gate_rejects_with_haircut_when_the_count_is_high(store):
    t = 3.0                                        # raw one-sided p ~ 1.4e-3
    p = student_t.sf(t, N_DAYS - 1)
    ok = store.add(rec("ts_mean(close, 5)", t=t), {})
    assert ok.accepted and ok.adj_p == pytest.approx(p) and "bhy adjusted p" in ok.reason
    _noise(store, 200)
    d = store.add(rec("ts_std(vol, 10)", t=t), {"ts_mean(close, 5)": 0.1})
    assert not d.accepted and d.kind == "haircut"
    assert d.n_tried == 202 and d.adj_p > 0.05
    assert "202 trials" in d.reason and "bhy" in d.reason and "max_adj_p 0.05" in d.reason
    assert f"{d.adj_p:.4g}" in d.reason and store.get("ts_std(vol, 10)", "csi300", 1) is None
    # the same evidence with the rule relaxed, or without an adjustment, passes
    assert store.add(rec("ts_std(vol, 12)", t=t), {}, max_adj_p=1.0).accepted
    assert store.add(rec("ts_std(vol, 14)", t=t), {}, haircut="none").accepted
    # a forced library entry is stored, marked with what the gate would have said
    f = store.add(rec("ts_std(vol, 16)", t=t, source="library"), {}, force=True)
    assert f.kind == "forced" and f.would_be == "haircut"
    prov = store.get("ts_std(vol, 16)", "csi300", 1).provenance
    assert prov["forced"] and prov["forced_kind"] == "haircut"


def test_haircut_is_checked_after_the_floor_and_before_correlation(store):
    _noise(store, 300)
    d = store.add(rec("ts_mean(close, 5)", ic=0.001, t=3.0), {})
    assert d.kind == "below_floor" and d.n_tried == 301
    store.add(rec("close", t=30.0), {})
    d = store.add(rec("ts_mean(close, 6)", t=3.0), {"close": 0.99})
    assert d.kind == "haircut"
    d = store.add(rec("ts_mean(close, 7)", t=30.0), {"close": 0.99})
    assert d.kind == "correlation"


def test_a_record_without_a_t_statistic_is_counted_and_cannot_pass(store):
    r = rec("ts_mean(close, 5)")
    del r.metrics["valid"]["rank_ic_t"]
    d = store.add(r, {})
    assert d.kind == "haircut" and d.n_tried == 1 and d.adj_p == 1.0
    assert "no valid t-statistic" in d.reason


def test_pure_gate_skips_the_rule_without_a_charge():
    r = rec("ts_mean(close, 5)", t=0.1)
    assert gate(r, {}).accepted
    with pytest.raises(StoreError, match="max_adj_p"):
        gate(r, {}, max_adj_p=0.0)


def test_leaderboard_shows_count_and_adjusted_p_at_acceptance_and_now(store):
    store.add(rec("ts_mean(close, 5)", t=3.5), {})
    (m,) = store.members()
    assert m.n_tried == 1 and m.haircut == "bhy"
    at_acceptance = m.adj_p
    assert at_acceptance == pytest.approx(student_t.sf(3.5, N_DAYS - 1))
    _noise(store, 30)
    now = store.charges([m])[m.id]
    assert now.n_tried == 31 and now.adj_p > at_acceptance
    assert store.charges([m], "bonferroni")[m.id].adj_p == pytest.approx(31 * at_acceptance)
    df = to_frame([m], store.charges([m]))
    row = json.loads(df.to_json(orient="records"))[0]
    assert row["n_tried"] == 1 and row["adj_p"] == pytest.approx(at_acceptance)
    assert row["n_tried_now"] == 31 and row["adj_p_now"] == pytest.approx(now.adj_p)
    assert row["haircut"] == "bhy"
    assert store.get("ts_mean(close, 5)", "csi300", 1).adj_p == at_acceptance   # unchanged
    with pytest.raises(StoreError, match="haircut"):
        store.charges([m], "magic")


def test_record_trial_validates(store):
    with pytest.raises(StoreError, match="source"):
        store.record_trial("close", "csi300", 1, {}, source="oracle")
    with pytest.raises(StoreError, match="unknown run id"):
        store.record_trial("close", "csi300", 1, {}, source="manual", run_id="ghost")
    with pytest.raises(StoreError, match="haircut"):
        store.add(rec("close"), {}, haircut="fdr")
    assert store.n_trials("csi300", 1) == 0


# ------------------------------------------------------------------ schema and config
def test_v2_store_migrates_and_backfills_the_ledger(tmp_path):
    p = tmp_path / "v2.db"
    con = sqlite3.connect(p)
    con.executescript(fs._SCHEMA)
    metrics = json.dumps({"train": {"rank_ic_mean": -0.02},
                          "valid": {"rank_ic_mean": -0.015, "rank_ic_t": -4.0,
                                    "n_ic_days": 500}})
    for i, f in enumerate(["-ts_mean(close, 5)", "ts_mean(close, 5)", "cs_rank(vol)"]):
        con.execute("INSERT INTO factors (formula, name, source, universe, horizon, metrics, "
                    "provenance, n_tried, created_at) VALUES (?, ?, 'library', 'csi300', 1, ?, "
                    "'{}', 15, ?)", (f, f"n{i}", metrics, f"2026-01-0{i + 1}T00:00:00+00:00"))
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    with FactorStore(p) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == fs.SCHEMA_VERSION == 7
        old = s.members()
        assert [m.n_tried for m in old] == [15, 15, 15]          # old meaning kept
        assert all(m.adj_p is None and m.haircut is None for m in old)
        rows = s.trials()
        assert [r["trial_key"] for r in rows] == ["ts_mean(close, 5)", "cs_rank(vol)"]
        assert rows[0]["formula"] == "-ts_mean(close, 5)" and "backfilled" in rows[0]["note"]
        assert rows[0]["first_seen_at"].startswith("2026-01-01")
        assert rows[0]["t"] == 4.0 and rows[0]["p"] == pytest.approx(student_t.sf(4.0, 499))
        keys = [r[0] for r in s._conn.execute("SELECT trial_key FROM factors ORDER BY id")]
        assert keys == ["ts_mean(close, 5)", "ts_mean(close, 5)", "cs_rank(vol)"]
        assert set(s.charges(old)) == {m.id for m in old}
        d = s.add(rec("ts_std(vol, 10)"), {m.formula: 0.0 for m in old})
        assert d.accepted and d.n_tried == 3
    with FactorStore(p) as s:                                    # reopening: no second upgrade
        assert len(s.trials()) == 3


def test_new_store_has_the_ledgers(tmp_path):
    with FactorStore(tmp_path / "new.db") as s:
        tables = {r[0] for r in s._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"runs", "factors", "trials", "backtest_trials"} <= tables
        cols = [r[1] for r in s._conn.execute("PRAGMA table_info(factors)")]
        assert cols[-3:] == ["trial_key", "adj_p", "haircut"]


def test_store_config_validates_haircut_settings():
    assert (StoreConfig().haircut, StoreConfig().max_adj_p) == ("bhy", 0.05)
    with pytest.raises(ValueError, match="haircut"):
        StoreConfig(haircut="fdr")
    with pytest.raises(ValueError, match="max_adj_p"):
        StoreConfig(max_adj_p=0.0)
    with pytest.raises(ConfigError, match=r"\[store\].*haircut"):
        section_from_dict("store", StoreConfig, {"haircut": "fdr"})
    with pytest.raises(ConfigError, match="max_adj_p must be a number"):
        section_from_dict("store", StoreConfig, {"max_adj_p": "low"})
    assert section_from_dict("store", StoreConfig, {"haircut": "holm", "max_adj_p": 1}
                             ).max_adj_p == 1.0
