# ctypes binding of the compiler's C API (libSparseKCompiler.so): pipelines and MLIR -> shared library, in process.
"""Compile MLIR with the SparseK compiler library.

`libSparseKCompiler.so` (include/sparsek-c/Compiler.h) is loaded on the
first call that compiles, never on `import sparsek`, so machines without
LLVM/MLIR can still load and run libraries compiled elsewhere. It is looked
up in this order:
  1. `$SPARSEK_COMPILER_LIB` (the file itself);
  2. `$SPARSEK_BUILD_DIR/lib/`;
  3. the build tree next to this package (`<repo>/build/lib/`).

`compile()` caches libraries on disk (`$SPARSEK_CACHE_DIR`, default
`<tmp>/sparsek-cache-<uid>`), keyed by the MLIR text, the pipeline, the
optimization level and the compiler build. Where no compiler is available
it serves the newest cached library built from the same text, so a cache
directory compiled on a development machine can be carried to a machine
without LLVM (e.g. the GPU host) and used there.

Every call compiles in a child process of the C API (see Compiler.h): an
upstream crash or fatal error on some input raises CompilerError here
instead of ending the interpreter.

GPU libraries (`pipeline="sparsek-gpu-pipeline..."`) link against
libsparsek_runtime.so (the `mgpu*` functions). Without explicit `link_args`
the runtime found by `sparsek.kv_cache.library_path()` is linked, and the
cache key names only "the runtime", not its folder, so a library built here
is found again on a machine where the repository lives elsewhere. At load
time `sparsek.gpu.GPULibrary` loads the runtime first (next to the library,
else `$SPARSEK_RUNTIME_LIB` / `$SPARSEK_BUILD_DIR/runtime/`).
"""

import ctypes
import glob
import hashlib
import os
import tempfile
import threading

# Bumped whenever the way libraries are built changes (flags, steps), so the
# on-disk cache never serves a library built the old way.
_BUILD_RECIPE = 3
_LIB_NAME = "libSparseKCompiler.so"


class CompilerError(RuntimeError):
    """Compilation failed; the message holds the compiler's diagnostics."""


class CompilerNotFound(CompilerError):
    """libSparseKCompiler.so is not built or not where we looked."""


def _candidates():
    env = os.environ.get("SPARSEK_COMPILER_LIB")
    if env:
        return [env]
    build = os.environ.get("SPARSEK_BUILD_DIR")
    if not build:
        here = os.path.dirname(os.path.abspath(__file__))
        build = os.path.join(os.path.dirname(os.path.dirname(here)), "build")
    return [os.path.join(build, "lib", _LIB_NAME)]


def library_path():
    """Path of libSparseKCompiler.so, or CompilerNotFound saying where we looked."""
    paths = _candidates()
    for path in paths:
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise CompilerNotFound(f"{_LIB_NAME} not found (looked at {', '.join(paths)}); build the "
                           "project (ninja -C build) or set SPARSEK_BUILD_DIR or "
                           "SPARSEK_COMPILER_LIB")


def available():
    """True when the compiler library can be found (it is not loaded)."""
    try:
        library_path()
        return True
    except CompilerNotFound:
        return False


_lock = threading.Lock()
_loaded = {}


def _lib():
    path = library_path()
    with _lock:
        if path not in _loaded:
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                raise CompilerError(f"cannot load {path}: {e}") from None
            out = ctypes.POINTER(ctypes.c_void_p)
            lib.sparsek_compiler_version.restype = ctypes.c_char_p
            lib.sparsek_compiler_version.argtypes = []
            for name in ("sparsek_compiler_run_pipeline", "sparsek_compiler_translate_to_llvm_ir"):
                fn = getattr(lib, name)
                fn.restype = ctypes.c_int
                fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, out, out]
            fn = lib.sparsek_compiler_compile_shared_library_ex
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                           ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, out]
            lib.sparsek_compiler_free.restype = None
            lib.sparsek_compiler_free.argtypes = [ctypes.c_void_p]
            _loaded[path] = lib
        return _loaded[path]


def _take_string(lib, ptr):
    """Copies a string the C API returned and releases it."""
    if not ptr.value:
        return ""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8", errors="replace")
    finally:
        lib.sparsek_compiler_free(ptr.value)


def _check(lib, rc, error, what):
    message = _take_string(lib, error)
    if rc != 0:
        raise CompilerError(f"{what}: {message or 'failed (no message)'}")


def version():
    """The compiler build, e.g. 'SparseK 0.1.0 (LLVM 22.1.8)'."""
    return _lib().sparsek_compiler_version().decode()


def _text_call(fn_name, mlir_text, pipeline):
    lib = _lib()
    text, error = ctypes.c_void_p(), ctypes.c_void_p()
    rc = getattr(lib, fn_name)(mlir_text.encode(), pipeline.encode(), ctypes.byref(text),
                               ctypes.byref(error))
    out = _take_string(lib, text)
    _check(lib, rc, error, f"pipeline {pipeline!r}" if pipeline else "verification")
    return out


def run_pipeline(mlir_text, pipeline="sparsek-cpu-pipeline"):
    """Runs `pipeline` (textual, module-anchored; "" only verifies) and returns the IR."""
    return _text_call("sparsek_compiler_run_pipeline", mlir_text, pipeline)


def translate_to_llvm_ir(mlir_text, pipeline="sparsek-cpu-pipeline"):
    """Runs `pipeline`, which must end in the LLVM dialect, and returns LLVM IR text."""
    return _text_call("sparsek_compiler_translate_to_llvm_ir", mlir_text, pipeline)


def _cache_dir():
    cache = os.environ.get("SPARSEK_CACHE_DIR",
                           os.path.join(tempfile.gettempdir(), f"sparsek-cache-{os.getuid()}"))
    os.makedirs(cache, exist_ok=True)
    return cache


def _digest(*parts):
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:20]


def is_gpu_pipeline(pipeline):
    return pipeline.strip().startswith("sparsek-gpu-pipeline")


def runtime_link_args():
    """Link arguments of a GPU library: the runtime of `sparsek.kv_cache.library_path()`."""
    from .kv_cache import library_path as runtime_library

    folder = os.path.dirname(runtime_library())
    return ["-L" + folder, "-lsparsek_runtime", "-Wl,-rpath,$ORIGIN", "-Wl,-rpath," + folder]


def compile(mlir_text, pipeline="sparsek-cpu-pipeline", output=None, opt_level=2, link_args=None):
    """Compiles `mlir_text` into a shared library for the host; returns its path.

    `link_args` go to the link step after the object file (e.g. "-L<dir>",
    "-lsparsek_runtime" for GPU code). Left out for a GPU pipeline, the
    runtime is linked (`runtime_link_args()`) and the cache key does not
    depend on where it lives. Without `output`, the library goes to (or comes
    from) the on-disk cache.
    Raises CompilerError with the diagnostics when a step fails, and
    CompilerNotFound when there is neither a compiler nor a cached library.
    """
    key_link_args = tuple(link_args or ())
    if link_args is None and is_gpu_pipeline(pipeline):
        key_link_args = ("<sparsek_runtime>",)
        link_args = None  # resolved below, only when something is compiled
    else:
        link_args = tuple(link_args or ())
    if output is None:
        source_key = _digest(_BUILD_RECIPE, pipeline, opt_level, key_link_args, mlir_text)
        cache = _cache_dir()
        try:
            path = library_path()
        except CompilerNotFound as e:
            built = sorted(glob.glob(os.path.join(cache, f"sparsek_{source_key}_*.so")),
                           key=os.path.getmtime)
            if built:
                return built[-1]
            raise CompilerNotFound(f"{e}; no library compiled from this module is cached in "
                                   f"{cache} either") from None
        st = os.stat(path)
        compiler_key = _digest(version(), st.st_size, st.st_mtime_ns)
        output = os.path.join(cache, f"sparsek_{source_key}_{compiler_key}.so")
        if os.path.exists(output):
            return output
    lib = _lib()
    if link_args is None:
        link_args = tuple(runtime_link_args())
    error = ctypes.c_void_p()
    args = (ctypes.c_char_p * max(1, len(link_args)))(*[os.fsencode(a) for a in link_args])
    # Written under a name of this process, then renamed: processes compiling the same module
    # at once (the ranks of a distributed job, parallel test workers) never load a library
    # another one is still writing, and a failed compile leaves nothing under the final name.
    partial = f"{output}.{os.getpid()}.{threading.get_ident()}.partial"
    try:
        rc = lib.sparsek_compiler_compile_shared_library_ex(
            mlir_text.encode(), pipeline.encode(), os.fsencode(partial), int(opt_level), args,
            len(link_args), ctypes.byref(error))
        _check(lib, rc, error, f"compiling with {pipeline!r}")
        os.replace(partial, output)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return output
