"""``mine rerun RUN_ID``: replay a recorded run in a scratch folder and compare its results.

:func:`rerun` reads the manifest (:mod:`data.manifest`), builds a scratch folder and runs the
recorded command line again through ``launch`` (the CLI passes one that starts a fresh
``mine`` process, so nothing cached in this process can leak into the replay):

* the configuration is the recorded resolved one, written to ``<scratch>/mine.toml``, with
  every place a run writes redirected into the scratch folder: ``[store] path`` (a copy of the
  leaderboard snapshot taken when the run started, or a fresh one when there was none),
  ``[backtest] out_dir``, ``[data] cache_dir`` (panels are derived again from the
  warehouse), ``[llm] cache_path`` and, for model runs, ``[model] out_dir``. The user's
  leaderboard, ``latest`` pointer, caches and run folders are never opened for writing;
* the command line is the recorded argv with ``--config`` pointing at the scratch file, an
  explicit ``--out`` moved into the scratch folder, ``--json`` added (no progress output), a
  backtest's ``--targets`` replaced by the file the run resolved (``latest`` may point
  elsewhere now), and an LLM run turned into ``mine llm --replay RUN_ID`` against a copy of
  the LLM cache: its recorded replies are served in order with no network (a run whose
  replies are not in the cache cannot be replayed, and says so).

The replay writes its own manifest in the scratch folder; the two ``results`` digests decide
(identical or not) and the report names what differs (the first differing decision, or which
output file) and what could explain it: a different code version or uncommitted changes, a
changed warehouse (data fingerprint), configuration keys or settings that differ (a newer
alphamine may add keys with defaults), a changed targets file. The scratch folder is removed
afterwards unless ``keep``.
"""
from __future__ import annotations

import copy
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from data.config import to_toml
from data.errors import RunError
from data.manifest import (
    MANIFEST,
    file_digest,
    read_manifest,
    restore_snapshot,
    results_digest,
)
from data.provenance import fingerprint_changes

__all__ = ["REDIRECTED", "Launcher", "RerunReport", "rerun", "replay_argv", "compare"]

#: ``(section, key)`` of the configuration that the replay points into its scratch folder.
REDIRECTED = (("store", "path"), ("backtest", "out_dir"), ("data", "cache_dir"),
              ("llm", "cache_path"), ("model", "out_dir"))
#: ``launch(argv, cwd) -> (exit code, stdout, stderr)``: run ``mine *argv`` in ``cwd``.
Launcher = Callable[[list, Path], "tuple[int, str, str]"]
_VOLATILE_SETTINGS = ("out", "out_dir", "force")


@dataclass
class RerunReport:
    """What :func:`rerun` found; ``identical`` decides the exit code of ``mine rerun``."""

    run_id: str
    kind: str
    identical: bool
    command: str
    replay_argv: list[str]
    replay_run_id: str
    recorded_sha256: str
    replay_sha256: str
    differences: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recorded_summary: dict = field(default_factory=dict)
    replay_summary: dict = field(default_factory=dict)
    seconds: float = 0.0
    scratch: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


def _opt(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


def _set_opt(argv: list[str], name: str, value: str) -> list[str]:
    out = list(argv)
    out[out.index(name) + 1] = value
    return out


def replay_argv(m: Mapping[str, Any], config: Path, scratch: Path) -> list[str]:
    """The argv of the replay of manifest ``m`` (module docstring): ``--config config``, the
    recorded command with its outputs in ``scratch`` and ``--json``.

    Raises
    ------
    RunError
        A run recorded without a command line (a library call).
    """
    argv = (m.get("command") or {}).get("argv")
    if argv is None:
        raise RunError(f"run {m['run_id']} was recorded from a library call, not a `mine` "
                       "command: there is no command line to replay")
    argv = list(argv)
    i, root = 0, []
    while i < len(argv) and argv[i].startswith("-"):          # root options come first
        if argv[i] in ("--config", "-c"):
            i += 2
            continue
        root.append(argv[i])
        i += 1
    rest = argv[i:]
    if m["kind"] == "llm":
        rest = [rest[0], "--replay", _opt(rest, "--replay") or m["run_id"]]
    if "--out" in rest[:-1]:
        rest = _set_opt(rest, "--out", str(scratch / "out"))
    targets = (m.get("inputs") or {}).get("targets")
    if m["kind"] == "backtest" and targets and "--targets" in rest[:-1]:
        rest = _set_opt(rest, "--targets", targets["path"])
    if "--json" not in rest:
        rest.append("--json")
    return ["--config", str(config), *root, *rest]


def _scratch_config(m: Mapping[str, Any], folder: Path, scratch: Path) -> tuple[Path, list[str]]:
    """Write the replay's ``mine.toml`` (recorded config, outputs redirected); set up its
    leaderboard and LLM cache. Returns the file and notes for the report."""
    cfg = copy.deepcopy(m["config"]["resolved"])
    notes = []
    store = scratch / "store" / "leaderboard.db"
    store.parent.mkdir(parents=True)
    if m["inputs"].get("store_snapshot"):
        restore_snapshot(folder, store)
        notes.append("leaderboard: the snapshot taken when the run started (a scratch copy)")
    elif m["kind"] in ("gp", "llm", "combine") or m["inputs"].get("store"):
        notes.append("leaderboard: empty, as when the run started")
    targets = {"store": ("path", store), "backtest": ("out_dir", scratch / "backtest"),
               "data": ("cache_dir", scratch / "cache"),
               "llm": ("cache_path", scratch / "llm_cache.db")}
    if m["kind"] == "model":
        targets["model"] = ("out_dir", scratch / "models")
    if m["kind"] == "llm":
        src = Path((cfg.get("llm") or {}).get("cache_path", ""))
        if not src.is_file():
            raise RunError(f"LLM run {m['run_id']} cannot be replayed: its LLM cache {str(src)!r} "
                           "is gone (the replay serves the recorded replies from it)")
        a, b = sqlite3.connect(str(src)), sqlite3.connect(str(scratch / "llm_cache.db"))
        try:
            a.backup(b)
        finally:
            a.close()
            b.close()
        notes.append(f"LLM: the run's recorded replies served from a copy of {src} (no "
                     "network)")
    for section, (key, value) in targets.items():
        if section in cfg:
            cfg[section][key] = str(value)
    path = scratch / "mine.toml"
    path.write_text(to_toml(cfg), encoding="utf-8")
    return path, notes


def _short(v: Any, n: int = 120) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _diff_item(x: Any, y: Any) -> str:
    if isinstance(x, dict) and isinstance(y, dict):
        keys = [k for k in dict.fromkeys([*x, *y]) if x.get(k) != y.get(k)]
        return "; ".join(f"{k} {_short(x.get(k))} -> {_short(y.get(k))}" for k in keys)
    return f"{_short(x)} -> {_short(y)}"


def _diff_results(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    out = []
    for key in [k for k in dict.fromkeys([*a, *b]) if k not in ("sha256", "summary")]:
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        if key == "files" and isinstance(x, dict) and isinstance(y, dict):
            for name in dict.fromkeys([*x, *y]):
                fx, fy = x.get(name) or {}, y.get(name) or {}
                if fx != fy:
                    out.append(f"file {name}: content differs (rows {fx.get('rows')} recorded, "
                               f"{fy.get('rows')} in the replay)")
        elif isinstance(x, list) and isinstance(y, list):
            i = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), None)
            if i is not None:
                out.append(f"{key}[{i}] (first difference): {_diff_item(x[i], y[i])}")
            if len(x) != len(y):
                out.append(f"{key}: {len(x)} recorded, {len(y)} in the replay")
        else:
            out.append(f"{key}: {_short(x)} -> {_short(y)}")
    return out


def _code_warnings(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    out = []
    a, b = a or {}, b or {}
    if (a.get("commit"), a.get("package")) != (b.get("commit"), b.get("package")):
        out.append(f"code version: the run used {a.get('commit') or 'no git commit'} (package "
                   f"{a.get('package')}), the replay {b.get('commit') or 'no git commit'} "
                   f"(package {b.get('package')})")
    if a.get("changes") != b.get("changes"):
        who = {(True, True): "the run and the replay ran with different uncommitted changes",
               (True, False): "the run had uncommitted changes, the replay none",
               (False, True): "the replay ran with uncommitted changes, the run had none"}
        out.append("code version: " + who[(bool(a.get("changes")), bool(b.get("changes")))]
                   + " (git diff HEAD + untracked .py files)")
    return out


def _config_warnings(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    skip = set(REDIRECTED)
    out = []
    for sec in dict.fromkeys([*a, *b]):
        x, y = a.get(sec) or {}, b.get(sec) or {}
        for key in dict.fromkeys([*x, *y]):
            if (sec, key) not in skip and x.get(key) != y.get(key):
                out.append(f"config [{sec}] {key}: {_short(x.get(key), 60)} recorded, "
                           f"{_short(y.get(key), 60)} in the replay")
    return out


def compare(recorded: Mapping[str, Any], replay: Mapping[str, Any]
            ) -> tuple[bool, list[str], list[str]]:
    """``(identical, differences, warnings)`` of two manifests of the same command.

    ``identical``: the replay's results digest equals the digest recomputed from the recorded
    results (a manifest edited after the run is caught and warned about).
    """
    ra, rb = recorded["results"], replay["results"]
    sha = results_digest(ra)
    warnings = []
    if sha != ra.get("sha256"):
        warnings.append("the recorded results do not match their digest: the manifest was "
                        "edited after the run")
    identical = sha == rb.get("sha256")
    differences = [] if identical else (_diff_results(ra, rb)
                                        or ["the results digests differ"])
    warnings += _code_warnings(recorded.get("code_version"), replay.get("code_version"))
    if recorded.get("data") and replay.get("data"):
        warnings += [f"data: {x}" for x in fingerprint_changes(recorded["data"], replay["data"])]
    warnings += _config_warnings(recorded["config"]["resolved"], replay["config"]["resolved"])
    sa, sb = recorded.get("settings") or {}, replay.get("settings") or {}
    if isinstance(sa, dict) and isinstance(sb, dict):
        for k in dict.fromkeys([*sa, *sb]):
            if k not in _VOLATILE_SETTINGS and sa.get(k) != sb.get(k):
                warnings.append(f"settings {k}: {_short(sa.get(k), 60)} recorded, "
                                f"{_short(sb.get(k), 60)} in the replay")
    return identical, differences, warnings


def rerun(run_id: str, runs: str | Path, *, launch: Launcher, keep: bool = False,
          on_progress: Callable[[str], None] | None = None) -> RerunReport:
    """Replay recorded run ``run_id`` (a unique prefix is enough) and compare its results.

    Parameters
    ----------
    run_id : str
    runs : path
        The runs folder (:func:`data.manifest.runs_dir` of the current configuration).
    launch : callable
        ``launch(argv, cwd) -> (exit code, stdout, stderr)`` runs ``mine *argv``.
    keep : bool, default False
        Keep the scratch folder (its path is in the report) instead of removing it.
    on_progress : callable(str), optional

    Returns
    -------
    RerunReport

    Raises
    ------
    RunError
        Unknown run id, a run without a command line, an LLM run whose cache is gone, or a
        replay that failed (its last error line is in the message).
    """
    say = on_progress or (lambda s: None)
    m, folder = read_manifest(runs, run_id)
    run_id = m["run_id"]
    t0 = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f"alphamine-rerun-{run_id[:40]}-"))
    try:
        cfg_path, notes = _scratch_config(m, folder, scratch)
        argv = replay_argv(m, cfg_path, scratch)
        warnings = []
        targets = (m.get("inputs") or {}).get("targets")
        if targets and targets.get("path"):
            now = file_digest(targets["path"])
            if now.get("missing"):
                raise RunError(f"backtest {run_id} cannot be replayed: its targets file "
                               f"{targets['path']!r} is gone")
            if now.get("sha256") != targets.get("sha256"):
                warnings.append(f"input: the targets file {targets['path']} changed since the "
                                "run")
        cwd = Path(m["command"].get("cwd") or ".")
        if not cwd.is_dir():
            cwd = Path.cwd()
        say(f"replaying {m['kind']} run {run_id} in {scratch}")
        rc, _out, err = launch(argv, cwd)
        if rc != 0:
            lines = [ln for ln in (err or "").splitlines() if ln.strip()]
            raise RunError(f"the replay of {run_id} failed (exit {rc}): "
                           f"{lines[-1].strip() if lines else 'no message'}")
        found = sorted(f for f in (scratch / "store" / "runs").glob(f"*/{MANIFEST}")
                       if not f.parent.name.startswith("."))
        if len(found) != 1:
            raise RunError(f"the replay of {run_id} wrote {len(found)} manifests in "
                           f"{scratch / 'store' / 'runs'} (expected one)")
        new = json.loads(found[0].read_text(encoding="utf-8"))
        identical, differences, more = compare(m, new)
        drift = (new["results"].get("summary") or {}).get("drift")
        if drift:
            notes.append(f"LLM: {drift} request(s) of the replay had prompts that differ from "
                         "the recorded ones (served the recorded replies anyway)")
        return RerunReport(
            run_id=run_id, kind=m["kind"], identical=identical,
            command=m["command"].get("line") or "", replay_argv=["mine", *argv],
            replay_run_id=new["run_id"], recorded_sha256=results_digest(m["results"]),
            replay_sha256=new["results"]["sha256"], differences=differences,
            warnings=warnings + more, notes=notes,
            recorded_summary=m["results"].get("summary") or {},
            replay_summary=new["results"].get("summary") or {},
            seconds=round(time.perf_counter() - t0, 2), scratch=str(scratch) if keep else None)
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
