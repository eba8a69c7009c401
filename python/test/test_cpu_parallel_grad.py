# The parallel (GPU) loop form of the gradient ops (sparsek-lower-to-loops{parallel-loops}: one
# thread per query or key, atomics, scans over queries) compiled for the CPU, where its
# scf.parallel loops run sequentially: its logic against the float64 reference where there is no
# GPU. With a static head dim (head_dim, D = Dv) the composite takes dkey and dvalue from the
# key pass (ParallelKeyGrad.cpp), with dynamic ones from per-query atomics: both are run. The
# serial form's own tests are in test_cpu_grad.py.
import numpy as np
import pytest

from cpu_harness import library, rng
from grad_cases import (MATRIX, check_attention_grad, check_bad_scores_and_sizes_reported,
                        check_score_grad, check_select_attention_grad, qkv, scores)
from sparsek import ir, reference

PARALLEL = "sparsek-cpu-pipeline{parallel-loops=true}"


def chunked(chunk):
    return f"sparsek-cpu-pipeline{{parallel-loops=true select-chunk={chunk}}}"


def run_sag(q, key, value, u, do, k, w, pipeline=PARALLEL, scale=None, static=False):
    """static: D = Dv compiled in (the key pass); else dynamic head dims (per-query atomics)."""
    head_dim = q.shape[3] if static else None
    lib = library(ir.select_attention_grad_function("sag", k, w, scale=scale, head_dim=head_dim),
                  pipeline=pipeline)
    out = [np.full(a.shape, 7, np.float32) for a in (q, key, value, u)]  # kernels must overwrite
    lib.call("sag", q, key, value, u, do, *out)
    return out


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("B,Hq,Hkv,S,T,k,w,kind", MATRIX)
def test_parallel_select_attention_grad_matches_reference(B, Hq, Hkv, S, T, k, w, kind, static):
    check_select_attention_grad(lambda *a: run_sag(*a, static=static),
                                rng(S * 31 + T * 7 + k + w), B, Hq, Hkv, S, T, k, w, kind,
                                Dv=8 if static else 6)


# Longer rows than the scan chunk (256 queries) and several selection chunks: the two-level
# scans, the per-key support ranges found by binary search, chunk boundaries of the selection.
@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("chunk", [0, 7, 64])
@pytest.mark.parametrize("S,T,k,w,kind", [(700, 600, 24, 16, "narrow"), (600, 600, 8, 4, "spread"),
                                          (530, 530, 16, 0, "masked"), (520, 520, 12, 5, "ties")])
def test_parallel_grad_long_rows(chunk, S, T, k, w, kind, static):
    pipeline = chunked(chunk) if chunk else PARALLEL
    got = check_select_attention_grad(
        lambda *a: run_sag(*a, pipeline=pipeline, static=static), rng(S + T + k + chunk),
        1, 4, 2, S, T, k, w, kind, Dv=8)
    if kind == "narrow":
        assert np.abs(got[3]).max() > 0


def test_parallel_equals_serial_form():
    """Same inputs through both forms: equal up to the order of f32 sums."""
    g = rng(77)
    q, key, value, do = qkv(g, 2, 4, 2, 90, 120, 16, 16)
    u = scores(g, (2, 2, 120), "narrow")
    ser = run_sag(q, key, value, u, do, 10, 8, pipeline="sparsek-cpu-pipeline")
    for static in (False, True):
        par = run_sag(q, key, value, u, do, 10, 8, static=static)
        for name, a, b in zip(("dq", "dkey", "dvalue", "du"), par, ser):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(b).max()),
                                       err_msg=f"{name} static={static}")


def test_parallel_attention_grad_matches_reference():
    check_attention_grad(rng(12), 2, 4, 40, 30, 5, 3, pipeline=PARALLEL, fill=7)


def test_parallel_select_grad_matches_serial():
    g = rng(9)
    S, T, k, w = 300, 280, 6, 3
    u = scores(g, (2, 2, S), "masked")
    indices, gates, tau = reference.select(u, k, w, T=T)
    dg = (g.normal(size=gates.shape) * (indices >= 0)).astype(np.float32)
    outs = []
    for pipeline in (PARALLEL, "sparsek-cpu-pipeline"):
        lib = library(ir.select_grad_function("sg", w, k=k, index_type="i64"), pipeline=pipeline)
        du = np.full(u.shape, 7, np.float32)
        lib.call("sg", u, indices, tau.astype(np.float32), dg, du)
        outs.append(du)
    assert np.abs(outs[1]).max() > 0
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5 * np.abs(outs[1]).max())


def test_parallel_nan_scores_and_mismatched_sizes_are_reported():
    check_bad_scores_and_sizes_reported(run_sag)


@pytest.mark.parametrize("offset", [False, True])
@pytest.mark.parametrize("B,T", [(2, 7), (3, 600)])  # 600 tokens: several 256-token partial sums
def test_parallel_score_grad_matches_reference(offset, B, T):
    check_score_grad(rng(T + offset), B, T, offset, pipeline=PARALLEL, fill=7)


def test_parallel_mask_grad_is_rejected():
    """mask_grad has no parallel form: a clear compile error, not a wrong kernel."""
    from sparsek.compiler import CompilerError

    with pytest.raises(CompilerError, match="mask_grad' op has no parallel"):
        library(ir.mask_grad_function("mg"), pipeline=PARALLEL)
