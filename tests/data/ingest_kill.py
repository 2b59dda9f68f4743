"""Run bootstrap then update against the fake provider (the SIGKILL resume test's subprocess).

Usage: ``python tests/data/ingest_kill.py ROOT SEED``. Environment: ``FAKE_KILL_AT_CALL=N``
kills at the N-th provider call; ``KILL_AT_MERGE_WRITE=K`` kills at the K-th file write of a
merge, before (``KILL_MODE=before``) or after (``after``) the file is replaced.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_provider import FakeProvider

from data import ingest, ingest_store
from data.config import Config, DataConfig
from data.tushare import TushareConfig

START, END1, END2 = "2024-01-15", "2024-01-31", "2024-02-06"
#: The fixed clock of these runs: 2024-02-29 18:00 Asia/Shanghai.
NOW = dt.datetime(2024, 2, 29, 18, 0, tzinfo=ingest.SHANGHAI)


def make_cfg(root) -> Config:
    """A config with ``[data] root`` and a small ``[tushare]`` section (two indices)."""
    cfg = Config(None, data=DataConfig(root=Path(root)))
    return cfg.replace(tushare=TushareConfig(indices=("000300.SH", "000905.SH"), points=2000,
                                             calls_per_minute=0, token_env="TUSHARE_TOKEN"))


def run_all(root, seed: int, provider=None) -> None:
    """bootstrap(START..END1) then update(..END2) into ``root``."""
    provider = provider or FakeProvider(seed)
    cfg = make_cfg(root)
    ingest.bootstrap(cfg, provider, start=START, end=END1, root=root, now=lambda: NOW)
    ingest.update(cfg, provider, end=END2, root=root, now=lambda: NOW)


def _arm_merge_kill() -> None:
    k = int(os.environ.get("KILL_AT_MERGE_WRITE", "0"))
    if not k:
        return
    mode = os.environ.get("KILL_MODE", "after")
    real = ingest_store.write_parquet
    count = [0]

    def write(path, table):
        count[0] += 1
        if count[0] >= k and mode == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = real(path, table)
        if count[0] >= k:
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    ingest_store.write_parquet = write


if __name__ == "__main__":
    _arm_merge_kill()
    run_all(sys.argv[1], int(sys.argv[2]))
