# Tensor- and context-parallel SparseK attention over NCCL on 2 GPUs against one process.
# Skips unless the machine has two GPUs.
import os
import tempfile

import numpy as np
import pytest

from nn_configs import CONFIGS


def _whole_layer(torch):
    """The 'f32' test layer on the GPU, seeded, and its inputs [2, 30, 64]."""
    from sparsek.nn import SparseKAttention

    torch.manual_seed(0)
    full = SparseKAttention(**CONFIGS["f32"])
    with torch.no_grad():
        full.score_bias.normal_()
        full.score_slope.normal_(std=0.05)
    return full.cuda(), torch.randn(2, 30, 64, generator=torch.Generator().manual_seed(1)).cuda()


def _prefill_then_decode(torch, attn):
    """Prefill of 18 tokens, then 12 decode steps, over a fresh cache of `attn`: [2, 30, 64]."""
    _, x = _whole_layer(torch)
    with torch.no_grad():
        cache = attn.new_cache(max_seqs=2)
        seqs = [cache.alloc_seq() for _ in range(2)]
        outs = [attn.prefill(x[:, :18], cache, seqs)]
        outs += [attn.decode(x[:, t], cache, seqs)[:, None] for t in range(18, 30)]
        cache.close()
    return torch.cat(outs, 1).cpu().numpy()


def _rank(rank, size, init_file, out_dir):
    import torch
    import torch.distributed as dist

    from sparsek.parallel import TensorParallelSparseKAttention

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        full, _ = _whole_layer(torch)
        tp = TensorParallelSparseKAttention.from_module(full)
        np.save(os.path.join(out_dir, f"rank{rank}.npy"), _prefill_then_decode(torch, tp))
    finally:
        dist.destroy_process_group()


def test_tensor_parallel_over_nccl_equals_one_gpu(torch, layer_cache):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    import torch.multiprocessing as mp

    want = _prefill_then_decode(torch, _whole_layer(torch)[0])
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(2, os.path.join(tmp, "init"), tmp), nprocs=2, join=True)
        for r in range(2):   # every rank holds the all-reduced output
            np.testing.assert_allclose(np.load(os.path.join(tmp, f"rank{r}.npy")), want, rtol=1e-4, atol=1e-4)


def _cp_rank(rank, size, init_file, out_dir, cuts):
    import torch
    import torch.distributed as dist

    from nn_configs import CONTEXT_PARALLEL
    from sparsek.layer import LayerConfig
    from sparsek.parallel import context_parallel_prefill

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{init_file}", rank=rank, world_size=size)
    try:
        cfg = LayerConfig(**CONTEXT_PARALLEL)
        w, x = _cp_inputs(torch, cfg, cuts[-1])
        out = context_parallel_prefill(cfg, x[:, cuts[rank]:cuts[rank + 1]].cuda(),
                                       {n: t.cuda() for n, t in w.items()})
        assert out.is_cuda
        np.save(os.path.join(out_dir, f"cp{rank}.npy"), out.cpu().numpy())
    finally:
        dist.destroy_process_group()


def _cp_inputs(torch, cfg, T):
    g = torch.Generator().manual_seed(5)
    w = {n: torch.randn(*s, generator=g) * (0.3 if n in ("bias", "slope") else s[0] ** -0.5)
         for n, s in cfg.weight_shapes().items()}
    w["slope"] *= 0.02
    return w, torch.randn(2, T, cfg.C, generator=torch.Generator().manual_seed(6))


def test_context_parallel_prefill_over_nccl_equals_one_process(torch, layer_cache):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    import torch.multiprocessing as mp

    from nn_configs import CONTEXT_PARALLEL
    from sparsek import compiler
    from sparsek.cpu import CompiledLibrary
    from sparsek.layer import LayerConfig, layer_module

    cfg = LayerConfig(**CONTEXT_PARALLEL)
    cuts = [0, 45, 100]
    w, x = _cp_inputs(torch, cfg, cuts[-1])
    want = np.zeros((2, cuts[-1], cfg.C), np.float32)
    CompiledLibrary(compiler.compile(layer_module(cfg, decode=False))).call(
        "sparsek_layer_prefill", x.numpy(), *[w[n].numpy() for n in cfg.weight_names()], want)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_cp_rank, args=(2, os.path.join(tmp, "init"), tmp, cuts), nprocs=2, join=True)
        got = np.concatenate([np.load(os.path.join(tmp, f"cp{r}.npy")) for r in range(2)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)   # SPEC 8: GPU f32
