"""`mine data bootstrap` then `update` through the real tushare client and the local server:
the child of the SIGKILL test in ``test_ingest_server.py``.

Usage: ``python tests/data/ingest_server_kill.py CONFIG ROOT START MID END`` (the token from
``$TUSHARE_TOKEN``). Environment: ``KILL_AT_REQUEST=N`` kills at the N-th HTTP request of the
provider, before it is sent (``KILL_MODE=before``) or after its reply arrived (``after``);
``KILL_AT_MERGE_WRITE=K`` kills at the K-th file write of a merge (same ``KILL_MODE``).
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(kill_at_request: int = 0, kill_at_merge_write: int = 0, mode: str = "after") -> None:
    """Make this process SIGKILL itself at the given HTTP request or merge write."""
    from data import ingest_store
    from data.tushare import TushareProvider
    if kill_at_request:
        real_once, n = TushareProvider._once, [0]

        def once(self, api_name, params, fields):
            n[0] += 1
            if n[0] >= kill_at_request and mode == "before":
                _die()
            out = real_once(self, api_name, params, fields)
            if n[0] >= kill_at_request:
                _die()
            return out
        TushareProvider._once = once
    if kill_at_merge_write:
        real_write, k = ingest_store.write_parquet, [0]

        def write(path, table):
            k[0] += 1
            if k[0] >= kill_at_merge_write and mode == "before":
                _die()
            out = real_write(path, table)
            if k[0] >= kill_at_merge_write:
                _die()
            return out
        ingest_store.write_parquet = write


def run_cli(config, root, start: str, mid: str, end: str) -> int:
    """``mine data bootstrap --start START --end MID`` then ``update --end END``; exit code."""
    from mining.cli import app
    for args in (["data", "bootstrap", "--root", str(root), "--start", start, "--end", mid],
                 ["data", "update", "--root", str(root), "--end", end]):
        try:
            app(["--config", str(config), *args], prog_name="mine")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        if code:
            return code
    return 0


if __name__ == "__main__":
    arm(int(os.environ.get("KILL_AT_REQUEST", "0")),
        int(os.environ.get("KILL_AT_MERGE_WRITE", "0")), os.environ.get("KILL_MODE", "after"))
    sys.exit(run_cli(*sys.argv[1:6]))
