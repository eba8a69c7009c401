# SparseK Python package: light on import; submodules (reference, compiler, runtime) load on first use.
"""SparseK attention: compiler, runtime and float64 reference.

`import sparsek` loads nothing heavy or compiled. Submodules and the names
below are imported on first attribute access:
  sparsek.reference          float64 numpy reference of every op (SPEC)
  sparsek.compiler           libSparseKCompiler.so: pipelines, MLIR -> .so
  sparsek.layer              MLIR of a whole layer from shapes and options
  sparsek.compile_layer      a compiled layer callable on numpy arrays
  sparsek.KVCache            the runtime's KV cache (libsparsek_runtime.so)
  sparsek.nn                 SparseKAttention, a torch.nn.Module (needs torch; CPU or CUDA)
  sparsek.torch_ops          the layer as torch.ops.sparsek.* operators (torch.compile)
  sparsek.varlen             select_attention over packed variable-length sequences
  sparsek.gpu                GPU libraries called on torch CUDA tensors
"""

import importlib

_SUBMODULES = ("reference", "compiler", "layer", "ir", "cpu", "gpu", "kv_cache", "nn", "torch_ops",
               "toolchain", "varlen")
_NAMES = {
    "compile_layer": "compiled_layer",
    "CompiledLayer": "compiled_layer",
    "LayerConfig": "layer",
    "KVCache": "kv_cache",
    "CompiledLibrary": "cpu",
    "SparseKError": "status",
}

__all__ = list(_SUBMODULES) + list(_NAMES)


def __getattr__(name):
    # PEP 562 lazy imports keep `import sparsek` free of numpy, torch and of
    # any compiled library.
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
