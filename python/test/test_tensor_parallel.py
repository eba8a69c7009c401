# Tensor-parallel SparseKAttention on P gloo processes (CPU) against the whole layer in one process.
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
