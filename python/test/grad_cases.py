# The gradient ops' test cases, shared by their serial form (test_cpu_grad.py) and their
# parallel (GPU) loop form compiled for the CPU (test_cpu_parallel_grad.py): random inputs,
# the score matrix, and each op's check against the float64 reference.
import numpy as np
import pytest

from cpu_harness import library, rng
from sparsek import ir, reference
from sparsek.status import SparseKError

SERIAL = "sparsek-cpu-pipeline"


def assert_grad_close(got, want, what=""):
    """SPEC 8 gradients (f32): 1e-3 relative, to the gradient's own scale."""
    want = np.asarray(want, np.float64)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * max(scale, 1e-6), err_msg=what)


def qkv(g, B, Hq, Hkv, T, S, D, Dv):
    return (g.normal(size=(B, Hq, T, D)).astype(np.float32),
            g.normal(size=(B, Hkv, S, D)).astype(np.float32),
            g.normal(size=(B, Hkv, S, Dv)).astype(np.float32),
            g.normal(size=(B, Hq, T, Dv)).astype(np.float32))


def scores(g, shape, kind):
    """f32 scores of one kind of the test matrix."""
    if kind == "spread":  # gates mostly 0 or 1, a few in between
        u = g.normal(size=shape) * 3
    elif kind == "narrow":  # range < 1: a support much larger than k, truncated to the top k
        u = g.uniform(0.0, 0.6, size=shape)
    elif kind == "ties":  # few distinct values: ties decided by position
        u = np.round(g.uniform(0, 2, size=shape) * 4) / 4
    elif kind == "masked":  # -inf scores among narrow ones
        u = g.uniform(0.0, 0.8, size=shape)
        u[g.random(shape) < 0.25] = -np.inf
    else:
        raise ValueError(kind)
    return u.astype(np.float32)


MATRIX = [
    # B, Hq, Hkv, S, T, k, w, kind
    (1, 2, 2, 24, 24, 4, 3, "spread"),
    (1, 2, 2, 24, 24, 4, 3, "narrow"),    # support entries truncated out of Sel(t)
    (2, 4, 2, 20, 20, 3, 2, "ties"),      # GQA, ties
    (1, 4, 1, 30, 30, 6, 4, "masked"),    # -inf scores, GQA G = 4
    (1, 2, 1, 28, 12, 5, 4, "narrow"),    # S > T (cached prefix)
    (1, 2, 2, 16, 16, 0, 4, "spread"),    # k = 0: window only, du = 0
    (1, 2, 1, 16, 16, 20, 3, "narrow"),   # k >= S: every gate 1, du = 0
    (1, 2, 2, 12, 12, 3, 20, "narrow"),   # w >= T: no candidates
    (1, 2, 2, 20, 20, 4, 0, "narrow"),    # w = 0
]


def check_select_attention_grad(run, g, B, Hq, Hkv, S, T, k, w, kind, Dv=6):
    """`run(q, key, value, u, do, k, w)` (a compiled select_attention_grad) on random inputs
    of the case (D = 8) against reference.sparsek_attention_vjp; returns its gradients."""
    q, key, value, do = qkv(g, B, Hq, Hkv, T, S, 8, Dv)
    u = scores(g, (B, Hkv, S), kind)
    got = run(q, key, value, u, do, k, w)
    want = reference.sparsek_attention_vjp(q, key, value, u, k, w, do)
    for name, a, b in zip(("dq", "dkey", "dvalue", "du"), got, want):
        assert_grad_close(a, b, name)
    return got


def check_bad_scores_and_sizes_reported(run):
    """`run` (as above) raises on a NaN score and on scores of the wrong length."""
    g = rng(1)
    q, key, value, do = qkv(g, 1, 2, 2, 8, 8, 4, 4)
    u = g.normal(size=(1, 2, 8)).astype(np.float32)
    u[0, 1, 2] = np.nan
    with pytest.raises(SparseKError, match="invalid score"):
        run(q, key, value, u, do, 2, 2)
    with pytest.raises(SparseKError, match="shape"):
        run(q, key, value, u[:, :, :7].copy(), do, 2, 2)


def check_attention_grad(g, B, Hq, S, T, K, w, pipeline=SERIAL, fill=0.0):
    """attention_grad (Hkv = 2, D = 8, Dv = 4, scale 0.7) with indices and gates of a
    selection against reference.attention_vjp; its outputs start as `fill`."""
    q, key, value, do = qkv(g, B, Hq, 2, T, S, 8, 4)
    u = g.normal(size=(B, 2, S)).astype(np.float32)
    indices, gates, _ = reference.select(u, K, w, T=T)
    indices = indices.astype(np.int32)
    gates = (g.uniform(0.1, 1.0, size=gates.shape) * (indices >= 0)).astype(np.float32)
    lib = library(ir.attention_grad_function("ag", w, k=K, scale=0.7), pipeline=pipeline)
    out = [np.full(a.shape, fill, np.float32) for a in (q, key, value, gates)]
    lib.call("ag", q, key, value, indices, gates, do, *out)
    want = reference.attention_vjp(q, key, value, indices, gates, w, do, 0.7)
    for name, a, b in zip(("dq", "dkey", "dvalue", "dgates"), out, want):
        assert_grad_close(a, b, name)


def check_score_grad(g, B, T, offset, pipeline=SERIAL, fill=0.0):
    """score_grad (3 heads over 12 features, with or without a position offset of 40)
    against reference.score_vjp; its outputs start as `fill`."""
    x = g.normal(size=(B, T, 12)).astype(np.float32)
    wsc = g.normal(size=(3, 12)).astype(np.float32)
    du = g.normal(size=(B, 3, T)).astype(np.float32)
    lib = library(ir.score_grad_function("scg", offset=offset), pipeline=pipeline)
    out = [np.full(s, fill, np.float32) for s in (x.shape, wsc.shape, (3,), (3,))]
    lib.call("scg", x, wsc, du, *([40] if offset else []), *out)
    want = reference.score_vjp(x, wsc, du, offset=40 if offset else 0)
    for name, a, b in zip(("dx", "dwsc", "dbias", "dslope"), out, want):
        assert_grad_close(a, b, name)
