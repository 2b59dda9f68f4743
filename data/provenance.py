"""Provenance of a result: which code, which configuration, which command produced it.

Shared by the audit log of the sealed test split (:mod:`backtest.seal`) and the run manifests
(:mod:`data.manifest`, ``mine rerun``): :func:`data_fingerprint` records what the warehouse
held. Nothing here reads a secret: the resolved configuration holds no token (tokens
come from the environment only), and the command line is recorded as given.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from data.io import to_jsonable

__all__ = ["code_version", "code_changes_digest", "config_digest", "command_line",
           "command_argv", "set_command_line", "data_fingerprint", "fingerprint_changes",
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


def data_fingerprint(root: str | os.PathLike, *, years: tuple[int, int] | None = None,
                     sha256: bool = False) -> dict:
    """What the warehouse at ``root`` holds: size and mtime of every Parquet partition.

    Every ``*.parquet`` file under ``root`` counts, except hidden ones and the ingest's
    staging folders (a path part starting with ``.`` or ``_``). With ``years = (first,
    last)``, the year partitions of a dataset folder (``daily/daily_2019.parquet``) outside
    ``[first, last]`` are left out (the run did not read them); top-level files always count.

    Parameters
    ----------
    root : path
        The warehouse (``[data] root``).
    years : (int, int), optional
        First and last calendar year the run reads.
    sha256 : bool, default False
        Also hash every file's bytes (reads the whole warehouse: ~1 s per 200 MB); size +
        mtime is the default because it costs one ``stat`` per file.

    Returns
    -------
    dict
        ``{"root": str, "exists": bool, "years": [first, last] or None, "method":
        "size+mtime" | "sha256", "files": {relative path: {"size": bytes, "mtime_ns": int[,
        "sha256": hex]}}, "digest": 16 hex of the canonical JSON of files}``.
    """
    base = Path(root).expanduser()
    files: dict[str, dict] = {}
    if base.is_dir():
        for p in sorted(base.rglob("*.parquet")):
            rel = p.relative_to(base)
            if any(part.startswith((".", "_")) for part in rel.parts) or not p.is_file():
                continue
            if years is not None and len(rel.parts) > 1:
                tail = p.stem.rpartition("_")[2]
                if tail.isdigit() and len(tail) == 4 and not years[0] <= int(tail) <= years[1]:
                    continue
            st = p.stat()
            entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
            if sha256:
                h = hashlib.sha256()
                with open(p, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                entry["sha256"] = h.hexdigest()
            files[rel.as_posix()] = entry
    blob = json.dumps(files, sort_keys=True).encode("utf-8")
    return {"root": str(base), "exists": base.is_dir(),
            "years": None if years is None else [int(years[0]), int(years[1])],
            "method": "sha256" if sha256 else "size+mtime", "files": files,
            "digest": hashlib.sha256(blob).hexdigest()[:16]}


def fingerprint_changes(old: dict, new: dict, *, limit: int = 10) -> list[str]:
    """Human-readable differences between two :func:`data_fingerprint` results (empty when
    equal): the root, then files added, removed, resized or touched (at most ``limit``
    lines, then a count). A file whose size is unchanged but whose mtime moved is reported as
    "mtime only (the content may be unchanged)" unless both sides carry a sha256."""
    out: list[str] = []
    if old.get("root") != new.get("root"):
        out.append(f"warehouse root {old.get('root')} -> {new.get('root')}")
    a, b = old.get("files", {}), new.get("files", {})
    for rel in sorted(set(a) | set(b)):
        x, y = a.get(rel), b.get(rel)
        if x == y:
            continue
        if x is None:
            out.append(f"{rel}: added")
        elif y is None:
            out.append(f"{rel}: removed")
        elif "sha256" in x and "sha256" in y:
            if x["sha256"] != y["sha256"]:
                out.append(f"{rel}: content changed")
        elif x.get("size") != y.get("size"):
            out.append(f"{rel}: size {x.get('size')} -> {y.get('size')} bytes")
        else:
            out.append(f"{rel}: mtime only (the content may be unchanged)")
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


@functools.lru_cache(maxsize=1)
def code_changes_digest() -> str | None:
    """16 hex of the uncommitted changes of the checkout: ``git diff HEAD`` of tracked files
    plus the names and contents of untracked, not ignored ``*.py`` files (which
    :func:`code_version`'s ``dirty`` does not see). None when there are none, or outside a
    git checkout. Two runs from the same commit with the same digest ran the same code.
    Cached for the life of the process."""
    if not (_ROOT / ".git").exists():
        return None
    diff = _git("diff", "HEAD", "--binary")
    others = _git("ls-files", "--others", "--exclude-standard", "--", "*.py")
    if diff is None or others is None:
        return None
    if not diff and not others:
        return None
    h = hashlib.sha256(diff.encode("utf-8", "surrogateescape"))
    for name in sorted(others.splitlines()):
        h.update(b"\0" + name.encode() + b"\0")
        try:
            h.update((_ROOT / name).read_bytes())
        except OSError:
            pass
    return h.hexdigest()[:16]
