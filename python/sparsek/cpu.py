# Loads a compiled SparseK library and calls its entry points on numpy arrays.
"""Run compiled SparseK functions on the CPU.

Entry points come from the `sparsek-cpu-pipeline` (C wrappers on): every
tensor argument is a memref descriptor, `index` arguments are int64, and
results that alias `outs` arguments are written in place into the arrays
passed for them. Calls go through the checked `<name>_entry` functions and
are checked first against the signatures the library exports
(sparsek.signature). Only LLVM-free code runs here: loading and calling needs
nothing but the shared library.
"""

import ctypes

import numpy as np

from .memref import CallPlan
from .signature import Manifest, numpy_dtype
from .status import SparseKError


def _host_array(a):
    """CPU torch tensors as numpy views (no copy); CUDA tensors are refused clearly."""
    if type(a).__module__.split(".")[0] != "torch" or not hasattr(a, "is_cuda"):
        return a
    if a.is_cuda:
        # Libraries of sparsek-gpu-pipeline take CUDA tensors (device pointers,
        # torch's current stream) through sparsek.gpu.GPULibrary instead.
        raise NotImplementedError("CUDA tensors cannot be passed to a CPU library; compile the module "
                                  "with sparsek-gpu-pipeline and call it through sparsek.gpu.GPULibrary "
                                  "(GPU entry points)")
    import torch  # already loaded: `a` is a torch tensor

    t = a.detach()
    if t.dtype == torch.bfloat16:  # numpy has no bf16: its bit patterns, as memref.py expects
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


class _CallPlan(CallPlan):
    """CallPlan over numpy arrays (or CPU torch tensors, viewed as arrays)."""

    def expect(self, spec):
        return numpy_dtype(spec.element)

    def view(self, spec, dtype, a):
        if type(a) is not np.ndarray:
            a = _host_array(a)
        if not (type(a) is np.ndarray and a.dtype == dtype and a.ndim == spec.rank):
            self.entry.check_array(spec, a)  # raises the precise error
        flags = a.flags
        if not (flags.c_contiguous and flags.aligned and (flags.writeable or not spec.written)):
            self.entry.check_array(spec, a)
        item = a.itemsize
        return a, a.ctypes.data, a.shape, [st // item for st in a.strides]


class CompiledLibrary:
    """A shared library built by `sparsek.toolchain.compile_shared_library`."""

    def __init__(self, path):
        self.path = path
        self._lib = ctypes.CDLL(path)
        self._lib.sparsek_status.restype = ctypes.c_int32
        self._lib.sparsek_status.argtypes = []
        self._lib.sparsek_clear_status.restype = None
        self.manifest = Manifest(self._lib, path)
        self._plans = {}  # entry point name -> _CallPlan
        if self.manifest.stream:
            raise ValueError(f"{path} was compiled for the GPU (its entry points take a CUDA "
                             "stream); load it with sparsek.gpu.GPULibrary")

    def status(self):
        return int(self._lib.sparsek_status())

    def has(self, name):
        return name in self.manifest

    def _plan(self, name):
        plan = _CallPlan(self.manifest[name], getattr(self._lib, self.manifest[name].symbol))
        self._plans[name] = plan
        return plan

    def call(self, name, *args):
        """Calls `name` with numpy arrays or CPU torch tensors (memrefs) and ints (index values).

        Every argument is checked against the signature the library exports
        (count, kind, dtype, rank, contiguity, writable outputs; TypeError or
        ValueError) before the compiled entry point runs; that checks every
        size against the function type. Raises SparseKError with the
        entry point's status when the compiled code rejected the input.
        """
        plan = self._plans.get(name) or self._plan(name)
        keep, passed = plan.pack(args)
        code = plan.fn(*passed)
        del keep  # read by the entry point, which has returned
        if code:
            raise SparseKError(code, name)
