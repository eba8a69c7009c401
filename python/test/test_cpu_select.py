# Compiled sparsek.mask and sparsek.select on the CPU against the float64 reference.
import numpy as np
import pytest

from cpu_harness import assert_gates_close, library, rng
from sparsek import ir, reference, status
from sparsek.status import SparseKError


def run_select(u, k, w, T, index_type="i32"):
    lib = library(ir.select_function("select", k, w, index_type))
    B, H, _ = u.shape
    idx = np.zeros((B, H, T, k), dtype=np.int32 if index_type == "i32" else np.int64)
    gates = np.zeros((B, H, T, k), np.float32)
    tau = np.zeros((B, H, T), np.float32)
    lib.call("select", np.ascontiguousarray(u, np.float32), idx, gates, tau)
    return idx, gates, tau


def check_select(u, k, w, T, index_type="i32"):
    u = u.astype(np.float32)
    idx, gates, tau = run_select(u, k, w, T, index_type)
    r_idx, r_gates, r_tau = reference.select(u.astype(np.float64), k, w, T)
    # Bit-identical u: identical selected sets, in the same (ascending) order.
    np.testing.assert_array_equal(idx, r_idx)
    assert_gates_close(tau, r_tau, u)
    assert_gates_close(gates, r_gates, u)


@pytest.mark.parametrize("B,H,S,T,k,w", [
    (1, 1, 1, 1, 4, 2),        # T = 1, nothing but the window
    (2, 3, 64, 64, 8, 4),      # S = T
    (1, 2, 96, 17, 8, 4),      # cached prefix S > T
    (1, 2, 40, 40, 4, 64),     # w >= T: no candidates at all
    (1, 2, 50, 50, 64, 3),     # k >= S: every candidate selected, tau = -inf
    (2, 2, 128, 128, 1, 0),    # k = 1, w = 0
    (1, 1, 300, 120, 32, 16),
])
def test_select_random(B, H, S, T, k, w):
    g = rng(B * 1000 + S + k)
    check_select(g.normal(size=(B, H, S)) * 2.0, k, w, T)


@pytest.mark.parametrize("spread", [0.05, 0.5, 3.0, 50.0])
def test_select_score_spreads(spread):
    # Narrow spreads make a large fractional support; wide ones hard cases.
    g = rng(int(spread * 100))
    check_select(g.normal(size=(1, 2, 200)) * spread + 7.0, 16, 8, 200)


def test_select_ties_and_masked():
    g = rng(7)
    u = np.round(g.normal(size=(2, 2, 160)) * 2) / 2  # many exact ties
    u[g.random(u.shape) < 0.2] = -np.inf
    check_select(u, 12, 5, 160)
    check_select(u, 12, 5, 37, index_type="i64")


def test_select_all_masked_candidates():
    u = np.full((1, 1, 20), -np.inf)
    u[0, 0, -3:] = 1.0  # only window positions are finite
    idx, gates, tau = run_select(u.astype(np.float32), 4, 3, 20)
    assert (idx == -1).all() and (gates == 0).all()
    assert np.isneginf(tau).all()


def test_select_dynamic_sizes_one_artifact():
    # One compiled function serves every B, H, S and T.
    g = rng(11)
    for B, H, S, T in [(1, 1, 10, 3), (3, 2, 33, 33), (2, 4, 70, 1)]:
        check_select(g.normal(size=(B, H, S)), 6, 2, T)


def test_select_nan_and_inf_are_errors():
    u = rng(3).normal(size=(1, 1, 32)).astype(np.float32)
    for bad in (np.nan, np.inf):
        v = u.copy()
        v[0, 0, 5] = bad
        with pytest.raises(SparseKError) as e:
            run_select(v, 4, 2, 32)
        assert e.value.code == status.INVALID_SCORE


def test_select_more_queries_than_keys_is_an_error():
    u = rng(4).normal(size=(1, 1, 8)).astype(np.float32)
    with pytest.raises(SparseKError) as e:
        run_select(u, 4, 2, 9)
    assert e.value.code == status.QUERIES_EXCEED_KEYS


def test_select_disagreeing_sizes_is_an_error():
    lib = library(ir.select_function("select", 4, 2))
    u = np.zeros((2, 2, 16), np.float32)
    idx = np.zeros((2, 3, 16, 4), np.int32)  # Hkv 3 != 2
    gates = np.zeros((2, 3, 16, 4), np.float32)
    tau = np.zeros((2, 3, 16), np.float32)
    with pytest.raises(SparseKError) as e:
        lib.call("select", u, idx, gates, tau)
    assert e.value.code == status.SHAPE_MISMATCH


def run_mask(z, k):
    lib = library(ir.mask_function("mask", k, rank=z.ndim))
    p = np.zeros(z.shape, np.float32)
    tau = np.zeros(z.shape[:-1], np.float32)
    lib.call("mask", np.ascontiguousarray(z, np.float32), p, tau)
    return p, tau


@pytest.mark.parametrize("k", [0, 1, 5, 40, 100])
def test_mask_random(k):
    g = rng(k + 1)
    z = (g.normal(size=(6, 64)) * np.array([[0.01], [0.3], [1], [3], [30], [300]])).astype(np.float32)
    z[5, ::7] = -np.inf
    p, tau = run_mask(z, k)
    r_p, r_tau = reference.sparsek_mask(z.astype(np.float64), k)
    assert_gates_close(tau, r_tau, z)
    assert_gates_close(p, r_p, z)


def test_mask_ties_hard_case_and_rank3():
    z = np.array([[3.0, 3.0, 1.0, 1.0, 0.0, -np.inf],
                  [5.0, 2.0, 2.0, 2.0, 2.0, 2.0]], np.float32)[None].repeat(2, 0)
    for k in (1, 2, 3):
        p, tau = run_mask(z, k)
        r_p, r_tau = reference.sparsek_mask(z.astype(np.float64), k)
        assert_gates_close(tau, r_tau, z)
        assert_gates_close(p, r_p, z)
