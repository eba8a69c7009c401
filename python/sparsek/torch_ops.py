# torch.library ops of the SparseK layer (torch.ops.sparsek.*) with fake implementations, so torch.compile traces SparseKAttention without graph breaks.
"""The compiled SparseK layer as torch operators.

    from sparsek import torch_ops                       # registers torch.ops.sparsek.*
    cfg = torch_ops.config_key(layer_config)             # the layer's shapes and options, a str
    y = torch.ops.sparsek.prefill(x, wq, wk, wv, wsc, bias, slope, wo, cfg)

| op | returns | effect |
| --- | --- | --- |
| `prefill(x, wq, wk, wv, wsc, bias?, slope?, wo, config)` | out [B, T, C] | - |
| `prefill_kv(...the same)` | out, key, value [B, Hkv, T, D], u [B, Hkv, T] f32 | - |
| `fill_cache(key, value, u, config, cache, layer, seq_ids)` | - | appends a prompt to the cache |
| `decode(x, wq, wk, wv, wsc, bias?, slope?, wo, config, cache, layer, seq_ids)` | out [B, C] | appends x's token to the cache |
| `prefill_varlen(x, cu_seqlens, wq, ..., wo, config)` | out [N, C] | - |
| `prefill_varlen_kv(...the same)` | out, key, value [N, Hkv, D], u [N, Hkv] f32 | - |
| `fill_cache_varlen(key, value, u, cu_seqlens, cache, layer, seq_ids)` | - | appends the prompts to empty sequences |

Each op runs the layer compiled from `sparsek.layer` (sparsek-cpu-pipeline
for CPU tensors, sparsek-gpu-pipeline for CUDA tensors: device pointers on
torch's current stream) and has a fake implementation that only computes
output shapes, which is all torch.compile needs to trace it: the compiled
call is one opaque node of the graph. `bias` and `slope` are float32 or
None (the layer has none); the other tensors have the layer's dtype.

prefill and prefill_kv are pure functions of their tensors and `config`.
prefill is differentiable (float32, float16, bfloat16; CPU and CUDA): its
backward is one more op,

| `prefill_backward(grad, x, wq, wk, wv, wsc, bias?, slope?, wo, config)` | [dx, dwq, dwk, dwv, dwsc, dbias, dslope, dwo] | - |

(sparsek.autograd.sparsek_layer_vjp: the attention recomputed, the compiled
select_attention_grad and score_grad; an absent bias or slope gets an empty
tensor), registered with torch.library.register_autograd, so torch.compile
traces forward and backward without a graph break. prefill_kv, decode and
the varlen ops (below) keep a placeholder backward, which raises a
RuntimeError when a gradient is computed. The placeholder is traceable, so a model compiled with gradients
enabled (parameters require grad by default) still compiles and runs
forward: torch.compile traces a backward graph up front, and a backward that
raised while being traced would fail the compile.

fill_cache and decode change the runtime KV cache, which torch cannot see:
`cache` is its `KVCache.handle` and `seq_ids` the sequence slots. They are
registered as ordered effects, so torch.compile neither drops, merges nor
reorders them.

The varlen ops run a batch of prompts of different lengths packed as in
FlashAttention's varlen interface (sparsek.varlen.Layer, one compiled call):
x [N, C] holds the prompts' tokens concatenated, sequence b the rows
cu_seqlens[b]:cu_seqlens[b + 1] (an integer tensor [B + 1] rising from 0 to
N, on any device) at positions 0.. of its own. Every output shape follows
from x's shape alone, so the fake implementations need no offsets' values and
no `max_seqlen` (FlashAttention's argument that sizes its kernels without
reading the offsets): the padded extents of the GPU form depend on more than
the longest length (sparsek.varlen.alignment) and are computed from the
offsets inside the op, which reads them on the host (a CUDA tensor is copied,
which waits for its stream). The varlen prefill has no backward (there is no
varlen gradient): its placeholder raises, as prefill_kv's does.
fill_cache_varlen refuses sequences that already hold tokens in `layer` (the
prompts are at positions 0..) and is an ordered effect like fill_cache.
"""

import dataclasses
import json
from typing import List, Optional

import torch

from .compiled_layer import CompiledLayer
from .cpu import _host_array
from .kv_cache import KVCache
from .layer import LayerConfig

_LAYERS = {}


def config_key(cfg):
    """The `config` argument of the ops for a LayerConfig (a canonical JSON string)."""
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


def compiled_layer(cfg):
    """The one CompiledLayer of `cfg` in this process (libraries are loaded once per config)."""
    key = config_key(cfg)
    if key not in _LAYERS:
        _LAYERS[key] = CompiledLayer(cfg)
    return _LAYERS[key]


def _layer(config):
    layer = _LAYERS.get(config)
    return layer if layer is not None else compiled_layer(LayerConfig(**json.loads(config)))


def _config(config):
    return _layer(config).cfg


def _weights(cfg, weights):
    """name -> tensor for the layer's weight names; refuses a missing or an extra optional weight."""
    named = dict(zip(("wq", "wk", "wv", "wsc", "bias", "slope", "wo"), weights))
    for name, present in (("bias", cfg.bias), ("slope", cfg.slope)):
        if (named[name] is not None) != present:
            raise ValueError(f"the layer {'takes' if present else 'has no'} score {name}; got "
                             f"{'none' if named[name] is None else 'a tensor'}")
    return {n: named[n] for n in cfg.weight_names()}


def _numpy(t):
    return _host_array(t.contiguous())


def _tensor(a, like_dtype):
    t = torch.from_numpy(a)
    return t.view(torch.bfloat16) if like_dtype == torch.bfloat16 else t


def _check_x(cfg, x, rank):
    want = "[B, T, C]" if rank == 3 else "[B, C]"
    if x.dim() != rank or x.shape[-1] != cfg.C:
        raise ValueError(f"x: expected {want} with C = {cfg.C}, got {tuple(x.shape)}")


def _prefill(x, weights, config, return_kv):
    layer = _layer(config)
    named = _weights(layer.cfg, weights)
    _check_x(layer.cfg, x, 3)
    if x.is_cuda:
        return layer.cuda_prefill(x, named, return_kv=return_kv)
    result = layer(_numpy(x), {n: _numpy(t) for n, t in named.items()}, return_kv=return_kv)
    if not return_kv:
        return _tensor(result, x.dtype)
    out, key, value, u = result
    return _tensor(out, x.dtype), _tensor(key, x.dtype), _tensor(value, x.dtype), torch.from_numpy(u)


@torch.library.custom_op("sparsek::prefill", mutates_args=())
def prefill(x: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor, wv: torch.Tensor,
            wsc: torch.Tensor, bias: Optional[torch.Tensor], slope: Optional[torch.Tensor],
            wo: torch.Tensor, config: str) -> torch.Tensor:
    """The layer over x [B, T, C] at positions 0..T-1 -> out [B, T, C]."""
    return _prefill(x, (wq, wk, wv, wsc, bias, slope, wo), config, return_kv=False)


@prefill.register_fake
def _(x, wq, wk, wv, wsc, bias, slope, wo, config):
    _check_x(_config(config), x, 3)
    return x.new_empty(x.shape)


_WEIGHT_NAMES = ("wq", "wk", "wv", "wsc", "bias", "slope", "wo")


@torch.library.custom_op("sparsek::prefill_backward", mutates_args=())
def prefill_backward(grad: torch.Tensor, x: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor,
                     wv: torch.Tensor, wsc: torch.Tensor, bias: Optional[torch.Tensor],
                     slope: Optional[torch.Tensor], wo: torch.Tensor,
                     config: str) -> List[torch.Tensor]:
    """The gradients of prefill for `grad` [B, T, C]: [dx, dwq, dwk, dwv, dwsc, dbias, dslope,
    dwo], each like its input (an empty tensor for an absent bias or slope)."""
    from .autograd import sparsek_layer_vjp

    weights = (wq, wk, wv, wsc, bias, slope, wo)
    layer = _layer(config)
    named = _weights(layer.cfg, weights)
    _check_x(layer.cfg, x, 3)
    grads = sparsek_layer_vjp(x, layer.cfg, named, grad)
    out = [grads["x"]]
    for name, t in zip(_WEIGHT_NAMES, weights):
        out.append(grads[name] if t is not None else x.new_empty((0,)))
    return out


@prefill_backward.register_fake
def _(grad, x, wq, wk, wv, wsc, bias, slope, wo, config):
    _check_x(_config(config), x, 3)
    return [torch.empty_like(t) if t is not None else x.new_empty((0,))
            for t in (x, wq, wk, wv, wsc, bias, slope, wo)]


def _prefill_setup(ctx, inputs, output):
    ctx.config = inputs[-1]
    ctx.save_for_backward(*inputs[:-1])


def _prefill_grad(ctx, grad):
    tensors = ctx.saved_tensors
    grads = torch.ops.sparsek.prefill_backward(grad, *tensors, ctx.config)
    return tuple(g if t is not None and ctx.needs_input_grad[i] else None
                 for i, (g, t) in enumerate(zip(grads, tensors))) + (None,)


prefill.register_autograd(_prefill_grad, setup_context=_prefill_setup)


@torch.library.custom_op("sparsek::prefill_kv", mutates_args=())
def prefill_kv(x: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor, wv: torch.Tensor,
               wsc: torch.Tensor, bias: Optional[torch.Tensor], slope: Optional[torch.Tensor],
               wo: torch.Tensor, config: str
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """prefill, plus the keys, values [B, Hkv, T, D] and scores [B, Hkv, T] a cache takes."""
    return _prefill(x, (wq, wk, wv, wsc, bias, slope, wo), config, return_kv=True)


@prefill_kv.register_fake
def _(x, wq, wk, wv, wsc, bias, slope, wo, config):
    cfg = _config(config)
    _check_x(cfg, x, 3)
    B, T = x.shape[0], x.shape[1]
    kv = (B, cfg.Hkv, T, cfg.D)
    return (x.new_empty(x.shape), x.new_empty(kv), x.new_empty(kv),
            x.new_empty((B, cfg.Hkv, T), dtype=torch.float32))


def _cache(handle):
    cache = KVCache.from_handle(handle)
    if cache is None:
        raise ValueError(f"no open KV cache has handle {handle} (closed or garbage-collected)")
    return cache


@torch.library.custom_op("sparsek::fill_cache", mutates_args=())
def fill_cache(key: torch.Tensor, value: torch.Tensor, u: torch.Tensor, config: str, cache: int,
               layer: int, seq_ids: List[int]) -> None:
    """Appends a prefill's key, value [B, Hkv, T, D] and u [B, Hkv, T] to empty sequences."""
    compiled, kv = _layer(config), _cache(cache)
    if key.is_cuda:
        compiled.cuda_fill_cache(kv, layer, seq_ids, key, value, u)
    else:
        compiled.fill_cache(kv, layer, seq_ids, _numpy(key), _numpy(value), _numpy(u))


@fill_cache.register_fake
def _(key, value, u, config, cache, layer, seq_ids):
    return None


@torch.library.custom_op("sparsek::decode", mutates_args=())
def decode(x: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor, wv: torch.Tensor,
           wsc: torch.Tensor, bias: Optional[torch.Tensor], slope: Optional[torch.Tensor],
           wo: torch.Tensor, config: str, cache: int, layer: int, seq_ids: List[int]) -> torch.Tensor:
    """One token per sequence: x [B, C] -> out [B, C]; appends the token to the cache."""
    compiled, kv = _layer(config), _cache(cache)
    named = _weights(compiled.cfg, (wq, wk, wv, wsc, bias, slope, wo))
    _check_x(compiled.cfg, x, 2)
    if x.is_cuda:
        return compiled.cuda_decode(x, named, kv, layer, seq_ids)
    out = compiled.decode(_numpy(x), {n: _numpy(t) for n, t in named.items()}, kv, layer, seq_ids)
    return _tensor(out, x.dtype)


@decode.register_fake
def _(x, wq, wk, wv, wsc, bias, slope, wo, config, cache, layer, seq_ids):
    _check_x(_config(config), x, 2)
    return x.new_empty(x.shape)


_VARLEN_LAYERS = {}
_TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def _varlen_layer(config):
    """The one sparsek.varlen.Layer of `config` in this process."""
    if config not in _VARLEN_LAYERS:
        from .varlen import Layer

        _VARLEN_LAYERS[config] = Layer(_config(config))
    return _VARLEN_LAYERS[config]


def _check_varlen(cfg, x, cu_seqlens):
    """What the shapes and dtypes of a varlen call must be (the offsets' values are checked
    when the op runs: sparsek.varlen.Layer.geometry)."""
    if x.dim() != 2 or x.shape[1] != cfg.C:
        raise ValueError(f"x: expected packed rows [N, C] with C = {cfg.C}, got {tuple(x.shape)}")
    if x.dtype != _TORCH_DTYPES[cfg.dtype]:
        raise TypeError(f"x: expected {_TORCH_DTYPES[cfg.dtype]} (the layer's dtype), got {x.dtype}")
    _check_offsets(cu_seqlens)


def _check_offsets(cu_seqlens):
    if cu_seqlens.dim() != 1 or cu_seqlens.shape[0] < 1 or cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"cu_seqlens: expected a 1-D int32 or int64 tensor [B + 1], got "
                         f"{cu_seqlens.dtype} {tuple(cu_seqlens.shape)}")


def _host_offsets(cu_seqlens):
    """The offsets as a host array (a CUDA tensor is copied: a wait for its stream)."""
    return cu_seqlens.detach().cpu().numpy()


def _prefill_varlen(x, cu_seqlens, weights, config):
    cfg = _config(config)
    named = _weights(cfg, weights)
    _check_varlen(cfg, x, cu_seqlens)
    layer, cu = _varlen_layer(config), _host_offsets(cu_seqlens)
    if x.is_cuda:
        return layer.cuda(x, named, cu)
    out, key, value, u = layer(_numpy(x), {n: _numpy(t) for n, t in named.items()}, cu)
    return _tensor(out, x.dtype), _tensor(key, x.dtype), _tensor(value, x.dtype), torch.from_numpy(u)


def _fake_prefill_varlen(x, cu_seqlens, config):
    cfg = _config(config)
    _check_varlen(cfg, x, cu_seqlens)
    n = x.shape[0]
    return (x.new_empty(x.shape), x.new_empty((n, cfg.Hkv, cfg.D)), x.new_empty((n, cfg.Hkv, cfg.D)),
            x.new_empty((n, cfg.Hkv), dtype=torch.float32))


@torch.library.custom_op("sparsek::prefill_varlen", mutates_args=())
def prefill_varlen(x: torch.Tensor, cu_seqlens: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor,
                   wv: torch.Tensor, wsc: torch.Tensor, bias: Optional[torch.Tensor],
                   slope: Optional[torch.Tensor], wo: torch.Tensor, config: str) -> torch.Tensor:
    """The layer over packed prompts x [N, C] (offsets cu_seqlens [B + 1]) -> out [N, C]."""
    return _prefill_varlen(x, cu_seqlens, (wq, wk, wv, wsc, bias, slope, wo), config)[0]


@prefill_varlen.register_fake
def _(x, cu_seqlens, wq, wk, wv, wsc, bias, slope, wo, config):
    return _fake_prefill_varlen(x, cu_seqlens, config)[0]


@torch.library.custom_op("sparsek::prefill_varlen_kv", mutates_args=())
def prefill_varlen_kv(x: torch.Tensor, cu_seqlens: torch.Tensor, wq: torch.Tensor,
                      wk: torch.Tensor, wv: torch.Tensor, wsc: torch.Tensor,
                      bias: Optional[torch.Tensor], slope: Optional[torch.Tensor], wo: torch.Tensor,
                      config: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """prefill_varlen, plus the packed keys, values [N, Hkv, D] and scores [N, Hkv] a cache
    takes (fill_cache_varlen)."""
    return _prefill_varlen(x, cu_seqlens, (wq, wk, wv, wsc, bias, slope, wo), config)


@prefill_varlen_kv.register_fake
def _(x, cu_seqlens, wq, wk, wv, wsc, bias, slope, wo, config):
    return _fake_prefill_varlen(x, cu_seqlens, config)


@torch.library.custom_op("sparsek::fill_cache_varlen", mutates_args=())
def fill_cache_varlen(key: torch.Tensor, value: torch.Tensor, u: torch.Tensor,
                      cu_seqlens: torch.Tensor, cache: int, layer: int, seq_ids: List[int]) -> None:
    """Appends prefill_varlen_kv's packed key, value [N, Hkv, D] and u [N, Hkv] to the empty
    sequences seq_ids (sequence seq_ids[b] takes the rows cu_seqlens[b]:cu_seqlens[b + 1])."""
    from .varlen import _offsets

    _check_offsets(cu_seqlens)
    kv = _cache(cache)
    cu = _offsets(_host_offsets(cu_seqlens), key.shape[0], "cu_seqlens")
    if len(seq_ids) != cu.size - 1:
        raise ValueError(f"a varlen prefill with a cache needs one sequence id per sequence: "
                         f"{cu.size - 1} sequences, {len(seq_ids)} ids")
    if not 0 <= layer < kv.num_layers:
        raise ValueError(f"layer {layer} is out of range: the cache has {kv.num_layers} layers")
    if not all(0 <= s < kv.max_seqs for s in seq_ids):
        raise ValueError(f"sequence ids {seq_ids}: the cache has slots 0..{kv.max_seqs - 1}")
    pos = kv.torch_view(layer).pos[list(seq_ids)].tolist()
    busy = [s for s, p in zip(seq_ids, pos) if p != -1]
    if busy:
        raise ValueError(f"sequences {busy} already hold tokens in layer {layer}; a prefill "
                         "fills empty sequences (reset_seq, or continue with decode)")
    if key.is_cuda:
        kv.append_varlen(layer, seq_ids, cu, key.contiguous(), value.contiguous(), u.contiguous(),
                         stream=torch.cuda.current_stream(key.device).cuda_stream)
    else:
        kv.append_varlen(layer, seq_ids, cu, _numpy(key), _numpy(value), _numpy(u))


@fill_cache_varlen.register_fake
def _(key, value, u, cu_seqlens, cache, layer, seq_ids):
    _check_offsets(cu_seqlens)
    return None


@torch.library.custom_op("sparsek::no_backward", mutates_args=())
def no_backward(grad: torch.Tensor, like: torch.Tensor, op: str) -> torch.Tensor:
    """Stands for a gradient shaped like `like` of an op without a backward: raises when run.

    It takes an incoming gradient `grad` so that it runs in the backward: a
    node that depends on forward inputs alone may be moved into the forward
    by torch.compile's partitioner.
    """
    raise RuntimeError(f"SparseKAttention has no backward here ({op}): a prefill into a KV "
                       "cache, a varlen prefill (cu_seqlens) and decode are forward-only; "
                       "prefill of a [B, T, C] batch without a cache "
                       "(torch.ops.sparsek.prefill, sparsek.autograd) is differentiable")


@no_backward.register_fake
def _(grad, like, op):
    return torch.empty_like(like)


def _register_no_backward(op, name):
    """The placeholder backward of `op`: every gradient asked for is a no_backward node."""
    def setup_context(ctx, inputs, output):
        ctx.positions = [i for i, a in enumerate(inputs) if isinstance(a, torch.Tensor)]
        ctx.num_inputs = len(inputs)
        ctx.save_for_backward(*(inputs[i] for i in ctx.positions))

    def backward(ctx, *grads):
        grad = next(g for g in grads if g is not None)
        result = [None] * ctx.num_inputs
        for i, t in zip(ctx.positions, ctx.saved_tensors):
            if ctx.needs_input_grad[i]:
                result[i] = torch.ops.sparsek.no_backward(grad, t, name)
        return tuple(result)

    op.register_autograd(backward, setup_context=setup_context)


for _op, _name in ((prefill_kv, "sparsek::prefill_kv"), (decode, "sparsek::decode"),
                   (prefill_varlen, "sparsek::prefill_varlen"),
                   (prefill_varlen_kv, "sparsek::prefill_varlen_kv")):
    _register_no_backward(_op, _name)


def _register_ordered_effect(op):
    """The cache ops' effects are invisible to torch: order them."""
    if hasattr(op, "register_effect"):  # torch >= 2.10
        from torch._library.effects import EffectType

        op.register_effect(EffectType.ORDERED)
    else:
        from torch._higher_order_ops.effects import _EffectType, _register_effectful_op

        _register_effectful_op(op._opoverload, _EffectType.ORDERED)


for _op in (fill_cache, decode, fill_cache_varlen):
    _register_ordered_effect(_op)
