"""CLI commands: ``mine runs`` (the recorded runs) and ``mine rerun RUN_ID`` (replay one and
say whether its results are identical), over :mod:`data.manifest` and :mod:`data.rerun`.

``mine runs`` lists the run manifests and, beside them, the leaderboard's runs that have no
manifest (``mine library --add``, ``mine eval --add``, and runs that never finished: killed
ones are ``interrupted``, :mod:`factors.store_runs`), each with its ``status``.

``mine rerun`` exits 0 when the replay's results are identical to the recorded ones, 1 when
they differ (what differs and what could explain it are printed), 2 on an error (unknown run
id, a run without a command line, a replay that failed).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from data.errors import AlphamineError
from data.manifest import KINDS, list_manifests, runs_dir
from data.rerun import rerun as _rerun
from factors.store import FactorStore
from mining.cli_app import (
    EXIT_OK,
    EXIT_PROBLEMS,
    app,
    check_choice,
    check_positive,
    console,
    err_console,
    fail,
    print_json,
)
from mining.cli_app import cfg as _cfg

_ROOT = Path(__file__).resolve().parents[1]
#: Leaderboard run sources that never write a manifest (listed from the store only).
STORE_KINDS = ("library", "manual")


def _summary(rec) -> dict:
    out = {"n_evaluated": rec.n_evaluated, "n_accepted": rec.n_accepted}
    if isinstance(rec.summary, dict) and "interrupted" in rec.summary:
        out["interrupted"] = rec.summary["interrupted"]
    return out


def list_runs(c, kind: Optional[str] = None) -> list[dict]:
    """The run manifests (:func:`data.manifest.list_manifests`) with a ``status`` and a
    ``manifest`` flag, plus the leaderboard's runs without a manifest (status ``running``,
    ``interrupted``, ``failed`` or ``done``), oldest first. Opening the leaderboard marks
    killed runs ``interrupted`` first (:mod:`factors.store_runs`); a missing leaderboard
    file is not created."""
    rows = [{**r, "status": "done", "manifest": True}
            for r in list_manifests(runs_dir(c), kind)]
    path = c.store.path
    if str(path) != ":memory:" and Path(path).expanduser().is_file():
        with FactorStore(Path(path).expanduser()) as store:
            recs = store.runs()
        by_id = {r["run_id"]: r for r in rows}
        for rec in recs:
            key = rec.config.get("model_run", rec.run_id) if rec.source == "model" \
                else rec.run_id
            if key in by_id:
                by_id[key]["status"] = rec.status
                continue
            if kind is not None and rec.source != kind:
                continue
            rows.append({"run_id": rec.run_id, "kind": rec.source,
                         "created_at": rec.started_at, "command": None, "commit": None,
                         "dirty": None, "results_sha256": None, "summary": _summary(rec),
                         "replayable": False, "status": rec.status, "manifest": False})
    rows.sort(key=lambda r: (r["created_at"] or "", r["run_id"]))
    return rows


def launch_mine(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run ``mine *argv`` in a fresh Python process (this interpreter, this source tree) in
    ``cwd``; return its exit code, stdout and stderr."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    p = subprocess.run([sys.executable, "-m", "mining.cli", *argv], cwd=cwd, env=env,
                       capture_output=True, text=True, check=False)
    return p.returncode, p.stdout, p.stderr


@app.command()
def runs(kind: Optional[str] = typer.Option(None, help="Only runs of this kind: "
                                            + " | ".join(KINDS + STORE_KINDS) + "."),
         last: Optional[int] = typer.Option(None, "--last", help="Only the newest N."),
         as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """List the recorded runs (manifests, and leaderboard runs without one): id, kind,
    status, time, command, results digest."""
    try:
        check_choice("--kind", kind, KINDS + STORE_KINDS)
        check_positive("--last", last)
        c = _cfg()
        folder = runs_dir(c)
        rows = list_runs(c, kind)
    except AlphamineError as e:
        fail(e)
    if last is not None:
        rows = rows[-last:]
    if as_json:
        print_json({"config": str(c.source) if c.source else None, "runs_dir": str(folder),
                    "runs": rows})
        return
    if not rows:
        console.print(f"no recorded runs in {escape(str(folder))} yet (every `mine gp`, `mine "
                      "llm`, `mine model`, `mine combine` and `mine backtest` records one)")
        return
    t = Table(title=f"recorded runs ({escape(str(folder))}); replay one with `mine rerun "
                    "RUN_ID`")
    for col in ("run id", "kind", "status", "started (UTC)", "commit", "results"):
        t.add_column(col, no_wrap=True)
    t.add_column("command", overflow="fold")
    colour = {"done": "green", "running": "cyan", "interrupted": "yellow", "failed": "red"}
    for r in rows:
        commit = (r["commit"] or "-")[:10] + ("+dirty" if r["dirty"] else "")
        what = r["command"] or ("(library call: not replayable)" if r["manifest"] else
                                "(leaderboard run, no manifest: not replayable)")
        status = r["status"]
        t.add_row(r["run_id"], r["kind"], f"[{colour.get(status, 'white')}]{status}[/]",
                  (r["created_at"] or "")[:19], commit, (r["results_sha256"] or "")[:12],
                  escape(what))
    console.print(t)


@app.command()
def rerun(run_id: str = typer.Argument(..., help="A run id from `mine runs` (a unique prefix "
                                       "is enough)."),
          keep: bool = typer.Option(False, "--keep", help="Keep the scratch folder of the "
                                    "replay (its path is printed)."),
          as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")
          ) -> None:
    """Replay a recorded run in a scratch folder and say whether its results are identical.

    Exit code 0: identical; 1: the results differ; 2: error."""
    say = None if as_json else (lambda m: err_console.print(f"[dim]{escape(m)}...[/]"))
    try:
        report = _rerun(run_id, runs_dir(_cfg()), launch=launch_mine, keep=keep,
                        on_progress=say)
    except AlphamineError as e:
        fail(e)
    code = EXIT_OK if report.identical else EXIT_PROBLEMS
    if as_json:
        print_json(report.to_dict())
        raise typer.Exit(code)
    console.print(f"[dim]run {report.run_id} ({report.kind}): {escape(report.command)}[/]",
                  soft_wrap=True)
    if report.identical:
        console.print(f"[bold green]identical[/]: the replay ({report.replay_run_id}, "
                      f"{report.seconds:.1f}s) produced the same results (sha256 "
                      f"{report.replay_sha256[:16]})")
    else:
        console.print(f"[bold red]different[/]: the replay ({report.replay_run_id}, "
                      f"{report.seconds:.1f}s) produced other results (sha256 "
                      f"{report.recorded_sha256[:16]} recorded, {report.replay_sha256[:16]} "
                      "now)")
        for d in report.differences:
            console.print(f"  {escape(d)}", soft_wrap=True)
    for w in report.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
    for n in report.notes:
        console.print(f"[dim]{escape(n)}[/]", soft_wrap=True)
    if report.scratch:
        console.print(f"scratch folder kept: {escape(report.scratch)}")
    raise typer.Exit(code)
