"""Numba 1-D rolling kernels behind the built-in ``ts_*`` operators.

Each kernel reads a compact finite series ``v`` (length ``n``: one stock's observations, see
:mod:`factors._ts_driver`) and writes ``o`` (length ``n``); the window ``w`` is a positive int.
Several kernels take a trailing mode argument; the operator modules (``factors/ops_ts*.py``)
wrap them into the ``k(v, w, o)`` / ``k(a, b, w, o)`` kernels they register.

NaN policy: the input series holds no NaN (the driver compacted it); a kernel writes NaN for
the warm-up (the first ``w - 1`` outputs, ``w`` for the lags) and where its statistic is
undefined; the driver maps every non-finite output to NaN.

Numerical stability: no statistic carries a long-lived running sum. Sums use Neumaier
compensated add/remove; moments (mean, M2, M3, co-moment) use Welford-style updates on values
shifted by a recent window mean; every kernel recomputes its state exactly (two-pass) once per
``window`` steps, and the moment kernels also recompute as soon as a moment falls below
``_CANCEL`` times the magnitude of the updates applied since (catastrophic cancellation, e.g.
after a volatile spell leaves the window). Exact zero variance is detected from runs of
identical values (as pandas does), so constant windows give an exact 0 standard deviation.
"""
from __future__ import annotations

import numpy as np
from numba import njit

NAN = np.nan
#: Recompute a window exactly once a running moment falls below this fraction of the
#: magnitude of the updates applied to it since the last exact recomputation.
_CANCEL = 1e-4



@njit(cache=True, nogil=True)
def k_lag(v, d, o, mode):
    """mode 0: v[i-d]; 1: v[i] - v[i-d]; 2: v[i] / v[i-d] - 1 (zero denominator -> NaN)."""
    for i in range(v.shape[0]):
        if i < d:
            o[i] = NAN
            continue
        a = v[i - d]
        if mode == 0:
            o[i] = a
        elif mode == 1:
            o[i] = v[i] - a
        else:
            o[i] = v[i] / a - 1.0 if a != 0.0 else NAN


@njit(cache=True, nogil=True)
def _nadd(s, c, x):
    """Neumaier compensated addition: returns the new (sum, compensation)."""
    t = s + x
    if abs(s) >= abs(x):
        c += (s - t) + x
    else:
        c += (x - t) + s
    return t, c


@njit(cache=True, nogil=True)
def k_sum(v, w, o, mean):
    s = 0.0
    c = 0.0
    ph = -1  # i % w, without an integer division per step
    for i in range(v.shape[0]):
        ph += 1
        if ph == w:
            ph = 0
        if i >= w and ph == w - 1:  # exact recomputation once per window
            s = 0.0
            c = 0.0
            for k in range(i - w + 1, i + 1):
                s, c = _nadd(s, c, v[k])
        else:
            s, c = _nadd(s, c, v[i])
            if i >= w:
                s, c = _nadd(s, c, -v[i - w])
        if i < w - 1:
            o[i] = NAN
        else:
            o[i] = (s + c) / w if mean else s + c


@njit(cache=True, nogil=True)
def _exact_moments(v, lo, hi, third):
    """Two-pass moments of v[lo:hi]: (shift, mean of v - shift, M2, M3 or 0)."""
    n = hi - lo
    s = 0.0
    for k in range(lo, hi):
        s += v[k]
    shift = s / n
    mu = 0.0
    for k in range(lo, hi):
        mu += v[k] - shift
    mu /= n
    m2 = 0.0
    m3 = 0.0
    for k in range(lo, hi):
        d = v[k] - shift - mu
        m2 += d * d
        if third:
            m3 += d * d * d
    return shift, mu, m2, m3


@njit(cache=True, nogil=True)
def k_var(v, w, o, zscore):
    """Rolling std (ddof=1) or z-score; Welford replace-updates on shifted values."""
    c = mu = m2 = bud = 0.0  # shift, mean of v - c, M2, update magnitude since exact
    run = 0
    ph = -1  # i % w, without an integer division per step
    for i in range(v.shape[0]):
        ph += 1
        if ph == w:
            ph = 0
        x = v[i]
        run = run + 1 if (i > 0 and x == v[i - 1]) else 1
        if i < w - 1:
            o[i] = NAN
            continue
        if i >= w:
            un = x - c
            uo = v[i - w] - c
            delta = un - uo
            mu_new = mu + delta / w
            m2 += delta * (un - mu_new + uo - mu)
            bud += abs(delta) * (abs(un - mu_new) + abs(uo - mu))
            mu = mu_new
        if ph == w - 1 or (run < w and m2 < _CANCEL * bud):
            c, mu, m2, _ = _exact_moments(v, i - w + 1, i + 1, False)
            bud = 0.0
        if run >= w or m2 <= 0.0:
            o[i] = NAN if zscore else 0.0
        elif zscore:
            o[i] = (x - c - mu) / np.sqrt(m2 / (w - 1))
        else:
            o[i] = np.sqrt(m2 / (w - 1))


@njit(cache=True, nogil=True)
def k_skew(v, w, o):
    """Rolling bias-corrected skewness (pandas); Welford M2/M3 remove+add on shifted values."""
    c = mu = m2 = m3 = b2 = b3 = 0.0
    run = 0
    ph = -1  # i % w, without an integer division per step
    for i in range(v.shape[0]):
        ph += 1
        if ph == w:
            ph = 0
        x = v[i]
        run = run + 1 if (i > 0 and x == v[i - 1]) else 1
        if i < w - 1:
            o[i] = NAN
            continue
        if i >= w:
            u = v[i - w] - c  # remove v[i-w]: the exact inverse of the add step below
            mu_new = mu - (u - mu) / (w - 1)
            d = u - mu_new
            dn = d / w
            t1 = d * dn * (w - 1)
            m2 -= t1
            t3 = t1 * dn * (w - 2)
            m3 -= t3 - 3.0 * dn * m2
            b2 += abs(t1)
            b3 += abs(t3) + abs(3.0 * dn * m2)
            u = x - c  # add v[i]
            d = u - mu_new
            dn = d / w
            t1 = d * dn * (w - 1)
            mu = mu_new + dn
            t3 = t1 * dn * (w - 2)
            m3 += t3 - 3.0 * dn * m2
            m2 += t1
            b2 += abs(t1)
            b3 += abs(t3) + abs(3.0 * dn * m2)
        if ph == w - 1 or (run < w and (m2 < _CANCEL * b2 or abs(m3) < _CANCEL * b3)):
            c, mu, m2, m3 = _exact_moments(v, i - w + 1, i + 1, True)
            b2 = b3 = 0.0
        den = (w - 2.0) * (m2 / w) * np.sqrt(m2 / w)
        if run >= w or m2 <= 0.0 or not den > 0.0 or not np.isfinite(den):
            o[i] = NAN      # constant window, or a dispersion that underflows (1e-150 scale)
        else:
            o[i] = np.sqrt(w * (w - 1.0)) * (m3 / w) / den


@njit(cache=True, nogil=True)
def k_extreme(v, w, o, is_max, arg):
    """Rolling min/max (or observations since it, ties -> most recent), van Herk/Gil-Werman.

    The series is cut into blocks of ``w``; a forward scan gives each block's running
    extreme up to ``i`` (``g``), a backward scan the extreme from ``i`` to the block's end
    (``h``); the window ending at ``i`` is one block or the tail of one block and the head of
    the next, so its extreme is ``g[i]`` or ``h[i - w + 1]`` (the more recent part wins a tie).
    Three branch-free passes instead of a monotonic deque's unpredictable pops: a 2,187 x
    580 panel 12.5-15 ms -> 5.5-8 ms. Values and positions are those of the deque (the
    extreme is exact and its most recent position unique). (van Herk 1992, Pattern
    Recognition Letters 13(7); Gil & Werman 1993, IEEE PAMI 15(5).)
    """
    n = v.shape[0]
    sgn = -1.0 if is_max else 1.0               # max = min of -v (positions are what count)
    g = np.empty(n)
    gi = np.empty(n, np.int64)
    h = np.empty(n)
    hi = np.empty(n, np.int64)
    for b0 in range(0, n, w):
        b1 = min(b0 + w, n)
        cur = sgn * v[b0]
        ci = b0
        g[b0] = cur
        gi[b0] = b0
        for i in range(b0 + 1, b1):             # prefix extreme, ties -> the later position
            x = sgn * v[i]
            t = x <= cur
            cur = x if t else cur
            ci = i if t else ci
            g[i] = cur
            gi[i] = ci
        cur = sgn * v[b1 - 1]
        ci = b1 - 1
        h[b1 - 1] = cur
        hi[b1 - 1] = ci
        for i in range(b1 - 2, b0 - 1, -1):     # suffix extreme, ties -> the later position
            x = sgn * v[i]
            t = x < cur
            cur = x if t else cur
            ci = i if t else ci
            h[i] = cur
            hi[i] = ci
    for i in range(min(w - 1, n)):
        o[i] = NAN
    ph = 0                                      # (i - w + 1) % w, without a division
    for i in range(w - 1, n):
        a = i - w + 1
        p = gi[i] if (ph == 0 or g[i] <= h[a]) else hi[a]
        ph = ph + 1 if ph + 1 < w else 0
        o[i] = (i - p) if arg else v[p]


@njit(cache=True, nogil=True)
def _kth_dev(buf, w, med, k, pair, start):
    """k-th smallest (0-based) |buf - med| of sorted buf[:w] whose median is med, and with
    ``pair`` the (k+1)-th too (else the k-th again); returns ``(k-th, (k+1)-th, split)``.

    Deviations below the median, med - buf[h-1-i], and above it, buf[h+i] - med, are two
    sorted sequences; the split is how many of the k+1 smallest come from the lower one: the
    first ``a`` where ``med - buf[h-1-a] < buf[h+k-a] - med`` fails (monotone in ``a``). It is
    walked to from ``start`` (the previous step's split, which rarely moves far) instead of
    binary-searched: the same split, fewer unpredictable branches. The k-th is the largest
    taken, the (k+1)-th the smaller of the next one on each side (an even window's MAD needs
    both).
    """
    h = w // 2
    lo0 = max(0, k + 1 - (w - h))
    hi0 = min(k + 1, h)
    a = min(max(start, lo0), hi0)
    if a < hi0 and med - buf[h - 1 - a] < buf[h + k - a] - med:
        a += 1
        while a < hi0 and med - buf[h - 1 - a] < buf[h + k - a] - med:
            a += 1
    else:
        while a > lo0 and not med - buf[h - a] < buf[h + k + 1 - a] - med:
            a -= 1
    r = -np.inf
    if a > 0:
        r = med - buf[h - a]
    if k + 1 - a > 0:
        r = max(r, buf[h + k - a] - med)
    if not pair:
        return r, r, a
    s = np.inf
    if a < h:
        s = med - buf[h - 1 - a]
    if k + 1 - a < w - h:
        s = min(s, buf[h + k + 1 - a] - med)
    return r, s, a


@njit(cache=True, nogil=True)
def k_order(v, w, o, mad, q):
    """Rolling median, median absolute deviation from it, or quantile, via a sorted window buffer.

    ``q < 0``: median (``mad=False``) or MAD (``mad=True``); ``0 <= q <= 1``: the ``q``-quantile
    with linear interpolation between order statistics, computed exactly as pandas
    ``rolling(w).quantile(q)``: ``idx = q * (w - 1)``, ``lo = floor(idx)``,
    ``buf[lo] + (buf[lo + 1] - buf[lo]) * (idx - lo)`` (``buf[lo]`` when ``idx`` is integral).

    Each step overwrites the expiring value's slot with the new value and slides it to its
    sorted place. The buffer records which window slot (``i % w``) each position holds and
    where each slot sits, so the expiring value is found without a binary search (whose
    unpredictable branches were most of the time: a 2,187 x 580 panel, w = 20, 38-48 ms ->
    25-28 ms, median). Among values equal to it the leftmost is the one replaced (what the
    search found), so the buffer, signed zeros included, is the same at every step.
    """
    buf = np.empty(w)
    age = np.empty(w, np.uintp)                 # window slot of the value at each position
    where = np.empty(w, np.uintp)               # position of each slot's value
    qidx = q * (w - 1)
    qlo = int(qidx)
    qfrac = qidx - qlo
    h = w // 2
    zero = np.uintp(0)                          # unsigned positions: no wrap-around code
    one = np.uintp(1)
    uw = np.uintp(w)
    slot = zero
    split = 0                                   # MAD: the last deviation split (_kth_dev)
    for i in range(v.shape[0]):
        x = v[i]
        if i < w:
            k = np.uintp(i)
        else:  # overwrite v[i-w]'s slot (the leftmost of its equals), slide x to its place
            k = where[slot]
            p = k
            old = v[i - w]
            while k > zero and buf[k - one] == old:
                k -= one
            if k != p:                          # the equal value left in place takes over
                a = age[k]                      # the replaced one's slot
                age[p] = a
                where[a] = p
            while k + one < uw and buf[k + one] < x:
                buf[k] = buf[k + one]
                a = age[k + one]
                age[k] = a
                where[a] = k
                k += one
        while k > zero and buf[k - one] > x:
            buf[k] = buf[k - one]
            a = age[k - one]
            age[k] = a
            where[a] = k
            k -= one
        buf[k] = x
        age[k] = slot
        where[slot] = k
        slot += one
        if slot == uw:
            slot = zero
        if i < w - 1:
            o[i] = NAN
            continue
        if q >= 0.0:
            lo_v = buf[qlo]
            o[i] = lo_v if qfrac == 0.0 else lo_v + (buf[qlo + 1] - lo_v) * qfrac
            continue
        med = buf[h] if w % 2 == 1 else 0.5 * (buf[h - 1] + buf[h])
        if not mad:
            o[i] = med
        elif w % 2 == 1:
            d0, _, split = _kth_dev(buf, w, med, h, False, split)
            o[i] = d0
        else:
            d0, d1, split = _kth_dev(buf, w, med, h - 1, True, split)
            o[i] = 0.5 * (d0 + d1)


@njit(cache=True, nogil=True)
def k_rank(v, w, o):
    """Percentile rank of v[i] in its window, average ties (pandas rolling rank pct=True).

    The counts are ``int32`` over a window slice: LLVM then vectorises them (a 2,187 x 580
    panel, w=60: 65 ms with ``int64`` counters, 20 ms).
    """
    n = v.shape[0]
    for i in range(min(w - 1, n)):
        o[i] = NAN
    for i in range(w - 1, n):
        x = v[i]
        less = np.int32(0)
        eq = np.int32(0)
        win = v[i - w + 1:i + 1]
        for k in range(w):                      # branch-free counts
            y = win[k]
            less += np.int32(y < x)
            eq += np.int32(y == x)
        o[i] = (less + 0.5 * (eq + 1)) / w


@njit(cache=True, nogil=True)
def k_decay(v, w, o):
    """Linearly weighted mean, weights 1..w with w on the newest observation."""
    den = 0.5 * w * (w + 1.0)
    s = ws = bud = 0.0  # window sum, weighted sum, update magnitude since exact
    ph = -1  # i % w, without an integer division per step
    for i in range(v.shape[0]):
        ph += 1
        if ph == w:
            ph = 0
        if i < w - 1:
            o[i] = NAN
            continue
        if i >= w:
            ws += w * v[i] - s
            s += v[i] - v[i - w]
            bud += w * (abs(v[i]) + abs(v[i - w])) + abs(s)
        if ph == w - 1 or abs(ws) < _CANCEL * bud:
            s = ws = bud = 0.0
            for k in range(w):
                s += v[i - w + 1 + k]
                ws += (k + 1.0) * v[i - w + 1 + k]
        o[i] = ws / den


@njit(cache=True, nogil=True)
def k_ema(v, w, o):
    """pandas ``ewm(span=w, adjust=False).mean()``; the first w-1 observations are NaN."""
    alpha = 2.0 / (w + 1.0)
    y = v[0]
    for i in range(v.shape[0]):
        if i > 0:
            y = (1.0 - alpha) * y + alpha * v[i]
        o[i] = y if i >= w - 1 else NAN


@njit(cache=True, nogil=True)
def k_cov(a, b, w, o, corr):
    """Rolling covariance (ddof=1) or correlation of two jointly finite series."""
    cx = cy = mx = my = sxx = syy = sxy = 0.0
    bx = by = bxy = 0.0  # update magnitudes since the last exact recomputation
    runa = runb = 0
    ph = -1  # i % w, without an integer division per step
    for i in range(a.shape[0]):
        ph += 1
        if ph == w:
            ph = 0
        runa = runa + 1 if (i > 0 and a[i] == a[i - 1]) else 1
        runb = runb + 1 if (i > 0 and b[i] == b[i - 1]) else 1
        if i < w - 1:
            o[i] = NAN
            continue
        if i >= w:  # replace the oldest observation by the newest (window size fixed)
            un = a[i] - cx
            uo = a[i - w] - cx
            tn = b[i] - cy
            to = b[i - w] - cy
            mx_new = mx + (un - uo) / w
            my_new = my + (tn - to) / w
            p1 = (un - mx) * (un - mx_new)
            p2 = (uo - mx) * (uo - mx_new)
            q1 = (tn - my) * (tn - my_new)
            q2 = (to - my) * (to - my_new)
            r1 = (un - mx) * (tn - my_new)
            r2 = (uo - mx) * (to - my_new)
            sxx += p1 - p2
            syy += q1 - q2
            sxy += r1 - r2
            bx += abs(p1) + abs(p2)
            by += abs(q1) + abs(q2)
            bxy += abs(r1) + abs(r2)
            mx = mx_new
            my = my_new
        const = runa >= w or runb >= w
        if ph == w - 1 or not const and (
                sxx < _CANCEL * bx or syy < _CANCEL * by or abs(sxy) < _CANCEL * bxy):
            lo = i - w + 1
            cx, mx, sxx, _ = _exact_moments(a, lo, i + 1, False)
            cy, my, syy, _ = _exact_moments(b, lo, i + 1, False)
            sxy = 0.0
            for k in range(lo, i + 1):
                sxy += (a[k] - cx - mx) * (b[k] - cy - my)
            bx = by = bxy = 0.0
        if not corr:
            o[i] = 0.0 if const else sxy / (w - 1)
        elif const or sxx <= 0.0 or syy <= 0.0:
            o[i] = NAN
        else:
            o[i] = min(1.0, max(-1.0, sxy / np.sqrt(sxx * syy)))
