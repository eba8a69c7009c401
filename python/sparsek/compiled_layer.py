# compile_layer(): a SparseK layer compiled for the CPU, called on numpy arrays (prefill, and decode over a KVCache).
"""High-level API: build, compile and call a whole SparseK layer.

    layer = sparsek.compile_layer(C=64, Hq=4, Hkv=2, D=16, k=16, w=16, bias=True)
    out = layer(x, weights)                       # x [B, T, C] -> out [B, T, C]
    out, key, value, u = layer(x, weights, return_kv=True)

    cache = sparsek.KVCache(1, Hkv, k, w, D, max_seqs=B)
    seqs = [cache.alloc_seq() for _ in range(B)]
    layer.fill_cache(cache, 0, seqs, key, value, u)     # after a prefill
    out_t = layer.decode(x_t, weights, cache, 0, seqs)  # x_t [B, C], one token each

`weights` maps the names of LayerConfig.weight_names() to arrays. Arrays are
checked against the configuration before any call (static sizes are
compiled in, so a wrong size would otherwise read out of bounds), converted
to the layer's element type only when they are not already in it (bf16
travels as uint16 bit patterns), and passed without copies when they are.
"""

import numpy as np

from . import compiler
from .cpu import CompiledLibrary
from .kv_cache import NUMPY_DTYPES, CacheView
from .layer import LayerConfig, layer_module
from .memref import to_bf16_bits


def compile_layer(C, Hq, Hkv, D, k, w, dtype="f32", bias=False, slope=False, scale=None,
                  name="sparsek_layer"):
    """Compiles (or takes from the cache) the layer's prefill and decode entry points."""
    cfg = LayerConfig(C=C, Hq=Hq, Hkv=Hkv, D=D, k=k, w=w, dtype=dtype, bias=bias, slope=slope,
                      scale=scale)
    return CompiledLayer(cfg, name)


class CompiledLayer:
    """The compiled layer of `cfg`; see the module docstring."""

    def __init__(self, cfg, name="sparsek_layer"):
        self.cfg, self.name = cfg, name
        self._lib = {rkv: None for rkv in (False, True)}

    def library(self, return_kv=False):
        # Two modules: the plain prefill does not materialize K/V/u for the caller.
        if self._lib[return_kv] is None:
            text = layer_module(self.cfg, self.name, return_kv=return_kv, decode=return_kv)
            self._lib[return_kv] = CompiledLibrary(compiler.compile(text))
        return self._lib[return_kv]

    # -- argument checks --------------------------------------------------------
    def _array(self, a, shape, name, elem=None):
        elem = elem or self.cfg.dtype
        a = np.asarray(a)
        if elem == "bf16" and a.dtype != np.uint16:
            a = to_bf16_bits(a)
        elif a.dtype != NUMPY_DTYPES[elem]:
            a = a.astype(NUMPY_DTYPES[elem])
        if a.shape != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
        return np.ascontiguousarray(a)  # entry points take identity layouts (memref.py)

    def _weights(self, weights, skip=()):
        missing = [n for n in self.cfg.weight_names() if n not in weights]
        if missing:
            raise ValueError(f"missing weights {missing}; this layer takes {self.cfg.weight_names()}")
        return [self._array(weights[n], s, n, self.cfg.weight_dtype(n))
                for n, s in self.cfg.weight_shapes().items() if n not in skip]

    def _out(self, shape, elem=None):
        return np.zeros(shape, NUMPY_DTYPES[elem or self.cfg.dtype])

    # -- prefill ------------------------------------------------------------------
    def __call__(self, x, weights, return_kv=False):
        """The layer over x [B, T, C] (positions 0..T-1); out [B, T, C] (+ key, value, u)."""
        cfg = self.cfg
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[2] != cfg.C:
            raise ValueError(f"x: expected [B, T, {cfg.C}], got {x.shape}")
        B, T, _ = x.shape
        x = self._array(x, x.shape, "x")
        out = self._out((B, T, cfg.C))
        args = [x] + self._weights(weights) + [out]
        if return_kv:
            kv = (B, cfg.Hkv, T, cfg.D)
            extra = [self._out(kv), self._out(kv), self._out((B, cfg.Hkv, T), "f32")]
            args += extra
        self.library(return_kv).call(f"{self.name}_prefill", *args)
        return (out, *extra) if return_kv else out

    # -- decode -------------------------------------------------------------------
    def _check_cache(self, cache):
        cfg = self.cfg
        got = (cache.num_kv_heads, cache.k, cache.w, cache.head_dim, cache.value_dim, cache.dtype)
        want = (cfg.Hkv, cfg.k, cfg.w, cfg.D, cfg.D, cfg.dtype)
        if got != want:
            raise ValueError(f"cache (Hkv, k, w, D, Dv, dtype) = {got} does not match the layer's {want}")

    def fill_cache(self, cache, layer, seq_ids, key, value, u):
        """Appends a prefill's key, value [B, Hkv, T, D] and u [B, Hkv, T] to the sequences.

        The sequences must be empty in `layer`: the prefill computed positions
        0..T-1 (continue a sequence with decode, one token at a time).
        """
        self._check_cache(cache)
        pos = cache.view(layer).pos
        busy = [int(s) for s in seq_ids if pos[int(s)] != -1]
        if busy:
            raise ValueError(f"sequences {busy} already hold tokens in layer {layer}; a prefill "
                             "fills empty sequences (reset_seq, or continue with decode)")
        for b, seq in enumerate(seq_ids):
            cache.append_chunk(layer, seq, key[b], value[b], u[b])

    def decode(self, x, weights, cache, layer, seq_ids):
        """One token per sequence: x [B, C] -> out [B, C], appending its K/V/score to `cache`.

        Sequence seq_ids[b] receives the token at its next position.
        """
        cfg = self.cfg
        self._check_cache(cache)
        ids = [int(s) for s in seq_ids]
        x = np.asarray(x)
        if x.ndim != 2 or x.shape != (len(ids), cfg.C):
            raise ValueError(f"x: expected [{len(ids)}, {cfg.C}] (one token per sequence), got {x.shape}")
        x = self._array(x, x.shape, "x")
        B = len(ids)
        lib = self.library(return_kv=True)
        view = cache.view(layer)
        pos = np.ascontiguousarray(view.pos[ids] + 1)
        q, key, value = (self._out((B, h, cfg.D)) for h in (cfg.Hq, cfg.Hkv, cfg.Hkv))
        u = self._out((B, cfg.Hkv), "f32")
        lib.call(f"{self.name}_decode_qkv", x, pos, *self._weights(weights, skip=("wo",)), q, key, value, u)
        cache.append(layer, ids, key, value, u)
        sl = CacheView(*(np.ascontiguousarray(a) for a in view.select(ids)))
        out = self._out((B, cfg.C))
        wo = self._weights(weights)[-1]
        lib.call(f"{self.name}_decode_attend", q, sl.k_slots, sl.v_slots, sl.slot_scores, sl.tau,
                 sl.pool_count, sl.pos, wo, out)
        return out
