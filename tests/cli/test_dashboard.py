"""`mine dashboard` (issue 13): the Streamlit app's pages through Streamlit's AppTest, its
tables (mining.dashboard_data) and the launcher. Synthetic panel warehouse."""
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

pytest.importorskip("streamlit")
pytest.importorskip("plotly")

from mining.cli import app  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mining"))
from openai_stub import StubServer  # noqa: E402

runner = CliRunner()
APP = Path(__file__).resolve().parents[2] / "mining" / "cli_dashboard.py"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A config with two library members, one GP run and one backtest run."""
    from panel_warehouse import SPLITS, build_panel_warehouse, report_config

    from data.manager import DataManager
    from factors.store import FactorStore
    from factors.store_records import FactorRecord
    from mining.cli_app import load
    tmp = tmp_path_factory.mktemp("dash")
    cfg = report_config(tmp, build_panel_warehouse(tmp / "wh"))
    text = cfg.read_text() + ('[gp]\nuniverse = "all"\nstart = "2021-01-04"\npopulation = 20\n'
                              'generations = 2\ntop = 2\nn_jobs = 1\nfields = ["close", "ret"]\n')
    cfg.write_text(text)
    with FactorStore(load(cfg).store.path) as store:
        for i, f in enumerate(["-ts_mean(ret, 5)", "ts_std(ret, 10)"]):
            store.add(FactorRecord(formula=f, name=f"f{i}", source="library", universe="all",
                                   horizon=1, metrics={"train": {"rank_ic_mean": 0.02},
                                                       "valid": {"rank_ic_mean": 0.02,
                                                                 "rank_icir": 0.3 - i / 10,
                                                                 "rank_ic_t": 5.0,
                                                                 "n_ic_days": 50}}),
                      {}, force=True)
    assert runner.invoke(app, ["--config", str(cfg), "gp", "--json"]).exit_code == 0
    with StubServer() as srv:
        cfg.write_text(text + f'[llm]\nbase_url = "{srv.base_url}"\nmodel = "stub-model"\n'
                       'price_in_per_1m = 2.0\nprice_out_per_1m = 8.0\n'
                       f'cache_path = "{tmp / "llm_cache.db"}"\n')
        os.environ["OPENAI_API_KEY"] = "stub"
        try:
            res = runner.invoke(app, ["--config", str(cfg), "llm", "--prompt", "liquidity_en",
                                      "--rounds", "2", "--n", "4", "--json"])
        finally:
            del os.environ["OPENAI_API_KEY"]
        assert res.exit_code == 0, res.output
    dm = DataManager.from_config(load(cfg))
    days = dm.calendar(*SPLITS["valid"])[::5]
    codes = list(dm.stock_basic()["ts_code"][:4])
    pd.DataFrame([(d, c, 0.25) for d in days for c in codes],
                 columns=["trade_date", "ts_code", "target_weight"]).to_csv(tmp / "t.csv",
                                                                            index=False)
    res = runner.invoke(app, ["--config", str(cfg), "backtest", "--targets", str(tmp / "t.csv"),
                              "--json"])
    assert res.exit_code == 0, res.output
    return cfg


def test_tables_come_from_the_store_and_run_folders(world):
    from mining import dashboard_data as dd
    from mining.cli_app import load
    cfg = load(world)
    lb = dd.leaderboard_frame(cfg, "all")
    assert {"f0", "f1"} <= set(lb.name) and "test_looks" in lb and "adj_p_now" in lb
    assert "lineage" in lb
    assert set(dd.leaderboard_frame(cfg, "all", ["library"]).source) == {"library"}
    assert len(dd.leaderboard_frame(cfg, "all", min_abs_icir=0.25)) < len(lb)
    bt = dd.backtest_runs(cfg)
    assert len(bt) == 1 and bt.sharpe.notna().all()
    nav = dd.nav_frame(list(bt.path))
    assert abs(nav.iloc[0, 0] - 1.0) < 1e-12
    runs = dd.mining_runs(cfg)
    gp = runs[runs.source == "gp"]
    assert len(gp) == 1 and gp.status.iloc[0] == "done"
    gens = dd.generations(cfg, gp.run_id.iloc[0])
    assert list(gens.generation) == [1, 2] and {"best", "median"} <= set(gens.columns)
    llm = runs[runs.source == "llm"]
    rounds = dd.llm_rounds(cfg, llm.run_id.iloc[0])
    assert list(rounds["round"]) == [1, 2] and (rounds.proposed == 4).all()
    assert rounds.proposed.sum() == llm.n_tried.iloc[0]
    assert ((rounds.valid_pct > 0) & (rounds.valid_pct <= 100)).all()
    assert (rounds.tokens_in > 0).all() and (rounds.cost_est > 0).all()
    assert rounds.cost_est.sum() == pytest.approx(
        (rounds.tokens_in.sum() * 2.0 + rounds.tokens_out.sum() * 8.0) / 1e6)
    assert dd.audit_frame(cfg).empty


def test_every_page_renders_in_apptest(world, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("ALPHAMINE_CONFIG", str(world))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, at.exception
    at.selectbox[0].set_value("all").run()                   # the universe filter
    assert not at.exception and len(at.dataframe) == 1
    assert {"f0", "f1"} <= set(at.dataframe[0].value["name"])
    at.button[0].click().run()                               # the picked factor's tear sheet
    assert not at.exception and len(at.get("plotly_chart")) >= 1
    for page, want in (("Backtests", 1), ("Mining runs", 3), ("Audit", 0)):
        at.sidebar.radio[0].set_value(page).run()
        assert not at.exception, (page, at.exception)
        assert len(at.dataframe) >= want, page
    assert any("still sealed" in s.value for s in at.success)


def test_launcher_binds_to_localhost(world):
    res = runner.invoke(app, ["--config", str(world), "dashboard", "--dry-run", "--port", "8765"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "--server.address 127.0.0.1" in out and "--server.port 8765" in out
    res = runner.invoke(app, ["--config", str(world), "dashboard", "--port", "80"])
    assert res.exit_code == 2 and "--port" in res.output


def test_dashboard_serves_on_localhost_in_chromium(world, tmp_path):
    """The real server on 127.0.0.1 opened in headless chromium: the leaderboard table shows."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("no chromium / chromedriver on PATH (apt-get install chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mining.cli", "--config", str(world),
                             "dashboard", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=Path(APP).parents[1])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        opts = Options()
        opts.binary_location = shutil.which("chromium")
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1400,1000"):
            opts.add_argument(a)
        drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
        try:
            drv.get(url)
            WebDriverWait(drv, 90).until(lambda d: d.find_elements(
                "css selector", "[data-testid='stDataFrame'], [data-testid='stAlert']"))
            assert "Leaderboard" in drv.page_source
            assert drv.save_screenshot(str(tmp_path / "dashboard.png"))
        finally:
            drv.quit()
    finally:
        proc.terminate()
        proc.wait(30)


def test_alerts_page_appears_once_alerts_are_logged(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from factors.alerts import AlertLog
    from factors.store import FactorStore
    from mining import dashboard_data as dd
    from mining.cli_app import load
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "lb.db"}"\n')
    monkeypatch.setenv("ALPHAMINE_CONFIG", str(cfg))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, at.exception
    assert "Alerts" not in at.sidebar.radio[0].options          # empty alerts_log: no page
    with FactorStore(load(cfg).store.path) as store:
        log = AlertLog(store)
        log.add([{"date": "2024-03-29", "ts_code": c, "rule": r, "period": "2024-03-31",
                  "values": {"pe": 30.0}, "severity": s, "message": "m"}
                 for c, r, s in (("600519.SH", "pe_high", "medium"),
                                 ("000001.SZ", "low_yield", "low"),
                                 ("000002.SZ", "dividend_cut", "high"))], ["webhook"])
        log.ack(1)
    frame = dd.alerts_frame(load(cfg))
    assert len(frame) == 3 and set(frame.notify_pending) == {"webhook"}
    assert frame.loc[frame.id == 1, "values"].iloc[0] == "pe=30.0"
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.sidebar.radio[0].set_value("Alerts").run()
    assert not at.exception, at.exception
    assert set(at.dataframe[0].value["ts_code"]) == {"000001.SZ", "000002.SZ"}   # open ones
    at.checkbox[0].uncheck().run()
    at.multiselect[1].set_value(["high"]).run()
    assert list(at.dataframe[0].value["ts_code"]) == ["000002.SZ"]


def test_lineage_text_shows_references_and_parents_only_when_present():
    from mining.dashboard_data import lineage_text
    assert lineage_text({}) == ""
    assert lineage_text({"generation_best": 3, "train_fitness": 0.012345}) == \
        "generation_best 3, train_fitness 0.01235"
    refs = [{"name": "gp_a_1", "id": 7, "formula": "close"}]
    assert lineage_text({"references": refs}) == "references gp_a_1 (#7)"
    assert lineage_text({"parents": ["ts_mean(close, 5)", {"formula": "vol"}]}) == \
        "parents ts_mean(close, 5); vol"
    assert lineage_text({"references": refs, "parents": ["vol"]}) == \
        "references gp_a_1 (#7), parents vol"


def test_reconciliations_page_appears_once_reconciled(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from factors.store import FactorStore
    from factors.trades import TradeLog
    from mining import dashboard_data as dd
    from mining.cli_app import load
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "lb.db"}"\n')
    monkeypatch.setenv("ALPHAMINE_CONFIG", str(cfg))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert "Reconciliations" not in at.sidebar.radio[0].options
    report = tmp_path / "reconcile_20240628.md"
    report.write_text("# Reconciliation of the plan of 2024-06-28\n")
    with FactorStore(load(cfg).store.path) as store:
        TradeLog(store).record(plan_id="p", plan_date="2024-06-28", trade_date="2024-07-01",
                               trades_file="f.csv", trades_digest="d", report=str(report),
                               summary={"n_orders": 3, "status": {"filled": 2, "missing": 1},
                                        "slip_ref_bps": 12.5, "cash_drift": -3.0})
    frame = dd.reconciliations_frame(load(cfg))
    assert frame.loc[0, ["filled", "missing", "slip_ref_bps"]].tolist() == [2, 1, 12.5]
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.sidebar.radio[0].set_value("Reconciliations").run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value["trade_date"].tolist() == ["2024-07-01"]
    at.selectbox[0].set_value(1).run()
    assert any("Reconciliation of the plan" in m.value for m in at.markdown)


def test_signals_page_appears_once_signals_are_stored(tmp_path, monkeypatch):
    import numpy as np
    import pandas as pd
    from streamlit.testing.v1 import AppTest

    from factors.signal_log import COLUMNS, SignalLog
    from factors.store import FactorStore
    from mining import dashboard_data as dd
    from mining.cli_app import load
    cfg = tmp_path / "mine.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "lb.db"}"\n')
    monkeypatch.setenv("ALPHAMINE_CONFIG", str(cfg))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, at.exception
    assert "Signals" not in at.sidebar.radio[0].options         # empty table: no page
    rows = pd.DataFrame({c: np.nan for c in COLUMNS}, index=range(3))
    rows["trade_date"], rows["universe"], rows["reason"] = "2021-12-31", "csi300", ""
    rows["ts_code"] = ["600519.SH", "000001.SZ", "000002.SZ"]
    rows["flag"], rows["held"] = ["buy", "sell", "hold"], [0, 1, 1]
    rows["composite"] = [90.0, 30.0, 60.0]
    with FactorStore(load(cfg).store.path) as store:
        SignalLog(store).write(rows, "r1")
    assert list(dd.signals_frame(load(cfg)).ts_code) == ["600519.SH", "000002.SZ", "000001.SZ"]
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.sidebar.radio[0].set_value("Signals").run()
    assert not at.exception, at.exception
    assert set(at.dataframe[0].value["ts_code"]) == {"600519.SH", "000001.SZ"}
    at.multiselect[0].set_value(["buy", "sell", "hold"]).run()
    assert len(at.dataframe[0].value) == 3
