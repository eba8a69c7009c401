//===- sparsek-compile.cpp - MLIR module to a callable shared library ----===//
//
//   sparsek-compile layer.mlir -o liblayer.so [--target=cpu|gpu]
//                   [--pipeline-options='query-block=64 chip=sm_90'] [-O2]
//                   [--runtime-dir DIR] [--emit-llvm layer.ll]
//
// Runs sparsek-cpu-pipeline or sparsek-gpu-pipeline (kernels embedded as an
// sm_90 fatbin) and links a shared library; GPU libraries link against
// libsparsek_runtime.so (the mgpu* functions) and find it next to
// themselves or in --runtime-dir. Every public destination-passing function
// `f` of the module is callable from C as
//
//   int32_t _mlir_ciface_f_entry([void *stream,] Memref *buffers...);
//
// where each Memref is the MLIR descriptor {T *allocated, T *aligned,
// int64_t offset, int64_t sizes[R], int64_t strides[R]} over host (CPU) or
// device (GPU) memory, the stream (GPU only) is a CUstream such as torch's
// current stream, and the result is a status of sparsek-c/Status.h. All the
// work happens in libSparseKCompiler (sparsek-c/Compiler.h); this is its
// command line.
//
//===----------------------------------------------------------------------===//
#include "sparsek-c/Compiler.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifndef SPARSEK_DEFAULT_RUNTIME_DIR
#define SPARSEK_DEFAULT_RUNTIME_DIR ""
#endif

namespace {
struct Options {
  std::string input, output, target = "cpu", pipelineOptions, runtimeDir,
                         emitLlvm;
  int optLevel = 2;
};

int usage(const char *why) {
  std::fprintf(stderr,
               "sparsek-compile: %s\n"
               "usage: sparsek-compile INPUT.mlir -o OUTPUT.so "
               "[--target=cpu|gpu] [--pipeline-options=OPTS] [-O0..3] "
               "[--runtime-dir DIR] [--emit-llvm FILE.ll]\n",
               why);
  return 2;
}

/// Value of `--name=value` or `--name value`; advances `i` for the latter.
bool flagValue(int argc, char **argv, int &i, const char *name,
               std::string &out) {
  size_t n = std::strlen(name);
  if (std::strncmp(argv[i], name, n) != 0)
    return false;
  if (argv[i][n] == '=') {
    out = argv[i] + n + 1;
    return true;
  }
  if (argv[i][n] == '\0' && i + 1 < argc) {
    out = argv[++i];
    return true;
  }
  return false;
}

bool parse(int argc, char **argv, Options &o, std::string &why) {
  for (int i = 1; i < argc; ++i) {
    std::string opt;
    if (!std::strcmp(argv[i], "-o") && i + 1 < argc)
      o.output = argv[++i];
    else if (flagValue(argc, argv, i, "--target", o.target) ||
             flagValue(argc, argv, i, "--pipeline-options",
                       o.pipelineOptions) ||
             flagValue(argc, argv, i, "--runtime-dir", o.runtimeDir) ||
             flagValue(argc, argv, i, "--emit-llvm", o.emitLlvm))
      continue;
    else if (argv[i][0] == '-' && argv[i][1] == 'O' && argv[i][2] >= '0' &&
             argv[i][2] <= '3' && argv[i][3] == '\0')
      o.optLevel = argv[i][2] - '0';
    else if (argv[i][0] != '-' && o.input.empty())
      o.input = argv[i];
    else {
      why = std::string("unknown argument '") + argv[i] + "'";
      return false;
    }
  }
  if (o.input.empty() || (o.output.empty() && o.emitLlvm.empty()))
    why = "an input and -o OUTPUT.so (or --emit-llvm) are required";
  else if (o.target != "cpu" && o.target != "gpu")
    why = "--target must be cpu or gpu, not '" + o.target + "'";
  return why.empty();
}

/// Prints and frees an error of the C API; returns 1.
int fail(char *error) {
  std::fprintf(stderr, "sparsek-compile: %s\n", error ? error : "failed");
  sparsek_compiler_free(error);
  return 1;
}
} // namespace

int main(int argc, char **argv) {
  Options o;
  std::string why;
  if (!parse(argc, argv, o, why))
    return usage(why.c_str());
  std::ifstream in(o.input);
  if (!in)
    return usage(("cannot read '" + o.input + "'").c_str());
  std::stringstream text;
  text << in.rdbuf();
  std::string mlir = text.str();

  std::string pipeline = "sparsek-" + o.target + "-pipeline";
  if (!o.pipelineOptions.empty())
    pipeline += "{" + o.pipelineOptions + "}";

  char *error = nullptr;
  if (!o.emitLlvm.empty()) {
    char *llvmIr = nullptr;
    if (sparsek_compiler_translate_to_llvm_ir(mlir.c_str(), pipeline.c_str(),
                                              &llvmIr, &error))
      return fail(error);
    std::ofstream(o.emitLlvm) << llvmIr;
    sparsek_compiler_free(llvmIr);
  }
  if (o.output.empty())
    return 0;

  std::vector<std::string> linkArgs;
  if (o.target == "gpu") {
    std::string dir =
        o.runtimeDir.empty() ? SPARSEK_DEFAULT_RUNTIME_DIR : o.runtimeDir;
    linkArgs = {"-L" + dir, "-lsparsek_runtime", "-Wl,-rpath,$ORIGIN",
                "-Wl,-rpath," + dir};
  }
  std::vector<const char *> args;
  for (const std::string &a : linkArgs)
    args.push_back(a.c_str());
  if (sparsek_compiler_compile_shared_library_ex(
          mlir.c_str(), pipeline.c_str(), o.output.c_str(), o.optLevel,
          args.data(), static_cast<int>(args.size()), &error))
    return fail(error);
  return 0;
}
