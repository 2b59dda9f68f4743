"""Which fields can be stored in float32 (issue 15): |delta mean RankIC| per field, whole market.

    python bench/float32_fields.py --config mine.toml [--universe all]

Loads the GP fields once in float64 on the default window (train start .. valid end), then for
each field rounds only that field to float32 and evaluates four formulas on it (the field,
its one-day ratio, a 20-day std and a 10-day correlation with vol) through the evaluator;
prints the largest |mean RankIC difference| over train and valid. The README table
"Full market" and :attr:`data.fields.FieldSpec.float32` come from this.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backtest.candidates import make_workspace  # noqa: E402
from backtest.evaluate import mean_rank_ic  # noqa: E402
from factors.expr_eval import evaluate  # noqa: E402
from factors.expr_parse import parse  # noqa: E402
from mining.cli_app import load  # noqa: E402

FIELDS = ["open", "high", "low", "close", "vwap", "vol", "amount", "turnover", "ret",
          "total_mv"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--universe", default="all")
    a = ap.parse_args()
    cfg = load(a.config)
    ws = make_workspace(cfg, a.universe)
    ws.load(FIELDS)
    ctx = ws.ctx
    p64 = {g: np.asarray(ws.field(g), dtype=np.float64) for g in FIELDS}
    print("| field | x | x / ts_delay(x, 1) | ts_std(x, 20) | ts_corr(x, vol, 10) |")
    print("|---|---|---|---|---|")
    for f in FIELDS:
        p32 = {**p64, f: p64[f].astype(np.float32)}
        other = "close" if f == "vol" else "vol"
        cells = []
        for form in (f, f"{f} / ts_delay({f}, 1)", f"ts_std({f}, 20)",
                     f"ts_corr({f}, {other}, 10)"):
            e = parse(form)
            x = evaluate(e, p64, mask=ctx.universe_mask)
            y = evaluate(e, p32, mask=ctx.universe_mask)
            d = max(abs(mean_rank_ic(x, ctx, s) - mean_rank_ic(y, ctx, s))
                    for s in ("train", "valid"))
            cells.append(f"{d:.1e}")
        print(f"| {f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
