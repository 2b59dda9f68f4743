"""Full market (issue 15): wall time and peak RSS of ``mine eval / gp / combine --universe all``.

    python bench/full_market.py --config /tmp/fm/mine.toml [--population 60 --generations 2]
                                [--dtype float64 float32] [--cache-mb 4096 512]

Runs each command in its own process (``python -m mining.cli --config FILE ... --json``) and
prints one markdown row per command and setting: wall seconds (this process's clock around the
child) and ``peak_rss_mb`` from the command's JSON (``getrusage`` of the child: its own high-water
mark, every allocation included). ``--dtype`` / ``--cache-mb`` write a copy of the config with
``[data] dtype`` / ``cache_mb`` set (next to it, ``<name>.<dtype>.<mb>.toml``). ``mine gp`` adds
to the config's leaderboard (``[store] path``): point the config at a scratch store.
``mine combine`` needs leaderboard members of universe ``all``: run ``gp`` first.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _config(base: Path, dtype: str, cache_mb: float) -> Path:
    text = base.read_text()
    for key, value in (("dtype", f'"{dtype}"'), ("cache_mb", repr(float(cache_mb)))):
        line = f"{key} = {value}"
        if re.search(rf"(?m)^{key}\s*=", text):
            text = re.sub(rf"(?m)^{key}\s*=.*$", line, text, count=1)
        else:
            text = text.replace("[data]\n", f"[data]\n{line}\n", 1)
    out = base.with_name(f"{base.stem}.{dtype}.{int(cache_mb)}.toml")
    out.write_text(text)
    return out


def run(config: Path, args: list[str]) -> dict:
    """One ``mine`` command with ``--json``; returns wall seconds, peak RSS and the JSON."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "mining.cli", "--config", str(config), *args,
                        "--json"], capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        return {"wall_s": wall, "peak_rss_mb": None, "error": p.stderr.strip()[-300:]}
    out = json.loads(p.stdout)
    return {"wall_s": wall, "peak_rss_mb": out.get("peak_rss_mb"), "json": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--population", type=int, default=60)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--dtype", nargs="+", default=["float64", "float32"])
    ap.add_argument("--cache-mb", nargs="+", type=float, default=[4096.0])
    ap.add_argument("--commands", nargs="+", default=["eval", "gp", "combine"])
    a = ap.parse_args()
    cmds = {"eval": ["eval", "-ts_median(ret, 5)", "--universe", "all"],
            "gp": ["gp", "--universe", "all", "--population", str(a.population),
                   "--generations", str(a.generations)],
            "combine": ["combine", "--universe", "all"]}
    print("| command | dtype | cache_mb | wall s | peak RSS MiB | note |")
    print("|---|---|---|---|---|---|")
    for dtype in a.dtype:
        for mb in a.cache_mb:
            cfg = _config(a.config.resolve(), dtype, mb)
            for name in a.commands:
                r = run(cfg, cmds[name])
                note = r.get("error", "")
                j = r.get("json") or {}
                if name == "eval" and j:
                    note = f"train RankIC {j['splits']['train']['rank_ic_mean']:.8f}"
                elif name == "gp" and j:
                    note = f"{j.get('n_programs_scored', '')} programs scored"
                print(f"| `mine {' '.join(cmds[name])}` | {dtype} | {mb:g} | {r['wall_s']:.1f} "
                      f"| {r['peak_rss_mb']} | {note} |", flush=True)


if __name__ == "__main__":
    main()
