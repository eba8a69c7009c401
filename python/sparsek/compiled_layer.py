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

The same layer compiled by sparsek-gpu-pipeline runs on torch CUDA tensors
(`cuda_prefill`, `cuda_fill_cache`, `cuda_decode` over a KVCache with the
CUDA backend): device pointers and torch's current stream of the tensors'
device go to the compiled entry points; nothing is copied to the host.
`prebuild()` compiles the CPU and GPU libraries into the compiler's disk
cache without loading them (no GPU needed), for a machine without LLVM.
"""

import numpy as np

from . import compiler
from .cpu import CompiledLibrary
from .gpu import GPULibrary, compile as compile_gpu
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
        self._gpu_lib = {rkv: None for rkv in (False, True)}

    def module_text(self, return_kv=False):
        # Two modules: the plain prefill does not materialize K/V/u for the caller.
        return layer_module(self.cfg, self.name, return_kv=return_kv, decode=return_kv)

    def library(self, return_kv=False):
        if self._lib[return_kv] is None:
            self._lib[return_kv] = CompiledLibrary(compiler.compile(self.module_text(return_kv)))
        return self._lib[return_kv]

    def gpu_library(self, return_kv=False):
        """The layer compiled for the GPU (sparsek.gpu.default_pipeline()), a GPULibrary."""
        if self._gpu_lib[return_kv] is None:
            self._gpu_lib[return_kv] = GPULibrary(compile_gpu(self.module_text(return_kv)))
        return self._gpu_lib[return_kv]

    def prebuild(self, cpu=True, gpu=True):
        """Compiles the libraries into the disk cache ($SPARSEK_CACHE_DIR) without loading
        them; returns their paths. GPU libraries (sparsek.gpu.default_pipeline()) need the
        runtime built with CUDA."""
        paths = []
        for return_kv in (False, True):
            text = self.module_text(return_kv)
            if cpu:
                paths.append(compiler.compile(text))
            if gpu:
                paths.append(compile_gpu(text))
        return paths

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

    # -- the GPU path (torch CUDA tensors) ------------------------------------------
    def _cuda_tensor(self, t, shape, name, elem=None):
        import torch

        from .nn import TORCH_DTYPES

        want = TORCH_DTYPES[elem or self.cfg.dtype]
        if not isinstance(t, torch.Tensor) or not t.is_cuda:
            raise TypeError(f"{name}: expected a CUDA tensor, got {type(t).__name__}"
                            + (f" on {t.device}" if isinstance(t, torch.Tensor) else ""))
        if t.dtype != want:
            raise TypeError(f"{name}: expected {want}, got {t.dtype}")
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(t.shape)}")
        return t.detach().contiguous()  # entry points take identity layouts; a no-op when contiguous

    def _cuda_weights(self, weights, device, skip=()):
        out = []
        for n, s in self.cfg.weight_shapes().items():
            if n in skip:
                continue
            if n not in weights:
                raise ValueError(f"missing weight {n!r}; this layer takes {self.cfg.weight_names()}")
            t = self._cuda_tensor(weights[n], s, n, self.cfg.weight_dtype(n))
            if t.device != device:
                raise ValueError(f"{n}: on {t.device}, the input is on {device}")
            out.append(t)
        return out

    def _cuda_check_cache(self, cache, device):
        self._check_cache(cache)
        if cache.backend != "cuda" or cache.config.device != device.index:
            raise ValueError(f"the inputs are on {device}: the cache must use the CUDA backend on that "
                             f"device (got backend {cache.backend!r}, device {cache.config.device}); "
                             "create it with KVCache(..., backend='cuda', device=...)")

    def cuda_prefill(self, x, weights, return_kv=False):
        """The layer on the GPU: x [B, T, C] CUDA tensor, `weights` name -> CUDA tensor;
        returns out (+ key, value [B, Hkv, T, D], u [B, Hkv, T] with return_kv)."""
        import torch

        cfg = self.cfg
        if x.dim() != 3 or x.shape[2] != cfg.C:
            raise ValueError(f"x: expected [B, T, {cfg.C}], got {tuple(x.shape)}")
        B, T, _ = x.shape
        x = self._cuda_tensor(x, x.shape, "x")
        dev, dt = x.device, x.dtype
        with torch.cuda.device(dev):
            out = torch.empty((B, T, cfg.C), dtype=dt, device=dev)
            args = [x] + self._cuda_weights(weights, dev) + [out]
            if return_kv:
                extra = [torch.empty((B, cfg.Hkv, T, cfg.D), dtype=dt, device=dev) for _ in range(2)]
                extra.append(torch.empty((B, cfg.Hkv, T), dtype=torch.float32, device=dev))
                args += extra
            self.gpu_library(return_kv).call(f"{self.name}_prefill", *args,
                                             stream=torch.cuda.current_stream(dev))
        return (out, *extra) if return_kv else out

    def cuda_fill_cache(self, cache, layer, seq_ids, key, value, u):
        """fill_cache for the CUDA cache: key, value [B, Hkv, T, D], u [B, Hkv, T] CUDA tensors."""
        import torch

        self._cuda_check_cache(cache, key.device)
        ids = [int(s) for s in seq_ids]
        # The one read-back: the positions of these sequences (B integers), to
        # refuse a prefill into sequences that already hold tokens.
        pos = cache.torch_view(layer).pos
        busy = [s for s, p in zip(ids, pos[torch.tensor(ids, device=pos.device)].tolist()) if p != -1]
        if busy:
            raise ValueError(f"sequences {busy} already hold tokens in layer {layer}; a prefill "
                             "fills empty sequences (reset_seq, or continue with decode)")
        with torch.cuda.device(key.device):
            stream = torch.cuda.current_stream(key.device).cuda_stream
            for b, seq in enumerate(ids):
                cache.append_chunk(layer, seq, key[b], value[b], u[b], stream=stream)

    def cuda_decode(self, x, weights, cache, layer, seq_ids):
        """decode on the GPU: x [B, C] CUDA tensor, the CUDA cache -> out [B, C] CUDA tensor."""
        import torch

        cfg = self.cfg
        ids = [int(s) for s in seq_ids]
        B = len(ids)
        if x.dim() != 2 or tuple(x.shape) != (B, cfg.C):
            raise ValueError(f"x: expected [{B}, {cfg.C}] (one token per sequence), got {tuple(x.shape)}")
        x = self._cuda_tensor(x, x.shape, "x")
        dev, dt = x.device, x.dtype
        self._cuda_check_cache(cache, dev)
        lib = self.gpu_library(return_kv=True)
        weights = self._cuda_weights(weights, dev)
        with torch.cuda.device(dev):
            stream = torch.cuda.current_stream(dev)
            view = cache.torch_view(layer)
            if ids == list(range(ids[0], ids[0] + B)):
                rows = slice(ids[0], ids[0] + B)   # views, no gather
            else:
                rows = torch.tensor(ids, dtype=torch.int64, device=dev)
            pos = (view.pos[rows] + 1).contiguous()
            q = torch.empty((B, cfg.Hq, cfg.D), dtype=dt, device=dev)
            key, value = (torch.empty((B, cfg.Hkv, cfg.D), dtype=dt, device=dev) for _ in range(2))
            u = torch.empty((B, cfg.Hkv), dtype=torch.float32, device=dev)
            lib.call(f"{self.name}_decode_qkv", x, pos, *weights[:-1], q, key, value, u, stream=stream)
            cache.append(layer, ids, key, value, u, stream=stream.cuda_stream)
            sl = [a[rows].contiguous() for a in (view.k_slots, view.v_slots, view.slot_scores, view.tau,
                                                 view.pool_count, view.pos)]
            out = torch.empty((B, cfg.C), dtype=dt, device=dev)
            lib.call(f"{self.name}_decode_attend", q, *sl, weights[-1], out, stream=stream)
        return out
