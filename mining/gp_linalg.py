"""Fixed-order dot products and a pivoted least-squares solve for the GP diversity hook.

The hook's correlations and AlphaGen's marginal-IC fit (:mod:`mining.gp_diversity`) are small
dense linear algebra. Through NumPy they run on BLAS / LAPACK, whose kernels are chosen per CPU
at run time (OpenBLAS picks e.g. a Haswell or a SkylakeX kernel), and each kernel sums in its
own order: the same GP run then scored the last bits of fitness differently on an AVX2 and on
an AVX-512 host, and a Ray cluster mixing them would not reproduce a local run. These numba
kernels sum in one fixed order (ascending index, no reassociation: numba compiles without
fast-math), so results are the same on every x86-64 host. The sizes are small (a few dozen
members x a few thousand sample name-days), so the plain loops cost little.

Arrays are float64 and C-contiguous; no NaN handling (callers zero what is missing).
"""
from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["corr_sums", "rank_codes", "gram", "xt_dot", "x_dot", "vdot", "solve_psd"]


@njit(cache=True, nogil=True)
def corr_sums(R, M, R2, ra, ma):
    """The six sums of a masked correlation of ``ra`` with each of ``R``, in one pass.

    For ``R``, ``M``, ``R2`` (P, S, N) and ``ra``, ``ma`` (S, N), ``out[:, p, s]`` is
    ``sum_n`` over ``n`` ascending of ``M * ma``, ``M * ra``, ``R * ma``, ``M * (ra * ra)``,
    ``R2 * ma`` and ``R * ra`` (each product and each running sum rounded as six separate
    dot products would round them: the same bits). One pass reads the stacks once and keeps
    six independent sums in flight instead of one (six dot products were latency-bound).
    """
    P, S, N = R.shape
    out = np.empty((6, P, S))
    for p in range(P):
        for s in range(S):
            n = sa = sb = saa = sbb = sab = 0.0
            for k in range(N):
                r = R[p, s, k]
                m = M[p, s, k]
                a = ra[s, k]
                b = ma[s, k]
                n += m * b
                sa += m * a
                sb += r * b
                saa += m * (a * a)
                sbb += R2[p, s, k] * b
                sab += r * a
            out[0, p, s] = n
            out[1, p, s] = sa
            out[2, p, s] = sb
            out[3, p, s] = saa
            out[4, p, s] = sbb
            out[5, p, s] = sab
    return out


@njit(cache=True, nogil=True)
def rank_codes(raw, n, m, levels):
    """Quantised sample ranks of a panel or of its negation, whichever is smaller, for the
    hook's signature.

    ``raw`` (S, N): ranks 1..n (0 where missing), ``n`` (S, 1) int: names ranked per date,
    ``m`` (S, N): 1 where ranked. The codes of the ranks are ``ceil(rank / max(n, 1) *
    levels)``, ``levels + 1`` where missing, for ``raw`` and for the negation's ranks ``n + 1 -
    raw`` (the NumPy expressions' operations, one pass for both); returned: the one that is
    lexicographically smaller (row-major, first differing entry), as one uint32 (S, N) array.

    Why lexicographic: the quantisation is not symmetric (two panels can share the codes of
    their ranks but not of their negations'), so the orientation kept must not depend on
    anything but the ranked entries. It used to be the smaller blake2b digest of the two,
    whose order changes with the columns that are missing on every sample date (e.g. names
    outside the universe then): a GP run on the train universe's names merged one pair of
    programs that the run on all names kept apart (1,718 vs 1,719 classes, CSI300 800 x 8).
    Missing entries have the same code in both arrays, so they never decide.
    """
    S, N = raw.shape
    q = np.empty((S, N), np.uint32)
    qm = np.empty((S, N), np.uint32)
    miss = np.uint32(levels + 1)
    first = 0                                   # -1: q is smaller, 1: qm is, 0: equal so far
    for s in range(S):
        ns = n[s, 0]
        den = max(ns, 1)
        for k in range(N):
            if m[s, k] > 0:
                r = raw[s, k]
                a = np.uint32(np.ceil(r / den * levels))
                b = np.uint32(np.ceil((ns + 1 - r) / den * levels))
            else:
                a = miss
                b = miss
            q[s, k] = a
            qm[s, k] = b
            if first == 0 and a != b:
                first = -1 if a < b else 1
    return qm if first > 0 else q


@njit(cache=True, nogil=True)
def gram(X):
    """``X' X`` (P, P) of ``X`` (n, P), each entry summed over rows in ascending order."""
    n, P = X.shape
    G = np.zeros((P, P))
    for i in range(n):
        for p in range(P):
            xp = X[i, p]
            for q in range(p, P):
                G[p, q] += xp * X[i, q]
    for p in range(P):
        for q in range(p):
            G[p, q] = G[q, p]
    return G


@njit(cache=True, nogil=True)
def xt_dot(X, v):
    """``X' v`` (P,) of ``X`` (n, P) and ``v`` (n,)."""
    n, P = X.shape
    out = np.zeros(P)
    for i in range(n):
        vi = v[i]
        for p in range(P):
            out[p] += X[i, p] * vi
    return out


@njit(cache=True, nogil=True)
def x_dot(X, b):
    """``X b`` (n,) of ``X`` (n, P) and ``b`` (P,)."""
    n, P = X.shape
    out = np.empty(n)
    for i in range(n):
        acc = 0.0
        for p in range(P):
            acc += X[i, p] * b[p]
        out[i] = acc
    return out


@njit(cache=True, nogil=True)
def vdot(a, b):
    """``sum_i a[i] * b[i]`` in ascending order."""
    acc = 0.0
    for i in range(a.shape[0]):
        acc += a[i] * b[i]
    return acc


@njit(cache=True, nogil=True)
def solve_psd(G, b, rtol=1e-12):
    """A solution of the normal equations ``G beta = b`` for a symmetric positive
    semi-definite ``G`` (P, P) with ``b`` in its range (``G = X'X``, ``b = X'y``).

    Symmetric Gaussian elimination with diagonal pivoting (the largest remaining diagonal
    first; the Schur complement of a PSD matrix stays PSD). A pivot at or below ``rtol`` times
    ``G``'s largest diagonal ends the elimination: the remaining columns are linear
    combinations of the chosen ones (e.g. twin pool members) and get ``beta = 0``. The fit
    ``X beta`` is then the least-squares projection, as with ``numpy.linalg.lstsq`` (whose
    minimum-norm ``beta`` may split weight between twins instead). All zeros when ``G`` is.
    """
    P = b.shape[0]
    A = G.copy()
    x = b.copy()
    perm = np.arange(P)
    big = 0.0
    for i in range(P):
        big = max(big, A[i, i])
    beta = np.zeros(P)
    if not big > 0.0:
        return beta
    tol = rtol * big
    rank = 0
    for k in range(P):
        piv = k
        for i in range(k + 1, P):
            if A[i, i] > A[piv, piv]:
                piv = i
        if not A[piv, piv] > tol:
            break
        if piv != k:                       # swap rows and columns k and piv
            for j in range(P):
                t = A[k, j]
                A[k, j] = A[piv, j]
                A[piv, j] = t
            for i in range(P):
                t = A[i, k]
                A[i, k] = A[i, piv]
                A[i, piv] = t
            t = x[k]
            x[k] = x[piv]
            x[piv] = t
            ti = perm[k]
            perm[k] = perm[piv]
            perm[piv] = ti
        for i in range(k + 1, P):
            f = A[i, k] / A[k, k]
            for j in range(k, P):
                A[i, j] -= f * A[k, j]
            x[i] -= f * x[k]
        rank = k + 1
    z = np.zeros(P)
    for i in range(rank - 1, -1, -1):
        s = x[i]
        for j in range(i + 1, rank):
            s -= A[i, j] * z[j]
        z[i] = s / A[i, i]
    for i in range(P):
        beta[perm[i]] = z[i]
    return beta
