"""Whole folders and file groups: a run's outputs land complete or not at all, and what a killed
run left is tidied by the next one.

* :class:`StagedDir` writes a whole folder (a run's output folder, a model run, a manifest):
  everything goes into a hidden sibling ``.<name>.partial-<owner>``, which is fsynced and then
  renamed into place in one step. A folder that exists already (``--out DIR --force``) is
  swapped with the staged one in one step where the kernel can (Linux ``renameat2``
  ``RENAME_EXCHANGE``), else moved aside to ``.<name>.old-<owner>`` first; a process killed
  between those two renames leaves the old folder there, and :func:`clean_stale` puts it back.
  So a folder holds all the old files or all the new ones, never a mix.
* :func:`write_together` writes a group of files of one folder that belong together (the day
  files of ``mine export``): each to a temporary file, then a journal naming the renames, then
  the renames. A process killed during the renames leaves the journal, which the next
  :func:`clean_stale` of the folder completes (every file was complete before the journal was
  written): the group ends all old or all new.
* :func:`clean_stale` removes what killed processes left directly in a folder: temporary files
  (:func:`data.io.atomic_write`), partial folders and journals whose owner (``<owner>`` =
  ``<host>-<pid>-<6 hex>`` in the name, :mod:`data.procs`) is gone from this host, or, for
  another host's, that are older than :data:`STALE_FOREIGN_S`. Producers call it on the
  folders they write into at the start of each run.

Every temporary name starts with a dot; listings of results (the ``latest`` search, ``mine
runs``) skip hidden names, and :func:`is_partial` tells a path inside an unfinished folder.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from data.errors import AlphamineError
from data.io import (
    OWNER_RE,
    atomic_write,
    crash_point,
    fsync_dir,
    fsync_file,
    fsync_tree,
    new_file,
    owner_tag,
)
from data.procs import HOST, process_alive

__all__ = ["StagedDir", "write_together", "clean_stale", "is_partial", "STALE_FOREIGN_S"]

#: Age (seconds) after which a temporary file / partial folder left by a process on another
#: host counts as stale (its owner cannot be asked whether it still runs).
STALE_FOREIGN_S = 24 * 3600

_TMP_RE = re.compile(r"^\.(?P<name>.+)\." + OWNER_RE + r"\.tmp$")
_JOURNAL_RE = re.compile(r"^\.(?P<name>.+)\." + OWNER_RE + r"\.pending$")
_DIR_RE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-" + OWNER_RE + r"$")


# ------------------------------------------------------------------------ file groups
def _roll_forward(journal: Path) -> None:
    """Do the renames a journal of :func:`write_together` lists (idempotent), then drop it."""
    folder = journal.parent
    try:
        plan = json.loads(journal.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        plan = None
    if isinstance(plan, dict):
        for tmp, final in plan.items():
            if "/" in tmp + final or os.sep in tmp + final:
                continue                              # only names of this folder
            if (folder / tmp).is_file():
                os.replace(folder / tmp, folder / final)
                crash_point("write_together.rename")
        fsync_dir(folder)
    journal.unlink(missing_ok=True)
    fsync_dir(folder)


def write_together(folder: str | os.PathLike, writers: Mapping[str, Callable[[str], object]],
                   *, label: str = "group") -> dict[str, Path]:
    """Write several files of ``folder`` as one group: all new or (on failure) all old.

    Parameters
    ----------
    folder : path
        Created if missing.
    writers : mapping of file name -> ``write(tmp_path)``
        As for :func:`atomic_write`.
    label : str
        Names the journal (``.<label>.<owner>.pending``).

    Returns
    -------
    dict of file name -> Path

    Each file is written to a temporary file and fsynced; then a journal of the renames is
    written (atomically); then the renames are done and the journal removed. A process killed
    before the journal leaves only temporary files (removed by :func:`clean_stale`), one
    killed after it leaves the journal, which :func:`clean_stale` completes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tag = owner_tag()
    tmps: dict[str, Path] = {}
    journal = folder / f".{label}.{tag}.pending"
    try:
        for name, write in writers.items():
            tmp = folder / f".{name}.{tag}.tmp"
            new_file(tmp)
            tmps[name] = tmp
            write(str(tmp))
            fsync_file(tmp)
            crash_point("write_together.file")
        plan = {tmp.name: name for name, tmp in tmps.items()}
        atomic_write(journal, lambda p: Path(p).write_text(json.dumps(plan), encoding="utf-8"))
    except BaseException:
        for tmp in tmps.values():
            if os.path.lexists(tmp):
                os.unlink(tmp)
        raise
    crash_point("write_together.journal")
    _roll_forward(journal)
    return {name: folder / name for name in writers}


# ------------------------------------------------------------------------ folders
#: Use ``renameat2(RENAME_EXCHANGE)`` to swap an existing folder (tests switch it off to
#: exercise the two-rename fallback).
EXCHANGE = sys.platform.startswith("linux")
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one step; False where the kernel / file system
    cannot (the caller falls back to two renames)."""
    if not EXCHANGE:
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def is_partial(path: str | os.PathLike) -> bool:
    """True when ``path`` is, or lies inside, a staged (unfinished) or moved-aside folder."""
    return any(_DIR_RE.match(part) for part in Path(path).parts)


class StagedDir:
    """A folder written whole: write into :attr:`path`, then :meth:`commit` (module docstring).

    Parameters
    ----------
    final : path
        Where the folder must end up. Its parent is created.
    replace : bool, default False
        An existing non-empty ``final`` is replaced as a whole by :meth:`commit` (swapped);
        without it :meth:`commit` refuses one (an existing empty folder is always replaced).

    Use as a context manager (commit on success, discard on any exception) or call
    :meth:`commit` / :meth:`discard` yourself.
    """

    def __init__(self, final: str | os.PathLike, *, replace: bool = False):
        self.final = Path(final)
        self.replace = replace
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.final.parent / f".{self.final.name}.partial-{owner_tag()}"
        self.path.mkdir()
        self.committed = False

    def __enter__(self) -> "StagedDir":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()

    def discard(self) -> None:
        """Remove the staged folder (nothing of this run lands)."""
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> Path:
        """fsync the staged folder and move it into place in one step; return ``final``.

        Raises
        ------
        AlphamineError
            ``final`` holds files and ``replace`` is False (another run wrote it meanwhile);
            the staged folder is left for the caller to :meth:`discard`.
        """
        if self.committed:
            return self.final
        fsync_tree(self.path)
        crash_point("stage.commit")
        parent = self.final.parent
        busy = self.final.is_dir() and any(self.final.iterdir())
        if busy and not self.replace:
            raise AlphamineError(f"{str(self.final)!r} already holds files (written by another "
                                 f"run meanwhile); nothing was replaced")
        if busy and _exchange(self.path, self.final):
            self.committed = True                         # self.path now holds the old files
            fsync_dir(parent)
            crash_point("stage.exchanged")
            shutil.rmtree(self.path, ignore_errors=True)
            return self.final
        old = None
        if busy:
            old = parent / f".{self.final.name}.old-{owner_tag()}"
            os.rename(self.final, old)
            crash_point("stage.moved_aside")
        try:
            os.rename(self.path, self.final)    # onto a missing or an empty folder
        except OSError as e:
            if old is not None:
                os.rename(old, self.final)
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise AlphamineError(f"{str(self.final)!r} already holds files (written by "
                                     f"another run meanwhile); nothing was replaced") from None
            raise
        self.committed = True
        fsync_dir(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final


# ------------------------------------------------------------------------ cleanup
def _stale(m: re.Match, st: os.stat_result, *, moved: bool = False) -> bool:
    """Is the entry (name match ``m``, status ``st``) left behind by a writer that is gone?

    Same host: the owner process no longer runs, or its id belongs to a process younger than
    the entry (reused). Another host: the entry is older than :data:`STALE_FOREIGN_S`. The
    entry's time is its mtime, or also its ctime for a folder moved aside (``moved``:
    renaming keeps the mtime and sets the ctime).
    """
    changed = max(st.st_mtime, st.st_ctime) if moved else st.st_mtime
    if m["host"] == HOST:
        return not process_alive(int(m["pid"]), not_after=max(st.st_mtime, st.st_ctime))
    return time.time() - changed > STALE_FOREIGN_S


def clean_stale(folder: str | os.PathLike) -> list[Path]:
    """Tidy what killed writers left directly in ``folder``; return the paths acted on.

    In this order: a moved-aside ``.<name>.old-*`` folder whose ``<name>`` is missing is
    renamed back (the replacement never landed: the old results stay), other stale ones are
    removed; stale journals of :func:`write_together` are completed; stale partial folders
    and temporary files are removed. Stale = the owner process is gone (this host) or the
    entry is older than :data:`STALE_FOREIGN_S` (another host). Entries of running processes
    are left alone; errors (permissions, a concurrent cleanup) are ignored.
    """
    root = Path(folder)
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    done: list[Path] = []

    def stale(p: Path, m) -> bool:
        try:
            return _stale(m, p.lstat(), moved=m.groupdict().get("kind") == "old")
        except OSError:
            return False

    dirs = [(p, m) for p in entries if (m := _DIR_RE.match(p.name)) and p.is_dir()]
    for p, m in dirs:
        if m["kind"] == "old" and stale(p, m):
            try:
                target = root / m["name"]
                if not os.path.lexists(target):
                    os.rename(p, target)
                else:
                    shutil.rmtree(p)
                done.append(p)
            except OSError:
                pass
    for p in entries:
        if (m := _JOURNAL_RE.match(p.name)) and stale(p, m):
            try:
                _roll_forward(p)
                done.append(p)
            except OSError:
                pass
    for p, m in dirs:
        if m["kind"] == "partial" and p.exists() and stale(p, m):
            shutil.rmtree(p, ignore_errors=True)
            done.append(p)
    for p in entries:
        if (m := _TMP_RE.match(p.name)) and p.exists() and stale(p, m):
            try:
                p.unlink()
                done.append(p)
            except OSError:
                pass
    return done


