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

__all__ = ["batched_dot", "gram", "xt_dot", "x_dot", "vdot", "solve_psd"]


@njit(cache=True, nogil=True)
def batched_dot(R, a):
    """``out[p, s] = sum_n R[p, s, n] * a[s, n]`` for ``R`` (P, S, N) and ``a`` (S, N)."""
    P, S, N = R.shape
    out = np.empty((P, S))
    for p in range(P):
        for s in range(S):
            acc = 0.0
            for n in range(N):
                acc += R[p, s, n] * a[s, n]
            out[p, s] = acc
    return out


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
