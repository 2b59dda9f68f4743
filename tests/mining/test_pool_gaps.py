"""Pool gaps (mining.pool_gaps) and the {{pool_gaps}} prompt placeholder."""
import pytest

from factors.store import FactorStore
from factors.store_records import FactorRecord
from mining import prompting
from mining.pool_gaps import THEMES, classify, gaps_from_records, pool_gaps


def _rec(formula, name, valid=0.02, universe="csi300", test=False):
    metrics = {"train": {"rank_ic_mean": valid}, "valid": {"rank_ic_mean": valid}}
    if test:                               # a record as read back after record_test()
        metrics["test"] = {"rank_ic_mean": 0.0987654}
    return FactorRecord(formula=formula, name=name, source="gp", universe=universe, horizon=1,
                        metrics=metrics)


@pytest.mark.parametrize("formula, themes", [
    ("-(close / ts_delay(close, 5) - 1.0)", {"price trend (reversal/momentum)"}),
    ("ts_std(ret, 20)", {"volatility"}),
    ("(high - low) / close", {"volatility"}),
    ("-ts_mean(turnover, 20)", {"volume/liquidity"}),
    ("-ts_corr(cs_rank(vol), cs_rank(close), 10)",
     {"volume/liquidity", "price trend (reversal/momentum)"}),
    ("-log(total_mv)", {"size/value"}),
    ("cs_rank(1.0 / pb)", {"size/value"}),
    ("roe - cs_demean(roe)", {"fundamentals"}),
    ('model("lgbm-1")', {"model"}),
    ("not a formula (", set()),
])
def test_classify_by_fields_and_operators(formula, themes):
    assert classify(formula) == themes


def test_references_inherit_the_referenced_members_themes():
    pool = {"rev": "-ts_delta(close, 5)", "liq": 'cs_rank(factor("rev")) * -turnover'}
    assert classify('factor("liq")', pool) == {"price trend (reversal/momentum)",
                                               "volume/liquidity"}
    assert classify('factor("unknown")', pool) == set()
    cyc = {"a": 'factor("b")', "b": 'factor("a") + total_mv'}
    assert classify('factor("a")', cyc) == {"size/value"}      # a cycle terminates


def test_render_with_an_empty_pool_says_so(tmp_path):
    with FactorStore(tmp_path / "lb.db") as store:
        gaps = pool_gaps(store, "csi300", 1)
    assert gaps.n_members == 0 and gaps.missing == list(THEMES) and gaps.crowded is None
    text = prompting.render(prompting.get_template("reversal"), n=4, universe="csi300",
                            horizon=1, pool_gaps=gaps.text())
    assert "The leaderboard for csi300 (horizon 1) is empty" in text
    assert "{{" not in text and "## Pool gaps" in text


def test_reversal_only_pool_lists_volume_liquidity_missing(tmp_path):
    recs = [_rec("-ts_delta(close, 5)", "gp_aa_1", 0.03),
            _rec("-(close / ts_delay(close, 10) - 1.0)", "gp_aa_2", -0.05),
            _rec("-(close - open) / open", "llm_x_r1_01", 0.01),
            _rec("ts_mean(close, 3)", "manual formula text", 0.2)]   # not a referable name
    with FactorStore(tmp_path / "lb.db") as store:
        for r in recs:
            assert store.add(r, {}, force=True).accepted
        store.add(_rec("-ts_mean(turnover, 5)", "other_universe", universe="csi500"), {},
                  force=True)
        gaps = pool_gaps(store, "csi300", 1)
    assert gaps.n_members == 4 and gaps.counts["price trend (reversal/momentum)"] == 4
    assert "volume/liquidity" in gaps.missing and "volatility" in gaps.missing
    assert gaps.crowded == "price trend (reversal/momentum)"
    assert [n for n, _ in gaps.referable] == ["gp_aa_2", "gp_aa_1", "llm_x_r1_01"]
    text = prompting.render(prompting.get_template("momentum"), n=4, universe="csi300",
                            horizon=1, pool_gaps=gaps.text())
    assert "volume/liquidity missing" in text
    assert "Most crowded: price trend (reversal/momentum) (4 members)" in text
    assert 'factor("gp_aa_2")` (valid RankIC -0.0500)' in text
    assert "other_universe" not in text
    assert "missing themes: volatility, volume/liquidity" in gaps.summary()


def test_gaps_never_show_test_numbers():
    gaps = gaps_from_records([_rec("-ts_delta(close, 5)", "gp_a_1", test=True)], "csi300", 1)
    assert "0.0987" not in gaps.text()


@pytest.mark.parametrize("name", ["free", "liquidity", "liquidity_en", "momentum", "reversal",
                                  "value", "volatility", "volume_price"])
def test_packaged_templates_place_pool_gaps(name):
    assert "{{pool_gaps}}" in prompting.get_template(name).text()
    text = prompting.render(prompting.get_template(name), n=2, universe="all", horizon=1,
                            pool_gaps="POOL-GAPS-MARKER")
    assert "POOL-GAPS-MARKER" in text


def test_template_without_the_placeholder_still_renders(tmp_path):
    (tmp_path / "old.md").write_text("# old\nFind {{n}} factors on {{universe}}.\n")
    t = prompting.get_template("old", tmp_path)
    text = prompting.render(t, n=3, universe="csi500", horizon=1, pool_gaps="POOL-MARKER")
    assert "Find 3 factors on csi500" in text and "POOL-MARKER" not in text


def test_grammar_documents_the_factor_leaf():
    assert 'factor := "factor"' in prompting.grammar_text()
