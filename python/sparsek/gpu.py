# Loads GPU artifacts built by sparsek-gpu-pipeline and calls them on torch CUDA tensors.
"""Run compiled SparseK GPU functions on torch CUDA tensors.

A GPU artifact is a shared library holding host code and an embedded GPU
binary (`default_pipeline()` picks its chip: sm_90a, with the wgmma prefill
kernel, on H100 and H200); its host code calls the `mgpu*` functions of
libsparsek_runtime.so, which is loaded first (RTLD_GLOBAL): the one next to the artifact, else the
one `sparsek.kv_cache` uses ($SPARSEK_RUNTIME_LIB, $SPARSEK_BUILD_DIR/runtime,
the build tree), so libraries from the compiler's cache and the KV cache
share one runtime. `compile(mlir_text)` builds one through the compiler's
disk cache (which a machine without LLVM serves from a carried folder). Tensors are passed
as memref descriptors over their device pointers (no host copies), after
checks against the signatures the library exports (sparsek.signature), and
the generated code runs on torch's current stream. Errors (bad sizes found by
the compiled checks, CUDA failures recorded by the runtime) raise.

Invalid data (NaN or +inf scores, a bad decode cache state) is found by the
kernels, after the call has returned: they record it in the library's device
status (include/sparsek-c/Status.h codes, the ones the CPU path returns) and
skip the work it spoils. Like CUDA's own asynchronous errors it surfaces at
the next natural point, as the same SparseKError the CPU path raises:
- `GPULibrary.check()` synchronizes the stream and raises it (then clears);
- every call first reads the status (host-mapped memory, no synchronization)
  and raises an error that earlier calls' finished kernels recorded;
- `call(..., check=True)`, or SPARSEK_SYNC_CHECK=1 for every call, checks
  right after the call (synchronizing: for tests and debugging, like
  CUDA_LAUNCH_BLOCKING).
Eager calls thus never synchronize the host unless asked, and a call can be
captured in a CUDA graph (make one eager call first: the first call
allocates the library's status words).
"""

import ctypes
import os

from .memref import CallPlan
from .signature import TORCH_DTYPES, Manifest
from .status import OUT_OF_MEMORY, RUNTIME, SparseKError

_RUNTIME = None


class GPUError(RuntimeError):
    """The runtime recorded a CUDA failure (its message attached)."""


def runtime_path(folder=None):
    """libsparsek_runtime.so in `folder` if there, else the KV cache's (sparsek.kv_cache)."""
    if folder is not None:
        path = os.path.join(folder, "libsparsek_runtime.so")
        if os.path.isfile(path):
            return os.path.abspath(path)
    from .kv_cache import library_path

    return library_path()


def load_runtime(folder=None):
    """Loads the runtime (see runtime_path) once, globally; later calls return that one."""
    global _RUNTIME
    if _RUNTIME is None:
        lib = ctypes.CDLL(runtime_path(folder), mode=ctypes.RTLD_GLOBAL)
        lib.sk_rt_init.restype = ctypes.c_int
        lib.sk_rt_get_status.restype = ctypes.c_int
        lib.sk_rt_get_last_error.restype = ctypes.c_int
        lib.sk_rt_get_last_error.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.sk_rt_stream_from_ptr.restype = ctypes.c_void_p
        lib.sk_rt_stream_from_ptr.argtypes = [ctypes.c_size_t]
        lib.sk_rt_set_current_stream.argtypes = [ctypes.c_void_p]
        lib.sk_rt_has_device.restype = ctypes.c_int
        lib.sk_rt_clear_error.restype = None
        _RUNTIME = lib
    return _RUNTIME


class UnsupportedGPU(RuntimeError):
    """The visible GPU cannot run SparseK's kernels (compute capability below 9.0)."""


# sm_90a code (wgmma) runs on compute capability 9.0 alone; sm_90 code carries
# PTX that the driver compiles for later GPUs.
_HOPPER = (9, 0)


def _device_capability():
    """(major, minor) of torch's current CUDA device; None without torch or a GPU."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(torch.cuda.current_device()))


def default_chip():
    """The chip `default_pipeline()` compiles for: $SPARSEK_GPU_CHIP when set; else, from
    torch's current device, sm_90a on compute capability 9.0 (H100, H200: the prefill
    runs on wgmma) and sm_90 on later GPUs (mma.sync; the driver compiles its PTX);
    sm_90a where no GPU is visible (compiling ahead for Hopper, e.g. on a machine
    without one). Raises UnsupportedGPU on a GPU older than compute capability 9.0."""
    chip = os.environ.get("SPARSEK_GPU_CHIP")
    if chip:
        return chip
    capability = _device_capability()
    if capability is None or capability == _HOPPER:
        return "sm_90a"
    if capability < _HOPPER:
        raise UnsupportedGPU(
            f"SparseK's GPU kernels need compute capability 9.0 or later (sm_90); this GPU "
            f"has {capability[0]}.{capability[1]}. Set SPARSEK_GPU_CHIP to compile for "
            "another chip anyway")
    return "sm_90"


def default_pipeline(options=""):
    """The GPU pipeline users get: sparsek-gpu-pipeline with `options` (e.g.
    "prefill-kernel=mma-sync") and, unless they name one, chip=default_chip(). Its
    prefill-kernel=auto default then takes wgmma on sm_90a and mma.sync elsewhere."""
    items = options.split()
    if not any(item.startswith("chip=") for item in items):
        items.insert(0, f"chip={default_chip()}")
    return f"sparsek-gpu-pipeline{{{' '.join(items)}}}"


def compile(mlir_text, pipeline=None, opt_level=2):
    """Path of `mlir_text` compiled for the GPU (linked to the runtime), through the
    compiler's disk cache; no GPU needed. `pipeline` defaults to `default_pipeline()`
    (the chip of the visible GPU, sm_90a without one). Where no compiler is available
    a cached library built from the same text and pipeline is served
    (CompilerNotFound otherwise)."""
    from . import compiler

    if pipeline is None:
        pipeline = default_pipeline()
    return compiler.compile(mlir_text, pipeline=pipeline, opt_level=opt_level)


def _current_raw_stream():
    """torch's current CUDA stream on the current device, as its handle. The
    private accessor Triton's launcher uses: torch.cuda.current_stream()
    builds a Stream object, several times the cost of a small launch."""
    import torch

    getter = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if getter is None:
        return torch.cuda.current_stream().cuda_stream
    return getter(torch._C._cuda_getDevice())


class _CallPlan(CallPlan):
    """CallPlan over torch CUDA tensors; the C function takes the stream first."""

    leading = (ctypes.c_void_p,)

    def expect(self, spec):
        import torch

        dtype = getattr(torch, TORCH_DTYPES[spec.element])
        return dtype, torch.empty((), dtype=dtype).element_size()

    def view(self, spec, expected, a):
        import torch

        dtype, size = expected
        if not (isinstance(a, torch.Tensor) and a.dtype is dtype and a.dim() == spec.rank
                and a.is_cuda and a.is_contiguous() and a.data_ptr() % size == 0):
            self.entry.check_tensor(spec, a)  # raises the precise error
        return None, a.data_ptr(), a.shape, a.stride()


class GPULibrary:
    """A GPU artifact next to libsparsek_runtime.so."""

    def __init__(self, path):
        self.path = path
        self.runtime = load_runtime(os.path.dirname(os.path.abspath(path)))
        self._lib = ctypes.CDLL(path)
        self._lib.sparsek_status.restype = ctypes.c_int32
        self._lib.sparsek_clear_status.restype = None
        # The device status (libraries compiled before it have none).
        self._device_status = getattr(self._lib, "sparsek_device_status", None)
        self._clear_device_status = getattr(self._lib, "sparsek_clear_device_status", None)
        if self._device_status is not None:
            self._device_status.restype = ctypes.c_int32
            self._device_status.argtypes = []
            self._clear_device_status.restype = None
            self._clear_device_status.argtypes = [ctypes.c_void_p]
        self.manifest = Manifest(self._lib, path)
        self._plans = {}  # entry point name -> _CallPlan
        if not self.manifest.stream:
            raise ValueError(f"{path} was compiled for the CPU; load it with "
                             "sparsek.cpu.CompiledLibrary")

    def _check_runtime(self, name):
        if self.runtime.sk_rt_get_status():
            buf = ctypes.create_string_buffer(512)
            self.runtime.sk_rt_get_last_error(buf, len(buf))
            self.runtime.sk_rt_clear_error()
            raise GPUError(f"{name}: {buf.value.decode(errors='replace')}")

    def has(self, name):
        return name in self.manifest

    def call(self, name, *args, stream=None, check=False):
        """Calls `name` on torch CUDA tensors (and ints for index operands),
        on `stream` (default: torch's current stream), through the generated
        `<name>_entry(stream, buffers...) -> status`. Arguments are checked
        against the signature the library exports (count, kind, dtype, rank,
        device, contiguity; TypeError or ValueError) first; the entry point
        checks every size. Returns once the work is queued on the stream (no
        host synchronization), so a call can be captured in a CUDA graph;
        invalid data the kernels find surfaces later (see the module's
        docstring): at the next call, at `check()`, or here with
        `check=True` (which synchronizes)."""
        plan = self._plans.get(name) or self._plan(name)
        keep, passed = plan.pack(args)
        raw = _current_raw_stream() if stream is None else stream.cuda_stream
        self._check_runtime(name)  # an error left over from earlier calls
        self._raise_pending(stream)  # what earlier calls' kernels found
        code = plan.fn(raw, *passed)
        del keep  # read by the entry point, which has returned
        if code == RUNTIME:
            self._check_runtime(name)
        if code:
            if code == OUT_OF_MEMORY:
                # The runtime recorded the failed allocation this code
                # reports; left there, the next call would raise it again.
                self.runtime.sk_rt_clear_error()
            raise SparseKError(code, name)
        if check or os.environ.get("SPARSEK_SYNC_CHECK", "") not in ("", "0"):
            self.check(stream, function=name)

    def _plan(self, name):
        # A function object of our own: its argtypes are this plan's.
        plan = _CallPlan(self.manifest[name], self._lib[self.manifest[name].symbol])
        self._plans[name] = plan
        return plan

    def device_status(self):
        """The first error the library's kernels recorded since the last clear
        (0 if none), read without synchronizing: it covers the kernels that
        have finished, so synchronize first to cover a given call."""
        return int(self._device_status()) if self._device_status is not None else 0

    def clear_device_status(self, stream=None):
        """Synchronizes `stream` (default: torch's current stream) and forgets
        the recorded error, so that later calls run clean."""
        if self._clear_device_status is None:
            return
        import torch

        if stream is None:
            stream = torch.cuda.current_stream()
        self._clear_device_status(ctypes.c_void_p(self.runtime.sk_rt_stream_from_ptr(stream.cuda_stream)))
        self._check_runtime("clear_device_status")

    def check(self, stream=None, function=None):
        """Synchronizes `stream` (default: torch's current stream) and raises
        the SparseKError that the kernels of the calls before recorded (the
        code and message the CPU path gives), clearing it; returns None when
        there is none."""
        import torch

        if stream is None:
            stream = torch.cuda.current_stream()
        stream.synchronize()
        code = self.device_status()
        if code:
            self.clear_device_status(stream)
            raise SparseKError(code, function or os.path.basename(self.path))

    # The name the KV cache uses for the same check (KVCache.check_device_error).
    check_device_error = check

    def _raise_pending(self, stream):
        """Raises, without waiting for anything, an error that finished
        kernels of earlier calls recorded (cleared first, unless the stream
        is being captured, where synchronizing is not allowed)."""
        code = self.device_status()
        if not code:
            return
        import torch

        if not torch.cuda.is_current_stream_capturing():
            self.clear_device_status(stream)
        raise SparseKError(code, f"{os.path.basename(self.path)} (kernels of an earlier call)")
