"""Bad input never crashes and never silently succeeds (issue 12): a table of bad CLI inputs.

Every case must end with exit code 2, exactly one ``error: ...`` line on stderr (naming what is
wrong), no traceback, and no file written or changed in the run's folders (store, output
folders, caches) -- checked by a snapshot of the work folder before and after.

Cases, by kind: corrupt warehouse files (each kind of damage on a copy of the synthetic
warehouse), bad targets / positions files, bad configuration files, ``--out`` naming a file,
and out-of-range options (validated before any data loads, see ``no_data``). Two inputs that
are not errors must still not pass silently: ``--unseal-test`` on a window before the test
split, and splits left without a day by the horizon / embargo, each end with a ``warning:``
line (exit 0).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mining.cli import app

runner = CliRunner()


@dataclass
class Env:
    wh: Path            # the synthetic warehouse (never modified)
    work: Path          # store, output folders, caches: must stay unchanged by every case
    inputs: Path        # the cases' input files (targets, positions, configs, damaged copies)
    config: Path        # a valid config over ``wh`` writing into ``work``
    targets: Path       # a valid targets CSV (a day in the warehouse)


def _config_text(root: Path, work: Path) -> str:
    return f"""
[data]
root = "{root}"
cache_dir = "{work / 'cache'}"
[evaluate]
train = ["2010-01-01", "2020-08-09"]
valid = ["2020-08-10", "2025-07-25"]
test = ["2025-07-28", "2025-08-15"]
embargo = 1
min_listed_days = 3
[store]
path = "{work / 'lb.db'}"
[backtest]
universe = "all"
start = "2020-08-10"
end = ""
out_dir = "{work / 'bt'}"
[model]
out_dir = "{work / 'models'}"
[llm]
cache_path = "{work / 'llm.db'}"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    from ashare_synth import build_warehouse
    from factors.store import FactorStore
    from factors.store_records import FactorRecord
    from mining.cli_app import load

    wh = build_warehouse(tmp_path_factory.mktemp("ashare")).root
    work = tmp_path_factory.mktemp("work")
    inputs = tmp_path_factory.mktemp("inputs")
    cfg = inputs / "mine.toml"
    cfg.write_text(_config_text(wh, work))
    with FactorStore(load(cfg).store.path) as store:       # one member: combine gets going
        rec = FactorRecord(formula="ts_delta(close, 1)", name="f0", source="library",
                           universe="all", horizon=1,
                           metrics={"train": {"rank_ic_mean": 0.02},
                                    "valid": {"rank_ic_mean": 0.02, "rank_icir": 0.2,
                                              "rank_ic_t": 5.0, "n_ic_days": 500}})
        assert store.add(rec, {}, force=True).accepted
    (work / "bt").mkdir()
    targets = inputs / "good_targets.csv"
    pd.DataFrame({"trade_date": ["2020-08-17", "2020-08-17"],
                  "ts_code": ["600000.SH", "000002.SZ"],
                  "target_weight": [0.4, 0.4]}).to_csv(targets, index=False)
    return Env(wh, work, inputs, cfg, targets)


def _db_content(path: str) -> str:
    """A SQLite file's rows and schema (opened immutable: reading changes nothing)."""
    import hashlib
    import sqlite3
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


def _snapshot(*roots: Path) -> dict[str, tuple]:
    """Every folder and file under ``roots`` (size and mtime; for a SQLite store its content:
    opening it bumps a header counter without writing a row)."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            out[dirpath] = ("dir",)
            for f in filenames:
                p = os.path.join(dirpath, f)
                if f.endswith(".db"):
                    out[p] = ("db", _db_content(p))
                else:
                    st = os.stat(p)
                    out[p] = (st.st_size, st.st_mtime_ns)
    return out


def _one_error(env: Env, args: list[str], fragment: str, config: Path | None = None):
    """Run ``mine --config CONFIG *args``: exit 2, one ``error:`` line holding ``fragment``,
    no traceback, nothing written under ``env.work`` or ``env.wh``."""
    before = _snapshot(env.work, env.wh)
    r = runner.invoke(app, ["--config", str(config or env.config), *args])
    after = _snapshot(env.work, env.wh)
    err = r.stderr
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    flat = " ".join(err.split())
    assert fragment in flat, flat
    assert after == before, {k: (before.get(k), after.get(k))
                             for k in set(before) | set(after) if before.get(k) != after.get(k)}
    return lines[0]


# =============================================================================== warehouse files
def _zero(p: Path) -> None:
    p.write_bytes(b"")


def _truncate(p: Path) -> None:
    b = p.read_bytes()
    p.write_bytes(b[: len(b) // 2])


def _garbage(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _flip(col: str) -> Callable[[Path], None]:
    """Flip one bit in the first data page of column ``col`` (deterministic: the file is
    seeded): the first position on whose flip reading that column fails (a flip that leaves
    the page decodable changes a value silently: Parquet pages carry no checksum here)."""
    def damage(p: Path) -> None:
        import io

        import pyarrow.parquet as pq
        meta = pq.ParquetFile(p).metadata.row_group(0)
        chunk = next(meta.column(i) for i in range(meta.num_columns)
                     if meta.column(i).path_in_schema == col)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        b = p.read_bytes()
        for pos in range(start, start + chunk.total_compressed_size):
            c = bytearray(b)
            c[pos] ^= 0x10
            try:
                pq.read_table(io.BytesIO(bytes(c)), columns=[col]).to_pandas()
            except Exception:        # noqa: BLE001 - any detected damage will do
                p.write_bytes(bytes(c))
                return
        raise AssertionError(f"no detectable bit flip in {p} column {col}")
    damage.__name__ = f"flip_{col}"
    return damage


def _flip_metadata(p: Path) -> None:
    """Flip a bit where pandas, not pyarrow, fails (the pandas metadata of the schema): the
    last position from the end whose flip makes ``pandas.read_parquet`` raise something other
    than a pyarrow error (JSONDecodeError, KeyError, TypeError...)."""
    import io

    import pyarrow as pa
    b = p.read_bytes()
    for pos in range(len(b) - 9, 4, -1):
        c = bytearray(b)
        c[pos] ^= 0x10
        try:
            pd.read_parquet(io.BytesIO(bytes(c)))
        except (pa.ArrowException, OSError):
            continue
        except Exception:        # noqa: BLE001 - the pandas-side failure wanted here
            p.write_bytes(bytes(c))
            return
    raise AssertionError(f"no pandas-level bit flip in {p}")


def _drop_column(col: str) -> Callable[[Path], None]:
    def damage(p: Path) -> None:
        pd.read_parquet(p).drop(columns=col).to_parquet(p, index=False)
    damage.__name__ = f"drop_{col}"
    return damage


def _garbage_new(p: Path) -> None:
    """An optional dataset that is present but unreadable."""
    p.parent.mkdir(parents=True, exist_ok=True)
    _garbage(p)


EVAL = ["eval", "close", "--universe", "all"]
WAREHOUSE_CASES = [
    # (file, damage, command)
    *[("daily/daily_2020.parquet", d, EVAL) for d in (_zero, _truncate, _garbage,
                                                     _flip("close"))],
    ("daily/daily_2023.parquet", _drop_column("close"), EVAL),
    *[("trade_cal.parquet", d, EVAL) for d in (_zero, _truncate, _garbage,
                                               _flip("cal_date"))],
    ("trade_cal.parquet", _drop_column("is_open"), EVAL),
    *[("stock_basic.parquet", d, EVAL) for d in (_zero, _truncate, _garbage, _flip("ts_code"),
                                                 _flip_metadata)],
    ("index_member.parquet", _garbage, ["eval", "close", "--universe", "csi300"]),
    ("index_member.parquet", _truncate, ["eval", "close", "--universe", "csi300"]),
    ("daily_basic_est.parquet", _garbage, ["eval", "total_mv", "--universe", "all"]),
    ("index_daily.parquet", _zero, None),                  # backtest: the benchmark
    ("namechange.parquet", _garbage_new, EVAL),            # optional tables, present but bad
    ("stk_limit/stk_limit_2020.parquet", _garbage_new, EVAL),
    ("daily_basic/daily_basic_2023.parquet", _garbage_new, ["eval", "pb", "--universe", "all"]),
    ("fina_indicator.parquet", _garbage_new, ["eval", "roe", "--universe", "all"]),
    ("industry_sw.parquet", _garbage_new, ["combine", "--neutralize", "industry"]),
    ("dividend.parquet", _garbage_new, None),                # backtest: cash dividends
]


@pytest.mark.parametrize("name, damage, command", WAREHOUSE_CASES,
                         ids=[f"{n}-{d.__name__.strip('_')}" for n, d, _ in WAREHOUSE_CASES])
def test_corrupt_warehouse_file(env, tmp_path, name, damage, command):
    root = tmp_path / "wh"
    shutil.copytree(env.wh, root)
    damage(root / name)
    cfg = tmp_path / "mine.toml"
    cfg.write_text(_config_text(root, env.work))
    if command is None:
        command = ["backtest", "--targets", str(env.targets), "--out", str(tmp_path / "o")]
    line = _one_error(env, command, str(root / name), config=cfg)
    if "no column" not in line:
        assert "restore the file" in line and "mine data bootstrap" in line, line
    assert not (tmp_path / "o").exists()


# =============================================================================== targets files
def _csv(text: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / "targets.csv"
        p.write_text(text)
        return p
    return make


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = d / name
        p.write_bytes(data)
        return p
    return make


def _truncated_parquet(d: Path) -> Path:
    p = d / "targets.parquet"
    pd.DataFrame({"trade_date": pd.to_datetime(["2020-08-17"] * 2),
                  "ts_code": ["600000.SH", "000002.SZ"],
                  "target_weight": [0.4, 0.4]}).to_parquet(p, index=False)
    _truncate(p)
    return p


HEAD = "trade_date,ts_code,target_weight\n"
TARGETS_CASES = [
    ("bad-date", _csv(HEAD + "2020-08-17,600000.SH,0.5\nAug 17th,000002.SZ,0.3\n"),
     "trade_date not a date: 'Aug 17th' on row 2"),
    ("missing-date", _csv(HEAD + ",600000.SH,0.5\n"), "trade_date missing on row 1"),
    ("text-weight", _csv(HEAD + "2020-08-17,600000.SH,half\n"),
     "target_weight must be a finite number >= 0, got 'half' on row 1"),
    ("negative-weight", _csv(HEAD + "2020-08-17,600000.SH,0.5\n2020-08-17,000002.SZ,-0.1\n"),
     "got -0.1 on row 2"),
    ("nan-weight", _csv(HEAD + "2020-08-17,600000.SH,\n"), "target_weight must be a finite"),
    ("inf-weight", _csv(HEAD + "2020-08-17,600000.SH,inf\n"), "target_weight must be a finite"),
    ("weights-above-1", _csv(HEAD + "2020-08-17,600000.SH,0.7\n2020-08-17,000002.SZ,0.7\n"),
     "weights of 2020-08-17 sum to 1.4000 > 1"),
    ("empty-file", _bytes("targets.csv", b""), "is empty (0 bytes)"),
    ("header-only", _csv(HEAD), "has no rows"),
    ("garbage-parquet", _bytes("targets.parquet", b"PAR1 this is not parquet" * 40),
     "not a readable Parquet file"),
    ("truncated-parquet", _truncated_parquet, "not a readable Parquet file"),
    ("binary-csv", _bytes("targets.csv", bytes(range(256)) * 8), "targets file"),
    ("missing-column", _csv("trade_date,ts_code\n2020-08-17,600000.SH\n"),
     "missing column(s) target_weight"),
    ("duplicate-rows", _csv(HEAD + "2020-08-17,600000.SH,0.2\n2020-08-17,600000.SH,0.3\n"),
     "duplicate (trade_date, ts_code) rows, e.g. 2020-08-17 600000.SH"),
    ("missing-code", _csv(HEAD + "2020-08-17,,0.2\n"), "ts_code missing on row 1"),
    ("unknown-suffix", _bytes("targets.xlsx", b"PK\x03\x04"), "unsupported format '.xlsx'"),
    ("a-folder-without-targets", lambda d: d, "not found"),
]


@pytest.mark.parametrize("command", ["backtest", "export"])
@pytest.mark.parametrize("make, fragment", [c[1:] for c in TARGETS_CASES],
                         ids=[c[0] for c in TARGETS_CASES])
def test_bad_targets_file(env, tmp_path, command, make, fragment):
    path = make(tmp_path)
    out = tmp_path / "out"
    args = (["backtest", "--targets", str(path)] if command == "backtest" else
            ["export", "--cash", "1000000", "--targets", str(path)])
    line = _one_error(env, args + ["--out", str(out)], fragment)
    assert str(path) in line or fragment == "not found"
    assert not out.exists()


POS_HEAD = "ts_code,quantity,sellable\n"
POSITIONS_CASES = [
    ("text-quantity", "ts_code,quantity\n600000.SH,lots\n", "quantity must be a whole number"),
    ("negative", "ts_code,quantity\n600000.SH,-100\n", "got -100"),
    ("fraction", "ts_code,quantity\n600000.SH,100.5\n", "got 100.5"),
    ("nan", "ts_code,quantity\n600000.SH,\n", "quantity must be a whole number"),
    ("huge", "ts_code,quantity\n600000.SH,1e30\n", "quantity must be a whole number"),
    ("sellable-above", POS_HEAD + "600000.SH,100,200\n", "sellable 200 > quantity 100"),
    ("duplicate", "ts_code,quantity\n600000.SH,100\n600000.SH,200\n", "duplicated ts_code"),
    ("missing-column", "ts_code,shares\n600000.SH,100\n", "missing column 'quantity'"),
    ("missing-code", "ts_code,quantity\n,100\n", "ts_code missing on row 1"),
    ("empty-file", "", "is empty (0 bytes)"),
]


@pytest.mark.parametrize("text, fragment", [c[1:] for c in POSITIONS_CASES],
                         ids=[c[0] for c in POSITIONS_CASES])
def test_bad_positions_file(env, tmp_path, text, fragment):
    path = tmp_path / "positions.csv"
    path.write_text(text)
    out = tmp_path / "out"
    line = _one_error(env, ["export", "--cash", "1000000", "--targets", str(env.targets),
                            "--positions", str(path), "--out", str(out)], fragment)
    assert str(path) in line
    assert not out.exists()


def test_garbage_parquet_positions(env, tmp_path):
    path = tmp_path / "positions.parquet"
    path.write_bytes(b"\x00" * 100)
    _one_error(env, ["export", "--cash", "1", "--targets", str(env.targets), "--positions",
                     str(path), "--out", str(tmp_path / "out")], "not a readable Parquet file")


FILLS_HEAD = "ts_code,side,volume,price,time\n"
QMT_HEAD = "stock_code,order_type,traded_volume,traded_price,traded_time\n"
FILLS_CASES = [
    ("bad-side", FILLS_HEAD + "600000.SH,hold,100,10,09:30\n",
     "row 1, column 'side': 'hold' is not buy or sell"),
    ("fraction-volume", FILLS_HEAD + "600000.SH,buy,100,10,09:30\n600000.SH,buy,1.5,10,09:31\n",
     "row 2, column 'volume': '1.5' is not a whole number of shares > 0"),
    ("zero-price", FILLS_HEAD + "600000.SH,buy,100,0,09:30\n",
     "row 1, column 'price': '0' is not a number > 0"),
    ("bad-code", FILLS_HEAD + "PAB,buy,100,10,09:30\n", "row 1, column 'ts_code': 'PAB'"),
    ("bad-time", FILLS_HEAD + "600000.SH,buy,100,10,lunch\n",
     "row 1, column 'time': 'lunch' is not a time"),
    ("qmt-order-type", QMT_HEAD + "600000.SH,99,100,10,1719797405\n",
     "row 1, column 'order_type': '99' is not 23 (STOCK_BUY) or 24 (STOCK_SELL)"),
    ("qmt-volume", QMT_HEAD + "600000.SH,23,-100,10,1719797405\n",
     "row 1, column 'traded_volume': '-100'"),
    ("unknown-format", "code,qty,px\n600000.SH,100,10\n", "match no format"),
    ("empty-file", "", "is empty (0 bytes)"),
    ("no-plan", FILLS_HEAD + "600000.SH,buy,100,10,09:30\n", "plan folder"),
]


@pytest.mark.parametrize("text, fragment", [c[1:] for c in FILLS_CASES],
                         ids=[c[0] for c in FILLS_CASES])
def test_bad_fills_file(env, tmp_path, no_data, text, fragment):
    """`mine reconcile`: a bad fills file is refused before the plan, data or store is read."""
    path = tmp_path / "fills.csv"
    path.write_text(text)
    line = _one_error(env, ["reconcile", "--trades", str(path)], fragment)
    assert str(path) in line or fragment == "plan folder"


# =============================================================================== configuration
def _with(**sections: str) -> Callable[[Env], bytes]:
    """The valid config with ``key = value`` lines added to (or as) ``[section]``."""
    def make(env: Env) -> bytes:
        text = _config_text(env.wh, env.work)
        for name, lines in sections.items():
            head = f"[{name}]\n"
            text = (text.replace(head, head + lines + "\n", 1) if head in text
                    else text + "\n" + head + lines + "\n")
        return text.encode()
    return make


CONFIG_CASES = [
    ("binary", lambda env: bytes(range(256)) * 4, "invalid TOML"),
    ("nul-bytes", lambda env: b"[data]\x00\x00\n", "invalid TOML"),
    ("not-toml", lambda env: b"this is not = = toml\n", "invalid TOML"),
    ("latin-1", lambda env: "[data]\nroot = 'caf\u00e9'\n".encode("latin-1"), "invalid TOML"),
    ("duplicate-key", _with(evaluate="horizon = 1\nhorizon = 2"), "invalid TOML"),
    ("root-int", lambda env: b"[data]\nroot = 5\n", "[data] root must be a string (a path), got 5"),
    ("root-empty", lambda env: b'[data]\nroot = ""\n',
     "[data] root must be a string (a path), got ''"),
    ("data-dtype", _with(data='dtype = "float16"'),
     "[data] dtype must be one of float64, float32, got 'float16'"),
    ("data-cache-mb-negative", _with(data="cache_mb = -1"), "[data] cache_mb must be >= 0"),
    ("horizon-float", _with(evaluate="horizon = 1.7"),
     "[evaluate] horizon must be an integer, got 1.7"),
    ("horizon-text", _with(evaluate='horizon = "5"'), "[evaluate] horizon must be an integer"),
    ("horizon-zero", _with(evaluate="horizon = 0"), "[evaluate] horizon must be in 1..252"),
    ("horizon-huge", _with(evaluate="horizon = 100000"),
     "[evaluate] horizon must be in 1..252 (trading days), got 100000"),
    ("quantiles-1", _with(evaluate="quantiles = 1"), "[evaluate] quantiles must be in 2..100"),
    ("quantiles-huge", _with(evaluate="quantiles = 100000"),
     "[evaluate] quantiles must be in 2..100"),
    ("embargo-below-horizon", _with(evaluate="horizon = 5"), "embargo 1 must be >= horizon 5"),
    ("bool-for-int", _with(evaluate="quantiles = true"), "[evaluate] quantiles must be an "
                                                         "integer, got True"),
    ("list-for-str", _with(backtest="benchmark = [1]"), "[backtest] benchmark must be a string"),
    ("str-for-list", _with(gp='fields = "close"'), "[gp] fields must be a list"),
    ("gp-population-0", _with(gp="population = 0"), "[gp] population must be >= 1, got 0"),
    ("gp-n-jobs-negative", _with(gp="n_jobs = -2"), "[gp] n_jobs must be >= -1, got -2"),
    ("gp-executor", _with(gp='executor = "gpu"'), "[gp] executor must be one of auto"),
    ("gp-p-crossover", _with(gp="p_crossover = 1.5"), "[gp] p_crossover must be in [0, 1]"),
    ("gp-engine", _with(gp='engine = "deap"'), "[gp] engine must be one of alphamine, gplearn"),
    ("gp-selection", _with(gp='selection = "roulette"'),
     "[gp] selection must be one of tournament, nsga2"),
    ("gp-elite", _with(gp="elite = -1"), "[gp] elite must be >= 0"),
    ("gp-p-window", _with(gp="p_window_mutation = 0.5"),
     "p_window_mutation + p_constant_mutation must be <= 1"),
    ("gp-const-range", _with(gp="const_range = [1.0, -1.0]"),
     "[gp] const_range must be [] or [lo, hi] with finite lo <= hi"),
    ("gp-seed-from", _with(gp='seed_from = "members"'), "[gp] seed_from must be one of"),
    ("gp-diversity", _with(gp='diversity = "max"'), "[gp] diversity must be one of"),
    ("gp-diversity-sample-0", _with(gp="diversity_sample = 0"),
     "[gp] diversity_sample must be >= 1, got 0"),
    ("gp-hof-negative", _with(gp="hof = -1"), "[gp] hof must be >= 0, got -1"),
    ("backtest-max-corr-0", _with(backtest="max_corr = 0.0"),
     "[backtest] max_corr must be in (0, 1], got 0.0"),
    ("backtest-commission-nan", _with(backtest="commission = nan"),
     "[backtest] commission must be in [0, 1], got nan"),
    ("backtest-ic-window-1", _with(backtest="ic_window = 1"), "[backtest] ic_window must be >= 2"),
    ("llm-rounds-0", _with(llm="rounds = 0"), "[llm] rounds must be >= 1, got 0"),
    ("store-max-corr", _with(store="max_corr = 1.5"), "[store] max_corr must be in (0, 1]"),
    ("model-rounds-0", _with(model="lgbm_rounds = 0"), "[model] lgbm_rounds must be >= 1"),
    ("monitor-pctl-0", _with(monitor="pctl = 0.0"), "[monitor] pctl must be in (0, 1]"),
    ("monitor-rule", _with(monitor='rules = ["moon_phase"]'),
     "[monitor] rules: unknown rule(s) moon_phase"),
    ("monitor-dv-negative", _with(monitor="min_dv_ratio = -1.0"),
     "[monitor] min_dv_ratio must be in [0, 100]"),
    ("signals-exit-above-buy", _with(signals="buy_threshold = 40.0\nexit_threshold = 50.0"),
     "[signals] exit_threshold (50) must not exceed buy_threshold (40)"),
    ("signals-k-stop-0", _with(signals="k_stop = 0.0"), "[signals] k_stop must be in (0, 50]"),
    ("signals-max-weight-0", _with(signals="max_weight = 0.0"),
     "[signals] max_weight must be in (0, 1]"),
    ("signals-atr-window-1", _with(signals="atr_window = 1"),
     "[signals] atr_window must be in [2, 250]"),
    ("signals-weights-0", _with(signals="w_factor = 0.0\nw_valuation = 0.0\n"
                                        "w_technical = 0.0\nw_industry = 0.0"),
     "[signals] w_factor + w_valuation + w_technical + w_industry must be > 0"),
    ("notify-channel", _with(notify='channels = ["sms"]'),
     "[notify] channels: unknown channel(s) sms"),
    ("notify-email-no-to", _with(notify='channels = ["email"]'),
     "[notify] email_to is empty but channels has email"),
    ("notify-port", _with(notify="smtp_port = 70000"), "[notify] smtp_port must be in [1, 65535]"),
    ("cluster-address", _with(cluster='address = "nowhere"'),
     "[cluster] address 'nowhere': use HOST:PORT"),
    ("cluster-retries", _with(cluster="max_retries = -1"),
     "[cluster] max_retries must be in [0, 100]"),
    ("cluster-timeout-0", _with(cluster="connect_timeout = 0"),
     "[cluster] connect_timeout must be in (0, 600]"),
    ("tushare-extra-dataset", _with(tushare='extra_datasets = ["daily"]'),
     "[tushare] extra_datasets: unknown 'daily'; choose from moneyflow"),
    ("tushare-extra-not-list", _with(tushare='extra_datasets = "moneyflow"'),
     "[tushare] extra_datasets must be a list"),
    ("unknown-key", _with(evaluate="horizons = 5"), "unknown key [evaluate] 'horizons'"),
    ("unknown-section", _with(evaluation="horizon = 5"), "unknown section [evaluation]"),
    ("section-not-table", lambda env: b"data = 5\n", "[data] must be a table"),
    ("split-not-dates", lambda env: b'[evaluate]\ntrain = ["soon", "later"]\n',
     "dates must be YYYY-MM-DD"),
    ("missing-file", None, "not found"),
]


@pytest.mark.parametrize("make, fragment", [c[1:] for c in CONFIG_CASES],
                         ids=[c[0] for c in CONFIG_CASES])
def test_bad_config(env, tmp_path, make, fragment):
    cfg = tmp_path / "mine.toml"
    if make is not None:
        cfg.write_bytes(make(env))
    line = _one_error(env, EVAL, fragment, config=cfg)
    assert str(cfg) in line


def test_splits_left_empty_by_the_horizon_are_said(env, tmp_path):
    """A horizon / embargo the window cannot label (every split empty after the embargo): a
    warning naming them (and ``warnings`` in JSON), not a silent all-empty report."""
    cfg = tmp_path / "mine.toml"
    cfg.write_text(_config_text(env.wh, env.work).replace("embargo = 1", "embargo = 200\n"
                                                          "horizon = 200"))
    for extra in ([], ["--json"]):
        r = runner.invoke(app, ["--config", str(cfg), *EVAL, *extra])
        assert r.exit_code == 0, r.output
        msg = "no day of train, valid is left to evaluate"
        if extra:
            assert msg in json.loads(r.stdout)["warnings"][0]
        else:
            warn = " ".join(r.stderr.split())
            assert f"warning: {msg}" in warn and "horizon 200, embargo 200" in warn


@pytest.mark.parametrize("args", [
    ["eval", "close", "--universe", "all", "--unseal-test", "--end", "2023-03-31"],
    ["combine", "--unseal-test", "--end", "2023-03-31", "--out", "OUT"],
    ["backtest", "--targets", "T", "--unseal-test", "--end", "2023-03-31", "--out", "OUT"],
], ids=["eval", "combine", "backtest"])
def test_unseal_test_before_the_test_split_says_so(env, tmp_path, args):
    """--unseal-test on a window that ends before the test split unseals nothing: a warning
    says so (no test column, no audit row), rather than silently ignoring the flag."""
    args = [str(env.targets) if a == "T" else str(tmp_path / "o") if a == "OUT" else a
            for a in args]
    r = runner.invoke(app, ["--config", str(env.config), *args, "--json"])
    assert r.exit_code == 0, r.output
    warn = " ".join(r.stderr.split())
    assert "warning: --unseal-test has no effect: the window ends 2023-03-31, before the " \
           "test split (2025-07-28 to 2025-08-15); nothing was unsealed" in warn
    d = json.loads(r.stdout)
    assert not d["test_unsealed"] and d["audit_id"] is None
    if args[0] == "eval":
        assert set(d["splits"]) == {"train", "valid"} and "--unseal-test" in d["warnings"][0]


def test_data_root_is_a_file(env, tmp_path):
    cfg = tmp_path / "mine.toml"
    cfg.write_text(_config_text(env.wh / "trade_cal.parquet", env.work))
    _one_error(env, EVAL, "trade_cal.parquet' is a file, not a folder", config=cfg)


def test_corrupt_model_predictions(env, tmp_path):
    """A damaged prediction panel of a model run: one line naming it and what to do."""
    models = tmp_path / "models"
    (models / "lgbm-20200101T000000-abcdef").mkdir(parents=True)
    (models / "lgbm-20200101T000000-abcdef" / "pred.parquet").write_bytes(b"PAR1" + b"\0" * 64)
    cfg = tmp_path / "mine.toml"
    cfg.write_text(_config_text(env.wh, env.work).replace(f'out_dir = "{env.work / "models"}"',
                                                          f'out_dir = "{models}"'))
    _one_error(env, ["eval", 'model("lgbm-20200101T000000-abcdef")', "--universe", "all"],
               "pred.parquet: unreadable Parquet", config=cfg)


def test_quantiles_reach_the_evaluator(env, tmp_path):
    cfg = tmp_path / "mine.toml"
    cfg.write_text(_config_text(env.wh, env.work).replace("embargo = 1", "embargo = 1\n"
                                                          "quantiles = 3"))
    r = runner.invoke(app, ["--config", str(cfg), *EVAL, "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["splits"]["valid"]["quantile_ann_returns"]) == 3


# =============================================================================== --out a file
def _file(env: Env) -> Path:
    p = env.inputs / "a_file.txt"
    p.write_text("not a folder\n")
    return p


OUT_CASES = [
    ("combine", lambda env: ["combine", "--out", str(_file(env))]),
    ("combine-below-a-file", lambda env: ["combine", "--out", str(_file(env) / "sub")]),
    ("backtest", lambda env: ["backtest", "--targets", str(env.targets), "--out",
                              str(_file(env))]),
    ("microcap", lambda env: ["backtest", "--preset", "microcap", "--out", str(_file(env))]),
    ("export", lambda env: ["export", "--cash", "1", "--targets", str(env.targets), "--out",
                            str(_file(env))]),
    ("export-below-a-file", lambda env: ["export", "--cash", "1", "--targets",
                                         str(env.targets), "--out", str(_file(env) / "x")]),
]


@pytest.mark.parametrize("args", [c[1] for c in OUT_CASES], ids=[c[0] for c in OUT_CASES])
def test_out_is_a_file(env, args, no_data):
    line = _one_error(env, args(env), "a_file.txt")
    assert "is a file" in line or "not a folder" in line


@pytest.mark.parametrize("command", [["combine"], ["backtest", "--preset", "microcap"],
                                     ["export", "--cash", "1"]])
def test_out_dir_in_config_is_a_file(env, tmp_path, command, no_data):
    cfg = tmp_path / "mine.toml"
    cfg.write_text(_config_text(env.wh, env.work).replace(
        f'out_dir = "{env.work / "bt"}"', f'out_dir = "{_file(env)}"'))
    if command[0] == "export":
        command = command + ["--targets", str(env.targets)]
    _one_error(env, command, "[backtest] out_dir", config=cfg)


# =============================================================================== options
@pytest.fixture
def no_data(monkeypatch):
    """Any attempt to open the warehouse fails the test: options come first. (Only the class
    attribute is patched: a module-level function patched here would stay bound in modules
    first imported during the test.)"""
    from data.manager import DataManager

    def boom(*a, **k):
        raise AssertionError("data loaded before the options were validated")
    monkeypatch.setattr(DataManager, "__init__", boom)


OPTION_CASES = [
    (["llm", "--rounds", "0"], "--rounds must be > 0"),
    (["llm", "--rounds", "-2"], "--rounds must be > 0"),
    (["llm", "--n", "0"], "--n must be > 0"),
    (["llm", "--examples", "-1"], "--examples must be >= 0"),
    (["llm", "--universe", "sp500"], "--universe 'sp500'"),
    (["llm", "--prompt", "no-such-template"], "no-such-template"),
    (["backtest", "--preset", "microcap", "--hold", "0"], "--hold must be > 0"),
    (["backtest", "--preset", "microcap", "--every", "0"], "--every must be > 0"),
    (["backtest", "--preset", "microcap", "--hold", "-1"], "--hold must be > 0"),
    (["backtest", "--preset", "microcap", "--mv-min", "5", "--mv-max", "1"],
     "--mv-min 5 is above --mv-max 1"),
    (["backtest", "--preset", "microcap", "--end", "Dec 31 2021"], "--end 'Dec 31 2021'"),
    (["backtest", "--preset", "microcap", "--start", "2021-08-01", "--end", "2021-01-01"],
     "--start 2021-08-01 is after --end 2021-01-01"),
    (["backtest", "--preset", "microcap", "--universe", "sp500"], "--universe 'sp500'"),
    (["backtest", "--targets", "T", "--hold", "3"], "--hold: options of --preset microcap"),
    (["backtest", "--preset", "microcap", "--cash", "nan"], "--cash must be > 0"),
    (["combine", "--max-corr", "0"], "--max-corr must be in (0, 1]"),
    (["combine", "--max-corr", "1.5"], "--max-corr must be in (0, 1]"),
    (["combine", "--max-corr", "-0.5"], "--max-corr must be in (0, 1]"),
    (["combine", "--top", "0"], "--top must be > 0"),
    (["combine", "--n", "0"], "--n must be > 0"),
    (["combine", "--window", "0"], "--window must be >= 2"),
    (["combine", "--window", "1"], "--window must be >= 2"),
    (["combine", "--n-drop", "-1"], "--n-drop must be >= 0"),
    (["combine", "--strategy", "topk", "--n", "3", "--n-drop", "5"],
     "--n-drop 5 is more than --n 3"),
    (["combine", "--max-weight", "-0.1"], "--max-weight must be in [0, 1]"),
    (["combine", "--max-weight", "1.5"], "--max-weight must be in [0, 1]"),
    (["combine", "--max-industry-weight", "2"], "--max-industry-weight must be in [0, 1]"),
    (["combine", "--universe", "sp500"], "--universe 'sp500'"),
    (["combine", "--rebalance", "0"], "--rebalance '0'"),
    (["combine", "--method", "svm"], "--method 'svm'"),
    (["combine", "--method", "ridge", "--turnover-budget", "-1"],
     "--turnover-budget must be >= 0"),
    (["combine", "--turnover-budget", "nan"], "--turnover-budget must be >= 0"),
    (["combine", "--compare", "--unseal-test"], "--compare scores the methods on the valid"),
    (["combine", "--compare", "--end", "2021-06-30"], "drop --end"),
    (["combine", "--compare", "--live"], "drop --live"),
    (["combine", "--compare", "--out", "x"], "drop --out"),
    (["gp", "--generations", "0"], "--generations must be > 0"),
    (["gp", "--generations", "-1"], "--generations must be > 0"),
    (["gp", "--population", "0"], "--population must be > 0"),
    (["gp", "--n-jobs", "-2"], "--jobs must be >= 1, or 0 / -1 for all cores, got -2"),
    (["gp", "--jobs", "-3"], "--jobs must be >= 1, or 0 / -1 for all cores, got -3"),
    (["gp", "--executor", "gpu"], "--executor 'gpu': use one of auto, serial, threads"),
    (["gp", "--top", "0"], "--top must be > 0"),
    (["gp", "--seed", "-1"], "--seed must be in [0, 4.29497e+09]"),
    (["gp", "--engine", "deap"], "--engine 'deap': use one of alphamine, gplearn"),
    (["gp", "--selection", "roulette"], "--selection 'roulette': use one of tournament, nsga2"),
    (["library", "--set", "alpha102"], "--set 'alpha102'"),
    (["library", "--set", "alpha102", "--add"], "--set 'alpha102'"),
    (["gp", "--seed-from", "bogus"], "--seed-from 'bogus': use one of leaderboard, library"),
    (["gp", "--diversity", "bogus"], "--diversity 'bogus': use one of max_corr, marginal, none"),
    (["leaderboard", "--source", "bogus"], "--source 'bogus'"),
    (["leaderboard", "--json", "--csv"], "--json and --csv"),
    (["leaderboard", "--top", "0"], "--top must be > 0"),
    (["leaderboard", "--universe", "sp500"], "--universe 'sp500'"),
    (["eval", "close", "--start", "2025-01-01", "--end", "2024-01-01"],
     "--start 2025-01-01 is after --end 2024-01-01"),
    (["eval", "close", "--add", "--unseal-test"], "--unseal-test"),
    (["eval"], "give a FORMULA or --file FILE"),
    (["eval", "--file", "/no/such/formulas.txt"], "--file /no/such/formulas.txt: cannot read"),
    (["eval", "--file", "T", "--jobs", "-2"], "--jobs must be >= 1, or 0 / -1 for all cores"),
    (["eval", "close", "--jobs", "2"], "--jobs and --cluster apply to --file only"),
    (["eval", "close", "--cluster", "127.0.0.1:1"], "--jobs and --cluster apply to --file only"),
    (["gp", "--cluster", "nowhere"], "--cluster 'nowhere': use HOST:PORT"),
    (["gp", "--cluster", "127.0.0.1:1"], "--cluster: cluster 127.0.0.1:1 is unreachable"),
    (["eval", "--file", "T", "--add"], "drop --add"),
    (["eval", "close", "--file", "T"], "drop FORMULA"),
    (["eval", "--file", "T", "--universe", "sp500"], "--universe 'sp500'"),
    (["eval", "--file", "T"], "line 1: "),
    (["export", "--cash", "1", "--show", "-1"], "--show must be >= 0"),
    (["export", "--cash", "1", "--min-order-value", "-5"], "--min-order-value must be >= 0"),
    (["export", "--cash", "inf"], "--cash must be >= 0"),
    (["model", "lgbm", "--rounds", "0"], "--rounds must be > 0"),
    (["model", "lgbm", "--retrain-months", "0"], "--retrain-months must be > 0"),
    (["model", "transformer", "--epochs", "0"], "--epochs must be > 0"),
    (["model", "transformer", "--seq-len", "0"], "--seq-len must be > 0"),
    (["monitor", "--date", "2024-13-01"], "--date '2024-13-01'"),
    (["monitor", "--start", "2025-01-01", "--date", "2024-12-31"],
     "--start 2025-01-01 is after --date 2024-12-31"),
    (["monitor", "--universe", "sp500"], "--universe 'sp500'"),
    (["monitor", "--watchlist", "T", "--universe", "csi300"],
     "--watchlist and --universe: give one of them"),
    (["monitor", "--watchlist", "/no/such/watchlist.txt"], "cannot read"),
    (["monitor", "--watchlist", "T"], "'TRADE_DATE' is not a ts_code"),
    (["alerts", "--ack", "0"], "--ack must be > 0"),
    (["reconcile", "--trades", "T", "--show", "-1"], "--show must be >= 0"),
    (["reconcile", "--trades", "T", "--date", "2024-13-01"], "--date '2024-13-01'"),
    (["reconcile", "--trades", "/no/such/fills.csv"], "--trades '/no/such/fills.csv': file "
                                                       "not found"),
    (["reconcile", "--trades", "T", "--plan", "/no/such/plan"], "--plan '/no/such/plan': not "
                                                                 "found"),
    (["signals", "--date", "2024-13-01"], "--date '2024-13-01'"),
    (["signals", "--universe", "sp500"], "--universe 'sp500'"),
    (["signals", "--top", "0"], "--top must be > 0"),
    (["signals", "--start", "2024-01-01"], "--start: options of --backtest"),
    (["signals", "--backtest", "--date", "2024-01-02"], "--date is for a signal day"),
    (["signals", "--live", "--date", "2024-01-02"], "--live scores the latest trading day; drop --date"),
    (["signals", "--live", "--backtest"], "drop --backtest"),
    (["signals", "--backtest", "--start", "2024-03-01", "--end", "2024-01-01"],
     "--start 2024-03-01 is after --end 2024-01-01"),
    (["signals", "--backtest", "--out", "T"], "--out"),
    (["signals", "--backtest", "--end", "2025-08-01"], "reaches the sealed test split"),
    (["llm", "--cluster", "nowhere"], "--cluster 'nowhere': use HOST:PORT"),
    (["llm", "--cluster", "127.0.0.1:1"], "--cluster: cluster 127.0.0.1:1 is unreachable"),
    (["model", "lgbm", "--cluster", "ray://h:0"], "--cluster 'ray://h:0': use HOST:PORT"),
    (["model", "lgbm", "--cluster", "127.0.0.1:1"],
     "--cluster: cluster 127.0.0.1:1 is unreachable"),
    (["alerts", "--rule", "moon_phase"], "--rule 'moon_phase'"),
]


@pytest.mark.parametrize("args, fragment", OPTION_CASES,
                         ids=[" ".join(a) for a, _ in OPTION_CASES])
def test_bad_option(env, no_data, args, fragment):
    args = [str(env.targets) if a == "T" else a for a in args]
    _one_error(env, args, fragment)


@pytest.mark.parametrize("command", [["llm"], ["model", "lgbm"]])
def test_unreachable_cluster_in_config_fails_before_data(env, tmp_path, no_data, command):
    """``[cluster] address`` naming no running cluster: one line, exit 2, nothing loaded."""
    cfg = tmp_path / "mine.toml"
    cfg.write_text(_config_text(env.wh, env.work) + '\n[cluster]\naddress = "127.0.0.1:1"\n'
                   "connect_timeout = 2.0\n")
    _one_error(env, command, "[cluster] address: cluster 127.0.0.1:1 is unreachable",
               config=cfg)


def test_ranges_are_in_help():
    for cmd, opts in ((["combine"], ("--max-corr", "--window", "--top")),
                      (["gp"], ("--population", "--generations", "--n-jobs", "--top")),
                      (["llm"], ("--rounds", "--n")),
                      (["backtest"], ("--hold", "--every"))):
        r = runner.invoke(app, [*cmd, "--help"])
        text = " ".join(r.output.split())
        for o in opts:
            assert o in text
        assert ">= 1" in text or "> 0" in text or "(0, 1]" in text, cmd
