"""Targets with codes the warehouse does not know: normalised when unambiguous, else an error
(issue 12: they used to backtest to a flat NAV with every order "suspended")."""
import pandas as pd
import pytest

from backtest.backtest_run import normalise_codes
from backtest.errors import BacktestError

KNOWN = ["600000.SH", "000001.SZ", "000002.SZ", "300001.SZ"]


def _tg(codes):
    return pd.DataFrame({"trade_date": pd.Timestamp("2024-01-02"), "ts_code": codes,
                         "target_weight": 1.0 / len(codes)})


def test_known_codes_pass_unchanged():
    tg = _tg(["600000.SH", "000001.SZ"])
    assert normalise_codes(tg, KNOWN) is tg


def test_lower_case_and_bare_codes_are_normalised_and_said():
    said = []
    out = normalise_codes(_tg(["600000.sh", "300001", "000002.SZ"]), KNOWN, said.append)
    assert out.ts_code.tolist() == ["600000.SH", "300001.SZ", "000002.SZ"]
    assert said and "2 code(s) normalised" in said[0]


@pytest.mark.parametrize("codes, msg", [
    (["999999.SH"], "1 unknown ts_code(s): 999999.SH"),
    (["abc"], "unknown ts_code(s): abc"),
    (["600000", "600000.SH"], "600000.SH appears twice"),
])
def test_unknown_or_colliding_codes_are_an_error(codes, msg):
    with pytest.raises(BacktestError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        normalise_codes(_tg(codes), KNOWN)


def test_ambiguous_bare_code():
    with pytest.raises(BacktestError, match="ambiguous without exchange suffix: 000001"):
        normalise_codes(_tg(["000001"]), KNOWN + ["000001.SH"])
