# Finds the compiler tools and turns MLIR text into a shared library on the CPU.
"""Compile MLIR modules with sparsek-opt into shared libraries.

The tools are looked up in `$SPARSEK_BUILD_DIR/bin` (or the build tree next
to this package), then in LLVM 22's bin directory, then on PATH. Compiling
needs LLVM/MLIR; loading and running a compiled library does not.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile

_LLVM_BIN = "/usr/lib/llvm-22/bin"
# Bumped whenever the way libraries are built changes (flags, steps), so the
# on-disk cache never serves a library built the old way.
_BUILD_RECIPE = 2


class ToolchainError(RuntimeError):
    """A tool is missing or a compilation step failed (its stderr attached)."""


def _build_dir():
    env = os.environ.get("SPARSEK_BUILD_DIR")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(os.path.dirname(here)), "build")


def find_tool(name):
    """Absolute path of `name`, or ToolchainError saying where it looked."""
    candidates = [os.path.join(_build_dir(), "bin", name), os.path.join(_LLVM_BIN, name)]
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return found
    raise ToolchainError(f"{name} not found (looked in {', '.join(candidates)} and PATH); "
                         "build the project or set SPARSEK_BUILD_DIR")


def _run(cmd, stdin=None):
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise ToolchainError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout


def lower_to_llvm_ir(mlir_text, pipeline="sparsek-cpu-pipeline"):
    """MLIR text -> LLVM IR text through sparsek-opt's `pipeline`."""
    llvm_dialect = _run([find_tool("sparsek-opt"), f"--{pipeline}", "-"], stdin=mlir_text.encode())
    return _run([find_tool("mlir-translate"), "--mlir-to-llvmir", "-"], stdin=llvm_dialect)


def compile_shared_library(mlir_text, output=None, pipeline="sparsek-cpu-pipeline", opt_level=2):
    """Compiles `mlir_text` into a shared library and returns its path.

    Without `output`, the library goes to a cache directory keyed by the text
    and the pipeline, so recompiling the same module is free.
    """
    if output is None:
        # The compiler is part of the key: a rebuilt sparsek-opt must not
        # reuse libraries compiled by an older one.
        opt = os.stat(find_tool("sparsek-opt"))
        compiler = f"{opt.st_size}:{opt.st_mtime_ns}"
        key = hashlib.sha256(f"{_BUILD_RECIPE}\0{compiler}\0{pipeline}\0{opt_level}\0{mlir_text}".encode()).hexdigest()[:20]
        cache = os.environ.get("SPARSEK_CACHE_DIR",
                               os.path.join(tempfile.gettempdir(), f"sparsek-cache-{os.getuid()}"))
        os.makedirs(cache, exist_ok=True)
        output = os.path.join(cache, f"sparsek_{key}.so")
        if os.path.exists(output):
            return output
    llvm_ir = lower_to_llvm_ir(mlir_text, pipeline)
    with tempfile.TemporaryDirectory() as tmp:
        obj = os.path.join(tmp, "module.o")
        _run([find_tool("llc"), f"-O{opt_level}", "-filetype=obj", "-relocation-model=pic",
              "-o", obj, "-"], stdin=llvm_ir)
        partial = output + f".tmp{os.getpid()}"
        # -Bsymbolic: calls between the library's own functions bind inside
        # it, so an entry point named like a libc function (`select`) cannot
        # be interposed by libc.
        _run([os.environ.get("CC", "cc"), "-shared", "-Wl,-Bsymbolic", "-o", partial, obj, "-lm"])
        os.replace(partial, output)  # atomic: concurrent test workers never see half a file
    return output
