"""Full market, data layer (issue 15): float32 panels, memory-mapped reads, blocked masks.

``[data] dtype = "float32"`` rounds the float64-derived panels once; the raw cache, limit prices
and tradability stay float64. Parquet files are read memory-mapped (same table as a heap read).
:meth:`DataManager.tradable_mask` works in blocks of rows (same mask, bounded temporaries).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import data._load as load_mod
import data.manager as manager_mod
from data.errors import DataError
from data.fields import FIELDS
from data.io import read_table
from data.manager import DataManager
from data.procs import peak_rss_mb

ALL = ["000002.SZ", "001201.SZ", "001300.SZ", "300001.SZ", "301001.SZ", "600000.SH",
       "600001.SH", "688001.SH"]


def test_float32_panels_are_the_float64_panels_rounded_once(warehouse):
    d64 = DataManager(warehouse.root)
    d32 = DataManager(warehouse.root, dtype="float32")
    fields = d64.available_fields()
    p64 = d64.panels(fields, "2020-08-10", "2025-08-15", codes=ALL)
    p32 = d32.panels(fields, "2020-08-10", "2025-08-15", codes=ALL, dtype=d32.dtype.name)
    assert d32.dtype == np.float32 and d64.dtype == np.float64
    small = [f for f in fields if FIELDS[f].float32]
    assert set(small) == {"vol", "amount", "turnover", "total_mv"}
    for f in fields:
        a, b = p64[f].to_numpy(), p32[f].to_numpy()
        assert a.dtype == np.float64, f
        if f not in small:                 # prices, returns...: untouched float64
            assert b.dtype == np.float64, f
            np.testing.assert_array_equal(b, a, err_msg=f)
            continue
        assert b.dtype == np.float32 and b.nbytes * 2 == a.nbytes, f
        # derived in float64, rounded once: exactly the float64 panel cast to float32
        np.testing.assert_array_equal(b, a.astype(np.float32), err_msg=f)
        ok = np.isfinite(a) & (a != 0)
        assert ok.sum() > 0
        assert (np.abs(b[ok] / a[ok] - 1) <= 2.0 ** -24).all(), f
    # default (no dtype): float64 whatever the manager's configured dtype
    assert d32.panel("vol", codes=ALL).to_numpy().dtype == np.float64


def test_bad_dtype_is_refused(warehouse):
    with pytest.raises(DataError, match="float16"):
        DataManager(warehouse.root, dtype="float16")
    with pytest.raises(DataError, match="int64"):
        DataManager(warehouse.root).panels(["close"], dtype="int64")


def test_from_config_reads_dtype_and_cache_budget(warehouse, tmp_path):
    from mining.cli_app import load
    p = tmp_path / "mine.toml"
    p.write_text(f'[data]\nroot = "{warehouse.root}"\ndtype = "float32"\ncache_mb = 1.5\n')
    dm = DataManager.from_config(load(p))
    assert dm.dtype == np.float32
    assert dm._store.max_bytes == int(1.5 * 2**20)


def test_float32_panels_are_causal(warehouse):
    """Truncating the future leaves every past float32 value unchanged."""
    dm = DataManager(warehouse.root, dtype="float32")
    fields = dm.available_fields()
    for start, end1, end2 in [("2020-08-12", "2020-08-26", "2025-08-15"),
                              ("2023-03-08", "2023-03-20", "2025-08-01")]:
        short = dm.panels(fields, start, end1, codes=ALL, dtype="float32")
        long_ = dm.panels(fields, start, end2, codes=ALL, dtype="float32")
        for f in fields:
            pd.testing.assert_frame_equal(short[f], long_[f].iloc[:len(short[f])],
                                          check_freq=False)


def test_tradable_mask_in_blocks_equals_one_block_and_is_causal(warehouse, monkeypatch):
    dm = DataManager(warehouse.root)
    whole = {s: dm.tradable_mask(codes=ALL, side=s) for s in DataManager.SIDES}
    monkeypatch.setattr(manager_mod, "MASK_BLOCK_ROWS", 4)
    dm4 = DataManager(warehouse.root, max_cache_bytes=0)    # also: a cache that keeps nothing
    for s, m in whole.items():
        np.testing.assert_array_equal(dm4.tradable_mask(codes=ALL, side=s), m, err_msg=s)
    assert whole["both"].any() and not whole["both"].all()
    short = dm4.tradable_mask("2020-08-10", "2023-03-15", codes=ALL)
    np.testing.assert_array_equal(short, whole["both"][:len(short)])


def test_panels_identical_under_a_cache_that_keeps_nothing(warehouse):
    """``[data] cache_mb = 0``: every column is evicted as soon as the next is loaded (even
    the estimated total_share, loaded for every year at once); the panels are unchanged."""
    fields = DataManager(warehouse.root).available_fields()
    full = DataManager(warehouse.root).panels(fields, codes=ALL)
    none = DataManager(warehouse.root, max_cache_bytes=0).panels(fields, codes=ALL)
    for f in fields:
        pd.testing.assert_frame_equal(none[f], full[f], check_freq=False)


def test_memory_mapped_read_returns_the_same_table(warehouse):
    path = warehouse.root / "daily" / "daily_2020.parquet"
    cols = ["ts_code", "trade_date", "open", "close"]
    mapped = read_table(path, columns=cols)                       # memory_map=True default
    heap = pq.read_table(path, columns=cols, memory_map=False)
    assert mapped.equals(heap)
    assert mapped.column_names == cols                           # only the columns asked for
    pd.testing.assert_frame_equal(mapped.to_pandas(), heap.to_pandas())


def test_panels_identical_with_and_without_memory_map(warehouse, monkeypatch):
    fields = ["close", "open", "vol", "amount", "ret", "vwap"]
    mapped = DataManager(warehouse.root).panels(fields, codes=ALL)
    calls = []

    def heap_read(path, columns=None, **kw):
        calls.append(kw.get("memory_map"))
        kw["memory_map"] = False
        return read_table(path, columns=columns, **kw)
    monkeypatch.setattr(load_mod, "read_table", heap_read)
    heap = DataManager(warehouse.root).panels(fields, codes=ALL)
    assert calls and not any(calls)          # the loader relies on read_table's default (True)
    for f in fields:
        pd.testing.assert_frame_equal(mapped[f], heap[f], check_freq=False)


def test_peak_rss_mb_is_the_high_water_mark():
    block = np.ones(64 * 2**20 // 8)           # 64 MiB, touched
    rss = _status_mb("VmRSS")
    peak = peak_rss_mb()
    assert peak >= 64
    if rss is not None:               # the kernel updates its high-water mark lazily: slack
        assert peak + 16 >= rss
    hwm = _status_mb("VmHWM")
    if hwm is not None:                        # Linux: the kernel's own high-water mark
        assert abs(peak - hwm) <= 16
    del block
    assert peak_rss_mb() >= peak               # never decreases


def _status_mb(key: str):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
