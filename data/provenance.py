"""Provenance of a result: which code, which configuration, which command produced it.

Shared by the audit log of the sealed test split (:mod:`backtest.seal`) and the run manifests
(``mine rerun``). Nothing here reads a secret: the resolved configuration holds no token (tokens
come from the environment only), and the command line is recorded as given.
"""
from __future__ import annotations

import functools
import hashlib
import json
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from data.io import to_jsonable

__all__ = ["code_version", "config_digest", "command_line", "command_argv", "set_command_line",
           "PACKAGE"]

PACKAGE = "alphamine"
_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(_ROOT), *args], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The code that is running: ``{"package": version, "commit": sha or None, "dirty": bool
    or None}``.

    ``commit`` / ``dirty`` come from ``git`` when the package runs from a checkout (an
    editable install); an installed wheel has only the package version. ``dirty`` is True
    when tracked files differ from the commit. Cached for the life of the process.
    """
    try:
        version = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        version = None
    commit = _git("rev-parse", "HEAD") if (_ROOT / ".git").exists() else None
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"package": version, "commit": commit, "dirty": dirty}


def config_digest(cfg) -> str:
    """sha256 hex (first 16 characters) of the resolved configuration (:meth:`Config.to_dict`),
    canonical JSON with sorted keys: equal digests mean equal settings in every section."""
    blob = json.dumps(to_jsonable(cfg.to_dict()), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


_COMMAND: list[str] | None = None


def set_command_line(argv: list[str], prog: str = "mine") -> None:
    """Record the command being run (the CLI calls this with its arguments before parsing;
    also under a test runner, where ``sys.argv`` is the runner's)."""
    global _COMMAND
    _COMMAND = [prog, *[str(a) for a in argv]]


def command_argv() -> list[str]:
    """The command being run as a list: the one recorded by :func:`set_command_line`, else
    ``sys.argv`` (program name reduced to its file name)."""
    if _COMMAND is not None:
        return list(_COMMAND)
    prog = Path(sys.argv[0]).name if sys.argv else "python"
    return [prog, *sys.argv[1:]]


def command_line() -> str:
    """:func:`command_argv` as one shell-quoted line, e.g. ``mine eval 'ts_mean(ret, 5)'``."""
    return shlex.join(command_argv())
