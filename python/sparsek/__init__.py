# SparseK Python package: light on import; submodules (reference, compiled paths) load on first use.
"""SparseK attention: compiler, runtime and float64 reference.

`import sparsek` loads nothing heavy or compiled; `sparsek.reference` (numpy
only) is imported on first attribute access.
"""

import importlib

__all__ = ["reference"]


def __getattr__(name):
    # PEP 562 lazy submodule import keeps `import sparsek` free of numpy and
    # of any compiled extension.
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
