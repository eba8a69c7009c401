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


class CallPlan:
    """How a library passes arguments to one entry point, worked out once: the
    C function with its argument types (`leading` ones first, as the GPU's
    stream) and per memref argument its signature and what `view` checks. A
    call packs every memref descriptor into one int64 array (`{allocated,
    aligned, offset, sizes, strides}` each, as descriptor_type lays them out)
    and passes pointers into it, a few microseconds where a ctypes Structure
    per argument cost tens. Subclasses say how an argument is viewed."""

    leading = ()

    def __init__(self, entry, fn):
        self.entry = entry
        self.memrefs = []  # (position, argument, what view checks)
        self.scalars = []  # the scalar arguments
        argtypes = list(self.leading)
        for spec in entry.args:
            if spec.kind == "memref":
                entry.check_passable(spec)
                self.memrefs.append((spec.position, spec, self.expect(spec)))
                argtypes.append(ctypes.c_void_p)
            else:
                self.scalars.append(spec)
                argtypes.append(entry.scalar_type(spec))
        self.fn = fn
        self.fn.argtypes = argtypes
        self.fn.restype = ctypes.c_int32

    def expect(self, spec):
        """What view needs to check an argument of signature `spec` quickly."""
        raise NotImplementedError

    def view(self, spec, expected, a):
        """(the object to keep alive through the call, data pointer, sizes,
        strides in elements) of argument `a`, or the precise error of the
        signature's checks."""
        raise NotImplementedError

    def pack(self, args):
        """(what to keep alive through the call; the C arguments after the
        leading ones). Raises what the signature's checks raise."""
        entry = self.entry
        entry.check_count(args)
        passed = list(args)
        for spec in self.scalars:
            passed[spec.position] = entry.scalar(spec, args[spec.position])
        words, starts, keep = [], [], []
        for position, spec, expected in self.memrefs:
            held, ptr, shape, strides = self.view(spec, expected, args[position])
            keep.append(held)
            starts.append(len(words))
            words += descriptor_words(ptr, shape, strides)
        descriptors = array.array("q", words)
        base = descriptors.buffer_info()[0]
        for (position, *_), start in zip(self.memrefs, starts):
            passed[position] = base + 8 * start
        return (descriptors, keep), passed


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
