# ctypes views of numpy arrays as MLIR memref descriptors (the C ABI of
# `_mlir_ciface_*` entry points), plus bf16 <-> float32 conversions.
"""MLIR memref descriptors over numpy arrays.

A ranked memref is passed to a `_mlir_ciface_` entry point as a pointer to
`{T* allocated; T* aligned; int64 offset; int64 sizes[R]; int64 strides[R]}`.
Strides are in elements. numpy has no bfloat16, so bf16 tensors travel as
uint16 arrays holding the bf16 bit patterns (`to_bf16_bits`).
"""

import array
import ctypes

import numpy as np

_DESCRIPTOR_TYPES = {}


def descriptor_type(rank):
    """The ctypes Structure of a rank-`rank` memref descriptor."""
    if rank not in _DESCRIPTOR_TYPES:
        fields = [
            ("allocated", ctypes.c_void_p),
            ("aligned", ctypes.c_void_p),
            ("offset", ctypes.c_int64),
        ]
        if rank:
            fields += [
                ("sizes", ctypes.c_int64 * rank),
                ("strides", ctypes.c_int64 * rank),
            ]
        _DESCRIPTOR_TYPES[rank] = type(f"MemRef{rank}D", (ctypes.Structure,), {"_fields_": fields})
    return _DESCRIPTOR_TYPES[rank]


def descriptor_from_pointer(ptr, shape, strides):
    """A descriptor over raw memory: `ptr` (host or device address), sizes
    and strides in elements. Used for torch CUDA tensors (device pointers)."""
    if len(shape) != len(strides):
        raise ValueError("shape and strides must have the same rank")
    if any(s < 0 for s in strides):
        raise ValueError("memref strides must be non-negative")
    # Every field is one 64-bit word, so the words are the struct's bytes.
    words = array.array("q", descriptor_words(ptr, shape, strides))
    return descriptor_type(len(shape)).from_buffer_copy(words)


def descriptor_words(ptr, shape, strides):
    """The int64 words of a descriptor over raw memory, in the order of
    descriptor_type's fields: several of them packed into one
    array are passed as pointers into it (sparsek.gpu's calls)."""
    return (ptr, ptr, 0, *shape, *strides)


def to_descriptor(array):
    """A descriptor viewing `array` (which must outlive the call).

    The array must be C-contiguous: entry points of the CPU pipeline take
    identity-layout memrefs, whose static strides the callee computes from
    the static sizes instead of reading the descriptor (a strided view would
    be read wrongly). Copy with np.ascontiguousarray where needed; outputs
    must be contiguous arrays to be written in place.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(array).__name__}")
    if not array.flags.c_contiguous:
        raise ValueError(f"memref arguments must be C-contiguous arrays (got strides {array.strides} "
                         f"for shape {array.shape}); pass np.ascontiguousarray(a)")
    item = array.itemsize
    desc = descriptor_type(array.ndim)()
    ptr = array.ctypes.data
    desc.allocated = ptr
    desc.aligned = ptr
    desc.offset = 0
    for i, (n, s) in enumerate(zip(array.shape, array.strides)):
        desc.sizes[i] = n
        desc.strides[i] = s // item
    return desc


def to_bf16_bits(x):
    """float32 -> bf16 bit patterns (uint16), rounding to nearest even."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + 0x7FFF
    out = ((bits + rounding) >> 16).astype(np.uint16)
    # Keep NaN a NaN (rounding could carry it into infinity).
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    out[nan] = 0x7FC0
    return out


def from_bf16_bits(b):
    """bf16 bit patterns (uint16) -> float32."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
