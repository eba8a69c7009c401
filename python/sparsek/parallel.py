# Tensor-parallel SparseKAttention over torch.distributed: each rank holds a slice of the heads.
"""Tensor parallelism for SparseK attention (Megatron style, on torch.distributed).

    import torch.distributed as dist
    dist.init_process_group("nccl")                 # or "gloo" on CPUs
    full = SparseKAttention(embed_dim=C, num_heads=Hq, num_kv_heads=Hkv, k=k, w=w)
    attn = TensorParallelSparseKAttention.from_module(full)   # this rank's slice
    y = attn(x)                                     # x [B, T, C] on every rank -> y, the same on every rank
    cache = attn.new_cache(max_seqs=B)              # this rank's KV heads only
    y = attn.prefill(x, cache, seqs); y_t = attn.decode(x_t, cache, seqs)

With P ranks, rank r holds query heads [r Hq/P, (r+1) Hq/P) and the KV heads
[r Hkv/P, (r+1) Hkv/P) they attend to (GQA groups never straddle ranks), the
scoring network's rows of those KV heads, and the rows of the output
projection that read its query heads. SparseK's selection is per KV head, so a
rank's heads need nothing from other ranks: each rank runs the ordinary
compiled layer on its slice, and one all-reduce sums the partial output
projections. KV caches, and their memory, are split the same way. P must
divide Hkv (and so Hq).
"""

import torch
import torch.distributed as dist

from .nn import SparseKAttention


def _rank_and_size(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("TensorParallelSparseKAttention needs an initialized torch.distributed "
                           "process group (dist.init_process_group)")
    return dist.get_rank(group), dist.get_world_size(group)


class TensorParallelSparseKAttention(torch.nn.Module):
    """This rank's slice of a SparseKAttention layer; outputs are all-reduced over `group`."""

    def __init__(self, embed_dim, num_heads, num_kv_heads=None, head_dim=None, k=64, w=64,
                 score_bias=True, score_slope=False, scale=None, dtype=torch.float32, group=None):
        super().__init__()
        rank, size = _rank_and_size(group)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_kv_heads % size or num_heads % num_kv_heads:
            raise ValueError(f"tensor parallelism over {size} ranks splits whole KV heads: "
                             f"num_kv_heads ({num_kv_heads}) must be a multiple of {size}, and "
                             f"num_heads ({num_heads}) of num_kv_heads")
        head_dim = embed_dim // num_heads if head_dim is None else head_dim
        self.group, self.rank, self.world_size = group, rank, size
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.local = SparseKAttention(embed_dim, num_heads // size, num_kv_heads // size,
                                      head_dim=head_dim, k=k, w=w, score_bias=score_bias,
                                      score_slope=score_slope, scale=scale, dtype=dtype)

    @classmethod
    def from_module(cls, full, group=None):
        """This rank's slice of a whole SparseKAttention (every rank passes the same module)."""
        c = full.cfg
        tp = cls(c.C, c.Hq, c.Hkv, head_dim=c.D, k=c.k, w=c.w, score_bias=full.score_bias is not None,
                 score_slope=full.score_slope is not None, scale=c.scale, dtype=full.dtype, group=group)
        hq, hkv, D = c.Hq // tp.world_size, c.Hkv // tp.world_size, c.D
        q0, kv0 = tp.rank * hq, tp.rank * hkv
        with torch.no_grad():
            local = tp.local
            local.wq.copy_(full.wq[:, q0 * D:(q0 + hq) * D])
            local.wk.copy_(full.wk[:, kv0 * D:(kv0 + hkv) * D])
            local.wv.copy_(full.wv[:, kv0 * D:(kv0 + hkv) * D])
            local.wsc.copy_(full.wsc[kv0:kv0 + hkv])
            local.wo.copy_(full.wo[q0 * D:(q0 + hq) * D])
            if full.score_bias is not None:
                local.score_bias.copy_(full.score_bias[kv0:kv0 + hkv])
            if full.score_slope is not None:
                local.score_slope.copy_(full.score_slope[kv0:kv0 + hkv])
        return tp.to(full.wq.device)

    def _reduce(self, partial):
        dist.all_reduce(partial, group=self.group)
        return partial

    def forward(self, x):
        """x [B, T, C] (the same on every rank) -> [B, T, C], the same on every rank."""
        return self._reduce(self.local(x))

    def prefill(self, x, cache=None, seq_ids=None, layer=0):
        return self._reduce(self.local.prefill(x, cache, seq_ids, layer))

    def decode(self, x, cache, seq_ids, layer=0):
        return self._reduce(self.local.decode(x, cache, seq_ids, layer))

    def new_cache(self, max_seqs=1, num_layers=1, score_capacity=None, device=None):
        """A KV cache for this rank's KV heads."""
        return self.local.new_cache(max_seqs, num_layers, score_capacity, device)
