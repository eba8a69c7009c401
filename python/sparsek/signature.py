# Reads the signature manifest a compiled SparseK library exports and checks call arguments against it.
"""Entry-point signatures of compiled SparseK libraries.

`sparsek-entry-points` exports `const char *sparsek_manifest(void)` from
every compiled module: a JSON text listing each entry point's arguments
(memref element type, rank, static sizes, whether the function writes it;
scalar types). ctypes cannot see C signatures, so without it a wrong rank
or dtype would be read as memory. The checks here run before anything is
passed to compiled code; the compiled entry point itself compares every
size with its function type (SPARSEK_ERROR_SHAPE_MISMATCH).
"""

import ctypes
import json

import numpy as np

VERSION = 1

# numpy dtypes of memref element types; bf16 travels as its bit patterns.
_NUMPY = {
    "f64": np.float64, "f32": np.float32, "f16": np.float16, "bf16": np.uint16,
    "i64": np.int64, "i32": np.int32, "i16": np.int16, "i8": np.int8, "i1": np.bool_,
}


def numpy_dtype(element):
    """The numpy dtype of memref element type `element` (bf16: its uint16 bit patterns)."""
    return np.dtype(_NUMPY[element])


TORCH_DTYPES = {  # torch dtype names of memref element types
    "f64": "float64", "f32": "float32", "f16": "float16", "bf16": "bfloat16",
    "i64": "int64", "i32": "int32", "i16": "int16", "i8": "int8", "i1": "bool",
}
_INT_SCALARS = {"i64": (64, ctypes.c_int64), "i32": (32, ctypes.c_int32),
                "i16": (16, ctypes.c_int16), "i8": (8, ctypes.c_int8)}
_FLOAT_SCALARS = {"f64": ctypes.c_double, "f32": ctypes.c_float}


class Argument:
    """One argument of an entry point, as the manifest describes it."""

    def __init__(self, position, spec, index_bits):
        self.position = position
        self.kind = spec.get("kind")
        element = spec.get("element")
        if element == "index":  # the target's index width
            element = f"i{index_bits}"
        self.element = element
        self.shape = tuple(spec.get("shape", ()))
        self.written = bool(spec.get("written", True))
        self.identity_layout = bool(spec.get("identity_layout", False))
        self.type_name = spec.get("type", element)

    @property
    def rank(self):
        return len(self.shape)

    def describe(self):
        if self.kind == "memref":
            dims = "x".join("?" if d is None else str(d) for d in self.shape)
            role = "output" if self.written else "input"
            return f"{role} memref<{dims + 'x' if dims else ''}{self.element}>"
        return f"{self.kind} {self.type_name}"


class EntryPoint:
    """An entry point: its function name, C symbol and arguments."""

    def __init__(self, spec, index_bits):
        self.name = spec["name"]
        self.symbol = f"_mlir_ciface_{spec['entry']}"
        self.args = [Argument(i, a, index_bits) for i, a in enumerate(spec["args"])]

    def check_count(self, args):
        if len(args) != len(self.args):
            sig = ", ".join(a.describe() for a in self.args)
            raise TypeError(f"{self.name}() takes {len(self.args)} arguments ({sig}), "
                            f"got {len(args)}")

    def _where(self, arg):
        return f"{self.name}: argument {arg.position} ({arg.describe()})"

    def scalar(self, arg, value):
        """The ctypes value of a scalar argument."""
        if arg.kind != "scalar":
            raise TypeError(f"{self._where(arg)} cannot be passed from Python")
        if arg.element in _INT_SCALARS:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{self._where(arg)}: expected an int, got {type(value).__name__}")
            bits, ctype = _INT_SCALARS[arg.element]
            if not -(1 << (bits - 1)) <= int(value) < (1 << (bits - 1)):
                raise ValueError(f"{self._where(arg)}: {int(value)} does not fit in {bits} bits")
            return ctype(int(value))
        if arg.element in _FLOAT_SCALARS:
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                    value, (int, float, np.integer, np.floating)):
                raise TypeError(f"{self._where(arg)}: expected a number, got {type(value).__name__}")
            return _FLOAT_SCALARS[arg.element](float(value))
        raise TypeError(f"{self._where(arg)} cannot be passed from Python")

    def scalar_type(self, arg):
        """The ctypes type of a scalar argument."""
        if arg.kind == "scalar" and arg.element in _INT_SCALARS:
            return _INT_SCALARS[arg.element][1]
        if arg.kind == "scalar" and arg.element in _FLOAT_SCALARS:
            return _FLOAT_SCALARS[arg.element]
        raise TypeError(f"{self._where(arg)} cannot be passed from Python")

    def check_passable(self, arg):
        """Raises TypeError unless `arg` is a memref Python can pass."""
        if arg.kind != "memref" or arg.element not in _NUMPY or not arg.identity_layout:
            raise TypeError(f"{self._where(arg)} cannot be passed from Python")

    def check_array(self, arg, array):
        """Checks a numpy array against a memref argument (sizes are checked by
        the compiled entry point)."""
        self.check_passable(arg)
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{self._where(arg)}: expected a numpy array, got "
                            f"{type(array).__name__}")
        want = numpy_dtype(arg.element)
        if array.dtype != want:
            hint = " (bf16 travels as uint16 bit patterns: sparsek.memref.to_bf16_bits)" \
                if arg.element == "bf16" else ""
            raise TypeError(f"{self._where(arg)}: expected dtype {want}, got {array.dtype}{hint}")
        if array.ndim != arg.rank:
            raise ValueError(f"{self._where(arg)}: expected rank {arg.rank}, got shape "
                             f"{array.shape}")
        if not array.flags.c_contiguous:
            raise ValueError(f"{self._where(arg)}: must be C-contiguous (got strides "
                             f"{array.strides}); pass np.ascontiguousarray(a)")
        if not array.flags.aligned:
            raise ValueError(f"{self._where(arg)}: data is not aligned to its element size")
        if arg.written and not array.flags.writeable:
            raise ValueError(f"{self._where(arg)}: the function writes this argument, but the "
                             "array is read-only")

    def check_tensor(self, arg, tensor):
        """Checks a value passed for a memref argument of a GPU entry point:
        a torch CUDA tensor of the argument's dtype, rank and layout."""
        import torch

        self.check_passable(arg)
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{self._where(arg)}: expected a CUDA tensor, got "
                            f"{type(tensor).__name__}")
        want = getattr(torch, TORCH_DTYPES[arg.element])
        if tensor.dtype != want:
            raise TypeError(f"{self._where(arg)}: expected dtype {want}, got {tensor.dtype}")
        if tensor.dim() != arg.rank:
            raise ValueError(f"{self._where(arg)}: expected rank {arg.rank}, got shape "
                             f"{tuple(tensor.shape)}")
        if not tensor.is_cuda:
            raise ValueError(f"{self._where(arg)}: expected a CUDA tensor, got one on "
                             f"{tensor.device}")
        if not tensor.is_contiguous():
            raise ValueError(f"{self._where(arg)}: tensors must be contiguous (entry points take "
                             "identity layouts)")
        if tensor.data_ptr() % tensor.element_size():
            raise ValueError(f"{self._where(arg)}: data is not aligned to its element size")


class Manifest:
    """The entry points of one loaded library (ctypes.CDLL `lib`)."""

    def __init__(self, lib, path):
        try:
            fn = lib.sparsek_manifest
        except AttributeError:
            raise ValueError(f"{path} exports no sparsek_manifest: it was not built by "
                             "sparsek-entry-points (or by an older SparseK); recompile it") from None
        fn.restype = ctypes.c_char_p
        fn.argtypes = []
        data = json.loads(fn().decode())
        if data.get("version") != VERSION:
            raise ValueError(f"{path}: manifest version {data.get('version')} is not "
                             f"{VERSION}; use the SparseK that compiled it")
        self.path = path
        self.stream = bool(data["stream"])
        bits = int(data["index_bits"])
        self.entry_points = {f["name"]: EntryPoint(f, bits) for f in data["functions"]}

    def __contains__(self, name):
        return name in self.entry_points

    def __getitem__(self, name):
        try:
            return self.entry_points[name]
        except KeyError:
            raise AttributeError(f"{self.path} has no entry point {name!r} (it has "
                                 f"{', '.join(sorted(self.entry_points)) or 'none'})") from None
