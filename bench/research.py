"""The default research loop, measured: library -> gp -> llm (stub replies) -> lgbm -> combine
-> backtest, on the valid split only, one fresh store per (universe, GP seed).

    python bench/research.py --universe csi300 --seeds 42 43 44 --work /tmp/research
    python bench/research.py --universe csi500 --seeds 42 --work /tmp/research
    python bench/research.py --table --work /tmp/research       # the table of what was run

Every step is the ``mine`` command a user would type (run as a subprocess with ``--json``), on a
copy of the repository's ``mine.toml`` whose store, run folders and LLM cache live in
``<work>/<universe>-s<seed>/``; only ``[gp] seed`` differs between seeds. The LLM step talks to
the local OpenAI-compatible stub of ``tests/mining/openai_stub.py`` on 127.0.0.1 (canned
liquidity formulas: it exercises the loop, it is not a language model). A finished step's JSON
is kept in ``steps/<name>.json`` and not run again (delete the folder to start over), so an
interrupted loop resumes.

The table (``docs/research.md``) gives per run: GP evaluated / accepted, the accepted set's
best valid RankIC and mean pairwise |corr| on valid (the gate's measure,
:func:`backtest.evaluate.factor_corr`), members in the combination, the composite's valid RankIC
and ICIR (``mine combine --compare``'s row of the method used), and the backtest of
``mine combine``'s targets over valid after all costs: annual return, CSI index annual return,
excess, information ratio, max drawdown and annual turnover. The test split is never touched.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = {"csi300": "000300.SH", "csi500": "000905.SH", "csi800": "000906.SH",
              "csi1000": "000852.SH"}


def write_config(run_dir: Path, universe: str, seed: int, base_url: str,
                 overrides: dict[str, str] | None = None) -> Path:
    """``mine.toml`` with absolute data paths, this run's store/outputs, universe and seed, and
    ``overrides`` (``{"section.key": "toml value"}``) replacing the value of that key in that
    section (the comment after it is dropped)."""
    text = (ROOT / "mine.toml").read_text(encoding="utf-8")
    data_root = (ROOT / "mine.toml").parent / "../shared/data/ashare"
    subs = {
        r'^root = "[^"]*"': f'root = "{data_root.resolve()}"',
        r'^cache_dir = "[^"]*"': f'cache_dir = "{(ROOT / ".alphamine/cache").resolve()}"',
        r'^path = "\.alphamine/leaderboard\.db"': f'path = "{run_dir / "leaderboard.db"}"',
        r'^out_dir = "\.alphamine/backtest"': f'out_dir = "{run_dir / "backtest"}"',
        r'^out_dir = "\.alphamine/models"': f'out_dir = "{run_dir / "models"}"',
        r'^cache_path = "[^"]*"': f'cache_path = "{run_dir / "llm_cache.db"}"',
        r'^universe = "csi300"': f'universe = "{universe}"',
        r'^seed = 42(\s)': f"seed = {seed}\\1",
        r'^base_url = ""': f'base_url = "{base_url}"',
        r'^model = ""': 'model = "stub-model"',
    }
    for pat, rep in subs.items():
        text, n = re.subn(pat, rep, text, flags=re.M)
        if n == 0:
            raise SystemExit(f"mine.toml: no line matches {pat!r}")
    lines = text.split("\n")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        cur, hit = None, False
        for i, line in enumerate(lines):
            if re.match(r"^\[[\w.]+\]", line):
                cur = line[1:line.index("]")]
            elif cur == section and re.match(rf"^{re.escape(key)}\s*=", line):
                lines[i], hit = f"{key} = {value}", True
                break
        if not hit:
            raise SystemExit(f"mine.toml: no key {key!r} in [{section}]")
    text = "\n".join(lines)
    p = run_dir / "mine.toml"
    p.write_text(text, encoding="utf-8")
    return p


def step(run_dir: Path, name: str, cfg: Path, args: list[str], env=None) -> dict:
    """Run ``mine --config cfg <args> --json`` once; keep its JSON in ``steps/<name>.json``."""
    out = run_dir / "steps" / f"{name}.json"
    if out.is_file():
        return json.loads(out.read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    cmd = ["mine", "--config", str(cfg), *args, "--json"]
    print(f"[{run_dir.name}] {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-2000:]}"
                         f"\n{res.stderr[-2000:]}")
    d = json.loads(res.stdout)
    d["_seconds"] = round(time.perf_counter() - t0, 1)
    d["_command"] = " ".join(["mine", *args, "--json"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(d, indent=1), encoding="utf-8")
    return d


def accepted_corr(cfg: Path, universe: str, formulas: list[str]) -> float:
    """Mean pairwise |corr| on valid of ``formulas`` (the gate's measure)."""
    sys.path.insert(0, str(ROOT))
    from backtest.candidates import make_workspace
    from backtest.evaluate import factor_corr
    from factors.expr_parse import parse
    from mining.cli_app import load
    c = load(cfg)
    if len(formulas) < 2:
        return float("nan")
    ws = make_workspace(c, universe, model_dir=c.model.out_dir)
    vals = [ws.values(parse(f)) for f in formulas]
    cs = [abs(factor_corr(vals[i], vals[j], ws.ctx)) for i in range(len(vals))
          for j in range(i + 1, len(vals))]
    return float(np.nanmean(cs))


def run_loop(work: Path, universe: str, seed: int, method: str | None,
             compare: bool = True, overrides: dict[str, str] | None = None) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "mining"))
    from openai_stub import StubServer
    run_dir = work / f"{universe}-s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    with StubServer() as srv:
        cfg = write_config(run_dir, universe, seed, srv.base_url, overrides)
        env = {**os.environ, "OPENAI_API_KEY": "stub"}
        lib = step(run_dir, "library", cfg, ["library", "--add", "--universe", universe])
        gp = step(run_dir, "gp", cfg, ["gp", "--universe", universe, "--seed", str(seed)])
        llm = step(run_dir, "llm", cfg, ["llm", "--prompt", "liquidity", "--rounds", "3"],
                   env=env)
    lgbm = step(run_dir, "lgbm", cfg, ["model", "lgbm", "--universe", universe])
    extra = ["--method", method] if method else []
    comb = step(run_dir, "combine", cfg, ["combine", "--universe", universe, *extra])
    cmp_ = (step(run_dir, "compare", cfg, ["combine", "--compare", "--universe", universe])
            if compare else None)
    bt = step(run_dir, "backtest", cfg, ["backtest", "--targets", "latest", "--benchmark",
                                         BENCHMARKS.get(universe, "000300.SH")])
    summary_file = run_dir / "steps" / "summary.json"
    if summary_file.is_file():
        return json.loads(summary_file.read_text(encoding="utf-8"))
    acc = gp.get("accepted") or []
    s = {"universe": universe, "seed": seed, "overrides": overrides or {},
         "library_accepted": sum(bool(d.get("accepted")) for d in (lib.get("run") or {}).get("decisions", [])),
         "gp_evaluated": gp.get("n_evaluated"), "gp_accepted": gp.get("n_accepted"),
         "gp_best_valid_rank_ic": max((d.get("valid_rank_ic") or float("nan") for d in acc),
                                      default=float("nan")),
         "gp_mean_abs_corr": accepted_corr(cfg, universe, [d["formula"] for d in acc]),
         "gp_seconds": gp.get("_seconds"), "llm": llm.get("stats", {}).get("accepted"),
         "lgbm_seconds": lgbm.get("_seconds"), "members": len(comb.get("members") or []),
         "method": comb.get("method"), "strategy": comb.get("strategy"),
         "compare": cmp_, "backtest": bt.get("performance") or bt}
    summary_file.write_text(json.dumps(s, indent=1, default=float), encoding="utf-8")
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--universe", default="csi300")
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--method", default=None, help="mine combine --method (default: config)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/alphamine-research"))
    ap.add_argument("--table", action="store_true", help="only print the table of finished runs")
    ap.add_argument("--no-compare", action="store_true", help="skip mine combine --compare")
    ap.add_argument("--json", action="store_true", help="print the summaries as JSON")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help='override a mine.toml key, VALUE in TOML syntax (e.g. '
                         'gp.selection=\'"nsga2"\' or gp.pool=5); repeatable')
    a = ap.parse_args(argv)
    overrides = {}
    for item in a.set:
        k, eq, v = item.partition("=")
        if not eq or "." not in k:
            ap.error(f"--set {item!r}: expected SECTION.KEY=VALUE")
        overrides[k.strip()] = v.strip()
    if not a.table:
        for seed in a.seeds:
            run_loop(a.work, a.universe, seed, a.method, compare=not a.no_compare,
                     overrides=overrides)
    rows = [json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(a.work.glob("*/steps/summary.json"))]
    if a.json:
        print(json.dumps(rows, indent=1, default=float))
    else:
        print(markdown(rows))
    return 0


#: Table columns: (header, getter, format).
COLUMNS = [
    ("universe", lambda s: " ".join([s["universe"]] + [f"{k}={v}" for k, v in
                                                         (s.get("overrides") or {}).items()]),
     "{}"),
    ("GP seed", lambda s: s["seed"], "{}"),
    ("GP accepted / evaluated", lambda s: f"{s['gp_accepted']} / {s['gp_evaluated']}", "{}"),
    ("GP best valid RankIC", lambda s: s["gp_best_valid_rank_ic"], "{:.4f}"),
    ("GP mean pairwise abs corr", lambda s: s["gp_mean_abs_corr"], "{:.3f}"),
    ("members", lambda s: s["members"], "{}"),
    ("composite valid RankIC", lambda s: _composite(s, "rank_ic_mean"), "{:.4f}"),
    ("composite valid ICIR", lambda s: _composite(s, "rank_icir"), "{:.3f}"),
    ("annual return", lambda s: s["backtest"]["annual_return"], "{:.2%}"),
    ("index annual return", lambda s: s["backtest"]["benchmark_annual_return"], "{:.2%}"),
    ("excess", lambda s: s["backtest"]["excess_return"], "{:+.2%}"),
    ("IR", lambda s: s["backtest"]["information_ratio"], "{:.2f}"),
    ("max drawdown", lambda s: s["backtest"]["max_drawdown"], "{:.1%}"),
    ("turnover / yr", lambda s: s["backtest"]["turnover"], "{:.1f}x"),
]


def _composite(s: dict, key: str):
    """The compare table's row for the method ``mine combine`` used."""
    rows = (s.get("compare") or {}).get("rows") or []
    row = next((r for r in rows if r.get("method") == s.get("method")), None)
    return None if row is None else row.get(key)


def markdown(rows: list[dict]) -> str:
    """One line per run, then mean and standard deviation per universe over GP seeds."""
    def cell(fmt, v):
        return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) \
            else fmt.format(v)
    out = ["| " + " | ".join(h for h, _, _ in COLUMNS) + " |",
           "|" + "---|" * len(COLUMNS)]
    for s in rows:
        out.append("| " + " | ".join(cell(f, g(s)) for _, g, f in COLUMNS) + " |")
    for u in sorted({s["universe"] for s in rows}):
        rs = [s for s in rows if s["universe"] == u]
        if len(rs) < 2:
            continue
        cells = [u, f"mean ± sd ({len(rs)})"]
        for h, g, f in COLUMNS[2:]:
            try:
                v = np.array([float(g(s)) for s in rs], dtype=float)
                cells.append(f"{cell(f, float(np.mean(v)))} ± {cell(f, float(np.std(v, ddof=1)))}")
            except (TypeError, ValueError):
                cells.append("")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
