"""The field registry: contents, documentation, and agreement with the manager."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from data.fields import FIELDS, FieldSpec, field_names

EXPECTED = {"open", "high", "low", "close", "vwap", "raw_open", "raw_high", "raw_low",
            "raw_close", "pre_close", "vol", "amount", "total_share", "total_mv", "turnover",
            "ret", "adj_factor"}
DATASET_FIELDS = {"circ_mv", "turnover_rate", "pe_ttm", "pb", "ps_ttm", "dv_ttm", "roe", "roa",
                  "eps", "bps", "grossprofit_margin", "netprofit_yoy", "debt_to_assets",
                  "revenue", "n_income", "total_assets", "total_liab", "n_cashflow_act",
                  "net_mf_amount", "mf_lg_net"}


def test_field_set_matches_the_language():
    from data.fields import BASE_FIELDS, CATEGORICAL_FIELDS
    assert set(FIELDS) == EXPECTED | DATASET_FIELDS | {"industry"}
    assert set(BASE_FIELDS) == EXPECTED
    assert CATEGORICAL_FIELDS == ("industry",) and not FIELDS["industry"].dataset
    assert all(FIELDS[f].dataset and FIELDS[f].column for f in DATASET_FIELDS)
    assert field_names() == list(FIELDS)
    assert len(set(field_names())) == len(field_names())


def test_specs_are_documented_and_frozen():
    for name, spec in FIELDS.items():
        assert isinstance(spec, FieldSpec)
        assert spec.name == name
        assert spec.unit.strip() and spec.source.strip()
        assert len(spec.doc) > 20, name
    with pytest.raises(dataclasses.FrozenInstanceError):
        FIELDS["close"].unit = "lots"


def test_units_state_the_conversions():
    assert FIELDS["vol"].unit == "shares" and "100" in FIELDS["vol"].doc
    assert FIELDS["amount"].unit == "yuan" and "1000" in FIELDS["amount"].doc
    assert FIELDS["total_share"].unit == "shares" and "1e4" in FIELDS["total_share"].doc
    assert FIELDS["total_mv"].unit == "yuan"
    for p in ("open", "high", "low", "close", "vwap"):
        assert "adj_factor" in FIELDS[p].unit
    for p in ("raw_open", "raw_high", "raw_low", "raw_close", "pre_close"):
        assert FIELDS[p].unit == "yuan"
    # the documented caveats are present
    assert "2023-03-17" in FIELDS["vwap"].doc and "proxy" in FIELDS["amount"].doc
    assert "free-float" in FIELDS["turnover"].doc
    assert "suspension" in FIELDS["ret"].doc
    for f in ("net_mf_amount", "mf_lg_net"):        # Tushare moneyflow: 10k yuan -> yuan
        assert FIELDS[f].unit == "yuan" and FIELDS[f].scale == 1e4 and "1e4" in FIELDS[f].doc
        assert FIELDS[f].dataset == "moneyflow" and "extra_datasets" in FIELDS[f].doc
    assert FIELDS["mf_lg_net"].parts == ((1.0, "buy_lg_amount"), (1.0, "buy_elg_amount"),
                                         (-1.0, "sell_lg_amount"), (-1.0, "sell_elg_amount"))
    assert FIELDS["net_mf_amount"].parts == ((1.0, "net_mf_amount"),)


def test_every_field_loads_as_float64_panel(dm):
    panels = dm.panels(dm.available_fields(), "2020-08-10", "2023-03-31")
    assert set(panels) == set(EXPECTED) | {"industry"}   # plain synthetic warehouse: no datasets
    cal = dm.calendar("2020-08-10", "2023-03-31")
    for name, p in panels.items():
        assert p.shape == (len(cal), 7), name      # 001300.SZ lists in 2025
        assert (p.dtypes == np.float64).all(), name
        assert p.index.equals(cal) and p.index.name == "trade_date"
        assert p.columns.name == "ts_code"
        assert np.isfinite(p.to_numpy()).any(), name


def test_industry_field_is_the_managers_industry_panel(dm):
    """``industry`` loads through panels() as DataManager.industry(level 1), as float codes."""
    start, end = "2020-08-10", "2023-03-31"
    codes = list(dm.panel("close", start, end).columns)
    p = dm.panels(["industry", "close"], start, end, codes=codes)
    cal = dm.calendar(start, end)
    expected = dm.industry(1, cal, codes).astype(np.float64)
    np.testing.assert_array_equal(p["industry"].to_numpy(), expected)
    assert p["industry"].shape == p["close"].shape
    alone = dm.panel("industry", start, end, codes=codes)
    np.testing.assert_array_equal(alone.to_numpy(), expected)
