//===- InitAllSparseK.h - Everything a SparseK tool registers ---*- C++ -*-===//
//
// One place for what sparsek-opt, the compiler C API and embedding compilers
// register: the sparsek dialect with its external interface models, our
// passes and pipelines, and the CUDA toolkit location the NVVM target needs.
//
//===----------------------------------------------------------------------===//
#ifndef SPARSEK_INITALLSPARSEK_H
#define SPARSEK_INITALLSPARSEK_H

#include "mlir/IR/DialectRegistry.h"
#include "sparsek/Conversion/Passes.h"
#include "sparsek/Dialect/SparseK/IR/SparseKDialect.h"
#include "sparsek/Dialect/SparseK/IR/TilingInterfaceImpl.h"
#include "sparsek/Dialect/SparseK/Transforms/BufferizableOpInterfaceImpl.h"
#include "sparsek/Dialect/SparseK/Transforms/Passes.h"
#include "sparsek/Pipelines/Pipelines.h"
#include "llvm/Support/FileSystem.h"

#include <cstdlib>

namespace mlir::sparsek {

/// The sparsek dialect plus its bufferization and tiling models.
inline void registerAllSparseKDialects(DialectRegistry &registry) {
  registry.insert<SparseKDialect>();
  registerBufferizableOpInterfaceExternalModels(registry);
  registerTilingInterfaceExternalModels(registry);
}

/// Our passes and the named pipelines (sparsek-cpu/gpu-pipeline).
inline void registerAllSparseKPasses() {
  registerSparseKPasses();
  registerSparseKConversionPasses();
  registerSparseKPipelines();
}

/// MLIR's NVVM target finds ptxas and libdevice (needed for math functions
/// in kernels) through CUDA_ROOT, CUDA_HOME or CUDA_PATH; Debian's build has
/// no default, so point it at the standard toolkit location when unset.
inline void setDefaultCudaToolkitPath() {
  for (const char *var : {"CUDA_ROOT", "CUDA_HOME", "CUDA_PATH"})
    if (std::getenv(var))
      return;
  if (llvm::sys::fs::is_directory("/usr/local/cuda"))
    setenv("CUDA_HOME", "/usr/local/cuda", /*overwrite=*/0);
}

} // namespace mlir::sparsek

#endif // SPARSEK_INITALLSPARSEK_H
