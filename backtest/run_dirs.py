"""Output folders of ``mine combine`` / ``mine backtest``: one fresh folder per run, written
whole, a ``latest`` pointer, and the search for the newest targets file (``mine export``).

Every run writes to a new folder ``<out_dir>/<kind>-<YYYYmmddTHHMMSS>-<6 hex>`` (``kind`` is
e.g. ``combine-ic-csi300``, ``backtest-<targets folder>`` or ``microcap``), so no run
overwrites another. The folder is staged (:class:`data.staging.StagedDir`): the run writes
into a hidden sibling ``.<name>.partial-<host>-<pid>-<hex>`` and :meth:`RunFolder.commit`
renames it into place once every file is written and fsynced, so a folder under ``out_dir``
is complete or absent, never a mix, and a killed run leaves only the hidden partial folder,
which the next run removes (:func:`tidy`). A run that writes targets (``mine combine``, the
micro-cap preset) then points ``<out_dir>/latest`` (a one-line text file: the folder's name,
or its absolute path when it is outside ``out_dir``) at its folder, after the commit, so
``latest`` never names an unfinished run; :func:`find_latest_targets` follows it.

An explicit output folder that already holds files is refused unless ``force``; with
``force`` it is replaced as a whole at the commit (all old files or all new ones), and only
when it holds nothing but files a run writes (:data:`RUN_FILES`), so ``--force`` never
deletes anything else.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from backtest.errors import BacktestError
from data.io import atomic_write, crash_point
from data.procs import PROCESS_START
from data.staging import StagedDir, clean_stale, is_partial

__all__ = ["LATEST", "RUN_FILES", "RunFolder", "new_run_id", "run_folder", "tidy",
           "write_latest", "read_latest", "find_latest_targets", "check_finished"]

#: Name of the pointer file in ``[backtest] out_dir``.
LATEST = "latest"
#: Every file a combine / backtest / micro-cap run folder holds.
RUN_FILES = frozenset({
    "targets.parquet", "targets.csv", "score.parquet", "score.csv", "factor_weights.parquet",
    "factor_weights.csv", "combine.json", "nav.parquet", "positions.parquet", "trades.parquet",
    "rejected.parquet", "costs.parquet", "corporate.parquet", "yearly.csv", "performance.json"})
#: A temporary file of the ``tempfile.mkstemp`` naming older versions used.
_LEGACY_TMP = re.compile(r"^[^.].*\.[a-z0-9_]{8}\.tmp$")
#: A run folder's name (:func:`run_folder`).
_RUN_NAME = re.compile(r"^[^.].*-\d{8}T\d{6}-[0-9a-f]{6}$")


def new_run_id() -> str:
    """``YYYYmmddTHHMMSS-<6 hex>``: local time of the start plus a random suffix."""
    return f"{_dt.datetime.now():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def _safe(s: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in str(s)) or "run"


@dataclass
class RunFolder:
    """A run's output folder while it is written: files go to :attr:`path` (the staged
    folder), the run records :attr:`final` (where they will be) and ends with :meth:`commit`
    (or :meth:`discard` on failure)."""
    final: Path
    run_id: str
    stage: StagedDir

    @property
    def path(self) -> Path:
        """Where to write now (the hidden staged folder)."""
        return self.stage.path

    def commit(self) -> Path:
        """Move the finished folder into place (one rename); return :attr:`final`."""
        try:
            self.stage.commit()
        except Exception as e:              # AlphamineError (taken meanwhile) or OSError
            self.stage.discard()
            raise BacktestError(f"could not move the run's results into {str(self.final)!r}: "
                                f"{e}") from None
        crash_point("run.committed")
        return self.final

    def discard(self) -> None:
        """Drop everything this run wrote."""
        self.stage.discard()


def tidy(folder: str | os.PathLike) -> list[Path]:
    """Remove what killed runs left in ``folder`` (an ``out_dir``): stale partial folders and
    temporary files (:func:`data.staging.clean_stale`), and temporary files of the older
    ``mkstemp`` naming, older than this process, in it, its ``export`` folder and its run
    folders (names ``<kind>-<YYYYmmddTHHMMSS>-<6 hex>``)."""
    root = Path(folder).expanduser()
    done = clean_stale(root)
    try:
        dirs = [root] + [p for p in root.iterdir() if p.is_dir() and (
            p.name == "export" or _RUN_NAME.match(p.name))]
    except OSError:
        return done
    for d in dirs:
        try:
            for f in d.iterdir():
                if _LEGACY_TMP.match(f.name) and f.is_file() \
                        and f.stat().st_mtime < PROCESS_START:
                    f.unlink()
                    done.append(f)
        except OSError:
            continue
    return done


def _foreign(p: Path) -> list[str]:
    """Entries of ``p`` that no run writes (``--force`` would delete them)."""
    return sorted(e.name for e in p.iterdir()
                  if not (e.is_file() and (e.name in RUN_FILES or e.name.endswith(".tmp"))))


def run_folder(out_dir: str | os.PathLike, kind: str, explicit: str | os.PathLike | None = None,
               *, force: bool = False) -> RunFolder:
    """Stage the output folder of a new run (module docstring); first :func:`tidy` the
    folder it goes into.

    Without ``explicit``: a new folder ``<out_dir>/<kind>-<run_id>`` (never an existing one).
    With ``explicit``: that folder; refused when it already holds files unless ``force``,
    and even with ``force`` when it holds anything but run files (:data:`RUN_FILES`).

    Raises
    ------
    BacktestError
        ``explicit`` is a file, a non-empty folder without ``force``, or a folder holding
        other files.
    """
    run_id = new_run_id()
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_symlink():
            p = p.resolve()               # the folder it names is the one replaced
        if p.exists() and not p.is_dir():
            raise BacktestError(f"--out {str(p)!r} is a file, not a folder")
        if p.is_dir() and any(p.iterdir()):
            if not force:
                raise BacktestError(f"--out {str(p)!r} already holds results; choose another "
                                    f"folder, leave --out out for a fresh run folder, or pass "
                                    f"--force to write over them")
            other = _foreign(p)
            if other:
                raise BacktestError(f"--out {str(p)!r} holds files no run wrote "
                                    f"({', '.join(other[:5])}{' ...' if len(other) > 5 else ''})"
                                    f"; --force replaces a run folder as a whole, so choose a "
                                    f"run folder, an empty folder or a new one")
        clean_stale(p.parent)             # only our own hidden names: any folder is safe
        return RunFolder(p, run_id, StagedDir(p, replace=force))
    root = Path(out_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    tidy(root)
    while True:
        p = root / f"{'-'.join(_safe(k) for k in kind.split('-'))}-{run_id}"
        if not os.path.lexists(p):
            return RunFolder(p, run_id, StagedDir(p))
        run_id = new_run_id()             # same second and same suffix: draw again


def write_latest(out_dir: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Point ``<out_dir>/latest`` at ``folder`` (relative when inside ``out_dir``)."""
    root, f = Path(out_dir).expanduser(), Path(folder).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    try:
        text = str(f.resolve().relative_to(root.resolve()))
    except ValueError:
        text = str(f.resolve())
    return atomic_write(root / LATEST, lambda tmp: Path(tmp).write_text(text + "\n"))


def read_latest(out_dir: str | os.PathLike) -> Path | None:
    """The folder ``<out_dir>/latest`` names, or None (no pointer, or its folder is gone)."""
    root = Path(out_dir).expanduser()
    p = root / LATEST
    if not p.is_file():
        return None
    name = p.read_text().strip()
    if not name or is_partial(name):
        return None
    f = Path(name) if Path(name).is_absolute() else root / name
    return f if f.is_dir() else None


def find_latest_targets(out_dir: str | os.PathLike) -> Path:
    """The newest targets file under ``out_dir`` (what ``mine combine`` writes).

    First the run folder ``<out_dir>/latest`` names (its ``targets.parquet``, else
    ``targets.csv``). Without a usable pointer (older layouts): ``out_dir`` is searched
    recursively for ``*targets*.parquet`` (else ``*targets*.csv``), skipping the ``export/``
    subfolder (the per-day files of ``mine export``) and hidden names (unfinished runs'
    staged folders, temporary files), and the most recently modified wins.

    Raises
    ------
    BacktestError
        If there is none: run ``mine combine`` first or pass ``--targets``.
    """
    root = Path(out_dir)
    latest = read_latest(root)
    if latest is not None:
        for ext in ("parquet", "csv"):
            if (latest / f"targets.{ext}").is_file():
                return latest / f"targets.{ext}"
    if root.is_dir():
        for ext in ("parquet", "csv"):
            found = [(p.stat().st_mtime, str(p)) for p in root.rglob(f"*targets*.{ext}")
                     if "export" not in p.relative_to(root).parts[:-1]
                     and not any(x.startswith(".") for x in p.relative_to(root).parts)]
            if found:
                return Path(max(found)[1])
    raise BacktestError(f"no targets file (*targets*.parquet / *targets*.csv) under "
                        f"{str(root)!r}: run `mine combine` first or pass --targets")


def check_finished(path: str | os.PathLike, what: str = "--targets") -> Path:
    """``path`` unless it lies in an unfinished run's staged folder (BacktestError then)."""
    p = Path(path)
    if is_partial(p.expanduser().absolute()):
        raise BacktestError(f"{what} {str(p)!r} is inside an unfinished run's folder (a run "
                            f"that was killed or is still writing); use a finished run")
    return p
