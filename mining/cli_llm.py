"""CLI commands: `mine llm`, `mine prompts` (issue 4), defined on :data:`mining.cli_app.app`.

Command bodies validate the options (before any network call or data load), make one library
call (:func:`mining.llm_run.run_llm` / ``replay_llm`` / ``llm_stats``,
:func:`mining.prompting.list_templates`) and render the result.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from mining import cli_app
from mining.cli_app import app


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.1f}%"


def _summary_table(result) -> Table:
    s = result.stats
    t = Table(title=f"LLM run {result.run_id} ({result.settings.template}, "
                    f"{escape(result.settings.model)}, {result.settings.universe})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows = [
        ("requests (cached / failed)", f"{s['calls']} ({s['calls_cached']} / {s['calls_failed']})"),
        ("retries", ", ".join(f"{k} x{v}" for k, v in s["retries"].items()) or "none"),
        ("tokens in / out", f"{s['tokens_in']} / {s['tokens_out']}"),
        ("est. cost (all requests / paid now)", f"{s['cost_est']:.4f} / {s['cost_paid']:.4f}"),
        ("formulas proposed", str(s["proposed"])),
        ("valid formulas", f"{s['valid_formulas']} ({_pct(s['valid_pct'])})"),
        ("evaluated", str(s["evaluated"])),
        ("accepted", f"{s['accepted']} ({_pct(s['accepted_pct'])})"),
        ("novel (max |corr| < 0.5)", f"{s['novel']} ({_pct(s['novelty_pct'])} of accepted)"),
        ("claimed sign right on train", f"{s['direction_right']} of {s['direction_claimed']}"),
    ]
    for k, v in s["counts"].items():
        if v:
            rows.append((f"  {k}", str(v)))
    if s.get("drift"):
        rows.append(("replay: requests whose prompt changed", str(s["drift"])))
    rows.append(("seconds", f"{s['seconds']:.1f}"))
    for k, v in rows:
        t.add_row(k, v)
    return t


def _proposals_table(result) -> Table:
    t = Table(title="proposals")
    t.add_column("round")
    t.add_column("name", overflow="fold")
    t.add_column("formula", no_wrap=True, overflow="ellipsis")
    for col in ("status", "train RankIC", "valid RankIC"):
        t.add_column(col)
    t.add_column("note", overflow="fold")
    fmt = cli_app.fmt
    for p in result.proposals:
        colour = "green" if p.status == "accepted" else "red"
        t.add_row(str(p.round), escape(p.name), escape(p.formula[:160]),
                  f"[{colour}]{p.status}[/]", fmt(p.train), fmt(p.valid), escape(p.note[:160]))
    return t


def _json_head(cfg) -> dict:
    return {"config": str(cfg.source) if cfg.source else None, "store": str(cfg.store.path)}


def _render_stats(st) -> None:
    base = cli_app
    if not st.runs:
        base.console.print(f"no LLM runs in {escape(st.cache_path)} yet: start one with "
                           f"`mine llm --prompt liquidity` (`mine prompts` lists the "
                           f"templates; set \\[llm] base_url and model first)")
        return
    t = Table(title=f"LLM runs ({escape(st.cache_path)})")
    t.add_column("run", no_wrap=True)
    for col in ("template", "model", "status", "requests", "tokens in/out", "cost",
                "proposed", "valid %", "accepted", "accepted %", "novel %", "replay of"):
        t.add_column(col, overflow="fold")
    for r in st.runs:
        s = r["stats"] or {}
        t.add_row(r["run_id"], r["template"], escape(r["model"]), r["status"],
                  str(s.get("calls", "-")), f"{s.get('tokens_in', '-')}/{s.get('tokens_out', '-')}",
                  base.fmt(s.get("cost_est")), str(s.get("proposed", "-")),
                  _pct(s.get("valid_pct")), str(s.get("accepted", "-")),
                  _pct(s.get("accepted_pct")), _pct(s.get("novelty_pct")), r["replay_of"] or "")
    base.console.print(t)
    t = Table(title="per template (runs that are not replays)")
    for col in ("template", "runs", "tokens in/out", "cost", "proposed", "valid %", "accepted",
                "accepted %", "novel %"):
        t.add_column(col)
    for name, a in st.templates.items():
        t.add_row(name, str(a["runs"]), f"{a['tokens_in']}/{a['tokens_out']}",
                  base.fmt(a["cost_est"]), str(a["proposed"]), _pct(a["valid_pct"]),
                  str(a["accepted"]), _pct(a["accepted_pct"]), _pct(a["novelty_pct"]))
    base.console.print(t)


@app.command()
def prompts(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")
            ) -> None:
    """List the LLM prompt templates (packaged + \\[llm] prompts_dir)."""
    from mining.prompting import list_templates
    base = cli_app
    try:
        cfg = base.cfg()
        ts = list_templates(cfg.llm.prompts_dir)
    except base.AlphamineError as e:
        base.fail(e)
        return
    rows = [{"name": tpl.name, "description": tpl.description,
             "origin": "packaged" if tpl.packaged else "user", "file": str(tpl.path)}
            for tpl in ts]
    if as_json:
        base.print_json({**_json_head(cfg), "prompts_dir": str(cfg.llm.prompts_dir),
                         "templates": rows})
        return
    base.console.print(f"[dim]{escape(base.config_line(cfg))}[/]")
    t = Table(title=f"prompt templates (add one: drop NAME.md into {cfg.llm.prompts_dir})")
    t.add_column("name", no_wrap=True)
    for col in ("description", "origin", "file"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(r["name"], escape(r["description"]), r["origin"], escape(r["file"]))
    base.console.print(t)


def _check_llm_options(cfg, prompt: str, rounds, n, universe, examples) -> None:
    """Option checks done before any network call or data load (ConfigError / LLMError)."""
    from data.universe import UNIVERSES
    from mining.prompting import get_template
    base = cli_app
    base.check_positive("--rounds", rounds)
    base.check_positive("--n", n)
    base.check_positive("--examples", examples, zero=True)
    base.check_choice("--universe", universe, UNIVERSES)
    get_template(prompt, cfg.llm.prompts_dir)        # unknown name -> names the known ones


@app.command()
def llm(ctx: typer.Context,
        prompt: str = typer.Option("liquidity", "--prompt", "-p",
                                   help="Template name (`mine prompts` lists them)."),
        rounds: Optional[int] = typer.Option(None, help="Rounds, >= 1 (default \\[llm] "
                                             "rounds)."),
        n: Optional[int] = typer.Option(None, "--n", help="Factors asked per round, >= 1 "
                                        "(default \\[llm] n_per_round)."),
        universe: Optional[str] = typer.Option(None, help="Universe (default \\[gp] "
                                               "universe)."),
        base_url: Optional[str] = typer.Option(None, "--base-url", help="Override "
                                               "\\[llm] base_url."),
        model: Optional[str] = typer.Option(None, help="Override \\[llm] model."),
        examples: int = typer.Option(5, help="Leaderboard members shown as examples, >= 0."),
        replay: Optional[str] = typer.Option(None, "--replay", metavar="RUN_ID",
                                             help="Re-run RUN_ID from the cache, no "
                                             "network."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Ask the endpoint even "
                                      "when the cache has the answer."),
        stats: bool = typer.Option(False, "--stats", help="Show per-run and per-template "
                                   "statistics and exit."),
        cluster: Optional[str] = typer.Option(None, "--cluster", metavar="ADDRESS",
                                              help=cli_app.CLUSTER_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")
        ) -> None:
    """Mine factors with an LLM (OpenAI-compatible endpoint) through the common evaluator."""
    from mining.llm_loop import LLMRunSettings
    from mining.llm_run import llm_stats, replay_llm, run_llm
    base = cli_app
    console = base.console
    try:
        cfg = base.cfg()
        if base_url or model:
            cfg = cfg.replace(llm=replace(cfg.llm, base_url=base_url or cfg.llm.base_url,
                                           model=model or cfg.llm.model))
        if not stats and not replay:
            _check_llm_options(cfg, prompt, rounds, n, universe, examples)
        if not stats:
            cfg = base.with_cluster(cfg, cluster)        # before any data loads
        if not as_json:
            console.print(f"[dim]{escape(base.config_line(cfg))}[/]")

        def on_progress(ev) -> None:
            if not as_json:
                console.print(f"[dim]{escape(ev.message)}[/]" if ev.kind == "loading"
                              else escape(ev.message))

        if stats:
            st = llm_stats(cfg)
            if as_json:
                base.print_json({**_json_head(cfg), "cache_path": st.cache_path,
                                 "runs": st.runs, "templates": st.templates})
            else:
                _render_stats(st)
            return
        if replay:
            result = replay_llm(cfg, replay, on_progress=on_progress,
                                argv=base.invocation(ctx))
        else:
            settings = LLMRunSettings.from_config(cfg, prompt, universe=universe, rounds=rounds,
                                                  n_per_round=n, n_examples=examples)
            result = run_llm(cfg, settings, on_progress=on_progress, use_cache=not no_cache,
                             argv=base.invocation(ctx))
    except base.AlphamineError as e:
        base.fail(e)
        return
    if as_json:
        base.print_json({**_json_head(cfg), "run_id": result.run_id,
                         "settings": result.settings, "stats": result.stats,
                         "warnings": result.warnings, "proposals": result.proposals})
        return
    for w in result.warnings:
        base.err_console.print(f"[yellow]warning:[/] {escape(w)}")
    console.print(_proposals_table(result))
    console.print(_summary_table(result))
    console.print(f"run {result.run_id}: {result.stats['accepted']} accepted of "
                  f"{result.stats['proposed']} proposed; replay with "
                  f"`mine llm --replay {result.run_id}`")
