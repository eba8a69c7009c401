# SparseK attention over torch.distributed: heads split over ranks (tensor parallel), or a long prompt (context parallel).
"""Tensor and context parallelism for SparseK attention, on torch.distributed.

Context parallelism: `context_parallel_prefill(cfg, x_slice, weights)` on every
rank of a group, each with a contiguous slice of one long prompt, gives each
rank its slice of the layer's output (see its docstring for what crosses
ranks). Tensor parallelism (Megatron style):

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


# ----------------------------------------------------------------------------
# Context parallelism: a long prompt split into contiguous slices, one per rank.
# ----------------------------------------------------------------------------

_CP_LIBS = {}


def _cp_library(cfg, cuda=False):
    """The library of kv_function and attend_prefix_function for `cfg` (compiled once per
    process): the CPU one, or with `cuda` the GPU one (sparsek.gpu.GPULibrary)."""
    from . import compiler
    from .layer import context_parallel_module as _cp_module

    if (cfg, cuda) not in _CP_LIBS:
        if cuda:
            from .gpu import GPULibrary, compile as compile_gpu
            lib = GPULibrary(compile_gpu(_cp_module(cfg)))
        else:
            from .cpu import CompiledLibrary
            lib = CompiledLibrary(compiler.compile(_cp_module(cfg)))
        _CP_LIBS[cfg, cuda] = lib
    return _CP_LIBS[cfg, cuda]


def _call(lib, name, cuda, *args):
    """CPU libraries take numpy views of CPU tensors, GPU libraries the CUDA tensors."""
    if cuda:
        lib.call(name, *args)
    else:
        lib.call(name, *[a.numpy() if isinstance(a, torch.Tensor) else a for a in args])


def _all_gather_padded(t, length, group):
    """all_gather of tensors whose dim 2 differs by rank (padded to the longest)."""
    size = dist.get_world_size(group)
    longest = max(1, max(length))   # gloo refuses empty tensors
    pad = torch.zeros(t.shape[:2] + (longest,) + t.shape[3:], dtype=t.dtype, device=t.device)
    pad[:, :, :t.shape[2]] = t
    parts = [torch.empty_like(pad) for _ in range(size)]
    dist.all_gather(parts, pad, group=group)
    return [p[:, :, :n] for p, n in zip(parts, length)]


def _strongest_candidates(u, last, k):
    """Positions of the top k candidates j <= last of each row of u [B, H, S] in SPEC 4's order
    (higher score first, then the smaller position; -inf scores are never candidates)."""
    if last < 0 or k == 0:
        return set()
    cand = u[:, :, :last + 1]
    order = torch.sort(-cand, dim=-1, stable=True).indices[..., :k]   # stable: ties by position
    keep = torch.gather(cand, -1, order) > float("-inf")
    return set(order[keep].tolist())


def context_parallel_prefill(cfg, x, weights, group=None):
    """Prefill of one prompt split over the ranks of `group` (SPEC 7 layer `cfg`, a
    sparsek.layer.LayerConfig): rank r passes its contiguous slice x [B, T_r, C] (rank 0 the
    first tokens, T_r may differ by rank) and gets its slice of the output, equal to the
    single-process prefill of the whole prompt.

    Selection needs every earlier score, so the scores u (4 bytes per token and KV head) are
    all-gathered; K/V rows are not: a rank's queries read only the window's halo from the
    ranks to its left and, of the earlier keys, the top k by score (SPEC 7: the selections of
    a block of queries lie in its first query's selection plus the block's own candidates),
    so only those rows cross ranks. Each rank then runs select_attention over the prefix of
    the sequence that ends with its slice (queries aligned to the lower right). CPU tensors
    run the CPU library (gloo), CUDA tensors the GPU one on torch's current stream (NCCL).
    """
    from .nn import TORCH_DTYPES

    rank, size = _rank_and_size(group)
    if cfg.dtype != "f32":
        raise NotImplementedError("context_parallel_prefill runs f32 layers for now")
    cuda = x.is_cuda
    lib = _cp_library(cfg, cuda)
    dev = x.device
    x = x.detach().contiguous().to(torch.float32)
    B, T_r, C = x.shape
    # Lengths go through the group's backend: CUDA tensors for NCCL.
    lengths = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(size)]
    dist.all_gather(lengths, torch.tensor([T_r], device=dev), group=group)
    length = [int(n) for n in lengths]
    starts = [sum(length[:i]) for i in range(size)]
    start, end = starts[rank], starts[rank] + T_r
    w = {n: weights[n].detach().float().contiguous().to(dev) for n in cfg.weight_names()}
    Hkv, D = cfg.Hkv, cfg.D

    # Local keys, values and scores (scores at absolute positions: the slope term).
    key = torch.zeros(B, Hkv, T_r, D, device=dev)
    value, u = torch.zeros(B, Hkv, T_r, D, device=dev), torch.zeros(B, Hkv, T_r, device=dev)
    kv_args = [w[n] for n in cfg.weight_names() if n not in ("wq", "wo")]
    _call(lib, "cp_kv", cuda, x, start, *kv_args, key, value, u)
    u_full = torch.cat(_all_gather_padded(u, length, group), dim=2)

    # The rows each rank needs from its left: the top k candidates before its first query's
    # window, and that window's part left of the slice. Every rank computes every request.
    wanted = set()
    u_host = u_full.cpu()
    for s in starts:
        wanted |= _strongest_candidates(u_host, s - cfg.w, cfg.k)
        wanted |= set(range(max(0, s - cfg.w + 1), s))
    mine = sorted(j for j in wanted if start <= j < end)
    rows = [len([j for j in wanted if s <= j < s + n]) for s, n in zip(starts, length)]
    local_rows = torch.tensor(mine, dtype=torch.int64, device=dev) - start
    packed_k = _all_gather_padded(key[:, :, local_rows], rows, group)
    packed_v = _all_gather_padded(value[:, :, local_rows], rows, group)

    # The prefix [0, end): own rows, received rows; keys no query here reads stay zero.
    key_prefix = torch.zeros(B, Hkv, end, D, device=dev)
    value_prefix = torch.zeros(B, Hkv, end, D, device=dev)
    key_prefix[:, :, start:] = key
    value_prefix[:, :, start:] = value
    for q, (s, n) in enumerate(zip(starts[:rank], length[:rank])):
        pos = torch.tensor(sorted(j for j in wanted if s <= j < s + n), dtype=torch.int64, device=dev)
        key_prefix[:, :, pos] = packed_k[q]
        value_prefix[:, :, pos] = packed_v[q]
    out = torch.zeros(B, T_r, C, device=dev)
    _call(lib, "cp_attend", cuda, x, key_prefix, value_prefix, u_full[:, :, :end].contiguous(),
          w["wq"], w["wo"], out)
    return out.to(TORCH_DTYPES[cfg.dtype])
