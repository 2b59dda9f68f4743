"""The sealed test split (issue 11): refused without --unseal-test, logged with it, `mine audit`.

Synthetic warehouse (tests/data/ashare_synth.py): train ends 2020-09-04, valid is March 2023,
the test split is 2025-07-28 .. 2025-08-15.
"""
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mining.cli import app
from mining.cli_app import load as load_config

runner = CliRunner()
TEST0 = pd.Timestamp("2025-07-28")


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from ashare_synth import build_warehouse
    return build_warehouse(tmp_path_factory.mktemp("ashare_seal")).root


def _config(tmp_path: Path, root: Path) -> Path:
    from ashare_synth import sealed_config
    return sealed_config(tmp_path, root)


def _out(res) -> str:
    return " ".join(res.output.split())


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _audit(cfg) -> list[dict]:
    return _json(runner.invoke(app, ["--config", str(cfg), "audit", "--json"]))["audit"]


def _members(cfg_path: Path) -> None:
    from factors.store import FactorStore
    from factors.store_records import FactorRecord
    cfg = load_config(cfg_path)
    with FactorStore(cfg.store.path) as store:
        for i, f in enumerate(["-ts_delta(close, 1)", "-log(vol)"]):
            rec = FactorRecord(formula=f, name=f"f{i}", source="library", universe="all",
                               horizon=1, metrics={"train": {"rank_ic_mean": 0.02},
                                                   "valid": {"rank_ic_mean": 0.02,
                                                             "rank_icir": 0.2 - i / 100,
                                                             "rank_ic_t": 5.0,
                                                             "n_ic_days": 500}})
            assert store.add(rec, {}, force=True).accepted


def test_library_refuses_test_dates_without_an_access(tmp_path, synth_root):
    from backtest.candidates import make_workspace
    from backtest.errors import SealedError
    from backtest.seal import unseal
    cfg = load_config(_config(tmp_path, synth_root))
    ws = make_workspace(cfg, "all")                      # default: ends with valid
    assert ws.ctx.dates[-1] < TEST0
    with pytest.raises(SealedError, match="sealed test split"):
        make_workspace(cfg, "all", end="2025-08-01")
    acc = unseal(cfg, purpose="research", universe="all", subject={"formulas": ["close"]},
                 window=("2020-08-10", "2025-08-15"))
    ws = make_workspace(cfg, "all", access=acc)
    assert ws.ctx.dates[-1] == pd.Timestamp("2025-08-15")


def test_eval_refused_then_unsealed_and_logged(tmp_path, synth_root):
    cfg = _config(tmp_path, synth_root)
    res = runner.invoke(app, ["--config", str(cfg), "eval", "close", "--universe", "all",
                              "--end", "2025-08-15"])
    assert res.exit_code == 2 and "sealed test split" in _out(res)
    assert "--unseal-test" in _out(res)
    d = _json(runner.invoke(app, ["--config", str(cfg), "eval", "close", "--universe", "all",
                                  "--json"]))
    assert set(d["splits"]) == {"train", "valid"} and not d["test_unsealed"]
    assert _audit(cfg) == []
    # a formula that is NOT a member: the look is logged all the same
    d = _json(runner.invoke(app, ["--config", str(cfg), "eval", "close", "--universe", "all",
                                  "--unseal-test", "--json"]))
    assert "test" in d["splits"] and d["test_unsealed"] and d["audit_id"] == 1
    (row,) = _audit(cfg)
    assert row["purpose"] == "research" and row["subject"]["formulas"] == ["close"]
    assert row["universe"] == "all" and row["window"] == ["2020-08-10", "2025-08-15"]
    assert row["metrics"]["test"]["n_days"] == d["splits"]["test"]["n_days"]
    assert row["config_digest"] and row["command"].startswith("mine --config ")
    assert row["command"].endswith("eval close --universe all --unseal-test --json")
    assert set(row["code_version"]) == {"package", "commit", "dirty"}
    # --unseal-test on a window that stays before test: nothing to unseal, nothing logged
    d = _json(runner.invoke(app, ["--config", str(cfg), "eval", "close", "--universe", "all",
                                  "--unseal-test", "--end", "2023-03-31", "--json"]))
    assert not d["test_unsealed"] and len(_audit(cfg)) == 1


def test_combine_and_backtest_sealed_by_default(tmp_path, synth_root):
    cfg = _config(tmp_path, synth_root)
    _members(cfg)
    base = ["--config", str(cfg), "combine", "--top", "2", "--n", "2", "--window", "5", "--json"]
    res = runner.invoke(app, base[:-1] + ["--end", "2025-08-15"])
    assert res.exit_code == 2 and "sealed test split" in _out(res)
    assert not any((tmp_path / "bt").glob("combine-*"))      # nothing left behind
    c = _json(runner.invoke(app, base))
    assert pd.Timestamp(c["end"]) < TEST0 and not c["test_unsealed"]
    tg = pd.read_parquet(c["files"]["targets_parquet"])
    assert tg.trade_date.max() < TEST0
    b = _json(runner.invoke(app, ["--config", str(cfg), "backtest", "--targets", "latest",
                                  "--json"]))
    assert b["test_performance"] is None and not b["test_unsealed"]
    assert all("test" not in r["period"] for r in b["yearly"])
    assert pd.Timestamp(b["performance"]["end"]) < TEST0
    for args in (["--targets", "latest", "--end", "2025-08-15"],
                 ["--preset", "microcap", "--start", "2025-07-28", "--end", "2025-08-15"]):
        res = runner.invoke(app, ["--config", str(cfg), "backtest", *args])
        assert res.exit_code == 2 and "sealed test split" in _out(res), res.output
    assert _audit(cfg) == []


def test_unsealed_combine_and_backtest_are_logged_per_factor(tmp_path, synth_root):
    cfg = _config(tmp_path, synth_root)
    _members(cfg)
    c = _json(runner.invoke(app, ["--config", str(cfg), "combine", "--top", "2", "--n", "2",
                                  "--window", "5", "--unseal-test", "--json"]))
    assert c["test_unsealed"] and c["end"] == "2025-08-15"
    formulas = sorted(m["formula"] for m in c["members"])
    b = _json(runner.invoke(app, ["--config", str(cfg), "backtest", "--targets", "latest",
                                  "--unseal-test", "--json"]))
    assert b["test_unsealed"] and b["test_performance"] is not None
    assert any(r["period"] == "test" for r in b["yearly"])
    rows = _audit(cfg)
    assert [r["purpose"] for r in rows] == ["research", "research"]
    assert sorted(rows[0]["subject"]["formulas"]) == formulas
    assert set(rows[0]["metrics"]["members"]) == set(formulas)
    assert sorted(rows[1]["subject"]["formulas"]) == formulas      # read from combine.json
    assert rows[1]["metrics"]["test_performance"] == b["test_performance"]
    lb = _json(runner.invoke(app, ["--config", str(cfg), "leaderboard", "--json"]))["rows"]
    assert {r["formula"]: r["test_looks"] for r in lb} == {f: 2 for f in formulas}
    text = runner.invoke(app, ["--config", str(cfg), "audit"]).output
    assert "research" in text and "2 accesses" in text


def test_live_combine_reaches_the_latest_day_for_export(tmp_path, synth_root):
    cfg = _config(tmp_path, synth_root)
    _members(cfg)
    res = runner.invoke(app, ["--config", str(cfg), "combine", "--live", "--end", "2025-08-15"])
    assert res.exit_code == 2 and "drop --end" in _out(res)
    res = runner.invoke(app, ["--config", str(cfg), "combine", "--live", "--unseal-test"])
    assert res.exit_code == 2 and "choose one" in _out(res)
    c = _json(runner.invoke(app, ["--config", str(cfg), "combine", "--top", "2", "--n", "2",
                                  "--window", "5", "--live", "--json"]))
    assert c["live"] and c["end"] == "2025-08-15"
    e = _json(runner.invoke(app, ["--config", str(cfg), "export", "--cash", "100000",
                                  "--json"]))
    tg = pd.read_parquet(c["files"]["targets_parquet"])
    assert e["date"] == str(tg.trade_date.max().date()) and pd.Timestamp(e["date"]) >= TEST0
    (row,) = _audit(cfg)
    assert row["purpose"] == "live" and "test_performance" not in row["metrics"]
    lb = _json(runner.invoke(app, ["--config", str(cfg), "leaderboard", "--json"]))["rows"]
    assert all(r["test_looks"] == 0 for r in lb)     # a live run shows no test numbers


def test_audit_empty_says_sealed(tmp_path, synth_root):
    cfg = _config(tmp_path, synth_root)
    res = runner.invoke(app, ["--config", str(cfg), "audit"])
    assert res.exit_code == 0 and "still sealed" in res.output


def _spy_reads(monkeypatch) -> list:
    """Record the last date of every panel / mask the warehouse hands out."""
    from data.manager import DataManager
    seen = []
    for name in ("panels", "tradable_mask", "universe_codes"):
        orig = getattr(DataManager, name)

        def wrap(self, *a, _orig=orig, _name=name, **k):
            out = _orig(self, *a, **k)
            seen.append((_name, out))
            return out
        monkeypatch.setattr(DataManager, name, wrap)
    return seen


def _last_dates(seen) -> list[pd.Timestamp]:
    out = []
    for name, v in seen:
        if name == "panels":
            out += [f.index.max() for f in v.values() if len(f)]
    return out


def test_gp_never_reads_the_test_split(tmp_path, synth_root, monkeypatch):
    cfg = _config(tmp_path, synth_root)
    seen = _spy_reads(monkeypatch)
    res = runner.invoke(app, ["--config", str(cfg), "gp", "--json"])
    assert res.exit_code == 0, res.output
    last = _last_dates(seen)
    assert last and max(last) < TEST0
    res = runner.invoke(app, ["--config", str(cfg), "gp", "--end", "2025-08-15"])
    assert res.exit_code == 2 and "sealed test split" in _out(res)
    res = runner.invoke(app, ["--config", str(cfg), "gp", "--start", "2021-01-04"])
    assert res.exit_code == 2 and "no trading days between the GP start" in _out(res)


def test_llm_loop_never_reads_the_test_split(tmp_path, synth_root, monkeypatch):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mining"))
    from openai_stub import StubServer
    cfg = _config(tmp_path, synth_root)
    seen = _spy_reads(monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", "stub")
    with StubServer() as srv:
        text = cfg.read_text() + (f'[llm]\nbase_url = "{srv.base_url}"\nmodel = "stub-model"\n'
                                  f'cache_path = "{tmp_path / "llm.db"}"\nmax_retries = 1\n'
                                  f'prompts_dir = "{tmp_path / "prompts"}"\n')
        cfg.write_text(text)
        res = runner.invoke(app, ["--config", str(cfg), "llm", "--prompt", "liquidity_en",
                                  "--rounds", "2", "--n", "3", "--json"])
        bodies = [json.dumps(r) for r in srv.requests]
    assert res.exit_code == 0, res.output
    last = _last_dates(seen)
    assert last and max(last) < TEST0
    assert len(bodies) == 2 and not any("2025-07-28" in b or "2025-08" in b for b in bodies)
