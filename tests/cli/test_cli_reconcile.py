"""`mine reconcile` end to end on the synthetic panel warehouse: `mine combine` -> `mine export`
-> a fills CSV made from the plan (10 bps worse, one order missing, one partial) ->
`mine reconcile`; the store keeps one row per fill however often the file is reconciled."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mining.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Path:
    from panel_warehouse import build_panel_warehouse
    return build_panel_warehouse(tmp_path_factory.mktemp("recon_wh"))


def _ok(res):
    assert res.exit_code == 0, (res.output, res.exception)
    return json.loads(res.stdout)


def _setup(tmp_path: Path, wh: Path) -> Path:
    from factors.store import FactorStore
    from factors.store_records import FactorRecord
    from mining.cli_app import load
    from panel_warehouse import report_config
    cfg = report_config(tmp_path, wh)
    cfg.write_text(cfg.read_text().replace("[backtest]\n", '[backtest]\nuniverse = "all"\n'
                                           'slippage_bps = 0.0\n'))
    with FactorStore(load(cfg).store.path) as store:
        for i, f in enumerate(["cs_rank(vol)", "-ts_mean(ret, 5)"]):
            rec = FactorRecord(formula=f, name=f"f{i}", source="library", universe="all",
                               horizon=1, metrics={"train": {"rank_ic_mean": 0.03},
                                                   "valid": {"rank_ic_mean": 0.02,
                                                             "rank_icir": 0.2 - i / 100,
                                                             "rank_ic_t": 5.0,
                                                             "n_ic_days": 500}})
            assert store.add(rec, {}, force=True).accepted
    return cfg


def test_combine_export_reconcile(tmp_path, wh):
    cfg = _setup(tmp_path, wh)
    comb = _ok(runner.invoke(app, ["--config", str(cfg), "combine", "--n", "5", "--json"]))
    tg = pd.read_parquet(Path(comb["out_dir"]) / "targets.parquet")
    date = sorted(tg["trade_date"].unique())[-3]             # a day with a next session
    d = str(pd.Timestamp(date).date())
    exp = _ok(runner.invoke(app, ["--config", str(cfg), "export", "--cash", "1000000",
                                  "--date", d, "--json"]))
    plan = pd.DataFrame(exp["orders"])
    ok = plan[plan["status"] == "ok"].reset_index(drop=True)
    assert len(ok) >= 3
    cal = pd.bdate_range(d, periods=2)                         # the warehouse's weekdays
    day = str(cal[1].date())
    # fills: every ok order 10 bps worse (to the cent), the first missing, the second half-filled
    rows = []
    for i, o in ok.iterrows():
        if i == 0:
            continue
        px = round(o["ref_price"] * (1.001 if o["side"] == "buy" else 0.999), 2)
        vol = int(o["quantity"]) // 200 * 100 if i == 1 else int(o["quantity"])
        rows.append({"ts_code": o["ts_code"], "side": o["side"], "volume": vol, "price": px,
                     "time": f"{day} 09:3{i % 10}:00", "order_id": 100 + i})
    fills = tmp_path / "fills.csv"
    pd.DataFrame(rows).to_csv(fills, index=False)

    r = _ok(runner.invoke(app, ["--config", str(cfg), "reconcile", "--trades", str(fills),
                                "--json"]))
    assert r["plan_date"] == d and r["trade_date"] == day and r["format"] == "plain"
    orders = {(o["ts_code"], o["side"]): o for o in r["orders"]}
    first, second = ok.iloc[0], ok.iloc[1]
    assert orders[(first["ts_code"], first["side"])]["fill_status"] == "missing"
    assert orders[(second["ts_code"], second["side"])]["fill_status"] == "partial"
    for i, o in ok.iloc[2:].iterrows():
        got = orders[(o["ts_code"], o["side"])]
        px = round(o["ref_price"] * (1.001 if o["side"] == "buy" else 0.999), 2)
        s = 1 if o["side"] == "buy" else -1
        assert got["fill_status"] == "filled"
        assert got["slip_ref_bps"] == pytest.approx(s * (px - o["ref_price"])
                                                    / o["ref_price"] * 1e4)
        assert got["sim_price"] is not None and got["slip_sim_bps"] is not None
    assert r["summary"]["status"]["missing"] == 1 and r["summary"]["status"]["partial"] == 1
    assert r["summary"]["n_drift"] == 2
    assert r["stored"]["broker_added"] == len(rows) and r["stored"]["broker_already"] == 0
    js, md = Path(r["files"]["json"]), Path(r["files"]["markdown"])
    assert js.parent == Path(exp["files"]["orders"]).parent
    assert json.loads(js.read_text())["summary"] == r["summary"]
    assert "# Reconciliation of the plan of" in md.read_text() and "missing" in md.read_text()

    # the same file again: no new fill, the same reconciliation record
    r2 = _ok(runner.invoke(app, ["--config", str(cfg), "reconcile", "--trades", str(fills),
                                 "--date", d, "--json"]))
    assert r2["stored"]["broker_added"] == 0 and r2["stored"]["broker_already"] == len(rows)
    assert r2["stored"]["reconciliation_id"] == r["stored"]["reconciliation_id"]
    from factors.store import FactorStore
    from factors.trades import TradeLog
    from mining.cli_app import load
    with FactorStore(load(cfg).store.path) as s:
        log = TradeLog(s)
        assert len(log.fills(source="broker")) == len(rows)
        assert len(log.fills(source="sim")) == len(ok) - r["summary"]["status"].get(
            "not_sent", 0) - len(r["sim_rejected"])
        assert len(log.reconciliations()) == 1

    # the table prints
    res = runner.invoke(app, ["--config", str(cfg), "reconcile", "--trades", str(fills),
                              "--no-store"])
    assert res.exit_code == 0, res.output
    assert "missing" in res.output and "partial" in res.output and "cash drift" in res.output


def test_qmt_fills_on_a_sealed_day_are_logged(tmp_path, wh):
    """A hand-made plan whose execution day lies in the test split: QMT-format fills, --plan
    naming the file, a fill of another day left out, the read logged as a live access."""
    from backtest.orders import PLAN_COLUMNS
    from factors.audit import AuditLog
    from factors.store import FactorStore
    from mining.cli_app import load
    from panel_warehouse import SPLITS
    cfg = _setup(tmp_path, wh)
    d0 = pd.Timestamp(SPLITS["test"][0])                       # a Monday: plan on the Friday
    plan_day, day = d0 - pd.Timedelta(days=3), d0
    daily = pd.read_parquet(wh / "daily" / "daily_2021.parquet")
    bar = daily[daily["trade_date"] == day].set_index("ts_code")
    close0 = daily[daily["trade_date"] == plan_day].set_index("ts_code")["close"]
    codes = ["600001.SH", "600002.SH"]
    plan = pd.DataFrame({"ts_code": codes, "side": ["buy", "sell"], "quantity": [1000, 500],
                         "ref_price": close0[codes].to_numpy(), "current_qty": [0, 500],
                         "sellable_qty": [0, 500], "target_weight": [0.1, 0.0],
                         "target_value": [1.0, 0.0], "status": "ok", "reason": ""})
    plan["est_value"] = plan["quantity"] * plan["ref_price"]
    plan["est_fees"] = 5.0
    pdir = tmp_path / "plans"
    pdir.mkdir()
    pfile = pdir / f"orders_{plan_day:%Y%m%d}.csv"
    plan[PLAN_COLUMNS].to_csv(pfile, index=False)
    t = int((day + pd.Timedelta(hours=1, minutes=30)).timestamp())      # 09:30 Shanghai
    o = bar.loc[codes, "open"].to_numpy()
    fills = tmp_path / "qmt.csv"
    fills.write_text("stock_code,order_type,traded_id,traded_time,traded_price,traded_volume,"
                     "order_id,commission\n"
                     f"600001.SH,23,x1,{t},{o[0]},1000,1,5.0\n"
                     f"600002.SH,24,x2,{t - 86400 * 3},{o[1]},500,2,5.0\n")
    sealed = runner.invoke(app, ["--config", str(cfg), "reconcile", "--trades", str(fills),
                                 "--plan", str(pfile), "--json"])
    assert sealed.exit_code != 0 and "sealed test split" in sealed.output
    assert "--live" in sealed.output
    r = _ok(runner.invoke(app, ["--config", str(cfg), "reconcile", "--trades", str(fills),
                                "--plan", str(pfile), "--live", "--json"]))
    assert r["format"] == "qmt" and r["trade_date"] == str(day.date())
    orders = {x["ts_code"]: x for x in r["orders"]}
    assert orders["600001.SH"]["fill_status"] == "filled"
    assert orders["600002.SH"]["fill_status"] == "missing"              # its fill: another day
    assert any("dated another day" in n for n in r["notes"])
    assert any("test split" in n for n in r["notes"])
    # the replay fills at the open with [backtest] slippage 0: the fill equals it, 0 bps
    assert orders["600001.SH"]["sim_price"] == pytest.approx(o[0])
    assert orders["600001.SH"]["slip_sim_bps"] == pytest.approx(0.0, abs=1e-9)
    assert orders["600001.SH"]["fees_reported"] == 5.0
    with FactorStore(load(cfg).store.path) as s:
        live = AuditLog(s).entries(purpose="live")
        assert len(live) == 1 and live[0].window == (str(day.date()),) * 2
    assert (pdir / f"reconcile_{plan_day:%Y%m%d}.md").is_file()

    # reports land whole: a run killed between writing the two files changes neither
    import os

    import data.io as dio
    from backtest.reconcile_run import ReconcileSettings, run_reconcile
    from data.staging import clean_stale
    before = {p.name: p.read_text() for p in sorted(pdir.iterdir())}
    fills.write_text(fills.read_text().replace(",1000,1,5.0", ",600,1,5.0"))   # now partial
    settings = ReconcileSettings(trades=fills, plan=pfile, out_dir=tmp_path / "bt", live=True)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.environ[dio.CRASH_ENV] = "write_together.file"
            run_reconcile(load(cfg), settings)
            os._exit(0)
        except BaseException:  # noqa: BLE001 - a child must never return into pytest
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    clean_stale(pdir)
    assert {p.name: p.read_text() for p in sorted(pdir.iterdir())} == before
    run = run_reconcile(load(cfg), settings)
    assert run.result.orders.set_index("ts_code").loc["600001.SH", "fill_status"] == "partial"
    assert "partial" in (pdir / f"reconcile_{plan_day:%Y%m%d}.md").read_text()
