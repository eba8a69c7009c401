# KVCache: the runtime's SparseK KV cache (libsparsek_runtime.so, SPEC 6) through ctypes, with numpy views of its slots.
"""The SparseK KV cache of the runtime (runtime/include/sparsek/runtime/kv_cache.h).

Per sequence, layer and KV head the cache keeps a window ring of the last w
tokens and a pool of at most k selected tokens with their scores and tau.
`KVCache(...)` creates one for `max_seqs` sequence slots; `alloc_seq()`
takes a slot; `append(layer, seq_ids, keys, values, scores)` adds one token
per sequence, `append_chunk(layer, seq, ...)` a whole prompt; `view(layer)`
gives numpy arrays over the slot storage (no copy), which is what the
compiled decode step reads. Those arrays keep the storage alive: `close()`
ends the cache, and the runtime frees it once no array over it remains.
Failures raise RuntimeCacheError with the runtime's own message.

The library is looked up at `$SPARSEK_RUNTIME_LIB`, then
`$SPARSEK_BUILD_DIR/runtime/`, then `<repo>/build/runtime/`.
"""

import ctypes
import itertools
import os
import threading
import weakref
from typing import NamedTuple

import numpy as np

from .memref import to_bf16_bits

_LIB_NAME = "libsparsek_runtime.so"

CPU, CUDA = 0, 1
_BACKENDS = {"cpu": CPU, "cuda": CUDA}
_DTYPES = {"f32": 0, "f16": 1, "bf16": 2}
# numpy storage of each element type (bf16 as its bit pattern).
NUMPY_DTYPES = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}
_TORCH_DTYPES = {"f32": "torch.float32", "f16": "torch.float16", "bf16": "torch.bfloat16"}

# sk_status codes (runtime/include/sparsek/runtime/status.h).
OK, INVALID_ARGUMENT, BAD_HANDLE, OUT_OF_SLOTS, INVALID_SCORE = 0, 1, 2, 3, 4
OUT_OF_MEMORY, CUDA_ERROR, NO_DEVICE, UNSUPPORTED = 5, 6, 7, 8


class RuntimeCacheError(RuntimeError):
    """A KV-cache call failed; `status` is the runtime's sk_status code."""

    def __init__(self, status, name, message):
        self.status = status
        super().__init__(f"{message or name} (sk_status {status}: {name})")


class RuntimeNotFound(RuntimeError):
    """libsparsek_runtime.so is not built or not where we looked."""


class _Config(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in (
        "backend", "num_layers", "num_kv_heads", "k", "w", "head_dim", "value_dim", "dtype",
        "max_seqs", "score_capacity", "device")]


class _View(ctypes.Structure):
    _fields_ = [("k_slots", ctypes.c_void_p), ("v_slots", ctypes.c_void_p),
                ("slot_scores", ctypes.c_void_p), ("slot_pos", ctypes.c_void_p),
                ("tau", ctypes.c_void_p), ("pool_count", ctypes.c_void_p), ("pos", ctypes.c_void_p)] + \
        [(n, ctypes.c_int32) for n in ("max_seqs", "num_kv_heads", "k", "w", "head_dim", "value_dim",
                                       "dtype", "backend")]


class _Shape(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in ("num_kv_heads", "head_dim", "value_dim", "dtype")]


def library_path():
    env = os.environ.get("SPARSEK_RUNTIME_LIB")
    if env:
        paths = [env]
    else:
        build = os.environ.get("SPARSEK_BUILD_DIR") or os.path.join(
            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build")
        paths = [os.path.join(build, "runtime", _LIB_NAME)]
    for path in paths:
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise RuntimeNotFound(f"{_LIB_NAME} not found (looked at {', '.join(paths)}); build the "
                          "runtime (ninja -C build) or set SPARSEK_RUNTIME_LIB")


_lock = threading.Lock()
_loaded = {}
# Open caches by KVCache.handle: an int names a cache where an object cannot
# go (the arguments of torch operators, sparsek.torch_ops).
_open_caches = weakref.WeakValueDictionary()
_next_handle = itertools.count(1)


def _lib():
    path = library_path()
    with _lock:
        if path not in _loaded:
            lib = ctypes.CDLL(path)
            p, i32, i64, vp = ctypes.POINTER, ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
            sigs = {
                "sk_cache_create": [p(_Config), p(vp)],
                "sk_cache_destroy": [vp],
                "sk_cache_alloc_seq": [vp, p(i32)],
                "sk_cache_free_seq": [vp, i32],
                "sk_cache_reset_seq": [vp, i32],
                "sk_cache_append_tokens": [vp, i32, p(_Shape), i32, p(i32), vp, vp, vp, vp],
                "sk_cache_append_chunk": [vp, i32, p(_Shape), i32, i64, vp, vp, vp, vp],
                "sk_cache_get_view": [vp, i32, p(_View)],
                "sk_cache_seq_is_approximate": [vp, i32, p(i32)],
                "sk_cache_check_device_error": [vp, vp],
                "sk_cache_kv_bytes": [vp, p(ctypes.c_uint64)],
                "sk_cache_append_varlen": [vp, i32, p(_Shape), i32, p(i32), p(i32), vp, vp, vp, vp],
            }
            for name, argtypes in sigs.items():
                if name == "sk_cache_append_varlen" and not hasattr(lib, name):
                    continue  # a runtime built before it: append_varlen says so
                fn = getattr(lib, name)
                fn.argtypes, fn.restype = argtypes, ctypes.c_int
            lib.sk_cache_last_error.argtypes, lib.sk_cache_last_error.restype = [], ctypes.c_char_p
            lib.sk_status_name.argtypes, lib.sk_status_name.restype = [ctypes.c_int], ctypes.c_char_p
            lib.sk_rt_has_device.argtypes, lib.sk_rt_has_device.restype = [], ctypes.c_int
            _loaded[path] = lib
        return _loaded[path]


def _check(lib, status, what):
    if status != OK:
        message = (lib.sk_cache_last_error() or b"").decode(errors="replace")
        name = lib.sk_status_name(status).decode()
        raise RuntimeCacheError(status, name, f"{what}: {message}" if message else what)


def cuda_available():
    """True when the runtime was built with CUDA and sees a GPU (the CUDA backend works)."""
    return bool(_lib().sk_rt_has_device())


class CacheView(NamedTuple):
    """numpy arrays over one layer's slots (S = max_seqs, H = Hkv, N = k + w).

    k_slots [S, H, N, D], v_slots [S, H, N, Dv] (cache dtype; bf16 as uint16
    bits), slot_scores [S, H, N] f32, slot_pos [S, H, N] int64, tau [S, H]
    f32, pool_count [S, H] int32, pos [S] int64 (last appended position, -1
    when empty). They alias the cache: later appends show through.
    """

    k_slots: np.ndarray
    v_slots: np.ndarray
    slot_scores: np.ndarray
    slot_pos: np.ndarray
    tau: np.ndarray
    pool_count: np.ndarray
    pos: np.ndarray

    def select(self, seq_ids):
        """The arrays of `seq_ids` only, in that order (views for a contiguous range)."""
        ids = np.asarray(seq_ids, dtype=np.int64).reshape(-1)
        if ids.size and np.array_equal(ids, np.arange(ids[0], ids[0] + ids.size)):
            sl = slice(int(ids[0]), int(ids[0]) + ids.size)
            return CacheView(*(a[sl] for a in self))
        return CacheView(*(a[ids] for a in self))


class _Storage:
    """Owns one runtime cache: sk_cache_destroy runs when the last reference goes.

    The KVCache and every array viewing its slots hold a reference, so memory
    that a view can still reach is never freed (and never reused by another
    cache while a stale view writes into it).
    """

    def __init__(self, lib, handle):
        self._lib, self.handle = lib, handle

    def __del__(self):
        if self.handle:
            self._lib.sk_cache_destroy(self.handle)
            self.handle = None


def _as_numpy(address, dtype, shape, storage):
    """A numpy array over `shape` elements of `dtype` at `address`, keeping `storage` alive."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    # Raw bytes, then reinterpreted: ctypes has no type for float16.
    buf = (ctypes.c_uint8 * (count * dtype.itemsize)).from_address(address)
    buf._owner = storage
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)


class KVCache:
    """A runtime KV cache for `max_seqs` sequences of a `num_layers`-layer model."""

    def __init__(self, num_layers, num_kv_heads, k, w, head_dim, value_dim=None, dtype="f32",
                 max_seqs=1, score_capacity=None, backend="cpu", device=0):
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {sorted(_BACKENDS)}, got {backend!r}")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self._lib = _lib()
        value_dim = head_dim if value_dim is None else value_dim
        if score_capacity is None:
            # Enough for exact tau in typical use (SPEC 6); k + 1 is the minimum.
            score_capacity = max(4 * k + 64, k + 1)
        self.config = _Config(_BACKENDS[backend], num_layers, num_kv_heads, k, w, head_dim,
                              value_dim, _DTYPES[dtype], max_seqs, score_capacity, device)
        self.backend, self.dtype = backend, dtype
        self.num_layers, self.num_kv_heads, self.k, self.w = num_layers, num_kv_heads, k, w
        self.head_dim, self.value_dim, self.max_seqs = head_dim, value_dim, max_seqs
        self._shape = _Shape(num_kv_heads, head_dim, value_dim, _DTYPES[dtype])
        self._views = {}
        handle = ctypes.c_void_p()
        _check(self._lib, self._lib.sk_cache_create(ctypes.byref(self.config), ctypes.byref(handle)),
               "sk_cache_create")
        self._storage = _Storage(self._lib, handle)
        self.handle = next(_next_handle)  # see from_handle
        _open_caches[self.handle] = self

    @staticmethod
    def from_handle(handle):
        """The open cache whose `handle` this is, or None (closed or collected)."""
        return _open_caches.get(int(handle))

    # -- lifetime -------------------------------------------------------------
    def close(self):
        """Ends the cache: every later call raises. Its memory is freed now, or,
        while arrays from view()/torch_view() remain, when the last of them
        goes (they stay valid, detached from any other cache)."""
        self._storage = None
        self._views.clear()
        _open_caches.pop(self.handle, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _h(self):
        if self._storage is None:
            raise ValueError("the KV cache is closed")
        return self._storage.handle

    # -- sequences ------------------------------------------------------------
    def alloc_seq(self):
        seq = ctypes.c_int32()
        _check(self._lib, self._lib.sk_cache_alloc_seq(self._h(), ctypes.byref(seq)), "alloc_seq")
        return seq.value

    def free_seq(self, seq):
        _check(self._lib, self._lib.sk_cache_free_seq(self._h(), int(seq)), f"free_seq({seq})")

    def reset_seq(self, seq):
        _check(self._lib, self._lib.sk_cache_reset_seq(self._h(), int(seq)), f"reset_seq({seq})")

    def is_approximate(self, seq):
        """True when a score capacity overflowed, so tau is a lower bound (SPEC 6)."""
        out = ctypes.c_int32()
        _check(self._lib, self._lib.sk_cache_seq_is_approximate(self._h(), int(seq), ctypes.byref(out)),
               f"is_approximate({seq})")
        return bool(out.value)

    def kv_bytes(self):
        out = ctypes.c_uint64()
        _check(self._lib, self._lib.sk_cache_kv_bytes(self._h(), ctypes.byref(out)), "kv_bytes")
        return out.value

    # -- appends --------------------------------------------------------------
    def _host(self, a, shape, name, f32=False):
        """A C-contiguous host array of the cache's dtype (f32 for scores)."""
        want = np.float32 if f32 else NUMPY_DTYPES[self.dtype]
        a = np.asarray(a)
        if not f32 and self.dtype == "bf16" and a.dtype != np.uint16:
            a = to_bf16_bits(a)
        a = np.ascontiguousarray(a, dtype=want)
        if a.shape != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
        return a

    def _pointers(self, keys, values, scores, shapes):
        """Host arrays (CPU backend) or device tensors (CUDA) -> pointers and keep-alive list."""
        if self.backend == "cpu":
            arrays = [self._host(keys, shapes[0], "keys"), self._host(values, shapes[1], "values"),
                      self._host(scores, shapes[2], "scores", f32=True)]
            return [a.ctypes.data for a in arrays], arrays
        ptrs = []
        want = {"keys": self.dtype, "values": self.dtype, "scores": "f32"}
        for t, shape, name in zip((keys, values, scores), shapes, ("keys", "values", "scores")):
            if not hasattr(t, "data_ptr") or not getattr(t, "is_cuda", False):
                raise TypeError(f"{name}: the CUDA cache takes CUDA tensors (torch), got {type(t).__name__}")
            if tuple(t.shape) != tuple(shape) or not t.is_contiguous():
                raise ValueError(f"{name}: expected a contiguous tensor of shape {tuple(shape)}, "
                                 f"got {tuple(t.shape)}")
            if str(t.dtype) != _TORCH_DTYPES[want[name]]:
                raise TypeError(f"{name}: expected {_TORCH_DTYPES[want[name]]}, got {t.dtype}")
            if t.device.index != self.config.device:
                raise ValueError(f"{name}: the cache lives on cuda:{self.config.device}, got {t.device}")
            ptrs.append(t.data_ptr())
        return ptrs, [keys, values, scores]

    def _stream(self, stream):
        """The stream to order CUDA work on: the caller's, else torch's current one."""
        if stream is not None or self.backend == "cpu":
            return stream
        import torch
        return torch.cuda.current_stream(self.config.device).cuda_stream

    def append(self, layer, seq_ids, keys, values, scores, stream=None):
        """One token for each sequence: keys [n, Hkv, D], values [n, Hkv, Dv], scores [n, Hkv]."""
        ids = np.ascontiguousarray(np.asarray(seq_ids, dtype=np.int32).reshape(-1))
        n, H = ids.size, self.num_kv_heads
        ptrs, keep = self._pointers(keys, values, scores,
                                    [(n, H, self.head_dim), (n, H, self.value_dim), (n, H)])
        status = self._lib.sk_cache_append_tokens(
            self._h(), int(layer), ctypes.byref(self._shape), n,
            ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), *ptrs, self._stream(stream))
        del keep
        _check(self._lib, status, f"append(layer {layer})")

    def append_chunk(self, layer, seq, keys, values, scores, stream=None):
        """T consecutive tokens of one sequence: keys [Hkv, T, D], values [Hkv, T, Dv], scores [Hkv, T]."""
        T = int(np.shape(scores)[-1]) if np.ndim(scores) == 2 else -1
        H = self.num_kv_heads
        ptrs, keep = self._pointers(keys, values, scores,
                                    [(H, T, self.head_dim), (H, T, self.value_dim), (H, T)])
        status = self._lib.sk_cache_append_chunk(self._h(), int(layer), ctypes.byref(self._shape),
                                                 int(seq), T, *ptrs, self._stream(stream))
        del keep
        _check(self._lib, status, f"append_chunk(layer {layer}, seq {seq})")

    def append_varlen(self, layer, seq_ids, cu_seqlens, keys, values, scores, stream=None):
        """Prompts of different lengths in one call, packed as in FlashAttention's varlen
        layout: sequence seq_ids[i] gets the tokens cu_seqlens[i] .. cu_seqlens[i + 1] - 1 of
        keys [total, Hkv, D], values [total, Hkv, Dv], scores [total, Hkv] (token-major).
        seq_ids and cu_seqlens (B + 1 offsets rising from 0; int32) are host values (a
        tensor is copied to the host). Same result as append_chunk per sequence."""
        if not hasattr(self._lib, "sk_cache_append_varlen"):
            raise RuntimeNotFound("the runtime library predates sk_cache_append_varlen; rebuild it")
        if hasattr(cu_seqlens, "cpu"):
            cu_seqlens = cu_seqlens.detach().cpu().numpy()
        ids = np.ascontiguousarray(np.asarray(seq_ids, dtype=np.int32).reshape(-1))
        cu = np.asarray(cu_seqlens)
        if cu.ndim != 1 or cu.size != ids.size + 1 or not np.issubdtype(cu.dtype, np.integer):
            raise ValueError(f"cu_seqlens: expected {ids.size + 1} integer offsets, got "
                             f"{cu.dtype} {cu.shape}")
        if cu.size and cu.max(initial=0) > np.iinfo(np.int32).max:
            raise ValueError("cu_seqlens: offsets must fit int32")
        cu = np.ascontiguousarray(cu, dtype=np.int32)
        total, H = int(cu[-1]), self.num_kv_heads
        ptrs, keep = self._pointers(keys, values, scores,
                                    [(total, H, self.head_dim), (total, H, self.value_dim), (total, H)])
        i32p = ctypes.POINTER(ctypes.c_int32)
        status = self._lib.sk_cache_append_varlen(
            self._h(), int(layer), ctypes.byref(self._shape), ids.size, ids.ctypes.data_as(i32p),
            cu.ctypes.data_as(i32p), *ptrs, self._stream(stream))
        del keep
        _check(self._lib, status, f"append_varlen(layer {layer})")

    def check_device_error(self, stream=None):
        """Raises the first error recorded by CUDA kernels since the last check."""
        _check(self._lib, self._lib.sk_cache_check_device_error(self._h(), self._stream(stream)),
               "device")

    # -- views ----------------------------------------------------------------
    def raw_view(self, layer):
        """The runtime's sk_cache_view of `layer` (device pointers for CUDA).

        Bare pointers: valid only until close(); view() and torch_view()
        give arrays that keep the memory alive."""
        view = _View()
        _check(self._lib, self._lib.sk_cache_get_view(self._h(), int(layer), ctypes.byref(view)),
               f"view(layer {layer})")
        return view

    def view(self, layer):
        """numpy arrays over `layer`'s slot storage (CPU backend; no copy)."""
        if self.backend != "cpu":
            raise ValueError("numpy views need the CPU backend; use raw_view() for device pointers")
        if layer not in self._views:
            v = self.raw_view(layer)
            S, H, N, D, Dv = self.max_seqs, self.num_kv_heads, self.k + self.w, self.head_dim, self.value_dim
            elem, storage = NUMPY_DTYPES[self.dtype], self._storage
            self._views[layer] = CacheView(
                _as_numpy(v.k_slots, elem, (S, H, N, D), storage),
                _as_numpy(v.v_slots, elem, (S, H, N, Dv), storage),
                _as_numpy(v.slot_scores, np.float32, (S, H, N), storage),
                _as_numpy(v.slot_pos, np.int64, (S, H, N), storage),
                _as_numpy(v.tau, np.float32, (S, H), storage),
                _as_numpy(v.pool_count, np.int32, (S, H), storage),
                _as_numpy(v.pos, np.int64, (S,), storage))
        return self._views[layer]

    def torch_view(self, layer):
        """torch tensors over `layer`'s slots, no copy (same fields as view()).

        CPU backend: CPU tensors sharing the numpy views' memory. CUDA backend:
        tensors on the cache's device, through __cuda_array_interface__. bf16
        slots come back as torch.bfloat16.
        """
        import torch
        bf16 = self.dtype == "bf16"
        if self.backend == "cpu":
            def wrap(a, slots):
                t = torch.from_numpy(a.view(np.int16) if slots and bf16 else a)
                return t.view(torch.bfloat16) if slots and bf16 else t
            return CacheView(*(wrap(a, i < 2) for i, a in enumerate(self.view(layer))))
        v = self.raw_view(layer)
        S, H, N, D, Dv = self.max_seqs, self.num_kv_heads, self.k + self.w, self.head_dim, self.value_dim
        slot = "<i2" if bf16 else np.dtype(NUMPY_DTYPES[self.dtype]).str
        fields = [(v.k_slots, (S, H, N, D), slot), (v.v_slots, (S, H, N, Dv), slot),
                  (v.slot_scores, (S, H, N), "<f4"), (v.slot_pos, (S, H, N), "<i8"),
                  (v.tau, (S, H), "<f4"), (v.pool_count, (S, H), "<i4"), (v.pos, (S,), "<i8")]
        device = torch.device("cuda", self.config.device)
        out = [torch.as_tensor(_DeviceArray(ptr, shape, typestr, self._storage), device=device)
               for ptr, shape, typestr in fields]
        if bf16:
            out[0], out[1] = out[0].view(torch.bfloat16), out[1].view(torch.bfloat16)
        return CacheView(*out)


class _DeviceArray:
    """A device buffer described by __cuda_array_interface__; keeps the cache's storage alive."""

    def __init__(self, ptr, shape, typestr, owner):
        self._owner = owner
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr,
                                         "data": (int(ptr), False), "version": 3, "strides": None}
