# SparseKAttention on CUDA tensors (the layer compiled by sparsek-gpu-pipeline, a CUDA KV cache)
# against the same module on the CPU (compiled CPU layer, CPU KV cache) and the float64 reference.
import numpy as np
import pytest

from nn_configs import CONFIGS
from sparsek.layer import reference_prefill


def make_module(torch, name, seed=0):
    from sparsek.nn import SparseKAttention

    opts = dict(CONFIGS[name])
    opts["dtype"] = {"f32": torch.float32, "bf16": torch.bfloat16}[opts.get("dtype", "f32")]
    torch.manual_seed(seed)
    attn = SparseKAttention(**opts)
    with torch.no_grad():
        if attn.score_bias is not None:
            attn.score_bias.normal_()
        if attn.score_slope is not None:
            attn.score_slope.normal_(std=0.05)
    return attn


def pair(torch, name, seed=0):
    """The module on the CPU and the same one (same seed, same weights) on the GPU."""
    cpu, gpu = make_module(torch, name, seed), make_module(torch, name, seed).cuda()
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        assert torch.equal(a, b.cpu())
    return cpu, gpu


def weights(attn):
    named = {"wq": attn.wq, "wk": attn.wk, "wv": attn.wv, "wsc": attn.wsc, "bias": attn.score_bias,
             "slope": attn.score_slope, "wo": attn.wo}
    return {n: named[n].detach().float().cpu().numpy() for n in attn.cfg.weight_names()}


def close(got, want, tol):
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("name", ["f32", "f32_window"])
@pytest.mark.parametrize("T", [1, 37, 100])
def test_prefill_matches_cpu_and_reference(torch, layer_cache, name, T):
    cpu, gpu = pair(torch, name, seed=T)
    x = torch.randn(2, T, cpu.cfg.C)
    with torch.no_grad():
        want_cpu = cpu(x).numpy()
        stream = torch.cuda.Stream()  # the compiled code runs on torch's current stream
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            y = gpu(x.cuda())
        stream.synchronize()
    assert y.is_cuda and y.dtype == torch.float32 and y.shape == x.shape
    want = reference_prefill(cpu.cfg, x.numpy(), weights(cpu))[0]
    close(y.cpu().numpy(), want, 1e-4)       # SPEC 8: GPU f32 vs float64
    close(y.cpu().numpy(), want_cpu, 1e-4)


def test_bf16_prefill_matches_cpu(torch, layer_cache):
    cpu, gpu = pair(torch, "bf16", seed=5)
    x = torch.randn(1, 40, cpu.cfg.C).to(torch.bfloat16)
    with torch.no_grad():
        want = cpu(x).float().numpy()
        y = gpu(x.cuda())
    assert y.dtype == torch.bfloat16 and y.is_cuda
    close(y.float().cpu().numpy(), want, 3e-2)


def test_bf16_d128_prefill_then_decode_matches_cpu(torch, layer_cache):
    """A production head shape in bf16: prompt past k + w, then decode steps, GPU against
    the CPU path (bf16 tolerance) with the cache states equal."""
    cpu, gpu = pair(torch, "bf16_d128", seed=13)
    C, T0, T = cpu.cfg.C, 100, 106
    x = torch.randn(2, T, C).to(torch.bfloat16)
    gcache, ccache = gpu.new_cache(max_seqs=2), cpu.new_cache(max_seqs=2)
    gseqs = [gcache.alloc_seq() for _ in range(2)]
    cseqs = [ccache.alloc_seq() for _ in range(2)]
    with torch.no_grad():
        y = gpu.prefill(x[:, :T0].cuda(), gcache, gseqs)
        assert y.dtype == torch.bfloat16
        close(y.float().cpu().numpy(), cpu.prefill(x[:, :T0], ccache, cseqs).float().numpy(), 3e-2)
        for t in range(T0, T):
            y_t = gpu.decode(x[:, t].cuda(), gcache, gseqs)
            close(y_t.float().cpu().numpy(), cpu.decode(x[:, t], ccache, cseqs).float().numpy(), 3e-2)
    gcache.check_device_error()
    gv, cv = gcache.torch_view(0), ccache.torch_view(0)
    assert gv.pos.cpu().tolist() == cv.pos.tolist()
    gcache.close(), ccache.close()


@pytest.mark.parametrize("name", ["f32", "f32_window"])
def test_prefill_then_decode_matches_cpu_and_reference(torch, layer_cache, name):
    cpu, gpu = pair(torch, name, seed=11)
    C, T0, T = cpu.cfg.C, 20, 36   # past k + w: pool eviction and the window ring
    x = torch.randn(2, T, C)
    # Sequences 2 and 0 of three: the decode step gathers non-contiguous slot rows.
    gcache, ccache = gpu.new_cache(max_seqs=3), cpu.new_cache(max_seqs=3)
    assert gcache.backend == "cuda" and ccache.backend == "cpu"
    gseqs = [gcache.alloc_seq() for _ in range(3)][::-2]
    cseqs = [ccache.alloc_seq() for _ in range(3)][::-2]
    assert gseqs == [2, 0]
    xg = x.cuda()
    with torch.no_grad():
        y = gpu.prefill(xg[:, :T0], gcache, gseqs)
        close(y.cpu().numpy(), cpu.prefill(x[:, :T0], ccache, cseqs).numpy(), 1e-4)
        for t in range(T0, T):
            y_t = gpu.decode(xg[:, t], gcache, gseqs)
            assert y_t.is_cuda and y_t.shape == (2, C)
            want_cpu = cpu.decode(x[:, t], ccache, cseqs).numpy()
            want = reference_prefill(cpu.cfg, x[:, :t + 1].numpy(), weights(cpu))[0][:, -1]
            close(y_t.cpu().numpy(), want, 1e-4)
            close(y_t.cpu().numpy(), want_cpu, 1e-4)
    # The CUDA cache holds what the CPU cache holds (positions and pools exactly).
    gv, cv = gcache.torch_view(0), ccache.torch_view(0)
    assert gv.pos.cpu().tolist() == cv.pos.tolist()
    assert torch.equal(gv.pool_count.cpu(), cv.pool_count)
    assert torch.equal(gv.slot_pos.cpu(), cv.slot_pos)
    gcache.close(), ccache.close()


def test_device_mismatches_are_clear_errors(torch, layer_cache):
    cpu, gpu = pair(torch, "f32")
    with torch.no_grad():
        with pytest.raises(ValueError, match="move the module"):
            gpu(torch.randn(1, 4, cpu.cfg.C))          # CPU input, CUDA module
        cache = cpu.new_cache()
        seq = [cache.alloc_seq()]
        with pytest.raises(ValueError, match="CUDA backend"):
            gpu.prefill(torch.randn(1, 4, cpu.cfg.C, device="cuda"), cache, seq)
        cache.close()


def test_prefill_into_a_busy_sequence_is_refused(torch, layer_cache):
    _, gpu = pair(torch, "f32")
    cache = gpu.new_cache()
    seq = [cache.alloc_seq()]
    x = torch.randn(1, 6, gpu.cfg.C, device="cuda")
    with torch.no_grad():
        gpu.prefill(x, cache, seq)
        with pytest.raises(ValueError, match="already hold tokens"):
            gpu.prefill(x, cache, seq)
    cache.close()


@pytest.mark.parametrize("name,T0,T,tol", [("f32", 10, 40, 1e-4),
                                            # bf16: the projections' tensor-core matmuls with
                                            # split K, whose partials are reduced in order
                                            ("bf16_d128", 100, 112, 3e-2)])
def test_decode_step_captured_in_a_cuda_graph_replays_like_eager(torch, layer_cache, name, T0, T,
                                                                 tol):
    """One decode step captured once (projections, cache append with its exact tau update,
    decode attention) and replayed step after step gives what eager decoding gives, bit for
    bit: nothing in the step allocates outside the graph, synchronizes the host, keeps
    per-step host state or depends on the order in which blocks finish."""
    _, eager = pair(torch, name, seed=21)
    _, graphed = pair(torch, name, seed=21)
    C = eager.cfg.C   # T0 past k + w: evictions, rescans, the window ring
    dtype = torch.bfloat16 if name.startswith("bf16") else torch.float32
    x = torch.randn(2, T, C, device="cuda").to(dtype)
    caches = [m.new_cache(max_seqs=2) for m in (eager, graphed)]
    seqs = [[c.alloc_seq() for _ in range(2)] for c in caches]
    assert seqs[0] == seqs[1] == [0, 1]   # consecutive: the step gathers slot rows as views
    with torch.no_grad():
        for m, c, s in zip((eager, graphed), caches, seqs):
            m.prefill(x[:, :T0], c, s)
            m.decode(x[:, T0], c, s)      # warm-up step, eager on both
        static_x = x[:, T0 + 1].clone()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_y = graphed.decode(static_x, caches[1], seqs[1])
        for t in range(T0 + 1, T):
            want = eager.decode(x[:, t], caches[0], seqs[0])
            static_x.copy_(x[:, t])
            graph.replay()
            torch.testing.assert_close(static_y, want, rtol=0, atol=0)
            ref = reference_prefill(eager.cfg, x[:, :t + 1].float().cpu().numpy(),
                                    weights(eager))[0][:, -1]
            close(static_y.float().cpu().numpy(), ref, tol)
    a, b = (c.torch_view(0) for c in caches)
    assert torch.equal(a.pos, b.pos) and torch.equal(a.pool_count, b.pool_count)
    assert torch.equal(a.slot_pos, b.slot_pos) and torch.equal(a.tau, b.tau)
    for c in caches:
        c.close()
