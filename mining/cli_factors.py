"""``mine`` commands about factors: ops, fields, eval, leaderboard, library, config show.

Command bodies only validate options (before any data or store is touched), make one library
call and render its result (see :mod:`mining.cli_app` for the conventions).
"""
from __future__ import annotations

import json
import re
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from backtest.context import DECAY_HORIZONS
from data.errors import AlphamineError, ConfigError
from data.procs import peak_rss_mb
from mining.cli_app import (
    SOURCES,
    app,
    check_choice,
    check_date,
    check_positive,
    check_span,
    check_universe,
    config_keys,
    config_line,
    console,
    fail,
    fmt,
    print_json,
    warn,
)
from mining import cli_app
from mining.cli_app import cfg as _cfg

KINDS = ("elementwise", "ts", "cs")
_SORT_RE = re.compile(r"^(created_at|name|(train|valid)\.[A-Za-z_][A-Za-z0-9_]*)$")


#: Formulas longer than this are cut in table cells and printed in full below the table.
FORMULA_CELL = 60


def _formula_column(t: Table, name: str = "formula") -> None:
    """A formula column that never wraps token by token (readable when piped)."""
    t.add_column(name, no_wrap=True, overflow="ellipsis", max_width=FORMULA_CELL)


def _long_formulas(pairs) -> None:
    """Print ``(label, formula)`` for formulas too long for their cell, one line each."""
    long = [(label, f) for label, f in pairs if len(f) > FORMULA_CELL]
    if long:
        console.print("[dim]full formulas:[/]")
        for label, f in long:
            console.print(f"  {escape(str(label))}  {escape(f)}", soft_wrap=True)


# --------------------------------------------------------------------------- ops / fields
@app.command()
def ops(kind: Optional[str] = typer.Option(None, help="elementwise | ts | cs"),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")
        ) -> None:
    """List the factor language's operators with their one-line docs."""
    from factors.operators import all_ops
    try:
        check_choice("--kind", kind, KINDS)
    except ConfigError as e:
        fail(e)
    chosen = [op for op in all_ops() if not kind or op.kind == kind]
    if as_json:
        print_json([{"name": op.name, "signature": op.signature, "infix": op.infix,
                     "kind": op.kind, "n_inputs": op.n_inputs, "n_windows": op.n_windows,
                     "min_window": op.min_window if op.n_windows else None, "gp": op.gp,
                     "gp_windows": list(op.gp_windows) if op.gp else [], "doc": op.doc}
                    for op in chosen])
        return
    t = Table(title="operators")
    t.add_column("signature", no_wrap=True)
    for col in ("kind", "min window", "GP windows", "doc"):
        t.add_column(col)
    for op in chosen:
        t.add_row(escape(op.signature + (f"  [{op.infix}]" if op.infix else "")), op.kind,
                  str(op.min_window) if op.n_windows else "",
                  ",".join(map(str, op.gp_windows)) if op.gp else "not in GP", escape(op.doc))
    console.print(t)


@app.command()
def fields(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")
           ) -> None:
    """List the factor language's fields with units and derivation."""
    from data.fields import FIELDS
    if as_json:
        print_json([{"name": f.name, "unit": f.unit, "doc": f.doc} for f in FIELDS.values()])
        return
    t = Table(title="fields")
    t.add_column("name", no_wrap=True)
    for col in ("unit", "doc"):
        t.add_column(col)
    for f in FIELDS.values():
        t.add_row(f.name, escape(f.unit), escape(f.doc))
    console.print(t)


# --------------------------------------------------------------------------- eval
_REPORT_KEYS = ("n_days", "rank_ic_mean", "rank_ic_std", "rank_icir", "rank_ic_t", "rank_ic_p",
                "rank_ic_pos", "ic_mean", "icir", "ls_ann_return", "ls_sharpe", "ls_cum_return",
                "ls_max_drawdown", "turnover", "rank_autocorr", "coverage")


def _report_table(reports: dict) -> Table:
    t = Table()
    t.add_column("metric")
    for split in reports:
        t.add_column(split, justify="right")
    dicts = {s: r.to_dict() for s, r in reports.items()}
    for k in _REPORT_KEYS:
        t.add_row(k, *[fmt(d.get(k)) for d in dicts.values()])
    for h in DECAY_HORIZONS:
        t.add_row(f"rank_ic h={h}", *[fmt((d.get("ic_decay") or {}).get(str(h),
                  (d.get("ic_decay") or {}).get(h))) for d in dicts.values()])
    q = [d.get("quantile_ann_returns") or [] for d in dicts.values()]
    t.add_row("quantile ann. ret (q1..qN)", *[" ".join(fmt(v, 3) for v in qq) for qq in q])
    return t


@app.command("eval", context_settings={"ignore_unknown_options": True})
def eval_(formula: Optional[str] = typer.Argument(None, help='Factor formula, e.g. '
                                                  '"-ts_corr(vol, close, 10)" (or --file).'),
          universe: str = typer.Option("csi300", help="csi300 | csi500 | csi800 | csi1000 | all"),
          start: Optional[str] = typer.Option(None, help="First date (default: train start)."),
          end: Optional[str] = typer.Option(None, help="Last date (default: end of valid)."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
          unseal_test: bool = typer.Option(
              False, "--unseal-test", help="Also evaluate the test split (logged in the "
              "audit, see `mine audit`; stored on the member if the formula is one)."),
          add: bool = typer.Option(
              False, "--add", help="Also submit the formula to the leaderboard through the "
              "gate (oriented on train like GP candidates, source 'manual'); prints accepted "
              "or the rejection reason. Not with --unseal-test."),
          save: Optional[Path] = typer.Option(
              None, "--save", metavar="DIR", help="Also write the daily series as Parquet "
              "(rank_ic, quantile_returns, long_short, turnover, ic_decay, "
              "rank_ic_by_horizon), factor_data.parquet (alphalens' layout) and report.json "
              "into DIR (new or empty; test rows only with --unseal-test)."),
          force: bool = typer.Option(False, "--force", help="With --save: replace a folder "
                                     "an earlier --save wrote."),
          file: Optional[Path] = typer.Option(
              None, "--file", metavar="FILE", help="Evaluate every formula of FILE (one per "
              "line; blank lines and # comments skipped) on train and valid, sharing common "
              "sub-expressions: one row each. Not with FORMULA, --add, --save, --unseal-test, "
              "--start or --end."),
          jobs: Optional[int] = typer.Option(
              None, "--jobs", help="With --file: workers, >= 1, or 0 / -1 for all cores "
              "(default [gp] n_jobs; backend [gp] executor)."),
          cluster: Optional[str] = typer.Option(
              None, "--cluster", metavar="ADDRESS", help="With --file: "
              + cli_app.CLUSTER_HELP)) -> None:
    """Evaluate one formula with the common evaluator, per split (--add: and submit it).

    Looking at the valid split is a trial: the formula is counted in the leaderboard's trial
    ledger (by the submission with --add, else by itself) and its charge is printed.
    """
    from backtest.factor_series import check_save_dir
    from mining.formula_run import evaluate_formula
    if file is not None or jobs is not None or cluster is not None:
        from mining.cli_batch import eval_file
        eval_file(formula, file, universe, as_json, jobs, start=start, end=end, add=add,
                  save=save, unseal_test=unseal_test, cluster=cluster)
        return
    try:
        if formula is None:
            raise ConfigError("give a FORMULA or --file FILE")
        check_universe("--universe", universe)
        start, end = check_date("--start", start), check_date("--end", end)
        check_span("--start", start, "--end", end)
        if save is not None:
            check_save_dir(save, force)
        cfg = _cfg()
        if not as_json:
            console.print(f"[dim]{escape(config_line(cfg))}[/]", soft_wrap=True)
        with console.status("loading data and evaluating...", spinner="dots",
                            ) if not as_json else nullcontext():
            res = evaluate_formula(cfg, formula, universe, start, end, unseal_test=unseal_test,
                                   add=add, save=save, force=force)
    except AlphamineError as e:
        fail(e)
    added = res.added
    for w in res.warnings:                  # stderr: the JSON on stdout stays clean
        warn(w)
    if as_json:
        print_json({**res.payload(cfg), "peak_rss_mb": peak_rss_mb()})
        return
    console.print(f"[bold]{escape(res.formula)}[/]  ({universe}, horizon {res.horizon})",
                  soft_wrap=True)
    console.print(_report_table(res.reports))
    if res.test_unsealed:
        console.print(f"[dim]test split unsealed: recorded as audit #{res.audit_id} "
                      "(`mine audit`).[/]")
    elif not unseal_test:
        console.print("[dim]test split sealed; pass --unseal-test to evaluate it (recorded).[/]")
    if res.trial is not None:
        console.print(f"[dim]counted as a trial: {escape(res.trial.describe())}[/]",
                      soft_wrap=True)
    if res.saved is not None:
        console.print(f"[dim]daily series saved to {escape(str(res.saved))}[/]", soft_wrap=True)
    if added is not None:
        if added.accepted:
            console.print(f"[green]accepted[/] as id {added.id}: {escape(added.formula)}",
                          soft_wrap=True)
        else:
            console.print(f"[red]rejected[/] ({added.kind}): {escape(added.reason)}",
                          soft_wrap=True)



# --------------------------------------------------------------------------- leaderboard
def leaderboard_table(records, title: str = "leaderboard", current=None, looks=None) -> Table:
    """The leaderboard rows as a table (formulas on one line each).

    ``tried`` / ``adj p`` are the trials counted and the adjusted p-value when the row was
    accepted; with ``current`` (record id -> charge against today's trial ledger) each is
    followed by today's value in brackets. ``looks`` maps ``(formula, universe)`` to the
    number of test-split unsealings that named it.
    """
    t = Table(title=title)
    for col, width in (("id", 3), ("name", 8), ("source", 6)):
        t.add_column(col, no_wrap=True, min_width=width)   # never squeezed to nothing
    for col in ("train RankIC", "train ICIR", "valid RankIC", "valid ICIR", "valid LS Sharpe",
                "valid turnover", "tried (now)" if current is not None else "tried",
                "adj p (now)" if current is not None else "adj p", "test looks"):
        t.add_column(col, justify="right", no_wrap=True, min_width=6)
    _formula_column(t)
    for r in records:
        tr, va = r.metrics.get("train", {}), r.metrics.get("valid", {})
        tried, adj = str(r.n_tried), _p(r.adj_p)
        if current is not None:
            c = current.get(r.id)
            tried += f" ({'-' if c is None else c.n_tried})"
            adj += f" ({'-' if c is None else _p(c.adj_p)})"
        t.add_row(str(r.id), r.name, r.source, fmt(tr.get("rank_ic_mean")),
                  fmt(tr.get("rank_icir"), 3), fmt(va.get("rank_ic_mean")),
                  fmt(va.get("rank_icir"), 3), fmt(va.get("ls_sharpe"), 2),
                  fmt(va.get("turnover"), 3), tried, adj,
                  str((looks or {}).get((r.formula, r.universe), 0)), escape(r.formula))
    return t


def _p(v) -> str:
    """A p-value in 2 significant digits (``-`` when unknown)."""
    return "-" if v is None else f"{v:.2g}"


def print_leaderboard(records, title: str, current=None, looks=None) -> None:
    """The leaderboard table, then the full text of formulas too long for their cell."""
    console.print(leaderboard_table(records, title, current, looks))
    _long_formulas((f"#{r.id}", r.formula) for r in records)


EMPTY_HINT = "the leaderboard is empty: run `mine library --add` or `mine gp`"


def check_sort(option: str, value: str) -> str:
    """``split.metric`` (train/valid), ``created_at`` or ``name``; else a ConfigError."""
    if value.startswith("test."):
        raise ConfigError(f"{option} {value!r}: test metrics are never used to select "
                          "factors; sort by a train/valid metric")
    if not _SORT_RE.match(value):
        raise ConfigError(f"{option} {value!r}: use split.metric (e.g. valid.rank_icir), "
                          "created_at or name")
    return value


@app.command()
def leaderboard(top: int = typer.Option(20, "--top", help="Rows to show, >= 1."),
                sort: str = typer.Option("valid.rank_icir", help="split.metric, created_at, name"),
                universe: Optional[str] = typer.Option(None, help="Only this universe."),
                source: Optional[str] = typer.Option(None, help="library | gp | llm | model"),
                as_json: bool = typer.Option(False, "--json", help="Print JSON (not with "
                                             "--csv)."),
                as_csv: bool = typer.Option(False, "--csv", help="Print CSV (not with "
                                            "--json).")) -> None:
    """Show the factor leaderboard (with how often each factor's test split was looked at)."""
    from factors.audit import AuditLog
    from factors.store import FactorStore
    try:
        check_positive("--top", top)
        check_sort("--sort", sort)
        check_universe("--universe", universe)
        check_choice("--source", source, SOURCES)
        if as_json and as_csv:
            raise ConfigError("--json and --csv: choose one")
        cfg = _cfg()
        with FactorStore(cfg.store.path) as store:
            recs = store.top(top, sort=sort, universe=universe, source=source)
            current = store.charges(recs, cfg.store.haircut)
            looks = AuditLog(store).looks()
            frame = store.to_frame(recs, current)
        frame["test_looks"] = [looks.get((r.formula, r.universe), 0) for r in recs]
    except AlphamineError as e:
        fail(e)
    if as_json:
        rows = json.loads(frame.to_json(orient="records"))   # NaN -> null, ints stay ints
        print_json({**config_keys(cfg), "sort": sort, "rows": rows})
    elif as_csv:
        sys.stdout.write(frame.to_csv(index=False))
    else:
        console.print(f"[dim]{escape(config_line(cfg))}[/]", soft_wrap=True)
        if not recs:
            console.print(EMPTY_HINT if universe is None and source is None
                          else "no factors match; " + EMPTY_HINT.split(": ", 1)[1])
            return
        print_leaderboard(recs, f"leaderboard (top {top} by {sort})", current, looks)
        console.print(f"[dim]tried: formulas evaluated on valid in the row's universe and "
                      f"horizon; adj p: {cfg.store.haircut} multiple-testing adjusted p-value "
                      f"of the valid RankIC (gate: <= {cfg.store.max_adj_p:g}); at acceptance "
                      f"(now); test looks: research unsealings naming the factor "
                      f"(`mine audit`).[/]")


# --------------------------------------------------------------------------- library
@app.command()
def library(universe: str = typer.Option("csi300", help="Universe for --add."),
            factor_set: str = typer.Option("default", "--set",
                                           help="Factor set: default | alpha101 (WorldQuant "
                                                "101 Formulaic Alphas)."),
            add: bool = typer.Option(False, "--add", help="Evaluate and store every factor of "
                                     "the set (source=library; default set: gate forced, "
                                     "alpha101: through the gate)."),
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")
            ) -> None:
    """List a named factor set (and optionally evaluate + store it)."""
    from factors.library_sets import LIBRARY_SETS, library_set
    try:
        check_universe("--universe", universe)
        check_choice("--set", factor_set, LIBRARY_SETS)
    except ConfigError as e:
        fail(e)
    factors, unavailable = library_set(factor_set)
    listing = {"set": factor_set,
               "library": [{"name": f.name, "formula": f.formula, "description": f.description,
                            "reference": f.reference} for f in factors],
               "unavailable": dict(unavailable)}
    if not as_json:
        t = Table(title="factor library" if factor_set == "default" else
                  f"factor library: {factor_set}")
        t.add_column("name", no_wrap=True)
        _formula_column(t)
        t.add_column("description")
        for f in factors:
            t.add_row(f.name, escape(f.formula), escape(f.description))
        for name, why in unavailable.items():
            t.add_row(name, "[dim]unavailable[/]", escape(why))
        console.print(t)
        _long_formulas((f.name, f.formula) for f in factors)
    if not add:
        if as_json:
            print_json(listing)
        return
    from mining.gp_run import CandidateDecision, add_library

    def on_progress(ev) -> None:
        if isinstance(ev, CandidateDecision):
            console.print(f"{ev.name}: valid RankIC {fmt(ev.valid_rank_ic)} -> {ev.reason}")

    try:
        cfg = _cfg()
        if not as_json:
            console.print(f"[dim]{escape(config_line(cfg))}[/]", soft_wrap=True)
        rec = add_library(cfg, universe, factor_set=factor_set,
                          on_progress=None if as_json else on_progress)
    except AlphamineError as e:
        fail(e)
    for w in rec.warnings:
        warn(w)
    if as_json:
        print_json({**config_keys(cfg), **listing, "run": rec})


# --------------------------------------------------------------------------- audit
@app.command()
def audit(universe: Optional[str] = typer.Option(None, help="Only this universe."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List every access to the sealed test split (--unseal-test, combine --live)."""
    from factors.audit import AuditLog
    from factors.store import FactorStore
    try:
        check_universe("--universe", universe)
        cfg = _cfg()
        with FactorStore(cfg.store.path) as store:
            rows = AuditLog(store).entries(universe=universe)
    except AlphamineError as e:
        fail(e)
    if as_json:
        print_json({**config_keys(cfg), "audit": [r.to_dict() for r in rows]})
        return
    console.print(f"[dim]{escape(config_line(cfg))}[/]", soft_wrap=True)
    if not rows:
        console.print("no access to the test split recorded: it is still sealed")
        return
    t = Table(title=f"test-split audit ({len(rows)} accesses)")
    for col in ("id", "at (UTC)", "purpose", "universe", "window", "code", "command",
                "about", "shown"):
        t.add_column(col)
    for r in rows:
        cv = r.code_version
        code = (cv.get("commit") or "")[:8] or (cv.get("package") or "?")
        code += "+dirty" if cv.get("dirty") else ""
        about = r.subject.get("formulas") or [r.subject.get("targets") or
                                              r.subject.get("run_id") or ""]
        about_s = "; ".join(about[:3]) + (f" (+{len(about) - 3})" if len(about) > 3 else "")
        t.add_row(str(r.id), r.at[:19].replace("T", " "), r.purpose, r.universe or "-",
                  " to ".join(r.window), code, escape(r.command), escape(about_s),
                  escape(", ".join(r.metrics)) or "-")
    console.print(t)


# --------------------------------------------------------------------------- config show
config_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="Inspect the resolved configuration.")
app.add_typer(config_app, name="config")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v), ensure_ascii=False)


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the resolved configuration (every section and key) and the file it came from."""
    try:
        c = _cfg()
    except AlphamineError as e:
        fail(e)
    sections = c.to_dict()
    if as_json:
        print_json({"source": str(c.source) if c.source else None, "sections": sections})
        return
    lines = [f"# config: {c.source}" if c.source
             else "# config: built-in defaults (no mine.toml found)"]
    for name, values in sections.items():
        lines.append(f"\n[{name}]")
        for k, v in values.items():
            lines.append(f"# {k} = (unset)" if v is None else f"{k} = {_toml_value(v)}")
    sys.stdout.write("\n".join(lines) + "\n")
