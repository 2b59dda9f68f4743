"""Fixed-order kernels of the diversity hook (mining.gp_linalg) against NumPy / LAPACK."""
from __future__ import annotations

import numpy as np
import pytest

from mining.gp_linalg import corr_sums, gram, rank_codes, solve_psd, vdot, x_dot, xt_dot


def test_dot_kernels_equal_numpy_up_to_rounding():
    rng = np.random.default_rng(0)
    R, a = rng.normal(size=(5, 7, 300)), rng.normal(size=(7, 300))
    M, m = (rng.random((5, 7, 300)) < 0.8) * 1.0, (rng.random((7, 300)) < 0.8) * 1.0
    got = corr_sums(R, M, R * R, a, m)
    for out, (A, b) in zip(got, [(M, m), (M, a), (R, m), (M, a * a), (R * R, m), (R, a)]):
        np.testing.assert_allclose(out, np.einsum("psn,sn->ps", A, b), rtol=1e-12)
    X, v, b = rng.normal(size=(400, 6)), rng.normal(size=400), rng.normal(size=6)
    np.testing.assert_allclose(gram(X), X.T @ X, rtol=1e-12)
    assert np.array_equal(gram(X), gram(X).T)
    np.testing.assert_allclose(xt_dot(X, v), X.T @ v, rtol=1e-12)
    np.testing.assert_allclose(x_dot(X, b), X @ b, rtol=1e-12)
    assert vdot(v, v) == pytest.approx(v @ v, rel=1e-13)


def test_dot_kernels_sum_in_ascending_order():
    # 1 + 1e-16 + ... : only a left-to-right sum gives exactly 1.0 here
    a = np.array([1.0] + [1e-16] * 8)
    assert vdot(a, np.ones(9)) == 1.0
    one = np.ones((1, 1, 9))
    assert (corr_sums(a[None, None, :], one, a[None, None, :], np.ones((1, 9)), np.ones((1, 9)))
            [[2, 4], 0, 0] == 1.0).all()


@pytest.mark.parametrize("twins", [False, True])
def test_solve_psd_gives_the_least_squares_fit(twins):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 5))
    if twins:
        X = np.column_stack([X, X[:, 1], 2.0 * X[:, 3] - X[:, 0]])   # rank 5 of 7 columns
    y = X[:, :3] @ [0.5, -1.0, 0.25] + rng.normal(size=500)
    beta = solve_psd(gram(X), xt_dot(X, y))
    ref = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(x_dot(X, beta), X @ ref, rtol=1e-9, atol=1e-9)
    if twins:
        assert np.count_nonzero(beta) == 5           # dependent columns get beta = 0
    else:
        np.testing.assert_allclose(beta, ref, rtol=1e-9)


def test_solve_psd_zero_matrix_gives_zeros():
    assert np.array_equal(solve_psd(np.zeros((3, 3)), np.zeros(3)), np.zeros(3))


def test_rank_codes_keep_the_lexicographically_smaller_orientation():
    levels = 7
    n = np.array([[3]], np.int64)
    m = np.array([[0.0, 1.0, 1.0, 1.0]])         # a name missing on the date decides nothing
    up = rank_codes(np.array([[0.0, 1.0, 2.0, 3.0]]), n, m, levels)
    down = rank_codes(np.array([[0.0, 3.0, 2.0, 1.0]]), n, m, levels)
    # ceil(r / 3 * 7): ranks 1, 2, 3 -> 3, 5, 7; the missing code is levels + 1
    assert up.tolist() == [[8, 3, 5, 7]] and down.tolist() == up.tolist()
    assert up.dtype == np.uint32
