# Variable-length batches on the GPU (sparsek.varlen.select_attention on CUDA tensors): the
# packed batch as one select_attention launch (the padded form; bf16/f16 with D in {64, 128}
# on the tile-first mma.sync kernel), each sequence against the same op on that sequence alone
# on the GPU and against the float32 CPU loop form on the same rounded inputs (SPEC 8: 2e-2
# absolute for bf16/f16, 1e-4 for f32). Lengths 1, 17, 4096 and 0 mixed; S > T per sequence.
import numpy as np
import pytest

from sparsek import compiler, varlen
from sparsek.cpu import CompiledLibrary
from varlen_configs import CONFIGS, per_sequence_module

DTYPES = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}


@pytest.fixture(scope="module")
def cuda(torch, layer_cache):
    """torch, with the compiler's cache pointed at the carried prebuilt libraries."""
    return torch


def packed(seed, lengths_q, lengths_k, hq, hkv, d):
    g = np.random.default_rng(seed)
    tq, tk = sum(lengths_q), sum(lengths_k)
    q = g.normal(size=(tq, hq, d)).astype(np.float32)
    key = g.normal(size=(tk, hkv, d)).astype(np.float32)
    value = g.normal(size=(tk, hkv, d)).astype(np.float32)
    u = (g.normal(size=(tk, hkv)) * 2).astype(np.float32)
    cu = [np.concatenate([[0], np.cumsum(n)]).astype(np.int32) for n in (lengths_q, lengths_k)]
    return q, key, value, u, cu[0], cu[1]


def alone_on_gpu(torch, k, w, elem, d, q, key, value, u):
    """One sequence [T, H, D] through the ordinary select_attention library: [T, Hq, Dv]."""
    from sparsek.gpu import GPULibrary, compile as compile_gpu

    if q.shape[0] == 0:
        return torch.zeros((0, q.shape[1], value.shape[2]), dtype=q.dtype, device="cuda")
    lib = GPULibrary(compile_gpu(per_sequence_module(k, w, elem, d)))
    heads = [a.transpose(0, 1).unsqueeze(0).contiguous() for a in (q, key, value)]
    out = torch.full((1, q.shape[1], q.shape[0], value.shape[2]), 7.0, dtype=q.dtype, device="cuda")
    lib.call("sa", *heads, u.t().unsqueeze(0).contiguous(), out)
    return out[0].transpose(0, 1)


def check(torch, elem, d, k, w, lengths_q, lengths_k, hq=8, hkv=2, seed=0):
    assert (k, w, elem, d) in CONFIGS
    dtype = getattr(torch, DTYPES[elem])
    q, key, value, u, cuq, cuk = packed(seed, lengths_q, lengths_k, hq, hkv, d)
    dev = [torch.from_numpy(a).cuda().to(dtype) for a in (q, key, value)]
    du = torch.from_numpy(u).cuda()
    out = varlen.select_attention(*dev, du, torch.from_numpy(cuq).cuda(), cuk, k=k, w=w)
    assert out.shape == (q.shape[0], hq, d) and out.dtype == dtype
    torch.cuda.synchronize()
    got = out.float().cpu().numpy()
    # The float32 CPU loop form (each sequence alone, bitwise) on the same rounded inputs.
    rounded = [t.float().cpu().numpy() for t in dev]
    cpu = CompiledLibrary(compiler.compile(varlen.loop_module(k, w, "f32")))
    want = np.zeros_like(got)
    cpu.call("varlen", *rounded, u, cuq, cuk, want)
    tol = 1e-4 if elem == "f32" else 2e-2
    np.testing.assert_allclose(got, want, atol=tol, rtol=tol if elem == "f32" else 0)
    for b in range(len(lengths_q)):
        rq, rk = slice(cuq[b], cuq[b + 1]), slice(cuk[b], cuk[b + 1])
        alone = alone_on_gpu(torch, k, w, elem, d, dev[0][rq], dev[1][rk], dev[2][rk], du[rk])
        np.testing.assert_allclose(got[rq], alone.float().cpu().numpy(), atol=tol, err_msg=f"sequence {b}")
    return varlen.alignment(cuq, cuk, w)


@pytest.mark.parametrize("elem", ("bf16", "f16"))
@pytest.mark.parametrize("d", (64, 128))
def test_mixed_lengths(cuda, elem, d):
    """Prefill (S = T) of lengths 1, 17, 0, 4096, 17, 0 in one launch."""
    lengths = [1, 17, 0, 4096, 17, 0]
    assert check(cuda, elem, d, 64, 32, lengths, lengths, seed=d) == (4096, 4096)


@pytest.mark.parametrize("elem", ("bf16", "f16"))
@pytest.mark.parametrize("d", (64, 128))
def test_more_keys_than_queries(cuda, elem, d):
    """S > T: short and long cached prefixes (left- and right-aligned), a sequence with keys only."""
    check(cuda, elem, d, 64, 32, [1, 17, 0, 300, 65], [9, 17, 5, 4096, 200], seed=1 + d)
    # Every prefix >= w - 1: all right-aligned, T' = max T_b = 70.
    assert check(cuda, elem, d, 64, 32, [1, 70, 0, 2], [40, 4000, 5, 4096], hq=4, hkv=4,
                 seed=2 + d) == (70, 4096)


def kernels_of_one_call(torch, lengths, elem="bf16", d=64):
    """Names of the kernels one varlen.select_attention call launches (torch.profiler), or
    None where the profiler sees no kernels."""
    from torch.profiler import ProfilerActivity, profile

    dtype = getattr(torch, DTYPES[elem])
    q, key, value, u, cuq, cuk = packed(9, lengths, lengths, 8, 2, d)
    args = [torch.from_numpy(a).cuda().to(dtype) for a in (q, key, value)] + [torch.from_numpy(u).cuda()]
    varlen.select_attention(*args, cuq, cuk, k=64, w=32)  # loads the library
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        varlen.select_attention(*args, cuq, cuk, k=64, w=32)
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if str(e.device_type).endswith("CUDA")]
    return names or None


def test_one_launch_for_the_batch(cuda):
    """The tile-first kernel runs once per call, and a batch of 7 sequences launches exactly
    the kernels a batch of 2 does."""
    few = kernels_of_one_call(cuda, [300, 17])
    many = kernels_of_one_call(cuda, [1, 17, 0, 300, 17, 0, 64])
    if few is None or many is None:
        pytest.skip("torch.profiler saw no CUDA kernels here (no CUPTI)")
    assert many.count("tiles") == 1, many
    assert sorted(few) == sorted(many), (few, many)


def test_f32_loop_kernels(cuda):
    check(cuda, "f32", 64, 16, 8, [1, 17, 0, 130, 5], [1, 17, 3, 200, 300], seed=3)


def test_empty_batches(cuda):
    torch = cuda
    z = lambda *s: torch.zeros(s, dtype=torch.bfloat16, device="cuda")
    out = varlen.select_attention(z(0, 8, 64), z(5, 2, 64), z(5, 2, 64),
                                  torch.zeros(5, 2, device="cuda"), [0, 0], [0, 5], k=64, w=32)
    assert out.shape == (0, 8, 64)


def test_bad_offsets_are_refused(cuda):
    torch = cuda
    z = lambda *s: torch.zeros(s, dtype=torch.bfloat16, device="cuda")
    with pytest.raises(ValueError, match="more queries than keys"):
        varlen.select_attention(z(4, 8, 64), z(3, 2, 64), z(3, 2, 64), torch.zeros(3, 2, device="cuda"),
                                [0, 4], [0, 3], k=64, w=32)


# -- The whole layer and the KV cache: SparseKAttention.prefill(..., cu_seqlens=...) ---------

def modules(torch, name, seed=0):
    """The module on the CPU and the same one (same weights) on the GPU."""
    from sparsek.nn import SparseKAttention
    from varlen_configs import module_options

    opts = module_options(name)
    opts["dtype"] = {"f32": torch.float32, "bf16": torch.bfloat16}[opts.get("dtype", "f32")]
    out = []
    for _ in range(2):
        torch.manual_seed(seed)
        attn = SparseKAttention(**opts)
        with torch.no_grad():
            if attn.score_bias is not None:
                attn.score_bias.normal_()
            if attn.score_slope is not None:
                attn.score_slope.normal_(std=0.05)
        out.append(attn)
    return out[0], out[1].cuda()


@pytest.mark.parametrize("name", ["f32", "bf16", "bf16_d64"])
def test_module_prefill_varlen(cuda, name):
    """Packed prompts of lengths 1, 17, 0, 4096, 5 through the GPU module in one call and the
    CUDA cache filled in one call: against the CPU module doing the same (CPU cache), against
    each prompt's own GPU prefill, then one decode step on both caches."""
    torch = cuda
    cpu, gpu = modules(torch, name, seed=len(name))
    lengths = [1, 17, 0, 4096, 5]
    B = len(lengths)
    cu = torch.tensor([0] + np.cumsum(lengths).tolist(), dtype=torch.int32)
    x = torch.randn(int(cu[-1]), cpu.cfg.C).to(cpu.dtype)
    tol = 1e-4 if cpu.dtype == torch.float32 else 2e-2
    c_cache, g_cache, a_cache = cpu.new_cache(max_seqs=B), gpu.new_cache(max_seqs=B), gpu.new_cache(max_seqs=B)
    cs, gs, as_ = ([c.alloc_seq() for _ in range(B)] for c in (c_cache, g_cache, a_cache))
    with torch.no_grad():
        want = cpu.prefill(x, c_cache, cs, cu_seqlens=cu).float().numpy()
        got = gpu.prefill(x.cuda(), g_cache, gs, cu_seqlens=cu.cuda()).float().cpu().numpy()
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)
        for b in range(B):
            r = slice(int(cu[b]), int(cu[b + 1]))
            if lengths[b]:
                alone = gpu.prefill(x[r][None].cuda(), a_cache, [as_[b]])[0].float().cpu().numpy()
                np.testing.assert_allclose(got[r], alone, rtol=0, atol=tol * scale, err_msg=f"prompt {b}")
        g_cache.check_device_error()
        np.testing.assert_array_equal(c_cache.view(0).pos, g_cache.torch_view(0).pos.cpu().numpy())
        busy = [b for b in range(B) if lengths[b]]
        xt = torch.randn(len(busy), cpu.cfg.C).to(cpu.dtype)
        dc = cpu.decode(xt, c_cache, [cs[b] for b in busy]).float().numpy()
        dg = gpu.decode(xt.cuda(), g_cache, [gs[b] for b in busy]).float().cpu().numpy()
        np.testing.assert_allclose(dg, dc, rtol=0, atol=tol * max(1.0, float(np.abs(dc).max())))


def test_cache_append_varlen_equals_chunks(cuda):
    """KVCache.append_varlen on the CUDA backend == append_chunk per sequence on it, and == the
    CPU backend's append_varlen (slot positions, pool counts, positions; f32)."""
    torch = cuda
    from sparsek.kv_cache import KVCache

    g = np.random.default_rng(5)
    lengths, order = [0, 1, 17, 300, 40], [2, 0, 4, 1, 3]
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    k = g.normal(size=(cu[-1], 2, 16)).astype(np.float32)
    v = g.normal(size=(cu[-1], 2, 16)).astype(np.float32)
    u = g.normal(size=(cu[-1], 2)).astype(np.float32)
    caches = [KVCache(1, 2, 8, 4, 16, max_seqs=5, backend=b) for b in ("cuda", "cuda", "cpu")]
    for c in caches:
        for _ in range(5):
            c.alloc_seq()
    dk, dv, du = (torch.from_numpy(a).cuda() for a in (k, v, u))
    caches[0].append_varlen(0, order, torch.from_numpy(cu), dk, dv, du)
    for b, seq in enumerate(order):
        r = slice(cu[b], cu[b + 1])
        if lengths[b]:
            caches[1].append_chunk(0, seq, dk[r].transpose(0, 1).contiguous(),
                                   dv[r].transpose(0, 1).contiguous(), du[r].t().contiguous())
    caches[2].append_varlen(0, order, cu, k, v, u)
    for c in caches[:2]:
        c.check_device_error()
    host = lambda view: [t.cpu().numpy() for t in view]  # noqa: E731
    views = [host(caches[0].torch_view(0)), host(caches[1].torch_view(0)), list(caches[2].view(0))]
    for a, b in zip(views[0], views[1]):
        np.testing.assert_array_equal(a, b)
    for field in (3, 5, 6):  # slot_pos, pool_count, pos
        np.testing.assert_array_equal(views[0][field], views[2][field])
