# Tensor- and context-parallel SparseK attention on P gloo processes (CPU) against one process.
import os
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

from cpu_harness import require_compiler  # noqa: E402

CONFIG = dict(embed_dim=32, num_heads=8, num_kv_heads=4, k=4, w=3, score_slope=True)
B, T0, T = 2, 9, 16   # decoding runs past k + w: pool evictions and the window ring


def whole_layer():
    from sparsek.nn import SparseKAttention

    torch.manual_seed(0)
    full = SparseKAttention(**CONFIG)
    with torch.no_grad():
        full.score_bias.normal_()
        full.score_slope.normal_(std=0.05)
    return full


def _rank_main(rank, size, init_file, result_file):
    from sparsek.parallel import TensorParallelSparseKAttention

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        full = whole_layer()
        tp = TensorParallelSparseKAttention.from_module(full)
        assert tp.local.cfg.Hq == 8 // size and tp.local.cfg.Hkv == 4 // size
        x = torch.randn(B, T, CONFIG["embed_dim"], generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            outs = [tp(x[:, :T0])]
            cache = tp.new_cache(max_seqs=B)
            assert cache.num_kv_heads == 4 // size
            seqs = [cache.alloc_seq() for _ in range(B)]
            outs.append(tp.prefill(x[:, :T0], cache, seqs))
            for t in range(T0, T):
                outs.append(tp.decode(x[:, t], cache, seqs)[:, None])
        cache.close()
        if rank == 0:
            np.save(result_file, torch.cat(outs, 1).numpy())
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("size", [2, 4])
def test_tensor_parallel_equals_the_whole_layer(size):
    require_compiler()
    full = whole_layer()
    x = torch.randn(B, T, CONFIG["embed_dim"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = [full(x[:, :T0])]
        cache = full.new_cache(max_seqs=B)
        seqs = [cache.alloc_seq() for _ in range(B)]
        want.append(full.prefill(x[:, :T0], cache, seqs))
        for t in range(T0, T):
            want.append(full.decode(x[:, t], cache, seqs)[:, None])
        cache.close()
        # Compile the slice's layer once here: the ranks then load it from the disk cache.
        from sparsek.nn import SparseKAttention
        local = dict(CONFIG, num_heads=8 // size, num_kv_heads=4 // size, head_dim=4)
        SparseKAttention(**local)(x[:, :2])
    want = torch.cat(want, 1).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "out.npy")
        mp.spawn(_rank_main, args=(size, os.path.join(tmp, "init"), result), nprocs=size, join=True)
        got = np.load(result)
    # Partial output projections summed over ranks: f32 rounding only.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_process_group_is_required():
    from sparsek.parallel import TensorParallelSparseKAttention

    with pytest.raises(RuntimeError, match="process group"):
        TensorParallelSparseKAttention(**CONFIG)


# Context parallelism: one prompt in contiguous slices over P gloo ranks (uneven lengths).
CP = dict(C=32, Hq=4, Hkv=2, D=8, k=5, w=4, bias=True, slope=True)


def cp_weights():
    from sparsek.layer import LayerConfig

    cfg = LayerConfig(**CP)
    g = torch.Generator().manual_seed(5)
    w = {n: torch.randn(*s, generator=g) * (0.3 if n in ("bias", "slope") else s[0] ** -0.5)
         for n, s in cfg.weight_shapes().items()}
    w["slope"] *= 0.02
    return cfg, w


def _cp_rank(rank, size, init_file, out_dir, cuts):
    from sparsek.parallel import context_parallel_prefill

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        cfg, w = cp_weights()
        x = torch.randn(2, cuts[-1], CP["C"], generator=torch.Generator().manual_seed(6))
        out = context_parallel_prefill(cfg, x[:, cuts[rank]:cuts[rank + 1]], w)
        np.save(os.path.join(out_dir, f"rank{rank}.npy"), out.numpy())
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("cuts", [[0, 20, 41], [0, 3, 30, 34, 60]])
def test_context_parallel_prefill_equals_one_process(cuts):
    require_compiler()
    from sparsek import compiler
    from sparsek.cpu import CompiledLibrary
    from sparsek.layer import layer_module
    from sparsek.parallel import _cp_library

    cfg, w = cp_weights()
    x = torch.randn(2, cuts[-1], CP["C"], generator=torch.Generator().manual_seed(6))
    whole = CompiledLibrary(compiler.compile(layer_module(cfg, decode=False)))
    want = np.zeros((2, cuts[-1], CP["C"]), np.float32)
    whole.call("sparsek_layer_prefill", x.numpy(), *[w[n].numpy() for n in cfg.weight_names()], want)
    _cp_library(cfg)   # compiled here once; the ranks load it from the disk cache
    size = len(cuts) - 1
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_cp_rank, args=(size, os.path.join(tmp, "init"), tmp, cuts), nprocs=size, join=True)
        got = np.concatenate([np.load(os.path.join(tmp, f"rank{r}.npy")) for r in range(size)], axis=1)
    # The same selection over the same (bit-identical) scores and the same rows: equal outputs.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
