"""Run manifests: what produced a result, written by every producer run, read by ``mine rerun``.

Every run of ``mine gp``, ``mine llm``, ``mine model``, ``mine combine`` and ``mine backtest``
(the library calls :func:`mining.gp_run.mine_gp`, :func:`mining.llm_run.run_llm` /
``replay_llm``, :func:`models.run.run_model`, :func:`backtest.combine_run.run_combine`,
:func:`backtest.backtest_run.run_backtest` / ``run_microcap``) ends by writing one folder

    ``<runs>/<run_id>/manifest.json``   the manifest (below)
    ``<runs>/<run_id>/store.db.gz``     the leaderboard as it was when the run started (gp, llm,
                                        model with submission, combine: their results depend
                                        on the members present); absent when there was none

where ``<runs>`` is :func:`runs_dir`: the ``runs`` folder beside the leaderboard file (``[store]
path``; ``.alphamine/runs`` by default), one place for every kind, so ``mine runs`` lists them
all and ``mine rerun RUN_ID`` finds any of them. The run id is the producer's own (the
leaderboard run id of gp / llm, the model run id, the run-folder id of combine / backtest).

Manifest (``schema`` 1), strict JSON::

    schema       1
    run_id       the producer's run id
    kind         gp | llm | model | combine | backtest
    created_at   start of the run, UTC ISO 8601;  finished_at: when the manifest was written
    command      {"argv": [...] or null, "line": "mine ..." or null, "cwd": str}: the canonical
                 argv of the ``mine`` command (``--config`` first, then the command and its
                 options as parsed; null for a library call), replayable as is
    config       {"source": file or null, "digest": data.provenance.config_digest,
                  "resolved": every section and key (relative paths made absolute)}
    settings     the producer's effective settings (config plus command-line overrides)
    code_version {"package", "commit", "dirty"} (data.provenance.code_version) and "changes":
                 a digest of the uncommitted changes (data.provenance.code_changes_digest)
    data         data.provenance.data_fingerprint of ``[data] root`` over the years read
    seeds        {"gp": 42} / {"model": 42} / {} (combine and backtest are deterministic; the
                 LLM's sampling is not seeded: its replay serves the cached replies)
    inputs       {"store_snapshot": "store.db.gz" or null, "store": path,
                  "targets": {"path", "sha256", "rows"}  (backtest of a targets file)}
    outputs      {"out_dir": the run's folder, "pred_path": ...}: where the results went
    results      what the run produced, canonical (:func:`canonical`): ordered decision
                 lists (gp: ``decisions`` and ``generations``; llm: ``proposals``; model:
                 ``leaderboard``; combine: ``members``) and ``files`` (name -> :func:
                 `frame_digest` of the Parquet files written), plus ``summary`` (a few
                 human-readable numbers, not hashed) and ``sha256``: the digest of everything
                 but ``summary`` and ``sha256`` itself. Two runs with equal ``sha256`` produced
                 the same results.

Canonical form: floats rounded to :data:`SIG_DIGITS` significant digits (so that a last-bit
difference does not count, a 1e-12 relative one does), NaN/inf as null, and the run's own id
replaced by ``<run>`` in every string (factor names such as ``gp_<6 hex>_03`` carry it, and a
gate reason may name a member added earlier in the same run). Frames are hashed as CSV text
with floats formatted ``%.12g``.
"""
from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import math
import os
import re
import shlex
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from data.config import WORK_DIR
from data.errors import RunError
from data.io import atomic_write, to_jsonable, write_json_atomic
from data.provenance import (
    code_changes_digest,
    code_version,
    config_digest,
    data_fingerprint,
)
from data.staging import StagedDir, clean_stale

__all__ = ["SCHEMA_VERSION", "KINDS", "MANIFEST", "SNAPSHOT", "SIG_DIGITS", "runs_dir",
           "canonical", "results_digest", "frame_digest", "file_digest", "RunRecorder",
           "read_manifest", "list_manifests", "restore_snapshot", "resolved_config"]

SCHEMA_VERSION = 1
KINDS = ("gp", "llm", "model", "combine", "backtest")
MANIFEST = "manifest.json"
SNAPSHOT = "store.db.gz"
#: Significant digits kept of every float in ``results``.
SIG_DIGITS = 12
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def _redact(o: Any) -> Any:
    """``user:password@`` of URLs (a ``--base-url`` with credentials) as ``***@``: secrets
    are never written."""
    if isinstance(o, str):
        return _URL_CREDENTIALS.sub("***@", o)
    if isinstance(o, list):
        return [_redact(x) for x in o]
    if isinstance(o, dict):
        return {k: _redact(v) for k, v in o.items()}
    return o


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def runs_dir(cfg) -> Path:
    """``<folder of [store] path>/runs``: where every run's manifest folder goes (module
    docstring); ``WORK_DIR/runs`` for a configuration without a ``[store]`` section."""
    try:
        store = cfg.store.path
    except AttributeError:
        return WORK_DIR / "runs"
    return Path(store).expanduser().parent / "runs"


# ------------------------------------------------------------------------ canonical results
def _round(x: float) -> float | None:
    if not math.isfinite(x):
        return None
    return float(f"{x:.{SIG_DIGITS}g}")


def canonical(obj: Any, run_id: str | None = None) -> Any:
    """``obj`` as plain JSON values with floats rounded to :data:`SIG_DIGITS` significant
    digits and ``run_id`` (and its 6-hex suffix where it follows ``_``) replaced by ``<run>``
    in every string (keys included)."""
    obj = to_jsonable(obj)
    pat = None
    if run_id:
        suffix = run_id[-6:]
        pat = re.compile(re.escape(run_id) + (r"|(?<=_)" + re.escape(suffix) + r"(?=_|\b)"
                                              if len(suffix) == 6 else ""))

    def walk(o):
        if isinstance(o, dict):
            return {walk(k): walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        if isinstance(o, float):
            return _round(o)
        if isinstance(o, str) and pat is not None:
            return pat.sub("<run>", o)
        return o
    return walk(obj)


def results_digest(results: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON (sorted keys) of ``results`` without its ``summary``
    and ``sha256`` entries (the values are taken as they are: pass :func:`canonical` ones)."""
    body = {k: v for k, v in results.items() if k not in ("summary", "sha256")}
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def frame_digest(df) -> dict:
    """``{"sha256", "rows", "columns"}`` of a DataFrame's content: its CSV text (header, no
    index, floats ``%.12g``, timestamps ISO) hashed; row order counts."""
    text = df.to_csv(index=False, float_format=f"%.{SIG_DIGITS}g", lineterminator="\n",
                     date_format="%Y-%m-%dT%H:%M:%S.%f")
    return {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), "rows": int(len(df)),
            "columns": [str(c) for c in df.columns]}


def file_digest(path: str | os.PathLike) -> dict:
    """:func:`frame_digest` of a Parquet file, or ``{"sha256", "bytes"}`` of any other file;
    ``{"missing": True}`` when there is no such file."""
    p = Path(path)
    if not p.is_file():
        return {"missing": True}
    if p.suffix == ".parquet":
        import pandas as pd
        return frame_digest(pd.read_parquet(p))
    return {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}


# ------------------------------------------------------------------------ store snapshots
def _snapshot(path: str | os.PathLike) -> bytes | None:
    """A consistent copy of the SQLite file ``path`` (WAL content included, through the
    backup API) as bytes; None when there is no such file."""
    p = Path(path).expanduser()
    if str(path) == ":memory:" or not p.is_file():
        return None
    src = sqlite3.connect(os.fspath(p))
    mem = sqlite3.connect(":memory:")
    try:
        src.backup(mem)
        return mem.serialize()
    finally:
        src.close()
        mem.close()


def restore_snapshot(folder: str | os.PathLike, dest: str | os.PathLike) -> bool:
    """Write the store snapshot of the manifest folder ``folder`` to the SQLite file ``dest``;
    False (nothing written) when the run recorded none (there was no store yet)."""
    src = Path(folder) / SNAPSHOT
    if not src.is_file():
        return False
    blob = gzip.decompress(src.read_bytes())
    atomic_write(dest, lambda tmp: Path(tmp).write_bytes(blob))
    return True


# ------------------------------------------------------------------------ the recorder
def resolved_config(cfg) -> dict:
    """:meth:`Config.to_dict` with relative ``Path`` values made absolute (against the
    current folder, which is where the run resolved them)."""
    out = cfg.to_dict()
    for name, obj in cfg.sections().items():
        for key in out[name]:
            v = getattr(obj, key)
            if isinstance(v, Path) and not v.is_absolute():
                out[name][key] = str(Path.cwd() / v)
    return out


def _years(window: Sequence[str | None] | None) -> tuple[int, int] | None:
    if not window or any(w is None for w in window):
        return None
    # one year of margin before the start: rolling windows and the previous close reach back
    return int(str(window[0])[:4]) - 1, int(str(window[1])[:4])


class RunRecorder:
    """Collects a run's manifest: created when the run starts, :meth:`write` at its end.

    At creation it notes the time, the code version, the resolved configuration, the data
    fingerprint and (``store`` given) a snapshot of the leaderboard, held in memory until
    :meth:`write`; a run that fails simply never writes (nothing to clean up).

    Parameters
    ----------
    kind : {"gp", "llm", "model", "combine", "backtest"}
    cfg : Config
        The resolved configuration (``[data] root`` is fingerprinted; the manifest goes to
        :func:`runs_dir` of it).
    argv : sequence of str, optional
        The canonical ``mine`` argv (:func:`mining.cli_app.invocation`); None for a library
        call (such a run is listed but cannot be replayed).
    settings : dataclass or mapping, optional
        The producer's effective settings.
    seeds : mapping, optional
    store : path, optional
        The leaderboard the run reads: snapshot it now.
    window : (start, end), optional
        Dates the run reads (``YYYY-MM-DD``); limits the fingerprint to those years (+1 before).
    """

    def __init__(self, kind: str, cfg, *, argv: Sequence[str] | None = None,
                 settings: Any = None, seeds: Mapping[str, Any] | None = None,
                 store: str | os.PathLike | None = None,
                 window: Sequence[str | None] | None = None):
        if kind not in KINDS:
            raise ValueError(f"run kind {kind!r} is not one of {', '.join(KINDS)}")
        self.kind = kind
        self.runs = runs_dir(cfg)
        self.created_at = _now()
        self.argv = None if argv is None else _redact([str(a) for a in argv])
        self.config = {"source": str(cfg.source) if cfg.source else None,
                       "digest": config_digest(cfg),
                       "resolved": _redact(resolved_config(cfg))}
        self.settings = _redact(to_jsonable(settings))
        self.seeds = to_jsonable(dict(seeds or {}))
        try:
            root = cfg.data.root
        except AttributeError:
            root = None
        self.data = data_fingerprint(root, years=_years(window)) if root is not None else None
        self.store = None if store is None else str(store)
        self._snapshot = _snapshot(store) if store is not None else None
        self.code = {**code_version(), "changes": code_changes_digest()}

    def write(self, run_id: str, *, results: Mapping[str, Any],
              outputs: Mapping[str, Any] | None = None,
              inputs: Mapping[str, Any] | None = None) -> Path:
        """Write ``<runs>/<run_id>/manifest.json`` (and the store snapshot); return the folder.

        The folder is written whole (:class:`data.staging.StagedDir`): a killed run leaves
        no manifest folder, only a hidden partial one the next run removes.

        ``results`` holds the run's ordered decision lists and file digests plus an optional
        ``summary``; it is made :func:`canonical` and its ``sha256`` added here.
        """
        if not _ID_OK.match(run_id):
            raise RunError(f"run id {run_id!r} cannot name a manifest folder")
        folder = self.runs / run_id
        self.runs.mkdir(parents=True, exist_ok=True)
        clean_stale(self.runs)                  # what killed runs left
        res = canonical(dict(results), run_id)
        res["sha256"] = results_digest(res)
        line = None if self.argv is None else shlex.join(["mine", *self.argv])
        with StagedDir(folder, replace=True) as stage:
            snap = None
            if self._snapshot is not None:
                blob = gzip.compress(self._snapshot, mtime=0)
                atomic_write(stage.path / SNAPSHOT, lambda tmp: Path(tmp).write_bytes(blob))
                snap = SNAPSHOT
            manifest = {
                "schema": SCHEMA_VERSION, "run_id": run_id, "kind": self.kind,
                "created_at": self.created_at, "finished_at": _now(),
                "command": {"argv": self.argv, "line": line, "cwd": str(Path.cwd())},
                "config": self.config, "settings": self.settings, "code_version": self.code,
                "data": self.data, "seeds": self.seeds,
                "inputs": {"store_snapshot": snap, "store": self.store, **dict(inputs or {})},
                "outputs": to_jsonable(dict(outputs or {})), "results": res}
            write_json_atomic(stage.path / MANIFEST, manifest)
        return folder


# ------------------------------------------------------------------------ reading
def _resolve_id(runs: Path, run_id: str) -> Path:
    how = (f"`mine runs` lists the recorded runs in {str(runs)!r} (use the --config the run "
           f"used)")
    if not run_id or not _ID_OK.match(run_id):
        raise RunError(f"{run_id!r} is not a run id; {how}")
    exact = runs / run_id
    if (exact / MANIFEST).is_file():
        return exact
    found = sorted(p for p in runs.glob(f"{run_id}*") if (p / MANIFEST).is_file()) \
        if runs.is_dir() else []
    if len(found) == 1:
        return found[0]
    if found:
        raise RunError(f"run id {run_id!r} is ambiguous ({', '.join(p.name for p in found[:5])}"
                       f"{' ...' if len(found) > 5 else ''}); give more of it")
    raise RunError(f"no recorded run {run_id!r}; {how}")


def read_manifest(runs: str | os.PathLike, run_id: str) -> tuple[dict, Path]:
    """The manifest of ``run_id`` (a unique prefix is enough) and its folder.

    Raises
    ------
    RunError
        Unknown or ambiguous id, an unreadable manifest, or a newer schema.
    """
    folder = _resolve_id(Path(runs), run_id)
    try:
        m = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunError(f"{folder / MANIFEST}: unreadable manifest ({e})") from None
    if not isinstance(m, dict) or m.get("schema", 0) > SCHEMA_VERSION:
        raise RunError(f"{folder / MANIFEST}: manifest schema {m.get('schema')!r} is newer than "
                       f"this alphamine reads ({SCHEMA_VERSION}); upgrade alphamine")
    return m, folder


def list_manifests(runs: str | os.PathLike, kind: str | None = None) -> list[dict]:
    """One summary per recorded run in ``runs`` (oldest first): ``run_id, kind, created_at,
    command, commit, dirty, results_sha256, summary, replayable`` (a run recorded from a
    library call has no command line and cannot be replayed). Unreadable manifests are
    skipped."""
    out = []
    root = Path(runs)
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.name.startswith("."):
            continue                          # a manifest being written (or a killed one)
        f = p / MANIFEST
        if not f.is_file():
            continue
        try:
            m = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if kind is not None and m.get("kind") != kind:
            continue
        cv = m.get("code_version") or {}
        cmd = m.get("command") or {}
        out.append({"run_id": m.get("run_id", p.name), "kind": m.get("kind"),
                    "created_at": m.get("created_at"), "command": cmd.get("line"),
                    "commit": cv.get("commit"), "dirty": cv.get("dirty"),
                    "results_sha256": (m.get("results") or {}).get("sha256"),
                    "summary": (m.get("results") or {}).get("summary", {}),
                    "replayable": cmd.get("argv") is not None})
    out.sort(key=lambda r: (r["created_at"] or "", r["run_id"]))
    return out
