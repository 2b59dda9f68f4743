"""`mine report factor` (issue 13): one self-contained HTML tear sheet from the saved series.

Synthetic panel warehouse with a planted signal (tests/data/panel_warehouse.py). Browser
rendering checks come with the chromium job; here the figures and the page are checked.
"""
import json

import pandas as pd
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("plotly")

from mining.cli import app  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Path:
    from panel_warehouse import build_panel_warehouse
    return build_panel_warehouse(tmp_path_factory.mktemp("report_wh"))


def _config(tmp: Path, root: Path) -> Path:
    from panel_warehouse import report_config
    return report_config(tmp, root)


def test_factor_report_is_one_self_contained_page(tmp_path, wh):
    from mining.cli_app import load
    from mining.report_factor import factor_report
    cfg = _config(tmp_path, wh)
    out = tmp_path / "f.html"
    res = runner.invoke(app, ["--config", str(cfg), "report", "factor", "-ts_mean(ret, 5)",
                              "--universe", "all", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["path"] == str(out) and d["charts"] == 8 and d["splits"] == ["train", "valid"]
    page = out.read_text(encoding="utf-8")
    assert page.count("class='chart'") == 8 and "Plotly.newPlot" in page
    import re
    assert not re.search(r"<script[^>]*\bsrc=", page)      # plotly.js inline: opens offline
    assert "test split is sealed" in page and "Per year" in page
    # every chart holds data; the test split is neither evaluated nor drawn
    run = factor_report(load(cfg), "-ts_mean(ret, 5)", "all", out, force=True)
    for fig in run.figures:
        assert fig.data and any(len(t.x if t.x is not None else t.z) > 0 for t in fig.data)
        assert not any("test" in (t.name or "") for t in fig.data)
    # the test dates are shaded on every chart with a date axis, labelled sealed, and empty
    test0 = load(cfg).evaluate.test[0]
    shaded = [f for f in run.figures if any(s.type == "rect" and str(s.x0) == test0
                                            for s in f.layout.shapes)]
    assert len(shaded) == 5
    for f in shaded:
        assert any(a.text == "test (sealed)" for a in f.layout.annotations)
        xs = [x for t in f.data if t.x is not None for x in t.x]
        assert max(pd.Timestamp(x) for x in xs) < pd.Timestamp(test0)
    # an existing file is refused without --force, before any data loads
    res = runner.invoke(app, ["--config", str(cfg), "report", "factor", "close", "--universe",
                              "all", "--out", str(out)])
    assert res.exit_code == 2 and "--force" in " ".join(res.output.split())


def test_factor_report_unsealed_draws_test_and_logs(tmp_path):
    from panel_warehouse import SPLITS, build_panel_warehouse
    # 230 days: a test split long enough to keep days after the 20-day label tail is cut
    cfg = _config(tmp_path, build_panel_warehouse(tmp_path / "wh", n_days=230))
    cfg.write_text(cfg.read_text().replace(SPLITS["test"][1], "2021-11-19"))
    out = tmp_path / "t.html"
    res = runner.invoke(app, ["--config", str(cfg), "report", "factor", "-ts_mean(ret, 5)",
                              "--universe", "all", "--out", str(out), "--unseal-test", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["splits"] == ["train", "valid", "test"]
    assert "test split is sealed" not in out.read_text(encoding="utf-8")
    from mining.cli_app import load
    from mining.report_factor import factor_report
    run = factor_report(load(cfg), "-ts_mean(ret, 5)", "all", out, unseal_test=True, force=True)
    nav = run.figures[5]                                   # long-short NAV: test drawn, shaded
    assert any(t.name == "test" and len(t.x) for t in nav.data)
    assert [a.text for a in nav.layout.annotations] == ["test"]
    audit = json.loads(runner.invoke(app, ["--config", str(cfg), "audit", "--json"]).stdout)
    assert len(audit["audit"]) == 2 and audit["audit"][0]["subject"]["formulas"]   # both looks


def test_backtest_report_draws_a_run_folder(tmp_path, wh):
    import pandas as pd

    from data.manager import DataManager
    from mining.cli_app import load
    from mining.report_backtest import backtest_report
    from panel_warehouse import SPLITS
    cfg = _config(tmp_path, wh)
    dm = DataManager.from_config(load(cfg))
    days = dm.calendar(SPLITS["valid"][0], SPLITS["valid"][1])[::5]
    codes = list(dm.stock_basic()["ts_code"][:4])
    tg = pd.DataFrame([(d, c, 0.25) for d in days for c in codes],
                      columns=["trade_date", "ts_code", "target_weight"])
    tpath = tmp_path / "targets.csv"
    tg.to_csv(tpath, index=False)
    b = json.loads(runner.invoke(app, ["--config", str(cfg), "backtest", "--targets",
                                       str(tpath), "--json"]).stdout)
    res = runner.invoke(app, ["--config", str(cfg), "report", "backtest", b["out_dir"],
                              "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    page = Path(d["path"]).read_text(encoding="utf-8")
    assert d["charts"] == 7 and page.count("class='chart'") == 7
    assert "Per year" in page and "deflated Sharpe" in page
    run = backtest_report(Path(b["out_dir"]), tmp_path / "again.html")
    for fig in run.figures:
        assert fig.data
    assert len(run.figures[0].data) == 3                   # strategy, benchmark, excess NAV
    res = runner.invoke(app, ["--config", str(cfg), "report", "backtest", str(tmp_path)])
    assert res.exit_code == 2 and "not a finished" in " ".join(res.output.split())


def test_leaderboard_report_heatmap_table_and_lineage(tmp_path, wh):
    from factors.store import FactorStore
    from factors.store_records import FactorRecord
    from mining.cli_app import load
    from mining.report_leaderboard import leaderboard_report
    cfg = _config(tmp_path, wh)
    res = runner.invoke(app, ["--config", str(cfg), "report", "leaderboard", "--universe", "all"])
    assert res.exit_code == 2 and "no leaderboard member" in " ".join(res.output.split())
    formulas = ["-ts_mean(ret, 5)", "ts_std(ret, 10)", "-ts_mean(ret, 5) * 2", "model(\"gone\")"]
    with FactorStore(load(cfg).store.path) as store:
        for i, f in enumerate(formulas):
            rec = FactorRecord(formula=f, name=f"f{i}", source="library", universe="all",
                               horizon=1, metrics={"train": {"rank_ic_mean": 0.02},
                                                   "valid": {"rank_ic_mean": 0.02,
                                                             "rank_icir": 0.3 - i / 100,
                                                             "rank_ic_t": 5.0,
                                                             "n_ic_days": 50}},
                               provenance={"reference": f"ref {i}"})
            assert store.add(rec, {}, force=True).accepted
        # a member built on f1 (factor reference) with a GP parent: both kinds of lineage
        rec = FactorRecord(formula='factor("f1") * -1.0', name="child", source="gp",
                           universe="all", horizon=1,
                           metrics={"train": {"rank_ic_mean": 0.02},
                                    "valid": {"rank_ic_mean": 0.02, "rank_icir": 0.1}},
                           provenance={"references": [{"name": "f1", "id": 2,
                                                       "formula": "ts_std(ret, 10)"}],
                                       "parents": ["ts_std(ret, 10)"]})
        assert store.add(rec, {}, force=True).accepted
    res = runner.invoke(app, ["--config", str(cfg), "report", "leaderboard", "--universe", "all",
                              "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["members"] == 5 and d["in_heatmap"] == 4          # the model panel is gone
    page = Path(d["path"]).read_text(encoding="utf-8")
    assert "class='sortable'" in page and "ref 0" in page and "Not in the heatmap" in page
    assert "references f1 (#2), parents ts_std(ret, 10)" in page
    run = leaderboard_report(load(cfg), "all", tmp_path / "lb.html")
    z = run.figures[0].data[0].z
    assert len(z) == 4 and all(abs(z[i][i] - 1) < 1e-12 for i in range(4))
    names = list(run.figures[0].data[0].x)
    c, f1 = names.index("#5 child"), names.index("#2 f1")       # child = -f1, resolved
    assert abs(z[c][f1] + 1.0) < 1e-9
    names = list(run.figures[0].data[0].x)
    a, b = names.index("#1 f0"), names.index("#3 f2")          # f2 = 2 x f0: rank corr 1
    assert abs(z[a][b] - 1.0) < 1e-9 and abs(a - b) == 1       # clustered side by side
