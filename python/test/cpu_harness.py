# Shared helpers of the CPU execution tests: compile-once fixtures, random
# data, and SPEC 8 comparisons.
import os
import shutil

import numpy as np
import pytest

from sparsek import compiler, ir, toolchain
from sparsek.cpu import CompiledLibrary


def require_compiler():
    """Skips the test where the compiler library is not built, unless CI requires it."""
    try:
        compiler.library_path()
    except compiler.CompilerNotFound as e:
        if os.environ.get("SPARSEK_REQUIRE_COMPILER"):
            raise
        pytest.skip(f"compiler not available: {e}")
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler to link shared libraries")


_LIBS = {}


def library(*funcs, pipeline="sparsek-cpu-pipeline"):
    """Compiles (once per process, and cached on disk) a module of `funcs`."""
    require_compiler()
    text = ir.module(*funcs)
    if (text, pipeline) not in _LIBS:
        _LIBS[text, pipeline] = CompiledLibrary(
            toolchain.compile_shared_library(text, pipeline=pipeline))
    return _LIBS[text, pipeline]


def rng(seed):
    return np.random.default_rng(seed)


def assert_gates_close(got, want, u_rows):
    """SPEC 8: tau and gates within 1e-6 x max(1, max |u| of the row)."""
    scale = np.maximum(1.0, np.max(np.abs(np.where(np.isfinite(u_rows), u_rows, 0)), axis=-1))
    tol = 1e-6 * scale
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    same_inf = (np.isinf(got) & np.isinf(want) & (np.sign(got) == np.sign(want)))
    with np.errstate(invalid="ignore"):  # inf - inf where both are the same inf
        diff = np.where(same_inf, 0.0, np.abs(got - want))
    extra = got.ndim - tol.ndim
    bound = tol.reshape(tol.shape + (1,) * extra)
    bad = ~(diff <= bound)
    assert not bad.any(), f"{bad.sum()} entries off; worst {np.nanmax(np.where(bad, diff, 0))}"


def assert_output_close(got, want, value, gate_tol=1e-6):
    """SPEC 8 (f32 CPU): 1e-5 relative + (1e-6 + gate tol) x max |v|."""
    vmax = float(np.max(np.abs(value))) if value.size else 0.0
    atol = (1e-6 + gate_tol) * vmax
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)


def decode_batch(g, lengths, num_kv_heads, d, k, w):
    """Reference caches of `lengths` random tokens each, as decode_attention's
    operands: [key_slots, value_slots, slot_scores, tau, pool_count] and the
    positions."""
    from sparsek import reference

    caches = [reference.DecodeCache(num_kv_heads, k, w) for _ in lengths]
    for n, c in zip(lengths, caches):
        for _ in range(n):
            c.append(g.normal(size=(num_kv_heads, d)), g.normal(size=(num_kv_heads, d)),
                     g.normal(size=num_kv_heads))
    sl = [c.slots() for c in caches]
    args = [np.stack([getattr(s, f) for s in sl]).astype(dt) for f, dt in
            [("kslots", np.float32), ("vslots", np.float32), ("slot_scores", np.float32),
             ("tau", np.float32), ("pool_count", np.int32)]]
    return args, np.array([s.pos for s in sl], np.int64)
