"""The ``mine`` app: the typer application, consoles, configuration loading and formatting.

Every ``mining/cli_*.py`` module imports this one and adds its commands to :data:`app`;
:mod:`mining.cli` (the console script's entry point) imports them all. Command bodies only
parse and validate options, make one library call and render its result: orchestration lives
in the library (``backtest.*``, ``mining.*``, ``models.*``), never here.

Exit codes (README "Exit codes"): :data:`EXIT_OK` 0 success; :data:`EXIT_PROBLEMS` 1 a check
ran and found problems; :data:`EXIT_USAGE` 2 a usage, configuration or data error (one line on
stderr, ``error: ...``).

Output conventions: every command has ``--json`` (strict JSON on stdout: no NaN/Infinity,
integers stay integers; :func:`print_json`); tables never wrap formulas token by token (the
console is at least :data:`MIN_WIDTH` columns wide when piped, and formula columns do not
wrap); rich markup in help texts is off, so ``[section]`` names print as written.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from backtest.context import EvalConfig
from backtest.monitor import MonitorConfig
from backtest.notify import NotifyConfig
from backtest.settings import BacktestConfig
from backtest.signals import SignalsConfig
from data.config import Config, DataConfig, load_config
from data.errors import AlphamineError, ConfigError
from data.io import to_jsonable
from data.provenance import set_command_line
from data.tushare import TushareConfig
from factors.allocator import keep_freed_memory
from factors.cluster import ClusterConfig
from factors.store import StoreConfig
from factors.store_records import SOURCES
from mining.gp import GPSettings
from mining.llm import LLMConfig
from models.settings import ModelConfig

__all__ = ["app", "console", "err_console", "SCHEMA", "load", "cfg", "fail", "fmt",
           "print_json", "to_jsonable", "check_choice", "check_date", "check_positive",
           "check_range", "check_span", "check_out", "warn_unseal_ignored", "warn",
           "config_line", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "SOURCES",
           "check_universe", "config_keys", "invocation", "with_cluster", "CLUSTER_HELP"]

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
#: Console width used when output is not a terminal (logs, pipes): wide enough for formulas.
MIN_WIDTH = 200

#: Every section ``mine.toml`` may hold, and the settings class that reads it.
SCHEMA: dict[str, type] = {"data": DataConfig, "evaluate": EvalConfig, "store": StoreConfig,
                           "gp": GPSettings, "backtest": BacktestConfig, "llm": LLMConfig,
                           "model": ModelConfig, "tushare": TushareConfig,
                           "monitor": MonitorConfig, "notify": NotifyConfig,
                           "signals": SignalsConfig,
                           "cluster": ClusterConfig}


def _console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr)
    if not c.is_terminal and c.width < MIN_WIDTH:
        c = Console(stderr=stderr, width=int(os.environ.get("COLUMNS", 0)) or MIN_WIDTH)
    return c


console = _console()
err_console = _console(stderr=True)


class _NoticeHandler(logging.Handler):
    """Library log records (data fallbacks, provider retries) as dim lines on stderr, once each."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg not in self.seen:
            self.seen.add(msg)
            err_console.print(f"[dim]note: {escape(msg)}[/]", soft_wrap=True)


def _install_notices() -> None:
    for name in ("data.optional", "data.tushare"):
        lg = logging.getLogger(name)
        if not any(isinstance(h, _NoticeHandler) for h in lg.handlers):
            lg.addHandler(_NoticeHandler())
            lg.setLevel(logging.INFO)

class _RecordingGroup(TyperGroup):
    """The root command group; records the arguments it is run with
    (:func:`data.provenance.set_command_line`) for audit rows and run manifests."""

    def main(self, args=None, *a, **k):
        set_command_line(list(sys.argv[1:] if args is None else args))
        return super().main(args, *a, **k)


app = typer.Typer(cls=_RecordingGroup, add_completion=False, no_args_is_help=True,
                  rich_markup_mode=None,
                  help="alphamine: factor mining and evaluation for Chinese A-shares.")

_STATE: dict[str, Any] = {"config_path": None, "cfg": None}


def _version(value: bool) -> None:
    if value:
        try:
            v = metadata.version("alphamine")
        except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
            v = "unknown (not installed)"
        print(f"alphamine {v}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Path to mine.toml (default: $ALPHAMINE_CONFIG, then "
        "./mine.toml)."),
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                     help="Print the version and exit.")) -> None:
    _STATE["config_path"] = config
    _STATE["cfg"] = None
    _install_notices()
    keep_freed_memory()


def load(path: str | os.PathLike | None = None) -> Config:
    """Load ``mine.toml`` (or the defaults) with every section of :data:`SCHEMA`.

    Raises
    ------
    ConfigError
        Unknown section or key, wrong type, unreadable file (see :func:`data.config.load_config`).
    """
    return load_config(path, SCHEMA)


def cfg() -> Config:
    """The configuration of this invocation (``--config``), loaded once."""
    if _STATE["cfg"] is None:
        _STATE["cfg"] = load(_STATE["config_path"])
    return _STATE["cfg"]


def config_line(c: Config) -> str:
    """``config <file> · store <path>``: printed (dim) by commands that read data or the store."""
    src = str(c.source) if c.source else "built-in defaults (no mine.toml found)"
    return f"config {src} · store {c.store.path}"


def fail(e: Exception | str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: <message>`` (one line) on stderr and exit with ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
    raise typer.Exit(code)


def fmt(v: Any, digits: int = 4) -> str:
    """Number for a table cell: ``-`` for None/NaN, fixed ``digits`` for floats."""
    if v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(v)):
        return "-"
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}f}"
    return str(v)


def print_json(obj: Any) -> None:
    """Print ``obj`` as strict, indented JSON on stdout (never NaN; see :func:`to_jsonable`)."""
    print(json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False))


# ---------------------------------------------------------------- option validation
# Called first thing in a command body, before any data or store is touched.

def check_choice(option: str, value: str | None, choices: Iterable[str]) -> str | None:
    """``value`` if it is one of ``choices`` (or None); else a ConfigError naming them."""
    choices = list(choices)
    if value is not None and value not in choices:
        raise ConfigError(f"{option} {value!r}: use one of {', '.join(choices)}")
    return value


def check_date(option: str, value: str | None) -> str | None:
    """``value`` as ``YYYY-MM-DD`` (accepts ``YYYYMMDD`` too), or None; else a ConfigError."""
    if value is None:
        return None
    s = str(value).strip()
    for f in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return _dt.datetime.strptime(s, f).date().isoformat()
        except ValueError:
            continue
    raise ConfigError(f"{option} {value!r}: use a date as YYYY-MM-DD or YYYYMMDD")


def check_positive(option: str, value: float | int | None, *, zero: bool = False
                   ) -> float | int | None:
    """``value`` if > 0 (>= 0 with ``zero``) or None; else a ConfigError."""
    if value is not None and (value < 0 or (value == 0 and not zero)
                              or (isinstance(value, float) and not math.isfinite(value))):
        raise ConfigError(f"{option} must be {'>= 0' if zero else '> 0'}, got {value}")
    return value


def check_range(option: str, value: float | int | None, lo: float, hi: float, *,
                lo_open: bool = False) -> float | int | None:
    """``value`` if in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``) or None; else a
    ConfigError stating the range."""
    if value is None:
        return None
    ok = math.isfinite(value) and (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        raise ConfigError(f"{option} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], "
                          f"got {value}")
    return value


def check_span(start_option: str, start: str | None, end_option: str, end: str | None) -> None:
    """ConfigError when both dates are given (``YYYY-MM-DD``) and ``start`` is after ``end``."""
    if start is not None and end is not None and start > end:
        raise ConfigError(f"{start_option} {start} is after {end_option} {end}")


def check_out(option: str, path: str | os.PathLike | None) -> None:
    """ConfigError when the output folder ``path`` (or a folder above it) exists as a file."""
    if path is None:
        return
    p = Path(path).expanduser()
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                where = "is a file" if q == p else f"cannot be made: {str(q)!r} is a file"
                raise ConfigError(f"{option} {str(p)!r} {where}, not a folder")
            return


def warn_unseal_ignored(c: Config, unseal_test: bool, end: str | None) -> None:
    """Print a warning (stderr) for ``--unseal-test`` with an ``--end`` before the test split:
    the flag then does nothing (:func:`backtest.seal.unseal_ignored`)."""
    from backtest.seal import in_test, unseal_ignored
    if unseal_test and end is not None and not in_test(c, end):
        warn(unseal_ignored(c, end))


def warn(message: str) -> None:
    """``warning: <message>`` (one line) on stderr; the command goes on."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


def run_guarded(fn, *args, **kwargs):
    """Call ``fn``; an :class:`AlphamineError` becomes ``error: ...`` and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except AlphamineError as e:
        fail(e)


# ---------------------------------------------------------------- shared command helpers


def check_universe(option: str, value: str | None) -> str | None:
    """``value`` if it names a known universe (:data:`data.universe.UNIVERSES`) or is None."""
    from data.universe import UNIVERSES
    return check_choice(option, value, UNIVERSES)


#: Help text of ``--cluster`` (the commands that can run on a Ray cluster).
CLUSTER_HELP = ("Ray cluster to run on: HOST:PORT of the head node, ray://HOST:PORT or auto; "
                "\"\" runs here (default \\[cluster] address; docs/cluster.md).")


def with_cluster(c: Config, option: str | None) -> Config:
    """``c`` with ``--cluster`` applied, after checking the address (its form, the head
    reachable within ``[cluster] connect_timeout``, Ray installed): call it before any data
    loads. ``option`` None keeps ``[cluster] address`` (checked the same way).

    Raises
    ------
    ConfigError, ClusterError
        A malformed or unreachable address, or Ray missing (one line, exit 2).
    """
    import dataclasses

    from factors.cluster import check_cluster, cluster_settings
    cl = cluster_settings(c)
    address = cl.address if option is None else option
    what = "[cluster] address" if option is None else "--cluster"
    address = check_cluster(address, cl.connect_timeout, what)
    return c.replace(cluster=dataclasses.replace(cl, address=address))


def config_keys(c: Config) -> dict[str, str]:
    """``{"config": <file or null>, "store": <path>}``: the JSON twin of :func:`config_line`."""
    return {"config": str(c.source) if c.source else None, "store": str(c.store.path)}


def _param_argv(ctx) -> list[str]:
    """The options and arguments of one click context as canonical tokens."""
    opts: list[str] = []
    args: list[str] = []
    for p in ctx.command.params:
        if not p.expose_value or p.name not in ctx.params or p.name == "version":
            continue
        v = ctx.params[p.name]
        if p.param_type_name == "argument":
            args += [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])
                     if x is not None]
            continue
        if v is None or v == p.default:
            continue
        name = max(p.opts, key=len)
        if getattr(p, "is_flag", False) and isinstance(v, bool):
            if v:
                opts.append(name)
            elif p.secondary_opts:
                opts.append(max(p.secondary_opts, key=len))
            continue
        for x in (v if isinstance(v, (list, tuple)) and p.multiple else [v]):
            opts += [name, str(x)]
    if any(a.startswith("-") for a in args):
        args = ["--", *args]
    return opts + args


def invocation(ctx: typer.Context) -> list[str]:
    """The canonical argv of the running ``mine`` command ``ctx`` (without the program name):
    root options, then each (sub)command name with the options that differ from their
    defaults, as parsed (``mine -c x.toml gp --seed=7`` gives ``["--config", "x.toml", "gp",
    "--seed", "7"]``, whichever way it was typed). Run manifests record it; ``mine rerun``
    replays it. A command gets ``ctx`` by declaring a ``ctx: typer.Context`` parameter."""
    chain = []
    while ctx is not None:
        chain.append(ctx)
        ctx = ctx.parent
    argv: list[str] = []
    for c in reversed(chain):
        if c.parent is not None:
            argv.append(c.info_name)
        argv += _param_argv(c)
    return argv
