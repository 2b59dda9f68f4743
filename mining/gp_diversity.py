"""Pool-aware GP: the diversity hook of the GP engine and the diverse selection walk's measure.

Why (issue 14): on CSI300 the population converges on short-term reversal and the gate rejects
~90 of 100 evaluated programs for ``|corr| >= [store] max_corr`` with a member. Three remedies,
all computed on a fixed sample of TRAIN dates only:

* :class:`Diversity` -- the ``DiversityHook`` of :func:`mining.gp_engine.evolve`:

  - ``signature(values)``: a semantic key of a panel: the cross-sectional ranks on the sample,
    quantised to ``bits`` bits, hashed (``hashlib.blake2b``); a monotone transform of a panel
    and its negation give the same key (orientation: the smaller of the keys of ``x`` and
    ``-x``), so the engine de-duplicates programs by what they compute, not how they are
    written;
  - ``penalty(values)`` in [0, 1]: ``mode="max_corr"`` (default) the largest ``|corr|`` with
    the pool (leaderboard members) and the hall of fame; ``mode="marginal"`` the AlphaGen pool
    reward (Yu et al., "Generating Synergistic Formulaic Alpha Collections via Reinforcement
    Learning", KDD 2023): a candidate is worth the increase of the pool's combined IC when it
    is added; here the combination is a least-squares fit of the label's ranks on the factors'
    ranks over the sample (pooled over dates), the IC its mean daily correlation with the
    label's ranks, and the penalty ``1 - clip(gain / |IC of the candidate alone|, 0, 1)`` (so
    that ``|IC| x (1 - penalty)`` is about the gain; an empty pool gives 0);
  - ``admit(expr, values, fitness)``: a hall of fame of ``hof`` programs, the fittest whose
    mutual ``|corr|`` stays under ``threshold`` (gplearn's ``SymbolicTransformer``
    ``hall_of_fame`` / ``n_components`` idea: keep the best, drop the correlated); it joins the
    pool in ``penalty``, so the search is pushed away from what it has already found. A
    program is not penalised for its own entry (same signature).

* :meth:`Diversity.corr_many` -- the measure of the diverse selection walk of
  :func:`mining.gp_run.mine_gp` (:func:`diverse_walk`): candidates are skipped before any look
  at valid when they duplicate (signature) or correlate (``>= [store] max_corr``) on the train
  sample with one already sent to valid or with a member.

The measure: Spearman rank correlation (Spearman 1904) averaged over the sample dates. Each
panel is rank-transformed once on the sample (:func:`factors._kernels_cs.rank_rows` along
the names, ties averaged, eligible and finite names only); the correlation of two panels on a date is the
Pearson correlation of these ranks over the names finite in both (equal to Spearman's when the
two cover the same names, a close approximation otherwise), computed for a whole pool at once
as batched matrix products; dates with fewer than 3 common names are left out of the mean. The sample is
``n_dates`` evenly spaced rows of the split (all of its eligible names), so the cost of a
comparison does not grow with the history. Nothing here reads a row outside the split: rows
after the split's end may hold anything (causality).

Size: one topic, the train-sample measure; the walk and the hook share its rank arrays.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from backtest.context import EvalContext
from factors._kernels_cs import rank_rows
from mining.gp_linalg import corr_sums, gram, rank_codes, solve_psd, vdot, x_dot, xt_dot

__all__ = ["Diversity", "DIVERSITY_MODES", "WalkResult", "diverse_walk"]

#: Values of ``[gp] diversity`` (``"none"``: no hook, no skipping in the walk).
DIVERSITY_MODES = ("max_corr", "marginal", "none")

_MIN_NAMES = 3


@dataclass
class _Ranked:
    """A panel on the sample: ranks scaled to (0, 1] (0 where missing) and the valid mask."""

    r: np.ndarray          # (S, N) float64
    m: np.ndarray          # (S, N) float64 0/1
    raw: np.ndarray | None = None   # (S, N) ranks 1..n (ties averaged), 0 where missing
    n: np.ndarray | None = None     # (S, 1) names ranked per date


def _stack(items: list[_Ranked]) -> tuple[np.ndarray, np.ndarray]:
    if not items:
        return np.zeros((0, 0, 0)), np.zeros((0, 0, 0))
    return np.stack([x.r for x in items]), np.stack([x.m for x in items])


def _mirror(a: _Ranked) -> np.ndarray:
    """The raw ranks of the negated panel: ``n + 1 - rank`` (exact for averaged ties), 0 where
    missing."""
    return np.where(a.m > 0, a.n + 1 - a.raw, 0.0)


@dataclass
class _HofEntry:
    expr: Any
    fitness: float
    sig: bytes
    ranked: _Ranked


class Diversity:
    """Diversity hook of the GP engine, on a fixed sample of one split's dates.

    Parameters
    ----------
    ctx : EvalContext
        The GP's context (dates x codes of the panels the engine evaluates); only the rows of
        ``split`` are sampled.
    pool : mapping of str -> ndarray (T', N), or iterable of (str, ndarray) pairs
        Existing leaderboard members' values (formula -> panel aligned with ``ctx``, at least
        up to the end of the split; rows after it are ignored). Each panel is read once, for
        its ranks on the sampled dates, and not kept: an iterator that evaluates one member at
        a time holds one member panel at a time.
    split : str
        The split sampled (default ``"train"``; the engine's fitness split).
    n_dates : int
        Sample size: evenly spaced rows of the split (all rows when it is shorter), >= 1.
    hof : int
        Hall-of-fame size (0: no hall of fame).
    threshold : float
        ``|corr|`` at or above which two programs are redundant (hall of fame; the walk uses
        ``[store] max_corr``), in (0, 1].
    mode : {"max_corr", "marginal"}
        What :meth:`penalty` measures (module docstring).
    bits : int
        Quantisation of the ranks in :meth:`signature` (1..16).

    Every panel given to a method is a (T', N) float array aligned with ``ctx`` that covers
    the sampled rows (``T' > rows[-1]``; later rows are ignored); non-finite values and
    ineligible names are missing and take no part (a date with fewer than 3 common names
    leaves the mean). Methods raise ValueError for a panel of another shape. The ranks of the
    last panel are remembered by identity, so a panel must not be changed in place once given.
    Not thread-safe (one hook per engine process).

    Raises
    ------
    ValueError
        Unknown ``mode``, a split without rows, or a value out of range.
    """

    def __init__(self, ctx: EvalContext,
                 pool: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]] | None = None,
                 *,
                 split: str = "train", n_dates: int = 60, hof: int = 20,
                 threshold: float = 0.7, mode: str = "max_corr", bits: int = 8):
        if mode not in ("max_corr", "marginal"):
            raise ValueError(f"diversity mode must be max_corr or marginal, got {mode!r}")
        if n_dates < 1 or hof < 0 or not 0 < threshold <= 1 or not 1 <= bits <= 16:
            raise ValueError("n_dates >= 1, hof >= 0, threshold in (0, 1], bits in 1..16")
        lo, hi = ctx.split_bounds(split)
        if hi <= lo:
            raise ValueError(f"the {split} split of the GP context has no row")
        k = min(int(n_dates), hi - lo)
        self.rows = np.unique(np.round(np.linspace(lo, hi - 1, k)).astype(np.int64))
        self.eligible = np.asarray(ctx.eligible[self.rows], dtype=bool)
        self.mode, self.hof_size, self.threshold, self.bits = mode, int(hof), threshold, bits
        self.pool_names: list[str] = []
        pool_ranked = []
        for name, v in (pool.items() if isinstance(pool, Mapping) else (pool or ())):
            self.pool_names.append(name)
            pool_ranked.append(self._rank(np.asarray(v, dtype=np.float64)))
        self._pool_r, self._pool_m = _stack(pool_ranked)
        if not pool_ranked:                  # (0, S, N): empty but shaped like the sample
            self._pool_r = self._pool_m = np.zeros((0,) + self.eligible.shape)
        self.hall: list[_HofEntry] = []
        self._label: _Ranked | None = None
        if mode == "marginal":
            fwd = np.asarray(ctx.fwd[ctx.horizon], dtype=np.float64)
            self._label = self._rank(fwd)     # labels of train rows end inside train (embargo)
        self._last: tuple[Any, _Ranked] | None = None
        self._version = 0                    # bumped when the hall of fame changes
        self._stack_version = -1
        self._stacked_r2: np.ndarray | None = None
        self._stacked: tuple[np.ndarray, np.ndarray] = (self._pool_r, self._pool_m)
        self._design: tuple | None = None    # marginal: the pool's regression inputs
        self._pool_ic: dict[tuple, float] = {}

    # ------------------------------------------------------------------ replicas
    def replica_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """``(arrays, params)`` from which :meth:`from_replica_state` rebuilds this hook in a
        worker (arrays ``div_*``: the sample rows and eligibility, the pool's and the label's
        sample ranks; the hall of fame travels separately, see :meth:`set_hall`)."""
        lab = self._label
        arrays = {"div_rows": self.rows, "div_eligible": self.eligible,
                  "div_pool_r": self._pool_r, "div_pool_m": self._pool_m}
        if lab is not None:
            arrays.update(div_label_r=lab.r, div_label_m=lab.m)
        return arrays, {"mode": self.mode, "hof": self.hof_size, "threshold": self.threshold,
                        "bits": self.bits}

    @classmethod
    def from_replica_state(cls, arrays: Mapping[str, np.ndarray], params: dict) -> Diversity:
        """A hook computing the same signatures and penalties (its hall set by
        :meth:`set_hall`); ``arrays`` may be read-only shared views."""
        self = cls.__new__(cls)
        self.rows, self.eligible = arrays["div_rows"], arrays["div_eligible"]
        self.mode, self.hof_size = params["mode"], params["hof"]
        self.threshold, self.bits = params["threshold"], params["bits"]
        self._pool_r, self._pool_m = arrays["div_pool_r"], arrays["div_pool_m"]
        self._label = (_Ranked(arrays["div_label_r"], arrays["div_label_m"])
                       if "div_label_r" in arrays else None)
        self.hall, self._last, self._version, self._stack_version = [], None, 0, -1
        self._stacked_r2, self._stacked = None, (self._pool_r, self._pool_m)
        self._design, self._pool_ic = None, {}
        return self

    def rank_values(self, values: np.ndarray) -> _Ranked:
        """Sample ranks of a panel (what a hall-of-fame entry keeps)."""
        return self._rank(np.asarray(values, dtype=np.float64))

    def sample_ranks(self, values: np.ndarray) -> np.ndarray:
        """A panel's ranks on the sample in compact form: ``(S, N)`` float32, 1..n with ties
        averaged, 0 where missing (exact: half-integers below 2**23). :meth:`from_sample_ranks`
        gives back what :meth:`_ranked` computes, bit for bit (the walk reads kept ranks
        instead of evaluating the program again)."""
        return self._ranked(values).raw.astype(np.float32)

    @staticmethod
    def from_sample_ranks(ranks: np.ndarray) -> _Ranked:
        """The :class:`_Ranked` of :meth:`sample_ranks` output."""
        raw = np.asarray(ranks, dtype=np.float64)
        valid = raw > 0
        n = valid.sum(axis=1, keepdims=True)
        return _Ranked(raw / np.maximum(n, 1), valid.astype(np.float64), raw, n)

    @staticmethod
    def negated_sample_ranks(ranks: np.ndarray) -> np.ndarray:
        """:meth:`sample_ranks` of ``-values`` from those of ``values``."""
        a = Diversity.from_sample_ranks(ranks)
        return _mirror(a).astype(np.float32)

    def hall_spec(self) -> tuple:
        """The hall of fame as ``((expr, fitness, signature), ...)`` (to :meth:`set_hall`)."""
        return tuple((h.expr, h.fitness, h.sig) for h in self.hall)

    def set_hall(self, entries) -> None:
        """Replace the hall of fame by ``(expr, fitness, signature, ranks)`` entries."""
        self.hall = [_HofEntry(e, f, s, r) for e, f, s, r in entries]
        self._version += 1

    # ------------------------------------------------------------------ ranks
    def _rank(self, values: np.ndarray) -> _Ranked:
        """Ranks of ``values`` on the sample rows, eligible and finite names only."""
        if values.ndim != 2 or values.shape[0] <= self.rows[-1] \
                or values.shape[1] != self.eligible.shape[1]:
            raise ValueError(f"panel of shape {values.shape} does not cover the sample rows "
                             f"(up to {self.rows[-1]}) x {self.eligible.shape[1]} names")
        x = values[self.rows]
        r = rank_rows(x, self.eligible)              # NaN exactly where not eligible or finite
        valid = np.isfinite(r)
        n = valid.sum(axis=1, keepdims=True)
        raw = np.where(valid, r, 0.0)
        return _Ranked(raw / np.maximum(n, 1), valid.astype(np.float64), raw, n)

    def _ranked(self, values: np.ndarray) -> _Ranked:
        """:meth:`_rank`, remembered for the last array (signature then penalty of one
        program rank it once; the reference kept makes ``is`` a safe identity test)."""
        if self._last is not None and self._last[0] is values:
            return self._last[1]
        out = self._rank(np.asarray(values, dtype=np.float64))
        self._last = (values, out)
        return out

    @staticmethod
    def _corr(a: _Ranked, R: np.ndarray, M: np.ndarray, R2: np.ndarray | None = None
              ) -> np.ndarray:
        """Mean daily correlation of ``a``'s ranks with each of ``R`` (P, S, N) over common
        names (``R2``: ``R * R`` when the caller keeps it); NaN where no date has 3 common
        names."""
        if R.shape[0] == 0:
            return np.zeros(0)
        ra, ma = a.r, a.m
        R2 = R * R if R2 is None else R2
        cont = np.ascontiguousarray
        n, sa, sb, saa, sbb, sab = corr_sums(cont(R), cont(M), cont(R2), cont(ra), cont(ma))
        with np.errstate(all="ignore"):
            cov = sab - sa * sb / n
            va = saa - sa * sa / n
            vb = sbb - sb * sb / n
            c = cov / np.sqrt(va * vb)
        c = np.where((n >= _MIN_NAMES) & (va > 1e-12) & (vb > 1e-12), c, np.nan)
        ok = np.isfinite(c)
        cnt = ok.sum(axis=1)
        with np.errstate(all="ignore"):
            return np.where(cnt > 0, np.where(ok, c, 0.0).sum(axis=1) / cnt, np.nan)

    # ------------------------------------------------------------------ hook
    def signature(self, values: np.ndarray) -> bytes:
        """Semantic key of a (T, N) panel: equal for rank-identical panels on the sample
        (any increasing transform) and for ``x`` and ``-x``.

        Ranks on the sample, quantised to ``bits`` bits (missing: a reserved code), hashed with
        ``blake2b`` (16 bytes): the codes of ``x`` and of ``-x`` (ranks ``n + 1 - rank``, exact
        for averaged ties too) are both computed and the lexicographically smaller is hashed
        (:func:`mining.gp_linalg.rank_codes`), so the orientation does not matter and names
        missing on every sample date do not either.
        """
        return self.signature_of(self._ranked(values))

    def signature_of(self, a: _Ranked) -> bytes:
        """:meth:`signature` from sample ranks."""
        codes = rank_codes(np.ascontiguousarray(a.raw), np.ascontiguousarray(a.n),
                           np.ascontiguousarray(a.m), (1 << self.bits) - 1)
        return hashlib.blake2b(codes.tobytes(), digest_size=16).digest()

    def _all(self) -> tuple[np.ndarray, np.ndarray]:
        """Pool plus hall of fame as (P, S, N) stacks, rebuilt only when the hall changed."""
        if self._stack_version != self._version:
            R, M = _stack([h.ranked for h in self.hall])
            if self.hall and self._pool_r.shape[0]:
                R = np.concatenate([self._pool_r, R])
                M = np.concatenate([self._pool_m, M])
            elif not self.hall:
                R, M = self._pool_r, self._pool_m
            self._stacked = (R, M)
            self._stacked_r2 = R * R
            self._stack_version = self._version
            self._design = None
        return self._stacked

    def _left_out(self, sig: bytes | None) -> tuple[int, ...]:
        """Rows of :meth:`_all` that are the program itself (its hall-of-fame entry)."""
        n_pool = self._pool_r.shape[0]
        return tuple(n_pool + i for i, h in enumerate(self.hall)
                     if sig is not None and h.sig == sig)

    def penalty(self, values: np.ndarray) -> float:
        """Redundancy of a (T, N) panel with the pool and the hall of fame, in [0, 1].

        ``max_corr``: the largest ``|mean daily rank correlation|`` on the sample (0 when both
        are empty; a program's own hall-of-fame entry is left out). ``marginal``: ``1 -
        clip(gain / |IC alone|, 0, 1)`` with ``gain`` the increase of the least-squares
        combination's IC when the panel joins the pool (AlphaGen); 1 when the panel has no IC
        on the sample.
        """
        a = self._ranked(values)
        out = self._left_out(self.signature(values) if self.hall else None)
        R, M = self._all()
        if self.mode == "marginal":
            return self._marginal_penalty(a, out)
        if R.shape[0] == 0:
            return 0.0
        c = np.abs(self._corr(a, R, M, self._stacked_r2))
        if out:
            c[list(out)] = np.nan
        c = c[np.isfinite(c)]
        return float(min(1.0, c.max())) if c.size else 0.0

    def _design_matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(X, G, Xy, y): the members' centred ranks on the labelled name-days (n, P), the
        Gram matrix X'X, X'y and the label's centred ranks y (S, N); cached with the stack."""
        R, M = self._all()
        if self._design is None:
            lab = self._label
            assert lab is not None
            ml = lab.m > 0
            y = np.where(ml, lab.r - 0.5, 0.0)
            X = np.where(M > 0, R - 0.5, 0.0)[:, ml].T.copy()       # (n, P)
            self._design = (X, gram(X), xt_dot(X, y[ml]), y)
            self._pool_ic = {}
        return self._design

    def _fit_ic(self, X: np.ndarray, G: np.ndarray, Xy: np.ndarray, y: np.ndarray,
                ml: np.ndarray) -> float:
        """Mean daily IC of the least-squares fit of ``y`` on the columns ``X`` (normal
        equations ``G beta = Xy``, :func:`mining.gp_linalg.solve_psd`: a singular ``G``, e.g.
        twin members, still gives the least-squares fit)."""
        if X.shape[1] == 0:
            return 0.0
        beta = solve_psd(G, Xy)
        pred = np.zeros_like(y)
        pred[ml] = x_dot(X, beta)
        return _mean_row_corr(pred, y, ml)

    def _marginal_penalty(self, a: _Ranked, out: tuple[int, ...]) -> float:
        X, G, Xy, y = self._design_matrix()
        ml = self._label.m > 0
        cand = np.where(a.m > 0, a.r - 0.5, 0.0)
        alone = abs(_mean_row_corr(cand, y, ml & (a.m > 0)))
        if not np.isfinite(alone) or alone <= 1e-9:
            return 1.0
        if out:
            keep = np.setdiff1d(np.arange(X.shape[1]), np.asarray(out, dtype=np.int64))
            if keep.size == 0:
                return 0.0
            Xk, Gk, Xyk = np.ascontiguousarray(X[:, keep]), G[np.ix_(keep, keep)], Xy[keep]
        elif X.shape[1] == 0:
            return 0.0
        else:
            Xk, Gk, Xyk = X, G, Xy
        if out not in self._pool_ic:          # the pool's own IC: once per set of members
            self._pool_ic[out] = self._fit_ic(Xk, Gk, Xyk, y, ml)
        c = cand[ml]
        Xc = xt_dot(Xk, c)
        G2 = np.block([[Gk, Xc[:, None]], [Xc[None, :], np.array([[vdot(c, c)]])]])
        beta = solve_psd(G2, np.append(Xyk, vdot(c, y[ml])))
        pred = np.zeros_like(y)
        pred[ml] = x_dot(Xk, beta[:-1]) + c * beta[-1]
        gain = _mean_row_corr(pred, y, ml) - self._pool_ic[out]
        if not np.isfinite(gain):
            return 1.0
        return float(1.0 - np.clip(gain / alone, 0.0, 1.0))

    def admit(self, expr: Any, values: np.ndarray, fitness: float) -> None:
        """Offer a program to the hall of fame.

        Kept when it is among the ``hof`` fittest and no kept program with ``|corr| >=
        threshold`` is at least as fit (the less fit correlated ones are dropped); a program
        correlated with a pool member at or above ``threshold`` is never kept (the pool already
        stands for it), nor one with a non-finite fitness.
        """
        if self._admissible(fitness):
            self.admit_ranked(expr, self._ranked(values), fitness)

    def _admissible(self, fitness: float) -> bool:
        return (self.hof_size > 0 and bool(np.isfinite(fitness))
                and not (len(self.hall) >= self.hof_size and fitness <= self.hall[-1].fitness))

    def admit_ranked(self, expr: Any, a: _Ranked, fitness: float) -> None:
        """:meth:`admit` from the program's sample ranks (:meth:`from_sample_ranks` of what
        the workers kept: the same ranks, so the same hall)."""
        if not self._admissible(fitness):
            return
        sig = self.signature_of(a)
        R, M = self._all()
        c = np.abs(self._corr(a, R, M, self._stacked_r2))
        n_pool = self._pool_r.shape[0]
        cp, c = c[:n_pool], c[n_pool:]
        if np.any(cp[np.isfinite(cp)] >= self.threshold):
            return
        clash = [i for i, h in enumerate(self.hall)
                 if h.sig == sig or (np.isfinite(c[i]) and c[i] >= self.threshold)]
        if any(self.hall[i].fitness >= fitness for i in clash):
            return
        for i in reversed(clash):
            del self.hall[i]
        self._version += 1
        self.hall.append(_HofEntry(expr, float(fitness), sig, a))
        self.hall.sort(key=lambda h: -h.fitness)
        del self.hall[self.hof_size:]

    # ------------------------------------------------------------------ walk
    def corr_many(self, values: np.ndarray, others: Iterable[np.ndarray]) -> np.ndarray:
        """``|mean daily rank correlation|`` of a panel with each of ``others`` (panels) on
        the sample; NaN where undefined."""
        R, M = _stack([self._rank(np.asarray(o, dtype=np.float64)) for o in others])
        return np.abs(self._corr(self._ranked(values), R, M))

    def pool_corr(self, values: np.ndarray) -> float:
        """Largest ``|corr|`` with a pool member on the sample (0 without members)."""
        return self.pool_corr_of(self._ranked(values))

    def pool_corr_of(self, a: _Ranked) -> float:
        """:meth:`pool_corr` from sample ranks."""
        if self._pool_r.shape[0] == 0:
            return 0.0
        c = np.abs(self._corr(a, self._pool_r, self._pool_m))
        c = c[np.isfinite(c)]
        return float(c.max()) if c.size else 0.0


def _mean_row_corr(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
    """Mean over rows of the Pearson correlation of ``a`` and ``b`` over ``m``."""
    mf = m.astype(np.float64)
    n = mf.sum(axis=1)
    with np.errstate(all="ignore"):
        ma = (a * mf).sum(axis=1) / n
        mb = (b * mf).sum(axis=1) / n
        da = (a - ma[:, None]) * mf
        db = (b - mb[:, None]) * mf
        c = (da * db).sum(axis=1) / np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
    c = c[(n >= _MIN_NAMES) & np.isfinite(c)]
    return float(c.mean()) if c.size else float("nan")


@dataclass
class WalkResult:
    """What :func:`diverse_walk` sent to valid and what it skipped on train."""

    picked: list[tuple[int, Any, float]] = field(default_factory=list)  # (rank, expr, fit)
    skipped_train_corr: int = 0
    skipped_duplicate: int = 0


def diverse_walk(candidates: Iterable[tuple[Any, float]], values_of: Callable[[Any], np.ndarray],
                 div: Diversity | None, max_corr: float, send: Callable[[int, Any, float], Any],
                 *, stop: Callable[[], bool],
                 ranks_of: Callable[[Any], np.ndarray | None] | None = None) -> WalkResult:
    """Walk candidates in train-fitness order; send to valid only the diverse ones.

    Selection uses the TRAIN sample of ``div`` only: a candidate is skipped (never evaluated
    on valid, never charged as a trial) when its signature equals that of one already sent
    (``skipped_duplicate``) or its ``|corr|`` with one already sent or with a pool member is
    ``>= max_corr`` (``skipped_train_corr``).

    Parameters
    ----------
    candidates : iterable of (expr, train fitness), best first
    values_of : callable
        expr -> (T, N) panel covering the sample rows (e.g. the workspace's values).
    div : Diversity or None
        Sample, signature and pool (its hall of fame is not used here); None sends every
        candidate (``[gp] diversity = "none"``: the plain walk).
    max_corr : float
        The gate's threshold (``[store] max_corr``).
    send : callable
        ``send(rank, expr, fitness)`` evaluates on valid and submits; called for survivors.
    stop : callable
        Checked before each candidate: True ends the walk (budget spent, enough accepted).
    ranks_of : callable, optional
        expr -> its :meth:`Diversity.sample_ranks` kept by the search, or None; a candidate
        with kept ranks is not evaluated again (same decisions: the ranks are the same).

    Returns
    -------
    WalkResult
    """
    out = WalkResult()
    sigs: set[bytes] = set()
    picked_r: list[_Ranked] = []
    for rank, (expr, fit) in enumerate(candidates):
        if stop():
            break
        if div is None:
            out.picked.append((rank, expr, fit))
            send(rank, expr, fit)
            continue
        kept = ranks_of(expr) if ranks_of is not None else None
        a = (div.from_sample_ranks(kept) if kept is not None
             else div._ranked(values_of(expr)))
        sig = div.signature_of(a)
        if sig in sigs:
            out.skipped_duplicate += 1
            continue
        R, M = _stack(picked_r)
        c = np.abs(div._corr(a, R, M)) if picked_r else np.zeros(0)
        worst = max([div.pool_corr_of(a)] + [float(x) for x in c if np.isfinite(x)])
        if worst >= max_corr:
            out.skipped_train_corr += 1
            continue
        sigs.add(sig)
        picked_r.append(a)
        out.picked.append((rank, expr, fit))
        send(rank, expr, fit)
    return out
