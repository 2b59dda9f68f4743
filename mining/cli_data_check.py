"""Rendering of ``mine data check`` (the command itself lives in :mod:`mining.cli_data`).

:func:`render_check` prints a :class:`data.check.CheckReport` as a rich summary table (one row
per check: count, worst severity, three examples) or as strict JSON, and returns the exit code
(:data:`mining.cli_app.EXIT_OK` clean, :data:`mining.cli_app.EXIT_PROBLEMS` when an error or a
warning was found; info findings do not fail).
"""
from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from data.check import CHECKS, SEVERITIES, CheckReport, Finding
from mining.cli_app import EXIT_OK, EXIT_PROBLEMS, console, print_json

__all__ = ["MAX_JSON_FINDINGS", "render_check", "report_json"]

#: Findings listed in the JSON output (the rest are counted in ``truncated``).
MAX_JSON_FINDINGS = 1000
_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _finding(f: Finding) -> dict[str, Any]:
    return {"check": f.check, "severity": f.severity, "ts_code": f.ts_code,
            "trade_date": None if f.trade_date is None else f.trade_date.date().isoformat(),
            "detail": f.detail}


def report_json(report: CheckReport, limit: int = MAX_JSON_FINDINGS) -> dict[str, Any]:
    """The JSON document of a report.

    Returns
    -------
    dict
        ``root, ok, checked, skipped, counts, notes, rows, elapsed_s, findings`` (worst severity
        first, at most ``limit``) and ``truncated`` (findings left out, including those the
        report itself did not keep).
    """
    order = {s: i for i, s in enumerate(SEVERITIES)}
    kept = sorted(report.findings, key=lambda f: order.get(f.severity, 9))[:limit]
    total = sum(n for c in report.counts.values() for n in c.values())
    return {"root": report.root, "ok": report.ok, "checked": report.checked,
            "skipped": report.skipped, "counts": report.counts, "notes": report.notes,
            "rows": report.rows, "elapsed_s": round(report.elapsed_s, 2),
            "findings": [_finding(f) for f in kept], "truncated": total - len(kept)}


def _example(f: Finding) -> str:
    where = " ".join(x for x in (f.ts_code, f.trade_date and f.trade_date.date().isoformat())
                     if x)
    return f"{where}: {f.detail}" if where else f.detail


def render_check(report: CheckReport, as_json: bool) -> int:
    """Print ``report`` (table or JSON) and return the exit code (0 clean, 1 findings).

    Parameters
    ----------
    report : CheckReport
        From :func:`data.check.check_warehouse`.
    as_json : bool
        Strict JSON on stdout (:func:`report_json`) instead of the table.

    Returns
    -------
    int
        :data:`~mining.cli_app.EXIT_PROBLEMS` when any error or warning was found, else
        :data:`~mining.cli_app.EXIT_OK`.
    """
    code = EXIT_OK if report.ok else EXIT_PROBLEMS
    if as_json:
        print_json(report_json(report))
        return code
    t = Table(title=f"warehouse check: {escape(report.root)}", title_justify="left")
    for c in ("check", "status", "count", "worst", "examples"):
        t.add_column(c, overflow="fold", no_wrap=c != "examples")
    names = [c for c in CHECKS if c in report.checked or c in report.skipped]
    names += [c for c in report.counts if c not in names]
    for name in names:
        n = sum(report.counts.get(name, {}).values())
        worst = report.worst(name)
        if name not in report.checked:
            t.add_row(name, "skipped", "-", "-", escape(report.skipped.get(name, "")))
            continue
        ex = [f for f in report.findings if f.check == name and f.severity == worst][:3]
        t.add_row(name, "ok" if not n else "found", str(n),
                  f"[{_STYLE[worst]}]{worst}[/]" if worst else "-",
                  escape("\n".join(_example(f) for f in ex)))
    console.print(t)
    for k, why in report.skipped.items():
        if k not in CHECKS:
            console.print(f"[dim]skipped {escape(k)}: {escape(why)}[/]")
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    rows = sum(report.rows.values())
    verdict = "[green]clean[/]" if report.ok else "[bold red]problems found[/]"
    console.print(f"{verdict} · {rows:,} rows in {len(report.rows)} datasets · "
                  f"{report.elapsed_s:.1f} s")
    return code
