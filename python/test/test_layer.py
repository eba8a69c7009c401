# A whole compiled SparseK layer (sparsek.compile_layer): prefill and KV-cache decode against the float64 reference.
import numpy as np
import pytest

from cpu_harness import require_compiler
from runtime_harness import require_runtime
from sparsek import compiler
from sparsek.compiled_layer import compile_layer
from sparsek.kv_cache import KVCache
from sparsek.layer import LayerConfig, layer_module, reference_prefill
from sparsek.memref import from_bf16_bits


@pytest.fixture(autouse=True)
def _compiler():
    require_compiler()


def weights(cfg, seed):
    g = np.random.default_rng(seed)
    w = {n: (g.normal(size=s) / np.sqrt(s[-1] if n == "wsc" else s[0])).astype(np.float32)
         for n, s in cfg.weight_shapes().items()}
    if cfg.slope:
        w["slope"] *= 0.05
    return w


def tolerance(want):
    # SPEC 8 f32 tolerances, scaled by the output magnitude after the projection.
    return 1e-4 * max(1.0, float(np.max(np.abs(want))))


@pytest.mark.parametrize("opts", [
    dict(C=32, Hq=4, Hkv=2, D=8, k=5, w=3, bias=True, slope=True),
    dict(C=24, Hq=3, Hkv=3, D=8, k=64, w=2),             # k >= T: dense causal
    dict(C=16, Hq=4, Hkv=1, D=4, k=0, w=4, scale=0.3),   # sliding window only
])
def test_prefill_matches_reference(opts):
    layer = compile_layer(**opts)
    w = weights(layer.cfg, 1)
    x = np.random.default_rng(2).normal(size=(2, 37, opts["C"])).astype(np.float32)
    out, key, value, u = layer(x, w, return_kv=True)
    want = reference_prefill(layer.cfg, x, w)
    np.testing.assert_allclose(out, want[0], atol=tolerance(want[0]))
    np.testing.assert_allclose(layer(x, w), out, atol=1e-6)  # the plain prefill agrees
    for got, ref in zip((key, value, u), want[1:]):
        np.testing.assert_allclose(got, ref, atol=1e-5 * max(1.0, float(np.max(np.abs(ref)))))


@pytest.mark.parametrize("dtype", ["bf16", "f16"])
def test_low_precision_prefill(dtype):
    layer = compile_layer(C=32, Hq=2, Hkv=2, D=16, k=4, w=4, dtype=dtype)
    w = weights(layer.cfg, 3)
    x = np.random.default_rng(4).normal(size=(1, 24, 32)).astype(np.float32)
    out = layer(x, w)
    out = from_bf16_bits(out) if dtype == "bf16" else out.astype(np.float32)
    want = reference_prefill(layer.cfg, x, w)[0]
    np.testing.assert_allclose(out, want, atol=5e-2)


def test_decode_over_the_cache_matches_full_recompute():
    require_runtime()
    layer = compile_layer(C=32, Hq=4, Hkv=2, D=8, k=5, w=3, bias=True, slope=True)
    cfg, w = layer.cfg, weights(layer.cfg, 5)
    x = np.random.default_rng(6).normal(size=(2, 40, 32)).astype(np.float32)
    with KVCache(1, cfg.Hkv, cfg.k, cfg.w, cfg.D, max_seqs=4) as cache:
        cache.alloc_seq()  # the batch's slots need not start at 0 or be the only ones
        seqs = [cache.alloc_seq(), cache.alloc_seq()][::-1]
        _, key, value, u = layer(x[:, :16], w, return_kv=True)
        layer.fill_cache(cache, 0, seqs, key, value, u)
        for t in range(16, 40):
            got = layer.decode(x[:, t], w, cache, 0, seqs)
            want = reference_prefill(cfg, x[:, :t + 1], w)[0][:, -1]
            np.testing.assert_allclose(got, want, atol=tolerance(want), err_msg=f"step {t}")
        assert list(cache.view(0).pos[seqs]) == [39, 39]
        with pytest.raises(ValueError, match="already hold tokens"):
            layer.fill_cache(cache, 0, seqs, key, value, u)


def test_bad_arguments_are_clear_errors():
    layer = compile_layer(C=16, Hq=2, Hkv=1, D=8, k=2, w=2, bias=True)
    w = weights(layer.cfg, 7)
    x = np.zeros((1, 5, 16), np.float32)
    with pytest.raises(ValueError, match=r"missing weights \['bias'\]"):
        layer(x, {n: a for n, a in w.items() if n != "bias"})
    with pytest.raises(ValueError, match=r"wq: expected shape \(16, 16\)"):
        layer(x, dict(w, wq=np.zeros((16, 8), np.float32)))
    with pytest.raises(ValueError, match=r"x: expected \[B, T, 16\]"):
        layer(np.zeros((1, 5, 8), np.float32), w)
    with pytest.raises(ValueError, match="multiple of Hkv"):
        LayerConfig(C=16, Hq=3, Hkv=2, D=8, k=2, w=2)
    with pytest.raises(ValueError, match="k \\+ w >= 1"):
        LayerConfig(C=16, Hq=2, Hkv=2, D=8, k=0, w=0)


def test_layer_ir_is_tensor_level_and_verifies():
    cfg = LayerConfig(C=16, Hq=2, Hkv=1, D=8, k=2, w=2, dtype="bf16", bias=True, slope=True)
    text = layer_module(cfg, return_kv=True)
    for op in ("sparsek.score", "sparsek.select_attention", "sparsek.decode_attention"):
        assert op in text
    compiler.run_pipeline(text, "")  # raises with diagnostics if it does not verify


def test_decode_from_an_empty_cache():
    require_runtime()
    layer = compile_layer(C=16, Hq=2, Hkv=1, D=8, k=3, w=2, bias=True)
    w = weights(layer.cfg, 8)
    x = np.random.default_rng(9).normal(size=(1, 12, 16)).astype(np.float32)
    with KVCache(1, 1, 3, 2, 8) as cache:
        seq = [cache.alloc_seq()]
        for t in range(12):
            want = reference_prefill(layer.cfg, x[:, :t + 1], w)[0][:, -1]
            np.testing.assert_allclose(layer.decode(x[:, t], w, cache, 0, seq), want, atol=tolerance(want))
    with KVCache(1, 2, 3, 2, 8) as other:
        with pytest.raises(ValueError, match="does not match the layer"):
            layer.decode(x[:, 0], w, other, 0, [other.alloc_seq()])
