# Turns MLIR text into a shared library on the CPU, through the compiler's C API (sparsek.compiler).
"""Compile MLIR modules into shared libraries.

Kept for existing callers; `sparsek.compiler` does the work in process
through libSparseKCompiler.so (the subprocess chain sparsek-opt |
mlir-translate | llc | cc is gone: one in-process path gives the same IR
optimization everywhere and errors that carry the MLIR diagnostics).
Compiling needs the compiler library; loading and running a compiled
library does not.
"""

from . import compiler

ToolchainError = compiler.CompilerError


def lower_to_llvm_ir(mlir_text, pipeline="sparsek-cpu-pipeline"):
    """MLIR text -> LLVM IR text through `pipeline`."""
    return compiler.translate_to_llvm_ir(mlir_text, pipeline)


def compile_shared_library(mlir_text, output=None, pipeline="sparsek-cpu-pipeline", opt_level=2):
    """Compiles `mlir_text` into a shared library and returns its path.

    Without `output`, the library goes to an on-disk cache keyed by the text,
    the pipeline and the compiler build, so recompiling is free.
    """
    return compiler.compile(mlir_text, pipeline=pipeline, output=output, opt_level=opt_level)
