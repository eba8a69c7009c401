# SparseKAttention (torch) on CPU tensors against the float64 reference; backward through a KV-cache prefill is a clear error (gradients: test_autograd.py; CUDA: test/gpu/test_gpu_nn.py).
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cpu_harness import require_compiler  # noqa: E402
from runtime_harness import require_runtime  # noqa: E402
from sparsek.layer import reference_prefill  # noqa: E402
from sparsek.nn import SparseKAttention  # noqa: E402


@pytest.fixture(autouse=True)
def _compiler():
    require_compiler()


def module(seed=0, **kw):
    torch.manual_seed(seed)
    opts = dict(embed_dim=32, num_heads=4, num_kv_heads=2, k=5, w=3, score_slope=True)
    opts.update(kw)
    attn = SparseKAttention(**opts)
    with torch.no_grad():
        attn.score_bias.normal_()
        if attn.score_slope is not None:
            attn.score_slope.normal_(std=0.05)
    return attn


def weights(attn):
    named = {"wq": attn.wq, "wk": attn.wk, "wv": attn.wv, "wsc": attn.wsc, "bias": attn.score_bias,
             "slope": attn.score_slope, "wo": attn.wo}
    return {n: named[n].detach().float().numpy() for n in attn.cfg.weight_names()}


def test_forward_matches_reference():
    attn = module()
    x = torch.randn(2, 29, 32)
    with torch.no_grad():
        y = attn(x)
    want = reference_prefill(attn.cfg, x.numpy(), weights(attn))[0]
    assert y.shape == x.shape and y.dtype == torch.float32
    np.testing.assert_allclose(y.numpy(), want, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_prefill_then_decode_matches_full_recompute():
    require_runtime()
    attn = module(1)
    x = torch.randn(2, 24, 32)
    cache = attn.new_cache(max_seqs=2)
    seqs = [cache.alloc_seq() for _ in range(2)]
    with torch.no_grad():
        y = attn.prefill(x[:, :12], cache, seqs)
        np.testing.assert_allclose(y.numpy(), attn(x[:, :12]).numpy(), atol=1e-6)
        for t in range(12, 24):
            y_t = attn.decode(x[:, t], cache, seqs)
            want = reference_prefill(attn.cfg, x[:, :t + 1].numpy(), weights(attn))[0][:, -1]
            np.testing.assert_allclose(y_t.numpy(), want, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_bf16_module():
    attn = module(2, dtype=torch.bfloat16, score_slope=False)
    x = torch.randn(1, 16, 32).to(torch.bfloat16)
    with torch.no_grad():
        y = attn(x)
    assert y.dtype == torch.bfloat16
    want = reference_prefill(attn.cfg, x.float().numpy(), weights(attn))[0]
    np.testing.assert_allclose(y.float().numpy(), want, atol=5e-2)


def test_backward_through_a_cache_prefill_is_a_clear_error():
    require_runtime()
    attn = module(3)
    cache = attn.new_cache(max_seqs=1)
    y = attn.prefill(torch.randn(1, 8, 32), cache, [cache.alloc_seq()])
    assert y.requires_grad
    with pytest.raises(RuntimeError, match="no backward here"):
        y.sum().backward()


def test_compiled_library_takes_cpu_tensors():
    from sparsek import compiler, ir
    from sparsek.cpu import CompiledLibrary
    lib = CompiledLibrary(compiler.compile(ir.module(ir.mask_function("mask", k=2))))
    z = torch.tensor([[3.0, 1.0, 0.5, -2.0]])
    p, tau = torch.zeros_like(z), torch.zeros(1)
    lib.call("mask", z, p, tau)  # written in place through numpy views of the tensors
    assert torch.allclose(p, torch.tensor([[1.0, 0.75, 0.25, 0.0]])) and abs(float(tau) - 0.25) < 1e-6
    if torch.cuda.is_available():
        with pytest.raises(NotImplementedError, match="GPU entry points"):
            lib.call("mask", z.cuda(), p, tau)
