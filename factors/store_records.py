"""Leaderboard records and the admission gate (no database access).

:class:`FactorRecord`, :class:`GateDecision`, :class:`RunRecord`, the pure gate function
:func:`gate`, :func:`to_frame` and the JSON/metric validation helpers used by
:class:`factors.store.FactorStore`. Everything here is re-exported by :mod:`factors.store`,
which stays the public import path.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from factors.errors import StoreError
from factors.trials import TrialCharge

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


#: Allowed values of :attr:`FactorRecord.source` and of a run's source.
SOURCES: tuple[str, ...] = ("library", "gp", "llm", "model", "manual")
#: Allowed run statuses.
RUN_STATUSES: tuple[str, ...] = ("running", "done", "failed", "interrupted")
#: Metrics ranked by absolute value in :meth:`FactorStore.top` (a strong negative IC is as
#: useful as a positive one: the factor is simply used with its sign flipped).
ABS_METRICS: frozenset[str] = frozenset(
    {"rank_ic_mean", "ic_mean", "rank_icir", "icir", "ls_sharpe", "ls_ann_return"})
#: Metric names always offered as sort keys and columns, in display order.
STANDARD_METRICS: tuple[str, ...] = ("rank_ic_mean", "rank_icir", "ic_mean", "icir", "turnover",
                                     "ls_sharpe", "ls_ann_return", "coverage")
#: Rejection classes counted per run (``runs.rejections``). ``"min_rank_ic"`` is the old name
#: of ``"below_floor"`` (runs recorded before the rename keep it in their counters).
REJECTION_CLASSES: tuple[str, ...] = ("duplicate", "no_valid_metrics", "below_floor",
                                      "sign_flip", "haircut", "correlation")
#: Old rejection kinds -> current ones (for reading counters of older runs).
LEGACY_KINDS: dict[str, str] = {"min_rank_ic": "below_floor"}
_SPLIT_ORDER = ("train", "valid", "test")
_FRAME_DEFAULT_METRICS = ("train_rank_ic_mean", "train_rank_icir", "valid_rank_ic_mean",
                          "valid_rank_icir", "valid_turnover", "valid_ls_sharpe")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _num(v: Any) -> float | None:
    """A real number as float (NaN/inf -> None), None -> None; TypeError otherwise."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer,
                                                              np.floating)):
        raise TypeError(type(v).__name__)
    x = float(v)
    return x if math.isfinite(x) else None


def _jsonable(obj: Any, where: str) -> Any:
    """Convert ``obj`` to plain JSON types (NaN/inf -> None); StoreError on anything else."""
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, where)
    raise StoreError(f"{where}: value of type {type(obj).__name__} cannot be stored as JSON "
                     f"(use numbers, strings, lists and dicts)")


def _dumps(obj: Any, where: str) -> str:
    return json.dumps(_jsonable(obj, where), allow_nan=False, ensure_ascii=False)


def _clean_metrics(metrics: Any, where: str) -> dict[str, dict[str, float | None]]:
    """Validate ``{split: {metric: number|None}}``; NaN/inf -> None, numbers -> float."""
    if not isinstance(metrics, Mapping):
        raise StoreError(f"{where} must be a dict split -> {{metric: value}}, "
                         f"got {type(metrics).__name__}")
    out: dict[str, dict[str, float | None]] = {}
    for split, values in metrics.items():
        if not isinstance(split, str) or not split or "." in split:
            raise StoreError(f"{where}: bad split name {split!r} (non-empty, no '.')")
        if not isinstance(values, Mapping):
            raise StoreError(f"{where}[{split!r}] must be a dict metric -> value")
        clean: dict[str, float | None] = {}
        for name, v in values.items():
            if not isinstance(name, str) or not name:
                raise StoreError(f"{where}[{split!r}]: bad metric name {name!r}")
            if isinstance(v, (Mapping, list, tuple, np.ndarray)):
                # Series-valued metrics (IC decay by horizon, quantile returns) stay as JSON.
                clean[name] = _jsonable(v, f"{where}[{split!r}][{name!r}]")
                continue
            try:
                clean[name] = _num(v)
            except TypeError:
                raise StoreError(f"{where}[{split!r}][{name!r}] must be a number, None, or a "
                                 f"list/dict of numbers, got {v!r}") from None
        out[split] = clean
    return out


@dataclass
class FactorRecord:
    """One factor on (or proposed to) the leaderboard.

    Attributes
    ----------
    formula : str
        Canonical formula text; unique together with ``universe`` and ``horizon``.
    name, description : str
    source : {"library", "gp", "llm", "model", "manual"}
    universe : str
        Universe the metrics were computed on (``"csi300"``...).
    horizon : int
        Forward-return horizon in trading days (> 0).
    metrics : dict
        ``{split: {metric: float or None}}`` (``"train"``, ``"valid"``); NaN is stored as
        ``None``. ``"test"`` is only ever set by :meth:`FactorStore.record_test`.
    provenance : dict
        Free-form JSON: ``run_id``, ``seed``, ``generation``, ``config``, ``data_root``,
        ``template``, ``model``, ``round``, ``rationale``...
    n_tried : int
        Set by the store on insertion: the number of distinct trials (formulas evaluated on
        valid, by every run and producer) of this universe and horizon in the trial ledger
        when the record was accepted, itself included (>= 0; the value a caller passes is
        replaced). Records stored before schema version 3 keep their producer's own count.
    adj_p, haircut : float or None, str or None
        Set by the store on insertion: the multiple-testing adjusted p-value of the valid
        RankIC over those ``n_tried`` trials and the method used (:mod:`factors.trials`);
        ``None`` for records stored before schema version 3.
    id, created_at, test_unsealed_at : int, str, str or None
        Set by the store: row id, ISO-8601 UTC insertion time, and the time test metrics were
        first recorded (``None`` while the test split is sealed).

    Raises
    ------
    StoreError
        On an unknown ``source``, ``horizon < 1``, ``n_tried < 0`` or an empty
        ``formula``/``name``/``universe``.
    """

    formula: str
    name: str
    source: str
    universe: str
    horizon: int
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    n_tried: int = 0
    description: str = ""
    id: int | None = None
    created_at: str | None = None
    test_unsealed_at: str | None = None
    adj_p: float | None = None
    haircut: str | None = None

    def __post_init__(self) -> None:
        for attr in ("formula", "name", "universe"):
            v = getattr(self, attr)
            if not isinstance(v, str) or not v.strip():
                raise StoreError(f"FactorRecord.{attr} must be a non-empty string, got {v!r}")
        if self.source not in SOURCES:
            raise StoreError(f"FactorRecord.source {self.source!r} is not one of "
                             f"{', '.join(SOURCES)}")
        for attr, lo in (("horizon", 1), ("n_tried", 0)):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise StoreError(f"FactorRecord.{attr} must be an integer >= {lo}, got {v!r}")
            setattr(self, attr, int(v))
        if not isinstance(self.provenance, Mapping):
            raise StoreError("FactorRecord.provenance must be a dict")

    @property
    def run_id(self) -> str | None:
        """The producing run's id (``provenance["run_id"]``), or ``None``."""
        rid = self.provenance.get("run_id")
        return None if rid is None else str(rid)

    def metric(self, split: str, name: str) -> float | None:
        """Return ``metrics[split][name]`` or ``None`` when absent."""
        return (self.metrics.get(split) or {}).get(name)


@dataclass(frozen=True)
class GateDecision:
    """Outcome of the admission gates.

    ``reason`` names the failing value and threshold (or member); ``max_abs_corr`` is the largest
    finite ``|corr|`` over the members considered and ``most_correlated`` that member's formula
    (``None`` if none); ``kind`` is ``"accepted"``, ``"forced"`` or one of
    :data:`REJECTION_CLASSES`; ``id`` is the new row id (accepted by :meth:`FactorStore.add`) or
    the existing one (``kind="duplicate"``). For ``kind="correlation"``, ``member`` is the
    offending member's formula and ``member_id`` / ``member_name`` its row id and name when the
    caller (:meth:`FactorStore.add`) knows them. For ``kind="forced"``, ``would_be`` is the
    kind the gate would have given (``None`` when it would have accepted). ``charge`` is the
    multiple-testing charge (trials counted, raw and adjusted p) when the caller computed one
    (:meth:`FactorStore.add` always does).
    """

    accepted: bool
    reason: str
    max_abs_corr: float | None = None
    most_correlated: str | None = None
    kind: str = "accepted"
    id: int | None = None
    member: str | None = None
    member_id: int | None = None
    member_name: str | None = None
    would_be: str | None = None
    charge: TrialCharge | None = None

    @property
    def n_tried(self) -> int | None:
        """Trials counted for the candidate's universe and horizon (None without a charge)."""
        return None if self.charge is None else self.charge.n_tried

    @property
    def adj_p(self) -> float | None:
        """The candidate's adjusted p-value (None without a charge)."""
        return None if self.charge is None else self.charge.adj_p


@dataclass(frozen=True)
class RunRecord:
    """One mining run (see :meth:`FactorStore.start_run`); counters cover gate decisions."""

    run_id: str
    source: str
    status: str
    seed: int | None
    universe: str | None
    data_root: str | None
    config: dict[str, Any]
    summary: dict[str, Any] | None
    n_tried: int
    n_evaluated: int
    n_accepted: int
    rejections: dict[str, int]
    started_at: str
    finished_at: str | None
    n_new_trials: int = 0           # trial-ledger rows this run recorded first (schema >= 3)
    pid: int | None = None                 # the process running it (schema 5 on)
    host: str | None = None                # its host (data.procs.HOST)
    heartbeat_at: str | None = None        # when it last reported (UTC ISO)


def train_sign(record: FactorRecord) -> float:
    """Direction of ``record`` decided on train: ``-1.0`` if its train ``rank_ic_mean`` is
    finite and negative, else ``+1.0`` (also when train metrics are missing)."""
    try:
        v = _num(record.metric("train", "rank_ic_mean"))
    except TypeError:
        v = None
    return -1.0 if v is not None and v < 0 else 1.0


def ic_check(record: FactorRecord, min_valid_rank_ic: float = 0.01
             ) -> tuple[str | None, str]:
    """The sign-consistent RankIC rules of :func:`gate` (rules 1-3), without correlations.

    Returns ``(None, text)`` when the record passes, else ``(kind, reason)`` with kind
    ``"no_valid_metrics"``, ``"sign_flip"`` or ``"below_floor"``. Used by :func:`gate` and by
    the combination's member selection (:func:`backtest.combine.combine_from_store`).
    """
    try:
        ic = _num(record.metric("valid", "rank_ic_mean"))
    except TypeError:
        ic = None
    if ic is None:
        return "no_valid_metrics", "no valid metrics: valid rank_ic_mean is missing or NaN"
    try:
        tr = _num(record.metric("train", "rank_ic_mean"))
    except TypeError:
        tr = None
    if tr is None or tr == 0.0:
        # No train direction: decide on valid alone (oriented by its own sign).
        if abs(ic) < min_valid_rank_ic:
            return "below_floor", (f"valid |rank_ic_mean| = |{ic:+.4f}| is below "
                                   f"min_valid_rank_ic {min_valid_rank_ic:g} (no train metrics)")
        return None, f"valid rank_ic_mean {ic:+.4f} (no train metrics)"
    sign = 1.0 if tr > 0 else -1.0
    oriented = ic * sign
    if oriented < 0 and abs(ic) >= min_valid_rank_ic:
        return "sign_flip", (f"sign flip: train rank_ic_mean {tr:+.4f} but valid "
                             f"{ic:+.4f} (the factor would be traded against its valid "
                             f"evidence)")
    if oriented < min_valid_rank_ic:
        return "below_floor", (f"oriented valid rank_ic_mean {oriented:+.4f} (valid {ic:+.4f} "
                               f"x train sign {sign:+.0f}) is below min_valid_rank_ic "
                               f"{min_valid_rank_ic:g}")
    return None, f"oriented valid rank_ic_mean {oriented:+.4f} (train {tr:+.4f})"


def gate(record: FactorRecord, correlations: Mapping[str, float], *, max_corr: float = 0.7,
         min_valid_rank_ic: float = 0.01, member_info: Mapping[str, tuple[int, str]] | None = None,
         charge: TrialCharge | None = None, max_adj_p: float = 0.05) -> GateDecision:
    """Apply the leaderboard admission gates to ``record`` (pure: no database access).

    The direction is decided on train: ``sign = sign(train rank_ic_mean)`` (GP/LLM candidates
    are oriented so that it is ``+1``; library factors may be ``-1``), and the valid evidence
    must agree with it. Rules, in order:

    1. ``metrics["valid"]["rank_ic_mean"]`` present and finite, else ``"no_valid_metrics"``;
    2. ``valid x sign < 0`` with ``|valid| >= min_valid_rank_ic``: the valid RankIC contradicts
       the train direction, ``"sign_flip"``;
    3. ``valid x sign >= min_valid_rank_ic`` (the *oriented* valid RankIC), else
       ``"below_floor"`` (called ``"min_rank_ic"`` before; old run counters keep that name);
    4. with a ``charge``: the multiple-testing adjusted p-value of the oriented valid RankIC
       over every trial of the universe and horizon ``<= max_adj_p``, else ``"haircut"``; the
       reason names the method, the adjusted and raw p and the number of trials
       (:mod:`factors.trials`);
    5. ``max |corr| < max_corr``, else ``"correlation"``; the reason names the member and
       :attr:`GateDecision.member` (plus ``member_id`` / ``member_name`` from ``member_info``)
       identifies it.

    A record without a finite, non-zero train ``rank_ic_mean`` is decided on valid alone:
    rule 2 does not apply and rule 3 uses ``|valid|``.

    Parameters
    ----------
    record : FactorRecord
    correlations : mapping of str to float
        Member formula -> mean daily cross-sectional rank correlation with the candidate on the
        valid split, computed by the caller. NaN and ``None`` entries are ignored.
    max_corr : float, default 0.7
        Rejection threshold on ``|corr|``, in ``(0, 1]``.
    min_valid_rank_ic : float, default 0.01
        Floor on the oriented valid RankIC, ``>= 0``.
    member_info : mapping of str to (int, str), optional
        Member formula -> (row id, name), to name the member of a correlation rejection.
    charge : TrialCharge, optional
        The candidate's multiple-testing charge (:meth:`FactorStore.add` computes it from the
        trial ledger); without one rule 4 is skipped.
    max_adj_p : float, default 0.05
        Largest adjusted p-value admitted, in ``(0, 1]``.

    Returns
    -------
    GateDecision

    Raises
    ------
    StoreError
        On thresholds out of range or a non-numeric / infinite correlation.
    """
    if not (0.0 < float(max_corr) <= 1.0):
        raise StoreError(f"max_corr must be in (0, 1], got {max_corr!r}")
    if not (float(min_valid_rank_ic) >= 0.0):
        raise StoreError(f"min_valid_rank_ic must be >= 0, got {min_valid_rank_ic!r}")
    if not (0.0 < float(max_adj_p) <= 1.0):
        raise StoreError(f"max_adj_p must be in (0, 1], got {max_adj_p!r}")
    best, best_f = None, None
    for member, c in correlations.items():
        try:
            x = math.nan if c is None else float(c)
        except (TypeError, ValueError):
            raise StoreError(f"correlation with {member!r} must be a number, got {c!r}") from None
        if math.isnan(x):
            continue
        if not abs(x) <= 1.0 + 1e-9:
            raise StoreError(f"correlation with {member!r} is {c}; expected a value in [-1, 1]")
        if best is None or abs(x) > best:
            best, best_f = abs(x), str(member)

    def decide(accepted: bool, reason: str, kind: str, **kw: Any) -> GateDecision:
        return GateDecision(accepted, reason, best, best_f, kind, charge=charge, **kw)

    kind, text = ic_check(record, min_valid_rank_ic)
    if kind is not None:
        return decide(False, text, kind)
    if charge is not None:
        if not charge.adj_p <= max_adj_p:
            return decide(False, f"haircut for the trials counted: {charge.describe()} is above "
                                 f"max_adj_p {max_adj_p:g}", "haircut")
        text = f"{text}, {charge.describe()}"
    if best is not None and best >= max_corr:
        mid, mname = (member_info or {}).get(best_f, (None, None))
        # the id and formula identify the member; its name carries a run id, which would make
        # the reason differ between a run and its replay into a fresh store
        who = f"member id {mid} ({best_f!r})" if mid is not None else f"member {best_f!r}"
        return decide(False, f"|corr| = {best:.4f} with {who} is not below "
                             f"max_corr {max_corr:g}", "correlation",
                      member=best_f, member_id=mid, member_name=mname)
    tail = f", max |corr| {best:.4f} with {best_f!r}" if best is not None else ""
    return decide(True, f"accepted: {text}{tail}", "accepted")


def _metric_rank(name: str) -> tuple[int, str]:
    return (STANDARD_METRICS.index(name) if name in STANDARD_METRICS else len(STANDARD_METRICS),
            name)


def to_frame(records: list[FactorRecord],
             current: Mapping[int, TrialCharge] | None = None) -> pd.DataFrame:
    """Flatten records into one row each (for the CLI's ``--csv`` / ``--json``).

    Columns: ``id, name, source, formula, universe, horizon``, then ``<split>_<metric>``
    (always ``train_rank_ic_mean, train_rank_icir, valid_rank_ic_mean, valid_rank_icir,
    valid_turnover, valid_ls_sharpe``, plus every other stored metric, train/valid/test first,
    float64 with NaN for missing), then ``haircut, adj_p`` (method and adjusted p-value at
    acceptance), with ``current`` (record id -> charge against today's trial ledger,
    :meth:`FactorStore.charges`) ``adj_p_now, n_tried_now``, then ``n_tried`` (trials at
    acceptance), ``created_at, run_id, test_unsealed_at, description``. Row order follows
    ``records``.
    """
    import pandas as pd

    split_rank = {s: i for i, s in enumerate(_SPLIT_ORDER)}
    cols: dict[str, tuple[str, str]] = {c: tuple(c.split("_", 1))  # type: ignore[misc]
                                        for c in _FRAME_DEFAULT_METRICS}
    found = sorted({(split_rank.get(s, 9), s, _metric_rank(m), m)
                    for r in records for s, vals in r.metrics.items() for m, v in vals.items()
                    if v is None or isinstance(v, (int, float))})  # scalar metrics only
    for _, s, _, m in found:
        cols.setdefault(f"{s}_{m}", (s, m))
    data: dict[str, Any] = {
        "id": pd.array([r.id for r in records], dtype="Int64"),
        "name": [r.name for r in records], "source": [r.source for r in records],
        "formula": [r.formula for r in records], "universe": [r.universe for r in records],
        "horizon": np.array([r.horizon for r in records], dtype=np.int64),
    }
    for col, (split, metric) in cols.items():
        vals = [r.metric(split, metric) for r in records]
        data[col] = np.array([np.nan if v is None else v for v in vals], dtype=np.float64)
    data["haircut"] = [r.haircut for r in records]
    data["adj_p"] = np.array([np.nan if r.adj_p is None else r.adj_p for r in records],
                             dtype=np.float64)
    if current is not None:
        now = [current.get(r.id) if r.id is not None else None for r in records]
        data["adj_p_now"] = np.array([np.nan if c is None else c.adj_p for c in now],
                                     dtype=np.float64)
        data["n_tried_now"] = pd.array([None if c is None else c.n_tried for c in now],
                                       dtype="Int64")
    data["n_tried"] = np.array([r.n_tried for r in records], dtype=np.int64)
    data["created_at"] = [r.created_at for r in records]
    data["run_id"] = [r.run_id for r in records]
    data["test_unsealed_at"] = [r.test_unsealed_at for r in records]
    data["description"] = [r.description for r in records]
    return pd.DataFrame(data)
