"""`mine eval --save DIR` (issue 13, "keep the series"): Parquet series, the alphalens export
and report.json; train/valid only unless the test split is unsealed; a used folder refused.

Synthetic warehouse (tests/data/ashare_synth.py), the configuration of test_cli_seal.py.
"""
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from backtest.factor_series import SERIES_FILES
from mining.cli import app

runner = CliRunner()
TEST0 = pd.Timestamp("2025-07-28")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from ashare_synth import build_warehouse
    return build_warehouse(tmp_path_factory.mktemp("ashare_save")).root


def _config(tmp_path: Path, root: Path) -> Path:
    from ashare_synth import sealed_config
    return sealed_config(tmp_path, root)


def _out(res) -> str:
    return " ".join(res.output.split())


def test_eval_save_writes_series(tmp_path, synth_root, monkeypatch):
    # the synthetic splits hold 15-20 days: short labels keep them non-empty after the
    # embargo (max horizon + 1 rows)
    import backtest.context
    monkeypatch.setattr(backtest.context, "DECAY_HORIZONS", (1, 2))
    cfg = _config(tmp_path, synth_root)
    out = tmp_path / "series"
    res = runner.invoke(app, ["--config", str(cfg), "eval", "-ts_delta(close, 1)",
                              "--universe", "all", "--save", str(out), "--json"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert {p.name for p in out.iterdir()} == SERIES_FILES
    rep = json.loads((out / "report.json").read_text())
    # the metrics as --json prints; peak_rss_mb (this process's high-water mark, issue 15) is
    # printed only, never saved
    assert printed.pop("peak_rss_mb") > 0
    assert rep == printed
    ric = pd.read_parquet(out / "rank_ic.parquet")
    assert list(ric.columns) == ["trade_date", "split", "rank_ic", "ic"]
    assert set(ric.split) == {"train", "valid"} and ric.trade_date.max() < TEST0
    for s in ("train", "valid"):
        r = ric[ric.split == s]
        assert r.rank_ic.mean() == pytest.approx(rep["splits"][s]["rank_ic_mean"], rel=1e-9)
        assert len(r) == rep["splits"][s]["n_days"] > 0
    qr = pd.read_parquet(out / "quantile_returns.parquet")
    assert list(qr.columns) == ["trade_date", "split", "quantile", "return"]
    dec = pd.read_parquet(out / "ic_decay.parquet")
    assert {"horizon", "split", "rank_ic_mean"} <= set(dec.columns)
    for f in ("long_short", "turnover", "rank_ic_by_horizon"):
        assert set(pd.read_parquet(out / f"{f}.parquet").split) == {"train", "valid"}
    fd = pd.read_parquet(out / "factor_data.parquet")
    assert fd.index.names == ["date", "asset"]
    assert list(fd.columns) == ["1D", "2D", "factor", "factor_quantile"]
    assert len(fd) > 0 and fd.factor_quantile.between(1, 5).all()
    assert fd.index.get_level_values("date").max() < TEST0

    # a folder that holds files: refused (one line, exit 2) before any data loads
    res = runner.invoke(app, ["--config", str(cfg), "eval", "close", "--universe", "all",
                              "--save", str(out)])
    assert res.exit_code == 2 and "not empty" in _out(res) and "--force" in _out(res)
    assert "loading" not in _out(res)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    res = runner.invoke(app, ["--config", str(cfg), "eval", "close", "--universe", "all",
                              "--save", str(tmp_path / "other"), "--force"])
    assert res.exit_code == 2 and "did not write" in _out(res)
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"

    # --force over an earlier --save, with the test split unsealed: test rows appear
    res = runner.invoke(app, ["--config", str(cfg), "eval", "close", "--universe", "all",
                              "--unseal-test", "--save", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert "saved to" in _out(res)
    ric = pd.read_parquet(out / "rank_ic.parquet")
    assert set(ric.split) == {"train", "valid", "test"}
    fd = pd.read_parquet(out / "factor_data.parquet")
    assert fd.index.get_level_values("date").max() >= TEST0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".series")]
