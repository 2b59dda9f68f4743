"""NSGA-II selection (Deb, Pratap, Agarwal & Meyarivan 2002, "A fast and elitist multiobjective
genetic algorithm: NSGA-II", IEEE TEVC 6(2)) for the alphamine GP engine.

Every objective is *minimised* (the engine passes ``-fitness``, turnover and size). A vector
``a`` dominates ``b`` when it is no worse in every objective and better in at least one. The
population is sorted into non-dominated fronts (front 0: dominated by nobody; front k:
dominated only by members of fronts < k) and, inside a front, by crowding distance (the sum
over objectives of the normalised gap between a point's two neighbours; the extremes of each
objective get infinity). Survivors are taken front by front, the last front partially by
decreasing crowding; parents are chosen by crowded binary tournaments (lower front wins, then
larger crowding).
"""
from __future__ import annotations

import numpy as np

__all__ = ["non_dominated_fronts", "crowding_distance", "nsga2_rank", "nsga2_survivors",
           "crowded_tournament"]


def non_dominated_fronts(objectives: np.ndarray) -> list[np.ndarray]:
    """Fast non-dominated sorting (Deb et al. 2002, section III-A).

    Parameters
    ----------
    objectives : ndarray of float64, shape (n, m)
        Objective vectors, all minimised; must be finite (map undefined values to a bad
        finite value first).

    Returns
    -------
    list of ndarray of int
        The fronts, best first; each holds row indices in ascending order.
    """
    f = np.asarray(objectives, dtype=np.float64)
    n = f.shape[0]
    if n == 0:
        return []
    le = np.all(f[:, None, :] <= f[None, :, :], axis=2)
    lt = np.any(f[:, None, :] < f[None, :, :], axis=2)
    dom = le & lt                         # dom[i, j]: i dominates j
    count = dom.sum(axis=0)               # how many dominate j
    fronts: list[np.ndarray] = []
    current = np.flatnonzero(count == 0)
    assigned = np.zeros(n, dtype=bool)
    while current.size:
        fronts.append(current)
        assigned[current] = True
        count = count - dom[current].sum(axis=0)
        current = np.flatnonzero((count == 0) & ~assigned)
    return fronts


def crowding_distance(objectives: np.ndarray) -> np.ndarray:
    """Crowding distance of the points of ONE front (Deb et al. 2002, section III-B).

    Parameters
    ----------
    objectives : ndarray of float64, shape (k, m)

    Returns
    -------
    ndarray of float64, shape (k,)
        ``inf`` at each objective's extremes; an objective constant over the front adds 0.
    """
    f = np.asarray(objectives, dtype=np.float64)
    k, m = f.shape
    dist = np.zeros(k)
    if k <= 2:
        return np.full(k, np.inf)
    for j in range(m):
        order = np.argsort(f[:, j], kind="stable")
        lo, hi = f[order[0], j], f[order[-1], j]
        dist[order[0]] = dist[order[-1]] = np.inf
        if hi > lo:
            gaps = (f[order[2:], j] - f[order[:-2], j]) / (hi - lo)
            dist[order[1:-1]] += gaps
    return dist


def nsga2_rank(objectives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front index and crowding distance of every row of ``objectives`` (shape (n, m)).

    Returns
    -------
    front : ndarray of int, shape (n,)
    crowding : ndarray of float64, shape (n,)
    """
    f = np.asarray(objectives, dtype=np.float64)
    front = np.zeros(f.shape[0], dtype=np.int64)
    crowd = np.zeros(f.shape[0])
    for k, idx in enumerate(non_dominated_fronts(f)):
        front[idx] = k
        crowd[idx] = crowding_distance(f[idx])
    return front, crowd


def nsga2_survivors(objectives: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` survivors: whole fronts first, the last one by crowding.

    Ties (same front and crowding) keep the lower index, so the result is deterministic.
    """
    front, crowd = nsga2_rank(objectives)
    order = np.lexsort((np.arange(front.size), -crowd, front))
    return order[:k]


def crowded_tournament(rng: np.random.Generator, front: np.ndarray, crowd: np.ndarray,
                       size: int = 2) -> int:
    """Index of the winner of a crowded tournament of ``size`` random entrants."""
    entrants = rng.integers(front.size, size=max(size, 1))
    best = int(entrants[0])
    for e in entrants[1:]:
        e = int(e)
        if (front[e], -crowd[e]) < (front[best], -crowd[best]):
            best = e
    return best
