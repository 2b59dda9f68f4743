"""CLI commands: `mine llm`, `mine prompts` (issue 4)."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from mining import cli_app




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
    for col in ("round", "name", "formula", "status", "train RankIC", "valid RankIC", "note"):
        t.add_column(col, overflow="fold")
    fmt = cli_app.fmt
    for p in result.proposals:
        colour = "green" if p.status == "accepted" else "red"
        t.add_row(str(p.round), escape(p.name), escape(p.formula[:160]),
                  f"[{colour}]{p.status}[/]", fmt(p.train), fmt(p.valid), escape(p.note[:160]))
    return t


def _stats(cfg, as_json: bool) -> None:
    from mining.llm_cache import LLMCache
    from mining.llm_loop import template_stats
    base = cli_app
    with LLMCache(cfg.llm.cache_path) as cache:
        runs = cache.runs()
    per_t = template_stats(runs)
    if as_json:
        print(json.dumps({"runs": runs, "templates": per_t}, indent=2, ensure_ascii=False))
        return
    t = Table(title=f"LLM runs ({cfg.llm.cache_path})")
    t.add_column("run", no_wrap=True)
    for col in ("template", "model", "status", "requests", "tokens in/out", "cost",
                "proposed", "valid %", "accepted", "accepted %", "novel %", "replay of"):
        t.add_column(col, overflow="fold")
    for r in runs:
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
    for name, a in per_t.items():
        t.add_row(name, str(a["runs"]), f"{a['tokens_in']}/{a['tokens_out']}",
                  base.fmt(a["cost_est"]), str(a["proposed"]), _pct(a["valid_pct"]),
                  str(a["accepted"]), _pct(a["accepted_pct"]), _pct(a["novelty_pct"]))
    base.console.print(t)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``mine`` app."""

    @app.command()
    def prompts() -> None:
        """List the LLM prompt templates (packaged + \\[llm] prompts_dir)."""
        from mining.prompting import list_templates
        base = cli_app
        try:
            cfg = base.cfg()
            ts = list_templates(cfg.llm.prompts_dir)
        except base.AlphamineError as e:
            base.fail(e)
            return
        t = Table(title=f"prompt templates (add one: drop NAME.md into {cfg.llm.prompts_dir})")
        for col in ("name", "description", "origin", "file"):
            t.add_column(col, overflow="fold")
        for tpl in ts:
            t.add_row(tpl.name, escape(tpl.description), "packaged" if tpl.packaged else "user",
                      str(tpl.path))
        base.console.print(t)

    @app.command()
    def llm(prompt: str = typer.Option("liquidity", "--prompt", "-p",
                                       help="Template name (`mine prompts` lists them)."),
            rounds: Optional[int] = typer.Option(None, help="Rounds (default \\[llm] rounds)."),
            n: Optional[int] = typer.Option(None, "--n", help="Factors asked per round "
                                            "(default \\[llm] n_per_round)."),
            universe: Optional[str] = typer.Option(None, help="Universe (default \\[gp] "
                                                   "universe)."),
            base_url: Optional[str] = typer.Option(None, "--base-url", help="Override "
                                                   "\\[llm] base_url."),
            model: Optional[str] = typer.Option(None, help="Override \\[llm] model."),
            examples: int = typer.Option(5, help="Leaderboard members shown as examples."),
            replay: Optional[str] = typer.Option(None, "--replay", metavar="RUN_ID",
                                                 help="Re-run RUN_ID from the cache, no "
                                                 "network."),
            no_cache: bool = typer.Option(False, "--no-cache", help="Ask the endpoint even "
                                          "when the cache has the answer."),
            stats: bool = typer.Option(False, "--stats", help="Show per-run and per-template "
                                       "statistics and exit."),
            as_json: bool = typer.Option(False, "--json", help="Print the result as JSON.")
            ) -> None:
        """Mine factors with an LLM (OpenAI-compatible endpoint) through the common evaluator."""
        from data.errors import LLMError
        from factors.store import FactorStore
        from mining.llm_cache import LLMCache
        from mining.llm_loop import LLMRunSettings, run_llm
        from backtest.candidates import make_workspace
        base = cli_app
        console = base.console
        try:
            cfg = base.cfg()
            if base_url or model:
                cfg = cfg.replace(llm=replace(cfg.llm, base_url=base_url or cfg.llm.base_url,
                                               model=model or cfg.llm.model))
            if stats:
                _stats(cfg, as_json)
                return
            sender = None
            with LLMCache(cfg.llm.cache_path) as cache:
                if replay:
                    rec = cache.run(replay)
                    if rec is None:
                        raise LLMError(
                            f"--replay: run {replay!r} is not in the LLM cache "
                            f"{str(cfg.llm.cache_path)!r} (`mine llm --stats` lists runs)")
                    settings = LLMRunSettings(**rec["settings"])
                else:
                    from mining.llm import from_config
                    sender = from_config(cfg)   # exits 2 with what to set when unconfigured
                    settings = LLMRunSettings(
                        template=prompt, universe=universe or cfg.gp.universe,
                        model=cfg.llm.model, rounds=rounds or cfg.llm.rounds,
                        n_per_round=n or cfg.llm.n_per_round,
                        temperature=cfg.llm.temperature, max_tokens=cfg.llm.max_tokens,
                        n_examples=examples)
                from mining.prompting import get_template
                get_template(settings.template, cfg.llm.prompts_dir)   # fail before loading
                with console.status(f"loading {settings.universe} panels (train+valid)...",
                                    spinner="dots"):
                    ws = make_workspace(cfg, settings.universe, model_dir=cfg.model.out_dir)
                emit = (lambda msg: None) if as_json else \
                    (lambda msg: console.print(escape(msg)))
                with FactorStore(cfg.store.path) as store:
                    result = run_llm(ws, store, cache, cfg, settings, sender=sender,
                                     replay_of=replay, use_cache=not no_cache, on_event=emit)
        except base.AlphamineError as e:
            base.fail(e)
            return
        if as_json:
            from dataclasses import asdict
            print(json.dumps({"run_id": result.run_id, "stats": result.stats,
                              "warnings": result.warnings,
                              "proposals": [asdict(p) for p in result.proposals]},
                             indent=2, ensure_ascii=False, default=str))
            return
        for w in result.warnings:
            base.err_console.print(f"[yellow]warning:[/] {escape(w)}")
        console.print(_proposals_table(result))
        console.print(_summary_table(result))
        console.print(f"run {result.run_id}: {result.stats['accepted']} accepted of "
                      f"{result.stats['proposed']} proposed; replay with "
                      f"`mine llm --replay {result.run_id}`")
