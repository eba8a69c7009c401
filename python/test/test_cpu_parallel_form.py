# The GPU pipeline's parallel loop form (sparsek-lower-to-loops{parallel-loops})
# compiled for the CPU, where its scf.parallel loops run sequentially: checks
# that form's logic (per-row slices of shared scratch, in-kernel masking of
# NaN and +inf, block guards) against the reference where there is no GPU.
import importlib.util
import os

import numpy as np
import pytest

from cpu_harness import library, require_compiler, rng
from sparsek import ir, reference, toolchain
from sparsek.cpu import CompiledLibrary

PARALLEL = "sparsek-cpu-pipeline{parallel-loops=true}"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_select(u, k, w, T):
    lib = library(ir.select_function("select", k, w), pipeline=PARALLEL)
    B, H, _ = u.shape
    idx = np.full((B, H, T, k), 7, np.int32)
    gates = np.full((B, H, T, k), 7, np.float32)
    tau = np.full((B, H, T), 7, np.float32)
    lib.call("select", u, idx, gates, tau)
    return idx, gates, tau


@pytest.mark.parametrize("B,H,S,T,k,w", [
    (2, 3, 100, 100, 8, 4), (1, 2, 200, 70, 8, 4), (1, 1, 5, 5, 8, 4),
    (2, 2, 60, 60, 64, 3), (2, 2, 60, 40, 0, 4)])
def test_select_parallel_form(B, H, S, T, k, w):
    g = rng(S + T + k)
    u = g.integers(0, 4, size=(B, H, S)).astype(np.float32)  # ties everywhere
    u[g.random(u.shape) < 0.2] = -np.inf
    u[0, 0, 3] = np.nan  # kernels mask NaN and +inf (SPEC 3)
    u[-1, -1, S - 1] = np.inf
    idx, gates, tau = run_select(u, k, w, T)
    masked = np.where(np.isfinite(u), u, -np.inf).astype(np.float64)
    r_idx, r_gates, r_tau = reference.select(masked, k, w, T)
    np.testing.assert_array_equal(idx, r_idx)
    np.testing.assert_allclose(gates, r_gates, rtol=0, atol=1e-6 * 4)
    np.testing.assert_allclose(tau, r_tau, rtol=0, atol=1e-6 * 4)


def test_score_and_composite_parallel_form():
    g = rng(3)
    lib = library(ir.score_function("score", bias=True, slope=True, offset=True),
                  ir.select_attention_function("sa", 8, 4, head_dim=16), pipeline=PARALLEL)
    x, wsc = g.normal(size=(2, 30, 24)).astype(np.float32), g.normal(size=(3, 24)).astype(np.float32)
    bias, slope = g.normal(size=3).astype(np.float32), g.normal(size=3).astype(np.float32)
    u = np.zeros((2, 3, 30), np.float32)
    lib.call("score", x, wsc, bias, slope, 5, u)
    np.testing.assert_allclose(u, reference.score(x, wsc, bias=bias, slope=slope, offset=5),
                               rtol=1e-5, atol=1e-5)
    q = g.normal(size=(1, 4, 50, 16)).astype(np.float32)
    key, value = (g.normal(size=(1, 2, 80, 16)).astype(np.float32) for _ in range(2))
    u = g.normal(size=(1, 2, 80)).astype(np.float32)
    out = np.zeros_like(q)
    lib.call("sa", q, key, value, u, out)
    want = reference.sparsek_attention(q, key, value, u.astype(np.float64), 8, 4)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_example_layer_parallel_form():
    require_compiler()
    with open(os.path.join(ROOT, "examples", "sparsek_layer.mlir")) as f:
        lib = CompiledLibrary(toolchain.compile_shared_library(f.read(), pipeline=PARALLEL))
    spec = importlib.util.spec_from_file_location(
        "run_layer", os.path.join(ROOT, "examples", "run_layer.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    g = rng(4)
    shapes = [(m.C, m.HQ * m.D), (m.C, m.HKV * m.D), (m.C, m.HKV * m.D), (m.HKV, m.C),
              (m.HKV,), (m.HQ * m.D, m.C)]
    weights = [(g.normal(size=s) / 8).astype(np.float32) for s in shapes]
    for T in (1, 37, 130):
        x = g.normal(size=(1, T, m.C)).astype(np.float32)
        out = np.zeros((1, T, m.C), np.float32)
        lib.call("sparsek_layer", x, *weights, out)
        want = m.reference_layer(x, *weights)
        np.testing.assert_allclose(out, want, rtol=0, atol=1e-4 * max(1.0, np.abs(want).max()))
