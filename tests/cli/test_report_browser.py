"""The HTML reports opened in a real headless browser (Debian's chromium + chromedriver via
Selenium; nothing downloads a browser). Skips with the reason when either is missing; `.ci/run`
installs them.

Checks: the page loads with no SEVERE console entry, every chart container holds a rendered
plotly graph with non-empty data, and a screenshot is saved (under the test's tmp folder).
"""
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("plotly")
webdriver = pytest.importorskip("selenium.webdriver")

from mining.cli import app  # noqa: E402

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="no chromium / chromedriver on PATH (apt-get install "
                                       "chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,2400"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def _open_and_check(drv, page: Path, n_charts: int, shot: Path) -> None:
    drv.get(page.as_uri())
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(drv, 60).until(lambda d: d.execute_script(
        "return document.querySelectorAll('.js-plotly-plot').length") == n_charts)
    sizes = drv.execute_script(
        "return Array.from(document.querySelectorAll('.js-plotly-plot')).map("
        "el => (el.calcdata || []).reduce((a, cd) => a + cd.length, 0))")   # drawn points
    assert len(sizes) == n_charts and all(s > 0 for s in sizes), sizes
    svgs = drv.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg')"
                              ".length")
    assert svgs >= n_charts                          # drawn, not only defined
    severe = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == [], severe
    assert drv.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_reports_render_in_chromium(tmp_path, browser):
    from panel_warehouse import build_panel_warehouse
    from panel_warehouse import report_config as _config
    wh = build_panel_warehouse(tmp_path / "wh")
    cfg = _config(tmp_path, wh)
    out = tmp_path / "factor.html"
    res = runner.invoke(app, ["--config", str(cfg), "report", "factor", "-ts_mean(ret, 5)",
                              "--universe", "all", "--out", str(out)])
    assert res.exit_code == 0, res.output
    _open_and_check(browser, out, 8, tmp_path / "factor.png")
    from panel_warehouse import SPLITS
    import pandas as pd

    from data.manager import DataManager
    from mining.cli_app import load
    dm = DataManager.from_config(load(cfg))
    days = dm.calendar(SPLITS["valid"][0], SPLITS["valid"][1])[::5]
    codes = list(dm.stock_basic()["ts_code"][:4])
    pd.DataFrame([(d, c, 0.25) for d in days for c in codes],
                 columns=["trade_date", "ts_code", "target_weight"]).to_csv(
        tmp_path / "t.csv", index=False)
    b = json.loads(runner.invoke(app, ["--config", str(cfg), "backtest", "--targets",
                                       str(tmp_path / "t.csv"), "--json"]).stdout)
    res = runner.invoke(app, ["--config", str(cfg), "report", "backtest", b["out_dir"],
                              "--out", str(tmp_path / "bt.html")])
    assert res.exit_code == 0, res.output
    _open_and_check(browser, tmp_path / "bt.html", 7, tmp_path / "bt.png")
