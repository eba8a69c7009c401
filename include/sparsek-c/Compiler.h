/* Compiler.h - C API of the SparseK compiler (libSparseKCompiler.so).
 *
 * Plain C over MLIR: parse a module with every upstream dialect and ours
 * registered, run a named pass pipeline (e.g. "sparsek-cpu-pipeline"), and
 * compile the result into a shared library for the host. Meant for ctypes
 * and other FFI callers that must not link C++ or MLIR themselves.
 *
 * Every function returns 0 on success and non-zero on failure; on failure
 * `*error` (when `error` is non-null) receives a message holding the MLIR
 * diagnostics or the tool output that explains it. Nothing aborts on bad
 * input. Strings returned through `out_text` / `error` are owned by the
 * caller and released with sparsek_compiler_free. Calls are thread-safe:
 * each builds its own MLIR context.
 *
 * Each compiling call runs in a child process (fork) and returns its
 * result: where upstream MLIR/LLVM crashes or exits on an input (a parser
 * segfault, an `LLVM ERROR`), the call fails with a message saying how the
 * child died, the diagnostics it printed first and its stderr, and the
 * caller carries on. The child's stderr (warnings) is copied to the
 * caller's on success. SPARSEK_COMPILER_IN_PROCESS=1 in the environment
 * runs the work in the calling process instead (debuggers, profilers).
 *
 * Like sparsek-opt, the first call sets CUDA_HOME=/usr/local/cuda when none
 * of CUDA_ROOT, CUDA_HOME, CUDA_PATH is set and that folder exists (the GPU
 * pipeline finds ptxas and libdevice through it).
 */
#ifndef SPARSEK_C_COMPILER_H
#define SPARSEK_C_COMPILER_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SPARSEK_COMPILER_API __declspec(dllexport)
#else
#define SPARSEK_COMPILER_API __attribute__((visibility("default")))
#endif

/* Identifies this build of the compiler ("SparseK <version> (LLVM <version>)"),
 * static storage. Callers may key caches of compiled code on it. */
SPARSEK_COMPILER_API const char *sparsek_compiler_version(void);

/* Parses `mlir` (textual IR), runs `pipeline` on it and returns the result
 * as text. `pipeline` is a textual pass pipeline anchored on the module,
 * with or without the "builtin.module(...)" wrapper, e.g.
 * "sparsek-cpu-pipeline{index-bitwidth=64}" or "canonicalize,cse". An empty
 * pipeline only parses and verifies. */
SPARSEK_COMPILER_API int sparsek_compiler_run_pipeline(const char *mlir,
                                                       const char *pipeline,
                                                       char **out_text,
                                                       char **error);

/* Runs `pipeline` (which must end in the LLVM dialect) and returns the
 * module translated to LLVM IR text. */
SPARSEK_COMPILER_API int
sparsek_compiler_translate_to_llvm_ir(const char *mlir, const char *pipeline,
                                      char **out_text, char **error);

/* Runs `pipeline`, translates to LLVM IR, optimizes it at `opt_level`
 * (0-3), emits a position-independent object for the host's architecture
 * (generic CPU, so the library runs on any machine of that architecture)
 * and links it with the system C compiler ($CC, else cc) as
 * `cc -shared -Wl,-Bsymbolic -o output_path obj -lm`. The file is written
 * under a temporary name and renamed, so readers never see half a library. */
SPARSEK_COMPILER_API int
sparsek_compiler_compile_shared_library(const char *mlir, const char *pipeline,
                                        const char *output_path, int opt_level,
                                        char **error);

/* As above, with `num_link_args` extra arguments for the link step, placed
 * after the object file (e.g. "-L<dir>", "-lsparsek_runtime",
 * "-Wl,-rpath,$ORIGIN" for GPU code that calls the runtime's mgpu*). */
SPARSEK_COMPILER_API int sparsek_compiler_compile_shared_library_ex(
    const char *mlir, const char *pipeline, const char *output_path,
    int opt_level, const char *const *link_args, int num_link_args,
    char **error);

/* Releases a string returned by this API (null is ignored). */
SPARSEK_COMPILER_API void sparsek_compiler_free(char *str);

#ifdef __cplusplus
}
#endif

#endif /* SPARSEK_C_COMPILER_H */
